"""Neural-network functions and losses (``sg.nn``).

Convolution and pooling call the primitive ops declared in :mod:`symgrad.ops.nn_ops`
(layout NCHW, weights OIHW). The losses are compositions of primitive ops, so their
gradients come from the ops' rules and read as the textbook formulas (for example
``softmax(z) - onehot(y)`` for cross-entropy on logits).

Every loss takes ``reduction``: ``"mean"`` (the default: the mean over every element of
the per-example loss, which for a batch is the batch mean), ``"sum"`` or ``"none"`` (the
per-example losses).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from symgrad.errors import DTypeError, ShapeError, op_error, user_location
from symgrad.ir.dtypes import FLOATS, INTS, float_of, promote
from symgrad.ir.shape import Shape, shape_str
from symgrad.ir.tensor import Tensor
from symgrad.ops import api as F
from symgrad.ops.api import log_softmax, relu, sigmoid, softmax, softplus, tanh
from symgrad.ops.base import OPS, normalize_axes

__all__ = [
    "avg_pool2d",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "conv2d",
    "cross_entropy",
    "log_softmax",
    "max_pool2d",
    "mse",
    "nll_loss",
    "relu",
    "sigmoid",
    "softmax",
    "softplus",
    "tanh",
]

TensorLike = Any


# -- argument helpers ------------------------------------------------------------------------
def _pair(fn: str, name: str, value: Any, lowest: int) -> tuple[int, int]:
    items = (value, value) if isinstance(value, (int, np.integer)) else value
    try:
        pair = tuple(items)
    except TypeError:
        pair = ()
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                                 and v >= lowest for v in pair):
        raise op_error(ShapeError, fn, f"{name} must be an int or a pair of ints >= {lowest}, "
                       f"got {value!r}")
    return (int(pair[0]), int(pair[1]))


def _as_float(*xs: TensorLike) -> list[Tensor]:
    """The operands as tensors of one float dtype (NumPy promotion, then float)."""
    ts = [F.as_tensor(x) for x in xs]
    dtype = float_of(promote(*[t.dtype for t in ts]))
    return [F.cast(t, dtype) for t in ts]


def _pred_target(pred: TensorLike, target: TensorLike) -> list[Tensor]:
    """Prediction and target in one float dtype: integer or bool targets take the
    prediction's dtype; two float dtypes promote."""
    p, t = F.as_tensor(pred), F.as_tensor(target)
    if t.dtype not in FLOATS:
        (pf,) = _as_float(p)
        return [pf, F.cast(t, pf.dtype)]
    return _as_float(p, t)


def _check_reduction(fn: str, reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{fn}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}"
                         f"\n  at {user_location()}")


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return F.mean(loss)
    if reduction == "sum":
        return F.sum(loss)
    return loss


def _match_shapes(fn: str, what: str, got: Shape, want: Shape, shapes: str) -> None:
    """``got`` must equal ``want``: static sizes now; symbolic sizes when the function is
    called (the broadcast in the loss adds a run-time check)."""
    if len(got) != len(want):
        raise op_error(ShapeError, fn, f"{what} must have shape {shape_str(want)}, got rank "
                       f"{len(got)}", shapes)
    for axis, (a, b) in enumerate(zip(got, want)):
        if a == b:
            continue
        if isinstance(a, int) and isinstance(b, int):
            raise op_error(ShapeError, fn, f"{what} must have shape {shape_str(want)}: axis "
                           f"{axis} has size {a}, expected {b}", shapes)
        if a == 1 or b == 1:  # a static 1 would broadcast silently against a symbolic size
            raise op_error(ShapeError, fn, f"{what}: axis {axis} has size {a}, expected {b}; "
                           "give both the same (symbolic) size", shapes)


