"""Counter-based random numbers: ``random_uniform(seed, counter; shape, dtype)``.

The op is a pure function of its inputs: element ``i`` (row-major position in ``shape``)
of the result is a hash of ``(seed, counter, i)``. There is no hidden generator state, so
the same seed and counter give the same numbers on every backend and every run, two
identical requests are one node (hash-consing is correct for it), and a training step
draws fresh numbers by passing a counter that it increments as optimizer-like state.

The hash is 64-bit integer arithmetic that any backend can emit (all products and sums
wrap modulo 2**64)::

    mix(z)  = z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
              z *= 0x94D049BB133111EB; z ^= z >> 31                (splitmix64 finalizer)
    key     = mix(mix(seed) ^ (counter * 0x9E3779B97F4A7C15))
    bits_i  = mix(key + (i + 1) * 0x9E3779B97F4A7C15)
    float32: (bits_i >> 40) * 2**-24        float64: (bits_i >> 11) * 2**-53

so every value lies in ``[0, 1)`` and is an exact multiple of the dtype's resolution.
``seed`` and ``counter`` are int64 scalars, reinterpreted as unsigned 64-bit words.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

import symgrad.ops.api as F
from symgrad.errors import DTypeError, ShapeError, op_error
from symgrad.ir.dtypes import FLOATS, as_dtype
from symgrad.ir.shape import Dim, Shape, shape_str
from symgrad.ir.tensor import Tensor
from symgrad.ops.base import Info, Op, register

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB


def _mix(z: np.ndarray) -> np.ndarray:
    z = z ^ (z >> np.uint64(30))
    z = z * np.uint64(MIX1)
    z = z ^ (z >> np.uint64(27))
    z = z * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


def _word(x: Any) -> np.ndarray:
    return np.asarray(x, dtype=np.int64).reshape(1).view(np.uint64)


def uniform_bits(seed: Any, counter: Any, n: int) -> np.ndarray:
    """The ``n`` 64-bit words the hash gives for ``(seed, counter)`` (for tests and docs)."""
    with np.errstate(over="ignore"):
        key = _mix(_mix(_word(seed)) ^ (_word(counter) * np.uint64(GOLDEN)))
        i = np.arange(1, n + 1, dtype=np.uint64)
        return _mix(key + i * np.uint64(GOLDEN))


def _np_random_uniform(seed: np.ndarray, counter: np.ndarray, *, shape: tuple[int, ...],
                       dtype: str) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    bits = uniform_bits(seed, counter, n)
    if dtype == "float32":
        out = (bits >> np.uint64(40)).astype(np.float32) * np.float32(2.0**-24)
    else:
        out = (bits >> np.uint64(11)).astype(np.float64) * (2.0**-53)
    return out.reshape(shape)


def _random_infer(inputs: tuple[Tensor, ...], attrs: dict[str, Any]) -> Info:
    seed, counter = inputs
    for what, t in (("seed", seed), ("counter", counter)):
        if t.dtype != "int64":
            raise op_error(DTypeError, "random_uniform", f"{what} must be an int64 scalar, "
                           f"got {t.dtype}", shape_str(t.shape))
        if t.shape != ():
            raise op_error(ShapeError, "random_uniform", f"{what} must be a scalar",
                           shape_str(t.shape))
    if attrs["dtype"] not in FLOATS:
        raise op_error(DTypeError, "random_uniform", f"dtype must be a float, got {attrs['dtype']}")
    return Info(attrs["shape"], attrs["dtype"])


register(Op("random_uniform", "random", _random_infer, _np_random_uniform,
            nondiff="random numbers do not depend differentiably on the seed or the counter",
            doc="random_uniform(seed, counter; shape, dtype): values in [0, 1) from a "
            "counter-based hash of (seed, counter, element index); see the module docstring "
            "for the exact integer arithmetic. Not differentiable (integer inputs)."))


def _int_scalar(x: Any, what: str) -> Tensor:
    t = F.as_tensor(x)
    if t.dtype not in ("int32", "int64") or t.shape != ():
        raise op_error(DTypeError, "random_uniform", f"{what} must be an integer scalar, got "
                       f"{t.dtype}{shape_str(t.shape)}")
    return F.cast(t, "int64")


def _shape(shape: Any) -> Shape:
    if isinstance(shape, (int, np.integer, Dim)):
        shape = (shape,)
    out: list[int | Dim] = []
    for s in shape:
        if isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0:
            out.append(int(s))
        elif isinstance(s, Dim):
            out.append(s)
        else:
            raise op_error(ShapeError, "random_uniform", f"bad size {s!r} in shape {shape!r}")
    return tuple(out)


def random_uniform(shape: Any, seed: Any, counter: Any = 0, dtype: Any = "float32") -> Tensor:
    """Uniform numbers in [0, 1) that depend only on ``(seed, counter)``.

    Parameters
    ----------
    shape : sizes (ints or symbolic sizes such as ``x.shape[0]``).
    seed : an integer or an integer scalar tensor; different seeds are independent streams.
    counter : an integer or an integer scalar tensor (typically a step counter kept as
        training state, so each step draws new numbers).
    dtype : ``float32`` (24 random bits) or ``float64`` (53 bits).
    """
    return OP(_int_scalar(seed, "seed"), _int_scalar(counter, "counter"),
              shape=_shape(shape), dtype=as_dtype(dtype))


def random_normal(shape: Any, seed: Any, counter: Any = 0, dtype: Any = "float32") -> Tensor:
    """Standard normal numbers from two uniform draws (Box-Muller), reproducible like
    :func:`random_uniform`."""
    sh = _shape(shape)
    u = random_uniform((2, *sh), seed, counter, dtype)
    u1, u2 = u[0], u[1]
    radius = F.sqrt(F.mul(F.log(F.sub(1.0, u1)), -2.0))  # 1 - u1 lies in (0, 1]
    return F.mul(radius, F.cos(F.mul(u2, 2 * math.pi)))


OP = F.OPS["random_uniform"]

__all__ = ["random_normal", "random_uniform", "uniform_bits"]
