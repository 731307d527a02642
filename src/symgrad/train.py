"""The training loop: initialize, forward, loss, backward, update, repeat.

:class:`Trainer` wraps a model (a :mod:`sg.nn <symgrad.layers>` layer), a loss and an
optimizer into a :class:`~symgrad.optim.TrainStep` (one compiled call per step) and runs
it over the data::

    trainer = sg.train.Trainer(model, "cross_entropy", sg.optim.Adam(1e-3),
                               metrics={"accuracy": sg.train.accuracy})
    history = trainer.fit(x_train, y_train, epochs=20, batch_size=32)
    trainer.evaluate(x_test, y_test)      # {"loss": ..., "accuracy": ...}

``batch_size=None`` feeds the whole data set per step (full-batch gradient descent),
``batch_size=1`` one example (stochastic), anything else mini-batches, reshuffled every
epoch from ``seed``. Training stops after ``epochs``, after ``max_steps``, or when a
step's loss falls below ``loss_threshold``.

While it runs the trainer watches for the failures every backpropagation user meets:

* per-layer gradient norms (computed inside the step): a layer whose gradient is far
  smaller than the largest layer's (vanishing) or larger than ``explode`` (exploding)
  gets a :class:`GradientWarning` naming it;
* a NaN or Inf loss or update: the parameters of the last good step are kept, the step
  is re-run op by op on NumPy to name the first op that produced the non-finite value
  (and the line that built it), and :class:`NonFiniteError` is raised (or a warning,
  with ``on_nonfinite="warn"``);
* bad data: labels out of range and inputs/labels of different lengths are refused
  before any step runs, naming the offending entry.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import symgrad.ops.api as F
from symgrad import nn
from symgrad.compile import Function, compile
from symgrad.errors import InputError, SymgradError
from symgrad.ir import shape as S
from symgrad.ir.graph import placeholders, toposort
from symgrad.ir.shape import Dim
from symgrad.ir.tensor import ConstData, Tensor, placeholder
from symgrad.layers import Layer
from symgrad.optim import Adam, Optimizer, TrainStep


class GradientWarning(UserWarning):
    """A layer's gradients vanish or explode."""


class NonFiniteError(SymgradError, FloatingPointError, ValueError):
    """A training step produced NaN or Inf. ``culprit`` names the first op that did."""

    def __init__(self, message: str, culprit: Culprit | None = None, step: int = 0) -> None:
        super().__init__(message)
        self.culprit = culprit
        self.step = step


# -- metrics -----------------------------------------------------------------------------------------
def accuracy(logits: Tensor, labels: Tensor) -> Tensor:
    """Fraction of rows whose largest logit is at the label."""
    return F.mean(F.cast(F.equal(F.argmax(logits, -1), F.cast(labels, "int64")), logits.dtype))


LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cross_entropy": nn.cross_entropy,
    "mse": nn.mse,
    "binary_cross_entropy": nn.binary_cross_entropy,
    "binary_cross_entropy_with_logits": nn.binary_cross_entropy_with_logits,
}


# -- data -------------------------------------------------------------------------------------------
def batches(*arrays: np.ndarray, batch_size: int | None = None, shuffle: bool = True, seed: int = 0,
            epoch: int = 0, drop_last: bool = False) -> Iterator[tuple[np.ndarray, ...]]:
    """Yield aligned slices of ``arrays`` (all of one length).

    ``batch_size=None`` yields everything once (full batch), ``1`` one example at a time
    (stochastic), ``n`` mini-batches of ``n``. With ``shuffle`` the order is a permutation
    drawn from ``(seed, epoch)``, so each epoch differs and every run repeats.
    """
    n = check_lengths(*arrays)
    if batch_size is None or batch_size >= n:
        if shuffle and n > 1:
            idx = np.random.default_rng([seed, epoch]).permutation(n)
            yield tuple(a[idx] for a in arrays)
        else:
            yield tuple(arrays)
        return
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    order = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield tuple(a[idx] for a in arrays)


def check_lengths(*arrays: Any) -> int:
    """The common length of ``arrays``; a clear error when they differ."""
    lengths = [len(a) for a in arrays]
    if not lengths:
        raise ValueError("no data given")
    if len(set(lengths)) != 1:
        what = ", ".join(f"argument {i} has {k}" for i, k in enumerate(lengths))
        raise ValueError(f"inputs and labels must have the same number of examples: {what}")
    return lengths[0]


