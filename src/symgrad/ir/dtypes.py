"""The five dtypes and NumPy's promotion rules (NEP 50: Python scalars are weak)."""

from __future__ import annotations

from typing import Any

import numpy as np

DTYPES: dict[str, np.dtype[Any]] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "bool": np.dtype(np.bool_),
}
FLOATS = frozenset({"float32", "float64"})
INTS = frozenset({"int32", "int64"})


def as_dtype(dtype: Any) -> str:
    """Normalize a dtype-like (``"float32"``, ``np.float32``, ``np.dtype``) to its name."""
    try:
        name = np.dtype(dtype).name
    except TypeError as exc:
        raise TypeError(f"not a dtype: {dtype!r}") from exc
    if name not in DTYPES:
        raise TypeError(f"dtype {name} is not supported; use one of {sorted(DTYPES)}")
    return name


def is_float(dtype: str) -> bool:
    return dtype in FLOATS


def is_int(dtype: str) -> bool:
    return dtype in INTS


def promote(*operands: Any) -> str:
    """Result dtype of combining operands: dtype names, or Python scalars (weak)."""
    args = [DTYPES[o] if isinstance(o, str) else o for o in operands]
    name = np.result_type(*args).name
    if name not in DTYPES:
        name = {"float16": "float32", "int8": "int32", "int16": "int32", "uint8": "int32"}.get(
            name, "float64"
        )
    return name


def float_of(dtype: str) -> str:
    """The floating dtype an operation like ``sqrt`` produces from ``dtype``."""
    return dtype if dtype in FLOATS else "float64"
