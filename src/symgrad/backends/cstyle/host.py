"""Host code and header of a rendered program: the C ABI of ``docs/abi.md``.

Everything here runs on the host (also in the CUDA target): sizes from ``dims`` with
overflow checks, the graph's constraints, the workspace layout, the entry point and the
metadata functions, and the header declaring them with ``extern "C"`` guards.
"""

from __future__ import annotations

from collections.abc import Sequence

from symgrad.backends.cstyle import scalar as SC
from symgrad.backends.cstyle.names import c_string, comment_text
from symgrad.backends.cstyle.sizes import int_literal
from symgrad.backends.lower.kernel import ITEMSIZE, Buffer
from symgrad.ir import shape as S
from symgrad.ir.shape import Dim, FloorDiv, Size

if False:  # pragma: no cover - typing only
    from symgrad.backends.cstyle.render import _Program

_ABI = None


def _codes() -> tuple[int, list[tuple[str, int, str]], dict[str, int], dict[str, int]]:
    from symgrad.backends.cstyle import render as R

    return R.ABI_VERSION, R.ERROR_CODES, R.ERR, R.DTYPE_CODES


# -- text of shapes in terms of dims[k] -------------------------------------------------------
def size_text(s: Size, symbols: Sequence[str]) -> str:
    """``s`` written over ``dims[k]`` (``/`` is floor division of non-negative values)."""
    if isinstance(s, int):
        return str(s)
    parts = []
    for mono, coeff in s.terms:
        factors = []
        for a in mono:
            if isinstance(a, str):
                factors.append(f"dims[{list(symbols).index(a)}]")
            else:
                factors.append(_floordiv_text(a, symbols))
        if coeff != 1 or not factors:
            factors.insert(0, str(coeff))
        parts.append("*".join(factors))
    return " + ".join(parts).replace("+ -", "- ")


def _floordiv_text(a: FloorDiv, symbols: Sequence[str]) -> str:
    return f"({size_text(a.num, symbols)}) / {a.den}"


def shape_text(shape: Sequence[Size], symbols: Sequence[str]) -> str:
    inner = ", ".join(size_text(s, symbols) for s in shape)
    return f"({inner}{',' if len(shape) == 1 else ''})"


def dim_code(s: Size, symbols: Sequence[str]) -> str:
    """``NAME_input_dim``'s encoding: a static size, ``-1 - k`` for dims[k], or EXPR."""
    if isinstance(s, int):
        return int_literal(s)
    if s.is_symbol():
        return int_literal(-1 - list(symbols).index(s.terms[0][0][0]))  # type: ignore[arg-type]
    return "SG_DIM_EXPR"


# -- helpers ----------------------------------------------------------------------------------
_HOST_HELPERS = {
    "sg_ck_mul": """static inline int64_t sg_ck_mul(int64_t a, int64_t b, int* ovf) {
  if (a == 0 || b == 0) return 0;
  if (a > 0 ? (b > 0 ? a > INT64_MAX / b : b < INT64_MIN / a)
            : (b > 0 ? a < INT64_MIN / b : a < INT64_MAX / b)) { *ovf = 1; return 0; }
  return a * b;
}""",
    "sg_ck_add": """static inline int64_t sg_ck_add(int64_t a, int64_t b, int* ovf) {
  if ((b > 0 && a > INT64_MAX - b) || (b < 0 && a < INT64_MIN - b)) { *ovf = 1; return 0; }
  return a + b;
}""",
    "sg_floordiv": """static inline int64_t sg_floordiv(int64_t a, int64_t b) {
  return a >= 0 ? a / b : -((-(a + 1)) / b) - 1;
}""",
    "sg_align64": """static inline int64_t sg_align64(int64_t a, int* ovf) {
  if (a > INT64_MAX - 63) { *ovf = 1; return 0; }
  return (a + 63) / 64 * 64;
}""",
    "sg_max64": "static inline int64_t sg_max64(int64_t a, int64_t b) { return a > b ? a : b; }",
}


def host_helpers(text: str) -> str:
    """The checked-arithmetic helpers that ``text`` calls."""
    return "\n".join(src for name, src in _HOST_HELPERS.items() if name + "(" in text)


