"""Kernels the C-style renderer writes for values computed from the element's position
(``arange``, ``eye``, ``one_hot``), for empty gathers and for non-finite constants: run on
the CUDA host shim and in C bundles against the NumPy backend, and compiled by NVRTC.

Regressions: ``sg.eye``/``sg.arange`` were refused by the cuda renderer ("cannot handle
... arange, index in kernel ..."); an empty gather with its gradient gave ``r_ % 0``; a
float constant holding inf or NaN was declared as ``NAME_cK_bits`` but used as
``NAME_cK`` ("'symgrad_c1' was not declared in this scope").
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.cstyle.run import find_cc
from symgrad.backends.cuda import nvrtc
from symgrad.emit import run_bundle_test

HAVE_GXX = shutil.which("g++") is not None
HAVE_MAKE = shutil.which("make") is not None and find_cc() is not None


def _cases():
    x = sg.placeholder("x", shape=(3, 1))
    n = sg.placeholder("n", shape=(None, 2))
    lab = sg.placeholder("lab", shape=(None,), dtype="int64")
    finite = sg.constant(np.array([[-np.inf], [np.nan], [2.0]], np.float32))
    g = x[[1, -3, 2], 1:]  # an empty gather: x is (3, 1)
    return {
        "eye": ([sg.eye(3) + sg.sum(x), sg.eye(4, "float64")], [x],
                {"x": np.arange(3, dtype=np.float32)[:, None]}),
        "arange": ([sg.cast(sg.arange(5), "float32") * sg.sum(x), sg.arange(n.shape[0]) * 3,
                    sg.sum(sg.arange(n.shape[0]))], [x, n],
                   {"x": np.ones((3, 1), np.float32), "n": np.zeros((6, 2), np.float32)}),
        "one_hot": ([sg.one_hot(lab, 5) * 2.0, sg.one_hot(lab, 6, "int32")], [lab],
                    {"lab": np.array([0, 4, 2, 2, 1])}),
        "empty_gather": ([g, sg.grad(sg.sum(g * g), x)], [x], {"x": np.ones((3, 1), np.float32)}),
        "nonfinite_const": ([sg.maximum(x, finite), x + finite], [x], {"x": np.ones((3, 1), np.float32)}),
    }


CASES = _cases()


def _reference(outs, ins, values):
    with np.errstate(all="ignore"):
        return sg.compile(outs, ins, backend="numpy")(**values)


@pytest.mark.skipif(not HAVE_GXX, reason="the CUDA host shim needs g++")
@pytest.mark.parametrize("key", list(CASES))
def test_cuda_shim_matches_numpy(key, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "shim")
    outs, ins, values = CASES[key]
    f = sg.compile(outs, ins, backend="cuda")
    assert "% 0;" not in f.source and "/= 0;" not in f.source
    for got, want in zip(f(**values), _reference(outs, ins, values)):
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.skipif(not HAVE_MAKE, reason="needs make and a C compiler")
@pytest.mark.parametrize("key", list(CASES))
def test_c_bundle_matches_numpy(key, tmp_path):
    outs, ins, values = CASES[key]
    bundle = sg.emit(outs, ins, target="c", out_dir=tmp_path, name=key, example=values,
                     sizes={"n.0": 6, "lab.0": 5})
    src = bundle.path(f"{key}.c").read_text()
    assert "% 0;" not in src
    out = run_bundle_test(bundle, variables={"CFLAGS": "-O1 -Werror"})
    assert f"{key}: all outputs match" in out, out


@pytest.mark.skipif(not nvrtc.nvrtc_available(), reason="NVRTC is not installed (pip install 'symgrad[cuda]')")
@pytest.mark.parametrize("key", list(CASES))
def test_nvrtc_compiles_the_kernels(key):
    from symgrad.backends.base import Program
    from symgrad.backends.cuda import backend as cuda_backend
    from symgrad.compile import _size_sources

    outs, ins, _ = CASES[key]
    fn = sg.compile(outs, ins, backend="numpy")
    ins, graph = list(fn._inputs), list(fn.graph)
    _, rendered = cuda_backend.render(Program(ins, graph, _size_sources(ins, graph)), name=f"sg_{key}")
    out = nvrtc.compile_source(rendered.device_source, arch=80, target="cubin", name=f"{key}.cu", cache=False)
    assert out.data[:4] == b"\x7fELF"
    for kernel in rendered.kernels:
        assert f".entry {kernel}(" in out.ptx
