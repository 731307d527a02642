"""Layers built from graph ops (``sg.nn.Dense``, ``sg.nn.Conv2d``, ...).

A layer holds no arrays. Its parameters are named placeholders (``"dense1.w"``), so the
graph a model builds, and every gradient derived from it, prints with those names; the
values live outside, in the dict ``model.init(seed)`` returns and in the training step
that owns them afterwards::

    model = sg.nn.Sequential([
        sg.nn.Dense(64, 128, activation="relu"),     # parameters dense1.w, dense1.b
        sg.nn.Dropout(0.1),
        sg.nn.Dense(128, 10),                        # dense2.w, dense2.b
    ])
    x = sg.placeholder("x", (None, 64))
    logits = model(x)                  # evaluation graph (dropout off, running stats)
    logits, updates = model.apply(x)   # training graph + new values of the buffers

Unnamed layers inside a :class:`Sequential` are named by kind and position within it
(``dense1``, ``dense2``, ``conv1``...); a named Sequential prefixes its children
(``Sequential([...], name="enc")`` gives ``enc.dense1.w``). Two models used in one graph
need different names. Layers keep *buffers* as well: state that is not trained but
updated by each training step (BatchNorm's running statistics, Dropout's random-number
counter); ``apply`` returns their new values.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import symgrad.ops.api as F
from symgrad import nn as _nn
from symgrad.errors import ShapeError, op_error
from symgrad.ir import shape as S
from symgrad.ir.dtypes import as_dtype
from symgrad.ir.shape import Size, shape_str
from symgrad.ir.tensor import Tensor, placeholder
from symgrad.ops.random_ops import random_normal, random_uniform

# -- activations --------------------------------------------------------------------------------


def identity(x: Tensor) -> Tensor:
    return x


def leaky_relu(x: Tensor, alpha: float = 0.01) -> Tensor:
    """``x`` for x > 0, ``alpha * x`` otherwise."""
    return F.where(F.greater(x, 0), x, F.mul(x, alpha))


def elu(x: Tensor, alpha: float = 1.0) -> Tensor:
    """``x`` for x > 0, ``alpha * (exp(x) - 1)`` otherwise."""
    return F.where(F.greater(x, 0), x, F.mul(F.expm1(F.minimum(x, 0)), alpha))


def gelu(x: Tensor) -> Tensor:
    """``x * Phi(x)`` with the exact normal CDF (via erf)."""
    return F.mul(F.mul(x, 0.5), F.add(F.erf(F.mul(x, 1 / math.sqrt(2))), 1.0))


def silu(x: Tensor) -> Tensor:
    """``x * sigmoid(x)`` (swish)."""
    return F.mul(x, F.sigmoid(x))


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "identity": identity,
    "linear": identity,
    "relu": F.relu,
    "tanh": F.tanh,
    "sigmoid": F.sigmoid,
    "softplus": F.softplus,
    "leaky_relu": leaky_relu,
    "elu": elu,
    "gelu": gelu,
    "silu": silu,
    "softmax": F.softmax,
    "log_softmax": F.log_softmax,
}


def activation(name: str | Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor]:
    """An activation function by name (``"relu"``, ``"tanh"``, ...) or as given."""
    if name is None:
        return identity
    if callable(name):
        return name
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(sorted(ACTIVATIONS))}")
    return ACTIVATIONS[name]


# -- initializers ---------------------------------------------------------------------------------
Initializer = Callable[[np.random.Generator, tuple[int, ...], int, int], np.ndarray]


def _glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    a = math.sqrt(6.0 / max(fan_in + fan_out, 1))
    return rng.uniform(-a, a, shape)


def _glorot_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    return rng.normal(0.0, math.sqrt(2.0 / max(fan_in + fan_out, 1)), shape)


def _he_uniform(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    a = math.sqrt(6.0 / max(fan_in, 1))
    return rng.uniform(-a, a, shape)


def _he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    return rng.normal(0.0, math.sqrt(2.0 / max(fan_in, 1)), shape)


def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    rows = shape[0]
    cols = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q = q * np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape)


INITIALIZERS: dict[str, Initializer] = {
    "glorot_uniform": _glorot_uniform,
    "xavier_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "xavier_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "kaiming_uniform": _he_uniform,
    "he_normal": _he_normal,
    "kaiming_normal": _he_normal,
    "orthogonal": _orthogonal,
    "zeros": lambda rng, shape, fi, fo: np.zeros(shape),
    "ones": lambda rng, shape, fi, fo: np.ones(shape),
}


def initializer(init: str | Initializer) -> Initializer:
    """An initializer by name (``glorot_uniform``, ``he_normal``, ``orthogonal``, ``zeros``...)
    or a callable ``(rng, shape, fan_in, fan_out) -> array``."""
    if callable(init):
        return init
    if init not in INITIALIZERS:
        raise ValueError(f"unknown initializer {init!r}; known: {', '.join(sorted(INITIALIZERS))}")
    return INITIALIZERS[init]


_resolve = activation


def _default_init(act: Any) -> str:
    return "he_uniform" if act in ("relu", "leaky_relu", "elu", "gelu", "silu", F.relu) else "glorot_uniform"


def name_seed(seed: int, name: str) -> np.random.Generator:
    """The generator a parameter is initialized from: a function of the seed and its name,
    so adding a layer does not change how the others are initialized."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


