"""The example program of docs/abi.md compiles as written in C99 and runs against a bundle."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.cstyle.run import find_cc

DOC = Path(__file__).parent.parent / "docs" / "abi.md"
CC = find_cc()


def _example() -> str:
    text = DOC.read_text()
    section = text[text.index("## 10. Example"):]
    blocks = re.findall(r"```c\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "section 10 holds one C program"
    return blocks[0]


def _mlp():
    """A function named like the example's: one dim (the batch), a float32 output first."""
    x = sg.placeholder("x", shape=("batch", 20))
    y = sg.placeholder("y", shape=("batch",), dtype="int64")
    w = sg.placeholder("w", shape=(20, 10))
    b = sg.placeholder("b", shape=(10,))
    loss = sg.nn.cross_entropy(sg.relu(x @ w) + b, y)
    return {"loss": loss, "dw": sg.grad(loss, w)}, [x, y, w, b]


def test_the_example_is_c99_without_c11_calls():
    src = _example()
    assert "aligned_alloc" not in src  # C11: implicitly declared under -std=c99
    assert "#include" in src and "int main(void)" in src


@pytest.mark.skipif(CC is None or shutil.which("make") is None, reason="needs a C compiler")
@pytest.mark.parametrize("target", ["c", "llvm"])
def test_the_example_compiles_as_c99_and_runs(target, tmp_path):
    outs, ins = _mlp()
    bundle = sg.emit(outs, ins, target=target, out_dir=tmp_path / "b", name="mlp", sizes={"batch": 3})
    (tmp_path / "example.c").write_text(_example())
    objs = ([str(bundle.path("mlp.c"))] if target == "c"
            else [str(bundle.path("mlp_abi.c")), str(bundle.path("mlp_kernels.o"))])
    exe = tmp_path / "example"
    extra = os.environ.get("SYMGRAD_BUNDLE_CFLAGS", "").split()  # e.g. sanitizers
    build = subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", *extra, "-I", str(bundle.out_dir),
                            str(tmp_path / "example.c"), *objs, "-lm", "-o", str(exe)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    name, value = run.stdout.strip().split(" = ")
    assert name == "loss"
    # the example passes zeros (calloc) for a batch of 32
    f = sg.compile(outs["loss"], ins)
    want = f(np.zeros((32, 20), np.float32), np.zeros(32, np.int64), np.zeros((20, 10), np.float32),
             np.zeros(10, np.float32))
    np.testing.assert_allclose(float(value), want, rtol=1e-5)
    assert abs(float(value) - np.log(10)) < 1e-5
