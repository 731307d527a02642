"""Optimizers, schedules, clipping and averaging against NumPy re-implementations, and the
compiled training step's ownership of its arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

import symgrad as sg
from symgrad import optim

# loss(w) = sum(c * w**2) / 2 + sum(d * w): gradient c * w + d, known in closed form
C = np.array([1.0, 0.5, 2.0, 0.1])
D = np.array([0.3, -1.0, 0.2, 0.7])
W0 = np.array([1.0, -2.0, 0.5, 3.0])


def quad_loss(dtype: str = "float64") -> tuple[sg.Tensor, sg.Tensor]:
    w = sg.placeholder("w", (4,), dtype)
    return sg.sum(sg.constant(C.astype(dtype)) * w * w) / 2 + sg.sum(sg.constant(D.astype(dtype)) * w), w


def grad_of(w: np.ndarray) -> np.ndarray:
    return C * w + D


def run(opt: optim.Optimizer, steps: int = 6) -> optim.TrainStep:
    loss, _ = quad_loss()
    step = optim.TrainStep(loss, {"w": W0}, opt)
    for _ in range(steps):
        step()
    return step


# -- NumPy references (written from the published update rules) -----------------------------
def ref_sgd(lr: float, mu: float = 0.0, nesterov: bool = False, wd: float = 0.0, steps: int = 6) -> np.ndarray:
    w, v = W0.copy(), np.zeros(4)
    for _ in range(steps):
        g = grad_of(w) + wd * w
        if mu:
            v = mu * v + g
            g = g + mu * v if nesterov else v
        w = w - lr * g
    return w


def ref_adam(lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, wd: float = 0.0,
             decoupled: bool = False, steps: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w, m, v = W0.copy(), np.zeros(4), np.zeros(4)
    for t in range(1, steps + 1):
        g = grad_of(w) + (0.0 if decoupled else wd * w)
        if decoupled:
            w = w * (1 - lr * wd)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return w, m, v


def ref_rmsprop(lr: float, alpha: float = 0.99, eps: float = 1e-8, mu: float = 0.0, centered: bool = False,
                steps: int = 6) -> np.ndarray:
    w, s, gbar, buf = W0.copy(), np.zeros(4), np.zeros(4), np.zeros(4)
    for _ in range(steps):
        g = grad_of(w)
        s = alpha * s + (1 - alpha) * g * g
        var = s
        if centered:
            gbar = alpha * gbar + (1 - alpha) * g
            var = s - gbar**2
        d = g / (np.sqrt(var) + eps)
        if mu:
            buf = mu * buf + d
            d = buf
        w = w - lr * d
    return w


@pytest.mark.parametrize("mu,nesterov,wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.9, True, 0.0),
                                             (0.5, False, 0.1)])
def test_sgd_matches_reference(mu: float, nesterov: bool, wd: float) -> None:
    step = run(optim.SGD(0.1, momentum=mu, nesterov=nesterov, weight_decay=wd))
    np.testing.assert_allclose(step.params["w"], ref_sgd(0.1, mu, nesterov, wd), rtol=1e-12)
    assert int(step.state[optim.STEP]) == 6


def test_adam_and_adamw_match_reference() -> None:
    step = run(optim.Adam(0.05))
    w, m, v = ref_adam(0.05)
    np.testing.assert_allclose(step.params["w"], w, rtol=1e-12)
    np.testing.assert_allclose(step.state["optim.m[w]"], m, rtol=1e-12)
    np.testing.assert_allclose(step.state["optim.v[w]"], v, rtol=1e-12)
    coupled = run(optim.Adam(0.05, weight_decay=0.1))
    np.testing.assert_allclose(coupled.params["w"], ref_adam(0.05, wd=0.1)[0], rtol=1e-12)
    decoupled = run(optim.AdamW(0.05, weight_decay=0.1))
    np.testing.assert_allclose(decoupled.params["w"], ref_adam(0.05, wd=0.1, decoupled=True)[0], rtol=1e-12)
    assert not np.allclose(coupled.params["w"], decoupled.params["w"])


@pytest.mark.parametrize("mu,centered", [(0.0, False), (0.0, True), (0.9, False)])
def test_rmsprop_matches_reference(mu: float, centered: bool) -> None:
    step = run(optim.RMSProp(0.01, momentum=mu, centered=centered))
    np.testing.assert_allclose(step.params["w"], ref_rmsprop(0.01, mu=mu, centered=centered), rtol=1e-12)


def test_optimizers_minimize_the_quadratic() -> None:
    best = -D / C  # the minimizer
    for opt in (optim.SGD(0.5), optim.SGD(0.2, momentum=0.9, nesterov=True), optim.Adam(0.1),
                optim.RMSProp(0.05)):
        step = run(opt, steps=800)
        np.testing.assert_allclose(step.params["w"], best, atol=2e-2, err_msg=repr(opt))


def test_float32_parameters_stay_float32() -> None:
    loss, _ = quad_loss("float32")
    step = optim.TrainStep(loss, {"w": W0}, optim.Adam(optim.cosine(0.1, 10)))
    step()
    assert step.params["w"].dtype == np.float32
    assert step.state["optim.m[w]"].dtype == np.float32
    assert step.state[optim.STEP].dtype == np.int64


# -- schedules ----------------------------------------------------------------------------------
def test_schedules_match_closed_forms() -> None:
    t = np.arange(30)
    np.testing.assert_allclose(optim.step_decay(1.0, 4, 0.5).values(30), 0.5 ** (t // 4))
    np.testing.assert_allclose(optim.exponential(2.0, 0.9, 3).values(30), 2.0 * 0.9 ** (t / 3))
    cos = 0.1 + 0.5 * (1 + np.cos(np.pi * np.minimum(t / 20, 1))) * 0.9
    np.testing.assert_allclose(optim.cosine(1.0, 20, 0.1).values(30), cos)
    np.testing.assert_allclose(optim.constant(0.3).values(5), 0.3)


def test_warmup_composes_with_other_schedules() -> None:
    s = optim.warmup(optim.cosine(1.0, 10), 5).values(20)
    np.testing.assert_allclose(s[:5], [0.2, 0.4, 0.6, 0.8, 1.0])
    np.testing.assert_allclose(s[5:], 0.5 * (1 + np.cos(np.pi * np.minimum(np.arange(15) / 10, 1))))
    prod = (optim.step_decay(1.0, 2, 0.5) * 3.0).values(6)
    np.testing.assert_allclose(prod, 3.0 * 0.5 ** (np.arange(6) // 2))
    with pytest.raises(ValueError, match="at least one step"):
        optim.warmup(0.1, 0)


def test_schedule_drives_the_step() -> None:
    # SGD with lr(t) = 0.1 * 0.5**t on loss sum(w): w decreases by lr(t) each step
    w = sg.placeholder("w", (2,), "float64")
    step = optim.TrainStep(sg.sum(w), {"w": np.zeros(2)}, optim.SGD(optim.exponential(0.1, 0.5)))
    for _ in range(4):
        step()
    np.testing.assert_allclose(step.params["w"], -0.1 * sum(0.5**k for k in range(4)))


# -- clipping and averaging ---------------------------------------------------------------------------
def test_clip_by_value_and_global_norm() -> None:
    a = sg.placeholder("a", (3,), "float64")
    b = sg.placeholder("b", (2,), "float64")
    av, bv = np.array([3.0, -4.0, 0.5]), np.array([12.0, 0.0])
    cv = sg.compile(list(optim.clip_by_value({"a": a, "b": b}, 1.0).values()))(av, bv)
    np.testing.assert_allclose(cv[0], [1.0, -1.0, 0.5])
    norm = math.sqrt(9 + 16 + 0.25 + 144)
    got = sg.compile(list(optim.clip_by_global_norm({"a": a, "b": b}, 2.0).values()))(av, bv)
    np.testing.assert_allclose(got[0], av * 2.0 / norm)
    np.testing.assert_allclose(np.sqrt(sum(np.sum(g**2) for g in got)), 2.0)
    same = sg.compile(list(optim.clip_by_global_norm({"a": a, "b": b}, 100.0).values()))(av, bv)
    np.testing.assert_allclose(same[1], bv)
    with pytest.raises(ValueError, match="positive"):
        optim.clip_by_global_norm({"a": a}, 0.0)


def test_optimizer_clips_before_updating() -> None:
    step = run(optim.SGD(0.1, clip_value=0.25), steps=1)
    np.testing.assert_allclose(step.params["w"], W0 - 0.1 * np.clip(grad_of(W0), -0.25, 0.25))
    step = run(optim.SGD(0.1, clip_norm=0.5), steps=1)
    g = grad_of(W0)
    np.testing.assert_allclose(step.params["w"], W0 - 0.1 * g * 0.5 / np.linalg.norm(g))
    assert step.last_grad_norms["w"] == pytest.approx(np.linalg.norm(g))  # the norm before clipping


def test_polyak_and_ema_averages() -> None:
    ws = [W0.copy()]
    for _ in range(5):
        ws.append(ws[-1] - 0.1 * grad_of(ws[-1]))
    polyak = run(optim.SGD(0.1, average="polyak"), steps=5)
    np.testing.assert_allclose(polyak.averaged["w"], np.mean(ws, axis=0), rtol=1e-12)
    ema = run(optim.SGD(0.1, average="ema", ema_decay=0.8), steps=5)
    a = W0.copy()
    for w in ws[1:]:
        a = 0.8 * a + 0.2 * w
    np.testing.assert_allclose(ema.averaged["w"], a, rtol=1e-12)
    with pytest.raises(ValueError, match="keeps no averages"):
        _ = run(optim.SGD(0.1), steps=1).averaged
    with pytest.raises(ValueError, match="average must be"):
        optim.SGD(0.1, average="mean")


# -- the compiled step ----------------------------------------------------------------------------------
def test_one_compiled_call_per_step_and_arrays_are_rebound_not_copied() -> None:
    loss, _ = quad_loss()
    step = optim.TrainStep(loss, {"w": W0}, optim.Adam(0.1))
    calls: list[tuple[np.ndarray, ...]] = []
    inner = step.function

    class Recorder:
        _inputs = inner._inputs

        def __call__(self, *args: object) -> tuple[np.ndarray, ...]:
            out = inner(*args)
            calls.append(out)
            return out

    step.function = Recorder()  # type: ignore[assignment]
    step()
    step()
    assert len(calls) == 2  # forward, backward, update and state: one call each
    n_out = len(calls[-1])
    assert step.params["w"] is calls[-1][n_out - len(step.state_names) - 1]
    assert all(any(s is o for o in calls[-1]) for s in step.state.values())


def test_nonfinite_step_keeps_the_last_good_parameters() -> None:
    x = sg.placeholder("x", (None,), "float64")
    w = sg.placeholder("w", (), "float64")
    step = optim.TrainStep(sg.mean((x * w - 1.0) ** 2), {"w": np.array(0.0)}, optim.SGD(0.1))
    step(np.array([1.0, 2.0]))
    good = step.params["w"].copy()
    state = step.state
    loss = step(np.array([np.nan, 1.0]))
    assert math.isnan(loss) and not step.last_finite
    assert step.params["w"] == good and step.steps == 1
    assert int(step.state[optim.STEP]) == int(state[optim.STEP])


def test_data_by_name_or_position_and_bad_calls() -> None:
    x = sg.placeholder("x", (None,), "float64")
    w = sg.placeholder("w", (), "float64")
    step = optim.TrainStep(sg.mean((x * w - 1.0) ** 2), {"w": np.array(0.0)}, optim.SGD(0.1))
    assert step.data_names == ["x"]
    a = step(x=np.ones(3))
    b = step(np.ones(3))
    assert b < a
    with pytest.raises(sg.InputError, match="unknown input 'z'"):
        step(z=np.ones(3))
    with pytest.raises(sg.InputError, match="expected 1 data inputs"):
        step()


def test_construction_errors_name_the_problem() -> None:
    loss, w = quad_loss()
    with pytest.raises(ValueError, match="'v' not used by the loss"):
        optim.TrainStep(loss, {"v": W0}, optim.SGD(0.1))
    with pytest.raises(TypeError, match="float scalar"):
        optim.TrainStep(w, {"w": W0}, optim.SGD(0.1))
    with pytest.raises(sg.InputError, match="shape"):
        optim.TrainStep(loss, {"w": np.zeros(3)}, optim.SGD(0.1))
    i = sg.placeholder("i", (2,), "int64")
    with pytest.raises(TypeError, match="only float placeholders"):
        optim.TrainStep(sg.sum(sg.cast(i, "float64")), {"i": np.zeros(2, np.int64)}, optim.SGD(0.1))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD(0.1, nesterov=True)
    with pytest.raises(TypeError, match="learning rate"):
        optim.SGD("fast")  # type: ignore[arg-type]