# -- the layer protocol ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Var:
    """A parameter or buffer declaration: local name, shape, dtype and initial value rule."""

    local: str
    shape: tuple[int, ...]
    dtype: str
    init: Initializer
    fan_in: int = 1
    fan_out: int = 1


@dataclass
class Context:
    """How a layer runs: ``train`` mode, and the new buffer values a training graph yields."""

    train: bool = False
    updates: dict[str, Tensor] = field(default_factory=dict)


_auto_counts: dict[str, int] = {}


def _auto_name(kind: str) -> str:
    _auto_counts[kind] = _auto_counts.get(kind, 0) + 1
    return f"{kind}{_auto_counts[kind]}"


class Layer:
    """Base class. Subclasses declare ``params``/``buffers`` specs and ``forward``."""

    kind = "layer"

    def __init__(self, name: str | None = None) -> None:
        if name is not None and (not isinstance(name, str) or not name or "." in name):
            raise ValueError(f"a layer name must be a non-empty string without '.', got {name!r}")
        self._name = name
        self._parent: Layer | None = None
        self._vars: dict[str, Tensor] | None = None

    # -- naming ------------------------------------------------------------------------
    @property
    def name(self) -> str:
        if self._name is None:
            self._name = _auto_name(self.kind)
        return self._name

    def _prefix(self) -> str:
        """What children's names start with."""
        return self.full_name + "."

    @property
    def full_name(self) -> str:
        return (self._parent._prefix() if self._parent is not None else "") + self.name

    def _adopt(self, child: Layer, local: str) -> None:
        if child._parent is not None and child._parent is not self:
            raise ValueError(f"layer {child.full_name!r} already belongs to another container")
        if child._vars is not None:
            raise ValueError(f"layer {child.full_name!r} was used before joining a container; "
                             "build containers first")
        if child._name is None:
            child._name = local
        child._parent = self

    # -- declarations (override) ---------------------------------------------------------
    def param_specs(self) -> list[Var]:
        return []

    def buffer_specs(self) -> list[Var]:
        return []

    def children(self) -> list[Layer]:
        return []

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        raise NotImplementedError

    # -- placeholders ------------------------------------------------------------------------
    def _own_vars(self) -> dict[str, Tensor]:
        if self._vars is None:
            self._vars = {}
            for spec in self.param_specs() + self.buffer_specs():
                full = f"{self.full_name}.{spec.local}"
                self._vars[spec.local] = placeholder(full, spec.shape, spec.dtype)
        return self._vars

    def var(self, local: str) -> Tensor:
        """This layer's parameter or buffer placeholder by local name (``"w"``)."""
        return self._own_vars()[local]

    def _walk(self) -> Iterable[Layer]:
        yield self
        for c in self.children():
            yield from c._walk()

    @property
    def params(self) -> dict[str, Tensor]:
        """Every trainable parameter placeholder of this layer and its children, by name."""
        return self._collect(lambda layer: layer.param_specs())

    @property
    def buffers(self) -> dict[str, Tensor]:
        """Every buffer placeholder (state updated by training, not by gradients)."""
        return self._collect(lambda layer: layer.buffer_specs())

    def _collect(self, specs_of: Any) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for layer in self._walk():
            vs = layer._own_vars()
            for spec in specs_of(layer):
                out[vs[spec.local].name or spec.local] = vs[spec.local]
        return out

    def init(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Initial values of every parameter and buffer, by name (reproducible from ``seed``)."""
        out: dict[str, np.ndarray] = {}
        for layer in self._walk():
            vs = layer._own_vars()
            for spec in layer.param_specs() + layer.buffer_specs():
                full = vs[spec.local].name or spec.local
                value = spec.init(name_seed(seed, full), spec.shape, spec.fan_in, spec.fan_out)
                out[full] = np.asarray(value).astype(spec.dtype)
        return out

    def init_params(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Initial values of the trainable parameters only (what ``TrainStep`` trains)."""
        names = set(self.params)
        return {k: v for k, v in self.init(seed).items() if k in names}

    def init_buffers(self, seed: int = 0) -> dict[str, np.ndarray]:
        """Initial values of the buffers only (``TrainStep(buffers=...)``)."""
        names = set(self.buffers)
        return {k: v for k, v in self.init(seed).items() if k in names}

    def num_params(self) -> int:
        total = 0
        for p in self.params.values():
            total += math.prod(s if isinstance(s, int) else 0 for s in p.shape)
        return total

    # -- running --------------------------------------------------------------------------------
    def __call__(self, x: Any, train: bool = False) -> Tensor:
        """The layer's output graph (evaluation mode unless ``train``; buffer updates of a
        training graph are dropped here: use :meth:`apply` to keep them)."""
        return self.forward(F.as_tensor(x), Context(train=train))

    def apply(self, x: Any, train: bool = True) -> tuple[Tensor, dict[str, Tensor]]:
        """The output graph and ``{buffer name: new value}`` for a training step."""
        ctx = Context(train=train)
        y = self.forward(F.as_tensor(x), ctx)
        return y, dict(ctx.updates)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.full_name!r})"


