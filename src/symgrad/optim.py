"""Optimizers as update graphs, and a training step compiled into one call.

An optimizer does not touch arrays. Given symbolic parameters, their gradients and its
own state (placeholders), it builds the NEW parameters and the NEW state as graph
expressions; :class:`TrainStep` compiles the loss, the gradients and those updates into
one function, owns the parameter and state arrays between calls, and rebinds them to
the function's outputs after each call::

    x, y = sg.placeholder("x", (None, 64)), sg.placeholder("y", (None,), "int64")
    model = sg.nn.Sequential([sg.nn.Dense(64, 32, activation="relu"), sg.nn.Dense(32, 10)])
    loss = sg.nn.cross_entropy(model(x), y)
    step = sg.optim.TrainStep(loss, model.init_params(seed=0), sg.optim.Adam(1e-3))
    for xb, yb in batches:
        step(x=xb, y=yb)          # forward, backward, update: one compiled call
    step.params["dense1.w"]

Full-batch, mini-batch and stochastic gradient descent are the same update rule; they
differ only in what is fed per call: the whole data set, a slice of ``batch_size``
examples, or one example (``sg.train.fit(..., batch_size=None | n | 1)``).

Learning rates may be numbers or schedules (:func:`step_decay`, :func:`exponential`,
:func:`cosine`, :func:`warmup`, composable with ``*`` and by nesting); a schedule is a
graph of the optimizer's step counter, so it is computed inside the compiled step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

import symgrad.ops.api as F
from symgrad.compile import Function, compile
from symgrad.derivatives import grad
from symgrad.errors import InputError
from symgrad.ir.dtypes import FLOATS
from symgrad.ir.graph import placeholders
from symgrad.ir.shape import shape_str
from symgrad.ir.tensor import Tensor, placeholder

STEP = "optim.step"


# -- learning-rate schedules ------------------------------------------------------------------
class Schedule:
    """A learning rate as a function of the step counter (an int64 scalar tensor).

    ``schedule(step)`` builds the float64 scalar graph; ``schedule.values(n)`` evaluates the
    first ``n`` steps (by compiling that graph) for plots and tests. Schedules compose:
    ``a * b`` and ``a * 0.5`` multiply, :func:`warmup` wraps another schedule.
    """

    def __call__(self, step: Tensor) -> Tensor:
        raise NotImplementedError

    def values(self, n: int) -> np.ndarray:
        s = placeholder("optim.schedule_step", (n,), "int64")
        f = compile(self(s), [s])
        return np.asarray(f(np.arange(n, dtype=np.int64)), dtype=np.float64)

    def __mul__(self, other: Schedule | float) -> Schedule:
        return _Product(self, as_schedule(other))

    __rmul__ = __mul__


@dataclass(frozen=True)
class Constant(Schedule):
    """A fixed learning rate."""

    lr: float

    def __call__(self, step: Tensor) -> Tensor:
        return F.full(step.shape, float(self.lr), "float64")


@dataclass(frozen=True)
class _Product(Schedule):
    a: Schedule
    b: Schedule

    def __call__(self, step: Tensor) -> Tensor:
        return F.mul(self.a(step), self.b(step))


def _t(step: Tensor) -> Tensor:
    return F.cast(step, "float64")


@dataclass(frozen=True)
class StepDecay(Schedule):
    """``lr * gamma ** floor(step / every)``: multiply by ``gamma`` every ``every`` steps."""

    lr: float
    every: int
    gamma: float = 0.1

    def __call__(self, step: Tensor) -> Tensor:
        k = F.floor(F.div(_t(step), float(self.every)))
        return F.mul(float(self.lr), F.pow(float(self.gamma), k))


@dataclass(frozen=True)
class Exponential(Schedule):
    """``lr * rate ** (step / every)`` (smooth exponential decay)."""

    lr: float
    rate: float
    every: float = 1.0

    def __call__(self, step: Tensor) -> Tensor:
        return F.mul(float(self.lr), F.exp(F.mul(_t(step), math.log(self.rate) / self.every)))


@dataclass(frozen=True)
class Cosine(Schedule):
    """Half a cosine from ``lr`` down to ``final`` over ``steps`` steps, then ``final``."""

    lr: float
    steps: int
    final: float = 0.0

    def __call__(self, step: Tensor) -> Tensor:
        frac = F.minimum(F.div(_t(step), float(self.steps)), 1.0)
        wave = F.mul(F.add(F.cos(F.mul(frac, math.pi)), 1.0), 0.5)
        return F.add(float(self.final), F.mul(wave, float(self.lr - self.final)))


@dataclass(frozen=True)
class Warmup(Schedule):
    """Linear warm-up: ``inner(0) * (step + 1) / steps`` for the first ``steps`` steps,
    then ``inner(step - steps)`` (so the inner schedule starts when warm-up ends)."""

    inner: Schedule
    steps: int

    def __call__(self, step: Tensor) -> Tensor:
        ramp = F.div(F.add(_t(step), 1.0), float(self.steps))
        after = F.maximum(F.sub(step, int(self.steps)), 0)
        start = self.inner(F.mul(step, 0))
        return F.where(F.less(step, int(self.steps)), F.mul(start, ramp), self.inner(after))


def as_schedule(lr: Schedule | float) -> Schedule:
    if isinstance(lr, Schedule):
        return lr
    if isinstance(lr, (int, float, np.floating, np.integer)) and not isinstance(lr, bool):
        return Constant(float(lr))
    raise TypeError(f"a learning rate must be a number or a Schedule, got {lr!r}")


def constant(lr: float) -> Schedule:
    return Constant(lr)


def step_decay(lr: float, every: int, gamma: float = 0.1) -> Schedule:
    return StepDecay(lr, every, gamma)


def exponential(lr: float, rate: float, every: float = 1.0) -> Schedule:
    return Exponential(lr, rate, every)


def cosine(lr: float, steps: int, final: float = 0.0) -> Schedule:
    return Cosine(lr, steps, final)


def warmup(inner: Schedule | float, steps: int) -> Schedule:
    if steps < 1:
        raise ValueError(f"warmup needs at least one step, got {steps}")
    return Warmup(as_schedule(inner), steps)


# -- gradient clipping ------------------------------------------------------------------------
def global_norm(tensors: Sequence[Tensor]) -> Tensor:
    """sqrt of the sum of squares of every entry of every tensor (float64 scalar)."""
    total: Tensor | None = None
    for t in tensors:
        sq = F.cast(F.sum(F.mul(t, t)), "float64")
        total = sq if total is None else F.add(total, sq)
    return F.sqrt(total if total is not None else F.full((), 0.0, "float64"))


def clip_by_value(grads: Mapping[str, Tensor], limit: float) -> dict[str, Tensor]:
    """Each gradient entry limited to ``[-limit, limit]``."""
    if not limit > 0:
        raise ValueError(f"clip_by_value: the limit must be positive, got {limit}")
    return {k: F.clip(g, -float(limit), float(limit)) for k, g in grads.items()}


def clip_by_global_norm(grads: Mapping[str, Tensor], max_norm: float) -> dict[str, Tensor]:
    """All gradients scaled by ``max_norm / max(norm, max_norm)``, where ``norm`` is their
    joint L2 norm: unchanged when the norm is within bounds, else rescaled to it."""
    if not max_norm > 0:
        raise ValueError(f"clip_by_global_norm: max_norm must be positive, got {max_norm}")
    norm = global_norm(list(grads.values()))
    scale = F.div(float(max_norm), F.maximum(norm, float(max_norm)))
    return {k: F.mul(g, F.cast(scale, g.dtype)) for k, g in grads.items()}


# -- optimizers ---------------------------------------------------------------------------------
def slot_name(slot: str, param: str) -> str:
    """The name of an optimizer state placeholder: ``optim.<slot>[<param>]``."""
    return f"optim.{slot}[{param}]"


class Optimizer:
    """Base class: the update rule of one parameter, plus what every optimizer shares.

    Parameters
    ----------
    lr : a number or a :class:`Schedule` of the step counter.
    weight_decay : L2 penalty added to the gradient (``g + weight_decay * p``); AdamW
        instead decays the parameter directly (decoupled).
    clip_value : clip each gradient entry to ``[-clip_value, clip_value]``.
    clip_norm : rescale all gradients jointly so their global L2 norm is at most this.
    average : ``None``, ``"ema"`` (exponential moving average with ``ema_decay``) or
        ``"polyak"`` (the running mean of every iterate): averaged parameters are kept as
        state and read with ``TrainStep.averaged``.
    """

    slots: tuple[str, ...] = ()
    decoupled = False

    def __init__(self, lr: Schedule | float, *, weight_decay: float = 0.0,
                 clip_value: float | None = None, clip_norm: float | None = None,
                 average: str | None = None, ema_decay: float = 0.999) -> None:
        self.lr = as_schedule(lr)
        self.weight_decay = float(weight_decay)
        self.clip_value = clip_value
        self.clip_norm = clip_norm
        if average not in (None, "ema", "polyak"):
            raise ValueError(f"average must be None, 'ema' or 'polyak', got {average!r}")
        if not 0.0 <= ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {ema_decay}")
        self.average = average
        self.ema_decay = float(ema_decay)

    # -- state ----------------------------------------------------------------------
    def _all_slots(self) -> tuple[str, ...]:
        return self.slots + (("avg",) if self.average else ())

    def state_placeholders(self, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The state as placeholders: the step counter and one tensor per slot and param."""
        out = {STEP: placeholder(STEP, (), "int64")}
        for name, p in params.items():
            for slot in self._all_slots():
                out[slot_name(slot, name)] = placeholder(slot_name(slot, name), p.shape, p.dtype)
        return out

    def init_state(self, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Initial state values: step 0, zero slots, averages starting at the parameters."""
        out = {STEP: np.zeros((), np.int64)}
        for name, p in params.items():
            for slot in self._all_slots():
                out[slot_name(slot, name)] = np.array(p, copy=True) if slot == "avg" else np.zeros_like(p)
        return out

    # -- the update graph ----------------------------------------------------------------
    def transform_grads(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Clipping, then the coupled L2 weight decay."""
        out = dict(grads)
        if self.clip_value is not None:
            out = clip_by_value(out, self.clip_value)
        if self.clip_norm is not None:
            out = clip_by_global_norm(out, self.clip_norm)
        if self.weight_decay and not self.decoupled:
            out = {k: F.add(g, F.mul(params[k], self.weight_decay)) for k, g in out.items()}
        return out

    def update(self, params: Mapping[str, Tensor], grads: Mapping[str, Tensor],
               state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """New parameters and new state, as graphs of ``params``, ``grads`` and ``state``."""
        step = state[STEP]
        lr64 = self.lr(step)
        g = self.transform_grads(params, grads)
        new_params: dict[str, Tensor] = {}
        new_state: dict[str, Tensor] = {STEP: F.add(step, 1)}
        for name, p in params.items():
            slots = {s: state[slot_name(s, name)] for s in self.slots}
            lr = F.cast(lr64, p.dtype)
            p_new, slots_new = self.rule(p, g[name], slots, lr, step)
            new_params[name] = p_new
            for s, v in slots_new.items():
                new_state[slot_name(s, name)] = v
            if self.average:
                avg = state[slot_name("avg", name)]
                if self.average == "ema":
                    a_new = F.add(F.mul(avg, self.ema_decay), F.mul(p_new, 1.0 - self.ema_decay))
                else:  # polyak: running mean of p_0 .. p_{t+1}
                    count = F.cast(F.add(step, 2), p.dtype)
                    a_new = F.add(avg, F.div(F.sub(p_new, avg), count))
                new_state[slot_name("avg", name)] = a_new
        return new_params, new_state

    def rule(self, p: Tensor, g: Tensor, slots: dict[str, Tensor], lr: Tensor,
             step: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(lr={self.lr})"


class SGD(Optimizer):
    """Gradient descent, optionally with momentum (heavy ball) or Nesterov momentum.

    ``v = momentum * v + g``; the step is ``lr * v`` (heavy ball) or
    ``lr * (g + momentum * v)`` (Nesterov). Whether this is full-batch, mini-batch or
    stochastic gradient descent is decided by what each call is fed.
    """

    def __init__(self, lr: Schedule | float = 0.01, momentum: float = 0.0, nesterov: bool = False,
                 **kw: Any) -> None:
        super().__init__(lr, **kw)
        if nesterov and not momentum:
            raise ValueError("Nesterov momentum needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = nesterov
        self.slots = ("v",) if momentum else ()

    def rule(self, p: Tensor, g: Tensor, slots: dict[str, Tensor], lr: Tensor,
             step: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if not self.momentum:
            return F.sub(p, F.mul(lr, g)), {}
        v = F.add(F.mul(slots["v"], self.momentum), g)
        d = F.add(g, F.mul(v, self.momentum)) if self.nesterov else v
        return F.sub(p, F.mul(lr, d)), {"v": v}


class Adam(Optimizer):
    """Adam: bias-corrected first and second moment estimates.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``, with ``t = step + 1``:
    ``p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)``.
    ``weight_decay`` is the coupled L2 penalty; see :class:`AdamW` for the decoupled one.
    """

    slots = ("m", "v")

    def __init__(self, lr: Schedule | float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, **kw: Any) -> None:
        super().__init__(lr, **kw)
        self.b1, self.b2 = float(betas[0]), float(betas[1])
        self.eps = float(eps)

    def rule(self, p: Tensor, g: Tensor, slots: dict[str, Tensor], lr: Tensor,
             step: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        m = F.add(F.mul(slots["m"], self.b1), F.mul(g, 1.0 - self.b1))
        v = F.add(F.mul(slots["v"], self.b2), F.mul(F.mul(g, g), 1.0 - self.b2))
        t = F.cast(F.add(step, 1), "float64")
        c1 = F.cast(F.sub(1.0, F.pow(self.b1, t)), p.dtype)
        c2 = F.cast(F.sub(1.0, F.pow(self.b2, t)), p.dtype)
        denom = F.add(F.sqrt(F.div(v, c2)), self.eps)
        p_new = F.sub(self._decay(p, lr), F.mul(lr, F.div(F.div(m, c1), denom)))
        return p_new, {"m": m, "v": v}

    def _decay(self, p: Tensor, lr: Tensor) -> Tensor:
        return p


class AdamW(Adam):
    """Adam with decoupled weight decay: ``p *= 1 - lr * weight_decay`` before the Adam
    step (the decay does not pass through the moment estimates)."""

    decoupled = True

    def __init__(self, lr: Schedule | float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01, **kw: Any) -> None:
        super().__init__(lr, betas, eps, weight_decay=weight_decay, **kw)

    def _decay(self, p: Tensor, lr: Tensor) -> Tensor:
        if not self.weight_decay:
            return p
        return F.mul(p, F.sub(1.0, F.mul(lr, self.weight_decay)))


class RMSProp(Optimizer):
    """RMSProp: ``s = alpha s + (1-alpha) g^2``, step ``lr * g / (sqrt(s) + eps)``.

    ``centered`` divides by the estimated standard deviation instead (``s - gbar^2``);
    ``momentum`` accumulates the scaled steps in a buffer.
    """

    def __init__(self, lr: Schedule | float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, centered: bool = False, **kw: Any) -> None:
        super().__init__(lr, **kw)
        self.alpha, self.eps = float(alpha), float(eps)
        self.momentum, self.centered = float(momentum), centered
        self.slots = ("s",) + (("gbar",) if centered else ()) + (("buf",) if momentum else ())

    def rule(self, p: Tensor, g: Tensor, slots: dict[str, Tensor], lr: Tensor,
             step: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        a = self.alpha
        s = F.add(F.mul(slots["s"], a), F.mul(F.mul(g, g), 1.0 - a))
        new = {"s": s}
        var = s
        if self.centered:
            gbar = F.add(F.mul(slots["gbar"], a), F.mul(g, 1.0 - a))
            new["gbar"] = gbar
            var = F.sub(s, F.mul(gbar, gbar))
        d = F.div(g, F.add(F.sqrt(var), self.eps))
        if self.momentum:
            d = F.add(F.mul(slots["buf"], self.momentum), d)
            new["buf"] = d
        return F.sub(p, F.mul(lr, d)), new


# -- the compiled training step -------------------------------------------------------------------
def _as_array(name: str, value: Any, like: Tensor | None = None) -> np.ndarray:
    arr = np.array(value, copy=True)
    if like is not None:
        if arr.dtype.name != like.dtype:
            arr = arr.astype(like.dtype)
        if arr.shape != tuple(like.shape):
            raise InputError(f"initial value of {name!r} has shape {arr.shape}, but the graph "
                             f"uses it with shape {shape_str(like.shape)}")
    return arr


class TrainStep:
    """One training step (forward, backward, update) compiled as ONE call.

    Parameters
    ----------
    loss : scalar loss tensor.
    params : initial values of the trainable parameters, by placeholder name.
    optimizer : an :class:`Optimizer`.
    buffers : initial values of non-trained state (running statistics, random-number
        counters), by placeholder name; ``updates`` gives each one's new value.
    updates : ``{buffer name: tensor}``; the buffer is rebound to it after each call.
    metrics : ``{name: scalar tensor}`` returned by each call next to the loss.
    inputs : the data placeholders in positional order (default: every other placeholder
        the loss depends on, in creation order).
    backend, pipeline : passed to :func:`sg.compile`.
    grad_norms : also return each parameter's gradient L2 norm (``last_grad_norms``).

    Calling ``step(*data, **data)`` runs the compiled function on the data and the
    current parameters and state; its outputs become the new parameters and state (the
    arrays are rebound, not copied). If the loss or any new parameter is NaN/Inf, nothing
    is rebound: the parameters of the last good step stay, and ``last_finite`` is False.
    """

    def __init__(self, loss: Tensor, params: Mapping[str, Any], optimizer: Optimizer | None = None,
                 *, buffers: Mapping[str, Any] | None = None, updates: Mapping[str, Tensor] | None = None,
                 metrics: Mapping[str, Tensor] | None = None, inputs: Sequence[Tensor] | None = None,
                 backend: str = "numpy", pipeline: str | None = None, grad_norms: bool = True) -> None:
        if not isinstance(loss, Tensor) or loss.shape != () or loss.dtype not in FLOATS:
            raise TypeError(f"TrainStep: the loss must be a float scalar tensor, got {loss!r}")
        self.optimizer = optimizer if optimizer is not None else SGD(0.01)
        buffers = dict(buffers or {})
        updates = dict(updates or {})
        metrics = dict(metrics or {})
        missing = sorted(set(updates) - set(buffers))
        if missing:
            raise ValueError(f"TrainStep: updates given for {missing} without an initial buffer value")
        graph = placeholders([loss, *updates.values(), *metrics.values()])
        by_name = {t.name or "": t for t in graph}
        unknown = [n for n in params if n not in by_name]
        if unknown:
            raise ValueError(f"TrainStep: parameter{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(map(repr, unknown))} not used by the loss; the graph's "
                             f"placeholders are: {', '.join(sorted(by_name))}")
        # a buffer the graph does not read (dropout with rate 0) is carried unchanged
        self._idle_buffers = {n: np.array(v, copy=True) for n, v in buffers.items() if n not in by_name}
        buffers = {n: v for n, v in buffers.items() if n in by_name}
        p_ph = {n: by_name[n] for n in params}
        for n, t in p_ph.items():
            if t.dtype not in FLOATS:
                raise TypeError(f"TrainStep: parameter {n!r} has dtype {t.dtype}; only float "
                                "placeholders can be trained")
        b_ph = {n: by_name[n] for n in buffers}
        s_ph = self.optimizer.state_placeholders(p_ph)
        clash = sorted(set(s_ph) & set(by_name))
        if clash:
            raise ValueError(f"TrainStep: placeholder names {clash} are reserved for optimizer state")
        taken = set(params) | set(buffers)
        data = list(inputs) if inputs is not None else [t for t in graph if t.name not in taken]

        grads = dict(zip(p_ph, grad(loss, list(p_ph.values()))))
        new_params, new_state = self.optimizer.update(p_ph, grads, s_ph)
        finite = F.full((), 0.0, "float64")
        for p in new_params.values():
            finite = F.add(finite, F.cast(F.sum(p), "float64"))
        norms = [F.sqrt(F.cast(F.sum(F.mul(g, g)), "float64")) for g in grads.values()] if grad_norms else []

        self.param_names = list(p_ph)
        self.state_names = list(s_ph)
        self.buffer_names = list(b_ph)
        self.metric_names = list(metrics)
        self.data_names = [t.name or "" for t in data]
        outputs = [loss, finite, *metrics.values(), *norms, *new_params.values(),
                   *(new_state[n] for n in self.state_names),
                   *(updates.get(n, b) for n, b in b_ph.items())]
        ins = [*data, *p_ph.values(), *s_ph.values(), *b_ph.values()]
        self.function: Function = compile(outputs, ins, backend=backend, pipeline=pipeline)
        self.backend = backend
        self._n_norms = len(norms)
        self._params = [_as_array(n, params[n], p_ph[n]) for n in self.param_names]
        init_state = self.optimizer.init_state(dict(zip(self.param_names, self._params)))
        self._state = [init_state[n] for n in self.state_names]
        self._buffers = [_as_array(n, buffers[n], b_ph[n]) for n in self.buffer_names]
        self.steps = 0
        self.last_loss = math.nan
        self.last_finite = True
        self.last_metrics: dict[str, float] = {}
        self.last_grad_norms: dict[str, float] = {}
        self.last_time = 0.0

    # -- arrays owned by the step -----------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        """The current parameters by name (the step's own arrays: copy before mutating)."""
        return dict(zip(self.param_names, self._params))

    @property
    def state(self) -> dict[str, np.ndarray]:
        """The optimizer state by name (``optim.step``, ``optim.m[dense1.w]``, ...)."""
        return dict(zip(self.state_names, self._state))

    @property
    def buffers(self) -> dict[str, np.ndarray]:
        """The buffers (running statistics, random-number counters) by name."""
        return {**self._idle_buffers, **dict(zip(self.buffer_names, self._buffers))}

    @property
    def averaged(self) -> dict[str, np.ndarray]:
        """The averaged parameters (needs ``average=`` on the optimizer)."""
        if not self.optimizer.average:
            raise ValueError("this optimizer keeps no averages; pass average='ema' or 'polyak'")
        state = self.state
        return {n: state[slot_name("avg", n)] for n in self.param_names}

    def variables(self) -> dict[str, np.ndarray]:
        """Parameters and buffers together: what an evaluation graph needs."""
        return {**self.params, **self.buffers}

    def set_params(self, values: Mapping[str, Any]) -> None:
        for i, n in enumerate(self.param_names):
            if n in values:
                self._params[i] = np.array(values[n], dtype=self._params[i].dtype, copy=True)

    def set_buffers(self, values: Mapping[str, Any]) -> None:
        for i, n in enumerate(self.buffer_names):
            if n in values:
                self._buffers[i] = np.array(values[n], dtype=self._buffers[i].dtype, copy=True)

    def arguments(self, data: Sequence[Any], named: Mapping[str, Any]) -> list[Any]:
        """The positional argument list of the compiled function for one call."""
        if named:
            if data:
                raise InputError("TrainStep: give the data either by position or by name, not both")
            unknown = sorted(set(named) - set(self.data_names))
            if unknown:
                raise InputError(f"TrainStep: unknown input {', '.join(map(repr, unknown))}; the "
                                 f"data inputs are: {', '.join(self.data_names)}")
            missing = [n for n in self.data_names if n not in named]
            if missing:
                raise InputError(f"TrainStep: missing input {', '.join(map(repr, missing))}")
            data = [named[n] for n in self.data_names]
        elif len(data) != len(self.data_names):
            raise InputError(f"TrainStep: expected {len(self.data_names)} data inputs "
                             f"({', '.join(self.data_names)}), got {len(data)}")
        return [*data, *self._params, *self._state, *self._buffers]

    def __call__(self, *data: Any, **named: Any) -> float:
        """Run one step; return the loss (the parameters are updated in place of the old)."""
        args = self.arguments(data, named)
        t0 = time.perf_counter()
        outs = self.function(*args)
        self.last_time = time.perf_counter() - t0
        loss, finite = float(outs[0]), float(outs[1])
        k = 2
        self.last_metrics = {n: float(v) for n, v in zip(self.metric_names, outs[k:k + len(self.metric_names)])}
        k += len(self.metric_names)
        self.last_grad_norms = {n: float(v) for n, v in zip(self.param_names, outs[k:k + self._n_norms])}
        k += self._n_norms
        self.last_loss = loss
        self.last_finite = math.isfinite(loss) and math.isfinite(finite)
        if not self.last_finite:
            return loss
        n_p, n_s = len(self._params), len(self._state)
        self._params = list(outs[k:k + n_p])
        self._state = list(outs[k + n_p:k + n_p + n_s])
        self._buffers = list(outs[k + n_p + n_s:])
        self.steps += 1
        return loss


__all__ = [
    "STEP", "SGD", "Adam", "AdamW", "Constant", "Cosine", "Exponential", "Optimizer", "RMSProp",
    "Schedule", "StepDecay", "TrainStep", "Warmup", "as_schedule", "clip_by_global_norm",
    "clip_by_value", "constant", "cosine", "exponential", "global_norm", "slot_name",
    "step_decay", "warmup",
]
