"""The linear-regression example converges, with a gradient of the right sign and shape."""

import os
import subprocess
import sys

import numpy as np

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")
sys.path.insert(0, EXAMPLES)

from linear_regression import X_DATA, Y_DATA, build, fit  # noqa: E402


def test_converges_to_w1_b0():
    r = fit(lr=0.01, tol=1e-10, max_iter=50_000)
    assert r.loss < 1e-10
    assert abs(r.w - 1) < 1e-4 and abs(r.b) < 1e-4
    assert r.losses[-1] < r.losses[0]
    assert all(b <= a * (1 + 1e-12) for a, b in zip(r.losses, r.losses[1:]))  # monotone


def test_derived_gradient_has_descent_sign_and_parameter_shapes():
    """The circulating hand-derived version flips the sign and broadcasts (5,1) against
    (5,); the derived gradient equals the analytic one: 2/n X^T (Xw + b - y)."""
    step, _, _ = build()
    w, b = np.array([0.3]), np.array(0.2)
    loss, gw, gb = step(X_DATA, Y_DATA, w, b)
    resid = X_DATA @ w + b - Y_DATA
    assert gw.shape == (1,) and gb.shape == ()
    np.testing.assert_allclose(gw, 2 / 5 * X_DATA.T @ resid)
    np.testing.assert_allclose(gb, 2 / 5 * resid.sum())
    np.testing.assert_allclose(loss, np.mean(resid**2))
    # a step against the gradient lowers the loss
    loss2, _, _ = step(X_DATA, Y_DATA, w - 0.01 * gw, b - 0.01 * gb)
    assert loss2 < loss


def test_formulas_are_printed():
    _, fw, fb = build()
    assert "x.T @" in fw and "dloss/dw" in fw
    assert "sum(" in fb and "dloss/db" in fb


def test_script_runs():
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "linear_regression.py")],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    assert "learned w = 1.0000" in out or "learned w = 0.9999" in out
    assert "derived gradients:" in out
