"""Derive the polynomial coefficients used by ``symgrad.backends.llvm.vecmath``.

Each approximation is a weighted minimax fit found by the linear Remez exchange algorithm in
mpmath (40 significant digits), followed by coefficient-by-coefficient rounding to the target
format: the lowest-order free coefficient is rounded, the rest are re-fitted with it fixed,
and so on, which recovers most of the accuracy lost by naive rounding.

Run ``python tools/vecmath_coeffs.py`` (about 20 minutes on one core, most of it for the
22-term float64 erfc fit); it prints the Cody-Waite constants and, for every fit, the
weighted error of the exact minimax fit and of the rounded coefficients, and the rounded
coefficients as hexadecimal floats, as they appear in ``vecmath.py``. Pass fit names (or
``constants``) to run only those.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import mpmath as mp
import numpy as np

mp.mp.dps = 40

Fn = Callable[[mp.mpf], mp.mpf]


@dataclass(frozen=True)
class Fit:
    """Approximate ``g`` on ``[a, b]`` by ``sum(c[j] * (t - center)**j)``, minimizing
    ``max |w(t) * (approx(t) - g(t))|``; the weight turns errors of this piece into the
    relative error of the final function."""

    name: str
    g: Fn
    w: Fn
    a: float
    b: float
    nterms: int
    dtype: str  # "float32" | "float64": format the coefficients are rounded to
    center: float = 0.0


def _round(x: mp.mpf, dtype: str) -> mp.mpf:
    v = float(x)
    if dtype == "float32":
        # round half-even from the exact value, not through double
        f = np.float32(v)
        cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
        return min((mp.mpf(float(c)) for c in cands), key=lambda c: abs(c - x))
    return mp.mpf(v)


def _cheb_grid(a: float, b: float, n: int) -> list[mp.mpf]:
    return [
        mp.mpf(a) + (mp.mpf(b) - mp.mpf(a)) * (1 - mp.cos(mp.pi * i / (n - 1))) / 2 for i in range(n)
    ]


def _alternating_extrema(ts: Sequence[mp.mpf], es: Sequence[mp.mpf], count: int) -> list[int]:
    """Indices of ``count`` alternating-sign extrema of the error on the grid."""
    idx = []
    n = len(es)
    for i in range(n):
        left = es[i - 1] if i > 0 else None
        right = es[i + 1] if i < n - 1 else None
        e = es[i]
        if e == 0:
            continue
        is_max = (left is None or abs(e) >= abs(left) or mp.sign(left) != mp.sign(e)) and (
            right is None or abs(e) >= abs(right) or mp.sign(right) != mp.sign(e)
        )
        if is_max:
            idx.append(i)
    merged: list[int] = []
    for i in idx:  # one extremum per run of equal sign: keep the largest
        if merged and mp.sign(es[merged[-1]]) == mp.sign(es[i]):
            if abs(es[i]) > abs(es[merged[-1]]):
                merged[-1] = i
        else:
            merged.append(i)
    while len(merged) > count:  # drop the smaller end
        if abs(es[merged[0]]) < abs(es[merged[-1]]):
            merged.pop(0)
        else:
            merged.pop()
    return merged


def remez(
    fit: Fit, fixed: dict[int, mp.mpf] | None = None, grid: int = 1500, iters: int = 40
) -> tuple[list[mp.mpf], mp.mpf]:
    """Minimax coefficients (free ones re-fitted around ``fixed``) and the max weighted error."""
    fixed = dict(fixed or {})
    free = [j for j in range(fit.nterms) if j not in fixed]
    c0 = mp.mpf(fit.center)
    ts = [t for t in _cheb_grid(fit.a, fit.b, grid) if fit.w(t) != 0]
    gs = [fit.g(t) for t in ts]
    ws = [fit.w(t) for t in ts]
    grid = len(ts)
    base = [sum((c * (t - c0) ** j for j, c in fixed.items()), mp.mpf(0)) for t in ts]

    def coeffs_all(free_c: Sequence[mp.mpf]) -> list[mp.mpf]:
        out = [mp.mpf(0)] * fit.nterms
        for j, c in fixed.items():
            out[j] = c
        for j, c in zip(free, free_c, strict=True):
            out[j] = c
        return out

    def errors(free_c: Sequence[mp.mpf]) -> list[mp.mpf]:
        res = []
        for t, g, w, bs in zip(ts, gs, ws, base, strict=True):
            u = t - c0
            p = mp.mpf(0)
            for j, c in zip(reversed(free), reversed(list(free_c)), strict=True):
                p += c * u**j
            res.append(w * (p + bs - g))
        return res

    m = len(free)
    if m == 0:
        es = errors([])
        return coeffs_all([]), max(abs(e) for e in es)
    ref = [int(round(i * (grid - 1) / m)) for i in range(m + 1)]
    best: tuple[list[mp.mpf], mp.mpf] | None = None
    for _ in range(iters):
        rows = []
        rhs = []
        for k, i in enumerate(ref):
            t = ts[i]
            u = t - c0
            rows.append([u**j for j in free] + [(-1) ** k / ws[i]])
            rhs.append(gs[i] - base[i])
        sol = mp.lu_solve(mp.matrix(rows), mp.matrix(rhs))
        free_c = [sol[j] for j in range(m)]
        lev = abs(sol[m])
        es = errors(free_c)
        emax = max(abs(e) for e in es)
        if best is None or emax < best[1]:
            best = (coeffs_all(free_c), emax)
        if emax <= lev * (1 + mp.mpf("1e-4")):
            break
        new = _alternating_extrema(ts, es, m + 1)
        if len(new) < m + 1:
            break
        ref = new
    assert best is not None
    return best


def fit_rounded(fit: Fit, order: Sequence[int] | None = None) -> tuple[list[mp.mpf], mp.mpf, mp.mpf]:
    """Minimax fit, then round coefficient by coefficient (re-fitting the rest each time).

    Returns (rounded coefficients, max weighted error of the exact fit, of the rounded one)."""
    exact, err0 = remez(fit)
    naive = {j: _round(c, fit.dtype) for j, c in enumerate(exact)}
    _, err_naive = remez(fit, naive)
    fixed: dict[int, mp.mpf] = {}
    coeffs = exact
    for j in order if order is not None else range(fit.nterms):
        fixed[j] = _round(coeffs[j], fit.dtype)
        coeffs, _ = remez(fit, fixed)
    _, err1 = remez(fit, fixed)
    if err_naive < err1:  # re-fitting can lose where the exchange converges poorly
        fixed, err1 = naive, err_naive
    return [fixed[j] for j in range(fit.nterms)], err0, err1


# ---- the functions being fitted (t is the fit variable) ------------------------------------


def _exp_q(r: mp.mpf) -> mp.mpf:  # (e^r - 1 - r) / r^2
    if abs(r) < mp.mpf("1e-20"):
        return mp.mpf(1) / 2 + r / 6
    return (mp.expm1(r) - r) / r**2


def _exp_w(r: mp.mpf) -> mp.mpf:
    # Q's error -> relative error of expm1 (and of exp); the floor keeps the weight from
    # vanishing at r = 0, inside the interval, where the exchange would stop converging
    if r == 0:
        return mp.mpf(2) ** -7
    return r**2 / abs(mp.expm1(r)) + mp.mpf(2) ** -7


def _log_g(z: mp.mpf) -> mp.mpf:  # (2 atanh(s)/s - 2) / z with s = sqrt(z)
    if z < mp.mpf("1e-30"):
        return mp.mpf(2) / 3 + 2 * z / 5
    s = mp.sqrt(z)
    return (2 * mp.atanh(s) / s - 2) / z


def _log_w(z: mp.mpf) -> mp.mpf:  # log(1+f) = 2s + s*z*G(z): G's error relative to 2 atanh(s)
    s = mp.sqrt(z)
    if s == 0:
        return mp.mpf(0)
    return s * z / (2 * mp.atanh(s))


def _log_h(z: mp.mpf) -> mp.mpf:  # (2 atanh(s)/s - 2 - 2z/3) / z^2: tail after the s^3 term
    if z < mp.mpf("1e-30"):
        return mp.mpf(2) / 5 + 2 * z / 7
    s = mp.sqrt(z)
    return (2 * mp.atanh(s) / s - 2 - 2 * z / 3) / z**2


def _log_hw(z: mp.mpf) -> mp.mpf:
    s = mp.sqrt(z)
    if s == 0:
        return mp.mpf(0)
    return s * z**2 / (2 * mp.atanh(s))


def _log1p_p(f: mp.mpf) -> mp.mpf:  # (log1p(f) - f + f^2/2) / f^3
    if abs(f) < mp.mpf("1e-20"):
        return mp.mpf(1) / 3 - f / 4
    return (mp.log1p(f) - f + f**2 / 2) / f**3


def _log1p_w(f: mp.mpf) -> mp.mpf:
    if f == 0:
        return mp.mpf(0)
    return abs(f**3 / mp.log1p(f))


def _sin_s(z: mp.mpf) -> mp.mpf:  # (sin r - r) / r^3, z = r^2
    if z < mp.mpf("1e-30"):
        return -mp.mpf(1) / 6 + z / 120
    r = mp.sqrt(z)
    return (mp.sin(r) - r) / (r * z)


def _sin_w(z: mp.mpf) -> mp.mpf:
    r = mp.sqrt(z)
    if r == 0:
        return mp.mpf(0)
    return r * z / mp.sin(r)


def _cos_c(z: mp.mpf) -> mp.mpf:  # (cos r - 1 + r^2/2) / r^4
    if z < mp.mpf("1e-30"):
        return mp.mpf(1) / 24 - z / 720
    r = mp.sqrt(z)
    return (mp.cos(r) - 1 + z / 2) / z**2


def _cos_w(z: mp.mpf) -> mp.mpf:
    return z**2 / mp.cos(mp.sqrt(z))


def _tanh_t(z: mp.mpf) -> mp.mpf:  # (tanh x - x) / x^3, z = x^2
    if z < mp.mpf("1e-30"):
        return -mp.mpf(1) / 3 + 2 * z / 15
    x = mp.sqrt(z)
    return (mp.tanh(x) - x) / (x * z)


def _tanh_w(z: mp.mpf) -> mp.mpf:
    x = mp.sqrt(z)
    if x == 0:
        return mp.mpf(0)
    return x * z / mp.tanh(x)


def _erf_e(z: mp.mpf) -> mp.mpf:  # erf(x)/x - 1, z = x^2 (erf = x + x * E: 1 is exact)
    if z < mp.mpf("1e-30"):
        return 2 / mp.sqrt(mp.pi) * (1 - z / 3) - 1
    x = mp.sqrt(z)
    return mp.erf(x) / x - 1


def _erf_ew(z: mp.mpf) -> mp.mpf:
    return 1 / (_erf_e(z) + 1)


def _erfcx(t: mp.mpf) -> mp.mpf:  # erfc(t) e^(t^2)
    return mp.erfc(t) * mp.exp(t * t)


def _erfcx_w(t: mp.mpf) -> mp.mpf:  # error of erfcx -> relative error of erf = 1 - e^(-t^2) erfcx
    return mp.exp(-t * t) / mp.erf(t)


_one: Fn = lambda t: mp.mpf(1)  # noqa: E731

LN2_HALF = 0.34657359027997264 * (1 + 2**-12)  # |r| bound after the exp reduction, with slack
S_MAX = 0.1715728752538099 * (1 + 2**-12)  # |f/(2+f)| for f = m - 1, m in [sqrt(1/2), sqrt(2))
PI_4 = 0.7853981633974483 * (1 + 2**-20)

# float32 log: log1p(f) for f = m - 1, m in [sqrt(1/2), sqrt(2)) (with slack)
LOG_F_MIN = 0.7071067811865476 * (1 - 2**-20) - 1
LOG_F_MAX = 1.4142135623730951 - 1
# tanh: polynomial below this |x|, 1 - 2/(1 + e^(2|x|)) above
TANH_SPLIT = 0.625
# erf: x * E(x^2) below this |x|, 1 - e^(-x^2) erfcx(|x|) above, up to the saturation point
ERF_SPLIT = 0.875
ERF_END = {"float32": 4.0, "float64": 6.0}

FITS = [
    Fit("exp_q_f32", _exp_q, _exp_w, -LN2_HALF, LN2_HALF, 5, "float32"),
    Fit("exp_q_f64", _exp_q, _exp_w, -LN2_HALF, LN2_HALF, 10, "float64"),
    Fit("log1p_p_f32", _log1p_p, _log1p_w, LOG_F_MIN, LOG_F_MAX, 8, "float32"),
    # softplus's log1p(t), t in [0, 1]: 1 + t = 2^e (1 + f) with f in [-1/4, 1/2]
    Fit("log1p_unit_p_f32", _log1p_p, _log1p_w, -0.25 * (1 + 2**-20), 0.5 * (1 + 2**-20), 8, "float32"),
    Fit("log_g_f64", _log_g, _log_w, 0.0, S_MAX**2, 7, "float64"),
    Fit("log_h_f64", _log_h, _log_hw, 0.0, S_MAX**2, 7, "float64"),
    Fit("sin_s_f32", _sin_s, _sin_w, 0.0, PI_4**2, 3, "float32"),
    Fit("sin_s_f64", _sin_s, _sin_w, 0.0, PI_4**2, 6, "float64"),
    Fit("cos_c_f32", _cos_c, _cos_w, 0.0, PI_4**2, 3, "float32"),
    Fit("cos_c_f64", _cos_c, _cos_w, 0.0, PI_4**2, 6, "float64"),
    Fit("tanh_t_f32", _tanh_t, _tanh_w, 0.0, TANH_SPLIT**2, 5, "float32"),
    Fit("tanh_t_f64", _tanh_t, _tanh_w, 0.0, TANH_SPLIT**2, 11, "float64"),
    Fit("erf_e_f32", _erf_e, _erf_ew, 0.0, ERF_SPLIT**2, 6, "float32"),
    Fit("erf_e_f64", _erf_e, _erf_ew, 0.0, ERF_SPLIT**2, 11, "float64"),
    Fit("erfcx_f32", _erfcx, _erfcx_w, ERF_SPLIT, ERF_END["float32"], 9, "float32",
        center=(ERF_SPLIT + ERF_END["float32"]) / 2),
    Fit("erfcx_f64", _erfcx, _erfcx_w, ERF_SPLIT, ERF_END["float64"], 22, "float64",
        center=(ERF_SPLIT + ERF_END["float64"]) / 2),
]


def _split(v: mp.mpf, bits: int) -> mp.mpf:
    """``v`` rounded to ``bits`` significant bits (so that small integer multiples are exact)."""
    e = int(mp.floor(mp.log(abs(v), 2)))
    q = mp.mpf(2) ** (e - bits + 1)
    return mp.nint(v / q) * q


def constants() -> None:
    """Cody-Waite splits: the high parts have trailing zero bits so that ``k * hi`` is exact
    for every ``k`` the reductions produce."""
    ln2 = mp.log(2)
    pio2 = mp.pi / 2
    out: dict[str, list[mp.mpf]] = {}
    hi = _split(ln2, 16)  # float32: |k| < 2^8
    out["LN2_F32"] = [hi, _round(ln2 - hi, "float32")]
    hi = _split(ln2, 42)  # float64: |k| < 2^11
    out["LN2_F64"] = [hi, _round(ln2 - hi, "float64")]
    parts = []  # float64 (and float32 widened): |q| < 2^26, three 27-bit parts and the rest
    rest = pio2
    for _ in range(3):
        parts.append(_split(rest, 27))
        rest -= parts[-1]
    parts.append(_round(rest, "float64"))
    out["PIO2_F64"] = parts
    two3 = mp.mpf(2) / 3
    out["TWO_THIRDS_DD"] = [_round(two3, "float64"), _round(two3 - _round(two3, "float64"), "float64")]
    for name, vals in out.items():
        print(f"{name} = (" + ", ".join(f'"{float(c).hex()}"' for c in vals) + ")")


def main(argv: Sequence[str]) -> None:
    names = set(argv)
    if not names or "constants" in names:
        constants()
    for fit in FITS:
        if names and fit.name not in names:
            continue
        coeffs, err0, err1 = fit_rounded(fit)
        bits0 = -mp.log(err0, 2) if err0 > 0 else mp.inf
        bits1 = -mp.log(err1, 2) if err1 > 0 else mp.inf
        print(f"# {fit.name}: [{fit.a:.6g}, {fit.b:.6g}] center {fit.center:.6g}, {fit.nterms} terms, "
              f"minimax error 2^-{float(bits0):.1f}, rounded 2^-{float(bits1):.1f}")
        print(f"{fit.name.upper()} = (" + ", ".join(f'"{float(c).hex()}"' for c in coeffs) + ")")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1:])
