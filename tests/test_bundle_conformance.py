"""The CUDA conformance graphs (tests/test_cuda_backend.py: edge values, integers, casts,
reductions, shape ops, gathers, matrix products, an MLP step, convolutions) as C bundles:
each bundle's own ``make test`` must pass on its golden data.

With ``SYMGRAD_BUNDLE_CFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer
-fno-sanitize-recover=undefined"`` this is also the sanitizer run of the C renderer."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import symgrad as sg
from symgrad.backends.cstyle.run import find_cc
from symgrad.emit import run_bundle_test

sys.path.insert(0, str(Path(__file__).parent))
import test_cuda_backend as conformance  # noqa: E402

KEYS = list(conformance.CASES)


@pytest.mark.skipif(shutil.which("make") is None or find_cc() is None, reason="needs make and a C compiler")
@pytest.mark.parametrize("key", KEYS)
def test_conformance_graph_as_a_c_bundle(key, tmp_path):
    outs, values, _ = conformance.CASES[key](np.random.default_rng(20240611))
    bundle = sg.emit(outs, target="c", out_dir=tmp_path, name=key, example=values)
    out = run_bundle_test(bundle, variables={"CFLAGS": "-O1"})
    assert f"{key}: all outputs match" in out, out
    assert out.count(", ok (") == len(outs), out