def gemm_helper(dtype: str, name: str) -> str:
    t = {"float32": "float", "float64": "double", "int32": "int32_t", "int64": "int64_t"}[dtype]
    tag = SC.TAG[dtype]
    blas = ""
    if dtype in ("float32", "float64"):
        fn = "cblas_sgemm" if dtype == "float32" else "cblas_dgemm"
        one, zero = ("1.0f", "0.0f") if dtype == "float32" else ("1.0", "0.0")
        blas = f"""#ifdef {name}_USE_CBLAS
  if (M > 0 && N > 0 && K > 0 && M <= INT32_MAX && N <= INT32_MAX && K <= INT32_MAX) {{
    int ta = -1, tb = -1;
    int64_t lda = 0, ldb = 0;
    if ((sak == 1 || K == 1) && (M == 1 || sai >= K)) {{ ta = CblasNoTrans; lda = M == 1 ? K : sai; }}
    else if ((sai == 1 || M == 1) && (K == 1 || sak >= M)) {{ ta = CblasTrans; lda = K == 1 ? M : sak; }}
    if ((sbj == 1 || N == 1) && (K == 1 || sbk >= N)) {{ tb = CblasNoTrans; ldb = K == 1 ? N : sbk; }}
    else if ((sbk == 1 || K == 1) && (N == 1 || sbj >= K)) {{ tb = CblasTrans; ldb = N == 1 ? K : sbj; }}
    if (ta >= 0 && tb >= 0 && lda >= 1 && ldb >= 1 && lda <= INT32_MAX && ldb <= INT32_MAX) {{
      {fn}(CblasRowMajor, (enum CBLAS_TRANSPOSE)ta, (enum CBLAS_TRANSPOSE)tb, (int)M, (int)N, (int)K,
                  {one}, A, (int)lda, B, (int)ldb, {zero}, C, (int)N);
      return;
    }}
  }}
#endif
"""
    if dtype in ("float32", "float64"):
        fma = "c[j] += a * b[j * sbj];"
    else:
        u = "uint32_t" if dtype == "int32" else "uint64_t"
        fma = f"c[j] = ({t})(({u})c[j] + ({u})a * ({u})b[j * sbj]);"
    return f"""/* C[M, N] = A[M, K] @ B[K, N]; A and B strided, C contiguous. Blocked loops; every
 * C[i, j] adds its K products in increasing k. */
static void sg_gemm_{tag}(int64_t M, int64_t N, int64_t K, const {t}* A, int64_t sai, int64_t sak,
                         const {t}* B, int64_t sbk, int64_t sbj, {t}* C) {{
{blas}  for (int64_t i = 0; i < M * N; ++i) C[i] = 0;
  for (int64_t i0 = 0; i0 < M; i0 += 32) {{
    const int64_t i1 = i0 + 32 < M ? i0 + 32 : M;
    for (int64_t k0 = 0; k0 < K; k0 += 128) {{
      const int64_t k1 = k0 + 128 < K ? k0 + 128 : K;
      for (int64_t j0 = 0; j0 < N; j0 += 256) {{
        const int64_t j1 = j0 + 256 < N ? j0 + 256 : N;
        for (int64_t i = i0; i < i1; ++i) {{
          {t}* c = C + i * N;
          for (int64_t k = k0; k < k1; ++k) {{
            const {t} a = A[i * sai + k * sak];
            const {t}* b = B + k * sbk;
            for (int64_t j = j0; j < j1; ++j) {fma}
          }}
        }}
      }}
    }}
  }}
}}"""


def bits_helper(dialect_helper: str, dtype: str) -> str:
    if dtype == "float32":
        return (f"{dialect_helper} float sg_bits_f32(unsigned int u) {{\n"
                "  union { unsigned int u; float f; } c; c.u = u; return c.f;\n}")
    return (f"{dialect_helper} double sg_bits_f64(unsigned long long u) {{\n"
            "  union { unsigned long long u; double f; } c; c.u = u; return c.f;\n}")


def nparts_helper(dialect_helper: str, block: int, cap: int) -> str:
    return (f"{dialect_helper} long long sg_nparts_(long long n) {{\n"
            f"  const long long g = (n + {block - 1}) / {block};\n"
            f"  return g < 1 ? 1 : (g > {cap} ? {cap} : g);\n}}")


# -- constants ----------------------------------------------------------------------------------
def const_arrays(p: _Program) -> list[str]:
    import numpy as np

    out = []
    for b in p.lp.consts:
        assert b.value is not None
        flat = np.ascontiguousarray(b.value).reshape(-1)
        name = p.var[id(b)]
        n = max(flat.size, 1)
        qual = "__device__ const" if p.d.parallel else "static const"
        finite = b.dtype not in ("float32", "float64") or bool(np.isfinite(flat).all())
        if p.d.parallel and not finite:
            bits = flat.view(np.uint32 if b.dtype == "float32" else np.uint64)
            ut = "unsigned int" if b.dtype == "float32" else "unsigned long long"
            suffix = "u" if b.dtype == "float32" else "ull"
            vals = [f"0x{int(v):x}{suffix}" for v in bits] or ["0"]
            out.append(f"{qual} {ut} {name}_bits[{n}] = {{{_wrap(vals)}}};")
            p.var[id(b)] = f"(({p.ctype(b.dtype)}*){name}_bits)"
            continue
        vals = [SC.literal(v.item() if hasattr(v, "item") else v, b.dtype, p.d) for v in flat] or ["0"]
        out.append(f"{qual} {p.ctype(b.dtype)} {name}[{n}] = {{{_wrap(vals)}}};")
    return out


def _wrap(vals: list[str], width: int = 96) -> str:
    lines = []
    cur = ""
    for v in vals:
        piece = v + ", "
        if len(cur) + len(piece) > width and cur:
            lines.append(cur.rstrip())
            cur = ""
        cur += piece
    lines.append(cur.rstrip().rstrip(","))
    if len(lines) == 1:
        return lines[0]
    return "\n  " + "\n  ".join(lines) + "\n"


