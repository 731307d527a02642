"""Bundles' self-tests are well posed: default golden inputs are well conditioned, and the
comparison's tolerance grows with the magnitude of the terms summed into each element.

The digits MLP gradient of the tour, with N(0, 1) weights, cancels badly in float32 (loss
near 900): its C bundle must pass its own test on any CPU, so the bound in data/tolK.bin
must cover the rounding differences that a fixed relative tolerance does not.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.cstyle.run import find_cc
from symgrad.emit import run_bundle_test

emit_mod = importlib.import_module("symgrad.emit")  # sg.emit is the function
HAVE_MAKE = shutil.which("make") is not None and find_cc() is not None
needs_cc = pytest.mark.skipif(not HAVE_MAKE, reason="needs make and a C compiler")


def _mlp(hidden: int = 128):
    """The tour's digits MLP (64 -> hidden -> 64 -> 10, ReLU) and its loss gradient."""
    x = sg.placeholder("x", shape=("batch", 64))
    y = sg.placeholder("y", shape=("batch",), dtype="int64")
    w1 = sg.placeholder("w1", shape=(64, hidden))
    b1 = sg.placeholder("b1", shape=(hidden,))
    w2 = sg.placeholder("w2", shape=(hidden, 64))
    b2 = sg.placeholder("b2", shape=(64,))
    w3 = sg.placeholder("w3", shape=(64, 10))
    b3 = sg.placeholder("b3", shape=(10,))
    h = sg.relu(sg.relu(x @ w1 + b1) @ w2 + b2)
    loss = sg.nn.cross_entropy(h @ w3 + b3, y)
    params = [w1, b1, w2, b2, w3, b3]
    outs = {"loss": loss, **{f"d_{p.name}": g for p, g in zip(params, sg.grad(loss, params))}}
    return outs, [x, y, *params]


def _shape(t, batch):
    return tuple(d if isinstance(d, int) else batch for d in t.shape)


def _load(bundle, kind, k):
    dtype = np.dtype(np.int64) if bundle.input_names[k] == "y" and kind == "in" else np.dtype("<f4")
    return np.fromfile(bundle.path(f"data/{kind}{k}.bin"), dtype)


def test_default_inputs_are_scaled_by_fan_in_and_labels_in_range(tmp_path):
    outs, ins = _mlp()
    bundle = sg.emit(outs, ins, target="numpy", out_dir=tmp_path, name="mlp", sizes={"batch": 64})
    std = {n: float(np.std(_load(bundle, "in", k))) for k, n in enumerate(bundle.input_names)}
    assert abs(std["x"] - 1) < 0.1  # data: not the right operand of a product
    assert abs(std["w1"] * np.sqrt(64) - 1) < 0.1
    assert abs(std["w2"] * np.sqrt(128) - 1) < 0.1
    assert abs(std["w3"] * np.sqrt(64) - 1) < 0.1
    labels = _load(bundle, "in", 1)
    assert labels.min() >= 0 and labels.max() <= 9 and len(set(labels.tolist())) > 3
    loss = float(_load(bundle, "out", 0)[0])
    assert 0.5 < loss < 10, loss  # N(0, 1) weights gave about 900


def test_default_inputs_lie_in_each_ops_domain(tmp_path):
    a = sg.placeholder("a", shape=(50,))
    b = sg.placeholder("b", shape=(50,))
    c = sg.placeholder("c", shape=(50,))
    d = sg.placeholder("d", shape=(50,))
    t = sg.placeholder("t", shape=(4, 3))
    i = sg.placeholder("i", shape=(30,), dtype="int32")
    out = sg.sum(sg.log(a)) + sg.sum(sg.sqrt(b)) + sg.sum(1.0 / c) + sg.sum(d ** 0.5) + sg.sum(
        sg.take(t, i, axis=1))
    bundle = sg.emit(out, [a, b, c, d, t, i], target="numpy", out_dir=tmp_path, name="dom")
    for k in range(4):
        v = np.fromfile(bundle.path(f"data/in{k}.bin"), "<f4")
        assert v.min() >= 0.5, (bundle.input_names[k], v.min())  # away from the singular point
    idx = np.fromfile(bundle.path("data/in5.bin"), "<i4")
    assert idx.min() >= 0 and idx.max() <= 2
    assert np.isfinite(np.fromfile(bundle.path("data/out0.bin"), "<f4")).all()
    assert "all outputs match" in run_bundle_test(bundle)


