"""BLAS threads: a matrix product below ``blas.ONE_THREAD_BELOW`` multiply-adds runs on one
OpenBLAS thread, a larger one on ``SYMGRAD_BLAS_THREADS`` (default: OpenBLAS's own count),
on both backends; the results do not change.

The count is read from OpenBLAS itself (threadpoolctl) right after each call: the backends
set it before a product and leave it, so that is the count the product ran with.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl

import symgrad as sg
from symgrad.backends.llvm import blas

SWITCH = blas.numpy_threads()
pytestmark = pytest.mark.skipif(SWITCH is None, reason="this NumPy ships no OpenBLAS with a thread setting")
BACKENDS = ["numpy", "llvm"]


def openblas_threads() -> int:
    assert SWITCH is not None
    (info,) = [i for i in threadpoolctl.threadpool_info() if i["filepath"] == SWITCH.where]
    return int(info["num_threads"])


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    assert SWITCH is not None
    yield
    SWITCH.set(SWITCH.default)


def _shapes(work: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Operand shapes of a product of ``work`` multiply-adds (k = n = 64)."""
    assert work % 4096 == 0
    return (work // 4096, 64), (64, 64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_small_products_run_on_one_thread_and_large_ones_on_the_configured_count(backend: str) -> None:
    assert SWITCH is not None
    large = SWITCH.large.value
    a = sg.placeholder("a", (None, 64), "float32")
    b = sg.placeholder("b", (64, 64), "float32")
    f = sg.compile([a @ b, sg.sum(a, axis=0)], backend=backend)
    rng = np.random.default_rng(0)
    # just below the threshold, at it, a tiny one, then a large one again
    for work, threads in ((blas.ONE_THREAD_BELOW - 4096, 1), (blas.ONE_THREAD_BELOW, large),
                          (16 * 4096, 1), (4 * blas.ONE_THREAD_BELOW, large)):
        sa, sb = _shapes(work)
        av = rng.standard_normal(sa).astype(np.float32)
        bv = rng.standard_normal(sb).astype(np.float32)
        SWITCH.set(7)  # anything else: the product must set its own count
        got, col = f(a=av, b=bv)
        assert openblas_threads() == threads, (backend, work)
        want = av.astype(np.float64) @ bv.astype(np.float64)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
        np.testing.assert_allclose(col, av.sum(axis=0, dtype=np.float64), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batched_and_float64_products_switch_by_the_size_of_each_product(backend: str) -> None:
    """A batch of small matrices is many small products (one thread) whatever the batch."""
    a = sg.placeholder("a", (None, 32, 64), "float64")
    b = sg.placeholder("b", (None, 64, 48), "float64")
    f = sg.compile(a @ b, backend=backend)
    rng = np.random.default_rng(1)
    av, bv = rng.standard_normal((300, 32, 64)), rng.standard_normal((300, 64, 48))
    got = f(a=av, b=bv)
    assert openblas_threads() == 1
    np.testing.assert_allclose(got, av @ bv, rtol=1e-12, atol=1e-12)


def test_the_library_is_called_only_when_the_wanted_count_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SWITCH is not None
    calls: list[int] = []
    setter = SWITCH._set
    monkeypatch.setattr(SWITCH, "_set", lambda n: (calls.append(n), setter(n)))
    a = sg.placeholder("a", (None, 64), "float32")
    f = sg.compile(a @ a.T, backend="numpy")
    small = np.ones((8, 64), np.float32)
    SWITCH.set(2)
    calls.clear()
    for _ in range(5):
        f(a=small)
    assert calls == [1] and openblas_threads() == 1
    # the generated code keeps the same record (C ints shared with it): no call from here
    g = sg.compile(a @ a.T + 1.0, backend="llvm")
    np.testing.assert_allclose(g(a=small), small @ small.T + 1.0)
    assert calls == [1] and SWITCH.current.value == 1
    assert 1024 * 64 * 1024 >= blas.ONE_THREAD_BELOW
    g(a=np.ones((1024, 64), np.float32))
    assert SWITCH.current.value == SWITCH.large.value == openblas_threads()


def _run(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent("""
        import numpy as np, symgrad as sg, threadpoolctl
        from symgrad.backends.llvm import blas
        a = sg.placeholder("a", (None, 256), "float32")
        b = sg.placeholder("b", (256, 256), "float32")
        x = np.ones((1024, 256), np.float32)
        seen = []
        for backend in ("numpy", "llvm"):
            out = sg.compile(a @ b, backend=backend)(a=x, b=np.ones((256, 256), np.float32))
            assert float(out[0, 0]) == 256.0
            (info,) = [i for i in threadpoolctl.threadpool_info()
                       if i["filepath"] == blas.numpy_threads().where]
            seen.append(info["num_threads"])
        print(*seen)
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "SYMGRAD_CACHE_DIR": str(tmp_path), **env})


def test_symgrad_blas_threads_sets_the_count_of_large_products(tmp_path: Path) -> None:
    for threads in ("1", "3"):
        run = _run({"SYMGRAD_BLAS_THREADS": threads}, tmp_path)
        assert run.returncode == 0, run.stderr
        assert run.stdout.split() == [threads, threads]
    run = _run({"SYMGRAD_BLAS_THREADS": "many"}, tmp_path)
    assert run.returncode != 0 and "SYMGRAD_BLAS_THREADS must be a positive integer, got 'many'" in run.stderr