def _check_last(layer: Layer, x: Tensor, size: int, what: str = "features") -> None:
    last = x.shape[-1] if x.ndim else None
    if x.ndim == 0 or (isinstance(last, int) and last != size):
        raise op_error(ShapeError, type(layer).__name__.lower(),
                       f"{layer.full_name} expects {size} input {what} on the last axis",
                       shape_str(x.shape))


# -- dense and convolution ---------------------------------------------------------------------------
class Dense(Layer):
    """``activation(x @ w + b)`` with ``w`` of shape (in_features, out_features).

    ``init`` defaults to He (uniform) for ReLU-like activations, Glorot (uniform)
    otherwise; the bias starts at zero.
    """

    kind = "dense"

    def __init__(self, in_features: int, out_features: int, activation: Any = None, *,
                 bias: bool = True, init: str | Initializer | None = None, dtype: Any = "float32",
                 name: str | None = None) -> None:
        super().__init__(name)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation = activation
        self.bias = bias
        self.init_w = initializer(init or _default_init(activation))
        self.dtype = as_dtype(dtype)

    def param_specs(self) -> list[Var]:
        specs = [Var("w", (self.in_features, self.out_features), self.dtype, self.init_w,
                     self.in_features, self.out_features)]
        if self.bias:
            specs.append(Var("b", (self.out_features,), self.dtype, INITIALIZERS["zeros"]))
        return specs

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        _check_last(self, x, self.in_features)
        y = F.matmul(x, self.var("w"))
        if self.bias:
            y = F.add(y, self.var("b"))
        return activation(self.activation)(y)


