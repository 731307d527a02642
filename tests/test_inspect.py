"""Reading derived gradients: pretty, to_sympy, latex, DOT, pictures, explain_grad."""

import numpy as np
import sympy as sp

import symgrad as sg


def sigmoid_model():
    w = sg.placeholder("w", dtype="float64")
    x = sg.placeholder("x", dtype="float64")
    b = sg.placeholder("b", dtype="float64")
    return w, x, b, sg.sigmoid(w * x + b)


def test_pretty_binds_the_shared_sigmoid_once():
    w, x, b, y = sigmoid_model()
    text = sg.pretty(sg.grad(y, w), names=["dy/dw"])
    lines = text.splitlines()
    assert lines[0] == "sigmoid0 = sigmoid(w * x + b)"
    assert lines[-1].startswith("dy/dw = ")
    assert text.count("sigmoid(") == 1  # computed once, reused by name
    assert lines[-1].count("sigmoid0") == 2


def test_pretty_uses_user_names_and_sizes():
    x = sg.placeholder("x", shape=(None, 3))
    w = sg.placeholder("w", shape=(3,))
    loss = sg.mean((x @ w - 1.0) ** 2)
    text = sg.pretty(sg.grad(loss, w))
    assert "x.T @" in text
    assert "x.shape[0]" in text


def test_to_sympy_matches_the_analytic_derivative():
    w, x, b, y = sigmoid_model()
    expr = sg.to_sympy(sg.grad(y, w))
    W, X, B = sp.symbols("w x b", real=True)
    s = 1 / (1 + sp.exp(-(W * X + B)))
    assert sp.simplify(expr - sp.diff(s, W)) == 0


def test_to_sympy_large_graph_returns_bindings():
    x = sg.placeholder("x", dtype="float64")
    y = x
    for _ in range(30):  # each step uses y twice: the inlined tree would double each time
        y = sg.sin(y) * 1.01 + 0.1 * sg.tanh(y)
    lets, expr = sg.to_sympy(sg.grad(y, x))
    assert len(lets) > 10
    assert all(isinstance(s, sp.Symbol) for s, _ in lets)
    # evaluating the bindings in order reproduces the compiled value
    env = {sp.Symbol("x", real=True): 0.3}
    for sym, e in lets:
        env[sym] = float(e.subs(env))
    value = float(expr.subs(env))
    np.testing.assert_allclose(value, sg.compile(sg.grad(y, x))(0.3), rtol=1e-10)


def test_latex_has_aligned_bindings():
    w, x, b, y = sigmoid_model()
    text = sg.latex(sg.grad(y, w))
    assert text.startswith("\\begin{aligned}")
    assert "sigmoid_{0} &=" in text


def test_to_dot_distinguishes_forward_and_backward():
    w, x, b, y = sigmoid_model()
    dot = sg.to_dot([y, sg.grad(y, w)])
    assert dot.startswith("digraph symgrad {")
    assert '#cfe2ff' in dot and '#ffd8b0' in dot  # forward blue, backward orange
    sig = [line for line in dot.splitlines() if 'label="sigmoid' in line]
    assert len(sig) == 1 and '#cfe2ff' in sig[0]


def test_render_writes_a_picture(tmp_path):
    w, x, b, y = sigmoid_model()
    path = sg.render([y, sg.grad(y, w)], str(tmp_path / "g.png"))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_explain_grad_names_ops_rules_and_lines():
    w = sg.placeholder("w", dtype="float64")
    x = sg.placeholder("x", dtype="float64")
    loss = sg.tanh(w * x) + 0.5 * w * w
    text = sg.explain_grad(loss, w)
    assert "3 term(s)" in text  # w appears three times: in w * x and twice in 0.5 * w * w
    assert "test_inspect.py" in text
    assert "rule: d/da = b, d/db = a" in text
    assert "tanh" in text


def test_dump_dir_writes_each_pass(tmp_path):
    x = sg.placeholder("x", dtype="float64")
    y = sg.exp(x) * x
    sg.compile([y, sg.grad(y, x)], dump_dir=str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files[0] == "00-input.txt"
    assert any("autodiff" in f for f in files)
    assert "grad(" in (tmp_path / "00-input.txt").read_text()


def test_mlp_weight_gradient_reads_as_softmax_minus_onehot():
    x = sg.placeholder("x", shape=(None, 4), dtype="float64")
    W = sg.placeholder("W", shape=(4, 3), dtype="float64")
    y = sg.placeholder("y", shape=(None,), dtype="int64")
    loss = sg.nn.cross_entropy(x @ W, y)
    gW = sg.grad(loss, W)
    text = sg.pretty(gW)
    assert text.count("softmax(x @ W)") == 1 and text.count("onehot(y)") == 1
    assert "x.T @ (" in text and "sum(" not in text
    f = sg.compile([gW], inputs=[x, W, y])
    assert f.rewrites.get("canonicalize/sum-where-one_hot") == 1
    rng = np.random.default_rng(0)
    X, Wv, Y = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), np.array([0, 2, 1, 1, 0])
    z = X @ Wv
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(f(X, Wv, Y)[0], X.T @ (p - np.eye(3)[Y]) / 5, rtol=1e-12)