def check_labels(labels: np.ndarray, classes: int) -> None:
    """Integer labels must lie in ``[0, classes)``; name the first one that does not."""
    if labels.size == 0:
        return
    bad = np.flatnonzero((labels.reshape(-1) < 0) | (labels.reshape(-1) >= classes))
    if bad.size:
        i = int(bad[0])
        pos = np.unravel_index(i, labels.shape)
        where = pos[0] if len(pos) == 1 else tuple(int(p) for p in pos)
        raise ValueError(f"label {labels.reshape(-1)[i]} at index {where} is out of range: the "
                         f"model has {classes} outputs, so labels must lie in [0, {classes - 1}] "
                         f"({bad.size} of {labels.size} labels are out of range)")


# -- naming the op that made a NaN ----------------------------------------------------------------------
@dataclass
class Culprit:
    """The first op whose output is non-finite although its inputs are finite."""

    node: Tensor
    value: np.ndarray
    inputs: list[np.ndarray]
    in_forward: bool

    def describe(self) -> str:
        n = self.node
        shapes = ", ".join(f"{a.dtype}{list(a.shape)}" for a in self.inputs)
        kind = "NaN" if np.isnan(self.value).any() else "Inf"
        stats = "; ".join(
            f"input {k} ranges over [{np.nanmin(a):.3g}, {np.nanmax(a):.3g}]"
            for k, a in enumerate(self.inputs) if a.dtype.kind == "f" and a.size
        )
        part = "the forward pass (the loss)" if self.in_forward else "the backward pass or the update"
        return (f"op '{n.op.name}' produced {kind} in {part}, built at {n.loc} "
                f"(operands {shapes}{'; ' + stats if stats else ''})")


def _attr_value(v: Any, env: Mapping[str, int]) -> Any:
    if isinstance(v, Dim):
        return S.evaluate(v, env)
    if isinstance(v, tuple):
        return tuple(_attr_value(x, env) for x in v)
    return v


def evaluate_ops(outputs: Sequence[Tensor], values: Mapping[int, np.ndarray], env: Mapping[str, int],
                 stop: Callable[[Tensor, np.ndarray, list[np.ndarray]], bool] | None = None
                 ) -> tuple[dict[int, np.ndarray], Tensor | None]:
    """Run a graph op by op with the ops' NumPy references.

    ``values`` holds the placeholders' arrays keyed by node id and ``env`` the sizes.
    ``stop(node, value, inputs)`` ends the walk early; the node it stopped at is returned.
    """
    out: dict[int, np.ndarray] = dict(values)
    with np.errstate(all="ignore"):
        for node in toposort(outputs):
            if id(node) in out:
                continue
            name = node.op.name
            if name == "placeholder":
                raise InputError(f"no value for placeholder {node.name!r}")
            if name == "dim":
                value = np.asarray(S.evaluate(node.attr("size"), env), dtype=node.dtype)
                args: list[np.ndarray] = []
            elif name == "constant":
                value = node.attr("value").array
                args = []
            else:
                if node.op.reference is None:
                    raise ValueError(f"op {name} has no NumPy reference to re-run it with")
                args = [out[id(i)] for i in node.inputs]
                kw = {k: _attr_value(v, env) for k, v in node.attrs if not isinstance(v, ConstData)}
                value = np.asarray(node.op.reference(*args, **kw))
            out[id(node)] = value
            if stop is not None and stop(node, value, args):
                return out, node
    return out, None


def find_nonfinite(function: Function, args: Sequence[Any], loss: Tensor | None = None) -> Culprit | None:
    """Re-run ``function``'s optimized graph op by op on ``args`` and return the first op
    that turns finite inputs into NaN/Inf (``None`` if every value stays finite)."""
    arrays, env = function.bind(list(args), {})
    values = {id(t): a for t, a in zip(function._inputs, arrays)}
    forward = {id(n) for n in toposort([loss if loss is not None else function.graph[0]])}

    def bad(a: np.ndarray) -> bool:
        return a.dtype.kind == "f" and a.size > 0 and not bool(np.isfinite(a).all())

    def stop(node: Tensor, value: np.ndarray, inputs: list[np.ndarray]) -> bool:
        return bad(value) and not any(bad(a) for a in inputs)

    # placeholders that are already non-finite are the data's fault, not an op's
    for t, a in zip(function._inputs, arrays):
        if bad(np.asarray(a)):
            raise NonFiniteError(f"input {t.name!r} holds NaN or Inf before any op runs")
    computed, node = evaluate_ops(function.graph, values, env, stop)
    if node is None:
        return None
    return Culprit(node, computed[id(node)], [computed[id(i)] for i in node.inputs], id(node) in forward)