class Conv2d(Layer):
    """2-D convolution on NCHW inputs, weights OIHW (``sg.nn.conv2d``), plus activation."""

    kind = "conv"

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: Any = 1, padding: Any = 0, activation: Any = None, *, bias: bool = True,
                 init: str | Initializer | None = None, dtype: Any = "float32",
                 name: str | None = None) -> None:
        super().__init__(name)
        k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel = (int(k[0]), int(k[1]))
        self.stride, self.padding = stride, padding
        self.activation = activation
        self.bias = bias
        self.init_w = initializer(init or _default_init(activation))
        self.dtype = as_dtype(dtype)

    def param_specs(self) -> list[Var]:
        kh, kw = self.kernel
        specs = [Var("w", (self.out_channels, self.in_channels, kh, kw), self.dtype, self.init_w,
                     self.in_channels * kh * kw, self.out_channels * kh * kw)]
        if self.bias:
            specs.append(Var("b", (self.out_channels,), self.dtype, INITIALIZERS["zeros"]))
        return specs

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if x.ndim != 4 or (isinstance(x.shape[1], int) and x.shape[1] != self.in_channels):
            raise op_error(ShapeError, "conv2d", f"{self.full_name} expects (N, {self.in_channels}, "
                           "H, W) inputs", shape_str(x.shape))
        y = _nn.conv2d(x, self.var("w"), self.var("b") if self.bias else None,
                       stride=self.stride, padding=self.padding)
        return activation(self.activation)(y)


class MaxPool2d(Layer):
    """Max over windows (``sg.nn.max_pool2d``); no parameters."""

    kind = "maxpool"

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0, name: str | None = None) -> None:
        super().__init__(name)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        return _nn.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(MaxPool2d):
    """Mean over windows (``sg.nn.avg_pool2d``); no parameters."""

    kind = "avgpool"

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        return _nn.avg_pool2d(x, self.kernel_size, self.stride, self.padding)


class Flatten(Layer):
    """Collapse every axis from ``start_axis`` (default 1: keep the batch axis) into one."""

    kind = "flatten"

    def __init__(self, start_axis: int = 1, name: str | None = None) -> None:
        super().__init__(name)
        self.start_axis = start_axis

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        return F.flatten(x, self.start_axis)


class Reshape(Layer):
    """Reshape every example to ``shape`` (the batch axis is kept)."""

    kind = "reshape"

    def __init__(self, shape: Sequence[int], name: str | None = None) -> None:
        super().__init__(name)
        self.shape = tuple(int(s) for s in shape)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        return F.reshape(x, (x.shape[0], *self.shape))


class Activation(Layer):
    """An activation function as a layer (``Activation("relu")`` or any callable)."""

    kind = "act"

    def __init__(self, fn: str | Callable[[Tensor], Tensor], name: str | None = None) -> None:
        super().__init__(name)
        self.fn = activation(fn)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        return self.fn(x)


def ReLU(name: str | None = None) -> Activation:  # noqa: N802 - layer constructors read as classes
    return Activation("relu", name)


def Tanh(name: str | None = None) -> Activation:  # noqa: N802
    return Activation("tanh", name)


def Sigmoid(name: str | None = None) -> Activation:  # noqa: N802
    return Activation("sigmoid", name)


def LeakyReLU(alpha: float = 0.01, name: str | None = None) -> Activation:  # noqa: N802
    return Activation(lambda x: leaky_relu(x, alpha), name)


def GELU(name: str | None = None) -> Activation:  # noqa: N802
    return Activation("gelu", name)


def Softmax(name: str | None = None) -> Activation:  # noqa: N802
    return Activation("softmax", name)


class Embedding(Layer):
    """Rows of a (num_embeddings, dim) table picked by integer indices (``sg.take``).

    An index outside ``[-num, num)`` raises when the function is called."""

    kind = "embedding"

    def __init__(self, num_embeddings: int, dim: int, *, init: str | Initializer = "glorot_normal",
                 dtype: Any = "float32", name: str | None = None) -> None:
        super().__init__(name)
        self.num, self.dim = int(num_embeddings), int(dim)
        self.init_w = initializer(init)
        self.dtype = as_dtype(dtype)

    def param_specs(self) -> list[Var]:
        return [Var("w", (self.num, self.dim), self.dtype, self.init_w, self.num, self.dim)]

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        return F.take(self.var("w"), x, axis=0)


