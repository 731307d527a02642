"""Layers (sg.nn.Dense, Conv2d, recurrent cells, normalization, dropout...) against NumPy,
their names, initialization, and the counter-based random-number op."""

from __future__ import annotations

import numpy as np
import pytest

import symgrad as sg
from symgrad.ops.random_ops import GOLDEN, MIX1, MIX2, uniform_bits
from symgrad.testing import check_grad

M64 = (1 << 64) - 1


def run(out: sg.Tensor, values: dict[str, np.ndarray]) -> np.ndarray:
    return sg.compile(out)(**{k: v for k, v in values.items() if k in {p.name for p in _phs(out)}})


def _phs(out: sg.Tensor) -> list[sg.Tensor]:
    from symgrad.ir.graph import placeholders

    return placeholders([out])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# -- dense, names, init ---------------------------------------------------------------------------------
def test_dense_matches_numpy_and_names_its_parameters() -> None:
    model = sg.nn.Sequential([sg.nn.Dense(5, 4, "relu"), sg.nn.Dense(4, 3, "tanh")])
    assert list(model.params) == ["dense1.w", "dense1.b", "dense2.w", "dense2.b"]
    v = model.init(seed=3)
    x = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    xp = sg.placeholder("x", (None, 5))
    got = run(model(xp), {"x": x, **v})
    want = np.tanh(np.maximum(x @ v["dense1.w"] + v["dense1.b"], 0) @ v["dense2.w"] + v["dense2.b"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    text = sg.pretty(sg.grad(sg.sum(model(xp)), model.params["dense1.w"]))
    assert "dense1.w" in text and "dense2.w" in text
    assert model.num_params() == 5 * 4 + 4 + 4 * 3 + 3


def test_init_is_reproducible_and_follows_glorot_and_he() -> None:
    a = sg.nn.Sequential([sg.nn.Dense(200, 300, "relu"), sg.nn.Dense(300, 100)])
    v1, v2, v3 = a.init(0), a.init(0), a.init(1)
    for k in v1:
        np.testing.assert_array_equal(v1[k], v2[k])
    assert not np.array_equal(v1["dense1.w"], v3["dense1.w"])
    np.testing.assert_array_equal(v1["dense1.b"], 0)
    he = np.sqrt(6 / 200)  # He uniform bound for the ReLU layer
    glorot = np.sqrt(6 / 400)  # Glorot uniform bound for the linear layer
    w1, w2 = v1["dense1.w"], v1["dense2.w"]
    assert np.abs(w1).max() <= he and np.abs(w1).max() > 0.95 * he
    assert np.abs(w2).max() <= glorot and np.abs(w2).max() > 0.95 * glorot
    assert np.std(w1) == pytest.approx(he / np.sqrt(3), rel=0.03)
    # a parameter's initial value depends on the seed and its name, not on other layers
    b = sg.nn.Sequential([sg.nn.Dense(200, 300, "relu"), sg.nn.Dense(300, 7)])
    np.testing.assert_array_equal(b.init(0)["dense1.w"], w1)


def test_named_containers_prefix_their_children() -> None:
    enc = sg.nn.Sequential([sg.nn.Dense(4, 3), sg.nn.Dense(3, 2, name="code")], name="enc")
    model = sg.nn.Sequential([enc, sg.nn.Dense(2, 4)])
    assert list(model.params) == ["enc.dense1.w", "enc.dense1.b", "enc.code.w", "enc.code.b",
                                  "dense1.w", "dense1.b"]
    with pytest.raises(ValueError, match="two layers named 'a'"):
        sg.nn.Sequential([sg.nn.Dense(2, 2, name="a"), sg.nn.Dense(2, 2, name="a")])
    with pytest.raises(ValueError, match="share the parameter name 'dense1.w'"):
        sg.nn.merge(sg.nn.Sequential([sg.nn.Dense(2, 2)]).init(), sg.nn.Sequential([sg.nn.Dense(2, 2)]).init())
    with pytest.raises(ValueError, match="without '.'"):
        sg.nn.Dense(2, 2, name="a.b")


def test_dense_rejects_the_wrong_feature_count() -> None:
    layer = sg.nn.Dense(5, 2, name="fc")
    with pytest.raises(sg.ShapeError, match="fc expects 5 input features"):
        layer(sg.placeholder("x", (None, 4)))


def test_activations() -> None:
    x = np.linspace(-3, 3, 13)
    xp = sg.placeholder("x", (13,), "float64")
    np.testing.assert_allclose(run(sg.nn.leaky_relu(xp, 0.1), {"x": x}), np.where(x > 0, x, 0.1 * x))
    np.testing.assert_allclose(run(sg.nn.elu(xp), {"x": x}), np.where(x > 0, x, np.expm1(x)))
    from scipy.special import erf

    np.testing.assert_allclose(run(sg.nn.gelu(xp), {"x": x}), 0.5 * x * (1 + erf(x / np.sqrt(2))))
    np.testing.assert_allclose(run(sg.nn.silu(xp), {"x": x}), x * sigmoid(x))
    np.testing.assert_allclose(run(sg.nn.Activation("tanh")(xp), {"x": x}), np.tanh(x))
    with pytest.raises(ValueError, match="unknown activation"):
        sg.nn.Activation("swoosh")


# -- convolution, pooling, flatten, embedding --------------------------------------------------------------
def conv_ref(x: np.ndarray, w: np.ndarray, b: np.ndarray, pad: int) -> np.ndarray:
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _, h, wd = xp.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = np.einsum("nchw,ochw->no", xp[:, :, i:i + kh, j:j + kw], w)
    return out + b[None, :, None, None]


def test_conv_pool_flatten_stack() -> None:
    model = sg.nn.Sequential([sg.nn.Conv2d(2, 3, 3, padding=1, activation="relu"), sg.nn.MaxPool2d(2),
                              sg.nn.AvgPool2d(2), sg.nn.Flatten()])
    assert list(model.params) == ["conv1.w", "conv1.b"]
    v = model.init(0)
    v["conv1.b"] = np.array([0.1, -0.2, 0.3], np.float32)
    x = np.random.default_rng(1).normal(size=(2, 2, 4, 4)).astype(np.float32)
    got = run(model(sg.placeholder("x", (None, 2, 4, 4))), {"x": x, **v})
    c = np.maximum(conv_ref(x, v["conv1.w"], v["conv1.b"], 1), 0)
    mp = c.reshape(2, 3, 2, 2, 2, 2).max(axis=(3, 5))
    ap = mp.reshape(2, 3, 1, 2, 1, 2).mean(axis=(3, 5))
    np.testing.assert_allclose(got, ap.reshape(2, -1), rtol=1e-5, atol=1e-6)
    w = v["conv1.w"]
    fan_in = 2 * 9
    assert np.abs(w).max() <= np.sqrt(6 / fan_in)
    with pytest.raises(sg.ShapeError, match="expects \\(N, 2, H, W\\)"):
        model(sg.placeholder("x", (None, 3, 4, 4)))


def test_embedding_takes_rows() -> None:
    emb = sg.nn.Embedding(10, 4, name="emb")
    v = emb.init(0)
    idx = np.array([[1, 9], [0, 1]])
    got = run(emb(sg.placeholder("i", (2, 2), "int64")), {"i": idx, **v})
    np.testing.assert_array_equal(got, v["emb.w"][idx])


# -- random numbers and dropout ------------------------------------------------------------------------------
def _mix(z: int) -> int:
    z ^= z >> 30
    z = (z * MIX1) & M64
    z ^= z >> 27
    z = (z * MIX2) & M64
    return z ^ (z >> 31)


def test_random_uniform_is_the_documented_integer_hash() -> None:
    seed, counter = 12345, 7
    key = _mix(_mix(seed) ^ ((counter * GOLDEN) & M64))
    want = [_mix((key + (i + 1) * GOLDEN) & M64) for i in range(6)]
    assert [int(b) for b in uniform_bits(seed, counter, 6)] == want
    u32 = sg.compile(sg.nn.random_uniform((2, 3), seed, counter))()
    np.testing.assert_array_equal(u32.ravel(), np.array([w >> 40 for w in want]) * 2.0**-24)
    u64 = sg.compile(sg.nn.random_uniform((6,), seed, counter, "float64"))()
    np.testing.assert_array_equal(u64, np.array([w >> 11 for w in want], dtype=np.float64) * 2.0**-53)
    # negative seeds are their two's-complement words
    neg = uniform_bits(-1, 0, 1)[0]
    assert int(neg) == _mix((_mix(_mix(M64)) + GOLDEN) & M64)


def test_random_streams_are_reproducible_and_well_spread() -> None:
    c = sg.placeholder("c", (), "int64")
    f = sg.compile([sg.nn.random_uniform((20000,), 3, c), sg.nn.random_normal((20000,), 3, c)])
    u, n = f(c=0)
    u2, _ = f(c=0)
    u3, _ = f(c=1)
    np.testing.assert_array_equal(u, u2)
    assert not np.array_equal(u, u3)
    assert u.min() >= 0 and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.003
    assert abs(n.mean()) < 0.03 and abs(n.std() - 1) < 0.03
    assert sg.nn.random_uniform((3,), 1, 2) is sg.nn.random_uniform((3,), 1, 2)  # pure: one node
    with pytest.raises(sg.DTypeError, match="integer scalar"):
        sg.nn.random_uniform((3,), 1.5)


def test_dropout_train_and_eval() -> None:
    drop = sg.nn.Dropout(0.25, seed=5, name="drop")
    x = sg.placeholder("x", (None, 100))
    xv = np.ones((50, 100), np.float32)
    np.testing.assert_array_equal(sg.compile(drop(x))(xv), xv)  # eval: identity
    y, updates = drop.apply(x)
    assert list(updates) == ["drop.counter"]
    f = sg.compile([y, updates["drop.counter"]])
    a, c1 = f(x=xv, **{"drop.counter": np.int64(0)})
    b, _ = f(x=xv, **{"drop.counter": np.int64(1)})
    a2, _ = f(x=xv, **{"drop.counter": np.int64(0)})
    assert int(c1) == 1
    np.testing.assert_array_equal(a, a2)
    assert not np.array_equal(a, b)
    assert set(np.unique(a)) == {0.0, np.float32(1 / 0.75)}
    assert abs((a == 0).mean() - 0.25) < 0.01
    with pytest.raises(ValueError, match="rate"):
        sg.nn.Dropout(1.0)


# -- normalization -----------------------------------------------------------------------------------------------
def test_layernorm_matches_numpy() -> None:
    ln = sg.nn.LayerNorm(6, name="ln")
    v = ln.init(0)
    v["ln.gamma"] = np.linspace(0.5, 2, 6).astype(np.float32)
    v["ln.beta"] = np.linspace(-1, 1, 6).astype(np.float32)
    x = np.random.default_rng(2).normal(2, 3, size=(4, 6)).astype(np.float32)
    got = run(ln(sg.placeholder("x", (None, 6))), {"x": x, **v})
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * v["ln.gamma"] + v["ln.beta"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_batchnorm_train_updates_running_stats_and_eval_uses_them() -> None:
    bn = sg.nn.BatchNorm(3, momentum=0.1, name="bn")
    v = bn.init(0)
    x = np.random.default_rng(3).normal(1, 2, size=(5, 3, 2, 2)).astype(np.float32)
    xp = sg.placeholder("x", (None, 3, 2, 2))
    y, up = bn.apply(xp)
    got, rm, rv = sg.compile([y, up["bn.running_mean"], up["bn.running_var"]])(x=x, **v)
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3))
    want = (x - mean[None, :, None, None]) / np.sqrt(var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(rm, 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x.var((0, 2, 3), ddof=1), rtol=1e-5)
    ev = run(bn(xp), {"x": x, **v, "bn.running_mean": rm, "bn.running_var": rv})
    np.testing.assert_allclose(ev, (x - rm[None, :, None, None]) / np.sqrt(rv[None, :, None, None] + 1e-5),
                               rtol=1e-4, atol=1e-5)
    assert list(bn.buffers) == ["bn.running_mean", "bn.running_var"]


# -- recurrent layers ----------------------------------------------------------------------------------------------
def rnn_ref(kind: str, x: np.ndarray, v: dict[str, np.ndarray], name: str) -> np.ndarray:
    wx, wh, b = (v[f"{name}.{k}"].astype(np.float64) for k in ("w_x", "w_h", "b"))
    n, t, _ = x.shape
    hdim = wh.shape[0]
    h = np.zeros((n, hdim))
    c = np.zeros((n, hdim))
    outs = []
    for s in range(t):
        xw = x[:, s] @ wx + b
        if kind == "rnn":
            h = np.tanh(xw + h @ wh)
        elif kind == "gru":
            hw = h @ wh
            z = sigmoid(xw[:, :hdim] + hw[:, :hdim])
            r = sigmoid(xw[:, hdim:2 * hdim] + hw[:, hdim:2 * hdim])
            cand = np.tanh(xw[:, 2 * hdim:] + r * hw[:, 2 * hdim:])
            h = (1 - z) * cand + z * h
        else:
            g = xw + h @ wh
            i, f, gg, o = (g[:, k * hdim:(k + 1) * hdim] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(gg)
            h = sigmoid(o) * np.tanh(c)
        outs.append(h)
    return np.stack(outs, 1)


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm"])
def test_recurrent_layers_match_numpy_and_their_gradients_check(kind: str) -> None:
    cls = {"rnn": sg.nn.RNN, "gru": sg.nn.GRU, "lstm": sg.nn.LSTM}[kind]
    layer = cls(2, 3, dtype="float64", name=kind)
    v = layer.init(0)
    v[f"{kind}.b"] = np.random.default_rng(4).normal(size=v[f"{kind}.b"].shape)
    x = np.random.default_rng(5).normal(size=(2, 4, 2))
    xp = sg.placeholder("x", (None, 4, 2), "float64")
    got = run(layer(xp), {"x": x, **v})
    np.testing.assert_allclose(got, rnn_ref(kind, x, v, kind), rtol=1e-10)
    last = cls(2, 3, dtype="float64", return_sequences=False, name=kind)
    np.testing.assert_allclose(run(last(xp), {"x": x, **v}), got[:, -1], rtol=1e-12)
    loss = sg.sum(layer(xp) ** 2)
    check_grad(loss, [xp, *layer.params.values()], {"x": x, **v})
    if kind == "lstm":
        np.testing.assert_array_equal(layer.init(0)["lstm.b"][3:6], 1.0)  # forget-gate bias


def test_recurrent_needs_a_static_sequence_length() -> None:
    with pytest.raises(sg.ShapeError, match="static sequence length"):
        sg.nn.LSTM(2, 3)(sg.placeholder("x", (None, None, 2)))
    q = sg.nn.INITIALIZERS["orthogonal"](np.random.default_rng(0), (5, 5), 5, 5)
    np.testing.assert_allclose(q @ q.T, np.eye(5), atol=1e-12)


def test_normalization_gradients_check() -> None:
    x = np.random.default_rng(6).normal(1, 2, size=(4, 3)).astype(np.float64)
    xp = sg.placeholder("x", (None, 3), "float64")
    ln = sg.nn.LayerNorm(3, dtype="float64", name="ln")
    bn = sg.nn.BatchNorm(3, dtype="float64", name="bn")
    v = {**ln.init(0), **bn.init(0)}
    v["ln.gamma"] = np.array([0.5, 1.5, -1.0])
    weights = sg.constant(np.random.default_rng(7).normal(size=(4, 3)))
    for out in (ln(xp), bn.apply(xp)[0], bn(xp)):
        loss = sg.sum(out * weights)
        phs = [p for p in _phs(loss) if p.dtype == "float64"]
        check_grad(loss, phs, {"x": x, **v})