# -- history ----------------------------------------------------------------------------------------------
@dataclass
class History:
    """What a run recorded. ``loss`` has one entry per step; the ``epoch_*`` lists one per
    epoch; ``grad_norms`` one dict {layer: norm} per step."""

    loss: list[float] = field(default_factory=list)
    epoch_loss: list[float] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)
    validation: dict[str, list[float]] = field(default_factory=dict)
    grad_norms: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    epochs: int = 0
    examples: int = 0
    seconds: float = 0.0
    step_seconds: float = 0.0
    stopped: str = ""

    @property
    def time_per_step(self) -> float:
        """Mean seconds inside the compiled step call."""
        return self.step_seconds / max(self.steps, 1)


def layer_of(param: str) -> str:
    """``"enc.dense1.w"`` -> ``"enc.dense1"``."""
    return param.rsplit(".", 1)[0] if "." in param else param


def layer_norms(norms: Mapping[str, float]) -> dict[str, float]:
    """Per-parameter gradient norms combined into per-layer norms."""
    sq: dict[str, float] = {}
    for p, v in norms.items():
        sq[layer_of(p)] = sq.get(layer_of(p), 0.0) + v * v
    return {k: math.sqrt(v) if math.isfinite(v) else v for k, v in sq.items()}


class GradientMonitor:
    """Warn (once per layer and kind) when a layer's gradient vanishes or explodes.

    Vanishing: the layer's gradient norm is below ``vanish`` times the largest layer's (the
    signal dies on its way back through the network). Exploding: above ``explode``, or
    not finite."""

    def __init__(self, vanish: float = 1e-5, explode: float = 1e3) -> None:
        self.vanish, self.explode = vanish, explode
        self.warned: set[tuple[str, str]] = set()

    def check(self, norms: Mapping[str, float], step: int) -> None:
        if not norms:
            return
        finite = [v for v in norms.values() if math.isfinite(v)]
        top_layer = max(norms, key=lambda k: norms[k] if math.isfinite(norms[k]) else -1.0)
        top = max(finite) if finite else 0.0
        for layer, v in norms.items():
            if not math.isfinite(v) or v > self.explode:
                self._warn(layer, "explode",
                           f"exploding gradient in layer {layer!r} at step {step}: norm {v:.3g} "
                           f"exceeds {self.explode:.3g}; lower the learning rate, clip gradients "
                           "(clip_norm=...), or rescale the inputs")
            elif len(norms) > 1 and top > 0 and v < self.vanish * top:
                self._warn(layer, "vanish",
                           f"vanishing gradient in layer {layer!r} at step {step}: norm {v:.3g} is "
                           f"{v / top:.1e} of the largest layer's ({top_layer!r}: {top:.3g}); "
                           "saturating activations (sigmoid/tanh), too small initial weights or "
                           "too deep a stack stop the signal")

    def _warn(self, layer: str, kind: str, message: str) -> None:
        if (layer, kind) in self.warned:
            return
        self.warned.add((layer, kind))
        warnings.warn(message, GradientWarning, stacklevel=4)


def progress_bar(total: int, enabled: bool, desc: str) -> Any:
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the progress bar is optional
        return None
    return tqdm(total=total, desc=desc, unit="ex", unit_scale=True, leave=True, dynamic_ncols=True)


