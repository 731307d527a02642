"""The `symgrad` command."""

import textwrap

from symgrad.cli import main


def test_ops_table(capsys):
    main(["ops"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["op", "kind", "reference", "pullback", "pushforward",
                                           "batch", "scalar"]
    tanh = next(line for line in out.splitlines() if line.startswith("tanh "))
    assert tanh.split()[1:] == ["elementwise", "yes", "yes", "yes", "yes", "yes"]


def test_passes_list(capsys):
    main(["passes"])
    out = capsys.readouterr().out
    assert any(line.startswith("autodiff ") for line in out.splitlines())


def test_inspect_model_file(tmp_path, capsys):
    model = tmp_path / "model.py"
    model.write_text(textwrap.dedent("""
        import symgrad as sg
        w = sg.placeholder("w", dtype="float64")
        x = sg.placeholder("x", dtype="float64")
        loss = sg.tanh(w * x) ** 2
        OUTPUTS = {"loss": loss, "dloss/dw": sg.grad(loss, w)}
    """))
    main(["inspect", str(model)])
    out = capsys.readouterr().out
    assert "loss = tanh(w * x) * tanh(w * x)" in out or "tanh0 = tanh(w * x)" in out
    assert "dloss/dw = " in out
    main(["inspect", str(model), "--format", "dot"])
    assert capsys.readouterr().out.startswith("digraph")
