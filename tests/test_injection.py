"""User-chosen names never reach the generated source as code.

The NumPy backend ``exec``s the Python it generates, so placeholder and size names are
reduced to safe identifiers first. For each hostile or awkward name: the function
computes the right numbers when called by that name, its source is valid Python, the
raw name does not appear in it (names that are already safe identifiers may appear, but
only as one parameter that nothing else reuses), and the source has only the shape
of code the backend writes (assignments and one return, no imports, every name bound).
"""

from __future__ import annotations

import ast
import builtins
import keyword
import re

import numpy as np
import pytest

import symgrad as sg

HOSTILE_NAMES = [
    "x); import os; (",
    "x): pass\nimport os\ndef f(",
    "__import__('os').system('true')",
    "import",
    "def",
    "lambda",
    "None",
    "True",
    "np",
    "print",
    "exec",
    "__import__",
    "__builtins__",
    "self",
    "t0",
    "add_0",
    "tanh_0",
    "mul_0",
    "x_0",
    "symgrad_fn",
    "_const0",
    "_ref_tanh",
    "x.0",
    "1abc",
    " ",
    "_",
    "é",
    "名前",
    "a\nb",
    'q"uote',
    "it's",
    "{0}",
    "#comment",
    "\\",
]

SAFE_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def _is_plain_identifier(name: str) -> bool:
    """A name the namer may keep as it is."""
    return bool(SAFE_IDENT.match(name)) and not keyword.iskeyword(name) and \
        not keyword.issoftkeyword(name) and name not in dir(builtins) and name not in ("np", "self")


def check_source(source: str, raw_names: list[str]) -> None:
    """Valid Python of the expected shape, with no user text except plain identifiers."""
    tree = ast.parse(source)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.FunctionDef), source
    fn = tree.body[0]
    params = [a.arg for a in fn.args.args]
    assert len(set(params)) == len(params), f"duplicate parameters {params}"
    bound = set(params)
    for stmt in fn.body[:-1]:
        if isinstance(stmt, ast.Delete):  # a temporary dropped after its last use
            for t in stmt.targets:
                assert isinstance(t, ast.Name) and t.id in bound and t.id not in params, ast.dump(stmt)
                bound.discard(t.id)  # a later use would read a deleted name
            continue
        if isinstance(stmt, ast.AugAssign):  # a slice gradient summed into its buffer
            assert isinstance(stmt.op, ast.Add), ast.dump(stmt)
            target = stmt.target
            base = target.value if isinstance(target, ast.Subscript) else target
            assert isinstance(base, ast.Name) and base.id in bound, ast.dump(stmt)
            if isinstance(target, ast.Subscript):
                _check_expression(target.slice, bound)
            _check_expression(stmt.value, bound)
            continue
        assert isinstance(stmt, ast.Assign) and len(stmt.targets) == 1, ast.dump(stmt)
        target = stmt.targets[0]
        assert isinstance(target, ast.Name), ast.dump(stmt)
        assert target.id not in bound, f"{target.id!r} is assigned twice or shadows a parameter"
        _check_expression(stmt.value, bound)
        bound.add(target.id)
    assert isinstance(fn.body[-1], ast.Return)
    assert fn.body[-1].value is not None
    _check_expression(fn.body[-1].value, bound)
    for name in raw_names:
        if _is_plain_identifier(name):
            assert params.count(name) <= 1
            continue
        assert name not in bound, f"{name!r} is used as a variable"
        if re.search(r"[^A-Za-z0-9_]", name) and name.strip():
            assert name not in source, f"the raw name {name!r} appears in the source:\n{source}"


def _check_expression(node: ast.AST, bound: set[str]) -> None:
    for sub in ast.walk(node):
        assert not isinstance(sub, (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield)), ast.dump(sub)
        if isinstance(sub, ast.Name):
            assert sub.id in bound or sub.id == "np" or sub.id.startswith(("_ref_", "_const")), (
                f"unbound or unexpected name {sub.id!r}")
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            assert sub.value.isidentifier(), f"string constant {sub.value!r} in generated code"


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n) for n in HOSTILE_NAMES])
def test_hostile_placeholder_name(name: str, rng: np.random.Generator) -> None:
    p = sg.placeholder(name, (None, 3), "float64")
    y = sg.placeholder("y", (3,), "float64")
    loss = sg.sum(sg.tanh(p) * y) + sg.mean(p)
    f = sg.compile([loss, sg.grad(loss, p), sg.tanh(p) + 1.0], inputs=[p, y])
    assert f.inputs == [name, "y"]
    check_source(f.source, [name])
    vp, vy = rng.standard_normal((4, 3)), rng.standard_normal(3)
    got_loss, got_grad, got_t = f(**{name: vp, "y": vy})
    np.testing.assert_allclose(got_loss, np.sum(np.tanh(vp) * vy) + vp.mean(), rtol=1e-13)
    np.testing.assert_allclose(got_grad, (1 - np.tanh(vp) ** 2) * vy + 1 / 12, rtol=1e-13)
    np.testing.assert_allclose(got_t, np.tanh(vp) + 1.0, rtol=1e-15)
    # positional calls work the same
    np.testing.assert_allclose(f(vp, vy)[0], got_loss, rtol=0)