# -- prepare: sizes, constraints, workspace -------------------------------------------------------
def prepare(p: _Program) -> tuple[str, dict[str, int]]:
    """The static function computing every size into ``sz``; and each name's slot in sz."""
    name = p.name
    tbl = p.sizes
    slots: dict[str, int] = {}
    lines = ["int ovf = 0;", "int bad = 0;"]
    nd = len(tbl.symbols)
    if nd:
        lines += [f"if (dims == NULL) return {name}_ERR_NULL;",
                  f"for (int k = 0; k < {nd}; ++k) if (dims[k] < 0) return {name}_ERR_NEGATIVE_DIM;"]
    for k, sym in enumerate(tbl.symbols):
        var = tbl.sym_var[sym]
        lines.append(f"const int64_t {var} = dims[{k}];  /* {comment_text(sym)} */")
        slots[var] = len(slots)
    for v in tbl.vars:
        lines.append(f"const int64_t {v.name} = {v.code};  {tbl.comment(v)}")
        slots[v.name] = len(slots)
    checks = []
    for v in tbl.vars:
        if v.extent:
            checks.append(f"if ({v.name} < 0) bad = 1;  {tbl.comment(v)}")
    for lhs, rel, rhs, what in tbl.checks:
        checks.append(f"if (!({lhs} {rel} {rhs})) bad = 1;  /* {comment_text(what)} */")
    for r, m, what in p.nonempty:
        cond = f"{r} == 0" if m is None else f"{r} == 0 && {m} != 0"
        checks.append(f"if ({cond}) bad = 1;  /* {comment_text(what)} */")
    lines += checks
    lines.append("int64_t off = 0;")
    for k, reg in enumerate(p.regions):
        slots[f"region{k}"] = len(slots)
        sizes = [tbl.ref(s, True) for s in reg.sizes] or ["0"]
        expr = sizes[0]
        for s in sizes[1:]:
            expr = f"sg_max64({expr}, {s})"
        lines.append(f"sz[{slots[f'region{k}']}] = off;  /* {comment_text(reg.what)} */")
        lines.append(f"off = sg_ck_add(off, sg_align64({expr}, &ovf), &ovf);")
    slots["workspace"] = len(slots)
    lines.append(f"sz[{slots['workspace']}] = off;")
    lines += [f"if (ovf) return {name}_ERR_OVERFLOW;",
              f"if (bad) return {name}_ERR_DIM_MISMATCH;"]
    for var, k in slots.items():
        if not var.startswith("region") and var != "workspace":
            lines.append(f"sz[{k}] = {var};")
    lines.append("return 0;")
    n = max(len(slots), 1)
    text = [f"#define {name}_NSZ_ {n}",
            f"static int32_t {name}_prepare_(const int64_t* dims, int64_t* sz) {{"]
    if not nd:
        text.append("  (void)dims;")
    text += ["  " + line for line in lines]
    text.append("}")
    return "\n".join(text), slots


