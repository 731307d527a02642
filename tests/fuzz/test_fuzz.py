"""The differential fuzzer in CI: a fixed list of seeds within a time budget.

``SYMGRAD_FUZZ_SECONDS`` (default 60) bounds the time; the seeds run in order and the
test stops early only when the budget is spent, so a run on a fast machine checks every
seed and a failure names its seed (``python -m tests.fuzz --seed N --count 1`` replays it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from . import runner
from .gen import generate
from .known import DISABLED
from .program import FEATURES, Node, Program, features_of
from .runner import Failure, reproducer, session, shrink

SEEDS = range(1000, 1300)
ROOT = Path(__file__).resolve().parents[2]


def test_fuzz_fixed_seeds(capsys: pytest.CaptureFixture[str]) -> None:
    budget = float(os.environ.get("SYMGRAD_FUZZ_SECONDS", "60"))
    report = session(SEEDS, budget, shrink_seconds=min(30.0, budget / 2))
    with capsys.disabled():
        print(f"\nfuzz: {report.summary()}")
    assert report.ran >= min(10, len(SEEDS)), f"only {report.ran} programs ran in {budget} s"
    assert not report.failures, "\n\n".join(f.script for f in report.failures[:3]) + report.summary()


def test_generator_reaches_every_feature() -> None:
    """Every bug class of issue 14 that the generator knows is generated (unless disabled)."""
    seen: set[str] = set()
    for seed in range(600):
        seen |= features_of(generate(seed))
    missing = [f for f in FEATURES if f not in seen and f not in DISABLED]
    assert not missing, f"no program in 600 seeds uses {missing}"


def test_programs_are_deterministic() -> None:
    for seed in (3, 17, 40):
        a, b = generate(seed), generate(seed)
        assert a.nodes == b.nodes and a.outputs == b.outputs and a.derived == b.derived


def test_shrink_finds_a_minimal_program_and_the_reproducer_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fake failure (any program with an ``exp`` fails) shrinks to one placeholder and
    one exp, and the reproducer script runs as it is."""
    def fake_check(prog: Program, backends: object = (), derived: bool = True,
                   torch: bool = True) -> list[Failure]:
        if any(n.op == "exp" for n in prog.nodes):
            return [Failure("value", "numpy", "output 0", "fake")]
        return []

    seed = next(s for s in range(200) if sum(n.op != "placeholder" for n in generate(s).nodes) >= 4
                and fake_check(generate(s)))
    prog = generate(seed)
    monkeypatch.setattr(runner, "check", fake_check)
    small, failure = shrink(prog, Failure("value", "numpy", "output 0", "fake"), seconds=30)
    ops = [n.op for n in small.nodes]
    assert failure.message == "fake"
    assert ops.count("exp") == 1 and len(ops) <= 3 and len(ops) < len(prog.nodes), ops
    script = reproducer(small, failure)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "numpy output 0" in out.stdout and "NumPy float64 gives" in out.stdout


def test_a_wrong_backend_value_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The value check fails when a backend's output is off by more than rounding."""
    import numpy as np

    prog = Program([Node("placeholder", (), (("name", "x0"), ("spec", (3,)), ("dtype", "float32"),
                                             ("data", "normal"))),
                    Node("exp", (0,))], [1], seed=5)
    assert runner.check(prog, ("numpy",)) == []
    real_call = runner._call

    def off(f: object, data: dict[str, np.ndarray]) -> runner.Run:
        r = real_call(f, data)
        assert r.outs is not None
        return runner.Run([o * np.float32(1.001) for o in r.outs], None)

    monkeypatch.setattr(runner, "_call", off)
    fails = runner.check(prog, ("numpy",))
    assert [f.check for f in fails] == ["value"], fails
