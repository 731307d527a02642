"""The pass manager: pipeline text, registry, instrumentation, reproducers."""

import dataclasses
import os

import numpy as np
import pytest

import symgrad as sg
from symgrad.passes import PASSES, parse_pipeline, pipeline_text, register_pass
from symgrad.passes.manager import PassManager


def small_graph():
    x = sg.placeholder("x", dtype="float64")
    y = sg.exp(x) * x
    return x, [y, sg.grad(y, x)]


def test_compiled_function_prints_its_pipeline_exactly():
    x, outs = small_graph()
    f = sg.compile(outs, pipeline="autodiff,dce")
    assert f.pipeline == "autodiff,dce"
    np.testing.assert_allclose(f(1.5), [np.exp(1.5) * 1.5, np.exp(1.5) * 2.5])


def test_pipeline_text_round_trips_with_options():
    @dataclasses.dataclass(frozen=True)
    class Scale:
        name: str = "test-scale"
        factor: float = 1.0
        enabled: bool = True

        def run(self, outputs):
            return [o * self.factor for o in outputs]

    register_pass(Scale)
    try:
        passes = parse_pipeline("autodiff,test-scale{factor=3.0,enabled=false},dce")
        assert pipeline_text(passes) == "autodiff,test-scale{factor=3.0,enabled=false},dce"
        x, outs = small_graph()
        f = sg.compile(outs[0], pipeline="test-scale{factor=3.0}")
        np.testing.assert_allclose(f(1.0), 3 * np.e)
    finally:
        PASSES.pop("test-scale")


def test_unknown_pass_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown pass 'nope'; known passes: .*autodiff"):
        parse_pipeline("autodiff,nope")


def test_bad_option_names_the_pass():
    with pytest.raises(ValueError, match="pass 'dce'"):
        parse_pipeline("dce{bogus=1}")


def test_duplicate_registration_is_an_error():
    @dataclasses.dataclass(frozen=True)
    class OtherDCE:
        name: str = "dce"

        def run(self, outputs):
            return list(outputs)

    with pytest.raises(ValueError, match="registered twice"):
        register_pass(OtherDCE)


def test_failing_pass_writes_a_reproducer():
    @dataclasses.dataclass(frozen=True)
    class Boom:
        name: str = "test-boom"

        def run(self, outputs):
            raise RuntimeError("kaboom")

    register_pass(Boom)
    try:
        x, outs = small_graph()
        with pytest.raises(sg.PassError, match="pass 'test-boom' failed: RuntimeError: kaboom") as info:
            sg.compile(outs, pipeline="autodiff,test-boom")
        path = str(info.value).split("reproducer: ")[1].strip()
        text = open(path).read()
        os.remove(path)
        assert text.startswith("# pipeline: test-boom\n# full pipeline: autodiff,test-boom\n")
        assert "exp(" in text and "return" in text
    finally:
        PASSES.pop("test-boom")


def test_timing_node_counts_and_verify_each(capsys):
    x, outs = small_graph()
    pm = PassManager(parse_pipeline("autodiff,dce"), verify_each=True, print_changed=True)
    pm.run(outs)
    names = [r.name for r in pm.report.passes]
    assert names == ["autodiff", "dce"]
    assert all(r.seconds >= 0 for r in pm.report.passes)
    assert pm.report.passes[0].nodes_after > pm.report.passes[0].nodes_before - 1
    printed = capsys.readouterr().out
    assert "--- before autodiff" in printed and "+++ after autodiff" in printed
    assert "autodiff" in str(pm.report)