# -- regularization and normalization ---------------------------------------------------------------
def dropout(x: Tensor, rate: float, seed: Any, counter: Any) -> Tensor:
    """Zero each entry with probability ``rate`` and scale the rest by ``1 / (1 - rate)``.

    The mask is ``random_uniform(x.shape, seed, counter) >= rate``: the same seed and
    counter give the same mask on every backend."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must lie in [0, 1), got {rate}")
    if rate == 0.0:
        return x
    keep = F.greater_equal(random_uniform(x.shape, seed, counter, x.dtype), rate)
    return F.where(keep, F.mul(x, 1.0 / (1.0 - rate)), 0.0)


class Dropout(Layer):
    """Dropout in training mode, the identity in evaluation mode.

    Its buffer ``<name>.counter`` (int64) is the random-number counter: each training step
    uses it and stores counter + 1, so every step draws a new mask while a run stays
    reproducible. ``seed`` defaults to a hash of the layer's name."""

    kind = "dropout"

    def __init__(self, rate: float, seed: int | None = None, name: str | None = None) -> None:
        super().__init__(name)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must lie in [0, 1), got {rate}")
        self.rate = float(rate)
        self.seed = seed

    def buffer_specs(self) -> list[Var]:
        return [Var("counter", (), "int64", INITIALIZERS["zeros"])]

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if not ctx.train or self.rate == 0.0:
            return x
        counter = self.var("counter")
        seed = self.seed if self.seed is not None else zlib.crc32(self.full_name.encode()) & 0x7FFFFFFF
        ctx.updates[counter.name or "counter"] = F.add(counter, 1)
        return dropout(x, self.rate, seed, counter)


class LayerNorm(Layer):
    """Normalize over the last axis (mean 0, variance 1), then scale and shift."""

    kind = "layernorm"

    def __init__(self, features: int, eps: float = 1e-5, *, affine: bool = True,
                 dtype: Any = "float32", name: str | None = None) -> None:
        super().__init__(name)
        self.features, self.eps, self.affine = int(features), float(eps), affine
        self.dtype = as_dtype(dtype)

    def param_specs(self) -> list[Var]:
        if not self.affine:
            return []
        return [Var("gamma", (self.features,), self.dtype, INITIALIZERS["ones"]),
                Var("beta", (self.features,), self.dtype, INITIALIZERS["zeros"])]

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        _check_last(self, x, self.features)
        mu = F.mean(x, -1, keepdims=True)
        xc = F.sub(x, mu)
        var = F.mean(F.mul(xc, xc), -1, keepdims=True)
        y = F.div(xc, F.sqrt(F.add(var, self.eps)))
        if self.affine:
            y = F.add(F.mul(y, self.var("gamma")), self.var("beta"))
        return y


class BatchNorm(Layer):
    """Batch normalization over every axis but the channel axis 1 ((N, C) or (N, C, H, W)).

    Training mode normalizes with the batch statistics and updates the buffers
    ``running_mean`` and ``running_var`` (``(1 - momentum) * old + momentum * batch``, the
    batch variance unbiased); evaluation mode normalizes with the running statistics."""

    kind = "batchnorm"

    def __init__(self, features: int, momentum: float = 0.1, eps: float = 1e-5, *,
                 affine: bool = True, dtype: Any = "float32", name: str | None = None) -> None:
        super().__init__(name)
        self.features, self.momentum, self.eps, self.affine = int(features), float(momentum), float(eps), affine
        self.dtype = as_dtype(dtype)

    def param_specs(self) -> list[Var]:
        if not self.affine:
            return []
        return [Var("gamma", (self.features,), self.dtype, INITIALIZERS["ones"]),
                Var("beta", (self.features,), self.dtype, INITIALIZERS["zeros"])]

    def buffer_specs(self) -> list[Var]:
        return [Var("running_mean", (self.features,), self.dtype, INITIALIZERS["zeros"]),
                Var("running_var", (self.features,), self.dtype, INITIALIZERS["ones"])]

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        if x.ndim < 2 or (isinstance(x.shape[1], int) and x.shape[1] != self.features):
            raise op_error(ShapeError, "batchnorm", f"{self.full_name} expects {self.features} "
                           "channels on axis 1", shape_str(x.shape))
        axes = tuple(a for a in range(x.ndim) if a != 1)
        bshape = tuple(self.features if a == 1 else 1 for a in range(x.ndim))
        rm, rv = self.var("running_mean"), self.var("running_var")
        if ctx.train:
            mean = F.mean(x, axes, keepdims=True)
            xc = F.sub(x, mean)
            var = F.mean(F.mul(xc, xc), axes, keepdims=True)
            n = F.dim_value(S.prod([x.shape[a] for a in axes]), x.dtype)
            unbiased = F.mul(F.reshape(var, (self.features,)), F.div(n, F.maximum(F.sub(n, 1.0), 1.0)))
            m = self.momentum
            ctx.updates[rm.name or "running_mean"] = F.add(F.mul(rm, 1.0 - m), F.mul(F.reshape(mean, (self.features,)), m))
            ctx.updates[rv.name or "running_var"] = F.add(F.mul(rv, 1.0 - m), F.mul(unbiased, m))
            y = F.div(xc, F.sqrt(F.add(var, self.eps)))
        else:
            y = F.div(F.sub(x, F.reshape(rm, bshape)), F.sqrt(F.add(F.reshape(rv, bshape), self.eps)))
        if self.affine:
            y = F.add(F.mul(y, F.reshape(self.var("gamma"), bshape)), F.reshape(self.var("beta"), bshape))
        return y


