"""Standalone kernels: write a computation as files that build and run without Python.

``sg.emit(outputs, inputs, target=..., out_dir=..., name=...)`` runs the same pipeline as
``sg.compile`` and writes a self-testing bundle into ``out_dir``:

========  =====================================================================================
target    files
========  =====================================================================================
``c``     ``NAME.c`` ``NAME.h`` (portable C99, no dependencies; ``-DNAME_USE_CBLAS`` to use
          ``cblas_sgemm``/``cblas_dgemm`` for float matrix products), ``NAME_test.c``
``cuda``  ``NAME.cu`` ``NAME.h`` (kernels + host launchers taking device pointers and a
          ``cudaStream_t``), ``NAME_test.cu``, ``shim.h`` (builds the same ``.cu`` with g++)
``llvm``  ``NAME.ll`` (LLVM IR), ``NAME_kernels.o`` (object for this CPU), ``NAME_abi.c``
          (the ABI around it), ``NAME.h``, ``libNAME.so`` (when a C compiler is found),
          ``NAME_test.c``
``numpy`` ``NAME.py`` (needs only NumPy), ``test_NAME.py``
========  =====================================================================================

Every bundle also has ``data/`` (golden inputs, dims and outputs computed by the NumPy
backend, and per-element error bounds of the float outputs, raw little-endian C-order
arrays), a ``Makefile`` whose ``test`` target builds with the system compiler and compares
with the golden outputs (``|got - want| <= atol + rtol |want| + bound``; float32: rtol
1e-4, atol 1e-5; float64: rtol 1e-9, atol 1e-12; integers and bools exactly; override with
``SG_RTOL``/``SG_ATOL``, scale the bounds with ``SG_BOUND_SCALE``), a ``CMakeLists.txt``
and a ``README.txt``; ``docs/abi.md`` section 9 says how the golden inputs and the bounds
are chosen. The native targets share one C ABI, documented in ``docs/abi.md`` and in
each ``NAME.h``. Emitting the same graph twice gives byte-identical files.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import textwrap
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from symgrad.errors import UnsupportedError
from symgrad.ir import shape as S
from symgrad.ir.dtypes import DTYPES
from symgrad.ir.tensor import Tensor

TARGETS = ("c", "cuda", "llvm", "numpy")
TOLERANCE = {"float32": (1e-4, 1e-5), "float64": (1e-9, 1e-12)}
DEFAULT_SIZE = 7


@dataclass
class Bundle:
    """What :func:`emit` wrote."""

    target: str
    name: str
    out_dir: Path
    files: list[str] = field(default_factory=list)
    input_names: list[str] = field(default_factory=list)
    output_names: list[str] = field(default_factory=list)
    sizes: dict[str, int] = field(default_factory=dict)
    bounds: str = ""  # how the per-element error bounds in data/tolK.bin were found

    def path(self, file: str) -> Path:
        return self.out_dir / file


def emit(
    outputs: Tensor | Sequence[Tensor] | Mapping[str, Tensor],
    inputs: Sequence[Tensor | str] | None = None,
    target: str = "c",
    out_dir: str | Path = ".",
    name: str = "model",
    *,
    pipeline: str | None = None,
    example: Mapping[str, Any] | None = None,
    sizes: Mapping[str, int] | None = None,
    seed: int = 0,
    block: int | None = None,
) -> Bundle:
    """Write a standalone, self-testing bundle computing ``outputs`` from ``inputs``.

    Parameters
    ----------
    outputs : a tensor, a list of tensors, or a dict ``{name: tensor}`` (the names go into
        the header; a list gives ``out0``, ``out1``...).
    inputs : placeholders (or their names) in positional order, as for ``sg.compile``.
    target : ``"c"``, ``"cuda"``, ``"llvm"`` or ``"numpy"``.
    out_dir : the directory to write (created if needed).
    name : the prefix of every exported symbol and file; made a valid C identifier
        (``Bundle.name`` is the one used).
    pipeline : pass pipeline text (default: ``sg.compile``'s).
    example : golden input values by input name; the others are seeded random values drawn
        to keep the check well posed (matrix-product weights scaled by the fan-in, values
        inside the domain of the ops that read them, labels and indices in range; see
        ``docs/abi.md`` section 9).
    sizes : values of symbolic sizes for the random golden inputs (default 7 each).
    seed : seed of the random golden inputs.
    block : CUDA threads per block.

    Returns
    -------
    Bundle : the target, the name used, the directory and the files written.

    Raises
    ------
    UnsupportedError : the target cannot express some op (every one is listed).
    """
    from symgrad.backends.cstyle.names import public_name
    from symgrad.compile import compile as sg_compile

    if target not in TARGETS:
        raise ValueError(f"unknown emit target {target!r}; targets are: {', '.join(TARGETS)}")
    if isinstance(outputs, Mapping):
        out_names = [str(k) for k in outputs]
        outs = list(outputs.values())
    elif isinstance(outputs, Tensor):
        out_names, outs = ["out0"], [outputs]
    else:
        outs = list(outputs)
        out_names = [f"out{k}" for k in range(len(outs))]
    fn = sg_compile(outs, inputs, backend="numpy", pipeline=pipeline)
    ins: list[Tensor] = list(fn._inputs)
    in_names = list(fn.inputs)
    nm = public_name(name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bundle = Bundle(target, nm, out, input_names=in_names, output_names=out_names)

    golden_in, env = _golden_inputs(fn, outs, ins, example, sizes, seed)
    golden_out = [np.asarray(o) for o in fn(*golden_in)]
    bounds, bound_text = _error_bounds(fn, outs, ins, golden_in, golden_out, pipeline, seed)
    bundle.sizes = dict(env)
    bundle.bounds = bound_text

    if target == "numpy":
        _emit_numpy(bundle, fn, ins, golden_in, golden_out, bounds)
        return bundle

    from symgrad.backends.base import Program
    from symgrad.backends.cstyle import SUPPORTED_OPS, render_program
    from symgrad.backends.lower import lower
    from symgrad.compile import _size_sources

    program = Program(ins, list(fn.graph), _size_sources(ins, list(fn.graph)))
    lowered = lower(program, backend=f"emit {target}", elementwise=SUPPORTED_OPS)
    from symgrad.backends.cstyle.render import empty_reductions

    checks = [(rel, a, b, f"{what} (built at {loc})") for rel, a, b, what, loc in fn._checks]
    reductions = empty_reductions(program.nodes)
    dims = [env[s] for s in lowered.symbols]
    if target == "llvm":
        symbols = _emit_llvm(bundle, program, checks, in_names, out_names, reductions)
        dims = [env[s] for s in symbols]
    else:
        dialect = "cuda" if target == "cuda" else "c"
        src = render_program(lowered, dialect, nm, input_names=in_names, output_names=out_names,
                             checks=checks, block=block, target=target, reductions=reductions)
        ext = "cu" if target == "cuda" else "c"
        _write(bundle, f"{nm}.{ext}", src.source)
        _write(bundle, f"{nm}.h", src.header)
        _write(bundle, f"{nm}_test.{ext}", test_program(nm, cuda=target == "cuda"))
        if target == "cuda":
            shim = Path(__file__).parent / "backends" / "cuda" / "shim.h"
            if not shim.exists():
                raise UnsupportedError("the CUDA host shim header (backends/cuda/shim.h) is missing")
            _write(bundle, "shim.h", shim.read_text())
            _write(bundle, "Makefile", _makefile_cuda(nm))
            _write(bundle, "CMakeLists.txt", _cmake_cuda(nm))
        else:
            _write(bundle, "Makefile", _makefile_c(nm))
            _write(bundle, "CMakeLists.txt", _cmake_c(nm))
    _write_data(bundle, golden_in, golden_out, dims, bounds)
    _write(bundle, "README.txt", _readme(bundle, ins, outs))
    return bundle


def lower_outputs(outputs: Tensor | Sequence[Tensor], inputs: Sequence[Tensor | str] | None = None,
                  pipeline: str | None = None, elementwise: frozenset[str] | None = None) -> tuple[Any, Any]:
    """The lowered program of ``outputs`` (after ``sg.compile``'s pipeline) and the NumPy
    function of the same optimized graph: ``(LoweredProgram, Function)``."""
    from symgrad.backends.base import Program
    from symgrad.backends.lower import lower
    from symgrad.compile import _size_sources
    from symgrad.compile import compile as sg_compile

    outs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    fn = sg_compile(outs, inputs, backend="numpy", pipeline=pipeline)
    ins = list(fn._inputs)
    program = Program(ins, list(fn.graph), _size_sources(ins, list(fn.graph)))
    if elementwise is None:
        from symgrad.backends.cstyle import SUPPORTED_OPS as elementwise
    return lower(program, backend="emit", elementwise=elementwise), fn


# -- golden data ------------------------------------------------------------------------------
# Default golden inputs are drawn so that the check is well posed: a float input is drawn
# from the first of these distributions on which every elementwise op that reads it is
# finite and of moderate size (its NumPy reference probed on PROBE draws).
_FLOAT_DRAWS: tuple[tuple[str, Any], ...] = (
    ("standard normal", lambda rng, shape: rng.standard_normal(shape)),
    ("|standard normal| + 0.5", lambda rng, shape: np.abs(rng.standard_normal(shape)) + 0.5),
    ("uniform(-0.9, 0.9)", lambda rng, shape: rng.uniform(-0.9, 0.9, shape)),
    ("uniform(0.1, 0.9)", lambda rng, shape: rng.uniform(0.1, 0.9, shape)),
)
_INT_DRAWS = ((0, 3), (1, 4))  # [lo, hi): small labels, then nonzero (divisors)
PROBE = 1000
PROBE_LIMIT = 100.0  # an op whose probe gives |y| above this is ill-conditioned there
# Error bounds of float outputs (data/tolK.bin): BOUND_SAFETY times the largest
# float32-vs-float64 discrepancy of the NumPy backend over BOUND_SAMPLES evaluations (the
# golden inputs, then inputs moved by a relative BOUND_JITTER so that roundings differ),
# floored at the median of the output's nonzero discrepancies (a few samples can all land
# near zero by chance; the median is not pulled up by a few ill-conditioned elements).
# On the digits MLP gradient (N(0, 1) and fan-in scaled weights) the LLVM backend's error,
# against the golden, reached 3.4 times the estimate.
BOUND_SAMPLES = 4
BOUND_JITTER = 2.0**-20
BOUND_SAFETY = 8.0


@dataclass
class _Draw:
    """How one input without an example is drawn."""

    fan_in: int = 1  # floats are scaled by 1/sqrt(fan_in)
    float_ok: list[int] = field(default_factory=lambda: list(range(len(_FLOAT_DRAWS))))
    int_ok: list[int] = field(default_factory=lambda: list(range(len(_INT_DRAWS))))
    int_hi: int | None = None  # labels and indices below this

    def floats(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        _, draw = _FLOAT_DRAWS[self.float_ok[0] if self.float_ok else 0]
        return (draw(rng, shape) / np.sqrt(max(self.fan_in, 1))).astype(dtype)

    def ints(self, rng: np.random.Generator, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        lo, hi = _INT_DRAWS[self.int_ok[0] if self.int_ok else 0]
        if self.int_hi is not None:  # labels and indices: all of [lo, int_hi)
            hi = max(self.int_hi, lo + 1)
        return rng.integers(lo, hi, shape).astype(dtype)


def _through_shape_ops(t: Tensor) -> Tensor:
    while t.op.kind == "shape" and len(t.inputs) == 1:
        t = t.inputs[0]
    return t


def _probe_ok(node: Tensor, position: int, values: np.ndarray) -> bool:
    """Whether ``node``'s reference is finite and moderate with ``values`` at ``position``."""
    args = []
    for j, t in enumerate(node.inputs):
        if j == position:
            args.append(values)
        elif t.op.name == "constant" and t.attr("value").array.size == 1:
            args.append(np.full(values.shape, t.attr("value").array.reshape(()), dtype=DTYPES[t.dtype]))
        else:
            args.append(np.ones(values.shape, dtype=DTYPES[t.dtype]))
    reference = node.op.reference
    if reference is None:
        return True
    try:
        with np.errstate(all="raise", under="ignore"):
            out = np.asarray(reference(*args, **dict(node.attrs)))
    except (ArithmeticError, ValueError):
        return False
    except Exception:  # a reference that cannot take the probe says nothing about the domain
        return True
    if out.dtype.kind not in "fiu":
        return True
    return bool(np.all(np.isfinite(out)) and np.max(np.abs(out), initial=0.0) <= PROBE_LIMIT)


def _input_draws(outputs: Sequence[Tensor], env: Mapping[str, int]) -> dict[str, _Draw]:
    """How to draw each placeholder, from the ops that read it.

    The right operand of a matrix product (through reshapes and transposes) and a
    convolution's weights are scaled by the fan-in; the labels of ``one_hot`` and the
    indices of ``take`` lie in range; an input read by an elementwise op is drawn where
    that op is finite and moderate."""
    from symgrad.ir.graph import toposort

    draws: dict[str, _Draw] = {}
    probe_rng = np.random.default_rng(12345)
    samples = [draw(probe_rng, (PROBE,)) for _, draw in _FLOAT_DRAWS]

    def draw_of(t: Tensor) -> _Draw | None:
        t = _through_shape_ops(t)
        if t.op.name != "placeholder":
            return None
        return draws.setdefault(t.label, _Draw())

    def size(s: Any) -> int:
        try:
            return int(S.evaluate(s, env))
        except (KeyError, TypeError, ValueError):
            return DEFAULT_SIZE

    for node in toposort(outputs):
        name = node.op.name
        if name == "matmul" and len(node.inputs) == 2:
            b = node.inputs[1]
            d = draw_of(b)
            if d is not None and b.ndim >= 1:
                d.fan_in = max(d.fan_in, size(b.shape[-2] if b.ndim >= 2 else b.shape[0]))
        elif name == "conv2d" and len(node.inputs) == 2:
            w = node.inputs[1]
            d = draw_of(w)
            if d is not None and w.ndim == 4:
                d.fan_in = max(d.fan_in, size(w.shape[1]) * size(w.shape[2]) * size(w.shape[3]))
        elif name == "one_hot":
            d = draw_of(node.inputs[0])
            if d is not None:
                depth = int(node.attr("depth"))
                d.int_hi = depth if d.int_hi is None else min(d.int_hi, depth)
        elif name == "take" and len(node.inputs) == 2:
            d = draw_of(node.inputs[1])
            if d is not None:
                n = size(node.inputs[0].shape[int(node.attr("axis"))])
                d.int_hi = n if d.int_hi is None else min(d.int_hi, n)
        elif node.op.kind == "elementwise" and node.op.reference is not None:
            for j, t in enumerate(node.inputs):
                if t.op.name != "placeholder":
                    continue
                d = draws.setdefault(t.label, _Draw())
                if t.dtype in ("float32", "float64"):
                    d.float_ok = [k for k in d.float_ok
                                  if _probe_ok(node, j, samples[k].astype(DTYPES[t.dtype]))]
                elif t.dtype != "bool":
                    d.int_ok = [k for k in d.int_ok
                                if _probe_ok(node, j, probe_rng.integers(*_INT_DRAWS[k], PROBE)
                                             .astype(DTYPES[t.dtype]))]
    return draws


def _golden_inputs(fn: Any, outputs: Sequence[Tensor], ins: list[Tensor],
                   example: Mapping[str, Any] | None, sizes: Mapping[str, int] | None,
                   seed: int) -> tuple[list[np.ndarray], dict[str, int]]:
    rng = np.random.default_rng(seed)
    env: dict[str, int] = {}
    example = dict(example or {})
    unknown = set(example) - {t.label for t in ins}
    if unknown:
        raise ValueError(f"example values for unknown inputs: {sorted(unknown)}")
    # sizes from the examples first
    for t in ins:
        if t.label in example:
            arr = np.asarray(example[t.label])
            for s, n in zip(t.shape, arr.shape):
                if isinstance(s, S.Dim) and s.is_symbol():
                    env.setdefault(s.terms[0][0][0], int(n))  # type: ignore[arg-type]
    for sym, v in (sizes or {}).items():
        env.setdefault(sym, int(v))
    for t in ins:
        for s in t.shape:
            if isinstance(s, S.Dim):
                for sym in sorted(s.symbols):
                    env.setdefault(sym, DEFAULT_SIZE)
    draws = _input_draws(outputs, env)
    arrays = []
    for t in ins:
        if t.label in example:
            arrays.append(np.asarray(example[t.label]).astype(DTYPES[t.dtype]))
            continue
        shape = tuple(S.evaluate(s, env) for s in t.shape)
        d = draws.get(t.label, _Draw())
        if t.dtype in ("float32", "float64"):
            arr = d.floats(rng, shape, t.dtype)
        elif t.dtype == "bool":
            arr = rng.integers(0, 2, shape).astype(bool)
        else:
            arr = d.ints(rng, shape, t.dtype)
        arrays.append(arr)
    _, bound = fn.bind(arrays, {})
    env.update(bound)
    return arrays, env


def _error_bounds(fn: Any, outs: list[Tensor], ins: list[Tensor], golden_in: list[np.ndarray],
                  golden_out: list[np.ndarray], pipeline: str | None,
                  seed: int) -> tuple[list[np.ndarray | None], str]:
    """Per-element error bounds of the float outputs, and how they were found.

    The rounding error of a float32 result is of the size of the float32-vs-float64
    discrepancy of the same computation, which grows with the magnitude of the terms that
    were summed (not only with the result). The NumPy backend evaluates the graph in
    float32 and, widened, in float64, at the golden inputs and at
    ``BOUND_SAMPLES - 1`` nearby points; the bound is ``BOUND_SAFETY`` times the largest
    discrepancy seen at each element, or the median of the output's nonzero discrepancies
    where that is larger (a few samples can all land near zero by chance). Float64 outputs
    get 0 (the base tolerance)."""
    from symgrad.compile import compile as sg_compile
    from symgrad.errors import SymgradError
    from symgrad.testing import to_float64

    bounds: list[np.ndarray | None] = [
        np.zeros(o.shape, o.dtype) if o.dtype.kind == "f" else None for o in golden_out]
    if not any(o.dtype == np.float32 for o in golden_out):
        return bounds, "none (no float32 output)"
    try:
        wide = to_float64([*outs, *ins])
        wide_fn = sg_compile(wide[:len(outs)], wide[len(outs):], backend="numpy", pipeline=pipeline)
    except (SymgradError, ValueError, TypeError) as exc:
        return bounds, f"none (no float64 form of the graph: {exc})"
    rng = np.random.default_rng(seed + 1)
    worst: list[np.ndarray] = [np.zeros(o.shape) for o in golden_out]
    for k in range(BOUND_SAMPLES):
        point = []
        for a in golden_in:
            if k and a.dtype.kind == "f":
                a = (a * (1 + BOUND_JITTER * rng.uniform(-1, 1, a.shape))).astype(a.dtype)
            point.append(a)
        with np.errstate(all="ignore"):
            try:
                narrow = golden_out if k == 0 else [np.asarray(o) for o in fn(*point)]
                exact = wide_fn(*[a.astype(np.float64) if a.dtype == np.float32 else a for a in point])
            except SymgradError:  # a moved point that some op refuses (an index computed from floats)
                continue
            for j, (n, e) in enumerate(zip(narrow, exact)):
                if n.dtype != np.float32:
                    continue
                d = np.abs(n.astype(np.float64) - np.asarray(e, np.float64))
                worst[j] = np.maximum(worst[j], np.where(np.isfinite(d), d, 0.0))
    for j, o in enumerate(golden_out):
        if o.dtype == np.float32:
            seen = worst[j][worst[j] > 0]
            floor = float(np.median(seen)) if seen.size else 0.0
            bounds[j] = (BOUND_SAFETY * np.maximum(worst[j], floor)).astype(np.float32)
    return bounds, (f"{BOUND_SAFETY:g} x the largest float32-vs-float64 discrepancy of symgrad's "
                    f"NumPy backend over {BOUND_SAMPLES} evaluations, at least the median of "
                    "the output's nonzero ones")


def _raw(arr: np.ndarray) -> bytes:
    a = np.ascontiguousarray(arr)
    if a.dtype == np.bool_:
        return a.astype(np.uint8).tobytes()
    return a.astype(a.dtype.newbyteorder("<")).tobytes()


def _write_data(bundle: Bundle, ins: list[np.ndarray], outs: list[np.ndarray], dims: list[int],
                bounds: Sequence[np.ndarray | None]) -> None:
    _write(bundle, "data/dims.bin", np.asarray(dims, dtype="<i8").tobytes())
    for k, a in enumerate(ins):
        _write(bundle, f"data/in{k}.bin", _raw(a))
    for k, a in enumerate(outs):
        _write(bundle, f"data/out{k}.bin", _raw(a))
    for k, b in enumerate(bounds):
        if b is not None:
            _write(bundle, f"data/tol{k}.bin", _raw(b))


def _write(bundle: Bundle, rel: str, content: str | bytes) -> None:
    path = bundle.out_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        path.write_bytes(content.encode("utf-8"))
    else:
        path.write_bytes(content)
    if rel not in bundle.files:
        bundle.files.append(rel)


# -- the test program ---------------------------------------------------------------------------
def test_program(name: str, cuda: bool = False, abi_header: str | None = None) -> str:
    """A C (or CUDA C++) program checking NAME against the golden data in a directory.

    It reads shapes and dtypes through the metadata functions only, first checks that
    negative dims are refused without writing, then runs once and compares."""
    hdr = abi_header or f"{name}.h"
    rt32, at32 = TOLERANCE["float32"]
    rt64, at64 = TOLERANCE["float64"]
    dev = """#if defined(SYMGRAD_SHIM)
#define DEV_ALLOC(p, n) (((p) = malloc((n) ? (n) : 1)) == NULL)
#define DEV_FREE(p) free(p)
#define TO_DEV(d, s, n) memcpy((d), (s), (n))
#define TO_HOST(d, s, n) memcpy((d), (s), (n))
#define DEV_SYNC() 0
#define STREAM NULL
#else
#include <cuda_runtime.h>
#define DEV_ALLOC(p, n) (cudaMalloc(&(p), (n) ? (n) : 1) != cudaSuccess)
#define DEV_FREE(p) cudaFree(p)
#define TO_DEV(d, s, n) cudaMemcpy((d), (s), (n), cudaMemcpyHostToDevice)
#define TO_HOST(d, s, n) cudaMemcpy((d), (s), (n), cudaMemcpyDeviceToHost)
#define DEV_SYNC() ((int)cudaDeviceSynchronize())
#define STREAM 0
#endif
""" if cuda else ""
    call = f"{name}((const void* const*)dptr_in, dptr_out, dims, ws{', STREAM' if cuda else ''})"
    return f"""/* {name}_test: run {name} on the golden data in a directory and compare.
 * Usage: {name}_test [DIR] (default "data"); exit status 0 when every output matches.
 * Tolerance for floats: |got - want| <= atol + rtol |want| + bound (float32: rtol {rt32:g},
 * atol {at32:g}; float64: rtol {rt64:g}, atol {at64:g}; the environment variables SG_RTOL and
 * SG_ATOL override both). bound is the element's entry of DIR/tolK.bin: an estimate of the
 * rounding error of that element, which grows with the magnitude of the terms summed into
 * it (see README.txt); SG_BOUND_SCALE scales it (default 1, 0 ignores it).
 * NaN matches NaN; integers and bools must be equal. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "{hdr}"
{dev}
static const size_t ITEM[6] = {{0, 4, 8, 4, 8, 1}};

static void* read_file(const char* dir, const char* base, size_t expect, int* ok) {{
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, base);
  FILE* f = fopen(path, "rb");
  void* buf = malloc(expect ? expect : 1);
  if (f == NULL || buf == NULL) {{ fprintf(stderr, "cannot open %s\\n", path); *ok = 0; return buf; }}
  size_t got = fread(buf, 1, expect, f);
  int extra = fgetc(f) != EOF;
  fclose(f);
  if (got != expect || extra) {{ fprintf(stderr, "%s: expected %zu bytes\\n", path, expect); *ok = 0; }}
  return buf;
}}

static double env_or(const char* var, double dflt) {{
  const char* v = getenv(var);
  return v ? atof(v) : dflt;
}}

static int compare(int32_t k, int32_t dtype, const void* got, const void* want, const void* bound,
                   size_t n) {{
  size_t bad = 0;
  double worst = 0.0;
  if (dtype == {name}_FLOAT32 || dtype == {name}_FLOAT64) {{
    const int f32 = dtype == {name}_FLOAT32;
    const double rtol = env_or("SG_RTOL", f32 ? {rt32!r} : {rt64!r});
    const double atol = env_or("SG_ATOL", f32 ? {at32!r} : {at64!r});
    const double scale = env_or("SG_BOUND_SCALE", 1.0);
    for (size_t i = 0; i < n; ++i) {{
      const double g = f32 ? ((const float*)got)[i] : ((const double*)got)[i];
      const double w = f32 ? ((const float*)want)[i] : ((const double*)want)[i];
      const double b = f32 ? ((const float*)bound)[i] : ((const double*)bound)[i];
      if (isnan(g) && isnan(w)) continue;
      if (g == w) continue;
      const double err = fabs(g - w);
      if (!(err <= atol + rtol * fabs(w) + scale * b)) {{
        if (bad < 5) fprintf(stderr, "output %d [%zu]: got %.9g, want %.9g\\n", (int)k, i, g, w);
        ++bad;
      }}
      if (err > worst) worst = err;
    }}
  }} else {{
    bad = memcmp(got, want, n * ITEM[dtype]) != 0;
  }}
  printf("output %d (%s): %zu elements, %s (max abs err %.3g)\\n", (int)k, {name}_output_name(k), n,
         bad ? "MISMATCH" : "ok", worst);
  return bad == 0;
}}

int main(int argc, char** argv) {{
  const char* dir = argc > 1 ? argv[1] : "data";
  int ok = 1;
  const int32_t ni = {name}_num_inputs(), no = {name}_num_outputs(), nd = {name}_num_dims();
  if ({name}_abi_version() != {name}_ABI_VERSION) {{ fprintf(stderr, "ABI version mismatch\\n"); return 1; }}
  int64_t* dims = (int64_t*)read_file(dir, "dims.bin", (size_t)nd * 8, &ok);
  if (!ok) return 1;
  void** host_in = (void**)calloc((size_t)ni + 1, sizeof(void*));
  void** host_out = (void**)calloc((size_t)no + 1, sizeof(void*));
  void** want = (void**)calloc((size_t)no + 1, sizeof(void*));
  void** bound = (void**)calloc((size_t)no + 1, sizeof(void*));
  size_t* in_bytes = (size_t*)calloc((size_t)ni + 1, sizeof(size_t));
  size_t* out_n = (size_t*)calloc((size_t)no + 1, sizeof(size_t));
  void** dptr_in = (void**)calloc((size_t)ni + 1, sizeof(void*));
  void** dptr_out = (void**)calloc((size_t)no + 1, sizeof(void*));
  int64_t shape[64];
  char base[64];
  for (int32_t i = 0; i < ni; ++i) {{
    if ({name}_input_shape(i, dims, shape) != 0) {{ fprintf(stderr, "bad dims for input %d\\n", (int)i); return 1; }}
    size_t n = 1;
    for (int32_t a = 0; a < {name}_input_rank(i); ++a) n *= (size_t)shape[a];
    in_bytes[i] = n * ITEM[{name}_input_dtype(i)];
    snprintf(base, sizeof base, "in%d.bin", (int)i);
    host_in[i] = read_file(dir, base, in_bytes[i], &ok);
  }}
  for (int32_t k = 0; k < no; ++k) {{
    if ({name}_output_shape(k, dims, shape) != 0) {{ fprintf(stderr, "bad dims for output %d\\n", (int)k); return 1; }}
    size_t n = 1;
    for (int32_t a = 0; a < {name}_output_rank(k); ++a) n *= (size_t)shape[a];
    out_n[k] = n;
    snprintf(base, sizeof base, "out%d.bin", (int)k);
    want[k] = read_file(dir, base, n * ITEM[{name}_output_dtype(k)], &ok);
    if ({name}_output_dtype(k) == {name}_FLOAT32 || {name}_output_dtype(k) == {name}_FLOAT64) {{
      snprintf(base, sizeof base, "tol%d.bin", (int)k);
      bound[k] = read_file(dir, base, n * ITEM[{name}_output_dtype(k)], &ok);
    }}
    host_out[k] = malloc(n * ITEM[{name}_output_dtype(k)] + 1);
    memset(host_out[k], 0xA5, n * ITEM[{name}_output_dtype(k)]);
  }}
  if (!ok) return 1;
  int64_t ws_bytes = 0;
  if ({name}_workspace_size(dims, &ws_bytes) != 0) {{ fprintf(stderr, "workspace_size failed\\n"); return 1; }}
{_alloc_block(name, cuda)}
  /* negative dims are refused and nothing is written */
  if (nd > 0) {{
    int64_t* bad_dims = (int64_t*)malloc((size_t)nd * 8);
    memcpy(bad_dims, dims, (size_t)nd * 8);
    bad_dims[0] = -1;
    const int32_t rc = {name}((const void* const*)dptr_in, dptr_out, bad_dims, ws{", STREAM" if cuda else ""});
    if (rc != {name}_ERR_NEGATIVE_DIM) {{ fprintf(stderr, "negative dims: got code %d\\n", (int)rc); ok = 0; }}
    free(bad_dims);
  }}
{_untouched_block(name, cuda)}
  const int32_t rc = {call};
  if (rc != 0) {{ fprintf(stderr, "{name} returned %d: %s\\n", (int)rc, {name}_error_string(rc)); return 1; }}
{_fetch_block(name, cuda)}
  for (int32_t k = 0; k < no; ++k) ok &= compare(k, {name}_output_dtype(k), host_out[k], want[k], bound[k], out_n[k]);
  printf("{name}: %s\\n", ok ? "all outputs match" : "FAILED");
{_free_block(cuda)}
  return ok ? 0 : 1;
}}
"""


def _free_block(cuda: bool) -> str:
    dev = ("  for (int32_t i = 0; i < ni; ++i) DEV_FREE(dptr_in[i]);\n"
           "  for (int32_t k = 0; k < no; ++k) DEV_FREE(dptr_out[k]);\n"
           "  DEV_FREE(ws);") if cuda else "  free(ws_raw);"
    return f"""{dev}
  for (int32_t i = 0; i < ni; ++i) free(host_in[i]);
  for (int32_t k = 0; k < no; ++k) {{ free(host_out[k]); free(want[k]); free(bound[k]); }}
  free(host_in); free(host_out); free(want); free(bound); free(in_bytes); free(out_n);
  free(dptr_in); free(dptr_out); free(dims);"""


def _alloc_block(name: str, cuda: bool) -> str:
    if not cuda:
        return """  void* ws_raw = malloc((size_t)ws_bytes + 64);
  void* ws = (void*)(((uintptr_t)ws_raw + 63) / 64 * 64);
  for (int32_t i = 0; i < ni; ++i) dptr_in[i] = host_in[i];
  for (int32_t k = 0; k < no; ++k) dptr_out[k] = host_out[k];"""
    return f"""  void* ws = NULL;
  if (DEV_ALLOC(ws, (size_t)ws_bytes)) {{ fprintf(stderr, "allocation failed\\n"); return 1; }}
  for (int32_t i = 0; i < ni; ++i) {{
    if (DEV_ALLOC(dptr_in[i], in_bytes[i])) {{ fprintf(stderr, "allocation failed\\n"); return 1; }}
    TO_DEV(dptr_in[i], host_in[i], in_bytes[i]);
  }}
  for (int32_t k = 0; k < no; ++k) {{
    const size_t nb = out_n[k] * ITEM[{name}_output_dtype(k)];
    if (DEV_ALLOC(dptr_out[k], nb)) {{ fprintf(stderr, "allocation failed\\n"); return 1; }}
    TO_DEV(dptr_out[k], host_out[k], nb);
  }}"""


def _untouched_block(name: str, cuda: bool) -> str:
    fetch = ""
    if cuda:
        fetch = f"    TO_HOST(host_out[k], dptr_out[k], out_n[k] * ITEM[{name}_output_dtype(k)]);\n"
    return f"""  for (int32_t k = 0; k < no; ++k) {{
{fetch}    const unsigned char* p = (const unsigned char*)host_out[k];
    for (size_t b = 0; b < out_n[k] * ITEM[{name}_output_dtype(k)]; ++b)
      if (p[b] != 0xA5) {{ fprintf(stderr, "output %d written on a dims error\\n", (int)k); ok = 0; break; }}
  }}"""


def _fetch_block(name: str, cuda: bool) -> str:
    if not cuda:
        return ""
    return f"""  if (DEV_SYNC() != 0) {{ fprintf(stderr, "device error\\n"); return 1; }}
  const int32_t st = {name}_status(ws, STREAM);
  if (st != 0) {{ fprintf(stderr, "{name}_status: %d: %s\\n", (int)st, {name}_error_string(st)); return 1; }}
  for (int32_t k = 0; k < no; ++k) TO_HOST(host_out[k], dptr_out[k], out_n[k] * ITEM[{name}_output_dtype(k)]);"""


# -- build files --------------------------------------------------------------------------------
def _makefile_c(name: str, objects: str = "", extra_sources: str = "") -> str:
    return f"""# {name}: generated by symgrad. `make test` builds {name} and checks it against data/.
# `make test BLAS=1` uses cblas_sgemm/cblas_dgemm for float matrix products
# (BLAS_LIBS, default -lcblas, names the library to link).
CC ?= cc
CFLAGS ?= -O2
STD = -std=c99
LDLIBS = -lm
BLAS_LIBS ?= -lcblas
ifeq ($(BLAS),1)
CFLAGS += -D{name}_USE_CBLAS
LDLIBS += $(BLAS_LIBS)
endif

all: lib{name}.a lib{name}.so

{name}.o: {name}.c {name}.h
\t$(CC) $(STD) $(CFLAGS) -fPIC -c {name}.c -o $@
{extra_sources}
lib{name}.a: {name}.o{objects}
\t$(AR) rcs $@ {name}.o{objects}

lib{name}.so: {name}.o{objects}
\t$(CC) -shared -o $@ {name}.o{objects} $(LDLIBS)

{name}_test: {name}_test.c {name}.h {name}.o{objects}
\t$(CC) $(STD) $(CFLAGS) -o $@ {name}_test.c {name}.o{objects} $(LDLIBS)

test: {name}_test
\t./{name}_test data

clean:
\trm -f {name}.o {name}_test lib{name}.a

.PHONY: all test clean
"""


def _cmake_c(name: str, abi: bool = False) -> str:
    sources = f"{name}_abi.c {name}_kernels.o" if abi else f"{name}.c"
    return f"""# {name}: generated by symgrad.
cmake_minimum_required(VERSION 3.10)
project({name} C)
option({name}_USE_CBLAS "use cblas_sgemm/cblas_dgemm for float matrix products" OFF)
add_library({name} {sources})
set_property(TARGET {name} PROPERTY C_STANDARD 99)
target_include_directories({name} PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}})
if(UNIX)
  target_link_libraries({name} PUBLIC m)
endif()
if({name}_USE_CBLAS)
  target_compile_definitions({name} PRIVATE {name}_USE_CBLAS)
  target_link_libraries({name} PUBLIC cblas)
endif()
add_executable({name}_test {name}_test.c)
set_property(TARGET {name}_test PROPERTY C_STANDARD 99)
target_link_libraries({name}_test {name})
enable_testing()
add_test(NAME {name}_golden COMMAND {name}_test ${{CMAKE_CURRENT_SOURCE_DIR}}/data)
"""


def _makefile_cuda(name: str) -> str:
    return f"""# {name}: generated by symgrad.
# `make test` builds with nvcc and runs on the GPU (needs a CUDA toolkit and a device);
# `make test-host` builds the same {name}.cu with the host C++ compiler through shim.h
# (blocks and threads emulated on the CPU) and runs it.
NVCC ?= nvcc
NVCCFLAGS ?= -O2
CXX ?= g++
HOSTFLAGS ?= -O1
SHIMFLAGS = -std=c++20 -fno-strict-aliasing -include shim.h

all: {name}_test_gpu

{name}_test_gpu: {name}.cu {name}_test.cu {name}.h
\t$(NVCC) $(NVCCFLAGS) -o $@ {name}.cu {name}_test.cu

test: {name}_test_gpu
\t./{name}_test_gpu data

{name}_host.o: {name}.cu {name}.h shim.h
\t$(CXX) $(SHIMFLAGS) $(HOSTFLAGS) -x c++ -c {name}.cu -o $@

{name}_test_host: {name}_host.o {name}_test.cu {name}.h shim.h
\t$(CXX) $(SHIMFLAGS) $(HOSTFLAGS) -x c++ {name}_test.cu -x none {name}_host.o -o $@ -lm

test-host: {name}_test_host
\t./{name}_test_host data

clean:
\trm -f {name}_test_gpu {name}_test_host {name}_host.o

.PHONY: all test test-host clean
"""


def _cmake_cuda(name: str) -> str:
    return f"""# {name}: generated by symgrad (needs the CUDA toolkit).
cmake_minimum_required(VERSION 3.18)
project({name} LANGUAGES C CXX CUDA)
add_library({name} {name}.cu)
target_include_directories({name} PUBLIC ${{CMAKE_CURRENT_SOURCE_DIR}})
add_executable({name}_test {name}_test.cu)
target_link_libraries({name}_test {name})
enable_testing()
add_test(NAME {name}_golden COMMAND {name}_test ${{CMAKE_CURRENT_SOURCE_DIR}}/data)
"""


def _readme(bundle: Bundle, ins: list[Tensor], outs: list[Tensor]) -> str:
    from symgrad.ir.shape import shape_str

    lines = [f"{bundle.name}: generated by symgrad (target {bundle.target}).", ""]
    lines.append("Inputs:")
    for n, t in zip(bundle.input_names, ins):
        lines.append(f"  {n!r}: {t.dtype}{shape_str(t.shape)}")
    lines.append("Outputs:")
    for n, t in zip(bundle.output_names, outs):
        lines.append(f"  {n!r}: {t.dtype}")
    lines.append("")
    if bundle.target == "numpy":
        lines.append(f"Import {bundle.name}.py (needs only NumPy); `make test` (or python3 "
                     f"test_{bundle.name}.py) checks it against data/.")
    else:
        lines.append(f"The C ABI is described in {bundle.name}.h (and docs/abi.md in symgrad).")
        lines.append("`make test` builds with the system compiler and checks the results against "
                     "data/ (golden values from symgrad's NumPy backend).")
        if bundle.target == "cuda":
            lines.append("`make test-host` does the same on the CPU through shim.h.")
    lines.append(f"The golden inputs used sizes: {', '.join(f'{k}={v}' for k, v in sorted(bundle.sizes.items())) or 'none'}.")
    lines += ["",
              "A float output k matches when every element has |got - want| <= atol + rtol |want| +",
              "bound, where bound is the element's entry of data/tolK.bin (same dtype and shape as",
              "the output): an estimate of its rounding error, which grows with the magnitude of the",
              "terms summed into it, not only with the result. Here: " + (bundle.bounds or "none") + ".",
              "SG_RTOL and SG_ATOL override rtol and atol; SG_BOUND_SCALE scales the bounds (0: off)."]
    return "\n".join(lines) + "\n"


# -- llvm ------------------------------------------------------------------------------------------
def _emit_llvm(bundle: Bundle, program: Any, checks: Any, in_names: list[str],
               out_names: list[str], reductions: Any) -> list[str]:
    """``NAME.ll``, ``NAME_kernels.o``, ``NAME_abi.c``, ``NAME.h`` (+ ``libNAME.so``)."""
    try:
        import llvmlite.binding as llvm

        from symgrad.backends.llvm import jit
        from symgrad.backends.llvm.codegen import SUPPORTED_OPS, Codegen
    except ImportError as exc:  # pragma: no cover - llvmlite is a dependency
        raise UnsupportedError(f"emit target 'llvm' needs the LLVM backend: {exc}") from exc
    from symgrad.backends.cstyle.render import render_frame_glue
    from symgrad.backends.lower import lower

    nm = bundle.name
    lowered = lower(program, backend="emit llvm", elementwise=SUPPORTED_OPS)
    tm = jit.target_machine()
    # the bundle's own NAME_sgemm/dgemm take Fortran's default (32-bit) integers
    cg = Codegen(lowered, jit.process_triple(), str(tm.target_data), blas_int_bits=32)
    module = llvm.parse_assembly(str(cg.module))
    entry = f"{nm}_llvm_program"
    # every symbol of the object is NAME-prefixed: the entry is renamed, the rest made
    # internal, and the matrix-product routines the kernels call become NAME_sgemm/dgemm
    for f in module.functions:
        if f.is_declaration:
            if f.name.startswith("symgrad_"):
                f.name = f"{nm}_{f.name[len('symgrad_'):]}"
        elif f.name == "program":
            f.name = entry
        else:
            f.linkage = "internal"
    ir_text = str(module)
    obj = jit.optimize_to_object(ir_text)
    glue = render_frame_glue(lowered, nm, entry, nm, input_names=in_names, output_names=out_names,
                             checks=checks, reductions=reductions)
    _write(bundle, f"{nm}.ll", ir_text)
    _write(bundle, f"{nm}_kernels.o", obj)
    _write(bundle, f"{nm}_abi.c", glue.source)
    _write(bundle, f"{nm}.h", glue.header)
    _write(bundle, f"{nm}_test.c", test_program(nm))
    _write(bundle, "Makefile", _makefile_llvm(nm))
    _write(bundle, "CMakeLists.txt", _cmake_c(nm, abi=True))
    from symgrad.backends.cstyle.run import find_cc

    cc = find_cc()
    if cc is not None:
        lib = bundle.out_dir / f"lib{nm}.so"
        cmd = [cc, "-std=c99", "-O2", "-fPIC", "-shared", "-o", str(lib),
               str(bundle.out_dir / f"{nm}_abi.c"), str(bundle.out_dir / f"{nm}_kernels.o"), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building lib{nm}.so failed:\n{proc.stderr}")
        bundle.files.append(f"lib{nm}.so")
    return lowered.symbols


def _makefile_llvm(name: str) -> str:
    return f"""# {name}: generated by symgrad (target llvm). `make test` links the kernels' object
# file with the ABI glue and checks the result against data/.
CC ?= cc
CFLAGS ?= -O2
STD = -std=c99
LDLIBS = -lm

all: lib{name}.so

{name}_abi.o: {name}_abi.c {name}.h
\t$(CC) $(STD) $(CFLAGS) -fPIC -c {name}_abi.c -o $@

lib{name}.so: {name}_abi.o {name}_kernels.o
\t$(CC) -shared -o $@ {name}_abi.o {name}_kernels.o $(LDLIBS)

{name}_test: {name}_test.c {name}.h {name}_abi.o {name}_kernels.o
\t$(CC) $(STD) $(CFLAGS) -o $@ {name}_test.c {name}_abi.o {name}_kernels.o $(LDLIBS)

test: {name}_test
\t./{name}_test data

clean:
\trm -f {name}_abi.o {name}_test

.PHONY: all test clean
"""


# -- numpy --------------------------------------------------------------------------------------------
_NP_HELPERS: dict[str, str] = {
    "matmul": """
def _ref_matmul(a, b):
    return np.matmul(a, b)
""",
    "sigmoid": """
def _ref_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
""",
    "erf": """
def _ref_erf(x):
    x = np.asarray(x)
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)
""",
    "argmax": """
def _ref_argmax(x, *, axes, keepdims):
    return np.asarray(np.argmax(x, axis=axes[0], keepdims=keepdims), dtype=np.int64)
""",
    "argmin": """
def _ref_argmin(x, *, axes, keepdims):
    return np.asarray(np.argmin(x, axis=axes[0], keepdims=keepdims), dtype=np.int64)
""",
    "logsumexp": """
def _ref_logsumexp(x, *, axes, keepdims):
    if x.size == 0:
        return np.asarray(np.log(np.sum(np.exp(x), axis=axes, keepdims=keepdims)))
    m = np.max(x, axis=axes, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    out = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    if not keepdims:
        out = np.squeeze(out, axis=axes)
    return np.asarray(out, dtype=x.dtype)
""",
    "softmax": """
def _ref_softmax(x, *, axis):
    m = np.max(x, axis=axis, keepdims=True) if x.size else 0
    e = np.exp(x - np.where(np.isfinite(m), m, 0))
    return np.asarray(e / np.sum(e, axis=axis, keepdims=True), dtype=x.dtype)
""",
    "log_softmax": """
def _ref_log_softmax(x, *, axis):
    m = np.max(x, axis=axis, keepdims=True) if x.size else np.zeros((), x.dtype)
    s = x - np.where(np.isfinite(m), m, 0)
    return np.asarray(s - np.log(np.sum(np.exp(s), axis=axis, keepdims=True)), dtype=x.dtype)
""",
    "slice": """
def _slice_of(start, stop, step):
    # normalized as slice.indices gives it; with a negative step, -1 is "before element 0"
    if step > 0:
        return slice(start, stop, step)
    if start < 0:
        return slice(0, 0, 1)
    return slice(start, None if stop < 0 else stop, step)


def _slices(index):
    return tuple(_slice_of(*triple) for triple in index)


def _ref_slice(x, *, index):
    return x[_slices(index)]
""",
    "slice_grad": """
def _slice_of(start, stop, step):
    # normalized as slice.indices gives it; with a negative step, -1 is "before element 0"
    if step > 0:
        return slice(start, stop, step)
    if start < 0:
        return slice(0, 0, 1)
    return slice(start, None if stop < 0 else stop, step)


def _slices(index):
    return tuple(_slice_of(*triple) for triple in index)


def _ref_slice_grad(g, *, index, shape):
    out = np.zeros(shape, dtype=g.dtype)
    out[_slices(index)] = g
    return out
""",
    "take": """
def _ref_take(x, idx, *, axis):
    n = x.shape[axis]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise IndexError(f"take: index out of range for axis {axis} of size {n}")
    return np.take(x, idx, axis=axis)
""",
    "take_grad": """
def _ref_take_grad(g, idx, *, axis, size):
    pre, post = g.shape[:axis], g.shape[axis + idx.ndim:]
    out = np.zeros((*pre, size, *post), dtype=g.dtype)
    flat = idx.reshape(-1) % max(size, 1)
    g3 = g.reshape(int(np.prod(pre)), flat.size, int(np.prod(post)))
    o3 = out.reshape(int(np.prod(pre)), size, int(np.prod(post)))
    np.add.at(o3, (slice(None), flat, slice(None)), g3)
    return out
""",
    "one_hot": """
def _ref_one_hot(lab, *, depth, dtype):
    if lab.size and (lab.min() < 0 or lab.max() >= depth):
        raise IndexError(f"one_hot: label out of range [0, {depth})")
    return (lab[..., None] == np.arange(depth)).astype(dtype)
""",
}
_NP_CONV = """
def _pad(x, padding, value=0.0):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)


def _windows(xp, kernel, stride, dilation):
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    v = sliding_window_view(xp, (dh * (kh - 1) + 1, dw * (kw - 1) + 1), axis=(2, 3))
    return v[:, :, ::sh, ::sw, ::dh, ::dw]


def _scatter_windows(cols, in_hw, stride, padding, dilation):
    n, c, kh, kw, ho, wo = cols.shape
    (h, wd), (sh, sw), (ph, pw), (dh, dw) = in_hw, stride, padding, dilation
    out = np.zeros((n, c, h + 2 * ph, wd + 2 * pw), dtype=cols.dtype)
    for a in range(kh):
        for b in range(kw):
            out[:, :, a * dh: a * dh + sh * (ho - 1) + 1: sh, b * dw: b * dw + sw * (wo - 1) + 1: sw] += cols[:, :, a, b]
    return np.ascontiguousarray(out[:, :, ph: ph + h, pw: pw + wd])


def _argmax_index(x, kernel, stride, padding):
    xp = _pad(x, padding, -np.inf)
    v = _windows(xp, kernel, stride, (1, 1))
    n, c, ho, wo, kh, kw = v.shape
    k = v.reshape(n, c, ho, wo, kh * kw).argmax(axis=-1)
    hp, wp = xp.shape[2], xp.shape[3]
    rows = np.arange(ho)[:, None] * stride[0] + k // kw
    cols = np.arange(wo)[None, :] * stride[1] + k % kw
    plane = (np.arange(n)[:, None] * c + np.arange(c)[None, :])[:, :, None, None]
    return (plane * hp + rows) * wp + cols, xp.shape
"""
_NP_CONV_OPS = {
    "conv2d": """
def _ref_conv2d(x, w, *, stride, padding, dilation):
    cols = _windows(_pad(x, padding), (w.shape[2], w.shape[3]), stride, dilation)
    out = np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3]))
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2), dtype=x.dtype)
""",
    "conv2d_grad_input": """
def _ref_conv2d_grad_input(g, w, *, stride, padding, dilation, in_hw):
    cols = np.tensordot(g, w, axes=([1], [0]))
    return _scatter_windows(cols.transpose(0, 3, 4, 5, 1, 2), in_hw, stride, padding, dilation)
""",
    "conv2d_grad_weight": """
def _ref_conv2d_grad_weight(x, g, *, stride, padding, dilation, w_shape):
    cols = _windows(_pad(x, padding), (w_shape[2], w_shape[3]), stride, dilation)
    return np.ascontiguousarray(np.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3])), dtype=x.dtype)
""",
    "max_pool2d": """
def _ref_max_pool2d(x, *, kernel, stride, padding):
    v = _windows(_pad(x, padding, -np.inf), kernel, stride, (1, 1))
    return np.ascontiguousarray(v.max(axis=(4, 5)), dtype=x.dtype)
""",
    "max_pool2d_grad": """
def _ref_max_pool2d_grad(x, g, *, kernel, stride, padding):
    idx, padded = _argmax_index(x, kernel, stride, padding)
    flat = np.bincount(idx.ravel(), weights=g.ravel(), minlength=int(np.prod(padded)))
    ph, pw = padding
    out = flat.reshape(padded)[:, :, ph: ph + x.shape[2], pw: pw + x.shape[3]]
    return np.ascontiguousarray(out, dtype=x.dtype)
""",
    "max_pool2d_gather": """
def _ref_max_pool2d_gather(x, c, *, kernel, stride, padding):
    idx, _ = _argmax_index(x, kernel, stride, padding)
    return np.ascontiguousarray(_pad(c, padding).ravel()[idx], dtype=x.dtype)
""",
    "avg_pool2d": """
def _ref_avg_pool2d(x, *, kernel, stride, padding):
    v = _windows(_pad(x, padding), kernel, stride, (1, 1))
    return np.ascontiguousarray(v.sum(axis=(4, 5)) / (kernel[0] * kernel[1]), dtype=x.dtype)
""",
    "avg_pool2d_grad": """
def _ref_avg_pool2d_grad(g, *, kernel, stride, padding, in_hw):
    share = (g / (kernel[0] * kernel[1])).astype(g.dtype, copy=False)
    cols = np.broadcast_to(share[:, :, None, None], (*g.shape[:2], *kernel, *g.shape[2:]))
    return _scatter_windows(cols, in_hw, stride, padding, (1, 1))
""",
}


def _emit_numpy(bundle: Bundle, fn: Any, ins: list[Tensor], golden_in: list[np.ndarray],
                golden_out: list[np.ndarray], bounds: Sequence[np.ndarray | None]) -> None:
    import re

    impl = fn._impl
    # the backend's BLAS thread switch needs symgrad: a standalone module leaves the
    # threads to the BLAS's own settings
    source: str = re.sub(r"(?m)^[ \t]*_blas_threads\(.*\)[ \t]*\n", "", impl.source)
    namespace: dict[str, Any] = impl._fn.__globals__
    nm = bundle.name
    refs = sorted(set(re.findall(r"\b_ref_(\w+)\(", source)))
    missing = [op for op in refs if op not in _NP_HELPERS and op not in _NP_CONV_OPS]
    if missing:
        raise UnsupportedError(f"emit target 'numpy' has no standalone helper for: {', '.join(missing)}")
    consts = sorted(set(re.findall(r"\b(_const\d+)\b", source)))
    lines = [f'"""{nm}: generated by symgrad (target numpy). Needs only NumPy.', "",
             f"{nm}({', '.join(repr(n) for n in bundle.input_names)}) -> tuple of "
             f"{len(golden_out)} arrays: {', '.join(repr(n) for n in bundle.output_names)}.",
             '"""', ""]
    imports = (["import base64"] if consts else []) + (["import math"] if "erf" in refs else []) + (
        ["import zlib"] if consts else [])
    lines += imports + ([""] if imports else []) + ["import numpy as np"]
    if any(op in _NP_CONV_OPS for op in refs):
        lines.append("from numpy.lib.stride_tricks import sliding_window_view")
    lines += ["", f"INPUTS = {bundle.input_names!r}", f"OUTPUTS = {bundle.output_names!r}",
              f"DTYPES = {[t.dtype for t in ins]!r}", ""]
    for c in consts:
        arr = np.ascontiguousarray(namespace[c])
        data = base64.b64encode(zlib.compress(_raw(arr), 9)).decode()
        dt = "bool" if arr.dtype == np.bool_ else arr.dtype.newbyteorder("<").str
        wrapped = "\n".join(f'    "{data[i:i + 88]}"' for i in range(0, len(data), 88)) or '    ""'
        lines.append(f"{c} = np.frombuffer(zlib.decompress(base64.b64decode(\n{wrapped}\n)), "
                     f"dtype={'np.uint8' if dt == 'bool' else repr(dt)}).reshape({tuple(arr.shape)!r})"
                     f"{'.astype(bool)' if dt == 'bool' else '.astype(' + repr(arr.dtype.name) + ')'}")
    if any(op in _NP_CONV_OPS for op in refs):
        lines.append(_NP_CONV.rstrip())
    seen: set[str] = set()
    for op in refs:
        text = (_NP_HELPERS.get(op) or _NP_CONV_OPS[op]).rstrip()
        for block in text.split("\n\n\n"):
            key = block.strip().splitlines()[0]
            if key not in seen:
                seen.add(key)
                lines.append("\n" + block.strip("\n"))
    lines += ["", "", source.rstrip(), "", "",
              f"def {nm}(*args):",
              f'    """Compute the outputs from the inputs {bundle.input_names!r} (by position)."""',
              f"    if len(args) != {len(ins)}:",
              f"        raise TypeError('{nm} takes {len(ins)} inputs: ' + ', '.join(INPUTS))",
              "    arrays = [np.asarray(a, dtype=d) for a, d in zip(args, DTYPES)]",
              "    with np.errstate(all='ignore'):",
              "        return tuple(np.asarray(o) for o in symgrad_fn(*arrays))", ""]
    text = "\n".join(lines)
    if "symgrad" in re.sub(r"symgrad_fn|generated by symgrad", "", text):
        raise AssertionError("the standalone module refers to symgrad")
    _write(bundle, f"{nm}.py", text)
    test = f'''"""Check {nm}.py against the golden data in data/ (run: python3 test_{nm}.py)."""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import {nm}  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = {{"float32": (float(os.environ.get("SG_RTOL", {TOLERANCE["float32"][0]!r})), float(os.environ.get("SG_ATOL", {TOLERANCE["float32"][1]!r}))),
       "float64": (float(os.environ.get("SG_RTOL", {TOLERANCE["float64"][0]!r})), float(os.environ.get("SG_ATOL", {TOLERANCE["float64"][1]!r})))}}
BOUND_SCALE = float(os.environ.get("SG_BOUND_SCALE", 1.0))  # scales data/tolK.bin (README.txt)
IN_SHAPES = {[list(a.shape) for a in golden_in]!r}
OUT_SPECS = {[(o.dtype.name, list(o.shape)) for o in golden_out]!r}


def load(name, dtype, shape):
    raw = np.fromfile(os.path.join(HERE, "data", name), dtype=np.uint8 if dtype == "bool" else np.dtype(dtype).newbyteorder("<"))
    return (raw.astype(bool) if dtype == "bool" else raw.astype(dtype)).reshape(shape)


def main():
    args = [load(f"in{{k}}.bin", d, s) for k, (d, s) in enumerate(zip({nm}.DTYPES, IN_SHAPES))]
    outs = {nm}.{nm}(*args)
    ok = True
    for k, ((dtype, shape), got) in enumerate(zip(OUT_SPECS, outs)):
        want = load(f"out{{k}}.bin", dtype, shape)
        if dtype in TOL:
            rtol, atol = TOL[dtype]
            bound = BOUND_SCALE * load(f"tol{{k}}.bin", dtype, shape).astype(np.float64)
            good = got.shape == want.shape
            if good:
                err = np.abs(got.astype(np.float64) - want.astype(np.float64))
                same = (got == want) | (np.isnan(got) & np.isnan(want))
                good = bool(np.all(same | (err <= atol + rtol * np.abs(want) + bound)))
        else:
            good = np.array_equal(got, want)
        print(f"output {{k}} ({{{nm}.OUTPUTS[k]}}): {{'ok' if good else 'MISMATCH'}}")
        ok &= bool(good) and got.shape == want.shape
    print("{nm}: " + ("all outputs match" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
'''
    _write(bundle, f"test_{nm}.py", test)
    _write(bundle, "Makefile", f"# {nm}: generated by symgrad.\nPYTHON ?= python3\n\ntest:\n"
                               f"\t$(PYTHON) test_{nm}.py\n\n.PHONY: test\n")
    _write_data(bundle, golden_in, golden_out, [], bounds)
    _write(bundle, "README.txt", _readme(bundle, ins, list(fn.graph)))


# -- running a bundle's test -------------------------------------------------------------------------
def run_bundle_test(bundle: Bundle | str | Path, make_target: str = "test",
                    variables: Mapping[str, str] | None = None, timeout: float = 600) -> str:
    """Run ``make <target>`` in a bundle; return its output, raise if it fails.

    ``SYMGRAD_BUNDLE_CFLAGS`` in the environment (e.g. ``-fsanitize=address,undefined
    -fno-omit-frame-pointer``) is appended to the compiler flags: ``CFLAGS`` of the C and
    LLVM bundles, ``HOSTFLAGS`` of the CUDA bundle's host build."""
    path = bundle.out_dir if isinstance(bundle, Bundle) else Path(bundle)
    make = shutil.which("make")
    if make is None:
        raise RuntimeError("make is not installed")
    variables = dict(variables or {})
    extra = os.environ.get("SYMGRAD_BUNDLE_CFLAGS", "").strip()
    if extra:
        for var, default in (("CFLAGS", "-O2"), ("HOSTFLAGS", "-O1")):
            variables[var] = f"{variables.get(var, default)} {extra}"
    cmd = [make, "-s", "-C", str(path), make_target] + [f"{k}={v}" for k, v in variables.items()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    return out


__all__ = ["TARGETS", "TOLERANCE", "Bundle", "emit", "lower_outputs", "run_bundle_test", "test_program"]
_ = textwrap
