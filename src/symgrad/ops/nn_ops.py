"""nn ops: 2-D convolution and pooling, with the ops that close them under differentiation.

Layout is NCHW for activations and OIHW for convolution weights. ``stride``, ``padding``
and ``dilation`` are ``(height, width)`` pairs of ints. Along one spatial axis of size
``H``, a window of ``k`` taps spaced ``d`` apart (effective extent ``d(k-1)+1``) moved in
steps of ``s`` over the input padded by ``p`` on both sides gives

    Ho = (H + 2p - d(k-1) - 1) // s + 1

outputs. Every size may be symbolic (batch, channels and the spatial sizes); the window
must fit in the padded input (``d(k-1)+1 <= H + 2p``), an error at build time when the
sizes are static and a check at call time otherwise. Kernel sizes are static.

Convolution is bilinear, ``y = B(x, w)``, so its pullback is two more bilinear maps,
``conv2d_grad_input(g, w) = B_x^T g`` and ``conv2d_grad_weight(x, g) = B_w^T g``; the
pullbacks of those two are again ``conv2d`` and one another, so derivatives of any order
stay within these three ops. Pooling works the same way: ``max_pool2d`` routes its
cotangent with ``max_pool2d_grad`` (a scatter to the window maxima), whose adjoint in the
cotangent is ``max_pool2d_gather``; ``avg_pool2d`` and ``avg_pool2d_grad`` are each the
other's adjoint.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import symgrad.ops.api as F
from symgrad.errors import DTypeError, ShapeError, op_error
from symgrad.ir import shape as S
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.shape import Size, shape_str
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import Check, Info, Op, register, shapes_of

Pair = tuple[int, int]


# -- shape rules -----------------------------------------------------------------------------
def _check_pairs(op: str, attrs: dict[str, Any], names: tuple[str, ...], shapes: str) -> None:
    lowest = {"stride": 1, "dilation": 1, "kernel": 1, "padding": 0}
    for key in names:
        v = attrs.get(key)
        ok = (isinstance(v, tuple) and len(v) == 2
              and all(isinstance(i, int) and not isinstance(i, bool) and i >= lowest[key] for i in v))
        if not ok:
            raise op_error(ShapeError, op, f"{key} must be a pair of ints >= {lowest[key]}, got {v!r}",
                           shapes)


def _floats(op: str, inputs: tuple[Tensor, ...]) -> str:
    dtypes = {t.dtype for t in inputs}
    if len(dtypes) != 1 or not dtypes <= FLOATS:
        raise op_error(DTypeError, op, "operands must share a float dtype, got "
                       + " and ".join(t.dtype for t in inputs), shapes_of(inputs))
    return inputs[0].dtype


def _rank4(op: str, inputs: tuple[Tensor, ...], names: tuple[str, ...]) -> None:
    for t, name in zip(inputs, names):
        if t.ndim != 4:
            raise op_error(ShapeError, op, f"{name} must have rank 4, got rank {t.ndim}",
                           shapes_of(inputs))


def _same(op: str, a: Size, b: Size, what: str, shapes: str, checks: list[Check]) -> None:
    """``a == b``: an error now when both are static, else a check at call time."""
    if a == b:
        return
    if isinstance(a, int) and isinstance(b, int):
        raise op_error(ShapeError, op, f"{what}: {a} vs {b}", shapes)
    checks.append(("==", a, b, f"{op}: {what}"))


def _out_size(op: str, size: Size, k: int, s: int, p: int, d: int, axis: str, shapes: str,
              checks: list[Check]) -> Size:
    """Number of window positions along one axis; the window must fit the padded input."""
    extent = d * (k - 1) + 1
    padded = S.add(size, 2 * p)
    if isinstance(padded, int):
        if extent > padded:
            raise op_error(ShapeError, op, f"the window spans {extent} along {axis} but the padded "
                           f"input has only {padded}", shapes)
    else:
        checks.append(("<=", extent, padded, f"{op}: the window spans {extent} along {axis}, "
                                             f"more than the padded input"))
    return S.add(S.floordiv(S.sub(padded, extent), s), 1)


def _static_kernel(op: str, w: Tensor, shapes: str) -> Pair:
    kh, kw = w.shape[2], w.shape[3]
    if not isinstance(kh, int) or not isinstance(kw, int) or kh < 1 or kw < 1:
        raise op_error(ShapeError, op, f"kernel sizes must be static and >= 1, got {kh} x {kw}", shapes)
    return kh, kw


def _conv_out_hw(op: str, hw: tuple[Size, Size], kernel: Pair, attrs: dict[str, Any], shapes: str,
                 checks: list[Check]) -> tuple[Size, Size]:
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    return (_out_size(op, hw[0], kernel[0], sh, ph, dh, "H", shapes, checks),
            _out_size(op, hw[1], kernel[1], sw, pw, dw, "W", shapes, checks))


def _conv_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    x, w = inputs
    shapes = f"x {shape_str(x.shape)}, w {shape_str(w.shape)}"
    dtype = _floats("conv2d", inputs)
    _rank4("conv2d", inputs, ("input (N, C, H, W)", "weight (O, C, kh, kw)"))
    _check_pairs("conv2d", attrs, ("stride", "padding", "dilation"), shapes)
    checks: list[Check] = []
    _same("conv2d", x.shape[1], w.shape[1], "input channels of x and w differ", shapes, checks)
    kernel = _static_kernel("conv2d", w, shapes)
    ho, wo = _conv_out_hw("conv2d", (x.shape[2], x.shape[3]), kernel, attrs, shapes, checks)
    return Info((x.shape[0], w.shape[0], ho, wo), dtype, tuple(checks))


def _conv_grad_input_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    g, w = inputs
    op = "conv2d_grad_input"
    shapes = f"g {shape_str(g.shape)}, w {shape_str(w.shape)}"
    dtype = _floats(op, inputs)
    _rank4(op, inputs, ("cotangent (N, O, Ho, Wo)", "weight (O, C, kh, kw)"))
    _check_pairs(op, attrs, ("stride", "padding", "dilation"), shapes)
    h, wd = attrs["in_hw"]
    checks: list[Check] = []
    _same(op, g.shape[1], w.shape[0], "output channels of g and w differ", shapes, checks)
    kernel = _static_kernel(op, w, shapes)
    ho, wo = _conv_out_hw(op, (h, wd), kernel, attrs, shapes, checks)
    _same(op, g.shape[2], ho, f"cotangent height vs the output height for input height {h}",
          shapes, checks)
    _same(op, g.shape[3], wo, f"cotangent width vs the output width for input width {wd}",
          shapes, checks)
    return Info((g.shape[0], w.shape[1], h, wd), dtype, tuple(checks))


def _conv_grad_weight_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    x, g = inputs
    op = "conv2d_grad_weight"
    shapes = f"x {shape_str(x.shape)}, g {shape_str(g.shape)}"
    dtype = _floats(op, inputs)
    _rank4(op, inputs, ("input (N, C, H, W)", "cotangent (N, O, Ho, Wo)"))
    _check_pairs(op, attrs, ("stride", "padding", "dilation"), shapes)
    o, c, kh, kw = attrs["w_shape"]
    checks: list[Check] = []
    if not isinstance(kh, int) or not isinstance(kw, int) or kh < 1 or kw < 1:
        raise op_error(ShapeError, op, f"kernel sizes must be static and >= 1, got {kh} x {kw}", shapes)
    _same(op, x.shape[0], g.shape[0], "batch sizes of x and g differ", shapes, checks)
    _same(op, x.shape[1], c, "input channels of x and w_shape differ", shapes, checks)
    _same(op, g.shape[1], o, "output channels of g and w_shape differ", shapes, checks)
    ho, wo = _conv_out_hw(op, (x.shape[2], x.shape[3]), (kh, kw), attrs, shapes, checks)
    _same(op, g.shape[2], ho, "cotangent height vs the output height", shapes, checks)
    _same(op, g.shape[3], wo, "cotangent width vs the output width", shapes, checks)
    return Info(tuple(attrs["w_shape"]), dtype, tuple(checks))


# -- NumPy references ------------------------------------------------------------------------
def _pad(x: np.ndarray, padding: Pair, value: float = 0.0) -> np.ndarray:
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _tap(xp: np.ndarray, a: int, b: int, out_hw: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """View (N, C, Ho, Wo) of the padded input under tap (a, b) of every window."""
    (ho, wo), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return xp[:, :, a * dh: a * dh + sh * (ho - 1) + 1: sh, b * dw: b * dw + sw * (wo - 1) + 1: sw]


def _out_hw(xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair) -> Pair:
    return ((xp.shape[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1,
            (xp.shape[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1)


def _im2col(xp: np.ndarray, kernel: Pair, stride: Pair, dilation: Pair) -> np.ndarray:
    """The windows of a padded input as an (N, C, kh, kw, Ho, Wo) array (im2col)."""
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    v = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    return np.ascontiguousarray(v[:, :, ::sh, ::sw, ::dh, ::dw].transpose(0, 1, 4, 5, 2, 3))


def _np_conv2d(x: np.ndarray, w: np.ndarray, *, stride: Pair, padding: Pair,
               dilation: Pair) -> np.ndarray:
    cols = _im2col(_pad(x, padding), (w.shape[2], w.shape[3]), stride, dilation)
    n, c, kh, kw, ho, wo = cols.shape
    out = np.matmul(w.reshape(w.shape[0], c * kh * kw), cols.reshape(n, c * kh * kw, ho * wo))
    return out.reshape(n, w.shape[0], ho, wo).astype(x.dtype, copy=False)


def _scatter_windows(cols: np.ndarray, in_hw: Pair, stride: Pair, padding: Pair,
                     dilation: Pair) -> np.ndarray:
    """Add (N, C, kh, kw, Ho, Wo) window values back into an (N, C, H, W) array (col2im)."""
    n, c, kh, kw, ho, wo = cols.shape
    (h, wd), (ph, pw) = in_hw, padding
    out = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            _tap(out, a, b, (ho, wo), stride, dilation)[...] += cols[:, :, a, b]
    return np.ascontiguousarray(out[:, :, ph: ph + h, pw: pw + wd])


def _np_conv2d_grad_input(g: np.ndarray, w: np.ndarray, *, stride: Pair, padding: Pair,
                          dilation: Pair, in_hw: Pair) -> np.ndarray:
    n, o, ho, wo = g.shape
    k = w.shape[1] * w.shape[2] * w.shape[3]
    cols = np.matmul(w.reshape(o, k).T, g.reshape(n, o, ho * wo))  # (N, C*kh*kw, Ho*Wo)
    cols = cols.reshape(n, w.shape[1], w.shape[2], w.shape[3], ho, wo).astype(g.dtype, copy=False)
    return _scatter_windows(cols, in_hw, stride, padding, dilation)


def _np_conv2d_grad_weight(x: np.ndarray, g: np.ndarray, *, stride: Pair, padding: Pair,
                           dilation: Pair, w_shape: tuple[int, int, int, int]) -> np.ndarray:
    cols = _im2col(_pad(x, padding), (w_shape[2], w_shape[3]), stride, dilation)
    n, c, kh, kw, ho, wo = cols.shape
    per_example = np.matmul(g.reshape(n, g.shape[1], ho * wo),
                            cols.reshape(n, c * kh * kw, ho * wo).transpose(0, 2, 1))  # (N, O, C*kh*kw)
    return per_example.sum(axis=0).reshape(w_shape).astype(x.dtype, copy=False)


# -- rules -------------------------------------------------------------------------------------
def _conv_attrs(node: Tensor) -> dict[str, Any]:
    return {k: node.attr(k) for k in ("stride", "padding", "dilation")}


def conv2d_grad_input(g: Tensor, w: Tensor, in_hw: tuple[Size, Size], **conv: Any) -> Tensor:
    return OPS_CONV["grad_input"](g, w, in_hw=tuple(in_hw), **conv)


def conv2d_grad_weight(x: Tensor, g: Tensor, w_shape: tuple[Size, ...], **conv: Any) -> Tensor:
    return OPS_CONV["grad_weight"](x, g, w_shape=tuple(w_shape), **conv)


def _conv_pullback(node: Tensor, g: Tensor) -> list[Tensor | None]:
    x, w = node.inputs
    attrs = _conv_attrs(node)
    return [conv2d_grad_input(g, w, (x.shape[2], x.shape[3]), **attrs),
            conv2d_grad_weight(x, g, w.shape, **attrs)]


def _add_terms(*terms: Tensor | None) -> Tensor | None:
    out = None
    for t in terms:
        if t is not None:
            out = t if out is None else F.add(out, t)
    return out


def _conv_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    x, w = node.inputs
    attrs = _conv_attrs(node)
    conv = OPS_CONV["conv2d"]
    return _add_terms(None if t[0] is None else conv(t[0], w, **attrs),
                      None if t[1] is None else conv(x, t[1], **attrs))


def _grad_input_pullback(node: Tensor, c: Tensor) -> list[Tensor | None]:
    g, w = node.inputs
    attrs = _conv_attrs(node)
    return [OPS_CONV["conv2d"](c, w, **attrs), conv2d_grad_weight(c, g, w.shape, **attrs)]


def _grad_input_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    g, w = node.inputs
    attrs = _conv_attrs(node)
    hw = node.attr("in_hw")
    return _add_terms(None if t[0] is None else conv2d_grad_input(t[0], w, hw, **attrs),
                      None if t[1] is None else conv2d_grad_input(g, t[1], hw, **attrs))


def _grad_weight_pullback(node: Tensor, c: Tensor) -> list[Tensor | None]:
    x, g = node.inputs
    attrs = _conv_attrs(node)
    return [conv2d_grad_input(g, c, (x.shape[2], x.shape[3]), **attrs), OPS_CONV["conv2d"](x, c, **attrs)]


def _grad_weight_pushforward(node: Tensor, t: list[Tensor | None]) -> Tensor | None:
    x, g = node.inputs
    attrs = _conv_attrs(node)
    ws = node.attr("w_shape")
    return _add_terms(None if t[0] is None else conv2d_grad_weight(t[0], g, ws, **attrs),
                      None if t[1] is None else conv2d_grad_weight(x, t[1], ws, **attrs))


OPS_CONV: dict[str, Op] = {}
OPS_CONV["conv2d"] = register(Op(
    "conv2d", "nn", _conv_infer, _np_conv2d,
    pullback=_conv_pullback, pushforward=_conv_pushforward,
    doc="2-D cross-correlation, NCHW input x, OIHW weight w (no groups): "
    "y[n,o,i,j] = sum_{c,a,b} xp[n, c, i*sh + a*dh, j*sw + b*dw] * w[o,c,a,b], with xp the "
    "input zero-padded by ``padding``. Bilinear, so dy = B(dx, w) + B(x, dw). "
    "Pullback for cotangent g: conv2d_grad_input(g, w) wrt x, conv2d_grad_weight(x, g) wrt w.",
))
OPS_CONV["grad_input"] = register(Op(
    "conv2d_grad_input", "nn", _conv_grad_input_infer, _np_conv2d_grad_input,
    pullback=_grad_input_pullback, pushforward=_grad_input_pushforward,
    doc="The adjoint of conv2d in its input (a transposed convolution): "
    "dx[n,c,h,w] = sum_{o,i,j,a,b: i*sh + a*dh = h+ph, j*sw + b*dw = w+pw} g[n,o,i,j] w[o,c,a,b], "
    "for an input of spatial size ``in_hw``. Bilinear in (g, w). Pullback for cotangent c: "
    "conv2d(c, w) wrt g, conv2d_grad_weight(c, g) wrt w.",
))
OPS_CONV["grad_weight"] = register(Op(
    "conv2d_grad_weight", "nn", _conv_grad_weight_infer, _np_conv2d_grad_weight,
    pullback=_grad_weight_pullback, pushforward=_grad_weight_pushforward,
    doc="The adjoint of conv2d in its weight: "
    "dw[o,c,a,b] = sum_{n,i,j} g[n,o,i,j] xp[n, c, i*sh + a*dh, j*sw + b*dw], for a weight of "
    "shape ``w_shape``. Bilinear in (x, g). Pullback for cotangent c: "
    "conv2d_grad_input(g, c) wrt x, conv2d(x, c) wrt g.",
))


# -- pooling ------------------------------------------------------------------------------------
def _pool_checks(op: str, hw: tuple[Size, Size], attrs: dict[str, Any], shapes: str,
                 checks: list[Check]) -> tuple[Size, Size]:
    _check_pairs(op, attrs, ("kernel", "stride", "padding"), shapes)
    (kh, kw), (sh, sw), (ph, pw) = attrs["kernel"], attrs["stride"], attrs["padding"]
    if 2 * ph > kh or 2 * pw > kw:
        raise op_error(ShapeError, op, f"padding {attrs['padding']} must be at most half the "
                       f"kernel {attrs['kernel']}", shapes)
    return (_out_size(op, hw[0], kh, sh, ph, 1, "H", shapes, checks),
            _out_size(op, hw[1], kw, sw, pw, 1, "W", shapes, checks))


def _pool_infer(op: str) -> Any:
    def infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
        (x,) = inputs
        shapes = shape_str(x.shape)
        dtype = _floats(op, inputs)
        _rank4(op, inputs, ("input (N, C, H, W)",))
        checks: list[Check] = []
        ho, wo = _pool_checks(op, (x.shape[2], x.shape[3]), attrs, shapes, checks)
        return Info((x.shape[0], x.shape[1], ho, wo), dtype, tuple(checks))

    return infer


def _max_pool_pair_infer(op: str, out_is_pooled: bool) -> Any:
    """Shape rule of max_pool2d_grad(x, g) (-> x's shape) and max_pool2d_gather(x, c)."""

    def infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
        x, t = inputs
        shapes = f"x {shape_str(x.shape)}, {'c' if out_is_pooled else 'g'} {shape_str(t.shape)}"
        dtype = _floats(op, inputs)
        _rank4(op, inputs, ("input (N, C, H, W)", "second operand"))
        checks: list[Check] = []
        ho, wo = _pool_checks(op, (x.shape[2], x.shape[3]), attrs, shapes, checks)
        pooled = (x.shape[0], x.shape[1], ho, wo)
        expect = x.shape if out_is_pooled else pooled
        for axis, (a, b) in enumerate(zip(t.shape, expect)):
            _same(op, a, b, f"axis {axis} of the second operand", shapes, checks)
        return Info(pooled if out_is_pooled else x.shape, dtype, tuple(checks))

    return infer


def _avg_grad_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    (g,) = inputs
    op = "avg_pool2d_grad"
    shapes = shape_str(g.shape)
    dtype = _floats(op, inputs)
    _rank4(op, inputs, ("cotangent (N, C, Ho, Wo)",))
    h, w = attrs["in_hw"]
    checks: list[Check] = []
    ho, wo = _pool_checks(op, (h, w), attrs, shapes, checks)
    _same(op, g.shape[2], ho, f"cotangent height vs the pooled height for input height {h}",
          shapes, checks)
    _same(op, g.shape[3], wo, f"cotangent width vs the pooled width for input width {w}",
          shapes, checks)
    return Info((g.shape[0], g.shape[1], h, w), dtype, tuple(checks))


def _first_max_tap(x: np.ndarray, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    """For every window, the row-major tap index of its first maximum (the -inf padding
    never wins over an input element)."""
    xp = _pad(x, padding, -np.inf)
    out_hw = _out_hw(xp, kernel, stride, (1, 1))
    best = _tap(xp, 0, 0, out_hw, stride, (1, 1))
    tap = np.zeros(best.shape, dtype=np.intp)
    for k in range(1, kernel[0] * kernel[1]):
        cand = _tap(xp, k // kernel[1], k % kernel[1], out_hw, stride, (1, 1))
        # strictly greater, so ties keep the earlier tap; the first NaN wins, like np.argmax
        wins = (cand > best) | (np.isnan(cand) & ~np.isnan(best))
        best = np.where(wins, cand, best)
        tap = np.where(wins, k, tap)
    return tap


def _np_max_pool2d(x: np.ndarray, *, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    xp = _pad(x, padding, -np.inf)
    out_hw = _out_hw(xp, kernel, stride, (1, 1))
    out = _tap(xp, 0, 0, out_hw, stride, (1, 1))
    for k in range(1, kernel[0] * kernel[1]):
        out = np.maximum(out, _tap(xp, k // kernel[1], k % kernel[1], out_hw, stride, (1, 1)))
    return np.ascontiguousarray(out, dtype=x.dtype)


def _np_max_pool2d_grad(x: np.ndarray, g: np.ndarray, *, kernel: Pair, stride: Pair,
                        padding: Pair) -> np.ndarray:
    tap = _first_max_tap(x, kernel, stride, padding)
    (ph, pw), (h, w) = padding, x.shape[2:]
    out = np.zeros((*x.shape[:2], h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    for k in range(kernel[0] * kernel[1]):
        _tap(out, k // kernel[1], k % kernel[1], tap.shape[2:], stride, (1, 1))[...] += \
            np.where(tap == k, g, 0)
    return np.ascontiguousarray(out[:, :, ph: ph + h, pw: pw + w])


def _np_max_pool2d_gather(x: np.ndarray, c: np.ndarray, *, kernel: Pair, stride: Pair,
                          padding: Pair) -> np.ndarray:
    tap = _first_max_tap(x, kernel, stride, padding)
    cp = _pad(c, padding)
    out = np.zeros(tap.shape, dtype=x.dtype)
    for k in range(kernel[0] * kernel[1]):
        out = np.where(tap == k, _tap(cp, k // kernel[1], k % kernel[1], tap.shape[2:], stride, (1, 1)), out)
    return out.astype(x.dtype, copy=False)


def _np_avg_pool2d(x: np.ndarray, *, kernel: Pair, stride: Pair, padding: Pair) -> np.ndarray:
    xp = _pad(x, padding)
    out_hw = _out_hw(xp, kernel, stride, (1, 1))
    total = np.zeros((*x.shape[:2], *out_hw), dtype=x.dtype)
    for k in range(kernel[0] * kernel[1]):
        total += _tap(xp, k // kernel[1], k % kernel[1], out_hw, stride, (1, 1))
    return (total / (kernel[0] * kernel[1])).astype(x.dtype, copy=False)


def _np_avg_pool2d_grad(g: np.ndarray, *, kernel: Pair, stride: Pair, padding: Pair,
                        in_hw: Pair) -> np.ndarray:
    share = (g / (kernel[0] * kernel[1])).astype(g.dtype, copy=False)
    cols = np.broadcast_to(share[:, :, None, None], (*g.shape[:2], *kernel, *g.shape[2:]))
    return _scatter_windows(cols, in_hw, stride, padding, (1, 1))


def _pool_attrs(node: Tensor) -> dict[str, Any]:
    return {k: node.attr(k) for k in ("kernel", "stride", "padding")}


OPS_POOL: dict[str, Op] = {}
OPS_POOL["max"] = register(Op(
    "max_pool2d", "nn", _pool_infer("max_pool2d"), _np_max_pool2d,
    pullback=lambda n, g: [OPS_POOL["max_grad"](n.inputs[0], g, **_pool_attrs(n))],
    pushforward=lambda n, t: None if t[0] is None else OPS_POOL["max_gather"](
        n.inputs[0], t[0], **_pool_attrs(n)),
    doc="Max over kh x kw windows of the -inf padded input (padding at most half the "
    "kernel, so every window holds an input element): y[n,c,i,j] = max_{a,b} "
    "xp[n, c, i*sh + a, j*sw + b]. Derivative: 1 at the FIRST maximum of the window in "
    "row-major order (ties go wholly to the first), 0 elsewhere. Pullback: max_pool2d_grad; "
    "pushforward: max_pool2d_gather.",
))
OPS_POOL["max_grad"] = register(Op(
    "max_pool2d_grad", "nn", _max_pool_pair_infer("max_pool2d_grad", False), _np_max_pool2d_grad,
    pullback=lambda n, c: [None, OPS_POOL["max_gather"](n.inputs[0], c, **_pool_attrs(n))],
    pushforward=lambda n, t: None if t[1] is None else OPS_POOL["max_grad"](
        n.inputs[0], t[1], **_pool_attrs(n)),
    doc="max_pool2d_grad(x, g): zeros of x's shape with each g[n,c,i,j] added at the first "
    "maximum of window (i, j) of x (overlapping windows accumulate). Linear in g; piecewise "
    "constant in x (derivative wrt x taken as 0). Pullback wrt g: max_pool2d_gather(x, c).",
))
OPS_POOL["max_gather"] = register(Op(
    "max_pool2d_gather", "nn", _max_pool_pair_infer("max_pool2d_gather", True),
    _np_max_pool2d_gather,
    pullback=lambda n, g: [None, OPS_POOL["max_grad"](n.inputs[0], g, **_pool_attrs(n))],
    pushforward=lambda n, t: None if t[1] is None else OPS_POOL["max_gather"](
        n.inputs[0], t[1], **_pool_attrs(n)),
    doc="max_pool2d_gather(x, c)[n,c,i,j] = c at the first maximum of window (i, j) of x "
    "(the adjoint of max_pool2d_grad in g; the tangent of max_pool2d). Linear in c; piecewise "
    "constant in x (derivative wrt x taken as 0). Pullback wrt c: max_pool2d_grad(x, g).",
))
OPS_POOL["avg"] = register(Op(
    "avg_pool2d", "nn", _pool_infer("avg_pool2d"), _np_avg_pool2d,
    pullback=lambda n, g: [OPS_POOL["avg_grad"](
        g, in_hw=(n.inputs[0].shape[2], n.inputs[0].shape[3]), **_pool_attrs(n))],
    pushforward=lambda n, t: None if t[0] is None else OPS_POOL["avg"](t[0], **_pool_attrs(n)),
    doc="Mean over kh x kw windows of the zero-padded input, always divided by kh*kw "
    "(padding counts: count_include_pad): y[n,c,i,j] = sum_{a,b} xp[n, c, i*sh + a, j*sw + b] "
    "/ (kh*kw). Linear. Pullback: avg_pool2d_grad.",
))
OPS_POOL["avg_grad"] = register(Op(
    "avg_pool2d_grad", "nn", _avg_grad_infer, _np_avg_pool2d_grad,
    pullback=lambda n, c: [OPS_POOL["avg"](c, **_pool_attrs(n))],
    pushforward=lambda n, t: None if t[0] is None else OPS_POOL["avg_grad"](
        t[0], in_hw=n.attr("in_hw"), **_pool_attrs(n)),
    doc="The adjoint of avg_pool2d: every g[n,c,i,j] / (kh*kw) added to each input element of "
    "window (i, j) (padding cells dropped), for an input of spatial size ``in_hw``. Linear. "
    "Pullback: avg_pool2d.",
))