# -- recurrent layers ----------------------------------------------------------------------------------
class _Recurrent(Layer):
    """Shared by RNN, GRU and LSTM: run a cell over a (N, T, F) sequence of static T."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, *, return_sequences: bool = True,
                 dtype: Any = "float32", name: str | None = None) -> None:
        super().__init__(name)
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.return_sequences = return_sequences
        self.dtype = as_dtype(dtype)

    def _bias_init(self) -> Initializer:
        return INITIALIZERS["zeros"]

    def param_specs(self) -> list[Var]:
        g, h, f = self.gates, self.hidden_size, self.input_size
        return [Var("w_x", (f, g * h), self.dtype, INITIALIZERS["glorot_uniform"], f, g * h),
                Var("w_h", (h, g * h), self.dtype, INITIALIZERS["orthogonal"], h, g * h),
                Var("b", (g * h,), self.dtype, self._bias_init())]

    def initial_state(self, batch: Size) -> Any:
        return F.zeros((batch, self.hidden_size), self.dtype)

    def cell(self, xw: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One time step: ``xw`` is x_t @ w_x + b; returns (h_t, new state)."""
        raise NotImplementedError

    def run(self, x: Tensor, state: Any = None) -> tuple[Tensor, Any]:
        """All hidden states (N, T, H) and the final state, from ``state`` (zeros by default)."""
        if x.ndim != 3 or not isinstance(x.shape[1], int):
            raise op_error(ShapeError, self.kind, f"{self.full_name} expects (N, T, {self.input_size}) "
                           "inputs with a static sequence length T", shape_str(x.shape))
        _check_last(self, x, self.input_size)
        steps = int(x.shape[1])
        if steps == 0:
            raise op_error(ShapeError, self.kind, "the sequence is empty", shape_str(x.shape))
        xw = F.add(F.matmul(x, self.var("w_x")), self.var("b"))  # all steps in one product
        if state is None:
            state = self.initial_state(x.shape[0])
        hs = []
        for t in range(steps):
            h, state = self.cell(xw[:, t, :], state)
            hs.append(h)
        return F.stack(hs, axis=1), state

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        seq, state = self.run(x)
        if self.return_sequences:
            return seq
        return seq[:, -1, :]

    def _split(self, z: Tensor) -> list[Tensor]:
        h = self.hidden_size
        return [z[..., k * h:(k + 1) * h] for k in range(self.gates)]