def test_names_colliding_with_temporaries_and_each_other(rng: np.random.Generator) -> None:
    """Several awkward names in one function, including two that sanitize alike."""
    names = ["add_0", "tanh_0", "add 0", "add-0", "t0", "np", "x", "x_1", "x-1"]
    phs = [sg.placeholder(n, (2,), "float64") for n in names]
    total = phs[0]
    for p in phs[1:]:
        total = sg.tanh(total) + p
    f = sg.compile([total, *[p * 2.0 for p in phs]])
    check_source(f.source, names)
    vals = {n: rng.standard_normal(2) for n in names}
    want = vals[names[0]]
    for n in names[1:]:
        want = np.tanh(want) + vals[n]
    got = f(**vals)
    np.testing.assert_allclose(got[0], want, rtol=1e-14)
    for n, g in zip(names, got[1:]):
        np.testing.assert_array_equal(g, vals[n] * 2.0)


def test_size_names_that_sanitize_to_the_same_identifier(rng: np.random.Generator) -> None:
    a = sg.placeholder("a", ("n-1", 2), "float64")
    b = sg.placeholder("b", ("n 1", 2), "float64")
    c = sg.placeholder("c", ("n_1", 2), "float64")
    d = sg.placeholder("d", ("x); import os; (", 2), "float64")
    outs = [sg.mean(a, axis=0), sg.mean(b, axis=0), sg.mean(c, axis=0), sg.mean(d, axis=0)]
    f = sg.compile(outs)
    check_source(f.source, ["n-1", "n 1", "x); import os; ("])
    vals = {"a": rng.standard_normal((3, 2)), "b": rng.standard_normal((5, 2)),
            "c": rng.standard_normal((7, 2)), "d": rng.standard_normal((2, 2))}
    for got, k in zip(f(**vals), "abcd"):
        np.testing.assert_allclose(got, vals[k].mean(axis=0), rtol=1e-14)
    # the sizes stay separate: a second call with other sizes
    vals["a"] = rng.standard_normal((9, 2))
    np.testing.assert_allclose(f(**vals)[0], vals["a"].mean(axis=0), rtol=1e-14)


def test_a_size_named_like_a_placeholder(rng: np.random.Generator) -> None:
    x = sg.placeholder("x", ("x", 2), "float64")
    n = sg.placeholder("n", ("np",), "float64")
    f = sg.compile([sg.sum(x, axis=0) / sg.mean(n), sg.mean(x)])
    check_source(f.source, ["x", "np", "n"])
    vx, vn = rng.standard_normal((4, 2)), rng.uniform(1, 2, 6)
    got = f(x=vx, n=vn)
    np.testing.assert_allclose(got[0], vx.sum(axis=0) / vn.mean(), rtol=1e-14)
    np.testing.assert_allclose(got[1], vx.mean(), rtol=1e-14)


def test_nothing_is_executed_from_a_name(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that would run code if pasted into the source runs nothing."""
    calls: list[str] = []
    monkeypatch.setattr(builtins, "print", lambda *a, **k: calls.append("print"))
    for name in ["print('pwned')", "x); print('pwned'); (", "__import__('os').getcwd()"]:
        p = sg.placeholder(name, (2,), "float32")
        f = sg.compile(p * 3.0)
        np.testing.assert_array_equal(f(np.ones(2, "f4")), np.full(2, 3.0, "f4"))
        check_source(f.source, [name])
    assert calls == []


def test_generated_source_is_deterministic() -> None:
    def build() -> sg.Function:
        x = sg.placeholder("x); import os; (", (None, 3), "float32")
        w = sg.placeholder("w", (3,), "float32")
        return sg.compile([sg.sum(sg.tanh(x @ w)), sg.grad(sg.sum(sg.tanh(x @ w)), w)])

    assert build().source == build().source
