"""How the LLVM backend keeps compile time down on large programs, checked for the
results they give: kernels with the same body share one body function, a large program
is generated and compiled as several modules on worker threads (each loaded into its own
engine and linked through a table), and large loop bodies get loop hints (no
interleaving, the remainder folded into the vector loop)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.base import Program
from symgrad.backends.llvm import cache_stats, clear_memory_cache, codegen, jit
from symgrad.backends.lower import lower


@pytest.fixture(autouse=True)
def _cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))
    clear_memory_cache()
    yield tmp_path
    clear_memory_cache()


def chain(n: int, dtype: str = "float64") -> tuple[Any, list[Any]]:
    """Value and gradient of n steps of y = sin(y) * 1.01 + 0.1 * tanh(y)."""
    x = sg.placeholder("x", (None,), dtype)
    y = x
    for _ in range(n):
        y = sg.sin(y) * 1.01 + 0.1 * sg.tanh(y)
    f = sg.sum(y)
    return x, [f, sg.grad(f, x)]


def several_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every program of more than a few instructions compile as several modules."""
    monkeypatch.setattr(codegen, "SPLIT_WEIGHT", 100)
    monkeypatch.setattr(codegen, "PART_WEIGHT", 100)


def check(f: Any, ref: Any, sizes: tuple[int, ...] = (0, 1, 3, 7, 8, 9, 33, 1000)) -> None:
    """``f`` agrees with ``ref`` on every size (sizes around the vector width test the
    folded remainder), through the fast call and the general call."""
    for n in sizes:
        xv = np.linspace(-1.5, 1.5, n)
        want = ref(x=xv)
        for got in (f(x=xv), f._impl(xv)):
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


# -- one body per distinct kernel ------------------------------------------------------------------
def bodies(f: Any) -> int:
    """Kernel body functions defined in a compiled function's IR."""
    return len(re.findall(r'define internal i32 @"[a-z_]+_\d+\.body"', f._impl.llvm_ir))


def test_equal_kernels_share_one_body() -> None:
    a, b, c, d = (sg.placeholder(name, (13,), "float64") for name in "abcd")
    outs = [sg.sin(a) * 2.0 + 1.0, sg.sin(b) * 2.0 + 1.0,  # one body on other buffers
            sg.sin(c) * 3.0 + 1.0,  # another constant: another body
            sg.sin(sg.cast(d, "float32")) * 2.0 + 1.0]  # another type: another body
    lp = lower(Program([a, b, c, d], outs, {}))
    assert len(lp.kernels) == 4 and codegen.body_classes(lp) == [0, 0, 2, 3]
    f = sg.compile(outs, backend="llvm")
    vals = [np.linspace(-2, 2, 13) * k for k in (1, 2, 3, 4)]
    got = f(*vals)
    np.testing.assert_allclose(got[0], np.sin(vals[0]) * 2 + 1, rtol=1e-13)
    np.testing.assert_allclose(got[1], np.sin(vals[1]) * 2 + 1, rtol=1e-13)
    np.testing.assert_allclose(got[2], np.sin(vals[2]) * 3 + 1, rtol=1e-13)
    np.testing.assert_allclose(got[3], np.sin(vals[3].astype(np.float32)) * 2 + 1, rtol=1e-6)
    assert bodies(f) == 3


def test_repeated_steps_compile_each_body_once() -> None:
    x, outs = chain(100)
    f = sg.compile(outs, backend="llvm")
    classes = codegen.body_classes(f._impl.lp)
    assert bodies(f) == len(set(classes)) < len(classes)
    check(f, sg.compile(outs, backend="numpy"), sizes=(0, 5, 301))


# -- several modules -------------------------------------------------------------------------------
def test_program_in_several_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    several_modules(monkeypatch)
    x, outs = chain(40)
    f = sg.compile(outs, backend="llvm")
    assert len(f._impl.engine._ees) == 3  # one engine per module, linked by the table
    ref = sg.compile(outs, backend="numpy")
    check(f, ref)
    # the kernels one by one on two threads (a large size), then the whole program on one
    xv = np.linspace(-1.5, 1.5, 150_000)
    want = ref(x=xv)
    for threads, parallel in (("2", True), ("1", False)):
        monkeypatch.setenv("SYMGRAD_NUM_THREADS", threads)
        f._impl.reset()
        assert f._impl._state((xv.size,)).parallel == parallel
        for g, w in zip(f._impl(xv), want):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-9)  # the sum: 150000 terms


