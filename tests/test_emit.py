"""sg.emit: standalone bundles for the C, LLVM, CUDA (host shim) and NumPy targets.

Each bundle is built and checked by its own ``make test`` (``make test-host`` for CUDA)
against golden outputs of the NumPy backend; a C program written only from
docs/abi.md (tests/abi_client.c) calls the emitted functions; emitting twice gives the
same bytes.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.cstyle.run import find_cc
from symgrad.emit import run_bundle_test

HERE = Path(__file__).parent
SHIM = Path(sg.__file__).parent / "backends" / "cuda" / "shim.h"
HAVE_MAKE = shutil.which("make") is not None and find_cc() is not None
HAVE_GXX = shutil.which("g++") is not None and SHIM.exists()
MAKE_VARS = {"c": {"CFLAGS": "-O1"}, "llvm": {"CFLAGS": "-O1"}, "cuda": {"HOSTFLAGS": "-O0"}, "numpy": {}}
MAKE_TARGET = {"c": "test", "llvm": "test", "cuda": "test-host", "numpy": "test"}
# extra compiler flags for every C build (run_bundle_test reads the same variable), e.g.
# SYMGRAD_BUNDLE_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
EXTRA_CFLAGS = os.environ.get("SYMGRAD_BUNDLE_CFLAGS", "").split()


def _target_params(targets=("c", "llvm", "cuda", "numpy")):
    out = []
    for t in targets:
        marks = []
        if t != "numpy" and not HAVE_MAKE:
            marks.append(pytest.mark.skip(reason="needs make and a C compiler"))
        if t == "cuda" and not HAVE_GXX:
            marks.append(pytest.mark.skip(reason="the CUDA host build needs g++ and backends/cuda/shim.h"))
        if t == "numpy" and shutil.which("make") is None:
            marks.append(pytest.mark.skip(reason="needs make"))
        out.append(pytest.param(t, marks=marks))
    return out


# -- the workloads --------------------------------------------------------------------------------
def w1():
    """Elementwise value and gradient: sum(softplus(x) tanh(x) + sigmoid(x)^2)."""
    x = sg.placeholder("x", shape=(None,))
    loss = sg.sum(sg.softplus(x) * sg.tanh(x) + sg.sigmoid(x) ** 2)
    return {"loss": loss, "dloss/dx": sg.grad(loss, x)}, [x], {"x.0": 1000}, {}


def mlp_step():
    """One SGD step of a 20-16-10 ReLU network with softmax cross-entropy, batch 8."""
    X = sg.placeholder("X", shape=("batch", 20))
    y = sg.placeholder("y", shape=("batch",), dtype="int64")
    W1 = sg.placeholder("W1", shape=(20, 16))
    b1 = sg.placeholder("b1", shape=(16,))
    W2 = sg.placeholder("W2", shape=(16, 10))
    b2 = sg.placeholder("b2", shape=(10,))
    z = sg.relu(X @ W1 + b1) @ W2 + b2
    loss = -sg.mean(sg.sum(sg.one_hot(y, 10) * sg.log_softmax(z, axis=-1), axis=-1))
    params = [W1, b1, W2, b2]
    grads = sg.grad(loss, params)
    outs = {"loss": loss, **{f"new {p.name}": p - 0.1 * g for p, g in zip(params, grads)}}
    return outs, [X, y, *params], {"batch": 8}, {"y": np.arange(8) % 10}


def conv_step():
    """One SGD step of conv(1->4, 3x3) - relu - maxpool 2 - dense 10, cross-entropy."""
    x = sg.placeholder("x", shape=("batch", 1, 8, 8))
    y = sg.placeholder("y", shape=("batch",), dtype="int64")
    w = sg.placeholder("w", shape=(4, 1, 3, 3))
    v = sg.placeholder("v", shape=(36, 10))
    h = sg.nn.max_pool2d(sg.relu(sg.nn.conv2d(x, w)), 2)
    z = sg.reshape(h, (-1, 36)) @ v
    loss = sg.nn.cross_entropy(z, y)
    gw, gv = sg.grad(loss, [w, v])
    return {"loss": loss, "new_w": w - 0.1 * gw, "new_v": v - 0.1 * gv}, [x, y, w, v], {"batch": 4}, {}


WORKLOADS = {"w1": w1, "mlp_step": mlp_step, "conv_step": conv_step}


def _emit(workload, target, out_dir):
    outs, ins, sizes, example = WORKLOADS[workload]()
    return sg.emit(outs, ins, target=target, out_dir=out_dir, name=workload, sizes=sizes,
                   example=example)


# -- bundles pass their own tests -------------------------------------------------------------------
@pytest.mark.parametrize("target", _target_params())
@pytest.mark.parametrize("workload", ["w1", "mlp_step"])
def test_bundle_passes_its_test(workload, target, tmp_path):
    bundle = _emit(workload, target, tmp_path / target)
    out = run_bundle_test(bundle, MAKE_TARGET[target], MAKE_VARS[target])
    assert f"{workload}: all outputs match" in out, out
    n_out = len(bundle.output_names)
    assert out.count(": ok" if target == "numpy" else ", ok") == n_out, out


@pytest.mark.parametrize("target", _target_params())
def test_conv_net_step_bundle(target, tmp_path):
    bundle = _emit("conv_step", target, tmp_path / target)
    out = run_bundle_test(bundle, MAKE_TARGET[target], MAKE_VARS[target])
    assert "conv_step: all outputs match" in out, out


def test_bundle_contents(tmp_path):
    _emit("mlp_step", "c", tmp_path)
    for f in ("mlp_step.c", "mlp_step.h", "mlp_step_test.c", "Makefile", "CMakeLists.txt",
              "README.txt", "data/dims.bin", "data/in0.bin", "data/out4.bin"):
        assert (tmp_path / f).exists(), f
    header = (tmp_path / "mlp_step.h").read_text()
    assert "'new W1' -> mlp_step_OUT_new_W1" in header  # the name mapping, in a comment
    assert "#define mlp_step_OUT_new_W1 1" in header and 'extern "C"' in header
    assert np.fromfile(tmp_path / "data/dims.bin", "<i8").tolist() == [8]
    X = np.fromfile(tmp_path / "data/in0.bin", "<f4").reshape(8, 20)
    loss = np.fromfile(tmp_path / "data/out0.bin", "<f4")
    outs, ins, _, example = mlp_step()
    f = sg.compile(list(outs.values()), ins)
    inputs = [X, example["y"], *[np.fromfile(tmp_path / f"data/in{k}.bin", "<f4").reshape(t.shape)
                                 for k, t in enumerate(ins) if k >= 2]]
    np.testing.assert_allclose(f(*inputs)[0], loss[0], rtol=1e-6)


# -- determinism ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["c", "cuda", "llvm", "numpy"])
def test_emitting_twice_gives_identical_files(target, tmp_path):
    a = _emit("mlp_step", target, tmp_path / "a")
    b = _emit("mlp_step", target, tmp_path / "b")
    assert a.files == b.files
    for f in a.files:
        assert filecmp.cmp(tmp_path / "a" / f, tmp_path / "b" / f, shallow=False), f


# -- a caller written from docs/abi.md ------------------------------------------------------------------
def _pattern(dtype, shape, i):
    n = int(np.prod(shape))
    k = np.arange(n, dtype=np.int64)
    if dtype in ("float32", "float64"):
        v = ((37 * k + 11 * i) % 101) / 50.0 - 1.0
    elif dtype == "bool":
        v = k % 2
    else:
        v = k % 3
    return v.astype(dtype).reshape(shape)


def _parse_client(text):
    lines = text.strip().splitlines()
    outs = []
    for head, values in zip(lines[::2], lines[1::2]):
        dt = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.int64, 5: np.bool_}[int(head.split("dtype=")[1].split()[0])]
        shape = tuple(int(s) for s in head.split("shape=(")[1].rstrip(")").split(",") if s)
        vals = np.array([float(v) for v in values.split()], np.float64) if values.strip() else np.zeros(0)
        outs.append(vals.astype(dt).reshape(shape))
    return outs


@pytest.mark.skipif(not HAVE_MAKE, reason="needs a C compiler")
@pytest.mark.parametrize("target", ["c", "llvm"])
def test_abi_client_written_from_the_docs(target, tmp_path):
    bundle = _emit("mlp_step", target, tmp_path / "b")
    src = [str(tmp_path / "b" / "mlp_step.c")] if target == "c" else [
        str(tmp_path / "b" / "mlp_step_abi.c"), str(tmp_path / "b" / "mlp_step_kernels.o")]
    exe = tmp_path / "client"
    proc = subprocess.run([find_cc(), "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", *EXTRA_CFLAGS,
                           "-DSG_NAME=mlp_step", '-DSG_HEADER="mlp_step.h"', "-I", str(tmp_path / "b"),
                           str(HERE / "abi_client.c"), *src, "-lm", "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    batch = 5
    run = subprocess.run([str(exe), str(batch)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    got = _parse_client(run.stdout)
    outs, ins, _, _ = mlp_step()
    f = sg.compile(list(outs.values()), ins)
    shapes = [tuple(batch if not isinstance(s, int) else s for s in t.shape) for t in ins]
    want = f(*[_pattern(t.dtype, s, i) for i, (t, s) in enumerate(zip(ins, shapes))])
    assert len(got) == len(want) == len(bundle.output_names)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


# -- the numpy module stands alone ----------------------------------------------------------------------
def test_numpy_module_needs_only_numpy(tmp_path):
    bundle = _emit("mlp_step", "numpy", tmp_path)
    text = (tmp_path / "mlp_step.py").read_text()
    assert "import symgrad" not in text and "from symgrad" not in text
    script = textwrap.dedent("""
        import sys
        sys.modules["symgrad"] = None  # any import of symgrad now fails
        sys.modules["scipy"] = None
        import numpy as np
        import mlp_step
        X = np.ones((3, 20), np.float32)
        outs = mlp_step.mlp_step(X, np.array([0, 1, 2]), np.ones((20, 16)), np.ones(16),
                                 np.ones((16, 10)), np.ones(10))
        print(len(outs), outs[0].dtype, outs[1].shape)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["5", "float32", "(20,", "16)"]
    assert bundle.output_names[0] == "loss"


