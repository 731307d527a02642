"""The buffer plan: temporaries whose lifetimes do not overlap share memory.

A temporary lives from the kernel that writes it to the last kernel that reads it (a
reduction's scratch accumulator only during its kernel). Two temporaries interfere when
their lifetimes overlap. Lifetimes are intervals of the kernel sequence, so the
interference graph is an interval graph, which a sweep in order of first write colours
with the fewest colours (greedy colouring in that order is optimal for interval graphs,
and the sweep never builds the quadratic edge list). Each colour is one slot of the
workspace, as large as its largest member at run time. An elementwise kernel may write its result over an operand
that dies in that kernel when it reads that operand at exactly the element it writes
(same offset and strides, same byte size): the two then get the same slot, and the
kernel works in place.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Sequence

from symgrad.backends.lower.kernel import ITEMSIZE, Buffer, BufferPlan, Kernel, LoopKernel


def _inplace_pairs(kernels: Sequence[Kernel], last: dict[int, int]) -> dict[int, int]:
    """id(written buffer) -> id(operand it may overwrite)."""
    pairs: dict[int, int] = {}
    for k, kern in enumerate(kernels):
        if not isinstance(kern, LoopKernel) or kern.strategy != "map":
            continue
        reads: dict[int, set[tuple[object, ...]]] = {}
        for acc in kern.operands:
            reads.setdefault(id(acc.buffer), set()).add(acc.key()[1:])
        taken: set[int] = set()
        for st in kern.stores:
            out = st.access.buffer
            if out.kind != "temp" or id(out) in reads or id(out) in pairs:
                continue
            for acc in kern.operands:
                src = acc.buffer
                if (src.kind == "temp" and id(src) not in taken and last.get(id(src)) == k
                        and reads[id(src)] == {st.access.key()[1:]}
                        and ITEMSIZE[src.dtype] == ITEMSIZE[out.dtype] and src.size == out.size):
                    pairs[id(out)] = id(src)
                    taken.add(id(src))
                    break
    return pairs


def plan_buffers(kernels: Sequence[Kernel], temps: Sequence[Buffer]) -> BufferPlan:
    """Assign every temporary and scratch buffer a workspace slot (sets ``Buffer.slot``)."""
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    bufs: dict[int, Buffer] = {}
    for k, kern in enumerate(kernels):
        touched = list(kern.writes()) + list(kern.reads())
        if isinstance(kern, LoopKernel):
            touched += kern.scratch
        for b in touched:
            if b.kind in ("temp", "scratch"):
                bufs.setdefault(id(b), b)
                first.setdefault(id(b), k)
                last[id(b)] = k
    for b in temps:
        if id(b) not in bufs:  # written by nobody: cannot happen, but keep it safe
            bufs[id(b)] = b
            first[id(b)] = last[id(b)] = 0
    pairs = _inplace_pairs(kernels, last)

    # Buffers interfere when their lifetimes [first, last] overlap: an interval graph, which
    # a sweep in order of first write colours optimally (no explicit edge list needed).
    ordered = sorted(bufs.values(), key=lambda b: (first[id(b)], b.name))
    slots: list[list[Buffer]] = []
    slot_end: list[int] = []  # last use of the slot's newest member
    free: list[int] = []  # slots whose members are all dead, kept sorted
    active: list[tuple[int, int, int]] = []  # (last use, slot, generation) heap of busy slots
    generation: list[int] = []  # per slot; an entry of an older generation is stale
    inplace: list[tuple[str, str]] = []
    colour: dict[int, int] = {}
    for b in ordered:
        start = first[id(b)]
        while active and active[0][0] < start:
            _, slot, gen = heapq.heappop(active)
            if gen == generation[slot]:
                bisect.insort(free, slot)
        partner = pairs.get(id(b))
        c = colour.get(partner) if partner is not None else None
        if c is not None and slot_end[c] == start and last[partner] == start:  # type: ignore[index]
            # the operand dies in the kernel that writes b at the same elements: share
            inplace.append((bufs[partner].name, b.name))  # type: ignore[index]
            generation[c] += 1  # the slot's entry in the heap is replaced below
        elif free:
            c = free.pop(0)
        else:
            c = len(slots)
            slots.append([])
            slot_end.append(-1)
            generation.append(0)
        slots[c].append(b)
        slot_end[c] = last[id(b)]
        heapq.heappush(active, (last[id(b)], c, generation[c]))
        colour[id(b)] = c
        b.slot = c
    return BufferPlan(slots, inplace)
