"""Derivative requests: nodes that stand for a derivative until the autodiff pass
expands them into ordinary graph nodes.

``sg.grad`` does not differentiate on the spot: it records ``grad(y, wrt, seed)``, so a
pipeline can stabilize the forward graph before autodiff runs, and so a gradient of a
graph that itself holds a gradient is expanded innermost first.
"""

from __future__ import annotations

from typing import Any

from symgrad.errors import DTypeError, ShapeError, op_error
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.shape import shape_str
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import Info, Op, register


def _grad_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    y, wrt, seed = inputs
    if wrt.dtype not in FLOATS:
        raise op_error(DTypeError, "grad", f"cannot differentiate with respect to a {wrt.dtype} "
                       "tensor", shape_str(wrt.shape))
    if seed.shape != y.shape:
        raise op_error(ShapeError, "grad", f"seed shape {shape_str(seed.shape)} differs from "
                       f"the output's {shape_str(y.shape)}")
    return Info(wrt.shape, wrt.dtype)


register(Op("grad", "transform", _grad_infer, None,
            doc="grad(y, wrt, seed): seed^T dy/dwrt, expanded by the autodiff pass."))


def _jvp_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    y, x, v = inputs
    if v.shape != x.shape:
        raise op_error(ShapeError, "jvp", f"tangent shape {shape_str(v.shape)} differs from the "
                       f"input's {shape_str(x.shape)}")
    if x.dtype not in FLOATS:
        raise op_error(DTypeError, "jvp", f"cannot differentiate with respect to {x.dtype}")
    return Info(y.shape, y.dtype if y.dtype in FLOATS else x.dtype)


register(Op("jvp", "transform", _jvp_infer, None,
            doc="jvp(y, x, v): the directional derivative (dy/dx) v, expanded by the autodiff "
            "pass in forward mode."))


def _jacobian_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    y, x = inputs
    if x.dtype not in FLOATS or y.dtype not in FLOATS:
        raise op_error(DTypeError, "jacobian", f"needs float tensors, got {y.dtype} and {x.dtype}")
    if attrs["mode"] not in ("rev", "fwd"):
        raise op_error(ShapeError, "jacobian", f"mode must be 'rev' or 'fwd', got {attrs['mode']!r}")
    return Info((*y.shape, *x.shape), y.dtype)


register(Op("jacobian", "transform", _jacobian_infer, None,
            doc="jacobian(y, x): dy/dx of shape y.shape + x.shape, expanded by the autodiff "
            "pass as one batched vjp (mode='rev') or jvp (mode='fwd') over the basis seeds."))