def test_several_modules_in_the_disk_cache(monkeypatch: pytest.MonkeyPatch, _cache_dir: Path) -> None:
    several_modules(monkeypatch)
    x, outs = chain(30, "float32")
    first = sg.compile(outs, backend="llvm")
    assert first._impl.cache == "built" and len(first._impl.engine._ees) > 1
    clear_memory_cache()
    second = sg.compile(outs, backend="llvm")
    assert second._impl.cache == "disk" and len(second._impl.engine._ees) == len(first._impl.engine._ees)
    xv = np.linspace(-2, 2, 37, dtype=np.float32)
    for g, w in zip(second(x=xv), first(x=xv)):
        np.testing.assert_array_equal(g, w)
    (entry,) = (_cache_dir / "llvm").glob("*/*.o")
    data = bytearray(entry.read_bytes())
    data[len(data) // 2] ^= 0x40  # a flipped bit inside one of the objects
    entry.write_bytes(bytes(data))
    clear_memory_cache()
    corrupted = cache_stats().corrupted
    third = sg.compile(outs, backend="llvm")
    assert third._impl.cache == "built" and cache_stats().corrupted == corrupted + 1
    for g, w in zip(third(x=xv), first(x=xv)):
        np.testing.assert_array_equal(g, w)


def test_parallel_compile_gives_the_objects_of_a_serial_one() -> None:
    x, outs = chain(30)
    lp = sg.compile(outs, backend="llvm")._impl.lp
    tm = jit.target_machine()
    cg = codegen.Codegen(lp, jit.process_triple(), str(tm.target_data), parts=2)
    texts = cg.texts
    assert len(texts) == 2
    one_worker = jit.optimize_to_objects(iter(texts), parts=2, threads=1)
    assert jit.optimize_to_objects(iter(texts), parts=2, threads=2) == one_worker
    with pytest.raises(RuntimeError, match="link table"):
        jit.Engine(one_worker[1:] + one_worker[1:])  # two objects, neither holding the table


# -- large loop bodies -----------------------------------------------------------------------------
def test_large_bodies_fold_the_remainder_into_the_vector_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SYMGRAD_LLVM_CHECK_BOUNDS", raising=False)  # that build has no hints
    x, outs = chain(40, "float32")
    f = sg.compile(outs, backend="llvm")
    big = [k for k in f._impl.lp.kernels if len(getattr(k, "instrs", ())) >= codegen.LARGE_BODY]
    assert big
    assert "llvm.loop.vectorize.predicate.enable" in f._impl.llvm_ir
    ref = sg.compile(outs, backend="numpy")
    for n in (0, 1, 7, 8, 9, 15, 16, 17, 100):
        xv = np.linspace(-1.5, 1.5, n, dtype=np.float32)
        (total, grad), (want_total, want_grad) = f(x=xv), ref(x=xv)
        # the sum cancels (x is symmetric): its error scales with its n terms, each below 1.2
        np.testing.assert_allclose(total, want_total, rtol=2e-5, atol=2e-5 * max(n, 1))
        np.testing.assert_allclose(grad, want_grad, rtol=2e-5, atol=1e-6)


def test_large_body_that_does_not_vectorize_compiles_quietly(capfd: pytest.CaptureFixture[str]) -> None:
    """A large body with an arg-max reduction and an integer power (LLVM vectorizes
    neither) gets the hints too; they are hints only, so nothing is printed."""
    x = sg.placeholder("x", (None, 9), "float64")
    k = sg.placeholder("k", (None, 9), "int64")
    y = x
    for _ in range(30):
        y = sg.tanh(y) * 0.9 + 0.05 * y * y
    score = y + sg.cast(k ** 3, "float64")
    outs = [sg.argmax(score, 1), sg.max(score, 1)]
    f = sg.compile(outs, backend="llvm")
    assert any(len(getattr(kern, "instrs", ())) >= codegen.LARGE_BODY for kern in f._impl.lp.kernels)
    rng = np.random.default_rng(3)
    xv = rng.standard_normal((11, 9))
    kv = rng.integers(-3, 4, (11, 9))
    got = f(x=xv, k=kv)
    want = sg.compile(outs, backend="numpy")(x=xv, k=kv)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    out, err = capfd.readouterr()
    assert err == "" and out == ""
