"""W4: the cost of one call of a compiled f(a, b) = a*b + 1 returning the value and both
gradients, on float32 scalars, with the usual input checks on (symgrad's checks always run).
PyTensor is also timed with its input checks off (``trust_input = True``, the inputs then
passed as ready-made 0-d float32 arrays)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import Row, check, pytensor_mode, timeit_batched, with_peer  # noqa: E402

NAME = "W4 call overhead"


def run(quick: bool = False) -> list[Row]:
    import symgrad as sg

    a, b = np.float32(1.5), np.float32(-2.0)
    want = [a * b + 1, b, a]
    rows: list[Row] = []

    def add(name: str, fn: Any, note: str = "", to_host: Any = None) -> None:
        """Check ``fn()`` (through ``to_host`` if given) against the reference, then time ``fn``."""
        bad = check(name, fn() if to_host is None else to_host(fn()), want, 1e-6, 1e-6)
        if bad:
            rows.append(Row(NAME, name, None, note=f"FAILED CHECK: {bad}"))
            return
        med, lo = timeit_batched(fn, batch=200 if quick else 2000)
        rows.append(Row(NAME, name, med, lo, note))

    def by_hand(x: Any, y: Any) -> tuple[Any, Any, Any]:
        return x * y + 1, y, x

    add("plain Python by hand", lambda: by_hand(a, b))
    sa, sb = sg.placeholder("a", (), "float32"), sg.placeholder("b", (), "float32")
    y = sa * sb + 1.0
    outs = [y, *sg.grad(y, [sa, sb])]
    for backend in ("numpy", "llvm"):
        f = sg.compile(outs, [sa, sb], backend=backend)
        add(f"symgrad {backend}", lambda f=f: f(a, b))

    def torch_peer(torch: Any) -> None:
        def torch_call() -> list[Any]:
            ta = torch.tensor(a, requires_grad=True)
            tb = torch.tensor(b, requires_grad=True)
            out = ta * tb + 1
            ga, gb = torch.autograd.grad(out, [ta, tb])
            return [out.item(), ga.item(), gb.item()]

        add("PyTorch eager", torch_call)

    def jax_peer(jax: Any) -> None:
        vg = jax.jit(jax.value_and_grad(lambda x, z: x * z + 1, argnums=(0, 1)))
        # Timed: the call until its results are ready; the first (checked) call compiles.
        add("JAX jit", lambda: jax.block_until_ready(vg(a, b)),
            to_host=lambda r: [np.asarray(r[0]), np.asarray(r[1][0]), np.asarray(r[1][1])])

    def pytensor_peer(pt: Any) -> None:
        import pytensor.tensor as ptt

        pa, pb = ptt.scalar("a", dtype="float32"), ptt.scalar("b", dtype="float32")
        po = pa * pb + np.float32(1)
        outs = [po, *pt.grad(po, [pa, pb])]
        checked = pt.function([pa, pb], outs)
        add("PyTensor", lambda: checked(a, b), note=pytensor_mode(checked))
        trusted = pt.function([pa, pb], outs)
        trusted.trust_input = True
        a0, b0 = np.array(a, dtype=np.float32), np.array(b, dtype=np.float32)
        add("PyTensor, trust_input=True", lambda: trusted(a0, b0), note="input checks off")

    with_peer(rows, NAME, ["PyTorch eager"], "torch", torch_peer)
    with_peer(rows, NAME, ["JAX jit"], "jax", jax_peer)
    with_peer(rows, NAME, ["PyTensor", "PyTensor, trust_input=True"], "pytensor", pytensor_peer)
    return rows


if __name__ == "__main__":
    from common import fmt_time

    for r in run("--quick" in sys.argv):
        print(f"{r.workload:18s} {r.contender:22s} {fmt_time(r.median_s):>12s} {r.note}")
