"""Bad data gives the same error everywhere: the NumPy backend's InputError (naming the op
and the user's line) on numpy and on the cuda backend (host shim); the documented return
codes (docs/abi.md section 6) in C and LLVM bundles, which are called here through ctypes.

Cases: a max/min/argmax reducing over nothing (code 4, NAME_ERR_DIM_MISMATCH), an index or
label out of range, given as an input or computed in the graph (code 5, NAME_ERR_INDEX).
A softmax over an empty axis is no error (NumPy gives an empty result): the bundles used
to refuse it, since its decomposition holds a max.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.cstyle.run import find_cc

HAVE_MAKE = shutil.which("make") is not None and find_cc() is not None
HAVE_GXX = shutil.which("g++") is not None
OK, DIM_MISMATCH, INDEX = 0, 4, 5


def _cases():
    x = sg.placeholder("x", shape=("n", "m"))
    idx = sg.placeholder("idx", shape=("k",), dtype="int64")
    good = {"x": np.ones((2, 3), np.float32), "idx": np.array([0, 2, -3])}
    empty_rows = {"x": np.zeros((0, 3), np.float32), "idx": np.array([0])}
    empty_both = {"x": np.zeros((0, 0), np.float32), "idx": np.array([0])}
    empty_cols = {"x": np.zeros((2, 0), np.float32), "idx": np.array([0])}
    big = {"x": np.ones((2, 3), np.float32), "idx": np.array([0, 3])}
    neg = {"x": np.ones((2, 3), np.float32), "idx": np.array([-4])}
    return {
        # name: (output, inputs, [(values, expected code or None for the numpy error text)])
        "max": (sg.max(x, axis=0) + sg.cast(sg.sum(idx), "float32"), [x, idx],
                [(good, OK), (empty_rows, DIM_MISMATCH), (empty_cols, OK)]),
        "min_all": (sg.min(x) + sg.cast(sg.sum(idx), "float32"), [x, idx],
                    [(good, OK), (empty_rows, DIM_MISMATCH)]),
        "argmax": (sg.argmax(x, axis=0) + sg.sum(idx), [x, idx],
                   [(good, OK), (empty_both, DIM_MISMATCH), (empty_cols, OK)]),
        "softmax": (sg.softmax(x, axis=1) + sg.cast(sg.sum(idx), "float32"), [x, idx],
                    [(good, OK), (empty_cols, OK)]),
        "take": (sg.take(x, idx, axis=1), [x, idx], [(good, OK), (big, INDEX), (neg, INDEX)]),
        "take_computed": (sg.take(x, sg.argmax(x, axis=1) + idx[:1] + 1, axis=1), [x, idx],
                          [({"x": np.ones((2, 3), np.float32), "idx": np.array([0])}, OK),
                           ({"x": np.ones((2, 3), np.float32), "idx": np.array([2])}, INDEX)]),
        "one_hot": (sg.one_hot(idx, 3) * sg.sum(x), [x, idx], [(good, INDEX),
                    ({"x": np.ones((2, 3), np.float32), "idx": np.array([0, 2])}, OK)]),
    }


CASES = _cases()
OP = {"max": "max", "min_all": "min", "argmax": "argmax", "softmax": "softmax", "take": "take",
      "take_computed": "take", "one_hot": "one_hot"}


def _numpy_outcome(out, ins, values):
    try:
        return sg.compile(out, ins, backend="numpy")(**values), None
    except sg.errors.InputError as exc:
        return None, str(exc)


@pytest.mark.parametrize("key", list(CASES))
def test_numpy_raises_exactly_where_a_bundle_returns_an_error(key):
    out, ins, runs = CASES[key]
    for values, code in runs:
        _, err = _numpy_outcome(out, ins, values)
        assert (err is not None) == (code != OK), (values, err)
        if err is not None:
            assert f"(op {OP[key]} built at " in err
            assert "test_bundle_errors.py" in err  # the user's line


@pytest.mark.skipif(not HAVE_GXX, reason="the CUDA host shim needs g++")
@pytest.mark.parametrize("key", list(CASES))
def test_cuda_shim_raises_the_numpy_error(key, monkeypatch):
    monkeypatch.setenv("SYMGRAD_CUDA_DEVICE", "shim")
    out, ins, runs = CASES[key]
    f = sg.compile(out, ins, backend="cuda")
    for values, _ in runs:
        want, err = _numpy_outcome(out, ins, values)
        if err is None:
            np.testing.assert_allclose(f(**values), want, rtol=1e-6)
        else:
            with pytest.raises(sg.errors.InputError) as info:
                f(**values)
            assert str(info.value) == err
    good = runs[0][0]
    if _numpy_outcome(out, ins, good)[1] is None:  # the error state does not stick
        np.testing.assert_allclose(f(**good), _numpy_outcome(out, ins, good)[0], rtol=1e-6)


def _library(bundle, target):
    name = bundle.name
    if target == "c":
        subprocess.run(["make", "-s", "-C", str(bundle.out_dir), f"lib{name}.so", "CFLAGS=-O1"],
                       check=True, capture_output=True)
    return ctypes.CDLL(str(bundle.path(f"lib{name}.so")))


def _call(lib, name, values, order):
    """Run the bundle's entry point; return its code and outputs (on success)."""
    i64 = ctypes.c_int64
    arrays = [np.ascontiguousarray(values[n]) for n in order]
    nd = getattr(lib, f"{name}_num_dims")()
    dims = (i64 * max(nd, 1))()
    src_in, src_ax = ctypes.c_int32(), ctypes.c_int32()
    for j in range(nd):
        assert getattr(lib, f"{name}_dim_source")(j, ctypes.byref(src_in), ctypes.byref(src_ax)) == 0
        dims[j] = arrays[src_in.value].shape[src_ax.value]
    ws_bytes = i64()
    rc = getattr(lib, f"{name}_workspace_size")(dims, ctypes.byref(ws_bytes))
    if rc != 0:
        return rc, None
    ws = np.zeros(ws_bytes.value + 64, np.uint8)
    ws_ptr = (ws.ctypes.data + 63) // 64 * 64
    outs = []
    shape = (i64 * 8)()
    for k in range(getattr(lib, f"{name}_num_outputs")()):
        rc = getattr(lib, f"{name}_output_shape")(k, dims, shape)
        if rc != 0:
            return rc, None
        rank = getattr(lib, f"{name}_output_rank")(k)
        dt = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.int64, 5: np.uint8}[
            getattr(lib, f"{name}_output_dtype")(k)]
        outs.append(np.zeros(tuple(shape[a] for a in range(rank)), dt))
    ins = (ctypes.c_void_p * len(arrays))(*[a.ctypes.data if a.size else None for a in arrays])
    outp = (ctypes.c_void_p * len(outs))(*[o.ctypes.data if o.size else None for o in outs])
    fn = getattr(lib, name)
    fn.restype = ctypes.c_int32
    rc = fn(ins, outp, dims, ctypes.c_void_p(ws_ptr))
    return rc, outs


@pytest.mark.skipif(not HAVE_MAKE, reason="needs make and a C compiler")
@pytest.mark.parametrize("target", ["c", "llvm"])
@pytest.mark.parametrize("key", list(CASES))
def test_bundle_returns_the_documented_code(key, target, tmp_path):
    out, ins, runs = CASES[key]
    good = next(v for v, code in runs if code == OK)
    bundle = sg.emit(out, ins, target=target, out_dir=tmp_path, name=f"e_{key}", example=good)
    lib = _library(bundle, target)
    for values, code in runs:
        rc, got = _call(lib, bundle.name, values, bundle.input_names)
        assert rc == code, (values, rc)
        if code == OK:
            want, _ = _numpy_outcome(out, ins, values)
            np.testing.assert_allclose(got[0], want, rtol=1e-6)