# -- the entry point ---------------------------------------------------------------------------------
def entry(p: _Program, slots: dict[str, int]) -> str:
    import re

    name = p.name
    lp = p.lp
    cuda = p.d.parallel
    body: list[str] = []
    n_in, n_out = len(lp.inputs), len(lp.outputs)
    if n_in:
        body.append(f"if (inputs == NULL) return {name}_ERR_NULL;")
    if n_out:
        body.append(f"if (outputs == NULL) return {name}_ERR_NULL;")
    ws = slots["workspace"]
    for k, b in enumerate(lp.inputs):
        nbytes = p.sizes.ref(S.mul(b.size, ITEMSIZE[b.dtype]), True)
        body.append(f"if (inputs[{k}] == NULL && {nbytes} != 0) return {name}_ERR_NULL;")
    for k, b in enumerate(lp.outputs):
        nbytes = p.sizes.ref(S.mul(b.size, ITEMSIZE[b.dtype]), True)
        body.append(f"if (outputs[{k}] == NULL && {nbytes} != 0) return {name}_ERR_NULL;")
    body.append(f"if (workspace == NULL && sz[{ws}] != 0) return {name}_ERR_NULL;")
    body.append("unsigned char* const ws_ = (unsigned char*)workspace;")
    body.append("(void)ws_;")
    for k, b in enumerate(lp.inputs):
        body.append(f"const {p.ctype(b.dtype)}* const {p.var[id(b)]} = "
                    f"(const {p.ctype(b.dtype)}*)inputs[{k}];")
    for pos, b in enumerate(lp.outputs):
        if p.home[id(b)] == pos:
            body.append(f"{p.ctype(b.dtype)}* const {p.var[id(b)]} = ({p.ctype(b.dtype)}*)outputs[{pos}];")
    region_of: dict[int, int] = {}
    for k, reg in enumerate(p.regions):
        for b in reg.buffers:
            region_of[id(b)] = k
    for b in lp.temps + lp.scratch:
        k = region_of[id(b)]
        body.append(f"{p.ctype(b.dtype)}* const {p.var[id(b)]} = "
                    f"({p.ctype(b.dtype)}*)(ws_ + sz[{slots[f'region{k}']}]);")
    if cuda:
        err_region = next((k for k, r in enumerate(p.regions) if r.what == "error"), None)
        parts_region = next((k for k, r in enumerate(p.regions) if r.what == "partials"), None)
        if err_region is not None:
            body.append(f"int* const sg_err = (int*)(ws_ + sz[{slots[f'region{err_region}']}]);")
        if parts_region is not None:
            body.append(f"unsigned char* const sg_parts = ws_ + sz[{slots[f'region{parts_region}']}];")
        body.append("int st_ = 0;")
        if err_region is not None:
            body.append(f"st_ |= {name}_LAUNCH_LOOPS({name}_sg_clear, dim3(1), dim3(1), 0, stream, sg_err);")
        for ln in p.launches:
            g = ln.grid
            gx = [_grid_expr(p, gd) for gd in g]
            macro = f"{name}_LAUNCH" if ln.uses_sync else f"{name}_LAUNCH_LOOPS"
            body.append(f"st_ |= {macro}({ln.kernel}, dim3({gx[0]}, {gx[1]}, {gx[2]}), "
                        f"dim3({ln.block[0]}, {ln.block[1]}, {ln.block[2]}), 0, stream"
                        f"{', ' if ln.params else ''}{p.call_args(ln.params)});")
        for pos, b in enumerate(lp.outputs):
            if p.home[id(b)] != pos:
                nbytes = p.sizes.ref(S.mul(b.size, ITEMSIZE[b.dtype]), True)
                body.append(f"st_ |= {name}_LAUNCH_LOOPS({name}_sg_copy, dim3(sg_grid_({nbytes}, 256, 4096)), "
                            f"dim3(256), 0, stream, (const unsigned char*){p.var[id(b)]}, "
                            f"(unsigned char*)outputs[{pos}], (long long){nbytes});")
        body.append(f"if (st_ != 0 || {name}_LAST_ERROR() != 0) return {name}_ERR_CUDA;")
        body.append("return 0;")
    else:
        body += p.index_checks
        if p.uses_err:
            body.append("int32_t sg_err_word = 0;")
            body.append("int32_t* const sg_err = &sg_err_word;")
        body += p.calls
        for pos, b in enumerate(lp.outputs):
            if p.home[id(b)] != pos:
                nbytes = p.sizes.ref(S.mul(b.size, ITEMSIZE[b.dtype]), True)
                body.append(f"if ({nbytes} != 0) memcpy(outputs[{pos}], {p.var[id(b)]}, (size_t){nbytes});")
        body.append("return sg_err_word;" if p.uses_err else "return 0;")
    text = "\n".join(body)
    kept = []
    for line in body:
        m = re.match(r"[\w ]+\* const (\w+) = ", line)
        if m and len(re.findall(rf"\b{m.group(1)}\b", text)) == 1:
            continue
        kept.append(line)
    body = kept
    text = "\n".join(body)
    used = set(re.findall(r"\b(d_\w+|e\d+)\b", text))
    decls = [f"const int64_t {v} = sz[{k}];" for v, k in slots.items()
             if v in used and not v.startswith("region") and v != "workspace"]
    head = [f"int64_t sz[{name}_NSZ_];",
            f"const int32_t rc_ = {name}_prepare_(dims, sz);",
            "if (rc_ != 0) return rc_;"]
    args = "const void* const* inputs, void* const* outputs, const int64_t* dims, void* workspace"
    if cuda:
        args += ", cudaStream_t stream"
    sig = f"int32_t {name}({args})"
    return "\n".join([sig + " {", *["  " + x for x in head + decls + body], "}"])