# -- convolution and pooling -----------------------------------------------------------------
def conv2d(x: TensorLike, w: TensorLike, b: TensorLike | None = None, stride: Any = 1,
           padding: Any = 0, dilation: Any = 1) -> Tensor:
    """2-D convolution (cross-correlation, as in deep-learning libraries).

    Parameters
    ----------
    x : input of shape (N, C, H, W); any size may be symbolic.
    w : weights of shape (O, C, kh, kw), kernel sizes static.
    b : optional bias of shape (O,).
    stride, dilation : an int or an (h, w) pair, >= 1.
    padding : an int or an (h, w) pair of zeros added on both sides; ``"valid"`` (0) or
        ``"same"`` (output size = input size when the stride is 1; needs an odd
        dilated kernel extent).

    Returns
    -------
    (N, O, Ho, Wo) with ``Ho = (H + 2 p - d (kh - 1) - 1) // s + 1`` (likewise Wo).
    """
    xt, wt = _as_float(x, w)
    s = _pair("conv2d", "stride", stride, 1)
    d = _pair("conv2d", "dilation", dilation, 1)
    if isinstance(padding, str):
        if padding == "valid":
            p = (0, 0)
        elif padding == "same" and wt.ndim == 4:
            spans = [d[i] * (k - 1) if isinstance(k, int) else 1 for i, k in enumerate(wt.shape[2:])]
            if any(span % 2 for span in spans):
                raise op_error(ShapeError, "conv2d", "padding='same' needs an odd dilated kernel "
                               "extent", shape_str(wt.shape))
            p = (spans[0] // 2, spans[1] // 2)
        else:
            raise op_error(ShapeError, "conv2d", f"padding must be an int, a pair, 'valid' or "
                           f"'same', got {padding!r}", shape_str(wt.shape))
    else:
        p = _pair("conv2d", "padding", padding, 0)
    y = OPS["conv2d"](xt, wt, stride=s, padding=p, dilation=d)
    if b is None:
        return y
    (bt,) = _as_float(b)
    if bt.ndim != 1 or (isinstance(bt.shape[0], int) and isinstance(wt.shape[0], int)
                        and bt.shape[0] != wt.shape[0]):
        raise op_error(ShapeError, "conv2d", f"bias must have shape ({wt.shape[0]},)",
                       f"w {shape_str(wt.shape)}, b {shape_str(bt.shape)}")
    return F.add(y, F.reshape(bt, (1, bt.shape[0], 1, 1)))


def _pool(name: str, x: TensorLike, kernel_size: Any, stride: Any, padding: Any) -> Tensor:
    (xt,) = _as_float(x)
    k = _pair(name, "kernel_size", kernel_size, 1)
    s = k if stride is None else _pair(name, "stride", stride, 1)
    p = _pair(name, "padding", padding, 0)
    return OPS[name](xt, kernel=k, stride=s, padding=p)


def max_pool2d(x: TensorLike, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Max over ``kernel_size`` windows of an (N, C, H, W) input, moved by ``stride``
    (default: the kernel size) over the input padded with -inf by ``padding`` (at most half
    the kernel). The gradient goes wholly to the FIRST maximum of each window in row-major
    order."""
    return _pool("max_pool2d", x, kernel_size, stride, padding)


def avg_pool2d(x: TensorLike, kernel_size: Any, stride: Any = None, padding: Any = 0) -> Tensor:
    """Mean over ``kernel_size`` windows of an (N, C, H, W) input zero-padded by ``padding``
    (at most half the kernel). Padding counts: every window is divided by kh*kw
    (``count_include_pad=True``)."""
    return _pool("avg_pool2d", x, kernel_size, stride, padding)


# -- losses -------------------------------------------------------------------------------------
def _nll(fn: str, logp: Tensor, labels: Tensor, reduction: str, axis: int) -> Tensor:
    shapes = f"{shape_str(logp.shape)}, labels {shape_str(labels.shape)}"
    depth = logp.shape[axis]
    if not isinstance(depth, int):
        raise op_error(ShapeError, fn, f"the class axis {axis} must have a static size with "
                       f"integer labels, got {depth}", shapes)
    want = logp.shape[:axis] + logp.shape[axis + 1:]
    _match_shapes(fn, "labels", labels.shape, want, shapes)
    hot = F.moveaxis(F.one_hot(labels, depth, "bool"), -1, axis)
    # select, not multiply: a -inf log-probability of another class stays out of the sum
    per = F.neg(F.sum(F.where(hot, logp, 0), axis))
    return _reduce(per, reduction)


def nll_loss(log_probs: TensorLike, labels: TensorLike, reduction: str = "mean",
             axis: int = -1) -> Tensor:
    """Negative log-likelihood ``-log_probs[..., label, ...]`` along ``axis`` for integer
    labels (a label outside ``[0, classes)`` raises when the function is called)."""
    _check_reduction("nll_loss", reduction)
    (lp,) = _as_float(log_probs)
    lab = F.as_tensor(labels)
    if lab.dtype not in INTS:
        raise op_error(DTypeError, "nll_loss", f"labels must be integers, got {lab.dtype}",
                       shape_str(lab.shape))
    (ax,) = normalize_axes("nll_loss", axis, lp.ndim, lp.shape)
    return _nll("nll_loss", lp, lab, reduction, ax)


def cross_entropy(logits: TensorLike, labels: TensorLike, reduction: str = "mean",
                  axis: int = -1) -> Tensor:
    """Softmax cross-entropy of ``logits`` along ``axis``.

    ``labels`` are integer class indices (the logits' shape without ``axis``; a label
    outside ``[0, classes)`` raises when the function is called) or probabilities of the
    logits' shape. Integer labels: ``-log_softmax(z)[y]``, whose gradient is
    ``softmax(z) - onehot(y)``; probabilities p: ``-sum(p * log_softmax(z))``, gradient
    ``softmax(z) * sum(p) - p``. Both are exact for any finite logits (log_softmax is
    shifted by the max); with integer labels a ``-inf`` logit of another class is allowed.
    """
    fn = "cross_entropy"
    _check_reduction(fn, reduction)
    lab = F.as_tensor(labels)
    z = F.as_tensor(logits)
    if z.ndim == 0:
        raise op_error(ShapeError, fn, "logits must have a class axis", shape_str(z.shape))
    (ax,) = normalize_axes(fn, axis, z.ndim, z.shape)
    if lab.dtype in INTS:
        (zf,) = _as_float(z)
        return _nll(fn, log_softmax(zf, ax), lab, reduction, ax)
    if lab.dtype not in FLOATS:
        raise op_error(DTypeError, fn, f"labels must be integers or float probabilities, got "
                       f"{lab.dtype}", shape_str(lab.shape))
    zf, p = _pred_target(z, lab)
    _match_shapes(fn, "probability targets", p.shape, zf.shape,
                  f"{shape_str(zf.shape)}, targets {shape_str(p.shape)}")
    per = F.neg(F.sum(F.mul(p, log_softmax(zf, ax)), ax))
    return _reduce(per, reduction)


def mse(pred: TensorLike, target: TensorLike, reduction: str = "mean") -> Tensor:
    """Squared error ``(pred - target)**2``; shapes must match (no silent broadcasting)."""
    _check_reduction("mse", reduction)
    p, t = _pred_target(pred, target)
    _match_shapes("mse", "target", t.shape, p.shape,
                  f"pred {shape_str(p.shape)}, target {shape_str(t.shape)}")
    d = F.sub(p, t)
    return _reduce(F.mul(d, d), reduction)


BCE_EPS = 1e-7


def binary_cross_entropy(probs: TensorLike, targets: TensorLike, reduction: str = "mean",
                         eps: float = BCE_EPS) -> Tensor:
    """``-(t log p + (1 - t) log(1 - p))`` for probabilities ``p``.

    Both logarithms' arguments, ``p`` and ``1 - p``, are held at ``eps`` or more
    (``eps = 1e-7`` by default, in either dtype), so the loss is at most ``-log(eps)``
    (about 16.1) and never inf; where an argument is below ``eps`` its gradient is 0 (the
    clip's convention). :func:`binary_cross_entropy_with_logits` on logits is exact and
    needs no clipping.
    """
    _check_reduction("binary_cross_entropy", reduction)
    if not 0 < eps < 0.5:
        raise ValueError(f"binary_cross_entropy: eps must be in (0, 0.5), got {eps!r}"
                         f"\n  at {user_location()}")
    p, t = _pred_target(probs, targets)
    _match_shapes("binary_cross_entropy", "targets", t.shape, p.shape,
                  f"probs {shape_str(p.shape)}, targets {shape_str(t.shape)}")
    log_p = F.log(F.maximum(p, eps))
    log_q = F.log(F.maximum(F.sub(1.0, p), eps))
    per = F.neg(F.add(F.mul(t, log_p), F.mul(F.sub(1.0, t), log_q)))
    return _reduce(per, reduction)


def binary_cross_entropy_with_logits(logits: TensorLike, targets: TensorLike,
                                     reduction: str = "mean") -> Tensor:
    """Binary cross-entropy of ``sigmoid(z)``, computed as ``softplus(z) - t z``: exact and
    finite for any finite logits. Gradient: ``sigmoid(z) - t``."""
    _check_reduction("binary_cross_entropy_with_logits", reduction)
    z, t = _pred_target(logits, targets)
    _match_shapes("binary_cross_entropy_with_logits", "targets", t.shape, z.shape,
                  f"logits {shape_str(z.shape)}, targets {shape_str(t.shape)}")
    return _reduce(F.sub(softplus(z), F.mul(t, z)), reduction)
from symgrad.layers import *  # noqa: E402,F401,F403  (layers: sg.nn.Dense, ...)
