"""Symbolic sizes as scalar values: ``t / x.shape[0]``, ``x.shape[0] * 2.0``,
``sg.as_tensor(x.shape[0])`` and ``sg.dim_value`` on every backend, printed readably;
misuse names the op and the user's line."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg

BACKENDS = ["numpy", "llvm", "cuda"]


def programs(x: sg.Tensor, y: sg.Tensor) -> dict[str, tuple[sg.Tensor, object]]:
    n, m = x.shape[0], y.shape[1]
    return {
        "mean_by_hand": (sg.sum(x) / n, lambda xv, yv: np.float32(xv.sum() / xv.shape[0])),
        "scale": (x * n, lambda xv, yv: xv * np.float32(xv.shape[0])),
        "size_times_float": (n * 2.0, lambda xv, yv: np.float64(xv.shape[0] * 2.0)),
        "reciprocal": (1 / n, lambda xv, yv: np.float64(1 / xv.shape[0])),
        "as_tensor": (sg.as_tensor(n), lambda xv, yv: np.int64(xv.shape[0])),
        "dim_value": (sg.dim_value(n * m, "float32"),
                      lambda xv, yv: np.float32(xv.shape[0] * yv.shape[1])),
        "size_minus_tensor": (n - x, lambda xv, yv: np.float32(xv.shape[0]) - xv),
        "sqrt": (n ** 0.5, lambda xv, yv: np.float64(np.sqrt(xv.shape[0]))),
        "two_sizes": (sg.sum(y) / (n + m), lambda xv, yv: np.float32(yv.sum() / (xv.shape[0] + yv.shape[1]))),
    }


@pytest.fixture
def shim(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "shim")
    monkeypatch.setenv("SYMGRAD_CACHE_DIR", str(tmp_path))


@pytest.mark.parametrize("backend", BACKENDS)
def test_sizes_as_values_on_every_backend(backend: str, shim: None) -> None:
    x = sg.placeholder("x", shape=("batch", 3), dtype="float32")
    y = sg.placeholder("y", shape=("batch", None), dtype="float32")
    progs = programs(x, y)
    f = sg.compile([e for e, _ in progs.values()], inputs=[x, y], backend=backend)
    rng = np.random.default_rng(1)
    for b, k in [(5, 2), (1, 7)]:
        xv = rng.standard_normal((b, 3)).astype(np.float32)
        yv = rng.standard_normal((b, k)).astype(np.float32)
        for (name, (expr, ref)), got in zip(progs.items(), f(xv, yv)):
            want = np.asarray(ref(xv, yv))  # type: ignore[operator]
            assert got.dtype == want.dtype == expr.dtype, name
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)


def test_sizes_promote_as_python_ints() -> None:
    x = sg.placeholder("x", shape=(None, 3), dtype="float32")
    i = sg.placeholder("i", shape=(None,), dtype="int32")
    n = x.shape[0]
    assert (x * n).dtype == "float32"
    assert (i + n).dtype == "int32"
    assert (n * 2.0).dtype == "float64"
    assert sg.as_tensor(n).dtype == "int64"
    assert sg.as_tensor(n, "float32").dtype == "float32"
    # sizes with ints stay sizes
    assert (n + 1) == sg.placeholder("x", shape=(None, 3), dtype="float32").shape[0] + 1
    assert not isinstance(n * 2, sg.Tensor)


def test_sizes_print_readably() -> None:
    x = sg.placeholder("x", shape=(None, 3), dtype="float32")
    e = sg.sum(x) / x.shape[0]
    assert sg.pretty(e).splitlines()[-1] == "out = sum(x) / x.shape[0]"
    assert "x.shape[0]" in str(sg.to_sympy(e))
    assert sg.pretty(1 / x.shape[0]).splitlines()[-1] == "out = 1 / x.shape[0]"


def test_misuse_names_the_op_and_the_line() -> None:
    x = sg.placeholder("x", shape=(None, 3), dtype="float32")
    n = x.shape[0]
    with pytest.raises(sg.ShapeError, match=r"broadcast_to: bad size[\s\S]*test_symbolic_sizes.py"):
        sg.full((n / 2,), 1.0)
    with pytest.raises(sg.ShapeError, match=r"reshape: bad size[\s\S]*test_symbolic_sizes.py"):
        sg.reshape(x, (n * 2.0, 3))
    with pytest.raises(sg.DTypeError, match=r"getitem: slice bounds[\s\S]*test_symbolic_sizes.py"):
        _ = x[: n / 2]
    with pytest.raises(TypeError, match="positive int"):
        _ = n // 2.0
    with pytest.raises(sg.DTypeError, match="dim: expected a size"):
        sg.dim_value(2.5)
