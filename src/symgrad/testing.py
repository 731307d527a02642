"""Testing helpers: finite-difference gradient checks and cross-backend checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import symgrad.ops.api as F
from symgrad.compile import compile
from symgrad.derivatives import grad
from symgrad.ir.graph import placeholders
from symgrad.ir.tensor import Tensor, constant, placeholder
from symgrad.passes.rewrite import rewrite

# relative tolerance by the dtype the graph computes in
GRAD_RTOL = {"float64": 1e-6, "float32": 2e-3}


def to_float64(outputs: Sequence[Tensor]) -> list[Tensor]:
    """The same graph computing in float64: float placeholders, constants and casts widened."""

    def widen(node: Tensor, inputs: tuple[Tensor, ...]) -> Tensor | None:
        name = node.op.name
        if name == "placeholder" and node.dtype == "float32":
            return placeholder(node.name or "x", node.shape, "float64")
        if name == "constant" and node.dtype == "float32":
            return constant(node.attr("value").array.astype(np.float64))
        if name == "cast" and node.attr("dtype") == "float32":
            return F.cast(inputs[0], "float64")
        if name == "dim" and node.dtype == "float32":
            return F.dim_value(node.attr("size"), "float64")
        if name == "one_hot" and node.attr("dtype") == "float32":
            return F.one_hot(inputs[0], node.attr("depth"), "float64")
        return None

    return rewrite(outputs, widen)


def _scalarize(outputs: Sequence[Tensor], rng: np.random.Generator) -> tuple[Tensor, list[np.ndarray]]:
    """One scalar from several outputs: sum_k <r_k, y_k> with fixed random r_k."""
    total: Tensor | None = None
    weights = []
    for y in outputs:
        shape = tuple(int(s) if isinstance(s, int) else 1 for s in y.shape)
        r = rng.standard_normal(shape)
        weights.append(r)
        term = F.sum(F.mul(y, constant(r.astype(y.dtype))))
        total = term if total is None else F.add(total, term)
    assert total is not None
    return total, weights


def check_grad(
    outputs: Tensor | Sequence[Tensor],
    inputs: Sequence[Tensor] | None,
    values: Mapping[str, Any],
    *,
    eps: float = 1e-6,
    rtol: float | None = None,
    atol: float = 1e-8,
    seed: int = 0,
    backend: str = "numpy",
    pipeline: str | None = None,
) -> None:
    """Compare symbolic gradients with float64 central finite differences.

    For each float input, the directional derivative of a random projection of the
    outputs along a random direction is compared with ``<grad, direction>``. The graph is
    first widened to float64 (so the differences are accurate); the gradient in the
    graph's own dtype is then compared with the float64 one within a dtype-aware
    tolerance. Raises ``AssertionError`` with the numbers on a mismatch.
    """
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ins = list(inputs) if inputs is not None else placeholders(outs)
    float_ins = [t for t in ins if t.dtype in ("float32", "float64")]
    rng = np.random.default_rng(seed)
    scalar, _ = _scalarize(outs, rng)

    wide = to_float64([scalar, *ins])
    wscalar, wins = wide[0], wide[1:]
    wfloat = [w for w, t in zip(wins, ins) if t.dtype in ("float32", "float64")]
    f64 = compile([wscalar, *grad(wscalar, wfloat)], wins, backend=backend, pipeline=pipeline)
    vals = [np.asarray(values[t.label], dtype=np.float64 if t.dtype in ("float32", "float64")
                       else t.dtype) for t in ins]
    base = f64(*vals)
    grads64 = base[1:]

    for k, t in enumerate(float_ins):
        pos = ins.index(t)
        direction = rng.standard_normal(vals[pos].shape)
        plus = list(vals)
        minus = list(vals)
        plus[pos] = vals[pos] + eps * direction
        minus[pos] = vals[pos] - eps * direction
        fd = (f64(*plus)[0] - f64(*minus)[0]) / (2 * eps)
        sym = float(np.sum(grads64[k] * direction))
        tol = (rtol or 1e-5) * max(1.0, abs(fd), abs(sym)) + atol
        assert np.isfinite(sym), f"gradient for {t.label!r} is not finite: {grads64[k]}"
        assert abs(fd - sym) <= tol, (
            f"gradient for {t.label!r}: finite differences give {fd!r}, symbolic {sym!r} "
            f"(difference {abs(fd - sym):.3g}, tolerance {tol:.3g})"
        )

    if any(t.dtype == "float32" for t in float_ins):
        native = compile([scalar, *grad(scalar, float_ins)], ins, backend=backend, pipeline=pipeline)
        got = native(*[np.asarray(values[t.label]).astype(t.dtype) for t in ins])[1:]
        for t, g32, g64 in zip(float_ins, got, grads64):
            r = rtol or GRAD_RTOL[t.dtype]
            scale = max(1.0, float(np.max(np.abs(g64))) if g64.size else 1.0)
            err = float(np.max(np.abs(g32 - g64))) if g64.size else 0.0
            assert err <= r * scale, (
                f"{t.dtype} gradient for {t.label!r} differs from float64 by {err:.3g} "
                f"(tolerance {r * scale:.3g})"
            )


def check_backends(
    outputs: Tensor | Sequence[Tensor],
    values: Mapping[str, Any],
    backends: Sequence[str],
    *,
    reference: str = "numpy",
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """Run the same graph on each backend and compare with the reference backend."""
    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    ref_f = compile(outs, backend=reference)
    ref = ref_f(**values)
    for b in backends:
        got = compile(outs, backend=b)(**values)
        for k, (r, g, o) in enumerate(zip(ref, got, outs)):
            assert g.shape == r.shape and g.dtype == r.dtype, (
                f"backend {b}, output {k}: {g.dtype}{g.shape} vs reference {r.dtype}{r.shape}")
            rt = rtol if rtol is not None else (1e-5 if o.dtype == "float32" else 1e-12)
            at = atol if atol is not None else (1e-6 if o.dtype == "float32" else 1e-12)
            np.testing.assert_allclose(g, r, rtol=rt, atol=at, err_msg=f"backend {b}, output {k}")


def check_adjoint(
    y: Tensor,
    x: Tensor,
    values: Mapping[str, Any],
    *,
    seed: int = 0,
    rtol: float = 1e-9,
    backend: str = "numpy",
) -> None:
    """Check that forward and reverse mode agree: <J v, w> == <v, J^T w> for random v, w.

    Runs in float64 (the graph is widened first) at the point ``values``.
    """
    from symgrad.derivatives import jvp, vjp

    wide = to_float64([y, x, *placeholders([y])])
    wy, wx, wins = wide[0], wide[1], wide[2:]
    rng = np.random.default_rng(seed)
    v = constant(rng.standard_normal(_static(wx.shape, "x")))
    w = constant(rng.standard_normal(_static(wy.shape, "y")))
    jv = jvp(wy, wx, v)
    jtw = vjp(wy, wx, w)
    lhs_t = F.sum(F.mul(jv, w))
    rhs_t = F.sum(F.mul(v, jtw))
    f = compile([lhs_t, rhs_t], wins, backend=backend)
    lhs, rhs = f(*[np.asarray(values[t.label]) for t in wins])
    assert abs(lhs - rhs) <= rtol * max(1.0, abs(lhs), abs(rhs)), (
        f"forward and reverse mode disagree: <Jv, w> = {lhs!r}, <v, J^T w> = {rhs!r}")


def _static(shape: tuple[Any, ...], what: str) -> tuple[int, ...]:
    if not all(isinstance(s, int) for s in shape):
        raise ValueError(f"check_adjoint needs a static shape for {what}, got {shape}")
    return tuple(int(s) for s in shape)
