"""Running a rendered CUDA program on a device (a GPU, or the host shim).

The renderer (:mod:`symgrad.backends.cstyle.render`) says which kernels run, in what
order, with which parameters (sizes, buffers, the error word, the partials of two-stage
reductions), on what grid, and how the workspace is laid out. A call here:

1. reads the size symbols from the inputs' shapes;
2. takes each input as device memory: a device array (``__cuda_array_interface__``,
   DLPack, or our :class:`DeviceArray`) is used in place, a NumPy array is copied in;
3. for new sizes, allocates the workspace and prepares every launch's parameter block
   (sizes, workspace pointers, grid); later calls with the same sizes only rebind the
   input and output pointers;
4. launches the kernels on the device's stream, checks the error word if the program
   has one (an out-of-range index in ``take``/``one_hot``; a reduction without identity
   over nothing is refused before any launch; either error is the NumPy backend's, found
   by running the graph on it once more), and returns the outputs as
   NumPy arrays or, with ``outputs="device"`` (or ``"auto"`` and a device input), as
   :class:`DeviceArray`.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symgrad.backends.cuda.blas import Gemm, cublas_for, plan_gemm
from symgrad.backends.cuda.device import Device, DeviceArray, ForeignArray, Params
from symgrad.backends.lower.kernel import ITEMSIZE, LibCall
from symgrad.errors import InputError
from symgrad.ir import shape as S
from symgrad.ir.dtypes import DTYPES

# the ABI's error codes the kernels may set (see symgrad.backends.cstyle.render)
KERNEL_ERRORS = {5: "an index (take) or label (one_hot) is out of range"}
# NumPy's words for a reduction without identity over nothing
EMPTY_REDUCTION = {"max": "zero-size array to reduction operation maximum which has no identity",
                   "min": "zero-size array to reduction operation minimum which has no identity",
                   "argmax": "attempt to get argmax of an empty sequence",
                   "argmin": "attempt to get argmin of an empty sequence"}

OUTPUT_MODES = ("auto", "host", "device")


def param_kind(ctype: str) -> str:
    """The :class:`Params` kind of a C parameter type."""
    if "*" in ctype:
        return "ptr"
    base = " ".join(w for w in ctype.replace("const", " ").split())
    kinds = {"long long": "i64", "int": "i32", "unsigned long long": "u64", "unsigned int": "u32",
             "float": "f32", "double": "f64", "int64_t": "i64", "int32_t": "i32"}
    if base not in kinds:
        raise ValueError(f"kernel parameter type {ctype!r} is not supported by the runtime")
    return kinds[base]


@dataclass
class _Bound:
    """One launch prepared for given sizes."""

    kernel: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shmem: int
    params: Params
    inputs: list[tuple[int, int]]  # (param index, input position)
    outputs: list[tuple[int, int]]  # (param index, distinct output number)
    run: Any = None  # the prepared launch: run(params)


class _State:
    """Everything that depends only on the sizes of a call."""

    def __init__(self, fn: CudaFunction, dims: tuple[int, ...]) -> None:
        rs, lp, dev = fn.rendered, fn.lp, fn.device
        self.dims = dims
        env = dict(zip(lp.symbols, dims))
        self.env = env
        # the first reduction without identity that reduces over nothing at these sizes
        self.empty = next(((op, loc) for extent, op, loc in fn.reductions
                           if S.evaluate(extent, env) == 0), None)
        self.out_specs = [(tuple(S.evaluate(s, env) for s in b.shape), DTYPES[b.dtype])
                          for b in fn.distinct_outputs]
        self.in_shapes = [tuple(S.evaluate(s, env) for s in b.shape) for b in lp.inputs]
        self.out_nbytes = [math.prod(shape) * dtype.itemsize for shape, dtype in self.out_specs]
        offsets, total = rs.workspace_layout(env)
        self.workspace = dev.alloc(max(total, 1))
        base = self.workspace.ptr
        region_ptr: dict[int, int] = {}
        self.error_ptr: int | None = None
        self.partials_ptr: int | None = None
        for region, off in zip(rs.regions, offsets):
            for b in region.buffers:
                region_ptr[id(b)] = base + off
            if region.what == "error":
                self.error_ptr = base + off
            elif region.what == "partials":
                self.partials_ptr = base + off
        self.region_ptr = region_ptr
        # matrix products that run through cuBLAS for these sizes: launch index -> plan
        self.gemms: dict[int, tuple[Gemm, Any, Any]] = {}
        for idx, call in fn.gemm_calls.items():
            (aa, ba), (ash, bsh) = call.inputs, call.input_shapes
            ev = [tuple(S.evaluate(x, env) for x in shape) for shape in (ash, bsh)]
            g = plan_gemm(call.output.dtype, ITEMSIZE[call.output.dtype], ev[0], ev[1],
                          [S.evaluate(c, env) for c in aa.coeffs], [S.evaluate(c, env) for c in ba.coeffs],
                          S.evaluate(aa.offset, env), S.evaluate(ba.offset, env),
                          int(call.attrs.get("batch", len(ash) - 2)))
            if g is not None:
                self.gemms[idx] = (g, ba.buffer, aa.buffer)
        self.launches: list[_Bound] = []
        for launch in rs.launches:
            params = Params([param_kind(p.ctype) for p in launch.params])
            ins: list[tuple[int, int]] = []
            outs: list[tuple[int, int]] = []
            for i, p in enumerate(launch.params):
                if p.kind == "size":
                    params.set(i, S.evaluate(p.size, env))
                elif p.kind == "error":
                    params.set(i, self.error_ptr)
                elif p.kind == "partials":
                    params.set(i, self.partials_ptr)
                elif p.kind == "buffer":
                    b = p.buffer
                    if b.kind == "input":
                        ins.append((i, b.index))
                    elif b.kind == "output":
                        outs.append((i, fn.output_number[id(b)]))
                    elif b.kind == "const":
                        params.set(i, fn.const_ptr[id(b)])
                    else:
                        params.set(i, region_ptr[id(b)])
                else:
                    raise ValueError(f"unknown kernel parameter kind {p.kind!r}")
            grid = launch.grid_for(env)
            run = fn.module.launcher(launch.kernel, grid, launch.block, launch.shared_bytes)
            self.launches.append(_Bound(launch.kernel, grid, launch.block, launch.shared_bytes,
                                        params, ins, outs, run))


class CudaFunction:
    """A compiled program on a device: ``fn(*arrays) -> tuple of arrays``.

    ``source`` is the CUDA source the device runs; ``module_info`` says how it was
    loaded (``cubin sm_90``, ``ptx compute_90`` or ``host shim``). Every call returns
    fresh arrays that share memory with no input and no other output.
    """

    accepts_device_arrays = True  # sg.compile hands device arrays over unconverted

    def __init__(self, lp: Any, rendered: Any, device: Device, outputs: str = "auto",
                 program: Any = None) -> None:
        from symgrad.backends.cstyle.render import empty_reductions

        if outputs not in OUTPUT_MODES:
            raise ValueError(f"outputs must be one of {OUTPUT_MODES}, got {outputs!r}")
        # the graph (a backends.base.Program), when known: bad data then gives the NumPy
        # backend's error, found by running the call again on it (errors only)
        self.program = program
        self.reductions = empty_reductions(program.nodes) if program is not None else []
        self._reference: Any = None
        self.lp = lp
        self.rendered = rendered
        self.device = device
        self.outputs = outputs
        self.source: str = rendered.device_source
        self.kernels = lp.text()
        self.module = device.load(rendered.device_source, rendered.name)
        self.module_info = getattr(self.module, "how", "host shim")
        self.output_number: dict[int, int] = {}
        distinct: list[Any] = []
        for b in lp.outputs:
            if id(b) not in self.output_number:
                self.output_number[id(b)] = len(distinct)
                distinct.append(b)
        self.distinct_outputs = distinct
        self._out_pos = [self.output_number[id(b)] for b in lp.outputs]
        self._dim_sources = [lp.size_sources[s] for s in lp.symbols]
        self._input_dtypes = [DTYPES[b.dtype] for b in lp.inputs]
        used = {id(p.buffer) for launch in rendered.launches for p in launch.params
                if p.kind == "buffer" and p.buffer is not None}
        self._consts = [device.to_device(b.value) for b in lp.consts if id(b) in used]
        self.const_ptr = {id(b): a.ptr for b, a in zip([b for b in lp.consts if id(b) in used],
                                                       self._consts)}
        self._uses_error = any(r.what == "error" for r in rendered.regions)
        # float matrix products may run through cuBLAS on a GPU (see blas.py)
        self.gemm_calls: dict[int, Any] = {}
        self.blas = cublas_for(device) if device.kind == "gpu" else None
        if self.blas is not None:
            calls = {k.name: k for k in lp.kernels if isinstance(k, LibCall) and k.op == "matmul"
                     and k.output.dtype in ("float32", "float64")
                     and all(acc.buffer.kind != "const" for acc in k.inputs)}
            for i, launch in enumerate(rendered.launches):
                if launch.origin in calls:
                    self.gemm_calls[i] = calls[launch.origin]
        self.blas_info = f"cuBLAS ({len(self.gemm_calls)} products)" if self.gemm_calls else "kernels"
        self._local = threading.local()

    def _state(self, dims: tuple[int, ...]) -> _State:
        st: _State | None = getattr(self._local, "state", None)
        if st is None or st.dims != dims:
            st = _State(self, dims)
            self._local.state = st
        return st

    def _bind_input(self, k: int, value: Any, keep: list[Any], release: list[Any]) -> tuple[int, tuple[int, ...], bool]:
        """Device address and shape of input ``k``; whether it was already on the device."""
        foreign: ForeignArray | None = self.device.foreign(value)
        want = self._input_dtypes[k]
        name = self.lp.inputs[k].name
        if foreign is not None:
            keep.append(foreign.owner)
            if foreign.release is not None:
                release.append(foreign.release)
            if foreign.dtype != want:
                raise InputError(f"input {name!r}: device array of dtype {foreign.dtype}, expected "
                                 f"{want.name} (device arrays are not converted: cast it first)")
            return foreign.ptr, foreign.shape, True
        arr = np.asarray(value, dtype=want, order="C")  # (ascontiguousarray makes 0-d 1-d)
        dev = self.device.to_device(arr)
        keep.append(dev)
        return dev.ptr, arr.shape, False

    def __call__(self, *arrays: Any) -> tuple[Any, ...]:
        return self._run(arrays, self.outputs)

    def run_device(self, *arrays: Any) -> tuple[DeviceArray, ...]:
        """Like calling the function, with the outputs left on the device."""
        return self._run(arrays, "device")

    def _numpy_error(self, ptrs: Sequence[int], shapes: Sequence[tuple[int, ...]]) -> InputError | None:
        """The error the NumPy backend raises for these inputs (read back from the
        device), naming the op, the value and the user's line; None if it raises none."""
        if self.program is None:
            return None
        from symgrad.backends.numpy import NumpyBackend

        if self._reference is None:
            self._reference = NumpyBackend().build(self.program)
        host = []
        for b, ptr, shape in zip(self.lp.inputs, ptrs, shapes):
            a = np.empty(shape, DTYPES[b.dtype])
            if a.size:
                self.device.download(a, ptr)
            host.append(a)
        try:
            self._reference(*host)
        except InputError as exc:
            return exc
        return None

    def _kernel_error(self, code: int) -> InputError:
        ops = [f"{n.op.name} built at {n.loc}" for k in self.lp.kernels if isinstance(k, LibCall)
               and k.op in ("take", "one_hot") for n in k.nodes[:1]]
        where = f" (op {', '.join(ops)})" if ops else ""
        return InputError(f"a kernel reported: {KERNEL_ERRORS.get(code, f'error {code}')}{where}")

    def _ptr(self, b: Any, ptrs: list[int], outs: list[DeviceArray], st: _State) -> int:
        if b.kind == "input":
            return ptrs[b.index]
        if b.kind == "output":
            return outs[self.output_number[id(b)]].ptr
        return st.region_ptr[id(b)]

    def profile(self, *arrays: Any, repeat: int = 20) -> list[tuple[str, float]]:
        """Median time of each kernel launch over ``repeat`` calls, in seconds: CUDA
        events around each launch on a GPU (device time only, no launch gaps), the host
        clock on the shim. The last entry, ``total``, is their sum."""
        import time

        times: dict[int, list[float]] = {}
        names: dict[int, str] = {}
        gpu = self.device.kind == "gpu"
        timers: dict[int, Any] = {}

        def hook(k: int, kernel: str, before: bool) -> None:
            names[k] = kernel
            if gpu:
                t = timers.get(k)
                if t is None:
                    t = timers[k] = self.device.timer()  # type: ignore[attr-defined]
                if before:
                    t.start()
                else:
                    times.setdefault(k, []).append(t.stop())
            elif before:
                timers[k] = time.perf_counter()
            else:
                times.setdefault(k, []).append(time.perf_counter() - timers[k])

        for _ in range(max(1, repeat)):
            self._run(arrays, "device", hook)
        out = [(names[k], float(np.median(v))) for k, v in sorted(times.items())]
        out.append(("total", sum(t for _, t in out)))
        return out

    def _run(self, arrays: Sequence[Any], mode: str, hook: Any = None) -> tuple[Any, ...]:
        keep: list[Any] = []
        release: list[Any] = []
        try:
            ptrs: list[int] = []
            shapes: list[tuple[int, ...]] = []
            if len(arrays) != len(self.lp.inputs):
                raise InputError(f"{len(self.lp.inputs)} inputs expected, got {len(arrays)}")
            on_device = False
            for k, a in enumerate(arrays):
                p, shape, dev_in = self._bind_input(k, a, keep, release)
                ptrs.append(p)
                shapes.append(shape)
                on_device = on_device or dev_in
            for b, shape in zip(self.lp.inputs, shapes):
                if len(shape) != len(b.shape):
                    raise InputError(f"input {b.name!r}: rank {len(shape)}, expected {len(b.shape)}")
            dims = tuple(int(shapes[p][ax]) for p, ax in self._dim_sources)
            st = self._state(dims)
            if shapes != st.in_shapes:
                for b, shape, want in zip(self.lp.inputs, shapes, st.in_shapes):
                    if shape != want:
                        raise InputError(f"input {b.name!r}: shape {shape}, expected {want}")
            dev = self.device
            dev.make_current()
            if st.empty is not None:
                op, loc = st.empty
                raise self._numpy_error(ptrs, shapes) or InputError(
                    f"{EMPTY_REDUCTION[op]} (op {op} built at {loc})")
            outs = [DeviceArray(dev, dev.alloc(nbytes), shape, dtype)
                    for (shape, dtype), nbytes in zip(st.out_specs, st.out_nbytes)]
            if st.error_ptr is not None:
                dev.memset(st.error_ptr, 0, 4)
            if hook is None and not st.gemms:  # the hot path
                for bound in st.launches:
                    slots = bound.params.slots
                    for i, pos in bound.inputs:
                        slots[i] = ptrs[pos]
                    for i, j in bound.outputs:
                        slots[i] = outs[j].ptr
                    bound.run(bound.params)
            for k, bound in enumerate(st.launches if hook is not None or st.gemms else ()):
                gemm = st.gemms.get(k)
                if gemm is not None:
                    g, first, second = gemm
                    if hook is not None:
                        hook(k, "cublas:" + bound.kernel, True)
                    assert self.blas is not None
                    self.blas.gemm(g, self._ptr(first, ptrs, outs, st), self._ptr(second, ptrs, outs, st),
                                   self._ptr(self.gemm_calls[k].output, ptrs, outs, st))
                    if hook is not None:
                        hook(k, "cublas:" + bound.kernel, False)
                    continue
                params = bound.params
                for i, pos in bound.inputs:
                    params.set(i, ptrs[pos])
                for i, j in bound.outputs:
                    params.set(i, outs[j].ptr)
                if hook is not None:
                    hook(k, bound.kernel, True)
                bound.run(params)
                if hook is not None:
                    hook(k, bound.kernel, False)
            if self._uses_error and st.error_ptr is not None:
                code = np.zeros(1, np.int32)
                dev.download(code, st.error_ptr)
                if code[0]:
                    raise self._numpy_error(ptrs, shapes) or self._kernel_error(int(code[0]))
            device_out = mode == "device" or (mode == "auto" and on_device)
            results: list[Any] = list(outs) if device_out else [o.get() for o in outs]
            # every position gets its own array, even when two outputs are one buffer
            final: list[Any] = []
            used: set[int] = set()
            for i in self._out_pos:
                r = results[i]
                if i in used:
                    if device_out:
                        dup = dev.empty(r.shape, r.dtype)
                        dev.copy(dup.ptr, r.ptr, r.nbytes)
                        r = dup
                    else:
                        r = r.copy()
                used.add(i)
                final.append(r)
            return tuple(final)
        finally:
            for r in release:
                r()
