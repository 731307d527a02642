"""The trainer: the loop and its stopping rules, batching, diagnostics, NaN blame and bad
input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

import symgrad as sg
from symgrad import train
from symgrad.optim import TrainStep


def blobs(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]])
    x = (centers[y] + 0.4 * rng.standard_normal((n, 2))).astype(np.float32)
    return x, y


def small_model() -> sg.nn.Sequential:
    return sg.nn.Sequential([sg.nn.Dense(2, 16, "relu"), sg.nn.Dense(16, 3)])


def test_fit_learns_and_records_history() -> None:
    x, y = blobs()
    trainer = train.Trainer(small_model(), "cross_entropy", sg.optim.Adam(0.05),
                            metrics={"accuracy": train.accuracy})
    h = trainer.fit(x, y, epochs=15, batch_size=32, progress=False, validation=(x, y))
    assert h.steps == 15 * 4 and len(h.loss) == h.steps and h.epochs == 15
    assert len(h.epoch_loss) == 15 and len(h.metrics["accuracy"]) == 15
    assert h.loss[-1] < 0.3 * h.loss[0]
    assert h.validation["accuracy"][-1] > 0.95
    assert set(h.grad_norms[0]) == {"dense1", "dense2"}
    ev = trainer.evaluate(x, y)
    assert ev["accuracy"] == pytest.approx(h.validation["accuracy"][-1])
    assert (trainer.predict(x).argmax(1) == y).mean() == pytest.approx(ev["accuracy"])
    assert h.time_per_step > 0 and h.stopped == "epochs"


def test_stopping_rules() -> None:
    x, y = blobs()
    t1 = train.Trainer(small_model(), optimizer=sg.optim.Adam(0.05))
    h = t1.fit(x, y, epochs=100, batch_size=None, progress=False, loss_threshold=0.2)
    assert h.stopped == "loss_threshold" and h.loss[-1] < 0.2 and all(v >= 0.2 for v in h.loss[:-1])
    t2 = train.Trainer(small_model(), optimizer=sg.optim.Adam(0.05))
    h2 = t2.fit(x, y, epochs=100, batch_size=10, progress=False, max_steps=7)
    assert h2.stopped == "max_steps" and h2.steps == 7


def test_full_mini_and_stochastic_batches_are_what_the_step_is_fed() -> None:
    # SGD on mean squared error of a linear model: reproduce each mode by hand
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 2))
    t = x @ np.array([1.0, -2.0])
    w = sg.placeholder("w", (2,), "float64")
    xp = sg.placeholder("x", ("n", 2), "float64")
    tp = sg.placeholder("t", ("n",), "float64")
    loss = sg.mean((xp @ w - tp) ** 2)
    for bs in (None, 3, 1):
        step = TrainStep(loss, {"w": np.zeros(2)}, sg.optim.SGD(0.05))
        ref = np.zeros(2)
        for epoch in range(3):
            for xb, tb in train.batches(x, t, batch_size=bs, seed=1, epoch=epoch):
                step(xb, tb)
                ref = ref - 0.05 * 2 * xb.T @ (xb @ ref - tb) / len(xb)
        np.testing.assert_allclose(step.params["w"], ref, rtol=1e-12)


def test_batches_shuffle_by_seed_and_epoch() -> None:
    a = np.arange(10)
    e0 = [b[0].tolist() for b in train.batches(a, batch_size=4, seed=3, epoch=0)]
    assert [len(b) for b in e0] == [4, 4, 2]
    assert sorted(sum(e0, [])) == list(range(10))
    assert e0 == [b[0].tolist() for b in train.batches(a, batch_size=4, seed=3, epoch=0)]
    assert e0 != [b[0].tolist() for b in train.batches(a, batch_size=4, seed=3, epoch=1)]
    assert [b[0].tolist() for b in train.batches(a, batch_size=4, shuffle=False, drop_last=True)] == [
        [0, 1, 2, 3], [4, 5, 6, 7]]
    (full,) = train.batches(a, a * 2, batch_size=None, seed=0)
    np.testing.assert_array_equal(full[1], full[0] * 2)


def test_labels_out_of_range_are_refused_before_any_step() -> None:
    x, y = blobs(20)
    y[7] = 3
    trainer = train.Trainer(small_model())
    before = {k: v.copy() for k, v in trainer.params.items()}
    with pytest.raises(ValueError, match=r"label 3 at index 7 is out of range: the model has 3 outputs"):
        trainer.fit(x, y, epochs=1, progress=False)
    y[7] = -1
    with pytest.raises(ValueError, match="label -1 at index 7"):
        trainer.evaluate(x, y)
    assert trainer.step is None
    for k, v in trainer.params.items():
        np.testing.assert_array_equal(v, before[k])


def test_mismatched_lengths_are_refused() -> None:
    x, y = blobs(20)
    trainer = train.Trainer(small_model())
    with pytest.raises(ValueError, match="same number of examples: argument 0 has 20, argument 1 has 19"):
        trainer.fit(x, y[:19], progress=False)
    trainer.fit(x, y, epochs=1, progress=False)
    with pytest.raises(sg.InputError, match="size 'batch' is already 5"):
        trainer.step(x[:5], y[:4])  # the compiled step refuses too: x and y share 'batch'


def test_empty_data_is_refused_before_any_step() -> None:
    x, y = blobs(20)
    trainer = train.Trainer(small_model())
    with pytest.raises(ValueError, match=r"cannot fit on empty data: x has shape \(0, 2\)"):
        trainer.fit(x[:0], y[:0], progress=False)
    with pytest.raises(ValueError, match="the validation data is empty"):
        trainer.fit(x, y, progress=False, validation=(x[:0], y[:0]))
    assert trainer.history.steps == 0
    with pytest.raises(ValueError, match="leading example axis"):
        trainer.fit(np.float32(1.0), np.int64(0), progress=False)


def diverging() -> tuple[train.Trainer, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32) * 3
    y = (x @ np.array([1.0, 2.0, -1.0, 0.5], np.float32))[:, None]
    model = sg.nn.Sequential([sg.nn.Dense(4, 1)])
    return train.Trainer(model, "mse", sg.optim.SGD(0.5)), x, y


@pytest.mark.filterwarnings("ignore::symgrad.train.GradientWarning")
def test_a_learning_rate_that_makes_the_loss_nan_is_named_and_good_params_kept() -> None:
    trainer, x, y = diverging()
    with pytest.raises(train.NonFiniteError) as info:
        trainer.fit(x, y, epochs=200, batch_size=None, progress=False)
    err = info.value
    msg = str(err)
    assert "learning rate is probably too high" in msg
    assert err.culprit is not None and f"op '{err.culprit.node.op.name}'" in msg
    assert "built at" in msg and "last good step" in msg
    assert trainer.history.stopped == "nonfinite" or trainer.history.steps == err.step - 1
    for v in trainer.params.values():
        assert np.isfinite(v).all()
    # the kept parameters give the last recorded (finite) loss
    assert trainer.step is not None
    assert trainer.step.steps == err.step - 1
    # the same run with on_nonfinite="warn" stops with a warning instead
    t2, x, y = diverging()
    t2.on_nonfinite = "warn"
    with pytest.warns(RuntimeWarning, match="learning rate"):
        h = t2.fit(x, y, epochs=200, batch_size=None, progress=False)
    assert h.stopped == "nonfinite" and all(math.isfinite(v) for v in h.loss)


def test_find_nonfinite_names_the_first_op_and_its_line() -> None:
    x = sg.placeholder("x", (3,), "float64")
    y = sg.exp(x) * 2.0
    z = sg.log(y - 2.0)  # log(0) = -inf where x = 0
    out = sg.sum(z * 0.5)
    f = sg.compile([out])
    culprit = train.find_nonfinite(f, [np.array([1.0, 0.0, 2.0])])
    assert culprit is not None and culprit.node.op.name == "log"
    assert "test_train.py" in culprit.node.loc
    assert "op 'log' produced Inf in the forward pass" in culprit.describe()
    assert train.find_nonfinite(f, [np.array([1.0, 1.0, 2.0])]) is None
    with pytest.raises(train.NonFiniteError, match="input 'x' holds NaN"):
        train.find_nonfinite(f, [np.array([np.nan, 1.0, 2.0])])


def test_evaluate_ops_agrees_with_the_compiled_function() -> None:
    m = small_model()
    xp = sg.placeholder("x", (None, 2))
    out = m(xp)
    v = m.init(0)
    xv = blobs(5)[0]
    f = sg.compile(out)
    arrays, env = f.bind([], {"x": xv, **v})
    values = {id(t): a for t, a in zip(f._inputs, arrays)}
    got, stopped = train.evaluate_ops(f.graph, values, env)
    assert stopped is None
    np.testing.assert_allclose(got[id(f.graph[0])], f(x=xv, **v), rtol=1e-6)


def test_vanishing_gradients_warn_naming_the_layer() -> None:
    layers: list[sg.nn.Layer] = [sg.nn.Dense(4, 4, "sigmoid") for _ in range(8)]
    model = sg.nn.Sequential([*layers, sg.nn.Dense(4, 2)])
    init = model.init(0)
    for k in init:
        if k.endswith(".w"):
            init[k] = init[k] * 0.05
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    y = np.arange(16) % 2
    trainer = train.Trainer(model, params=init, optimizer=sg.optim.SGD(0.01))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(x, y, epochs=1, batch_size=None, progress=False)
    msgs = [str(w.message) for w in caught if issubclass(w.category, train.GradientWarning)]
    assert any("vanishing gradient in layer 'dense1'" in m and "largest layer's ('dense9'" in m for m in msgs)
    assert not any("'dense9'" in m.split("largest")[0] for m in msgs)  # the healthy layer is not blamed


def test_exploding_gradients_warn_naming_the_layer() -> None:
    model = sg.nn.Sequential([sg.nn.Dense(4, 8, "relu"), sg.nn.Dense(8, 1)])
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32) * 1e3
    y = np.ones((16, 1), np.float32)
    trainer = train.Trainer(model, "mse", sg.optim.SGD(1e-12), explode=100.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(x, y, epochs=1, batch_size=None, progress=False)
    msgs = [str(w.message) for w in caught if issubclass(w.category, train.GradientWarning)]
    assert any("exploding gradient in layer 'dense1'" in m for m in msgs)
    assert any("exploding gradient in layer 'dense2'" in m for m in msgs)


def test_buffers_are_state_updated_by_the_step() -> None:
    model = sg.nn.Sequential([sg.nn.Dense(2, 8), sg.nn.BatchNorm(8), sg.nn.Dropout(0.2), sg.nn.Dense(8, 3)])
    x, y = blobs(40)
    trainer = train.Trainer(model, optimizer=sg.optim.Adam(0.01))
    trainer.fit(x, y, epochs=2, batch_size=10, progress=False)
    assert trainer.step is not None
    buf = trainer.step.buffers
    assert int(buf["dropout1.counter"]) == 8
    assert np.abs(buf["batchnorm1.running_mean"]).max() > 0  # moved from its zero start
    # evaluation mode is deterministic (no dropout, running statistics)
    np.testing.assert_array_equal(trainer.predict(x), trainer.predict(x))


def test_progress_bar_shows_loss_and_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = blobs(40)
    train.Trainer(small_model()).fit(x, y, epochs=2, batch_size=10, progress=True, desc="blobs")
    err = capsys.readouterr().err
    assert "blobs" in err and "loss=" in err and "ex/s" in err
    train.Trainer(small_model()).fit(x, y, epochs=1, batch_size=10, progress=False)
    assert capsys.readouterr().err == ""


def test_fit_helper_and_bad_arguments() -> None:
    x, y = blobs(30)
    trainer, h = train.fit(small_model(), x, y, "cross_entropy", sg.optim.SGD(0.1), epochs=2,
                           batch_size=None, progress=False, seed=3)
    assert h.steps == 2 and trainer.seed == 3
    with pytest.raises(ValueError, match="unknown loss"):
        train.Trainer(small_model(), "hinge")
    with pytest.raises(ValueError, match="on_nonfinite"):
        train.Trainer(small_model(), on_nonfinite="ignore")
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        list(train.batches(np.arange(4), batch_size=0))
