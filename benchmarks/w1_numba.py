"""W1 written by hand as one fused Numba loop: the strongest CPU peer for this workload.

Per element, with a = |x|: e = exp(-a) and m = expm1(-a) (one polynomial), then

    softplus(x) = max(x, 0) + log1p(e)            (one polynomial)
    tanh(a)     = -m (2 + m) / (1 + e^2)           (no cancellation for small a)
    1 - tanh^2  = 4 e^2 / (1 + e^2)^2              (none for large a either)
    sigmoid(x)  = 1 / (1 + e)  or  e / (1 + e)

so the value and the gradient cost one expm1, one log1p and a few divisions, all in float32
in a ``prange`` loop that LLVM vectorizes (no libm calls in the loop). Accuracy measured on
4M points in [-90, 90]: the gradient is within 4e-7 of the float64 reference (the NumPy
version written by hand in w1_elementwise.py: 1.1e-6), the sum within 3e-8 relative.

``build()`` imports Numba, so this module can be imported only where Numba is installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

F = np.float32
LOG2E = F(1.0 / math.log(2.0))
# ln 2 split in two: LN2_HI has 16 significant bits, so k * LN2_HI is exact for |k| < 2^8.
LN2_HI = F(math.ldexp(round(math.ldexp(math.log(2.0), 16)), -16))
LN2_LO = F(math.log(2.0) - float(LN2_HI))
# expm1(r) = r + r^2/2! + ... + r^8/8! on |r| <= ln2/2 (truncation error < 3e-9 relative).
C2, C3, C4, C5, C6, C7, C8 = (F(1.0 / math.factorial(k)) for k in range(2, 9))
# log1p via 2 atanh(s), s = f / (2 + f): 2 (s + s^3/3 + ... + s^9/9), |s| <= 0.172.
A3, A5, A7, A9 = (F(1.0 / k) for k in (3, 5, 7, 9))
SQRT2M1 = F(math.sqrt(2.0) - 1.0)
LN2 = F(math.log(2.0))
ONE, TWO, FOUR, HALF, ZERO, LO_CLAMP = F(1.0), F(2.0), F(4.0), F(0.5), F(0.0), F(-87.0)
BLOCK = 4096


def build(threads: int) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """The compiled kernel (compiled on its first call), running on ``threads`` threads."""
    import numba
    from llvmlite import ir
    from numba import prange
    from numba.core import types
    from numba.extending import intrinsic

    @intrinsic
    def _bits_to_float(typingctx: Any, bits: Any) -> Any:
        """Reinterpret an int32's bits as a float32 (builds 2**k from the exponent field)."""
        sig = types.float32(types.int32)

        def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
            return builder.bitcast(args[0], ir.FloatType())

        return sig, codegen

    # error_model='numpy': a float division by zero gives inf/nan instead of a Python
    # exception, so the loop carries no zero tests and vectorizes.
    fast = {"reassoc", "contract", "arcp", "nsz"}  # no nnan/ninf: inputs may be anything

    @numba.njit(inline="always", fastmath=fast, error_model="numpy")
    def exp_expm1_neg(t: Any) -> Any:
        """(exp(t), expm1(t)) for t <= 0, both to full relative precision (t below -87
        is treated as -87: exp(t) is then about 1.6e-38 instead of a denormal or 0)."""
        t = max(t, LO_CLAMP)
        k = np.floor(t * LOG2E + HALF)
        r = (t - k * LN2_HI) - k * LN2_LO
        q = r * (ONE + r * (C2 + r * (C3 + r * (C4 + r * (C5 + r * (C6 + r * (C7 + r * C8)))))))
        s: Any = _bits_to_float((np.int32(k) + np.int32(127)) << np.int32(23))  # type: ignore[call-arg]  # numba supplies typingctx
        sq = s * q
        return sq + s, sq + (s - ONE)

    @numba.njit(inline="always", fastmath=fast, error_model="numpy")
    def log1p_unit(e: Any) -> Any:
        """log1p(e) for 0 <= e <= 1: 1 + e = 2^j (1 + f) with 1 + f in [sqrt(1/2), sqrt(2)]."""
        big = e > SQRT2M1
        f = (e - ONE) * HALF if big else e
        s = f / (TWO + f)
        z = s * s
        p = TWO * s * (ONE + z * (A3 + z * (A5 + z * (A7 + z * A9))))
        return p + LN2 if big else p

    @numba.njit(inline="always", fastmath=fast, error_model="numpy")
    def element(v: Any) -> Any:
        """(term of the sum, gradient) for one element."""
        e, m = exp_expm1_neg(-abs(v))
        sp = max(v, ZERO) + log1p_unit(e)
        d = ONE / (ONE + e * e)
        th = -m * (TWO + m) * d
        th = th if v >= ZERO else -th
        sech2 = FOUR * e * e * d * d  # 1 - tanh^2 without the cancellation near |x| large
        inv = ONE / (ONE + e)
        sg = inv if v >= ZERO else e * inv
        return sp * th + sg * sg, sg * th + sp * sech2 + TWO * sg * sg * (ONE - sg)

    @numba.njit(parallel=True, fastmath=fast, error_model="numpy")
    def kernel(x: np.ndarray, grad: np.ndarray) -> float:
        # Blocks of BLOCK elements: the inner loop sums in float32 (so it vectorizes at the
        # full float32 width), the blocks' sums are added in float64.
        n = x.shape[0]
        total = 0.0
        for b in prange((n + BLOCK - 1) // BLOCK):
            part = ZERO
            for i in range(b * BLOCK, min(n, (b + 1) * BLOCK)):
                term, g = element(x[i])
                grad[i] = g
                part += term
            total += np.float64(part)
        return total

    def w1(x: np.ndarray) -> tuple[float, np.ndarray]:
        numba.set_num_threads(threads)
        grad = np.empty_like(x)
        return kernel(x, grad), grad

    return w1
