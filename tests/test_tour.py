"""The README's first command runs the tour; a one-epoch version must work end to end."""

import os
import sys

import numpy as np

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
sys.path.insert(0, EXAMPLES)


def test_tour_runs_end_to_end(tmp_path, capsys):
    from tour import main

    main(["--epochs", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "test accuracy" in out
    assert "dloss/ddense" in out and "softmax(" in out  # a derived formula with parameter names
    assert "all outputs match" in out  # the emitted C bundle's own test passed
    assert (tmp_path / "tour_digits_mlp.png").stat().st_size > 1000
    assert (tmp_path / "digits_mlp_c" / "Makefile").exists()
    # the bundle checks itself on a real batch (pixels in [0, 1], digit labels), not on
    # N(0, 1) draws, and with per-element error bounds
    data = tmp_path / "digits_mlp_c" / "data"
    x = np.fromfile(data / "in0.bin", "<f4")
    y = np.fromfile(data / "in1.bin", "<i8")
    assert x.size == 32 * 64 and x.min() >= 0 and x.max() <= 1
    assert y.min() >= 0 and y.max() <= 9 and len(set(y.tolist())) > 3
    assert (data / "tol1.bin").stat().st_size == 64 * 128 * 4
