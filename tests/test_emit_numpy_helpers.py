"""The standalone NumPy module carries its own copies of the op references it needs
(it may not import symgrad or SciPy). This test keeps each copy in step with the
reference in ``symgrad.ops``: one graph exercises every op that has such a copy, the
emitted module is imported and compared with the NumPy backend."""

import importlib
import importlib.util

import numpy as np

import symgrad as sg

emit_mod = importlib.import_module("symgrad.emit")  # sg.emit is the function


def _graph():
    x = sg.placeholder("hx", shape=(2, 3, 6, 6), dtype="float64")
    w = sg.placeholder("hw", shape=(4, 3, 3, 3), dtype="float64")
    v = sg.placeholder("hv", shape=(5, 4), dtype="float64")
    lab = sg.placeholder("hl", shape=(5,), dtype="int64")
    conv = sg.nn.conv2d(x, w, stride=1, padding=1)
    pooled = sg.nn.max_pool2d(conv, 2) + sg.nn.avg_pool2d(conv, 2)
    head = sg.sum(pooled)
    vec = (sg.sigmoid(v) + sg.erf(v) + sg.softplus(v) + sg.softmax(v) + sg.log_softmax(v)
           + sg.logsumexp(v, axis=1, keepdims=True))
    picked = sg.take(v, sg.argmax(v, axis=1), axis=1)
    sliced = v[1:, ::2]
    tail = (sg.sum(vec * sg.one_hot(lab, 4, "float64")) + sg.sum(picked) + sg.sum(sliced ** 2)
            + sg.sum(sg.cast(sg.argmin(v, axis=0), "float64")))
    loss = head + tail
    grads = sg.grad(loss, [x, w, v])  # conv/pool gradient ops, take_grad, slice_grad
    hv = sg.hvp(sg.sum(sg.nn.max_pool2d(x, 2) ** 2), x, sg.ones_like(x))  # max_pool2d_gather
    gs = sg.grad(sg.sum(v[1:, ::-2] ** 2), v)  # slice_grad alone (in grads it may be merged)
    return [loss, *grads, hv, gs], [x, w, v, lab]


def test_every_copied_helper_matches_its_reference(tmp_path):
    outs, ins = _graph()
    bundle = sg.emit(outs, ins, target="numpy", out_dir=tmp_path, name="helpers")
    spec = importlib.util.spec_from_file_location("helpers", tmp_path / "helpers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (tmp_path / "helpers.py").read_text()
    copied = set(emit_mod._NP_HELPERS) | set(emit_mod._NP_CONV_OPS)
    needed = {op for op in copied if sg.ops.OPS[op].numpy_expr is None}  # others print inline
    used = {op for op in copied if f"def _ref_{op}(" in text}
    assert used == needed, sorted(needed - used)  # every copy is exercised here

    rng = np.random.default_rng(3)
    values = [rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)),
              rng.standard_normal((5, 4)), np.array([0, 3, 1, 2, 3])]
    want = sg.compile(outs, ins)(*values)
    got = getattr(module, bundle.name)(*values)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


def _module(tmp_path, outs, ins, name):
    sg.emit(outs, ins, target="numpy", out_dir=tmp_path, name=name)
    spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_negative_step_slices_starting_before_element_0(tmp_path):
    # NumPy: x[-5::-1] on 3 elements and x[-3:0:-1] on 2 are empty; the copied slice
    # helpers read a normalized start of -1 as the last element
    x = sg.placeholder("x", shape=(3,), dtype="float64")
    v = sg.placeholder("v", shape=(2,), dtype="float64")
    head, tail = x[-5::-1], v[-3:0:-1]
    loss = sg.sum(tail * tail) / 2
    outs = [head, tail, loss, sg.grad(loss, v), x[2:-5:-1], x[1::-1]]
    f = _module(tmp_path, outs, [x, v], "negstep")
    xv, vv = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0])
    got = f(xv, vv)
    want = [xv[-5::-1], vv[-3:0:-1], 0.0, np.zeros(2), xv[2:-5:-1], xv[1::-1]]
    assert [g.shape for g in got] == [np.shape(w) for w in want]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