def _grid_expr(p: _Program, g: object) -> str:
    from symgrad.backends.cstyle.render import GridDim

    assert isinstance(g, GridDim)
    if isinstance(g.count, int):
        n = max(1, min(g.cap, -(-g.count // g.per)))
        return f"{n}u"
    return f"(unsigned)sg_grid_({p.sizes.ref(g.count, True)}, {g.per}, {g.cap})"


def entry_frame(p: _Program, slots: dict[str, int], program_symbol: str) -> str:
    """The entry point of the frame glue: checks, frame, one call of ``program_symbol``."""
    import re

    name = p.name
    lp = p.lp
    body: list[str] = []
    if lp.inputs:
        body.append(f"if (inputs == NULL) return {name}_ERR_NULL;")
    if lp.outputs:
        body.append(f"if (outputs == NULL) return {name}_ERR_NULL;")
    for k, b in enumerate(lp.inputs):
        nbytes = p.sizes.ref(S.mul(b.size, ITEMSIZE[b.dtype]), True)
        body.append(f"if (inputs[{k}] == NULL && {nbytes} != 0) return {name}_ERR_NULL;")
    for k, b in enumerate(lp.outputs):
        nbytes = p.sizes.ref(S.mul(b.size, ITEMSIZE[b.dtype]), True)
        body.append(f"if (outputs[{k}] == NULL && {nbytes} != 0) return {name}_ERR_NULL;")
    body.append(f"if (workspace == NULL && sz[{slots['workspace']}] != 0) return {name}_ERR_NULL;")
    for k, b in enumerate(lp.inputs):
        body.append(f"const {p.ctype(b.dtype)}* const {p.var[id(b)]} = "
                    f"(const {p.ctype(b.dtype)}*)inputs[{k}];")
    body += p.index_checks
    n_in = len(lp.inputs)
    n_out = len({b.index for b in lp.outputs})
    n_const = len(lp.consts)
    n_slots = len(lp.plan.slots) if lp.plan is not None else 0
    nf = n_in + n_out + n_const + n_slots
    body.append(f"void* frame[{max(nf, 1)}];")
    body.append("unsigned char* const ws_ = (unsigned char*)workspace;")
    body.append("(void)ws_;")
    for k in range(n_in):
        body.append(f"frame[{k}] = (void*)inputs[{k}];")
    done: set[int] = set()
    for pos, b in enumerate(lp.outputs):
        if b.index not in done:
            done.add(b.index)
            body.append(f"frame[{n_in + b.index}] = outputs[{pos}];")
    for b in lp.consts:
        body.append(f"frame[{n_in + n_out + b.index}] = (void*){p.var[id(b)]};")
    for k in range(n_slots):
        reg = p.slot_region[k]
        body.append(f"frame[{n_in + n_out + n_const + k}] = ws_ + sz[{slots[f'region{reg}']}];")
    nd = len(lp.symbols)
    dims_arg = "dims" if nd else "sg_no_dims"
    if not nd:
        body.append("static const int64_t sg_no_dims[1] = {0};")
    body.append(f"if ({program_symbol}(frame, {dims_arg}) != 0) return {name}_ERR_INDEX;")
    for pos, b in enumerate(lp.outputs):
        if p.home[id(b)] != pos:
            nbytes = p.sizes.ref(S.mul(b.size, ITEMSIZE[b.dtype]), True)
            body.append(f"if ({nbytes} != 0) memcpy(outputs[{pos}], outputs[{p.home[id(b)]}], "
                        f"(size_t){nbytes});")
    body.append("return 0;")
    text = "\n".join(body)
    kept = []
    for line in body:
        m = re.match(r"[\w ]+\* const (\w+) = ", line)
        if m and len(re.findall(rf"\b{m.group(1)}\b", text)) == 1:
            continue
        kept.append(line)
    body = kept
    text = "\n".join(body)
    used = set(re.findall(r"\b(d_\w+|e\d+)\b", text))
    decls = [f"const int64_t {v} = sz[{k}];" for v, k in slots.items()
             if v in used and not v.startswith("region") and v != "workspace"]
    head = [f"int64_t sz[{name}_NSZ_];",
            f"const int32_t rc_ = {name}_prepare_(dims, sz);",
            "if (rc_ != 0) return rc_;"]
    sig = (f"int32_t {name}(const void* const* inputs, void* const* outputs, const int64_t* dims, "
           "void* workspace)")
    return "\n".join([sig + " {", *["  " + x for x in head + decls + body], "}"])


def fortran_gemm(dtype: str, prefix: str, name: str) -> str:
    """``PREFIX_sgemm``/``_dgemm`` with the Fortran BLAS interface (column-major)."""
    t = "float" if dtype == "float32" else "double"
    fn = f"{prefix}_{'s' if dtype == 'float32' else 'd'}gemm"
    cb = "cblas_sgemm" if dtype == "float32" else "cblas_dgemm"
    return f"""/* C = alpha op(A) op(B) + beta C, column-major, Fortran BLAS conventions */
void {fn}(const char* ta, const char* tb, const int* pm, const int* pn, const int* pk,
          const {t}* alpha, const {t}* a, const int* plda, const {t}* b, const int* pldb,
          const {t}* beta, {t}* c, const int* pldc);
void {fn}(const char* ta, const char* tb, const int* pm, const int* pn, const int* pk,
          const {t}* alpha, const {t}* a, const int* plda, const {t}* b, const int* pldb,
          const {t}* beta, {t}* c, const int* pldc) {{
  const int64_t m = *pm, n = *pn, k = *pk, lda = *plda, ldb = *pldb, ldc = *pldc;
  const int na = (*ta == 'N' || *ta == 'n'), nb = (*tb == 'N' || *tb == 'n');
#ifdef {name}_USE_CBLAS
  {cb}(CblasColMajor, na ? CblasNoTrans : CblasTrans, nb ? CblasNoTrans : CblasTrans,
              *pm, *pn, *pk, *alpha, a, *plda, b, *pldb, *beta, c, *pldc);
  return;
#endif
  for (int64_t j = 0; j < n; ++j) {{
    {t}* cj = c + j * ldc;
    for (int64_t i = 0; i < m; ++i) cj[i] = *beta == 0 ? 0 : *beta * cj[i];
    for (int64_t l = 0; l < k; ++l) {{
      const {t} blj = *alpha * (nb ? b[l + j * ldb] : b[j + l * ldb]);
      if (na) {{
        const {t}* al = a + l * lda;
        for (int64_t i = 0; i < m; ++i) cj[i] += al[i] * blj;
      }} else {{
        for (int64_t i = 0; i < m; ++i) cj[i] += a[l + i * lda] * blj;
      }}
    }}
  }}
}}"""


# -- metadata functions ------------------------------------------------------------------------------
def metadata(p: _Program, slots: dict[str, int]) -> str:
    abi, _codes_list, _err, dcodes = _codes()
    name = p.name
    lp = p.lp
    syms = lp.symbols
    out: list[str] = []

    def table(fn: str, ctype: str, values: list[str], default: str, arg: str = "i",
              count: int | None = None) -> None:
        n = len(values) if count is None else count
        vals = values or [default]
        out.append(f"{fn} {{\n  static const {ctype} t[{max(len(vals), 1)}] = {{{', '.join(vals)}}};\n"
                   f"  return ({arg} >= 0 && {arg} < {n}) ? t[{arg}] : {default};\n}}")

    out.append(f"int32_t {name}_abi_version(void) {{ return {name}_ABI_VERSION; }}")
    out.append(f"int32_t {name}_num_inputs(void) {{ return {len(lp.inputs)}; }}")
    out.append(f"int32_t {name}_num_outputs(void) {{ return {len(lp.outputs)}; }}")
    out.append(f"int32_t {name}_num_dims(void) {{ return {len(syms)}; }}")
    for kind, bufs, names in (("input", lp.inputs, p.in_names), ("output", lp.outputs, p.out_names)):
        table(f"const char* {name}_{kind}_name(int32_t i)", "char* const",
              [c_string(n) for n in names], "NULL", count=len(bufs))
        table(f"int32_t {name}_{kind}_dtype(int32_t i)", "int32_t",
              [str(dcodes[b.dtype]) for b in bufs], "-1", count=len(bufs))
        table(f"int32_t {name}_{kind}_rank(int32_t i)", "int32_t",
              [str(len(b.shape)) for b in bufs], "-1", count=len(bufs))
        table(f"const char* {name}_{kind}_shape_text(int32_t i)", "char* const",
              [c_string(shape_text(b.shape, syms)) for b in bufs], "NULL", count=len(bufs))
        # per-axis codes, flattened with an offset table
        flat: list[str] = []
        starts: list[str] = []
        for b in bufs:
            starts.append(str(len(flat)))
            flat += [dim_code(s, syms).replace("SG_DIM_EXPR", f"{name}_DIM_EXPR") for s in b.shape]
        out.append(
            f"int64_t {name}_{kind}_dim(int32_t i, int32_t axis) {{\n"
            f"  static const int64_t codes[{max(len(flat), 1)}] = {{{', '.join(flat) or '0'}}};\n"
            f"  static const int32_t start[{max(len(bufs), 1)}] = {{{', '.join(starts) or '0'}}};\n"
            f"  if (i < 0 || i >= {len(bufs)} || axis < 0 || axis >= {name}_{kind}_rank(i)) "
            f"return {name}_DIM_INVALID;\n"
            f"  return codes[start[i] + axis];\n}}")
        cases = []
        for k, b in enumerate(bufs):
            assigns = " ".join(f"shape[{a}] = {_slot_ref(p, s, slots)};" for a, s in enumerate(b.shape))
            cases.append(f"    case {k}: {assigns} break;" if assigns else f"    case {k}: break;")
        out.append(
            f"int32_t {name}_{kind}_shape(int32_t i, const int64_t* dims, int64_t* shape) {{\n"
            f"  int64_t sz[{name}_NSZ_];\n"
            f"  if (i < 0 || i >= {len(bufs)}) return {name}_ERR_BAD_ARGUMENT;\n"
            f"  if (shape == NULL && {name}_{kind}_rank(i) > 0) return {name}_ERR_BAD_ARGUMENT;\n"
            f"  const int32_t rc = {name}_prepare_(dims, sz);\n"
            f"  if (rc != 0) return rc;\n"
            f"  switch (i) {{\n" + "\n".join(cases) + "\n    default: break;\n  }\n"
            "  (void)sz;\n  return 0;\n}")
    table(f"const char* {name}_dim_name(int32_t k)", "char* const",
          [c_string(s) for s in syms], "NULL", arg="k")
    srcs = [lp.size_sources[s] for s in syms]
    out.append(
        f"int32_t {name}_dim_source(int32_t k, int32_t* input, int32_t* axis) {{\n"
        f"  static const int32_t src[{max(len(srcs), 1) * 2}] = "
        f"{{{', '.join(f'{a}, {b}' for a, b in srcs) or '0, 0'}}};\n"
        f"  if (k < 0 || k >= {len(srcs)} || input == NULL || axis == NULL) return {name}_ERR_BAD_ARGUMENT;\n"
        f"  *input = src[2 * k];\n  *axis = src[2 * k + 1];\n  return 0;\n}}")
    out.append(
        f"int32_t {name}_workspace_size(const int64_t* dims, int64_t* bytes) {{\n"
        f"  int64_t sz[{name}_NSZ_];\n"
        f"  if (bytes == NULL) return {name}_ERR_BAD_ARGUMENT;\n"
        f"  const int32_t rc = {name}_prepare_(dims, sz);\n"
        f"  if (rc != 0) return rc;\n"
        f"  *bytes = sz[{slots['workspace']}];\n  return 0;\n}}")
    out.append(
        f"int32_t {name}_check_dims(const int64_t* dims) {{\n"
        f"  int64_t sz[{name}_NSZ_];\n  return {name}_prepare_(dims, sz);\n}}")
    _, codes, _, _ = _codes()
    err_cases = "\n".join(f"    case {v}: return {c_string(msg)};" for _, v, msg in codes)
    out.append(f"const char* {name}_error_string(int32_t code) {{\n  switch (code) {{\n{err_cases}\n"
               f"    default: return \"unknown error code\";\n  }}\n}}")
    if p.d.parallel:
        err_region = next((k for k, r in enumerate(p.regions) if r.what == "error"), None)
        if err_region is None:
            body = "  (void)workspace; (void)stream;\n  return 0;"
        else:
            body = (f"  int32_t word = 0;\n  if (workspace == NULL) return {name}_ERR_NULL;\n"
                    f"  if ({name}_READ_ERROR(&word, (const unsigned char*)workspace, stream) != 0) "
                    f"return {name}_ERR_CUDA;\n  return word;")
        out.append(f"int32_t {name}_status(const void* workspace, cudaStream_t stream) {{\n"
                   "  /* the error word sits at the start of the workspace */\n" + body + "\n}")
    del abi
    return "\n\n".join(out)


def _slot_ref(p: _Program, s: Size, slots: dict[str, int]) -> str:
    if isinstance(s, int):
        return int_literal(s)
    return f"sz[{slots[p.sizes.ref(s, True)]}]"


# -- the header ---------------------------------------------------------------------------------------
def header(p: _Program, target: str) -> str:
    abi, codes, _, dcodes = _codes()
    name = p.name
    lp = p.lp
    syms = lp.symbols
    guard = f"{name.upper()}_H_INCLUDED"
    cuda = p.d.parallel
    lines = [f"/* {name}.h: the C ABI of a computation generated by symgrad (target {target}).",
             " *",
             f" * int32_t {name}(inputs, outputs, dims, workspace{', stream' if cuda else ''}) "
             "computes every output from the inputs.",
             " * Arrays are dense, C order (row-major), of the dtype listed below; bool is one byte (0 or 1).",
             " * Sizes that are not fixed are given in dims[] (int64_t), in the order listed below.",
             f" * The workspace is caller memory of {name}_workspace_size(dims) bytes, aligned to 64 bytes",
             " * (it may be NULL when that size is 0); it holds temporaries between calls of one run only.",
             " * Nothing is allocated and no global state is kept: concurrent calls with different",
             " * outputs and workspaces are safe. Outputs must not overlap inputs, each other or the",
             " * workspace. When the call returns an error from dims (codes 1-4), nothing was written.",
             ]
    if cuda:
        lines += [" * CUDA: inputs[], outputs[] hold DEVICE pointers (the arrays themselves are host",
                  " * arrays), the workspace is device memory, dims is host memory; the kernels are",
                  " * queued on `stream` and the call returns without waiting. Index errors found by",
                  f" * the kernels are reported by {name}_status(workspace, stream), which waits."]
    lines += [" * See docs/abi.md of symgrad for the complete contract.", " *", " * Inputs:"]
    for k, (b, n) in enumerate(zip(lp.inputs, p.in_names)):
        lines.append(f" *   {k}: {comment_text(repr(n))} -> {name}_IN_{p.in_ids[k][3:]}  "
                     f"{b.dtype} {comment_text(shape_text(b.shape, syms))}")
    lines.append(" * Outputs:")
    for k, (b, n) in enumerate(zip(lp.outputs, p.out_names)):
        lines.append(f" *   {k}: {comment_text(repr(n))} -> {name}_OUT_{p.out_ids[k][4:]}  "
                     f"{b.dtype} {comment_text(shape_text(b.shape, syms))}")
    lines.append(" * Sizes (dims):" if syms else " * Sizes (dims): none (dims may be NULL)")
    for k, s in enumerate(syms):
        pos, axis = lp.size_sources[s]
        lines.append(f" *   dims[{k}]: {comment_text(repr(s))} -> {name}_DIM_{p.sizes.sym_var[s][2:]}"
                     f"  (axis {axis} of input {pos})")
    lines.append(" * Name mapping (user name -> C identifier) is the one shown above.")
    lines.append(" */")
    lines += [f"#ifndef {guard}", f"#define {guard}", "", "#include <stdint.h>", "",
              "#ifdef __cplusplus", 'extern "C" {', "#endif", ""]
    if cuda:
        lines += ["/* cudaStream_t is `struct CUstream_st*` (cuda_runtime.h need not be included) */",
                  "struct CUstream_st;", ""]
    lines.append(f"#define {name}_ABI_VERSION {abi}")
    lines.append(f"#define {name}_NUM_INPUTS {len(lp.inputs)}")
    lines.append(f"#define {name}_NUM_OUTPUTS {len(lp.outputs)}")
    lines.append(f"#define {name}_NUM_DIMS {len(syms)}")
    lines.append("")
    lines.append("/* error codes returned by the functions below */")
    for suffix, v, msg in codes:
        if suffix == "ERR_CUDA" and not cuda:
            continue
        lines.append(f"#define {name}_{suffix} {v}  /* {comment_text(msg)} */")
    lines.append("")
    lines.append("/* dtype codes */")
    for dt, v in dcodes.items():
        lines.append(f"#define {name}_{dt.upper()} {v}  /* {dt}: "
                     f"{ {'float32': 'float', 'float64': 'double', 'int32': 'int32_t', 'int64': 'int64_t', 'bool': 'uint8_t (0 or 1)'}[dt]} */")
    lines.append("")
    lines.append(f"/* {name}_input_dim / {name}_output_dim: a size that is neither static nor one dims[k] */")
    lines.append(f"#define {name}_DIM_EXPR (-INT64_MAX)")
    lines.append(f"#define {name}_DIM_INVALID (-INT64_MAX - 1)")
    lines.append("")
    lines.append("/* positions in inputs[] / outputs[] / dims[] */")
    for k, i in enumerate(p.in_ids):
        lines.append(f"#define {name}_IN_{i[3:]} {k}")
    for k, i in enumerate(p.out_ids):
        lines.append(f"#define {name}_OUT_{i[4:]} {k}")
    for k, s in enumerate(syms):
        lines.append(f"#define {name}_DIM_{p.sizes.sym_var[s][2:]} {k}")
    lines.append("")
    stream = ", struct CUstream_st* stream" if cuda else ""
    decls: list[tuple[str | None, str]] = [
        ("run the computation; 0 or an error code",
         f"int32_t {name}(const void* const* inputs, void* const* outputs, const int64_t* dims, "
         f"void* workspace{stream});"),
    ]
    if cuda:
        decls.append(("wait for `stream`, then 0 or the error code the kernels of the last run "
                      "on this workspace reported",
                      f"int32_t {name}_status(const void* workspace, struct CUstream_st* stream);"))
    decls += [
        ("ABI version (this header: NAME_ABI_VERSION)", f"int32_t {name}_abi_version(void);"),
        ("number of inputs, outputs, dims", f"int32_t {name}_num_inputs(void);"),
        (None, f"int32_t {name}_num_outputs(void);"),
        (None, f"int32_t {name}_num_dims(void);"),
        ("user names (UTF-8), NULL if out of range", f"const char* {name}_input_name(int32_t i);"),
        (None, f"const char* {name}_output_name(int32_t i);"),
        (None, f"const char* {name}_dim_name(int32_t k);"),
        ("dtype code, -1 if out of range", f"int32_t {name}_input_dtype(int32_t i);"),
        (None, f"int32_t {name}_output_dtype(int32_t i);"),
        ("rank, -1 if out of range", f"int32_t {name}_input_rank(int32_t i);"),
        (None, f"int32_t {name}_output_rank(int32_t i);"),
        ("size of one axis: >= 0 static; -1-k: it is dims[k]; NAME_DIM_EXPR: an expression of "
         "dims (see *_shape_text); NAME_DIM_INVALID: out of range",
         f"int64_t {name}_input_dim(int32_t i, int32_t axis);"),
        (None, f"int64_t {name}_output_dim(int32_t i, int32_t axis);"),
        ("the shape as text over dims[k], e.g. \"(dims[0], 3)\" (/ floors); NULL if out of range",
         f"const char* {name}_input_shape_text(int32_t i);"),
        (None, f"const char* {name}_output_shape_text(int32_t i);"),
        ("the shape for these dims into shape[rank]; 0 or an error code",
         f"int32_t {name}_input_shape(int32_t i, const int64_t* dims, int64_t* shape);"),
        (None, f"int32_t {name}_output_shape(int32_t i, const int64_t* dims, int64_t* shape);"),
        ("which input axis gives dims[k]; 0 or NAME_ERR_BAD_ARGUMENT",
         f"int32_t {name}_dim_source(int32_t k, int32_t* input, int32_t* axis);"),
        ("workspace bytes for these dims into *bytes; 0 or an error code",
         f"int32_t {name}_workspace_size(const int64_t* dims, int64_t* bytes);"),
        ("0 if these dims are valid, else the error code the entry point would return",
         f"int32_t {name}_check_dims(const int64_t* dims);"),
        ("a static English message for an error code", f"const char* {name}_error_string(int32_t code);"),
    ]
    for doc, decl in decls:
        if doc:
            lines.append(f"/* {comment_text(doc.replace('NAME', name))} */")
        lines.append(decl)
    lines += ["", "#ifdef __cplusplus", "}", "#endif", "", f"#endif  /* {guard} */", ""]
    return "\n".join(lines)


__all__ = ["const_arrays", "entry", "header", "host_helpers", "metadata", "prepare", "shape_text",
           "size_text"]
_ = (Buffer, Dim)