def test_bound_grows_with_the_terms_not_the_result(tmp_path):
    x = sg.placeholder("x", shape=(2000,))
    rng = np.random.default_rng(1)
    r = rng.standard_normal(1000) * 1e3
    big = rng.permutation(np.concatenate([r, -r]) + rng.standard_normal(2000) * 0.02).astype(np.float32)
    bundle = sg.emit({"s": sg.sum(x)}, [x], target="numpy", out_dir=tmp_path, name="cancel",
                     example={"x": big})
    bound = float(np.fromfile(bundle.path("data/tol0.bin"), "<f4")[0])
    golden = float(np.fromfile(bundle.path("data/out0.bin"), "<f4")[0])
    exact = float(np.sum(big.astype(np.float64)))  # about 1: the terms cancel
    terms = float(np.sum(np.abs(big.astype(np.float64))))  # about 1.6e6
    assert bound >= emit_mod.BOUND_SAFETY * abs(golden - exact) > 0  # the golden's own error is covered
    assert bound > 1e-3 * abs(exact)  # far more than a relative tolerance of the result
    assert bound < 1e-5 * terms  # and of the order of float32 rounding of the terms


@needs_cc
def test_mlp_gradient_with_unit_normal_weights_passes_its_make_test(tmp_path, monkeypatch):
    outs, ins = _mlp()
    rng = np.random.default_rng(0)
    example = {t.name: rng.standard_normal(_shape(t, 64)).astype(np.float32) for t in ins if t.name != "y"}
    example["y"] = rng.integers(0, 10, 64)
    bundle = sg.emit(outs, ins, target="c", out_dir=tmp_path, name="mlp_grad", example=example)
    loss = float(_load(bundle, "out", 0)[0])
    assert loss > 100  # badly conditioned: the fixed tolerance alone does not hold everywhere
    out = run_bundle_test(bundle, variables={"CFLAGS": "-O1"})
    assert "mlp_grad: all outputs match" in out, out
    # The bound carries the check: with a relative tolerance tighter than these sums'
    # float32 rounding, the test still passes with the bounds and fails without them.
    monkeypatch.setenv("SG_RTOL", "1e-7")
    monkeypatch.setenv("SG_ATOL", "0")
    out = run_bundle_test(bundle, variables={"CFLAGS": "-O1"})
    assert "mlp_grad: all outputs match" in out, out
    monkeypatch.setenv("SG_BOUND_SCALE", "0")
    with pytest.raises(RuntimeError, match="MISMATCH"):
        run_bundle_test(bundle, variables={"CFLAGS": "-O1"})


def test_numpy_bundle_uses_the_bounds(tmp_path, monkeypatch):
    outs, ins = _mlp(hidden=32)
    rng = np.random.default_rng(2)
    example = {t.name: (rng.standard_normal(_shape(t, 8)) * 3).astype(np.float32) for t in ins if t.name != "y"}
    example["y"] = rng.integers(0, 10, 8)
    bundle = sg.emit(outs, ins, target="numpy", out_dir=tmp_path, name="npb", example=example)
    # corrupt one golden element by 100 bounds: the module's test must notice
    tol = np.fromfile(bundle.path("data/tol1.bin"), "<f4")
    want = np.fromfile(bundle.path("data/out1.bin"), "<f4")
    assert run_bundle_test(bundle).count(": ok") == len(bundle.output_names)
    k = int(np.argmax(np.abs(want)))
    want[k] += 100 * tol[k] + 1e-4 * abs(want[k]) + 1e-5
    want.tofile(bundle.path("data/out1.bin"))
    with pytest.raises(RuntimeError, match="MISMATCH"):
        run_bundle_test(bundle)


def test_readme_says_how_the_bounds_were_found(tmp_path):
    outs, ins = _mlp(hidden=8)
    bundle = sg.emit(outs, ins, target="numpy", out_dir=tmp_path, name="r")
    text = Path(bundle.path("README.txt")).read_text()
    assert "data/tolK.bin" in text and "float32-vs-float64" in text
    assert emit_mod.BOUND_SAFETY > 1
