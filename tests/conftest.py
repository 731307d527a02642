"""Shared fixtures: a seeded random generator and NumPy-comparison helpers."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

SEED = 20240611

# Tolerances for comparing a compiled result with plain NumPy, by result dtype.
RTOL = {"float32": 2e-5, "float64": 1e-12}
ATOL = {"float32": 2e-6, "float64": 1e-13}


@pytest.fixture
def rng() -> np.random.Generator:
    """A generator with a fixed seed: every test sees the same data on every run."""
    return np.random.default_rng(SEED)


def assert_like_numpy(got: Any, want: Any, what: str = "") -> None:
    """``got`` has ``want``'s type, dtype and shape, and its values (NaNs in the same places)."""
    want = np.asarray(want)
    assert isinstance(got, np.ndarray), f"{what}: expected an ndarray, got {type(got).__name__}"
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, NumPy gives {want.dtype}"
    assert got.shape == want.shape, f"{what}: shape {got.shape}, NumPy gives {want.shape}"
    if want.dtype.kind == "f":
        np.testing.assert_allclose(
            got, want, rtol=RTOL[want.dtype.name], atol=ATOL[want.dtype.name], equal_nan=True,
            err_msg=what,
        )
    else:
        np.testing.assert_array_equal(got, want, err_msg=what)


@pytest.fixture
def like_numpy() -> Any:
    """The comparison helper, for test files that take it as a fixture."""
    return assert_like_numpy