# -- the trainer ---------------------------------------------------------------------------------------------
class Trainer:
    """Train a model with a loss and an optimizer; one compiled call per step.

    Parameters
    ----------
    model : a layer (``sg.nn.Sequential`` ...), called on the input placeholder.
    loss : ``"cross_entropy"``, ``"mse"``, ``"binary_cross_entropy(_with_logits)"`` or a
        function ``(outputs, targets) -> scalar tensor``.
    optimizer : an :mod:`sg.optim <symgrad.optim>` optimizer (default Adam(1e-3)).
    metrics : ``{name: fn(outputs, targets) -> scalar}``, computed per step and by
        :meth:`evaluate` (e.g. ``{"accuracy": sg.train.accuracy}``).
    backend : the compile backend for the training and evaluation functions.
    seed : initializes the parameters (``model.init(seed)``) and shuffles the batches.
    params : initial values instead of ``model.init(seed)``.
    vanish, explode : gradient-norm thresholds of the :class:`GradientMonitor`.
    on_nonfinite : ``"raise"`` (default) or ``"warn"`` when a step gives NaN/Inf.
    """

    def __init__(self, model: Layer, loss: str | Callable[[Tensor, Tensor], Tensor] = "cross_entropy",
                 optimizer: Optimizer | None = None, *, metrics: Mapping[str, Callable[[Tensor, Tensor], Tensor]] | None = None,
                 backend: str = "numpy", seed: int = 0, params: Mapping[str, Any] | None = None,
                 vanish: float = 1e-5, explode: float = 1e3, on_nonfinite: str = "raise",
                 input_name: str = "x", target_name: str = "y") -> None:
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"unknown loss {loss!r}; known: {', '.join(sorted(LOSSES))}")
            loss = LOSSES[loss]
        if on_nonfinite not in ("raise", "warn"):
            raise ValueError(f"on_nonfinite must be 'raise' or 'warn', got {on_nonfinite!r}")
        self.model = model
        self.loss_fn = loss
        self.optimizer = optimizer if optimizer is not None else Adam(1e-3)
        self.metric_fns = dict(metrics or {})
        self.backend = backend
        self.seed = seed
        self.monitor = GradientMonitor(vanish, explode)
        self.on_nonfinite = on_nonfinite
        self.input_name, self.target_name = input_name, target_name
        self._initial = dict(params) if params is not None else model.init(seed)
        self.step: TrainStep | None = None
        self._x: Tensor | None = None
        self._y: Tensor | None = None
        self._eval: dict[str, tuple[Function, list[str]]] = {}
        self.history = History()
        self._epoch = 0

    # -- graphs -----------------------------------------------------------------------------
    def _placeholders(self, x: np.ndarray, y: np.ndarray | None) -> None:
        """The input and target placeholders, shaped like one batch of the data (the
        leading size ``batch`` is shared, so a call with different lengths is refused)."""
        if self._x is None:
            xd = x.dtype.name if x.dtype.name in ("float64", "int32", "int64") else "float32"
            self._x = placeholder(self.input_name, ("batch", *x.shape[1:]), xd)
        if y is not None and self._y is None:
            if y.dtype.kind in "iu":
                yd = "int64"
            else:
                yd = "float64" if self._x.dtype == "float64" else "float32"
            self._y = placeholder(self.target_name, ("batch", *y.shape[1:]), yd)

    def _build(self, x: np.ndarray, y: np.ndarray) -> TrainStep:
        self._placeholders(x, y)
        assert self._x is not None and self._y is not None
        out, updates = self.model.apply(self._x, train=True)
        loss = self.loss_fn(out, self._y)
        metrics = {k: fn(out, self._y) for k, fn in self.metric_fns.items()}
        param_names = set(self.model.params)
        buffer_names = set(self.model.buffers)
        used = {t.name for t in placeholders([loss, *updates.values()])}
        params = {k: v for k, v in self._initial.items() if k in param_names and k in used}
        buffers = {k: v for k, v in self._initial.items() if k in buffer_names and k in used}
        missing = sorted((param_names & used) - set(params))
        if missing:
            raise ValueError(f"no initial values for {', '.join(map(repr, missing))}")
        return TrainStep(loss, params, self.optimizer, buffers=buffers, updates=updates, metrics=metrics,
                         inputs=[self._x, self._y], backend=self.backend)

    def _classes(self) -> int | None:
        """The static size of the model's last output axis, for integer-label checks."""
        assert self._x is not None
        out = self.model(self._x)
        last = out.shape[-1] if out.ndim else None
        return last if isinstance(last, int) and out.ndim >= 2 else None

    @property
    def params(self) -> dict[str, np.ndarray]:
        """The current parameters by name (after training: the last good step's)."""
        if self.step is None:
            return {k: v for k, v in self._initial.items() if k in self.model.params}
        return self.step.params

    def variables(self) -> dict[str, np.ndarray]:
        if self.step is None:
            return dict(self._initial)
        return {**self._initial, **self.step.variables()}

    # -- training ------------------------------------------------------------------------------
    def fit(self, x: Any, y: Any, *, epochs: int = 1, batch_size: int | None = 32, shuffle: bool = True,
            max_steps: int | None = None, loss_threshold: float | None = None, progress: bool = True,
            validation: tuple[Any, Any] | None = None, desc: str = "train") -> History:
        """Run the classic loop until ``epochs``, ``max_steps`` or ``loss_threshold``.

        Returns the :class:`History` (also kept as ``self.history``, which later calls
        extend). Raises ``ValueError`` before any step on mismatched lengths or labels out
        of range, and :class:`NonFiniteError` when a step gives NaN/Inf (parameters of the
        last good step kept).
        """
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim == 0:
            raise ValueError("x must have a leading example axis")
        n = check_lengths(x, y)
        if n == 0:
            raise ValueError(f"cannot fit on empty data: x has shape {x.shape} and y {y.shape}, "
                             "no examples to train on")
        self._placeholders(x, y)
        if y.dtype.kind in "iu" and self.loss_fn in (nn.cross_entropy,):
            classes = self._classes()
            if classes is not None:
                check_labels(y, classes)
        if validation is not None:
            vx, vy = np.asarray(validation[0]), np.asarray(validation[1])
            if check_lengths(vx, vy) == 0:
                raise ValueError(f"the validation data is empty: x has shape {vx.shape} and "
                                 f"y {vy.shape}")
        if self.step is None:
            self.step = self._build(x, y)
        step = self.step
        h = self.history
        per_epoch = 1 if batch_size is None else math.ceil(n / batch_size)
        total = epochs * n if max_steps is None else min(epochs * n, max_steps * min(batch_size or n, n))
        bar = progress_bar(total, progress, desc)
        t_start = time.perf_counter()
        h.stopped = "epochs"
        try:
            for _ in range(epochs):
                ep_losses: list[float] = []
                ep_metrics: dict[str, list[float]] = {k: [] for k in self.metric_fns}
                for xb, yb in batches(x, y, batch_size=batch_size, shuffle=shuffle, seed=self.seed,
                                      epoch=self._epoch):
                    loss = step(xb, yb)
                    if not step.last_finite:
                        self._nonfinite(step, [xb, yb], h)
                        h.stopped = "nonfinite"
                        return h
                    h.loss.append(loss)
                    h.steps += 1
                    h.examples += len(xb)
                    h.step_seconds += step.last_time
                    ep_losses.append(loss)
                    for k, v in step.last_metrics.items():
                        ep_metrics[k].append(v)
                    norms = layer_norms(step.last_grad_norms)
                    h.grad_norms.append(norms)
                    self.monitor.check(norms, h.steps)
                    if bar is not None:
                        bar.update(len(xb))
                        if h.steps % 5 == 1 or per_epoch < 5:
                            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
                    if loss_threshold is not None and loss < loss_threshold:
                        h.stopped = "loss_threshold"
                        break
                    if max_steps is not None and h.steps >= max_steps:
                        h.stopped = "max_steps"
                        break
                self._epoch += 1
                h.epochs += 1
                h.epoch_loss.append(float(np.mean(ep_losses)) if ep_losses else math.nan)
                for k, vs in ep_metrics.items():
                    h.metrics.setdefault(k, []).append(float(np.mean(vs)) if vs else math.nan)
                if validation is not None:
                    for k, v in self.evaluate(validation[0], validation[1]).items():
                        h.validation.setdefault(k, []).append(v)
                if h.stopped in ("loss_threshold", "max_steps"):
                    break
        finally:
            h.seconds += time.perf_counter() - t_start
            if bar is not None:
                bar.close()
        return h

    def _nonfinite(self, step: TrainStep, data: list[np.ndarray], h: History) -> None:
        args = step.arguments(data, {})
        culprit = find_nonfinite(step.function, args, step.function.graph[0])
        recent = h.loss[-20:]
        lr_hint = ""
        if len(recent) >= 3 and recent[-1] > 10 * min(recent):
            lr_hint = (f" The loss grew from {min(recent):.3g} to {recent[-1]:.3g} over the last "
                       f"{len(recent)} steps before this: the learning rate is probably too high.")
        elif not h.loss:
            lr_hint = " It happened on the first step: check the inputs' scale and the initial values."
        where = culprit.describe() if culprit is not None else \
            "no single op could be blamed when re-run on NumPy (the backend differs from NumPy here)"
        msg = (f"step {h.steps + 1} gave loss {step.last_loss}: {where}. The parameters of the "
               f"last good step (step {h.steps}) are kept.{lr_hint}")
        if self.on_nonfinite == "raise":
            raise NonFiniteError(msg, culprit, h.steps + 1)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)

    # -- evaluation ------------------------------------------------------------------------------
    def _eval_fn(self, what: str) -> tuple[Function, list[str]]:
        if what not in self._eval:
            assert self._x is not None
            out = self.model(self._x, train=False)
            outputs = [out]
            if what == "evaluate":
                assert self._y is not None
                outputs = [self.loss_fn(out, self._y), *(fn(out, self._y) for fn in self.metric_fns.values())]
            used = [t for t in placeholders(outputs) if t is not self._x and t is not self._y]
            data = [self._x] + ([self._y] if what == "evaluate" and self._y is not None else [])
            f = compile(outputs if what == "evaluate" else out, [*data, *used], backend=self.backend)
            self._eval[what] = (f, [t.name or "" for t in used])
        return self._eval[what]

    def predict(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """The model's outputs in evaluation mode (dropout off, BatchNorm running stats)."""
        x = np.asarray(x)
        self._placeholders(x, None)
        f, names = self._eval_fn("predict")
        values = self.variables()
        vs = [values[k] for k in names]
        parts = [f(x[i:i + batch_size], *vs) for i in range(0, max(len(x), 1), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0,))

    def evaluate(self, x: Any, y: Any, batch_size: int = 1024) -> dict[str, float]:
        """Loss and metrics in evaluation mode over the whole set (example-weighted means)."""
        x, y = np.asarray(x), np.asarray(y)
        n = check_lengths(x, y)
        self._placeholders(x, y)
        if y.dtype.kind in "iu" and self.loss_fn in (nn.cross_entropy,):
            classes = self._classes()
            if classes is not None:
                check_labels(y, classes)
        f, names = self._eval_fn("evaluate")
        values = self.variables()
        vs = [values[k] for k in names]
        totals = np.zeros(1 + len(self.metric_fns))
        for i in range(0, n, batch_size):
            outs = f(x[i:i + batch_size], y[i:i + batch_size], *vs)
            totals += np.array([float(o) for o in outs]) * len(x[i:i + batch_size])
        keys = ["loss", *self.metric_fns]
        return {k: float(v / max(n, 1)) for k, v in zip(keys, totals)}


def fit(model: Layer, x: Any, y: Any, loss: str | Callable[[Tensor, Tensor], Tensor] = "cross_entropy",
        optimizer: Optimizer | None = None, **kw: Any) -> tuple[Trainer, History]:
    """One-call training: ``Trainer(model, loss, optimizer, ...)`` then ``.fit(x, y, ...)``.

    Keyword arguments go to the Trainer (metrics, backend, seed, ...) or to ``fit``
    (epochs, batch_size, max_steps, loss_threshold, progress, validation)."""
    fit_keys = {"epochs", "batch_size", "shuffle", "max_steps", "loss_threshold", "progress",
                "validation", "desc"}
    trainer = Trainer(model, loss, optimizer, **{k: v for k, v in kw.items() if k not in fit_keys})
    history = trainer.fit(x, y, **{k: v for k, v in kw.items() if k in fit_keys})
    return trainer, history


__all__ = [
    "Culprit", "GradientMonitor", "GradientWarning", "History", "LOSSES", "NonFiniteError", "Trainer",
    "accuracy", "batches", "check_labels", "check_lengths", "evaluate_ops", "find_nonfinite", "fit",
    "layer_norms", "layer_of", "progress_bar",
]
