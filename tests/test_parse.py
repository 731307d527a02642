"""Reading the text form back: round trips (to the very same nodes), exact constants,
large constants, and errors that name the line."""

import numpy as np
import pytest

import symgrad as sg
from symgrad.ir.graph import to_text
from symgrad.ir.parse import ParseError, constants_of, parse_text


def round_trip(outs, constants=None):
    text = to_text(outs)
    back = parse_text(text, constants)
    assert len(back) == len(outs) and all(a is b for a, b in zip(back, outs)), text
    assert to_text(back) == text
    return text


def test_round_trip_of_a_gradient_graph_with_symbolic_sizes():
    x = sg.placeholder("x", shape=(None, 3))
    w = sg.placeholder("w", shape=(3,))
    loss = sg.mean((sg.tanh(x @ w + 1.0) - 2.0) ** 2)
    text = round_trip([loss, sg.grad(loss, w)])
    assert "grad(" in text and "dim[dtype='float32', size=x.0]" in text
    f = sg.compile(parse_text(text))
    np.testing.assert_allclose(f(x=np.ones((4, 3), "f4"), w=np.ones(3, "f4"))[0], 1.0013418, rtol=1e-6)


def test_round_trip_of_shape_ops_slices_and_indexing():
    x = sg.placeholder("x", shape=(None, 6))
    b = sg.placeholder("b", shape=("batch", 4), dtype="int32")
    k = sg.placeholder("k", shape=(2,), dtype="int64")
    outs = [
        x[1:, ::2],            # slice checks with strings and symbolic bounds
        x[::3],                # a floor-division size: (x.0+2)//3
        x[-1],
        sg.reshape(x, (-1,)),  # 6*x.0
        sg.one_hot(b, 5),
        sg.take(x, k, axis=1),
        sg.transpose(x),
        sg.sum(x, axis=1, keepdims=True),
        sg.where(x > 0, x, 0.0),
        sg.concatenate([x, x], axis=1),
    ]
    text = round_trip(outs)
    assert "//3" in text and "'getitem: slice bound 1 needs size >= 1'" in text


def test_constants_print_and_parse_exactly():
    values = [
        np.array([np.nan, -np.inf, np.inf, 0.1, -0.0, 1e-45, 3.4028235e38], np.float32),
        np.array(0.1),
        np.array([[1, -2], [3, 2**40]], np.int64),
        np.array([True, False]),
        np.array(7, np.int32),
        np.float32(1) / np.float32(3),
    ]
    for v in values:
        c = sg.constant(v)
        (back,) = parse_text(to_text([c]))
        assert back is c
        got = back.attr("value").array
        assert got.dtype == np.asarray(v).dtype
        assert got.tobytes() == np.asarray(v).tobytes()


def test_large_constants_need_their_arrays():
    w = sg.constant(np.arange(12.0).reshape(3, 4))
    out = sg.sum(w * sg.placeholder("x", shape=(3, 4), dtype="float64"))
    text = to_text([out])
    assert "#" in text
    with pytest.raises(ParseError, match=r"line 1: large constant #[0-9a-f]+ .*constants="):
        parse_text(text)
    round_trip([out], constants_of([out]))


def test_reproducer_style_text_with_comments_parses():
    text = """
    # pipeline: canonicalize
    # error: something
    %0 = placeholder[name='x']() : float64[n]
    %1 = exp(%0) : float64[n]

    return %1, %0
    """
    y, x = parse_text(text)
    assert y.op.name == "exp" and y.inputs[0] is x and x.shape == (sg.Dim.symbol("n"),)


@pytest.mark.parametrize("text, message", [
    ("%0 = nope() : float32[]\nreturn %0", r"line 1: unknown op 'nope'"),
    ("%0 = placeholder[name='x']() : float32[3]\n%1 = exp(%7) : float32[3]\nreturn %1",
     r"line 2: unknown value '%7'"),
    ("%0 = placeholder[name='x']() : float32[3]\n%1 = exp(%0) : float32[4]\nreturn %1",
     r"line 2: the text says float32\[4\] but exp gives float32\[3\]"),
    ("%0 = placeholder[name='x']() : float32[3]\n%1 = exp(%0, %0) : float32[3]\nreturn %1",
     r"line 2: exp takes 1 input, got 2"),
    ("%0 = placeholder[name='x']() : float32[3]\n", r"no return line"),
    ("%0 = placeholder[name='x']() : float32[3]\n%1 = add(%0, %0) : float32[3]\n"
     "%2 = matmul(%0, %1) : float32[3]\nreturn %2", r"line 3: matmul"),
    ("%0 = constant[value=[1., 2.]]() : float32[3]\nreturn %0", r"line 1: constant value has shape"),
    ("%0 = placeholder[name='x']() : float32[3] ?\nreturn %0", r"line 1: unexpected character"),
])
def test_errors_name_the_line(text, message):
    with pytest.raises(ParseError, match=message):
        parse_text(text)


def test_tuples_of_strings_print_quoted():
    from symgrad.ir.graph import _attr_text

    assert _attr_text("names", ("a", "b")) == "names=('a', 'b')"
    assert _attr_text("perm", (1,)) == "perm=(1,)"


def test_a_pass_reproducer_file_parses_back():
    import dataclasses
    import re

    from symgrad.passes import PASSES, register_pass

    @dataclasses.dataclass(frozen=True)
    class Broken:
        name: str = "test-broken"

        def run(self, outputs):
            raise RuntimeError("boom")

    register_pass(Broken)
    try:
        x = sg.placeholder("x", shape=(None, 2), dtype="float64")
        y = sg.sum(sg.exp(x) * 2.0)
        message = ""
        try:
            sg.compile([y, sg.grad(y, x)], pipeline="test-broken")
        except sg.PassError as exc:  # not pytest.raises: its traceback would keep the graph alive
            message = str(exc)
        path = re.search(r"reproducer: (\S+)", message).group(1)
        with open(path) as fh:
            back = parse_text(fh.read())
        assert back[0] is y and back[1].op.name == "grad"
    finally:
        PASSES.pop("test-broken")
