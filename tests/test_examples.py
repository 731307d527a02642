"""The examples in examples/, each in a smaller configuration, asserting on its result; and
each script's command line once, checking that it writes its PNG."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
sys.path.insert(0, str(EXAMPLES))

pytest.importorskip("sklearn", reason="the examples use scikit-learn's bundled digits (the test extra)")
pytest.importorskip("matplotlib", reason="the examples plot with matplotlib (the test extra)")

import autoencoder  # noqa: E402
import digits_cnn  # noqa: E402
import digits_mlp  # noqa: E402
import gan_mixture  # noqa: E402
import saliency  # noqa: E402
import sequence_lstm  # noqa: E402

import symgrad as sg  # noqa: E402


@pytest.fixture(scope="module")
def mlp() -> Any:
    return digits_mlp.train_digits_mlp(8, progress=False)


def png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    assert os.path.getsize(path) > 5000


def test_digits_mlp_small(mlp: Any, tmp_path: Path) -> None:
    trainer, history, acc = mlp
    assert acc >= 0.95, acc
    assert history.steps == 8 * 43 and history.loss[-1] < history.loss[0] / 5
    assert list(trainer.model.params)[:2] == ["dense1.w", "dense1.b"]
    text = sg.pretty(sg.grad(sg.nn.cross_entropy(trainer.model(sg.placeholder("x", (None, 64))),
                                                 sg.placeholder("y", (None,), "int64")),
                             trainer.model.params["dense3.b"]))
    assert "dense3.w" in text
    digits_mlp.plot(history, str(tmp_path / "mlp.png"))
    png(tmp_path / "mlp.png")


def test_digits_cnn_small(tmp_path: Path) -> None:
    trainer, history, acc = digits_cnn.train_digits_cnn(4, progress=False, channels=(8, 16))
    assert acc >= 0.9, acc
    assert history.steps == 4 * 43
    digits_cnn.plot(trainer, history, str(tmp_path / "cnn.png"))
    png(tmp_path / "cnn.png")


def test_sequence_model_small(tmp_path: Path) -> None:
    trainer, history, mse = sequence_lstm.train_sequence(6, "lstm", progress=False, steps=10, n_train=800,
                                                         hidden=16)
    assert mse < 0.04, mse  # the signal's variance is 0.5
    assert history.loss[-1] < history.loss[0] / 10
    sequence_lstm.plot(trainer, history, str(tmp_path / "seq.png"), steps=10)
    png(tmp_path / "seq.png")


def test_autoencoder_small(tmp_path: Path) -> None:
    trainer, history, mse = autoencoder.train_autoencoder(6, progress=False)
    x = autoencoder.digits()[2]
    assert mse < 0.45 * np.var(x), mse
    assert "enc.dense1.w" in trainer.params and "dec.dense2.b" in trainer.params
    autoencoder.plot(trainer, history, str(tmp_path / "ae.png"))
    png(tmp_path / "ae.png")


def octants(samples: np.ndarray) -> np.ndarray:
    angle = np.arctan2(samples[:, 1], samples[:, 0])
    return np.bincount(np.round(angle / (np.pi / 4)).astype(int) % 8, minlength=8) / len(samples)


def test_gan_small(tmp_path: Path) -> None:
    params, losses, samples = gan_mixture.train_gan(250, progress=False, batch=64, hidden=32)
    _, _, before = gan_mixture.train_gan(0, progress=False, batch=64, hidden=32)
    assert np.isfinite(np.array(losses)).all() and len(losses) == 250
    # the untrained generator covers a few directions; after training every direction of
    # the circle of modes gets samples, and more of them lie on the circle
    assert (octants(before) < 0.01).sum() >= 3
    assert (octants(samples) > 0.03).all(), octants(samples)
    ring = lambda s: np.mean(np.abs(np.linalg.norm(s, axis=1) - gan_mixture.RADIUS) < 0.3)  # noqa: E731
    assert ring(samples) > ring(before)
    assert set(params) == {f"gen.dense{k}.{p}" for k in (1, 2, 3) for p in "wb"}
    gan_mixture.plot(losses, samples, str(tmp_path / "gan.png"))
    png(tmp_path / "gan.png")


def test_saliency_is_the_input_gradient(mlp: Any, tmp_path: Path) -> None:
    trainer, _, _ = mlp
    x = digits_mlp.digits()[2][:4]
    cls = trainer.predict(x).argmax(1)
    scores, grads = saliency.saliency(trainer, x, cls)
    assert grads.shape == x.shape
    # finite differences of the class score along a unit direction match <grad, direction>
    f, names = saliency.saliency_function(trainer)
    values = [trainer.params[n] for n in names]
    d = np.random.default_rng(0).normal(size=x.shape)
    d = (d / np.linalg.norm(d, axis=1, keepdims=True)).astype(np.float32)
    eps = 1e-3
    up = f(x + eps * d, cls, *values)[0]
    down = f(x - eps * d, cls, *values)[0]
    np.testing.assert_allclose((up - down) / (2 * eps), np.sum(grads * d, axis=1), rtol=0.02, atol=5e-3)
    # a small step along the gradient raises every class score
    assert (f(x + 0.01 * grads, cls, *values)[0] > scores).all()
    saliency.plot(x, grads, cls, cls, str(tmp_path / "sal.png"))
    png(tmp_path / "sal.png")


@pytest.mark.parametrize("module,png_name", [(digits_mlp, "digits_mlp.png"), (saliency, "saliency.png")])
def test_command_line_writes_its_plot(module: Any, png_name: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    module.main(["--epochs", "1", "--out", str(tmp_path / "plots"), "--no-progress"])
    path = tmp_path / "plots" / png_name
    png(path)
    assert str(path) in capsys.readouterr().out


def test_step_timing_script_reports_both_models(capsys: pytest.CaptureFixture[str]) -> None:
    import train_step_timing

    train_step_timing.main(["--steps", "2", "--warmup", "1", "--no-torch"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("symgrad numpy")]
    assert [r[2] for r in rows] == ["mlp", "cnn"]
    assert all(float(r[3]) > 0 for r in rows)
