"""Shared benchmark helpers: timing, reference checks, peers, result rows.

Every contender is first checked against a float64 reference (a failed check is reported
and the contender is not timed), then timed: a warm-up call, then repeated calls until
both ``min_runs`` calls and ``min_seconds`` have passed; the median is reported (and the
minimum, which is less sensitive to other load on the machine).
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


def timeit(fn: Callable[[], Any], min_runs: int = 7, min_seconds: float = 1.0,
           max_runs: int = 100_000) -> tuple[float, float]:
    """(median, min) seconds per call of ``fn`` after one warm-up call."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - start < min_seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


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