# -- the command line -------------------------------------------------------------------------------------
@pytest.mark.skipif(not HAVE_MAKE, reason="needs make and a C compiler")
def test_cli_emit(tmp_path, capsys):
    from symgrad.cli import main

    model = tmp_path / "tiny model.py"
    model.write_text(textwrap.dedent("""
        import symgrad as sg
        x = sg.placeholder("x", shape=("n", 3))
        w = sg.placeholder("w", shape=(3,))
        loss = sg.mean((sg.tanh(x @ w) - 1.0) ** 2)
        OUTPUTS = {"loss": loss, "dloss/dw": sg.grad(loss, w)}
    """))
    out_dir = tmp_path / "bundle"
    assert main(["emit", str(model), "--target", "c", "-o", str(out_dir), "--size", "n=5"]) == 0
    assert "tiny_model" in capsys.readouterr().out
    assert (out_dir / "tiny_model.h").exists()
    out = run_bundle_test(out_dir, "test", {"CFLAGS": "-O1"})
    assert "tiny_model: all outputs match" in out
    assert np.fromfile(out_dir / "data/dims.bin", "<i8").tolist() == [5]


def test_unknown_target_and_example_names_are_errors(tmp_path):
    outs, ins, _, _ = w1()
    with pytest.raises(ValueError, match="unknown emit target"):
        sg.emit(outs, ins, target="fortran", out_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown inputs"):
        sg.emit(outs, ins, target="numpy", out_dir=tmp_path, example={"nope": np.ones(3)})
