"""Shared benchmark helpers: timing, reference checks, peers, result rows.

Every contender is first checked against a float64 reference (a failed check is reported
and the contender is not timed), then timed. The contenders of one workload are timed in
alternating rounds (:class:`Rounds`), so that a burst of other load on this shared machine
falls on all of them alike instead of on whichever ran at that moment; the median over all
timed calls is reported (and the minimum, which is less sensitive to other load).
"""

from __future__ import annotations

import importlib
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Row:
    workload: str
    contender: str
    median_s: float | None
    min_s: float | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


SETTLE_S = 0.05


class Rounds:
    """Time several contenders in alternating rounds.

    ``enter`` adds a contender's row to ``rows`` at once (so the table keeps the order of
    entry) and :meth:`run` fills in its times: ``rounds`` rounds, in each of which every
    contender, in turn, makes one untimed call and then timed calls for ``seconds /
    rounds`` seconds (at least one). Each turn starts after a pause of :data:`SETTLE_S`, in
    which the previous contender's worker threads stop spinning (GNU OpenMP's spin about
    10 ms after a parallel region, OpenBLAS's a while after a product), so that no
    contender runs next to another's busy threads. ``context`` (optional) is entered around each of a
    contender's turns, e.g. to set its thread count. A contender that raises while being
    timed gets an error note instead of times.
    """

    def __init__(self, rows: list[Row], seconds: float = 1.0, rounds: int = 7) -> None:
        self.rows = rows
        self.seconds = seconds
        self.rounds = rounds
        self.entries: list[tuple[Row, Callable[[], Any], Callable[[], Any] | None]] = []

    def enter(self, workload: str, name: str, fn: Callable[[], Any], note: str = "",
              context: Callable[[], Any] | None = None) -> None:
        row = Row(workload, name, None, note=note)
        self.rows.append(row)
        self.entries.append((row, fn, context))

    def run(self) -> None:
        times: dict[int, list[float]] = {id(row): [] for row, _, _ in self.entries}
        failed: set[int] = set()
        for _ in range(self.rounds):
            for row, fn, context in self.entries:
                if id(row) in failed:
                    continue
                try:
                    if context is None:
                        self._turn(fn, times[id(row)])
                    else:
                        with context():
                            self._turn(fn, times[id(row)])
                except Exception as exc:  # noqa: BLE001 - reported in the table
                    failed.add(id(row))
                    row.note = f"error while timing: {type(exc).__name__}: {exc}"[:200]
        for row, _, _ in self.entries:
            got = times[id(row)]
            if id(row) not in failed and got:
                row.median_s, row.min_s = statistics.median(got), min(got)

    def _turn(self, fn: Callable[[], Any], out: list[float]) -> None:
        time.sleep(SETTLE_S)
        fn()
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            fn()
            t1 = time.perf_counter()
            out.append(t1 - t0)
            if t1 - start >= self.seconds / self.rounds:
                return


def timeit_batched(fn: Callable[[], Any], batch: int = 1000, rounds: int = 15) -> tuple[float, float]:
    """For very short calls: (median, min) over rounds of ``batch`` back-to-back calls."""
    fn()
    per: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        per.append((time.perf_counter() - t0) / batch)
    return statistics.median(per), min(per)


def check(name: str, got: Any, want: Any, rtol: float, atol: float) -> str | None:
    """None if every array of ``got`` matches ``want`` (float64 reference), else why not."""
    gots = got if isinstance(got, (list, tuple)) else [got]
    wants = want if isinstance(want, (list, tuple)) else [want]
    if len(gots) != len(wants):
        return f"{name}: {len(gots)} results, expected {len(wants)}"
    for k, (g, w) in enumerate(zip(gots, wants)):
        g = np.asarray(g, dtype=np.float64)
        w = np.asarray(w, dtype=np.float64)
        if g.shape != w.shape:
            return f"{name}: result {k} has shape {g.shape}, expected {w.shape}"
        if not np.allclose(g, w, rtol=rtol, atol=atol):
            err = float(np.max(np.abs(g - w) / (atol + rtol * np.abs(w))))
            return f"{name}: result {k} is off the float64 reference ({err:.2g}x the tolerance)"
    return None


def peer(module: str) -> Any | None:
    """The peer's module if installed (None otherwise)."""
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import failure means: not available
        return None


def with_peer(rows: list[Row], workload: str, names: list[str], module: str,
              body: Callable[[Any], None]) -> None:
    """Run ``body(mod)``, which adds the rows ``names`` of one peer, if ``module`` imports.

    An absent peer gives one "not installed" row per name; an exception inside ``body``
    (a peer that fails to build or run the workload) gives an "error" row for every name
    that has no row yet, so one peer never stops the run.
    """
    mod = peer(module)
    if mod is None:
        rows.extend(Row(workload, name, None, note="not installed") for name in names)
        return
    try:
        body(mod)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        done = {r.contender for r in rows if r.workload == workload}
        why = f"error: {type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")[:200]
        rows.extend(Row(workload, name, None, note=why) for name in names if name not in done)


def pytensor_mode(fn: Any) -> str:
    """How a compiled PyTensor function runs (its linker), for the note column."""
    linker = getattr(getattr(getattr(fn, "maker", None), "mode", None), "provided_linker", None)
    return f"default mode, linker {linker}" if isinstance(linker, str) else "default mode"


def peer_versions() -> str:
    """Versions of the installed peers, for the results' header."""
    parts = []
    for module in ("torch", "jax", "numba", "pytensor"):
        mod = peer(module)
        parts.append(f"{module} {getattr(mod, '__version__', '?')}" if mod else f"{module} not installed")
    return ", ".join(parts)


class Env:
    """Set environment variables for a block (restores them after)."""

    def __init__(self, **values: str | None) -> None:
        self.values = values
        self.old: dict[str, str | None] = {}

    def __enter__(self) -> Env:
        for k, v in self.values.items():
            self.old[k] = os.environ.get(k)
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        return self

    def __exit__(self, *exc: object) -> None:
        for k, v in self.old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.2f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"
