"""Derivative requests: ``grad``, ``vjp``, ``jvp``, ``jacobian``, ``hessian``, ``hvp``.

Each returns ordinary symbolic tensors (``grad``/``jvp`` nodes that the autodiff pass
expands), so derivatives compose: the gradient of a gradient is a gradient request on a
graph that holds one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

import symgrad.ops.api as F
from symgrad.errors import GradientError, ShapeError, user_location
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.graph import toposort_by_creation
from symgrad.ir.shape import shape_str
from symgrad.ir.tensor import Tensor, constant
from symgrad.ops.base import OPS


def _check_connected(y: Tensor, wrts: Sequence[Tensor]) -> None:
    reach = {id(n) for n in toposort_by_creation([y])}
    for w in wrts:
        if id(w) not in reach:
            label = w.name or w.op.name
            raise GradientError(f"grad: the output does not depend on {label!r} "
                                f"(disconnected='raise')\n  at {user_location()}")


def grad(
    y: Tensor,
    wrt: Tensor | Sequence[Tensor],
    seed: Any = None,
    *,
    disconnected: str = "zero",
) -> Any:
    """Gradient of ``y`` with respect to ``wrt`` (one tensor in, one out; a list in, a list out).

    ``y`` must be a scalar unless ``seed`` (a cotangent of y's shape) is given; then the
    result is ``seed^T dy/dwrt``. Inputs ``y`` does not depend on get zeros, or raise
    :class:`GradientError` with ``disconnected="raise"``.
    """
    if not isinstance(y, Tensor):
        raise TypeError(f"grad: y must be a symbolic tensor, got {type(y).__name__}")
    single = isinstance(wrt, Tensor)
    wrts: list[Tensor] = [wrt] if isinstance(wrt, Tensor) else list(wrt)
    if any(not isinstance(w, Tensor) for w in wrts):
        raise TypeError("grad: wrt must be a tensor or a list of tensors")
    if y.dtype not in FLOATS:
        raise GradientError(f"grad: cannot differentiate a {y.dtype} output\n  at {user_location()}")
    if seed is None:
        if y.shape != ():
            raise GradientError(
                f"grad: the output has shape {shape_str(y.shape)}; grad needs a scalar output "
                f"or a seed cotangent of that shape (use sg.vjp, or sum the output first)"
                f"\n  at {user_location()}"
            )
        seed_t = constant(np.asarray(1, dtype=y.dtype))
    else:
        seed_t = F.as_tensor(seed, y.dtype)
        if seed_t.shape != y.shape:
            if seed_t.ndim <= y.ndim:
                seed_t = F.broadcast_to(seed_t, y.shape)
            else:
                raise ShapeError(f"grad: seed shape {shape_str(seed_t.shape)} does not match the "
                                 f"output's {shape_str(y.shape)}\n  at {user_location()}")
    if disconnected not in ("zero", "raise"):
        raise ValueError("disconnected must be 'zero' or 'raise'")
    if disconnected == "raise":
        _check_connected(y, wrts)
    outs = [OPS["grad"](y, w, seed_t) for w in wrts]
    return outs[0] if single else outs


def vjp(y: Tensor, x: Tensor | Sequence[Tensor], u: Any) -> Any:
    """u^T J: the cotangent of ``x`` for cotangent ``u`` of ``y`` (shape of x)."""
    return grad(y, x, seed=u)


def jvp(y: Tensor, x: Tensor, v: Any) -> Tensor:
    """J v: the change of ``y`` along direction ``v`` of ``x`` (shape of y), forward mode."""
    vt = F.as_tensor(v, x.dtype)
    if vt.shape != x.shape:
        vt = F.broadcast_to(vt, x.shape)
    return OPS["jvp"](y, x, vt)


def jacobian(y: Tensor, x: Tensor, mode: str = "rev") -> Tensor:
    """dy/dx with shape ``y.shape + x.shape``.

    Built as one batched reverse-mode pass over the basis seeds of y (``mode="rev"``) or one
    batched forward-mode pass over the basis tangents of x (``mode="fwd"``); never as one
    copy of the backward graph per row.
    """
    if not isinstance(y, Tensor) or not isinstance(x, Tensor):
        raise TypeError("jacobian: y and x must be symbolic tensors")
    if y.dtype not in FLOATS:
        y = F.cast(y, x.dtype)
    return OPS["jacobian"](y, x, mode=mode)


def hessian(f: Tensor, x: Tensor) -> Tensor:
    """d2f/dx2 for scalar ``f``, shape ``x.shape + x.shape`` (forward over reverse)."""
    if f.shape != ():
        raise GradientError(f"hessian: f must be a scalar, got shape {shape_str(f.shape)}"
                            f"\n  at {user_location()}")
    return jacobian(grad(f, x), x, mode="fwd")


def hvp(f: Tensor, x: Tensor, v: Any) -> Tensor:
    """The Hessian of scalar ``f`` times ``v`` (shape of x), forward over reverse."""
    if f.shape != ():
        raise GradientError(f"hvp: f must be a scalar, got shape {shape_str(f.shape)}"
                            f"\n  at {user_location()}")
    return jvp(grad(f, x), x, v)