class RNN(_Recurrent):
    """Elman network: ``h_t = act(x_t w_x + h_{t-1} w_h + b)`` over the sequence."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, activation: Any = "tanh", **kw: Any) -> None:
        super().__init__(input_size, hidden_size, **kw)
        self.act = _resolve(activation)

    def cell(self, xw: Tensor, state: Any) -> tuple[Tensor, Any]:
        h = self.act(F.add(xw, F.matmul(state, self.var("w_h"))))
        return h, h


class GRU(_Recurrent):
    """Gated recurrent unit: update gate z, reset gate r, candidate n;
    ``h_t = (1 - z) * n + z * h_{t-1}`` with ``n = tanh(x w_xn + r * (h w_hn) + b_n)``."""

    kind = "gru"
    gates = 3

    def cell(self, xw: Tensor, state: Any) -> tuple[Tensor, Any]:
        xz, xr, xn = self._split(xw)
        hz, hr, hn = self._split(F.matmul(state, self.var("w_h")))
        z = F.sigmoid(F.add(xz, hz))
        r = F.sigmoid(F.add(xr, hr))
        n = F.tanh(F.add(xn, F.mul(r, hn)))
        h = F.add(F.mul(F.sub(1.0, z), n), F.mul(z, state))
        return h, h


class LSTM(_Recurrent):
    """Long short-term memory: gates i, f, o and candidate g from ``x_t w_x + h w_h + b``;
    ``c_t = f * c + i * g``, ``h_t = o * tanh(c_t)``. The forget-gate bias starts at 1."""

    kind = "lstm"
    gates = 4

    def _bias_init(self) -> Initializer:
        h = self.hidden_size

        def init(rng: np.random.Generator, shape: tuple[int, ...], fi: int, fo: int) -> np.ndarray:
            b = np.zeros(shape)
            b[h:2 * h] = 1.0
            return b

        return init

    def initial_state(self, batch: Size) -> Any:
        z = F.zeros((batch, self.hidden_size), self.dtype)
        return (z, z)

    def cell(self, xw: Tensor, state: Any) -> tuple[Tensor, Any]:
        h, c = state
        i, f, g, o = self._split(F.add(xw, F.matmul(h, self.var("w_h"))))
        c_new = F.add(F.mul(F.sigmoid(f), c), F.mul(F.sigmoid(i), F.tanh(g)))
        h_new = F.mul(F.sigmoid(o), F.tanh(c_new))
        return h_new, (h_new, c_new)


# -- containers ----------------------------------------------------------------------------------------
class Sequential(Layer):
    """Layers applied in order. Plain callables (``sg.relu``) are wrapped as activations.

    Unnamed children are named by kind and position (``dense1``, ``dropout1``,
    ``dense2``); a named Sequential prefixes them (``enc.dense1``)."""

    kind = "sequential"

    def __init__(self, layers: Sequence[Layer | Callable[[Tensor], Tensor]], name: str | None = None) -> None:
        super().__init__(name)
        self.layers: list[Layer] = []
        counts: dict[str, int] = {}
        taken = {layer._name for layer in layers if isinstance(layer, Layer) and layer._name}
        for item in layers:
            layer = item if isinstance(item, Layer) else Activation(item)
            local = layer._name
            if local is None:
                while True:
                    counts[layer.kind] = counts.get(layer.kind, 0) + 1
                    local = f"{layer.kind}{counts[layer.kind]}"
                    if local not in taken:
                        break
                taken.add(local)
            elif any(other.name == local for other in self.layers):
                raise ValueError(f"two layers named {local!r} in one Sequential")
            self._adopt(layer, local)
            self.layers.append(layer)

    def _prefix(self) -> str:
        if self._name is None and self._parent is None:
            return ""
        return self.full_name + "."

    def children(self) -> list[Layer]:
        return list(self.layers)

    def forward(self, x: Tensor, ctx: Context) -> Tensor:
        for layer in self.layers:
            x = layer.forward(x, ctx)
        return x

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)


def merge(*dicts: Mapping[str, Any]) -> dict[str, Any]:
    """Join parameter dicts of several models, refusing a name that two of them share."""
    out: dict[str, Any] = {}
    for d in dicts:
        for k, v in d.items():
            if k in out:
                raise ValueError(f"two models share the parameter name {k!r}; name the models "
                                 "(e.g. Sequential([...], name='gen')) so their parameters differ")
            out[k] = v
    return out


__all__ = [
    "ACTIVATIONS", "GELU", "GRU", "INITIALIZERS", "LSTM", "RNN", "Activation", "AvgPool2d",
    "BatchNorm", "Context", "Conv2d", "Dense", "Dropout", "Embedding", "Flatten", "Layer",
    "LayerNorm", "LeakyReLU", "MaxPool2d", "ReLU", "Reshape", "Sequential", "Sigmoid",
    "Softmax", "Tanh", "Var", "activation", "dropout", "elu", "gelu", "identity", "initializer",
    "leaky_relu", "merge", "random_normal", "random_uniform", "silu",
]
