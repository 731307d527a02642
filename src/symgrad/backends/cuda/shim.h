// shim.h: run CUDA kernel source on the CPU with a C++20 host compiler.
//
// Include this header, then the unchanged .cu source, in one translation unit:
//
//     #include "shim.h"
//     #include "program.cu"
//     ... sgshim::launch(kernel, grid, block, shmem, args...);
//
// and build it with `g++ -std=c++20`. Under nvcc or NVRTC (__CUDACC__ defined) the header
// is empty, so it is harmless to include it in device builds too.
//
// What is emulated
//   * __global__/__device__/__host__/__forceinline__/__launch_bounds__/__align__ qualifiers;
//   * threadIdx, blockIdx, blockDim, gridDim, warpSize, dim3, uint3 and the usual vector
//     types (float2, float4, double2, int2, int4, ...), make_* helpers;
//   * __shared__ memory, static (`__shared__ float s[256];`) and dynamic
//     (`extern __shared__ float s[];`, which needs SGSHIM_DYNAMIC_SHARED(type, name) once in
//     the translating unit after the source; symgrad's host driver adds it);
//   * __syncthreads() (and _count/_and/_or), __syncwarp(), warp shuffles (__shfl_sync,
//     __shfl_up_sync, __shfl_down_sync, __shfl_xor_sync, with width), votes
//     (__ballot_sync, __any_sync, __all_sync), __activemask();
//   * atomics on int, unsigned, unsigned long long, float, double (atomicAdd, atomicSub,
//     atomicMax, atomicMin, atomicExch, atomicCAS, atomicAnd, atomicOr, atomicXor);
//   * the float and double math library (expf, log1pf, tanhf, erff, rsqrtf, fmaxf, ...,
//     through the host's libm) and the __expf/__logf style intrinsics (as the exact
//     functions), bit casts (__float_as_int, ...), __popc/__clz/__ffs, __ldg, min/max.
//
// How blocks and threads run
//   Blocks run one after another on the calling host thread. A kernel that never
//   synchronizes runs its threads as a plain loop (`sgshim::launch_loops`), at about the
//   speed of ordinary C++. A kernel that uses barriers, shuffles or votes runs one fiber
//   (ucontext) per CUDA thread of the block (`sgshim::launch`, the default): each fiber
//   runs until it reaches a barrier or a warp operation, and the scheduler releases a
//   barrier when every thread of the block that has not exited is waiting at it, a warp
//   operation when every live lane of the mask is waiting at one. Expect about 0.3-1 us
//   per thread per barrier: keep shapes small. A barrier reached inside launch_loops, or a
//   block that can make no progress (threads waiting at different barriers), is reported
//   by the launch's return code, never ignored.
//
// What is NOT emulated
//   * races between blocks: blocks run in order 0, 1, 2, ..., so code that is only correct
//     under one interleaving of blocks (or that waits for another block) is not checked;
//     atomics are trivially atomic here;
//   * warp-synchronous code without __syncwarp/shuffles (implicit lockstep of a warp): the
//     threads of a warp run one after another between synchronization points;
//   * tensor cores (wmma/mma), inline PTX (asm), textures and surfaces, cooperative groups,
//     clusters, async copies, half/bfloat16 types;
//   * device math accuracy: results come from the host libm (correctly rounded or close),
//     not from the device's ulp bounds, fast-math intrinsics or fused multiply-adds;
//   * memory spaces and limits: device pointers are host pointers; shared-memory size,
//     register and block-size limits are not checked beyond 1024 threads per block;
//   * out-of-bounds accesses are not detected (build with -fsanitize=address for that).
#pragma once

#if !defined(__CUDACC__)

#include <assert.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <type_traits>
#include <ucontext.h>
#include <utility>

#define SYMGRAD_SHIM 1

// -- qualifiers ---------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __constant__
#define __managed__
// A block-scope thread_local is static: one copy for all the fibers of a block.
#define __shared__ thread_local
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __grid_constant__

// -- built-in variables and vector types -------------------------------------------------
struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local uint3 blockDim;
inline thread_local uint3 gridDim;
constexpr int warpSize = 32;

#define SGSHIM_VEC2(T, N, A) \
    struct __attribute__((aligned(A))) N##2 { T x, y; }; \
    __forceinline__ N##2 make_##N##2(T x, T y) { return N##2{x, y}; }
#define SGSHIM_VEC4(T, N, A) \
    struct __attribute__((aligned(A))) N##4 { T x, y, z, w; }; \
    __forceinline__ N##4 make_##N##4(T x, T y, T z, T w) { return N##4{x, y, z, w}; }
SGSHIM_VEC2(float, float, 8)
SGSHIM_VEC4(float, float, 16)
SGSHIM_VEC2(double, double, 16)
SGSHIM_VEC4(double, double, 16)
SGSHIM_VEC2(int, int, 8)
SGSHIM_VEC4(int, int, 16)
SGSHIM_VEC2(unsigned int, uint, 8)
SGSHIM_VEC4(unsigned int, uint, 16)
SGSHIM_VEC2(long long, longlong, 16)
SGSHIM_VEC2(unsigned long long, ulonglong, 16)
struct float3 { float x, y, z; };
__forceinline__ float3 make_float3(float x, float y, float z) { return float3{x, y, z}; }
__forceinline__ uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }
__forceinline__ dim3 make_dim3(unsigned x, unsigned y, unsigned z) { return dim3(x, y, z); }
#undef SGSHIM_VEC2
#undef SGSHIM_VEC4

// -- math -----------------------------------------------------------------------------------
template <class A, class B>
__forceinline__ std::common_type_t<A, B> max(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return fmax(C(a), C(b));
    else return C(a) > C(b) ? C(a) : C(b);
}
template <class A, class B>
__forceinline__ std::common_type_t<A, B> min(A a, B b) {
    using C = std::common_type_t<A, B>;
    if constexpr (std::is_floating_point_v<C>) return fmin(C(a), C(b));
    else return C(a) < C(b) ? C(a) : C(b);
}
__forceinline__ float rsqrtf(float x) { return 1.0f / sqrtf(x); }
__forceinline__ double rsqrt(double x) { return 1.0 / sqrt(x); }
__forceinline__ float rcbrtf(float x) { return 1.0f / cbrtf(x); }
__forceinline__ float __expf(float x) { return expf(x); }
__forceinline__ float __exp10f(float x) { return powf(10.0f, x); }
__forceinline__ float __logf(float x) { return logf(x); }
__forceinline__ float __log2f(float x) { return log2f(x); }
__forceinline__ float __log10f(float x) { return log10f(x); }
__forceinline__ float __sinf(float x) { return sinf(x); }
__forceinline__ float __cosf(float x) { return cosf(x); }
__forceinline__ float __tanf(float x) { return tanf(x); }
__forceinline__ float __powf(float x, float y) { return powf(x, y); }
__forceinline__ float __tanhf(float x) { return tanhf(x); }
__forceinline__ float __fdividef(float x, float y) { return x / y; }
__forceinline__ float __frcp_rn(float x) { return 1.0f / x; }
__forceinline__ float __fsqrt_rn(float x) { return sqrtf(x); }
__forceinline__ float __fadd_rn(float x, float y) { return x + y; }
__forceinline__ float __fsub_rn(float x, float y) { return x - y; }
__forceinline__ float __fmul_rn(float x, float y) { return x * y; }
__forceinline__ float __fdiv_rn(float x, float y) { return x / y; }
__forceinline__ float __fmaf_rn(float x, float y, float z) { return fmaf(x, y, z); }
__forceinline__ double __dadd_rn(double x, double y) { return x + y; }
__forceinline__ double __dmul_rn(double x, double y) { return x * y; }
__forceinline__ double __fma_rn(double x, double y, double z) { return fma(x, y, z); }
__forceinline__ float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
__forceinline__ float exp10f(float x) { return powf(10.0f, x); }
__forceinline__ float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }
__forceinline__ double normcdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752); }
__forceinline__ int __float2int_rn(float x) { return (int)nearbyintf(x); }
__forceinline__ int __float2int_rz(float x) { return (int)x; }
__forceinline__ int __double2int_rz(double x) { return (int)x; }
__forceinline__ float __int2float_rn(int x) { return (float)x; }
__forceinline__ float __ll2float_rn(long long x) { return (float)x; }
template <class To, class From>
__forceinline__ To sgshim_bit_cast(From v) { static_assert(sizeof(To) == sizeof(From)); To r; memcpy(&r, &v, sizeof r); return r; }
__forceinline__ float __int_as_float(int v) { return sgshim_bit_cast<float>(v); }
__forceinline__ float __uint_as_float(unsigned v) { return sgshim_bit_cast<float>(v); }
__forceinline__ int __float_as_int(float v) { return sgshim_bit_cast<int>(v); }
__forceinline__ unsigned __float_as_uint(float v) { return sgshim_bit_cast<unsigned>(v); }
__forceinline__ double __longlong_as_double(long long v) { return sgshim_bit_cast<double>(v); }
__forceinline__ long long __double_as_longlong(double v) { return sgshim_bit_cast<long long>(v); }
__forceinline__ int __popc(unsigned v) { return __builtin_popcount(v); }
__forceinline__ int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
__forceinline__ int __clz(int v) { return v == 0 ? 32 : __builtin_clz((unsigned)v); }
__forceinline__ int __clzll(long long v) { return v == 0 ? 64 : __builtin_clzll((unsigned long long)v); }
__forceinline__ int __ffs(int v) { return __builtin_ffs(v); }
__forceinline__ int __ffsll(long long v) { return __builtin_ffsll(v); }
__forceinline__ unsigned __brev(unsigned v) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) { r = (r << 1) | (v & 1u); v >>= 1; }
    return r;
}
template <class T>
__forceinline__ T __ldg(const T* p) { return *p; }
template <class T>
__forceinline__ T __ldcs(const T* p) { return *p; }
template <class T>
__forceinline__ void __stcs(T* p, T v) { *p = v; }
__forceinline__ void __threadfence() {}
__forceinline__ void __threadfence_block() {}
__forceinline__ void __threadfence_system() {}
__forceinline__ void __nanosleep(unsigned) {}

// -- atomics: blocks and fibers never run concurrently, so plain updates are atomic ---------
#define SGSHIM_ATOMIC(NAME, EXPR) \
    template <class T, class U> __forceinline__ T NAME(T* p, U v) { T old = *p; *p = (EXPR); return old; }
SGSHIM_ATOMIC(atomicAdd, old + (T)v)
SGSHIM_ATOMIC(atomicSub, old - (T)v)
SGSHIM_ATOMIC(atomicExch, (T)v)
SGSHIM_ATOMIC(atomicMax, old > (T)v ? old : (T)v)
SGSHIM_ATOMIC(atomicMin, old < (T)v ? old : (T)v)
SGSHIM_ATOMIC(atomicAnd, old & (T)v)
SGSHIM_ATOMIC(atomicOr, old | (T)v)
SGSHIM_ATOMIC(atomicXor, old ^ (T)v)
#undef SGSHIM_ATOMIC
template <class T, class U, class V>
__forceinline__ T atomicCAS(T* p, U compare, V v) { T old = *p; if (old == (T)compare) *p = (T)v; return old; }
__forceinline__ unsigned atomicInc(unsigned* p, unsigned v) { unsigned old = *p; *p = old >= v ? 0 : old + 1; return old; }
__forceinline__ unsigned atomicDec(unsigned* p, unsigned v) { unsigned old = *p; *p = (old == 0 || old > v) ? v : old - 1; return old; }

// -- the scheduler ------------------------------------------------------------------------
namespace sgshim {

enum Status : int {
    OK = 0,
    INVALID_CONFIGURATION = 1,  // a zero dimension, more than 1024 threads per block
    SYNC_IN_LOOP_MODE = 2,      // a barrier or warp operation inside launch_loops
    DEADLOCK = 3,               // threads of a block wait at operations that cannot meet
    OUT_OF_MEMORY = 4,          // fiber stacks could not be allocated
};

enum State : int { RUNNING, AT_BARRIER, AT_WARP_OP, EXITED };
enum WarpOp : int { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR, BALLOT, SYNCWARP };
enum BarrierOp : int { BAR_PLAIN, BAR_COUNT, BAR_AND, BAR_OR };

struct Fiber {
    ucontext_t ctx;
    uint3 tid;
    int state;
    int op;                   // WarpOp or BarrierOp
    int arg;                  // lane, delta or xor mask
    int width;
    unsigned mask;
    unsigned long long value;  // the operand, as bits
    unsigned long long result;
};

struct Block {
    Fiber* fibers = nullptr;
    int n = 0;
    int live = 0;
    int current = 0;
    ucontext_t scheduler;
    void (*body)(void*) = nullptr;
    void* closure = nullptr;
};

inline thread_local Block* g_block = nullptr;
inline thread_local int g_status = OK;
inline thread_local char g_message[512];

inline void fail(int status, const char* message) {
    if (g_status == OK) {
        g_status = status;
        snprintf(g_message, sizeof g_message, "%s", message);
    }
}

inline size_t stack_bytes() {
    static size_t bytes = [] {
        const char* env = getenv("SYMGRAD_SHIM_STACK");
        size_t b = env ? (size_t)strtoull(env, nullptr, 10) : 0;
        return b >= 16384 ? b : (size_t)(256 * 1024);
    }();
    return bytes;
}

// Fiber stacks with a guard page each, kept between launches.
inline char* stacks(int n) {
    static thread_local char* base = nullptr;
    static thread_local int have = 0;
    if (n <= have) return base;
    size_t page = 4096, slot = stack_bytes() + page;
    if (base) munmap(base, slot * (size_t)have);
    void* mem = mmap(nullptr, slot * (size_t)n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (mem == MAP_FAILED) { base = nullptr; have = 0; return nullptr; }
    base = (char*)mem;
    for (int i = 0; i < n; ++i) mprotect(base + slot * (size_t)i, page, PROT_NONE);
    have = n;
    return base;
}

inline void fiber_main() {
    Block* b = g_block;
    b->body(b->closure);
    b->fibers[b->current].state = EXITED;
    b->live -= 1;
}  // returns to b->scheduler through uc_link

inline void wait(int state) {
    Block* b = g_block;
    Fiber& f = b->fibers[b->current];
    f.state = state;
    swapcontext(&f.ctx, &b->scheduler);
}

inline unsigned long long warp_op(int op, unsigned long long value, int arg, int width, unsigned mask) {
    Block* b = g_block;
    if (b == nullptr) {
        fail(SYNC_IN_LOOP_MODE, "a warp operation ran in loop mode: launch this kernel with fibers");
        return op == BALLOT ? (value ? 1ull : 0ull) : value;
    }
    Fiber& f = b->fibers[b->current];
    f.op = op; f.value = value; f.arg = arg; f.width = width < 1 || width > 32 ? 32 : width; f.mask = mask;
    wait(AT_WARP_OP);
    return b->fibers[b->current].result;
}

inline unsigned long long barrier(int op, int predicate) {
    Block* b = g_block;
    if (b == nullptr) {
        fail(SYNC_IN_LOOP_MODE, "__syncthreads ran in loop mode: launch this kernel with fibers");
        return (unsigned long long)(predicate != 0);
    }
    Fiber& f = b->fibers[b->current];
    f.op = op; f.value = predicate != 0;
    wait(AT_BARRIER);
    return b->fibers[b->current].result;
}

// Release the lanes of warp `w` waiting at a warp operation if every live lane of the
// first waiter's mask is waiting; returns whether it released them.
inline bool resolve_warp(Block* b, int w) {
    int lo = w * 32, hi = lo + 32 < b->n ? lo + 32 : b->n;
    unsigned mask = 0;
    bool any = false;
    for (int i = lo; i < hi; ++i)
        if (b->fibers[i].state == AT_WARP_OP) { mask = b->fibers[i].mask; any = true; break; }
    if (!any) return false;
    for (int i = lo; i < hi; ++i) {
        Fiber& f = b->fibers[i];
        if ((mask >> (i - lo) & 1u) && f.state != EXITED && f.state != AT_WARP_OP) return false;
    }
    unsigned ballot = 0;
    for (int i = lo; i < hi; ++i)
        if (b->fibers[i].state == AT_WARP_OP && b->fibers[i].value) ballot |= 1u << (i - lo);
    for (int i = lo; i < hi; ++i) {
        Fiber& f = b->fibers[i];
        if (f.state != AT_WARP_OP) continue;
        int lane = i - lo, w_ = f.width, seg = lane / w_ * w_, src = lane;
        switch (f.op) {
            case SHFL_IDX: src = seg + (int)((unsigned)f.arg % (unsigned)w_); break;
            case SHFL_UP: src = lane - seg >= f.arg ? lane - f.arg : lane; break;
            case SHFL_DOWN: src = lane - seg + f.arg < w_ ? lane + f.arg : lane; break;
            case SHFL_XOR: src = lane ^ f.arg; if (src >= seg + w_) src = lane; break;
            default: break;
        }
        if (f.op == BALLOT) f.result = ballot & f.mask;
        else if (f.op == SYNCWARP) f.result = 0;
        else {
            int j = lo + src;
            f.result = (src >= 0 && j < hi && b->fibers[j].state == AT_WARP_OP) ? b->fibers[j].value : f.value;
        }
    }
    for (int i = lo; i < hi; ++i)
        if (b->fibers[i].state == AT_WARP_OP) b->fibers[i].state = RUNNING;
    return true;
}

inline bool resolve_barrier(Block* b) {
    int waiting = 0;
    unsigned long long count = 0;
    for (int i = 0; i < b->n; ++i)
        if (b->fibers[i].state == AT_BARRIER) { waiting += 1; count += b->fibers[i].value; }
    if (waiting == 0 || waiting != b->live) return false;
    for (int i = 0; i < b->n; ++i) {
        Fiber& f = b->fibers[i];
        f.result = f.op == BAR_COUNT ? count
                 : f.op == BAR_AND ? (count == (unsigned long long)waiting)
                 : f.op == BAR_OR ? (count != 0) : 0;
        f.state = RUNNING;
    }
    return true;
}

// One block, one fiber per thread.
inline int run_block_fibers(Block* b, char* stack_base) {
    size_t page = 4096, slot = stack_bytes() + page;
    for (int i = 0; i < b->n; ++i) {
        Fiber& f = b->fibers[i];
        f.state = RUNNING;
        f.tid = uint3{(unsigned)i % blockDim.x, (unsigned)i / blockDim.x % blockDim.y, (unsigned)i / (blockDim.x * blockDim.y)};
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stack_base + slot * (size_t)i + page;
        f.ctx.uc_stack.ss_size = stack_bytes();
        f.ctx.uc_link = &b->scheduler;
        makecontext(&f.ctx, fiber_main, 0);
    }
    b->live = b->n;
    for (;;) {
        for (int i = 0; i < b->n; ++i) {
            if (b->fibers[i].state != RUNNING) continue;
            b->current = i;
            threadIdx = b->fibers[i].tid;
            swapcontext(&b->scheduler, &b->fibers[i].ctx);
        }
        if (b->live == 0) return OK;
        bool released = false;
        for (int w = 0; w * 32 < b->n; ++w) released |= resolve_warp(b, w);
        if (!released) released = resolve_barrier(b);
        if (!released) {
            fail(DEADLOCK, "the threads of a block wait at barriers or warp operations that cannot all be reached");
            return DEADLOCK;
        }
    }
}

inline bool valid(dim3 grid, dim3 block) {
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    return grid.x && grid.y && grid.z && threads > 0 && threads <= 1024 && block.z <= 64;
}

template <class F>
int run(dim3 grid, dim3 block, bool fibers, F&& body) {
    g_status = OK;
    g_message[0] = 0;
    if (!valid(grid, block)) {
        fail(INVALID_CONFIGURATION, "invalid launch configuration (zero dimension or more than 1024 threads per block)");
        return g_status;
    }
    gridDim = uint3{grid.x, grid.y, grid.z};
    blockDim = uint3{block.x, block.y, block.z};
    int n = (int)(block.x * block.y * block.z);
    Fiber* fib = nullptr;
    char* stack_base = nullptr;
    Block b;
    if (fibers) {
        fib = (Fiber*)calloc((size_t)n, sizeof(Fiber));
        stack_base = stacks(n);
        if (fib == nullptr || stack_base == nullptr) {
            free(fib);
            fail(OUT_OF_MEMORY, "cannot allocate fiber stacks");
            return g_status;
        }
        b.fibers = fib;
        b.n = n;
        b.body = [](void* c) { (*static_cast<std::remove_reference_t<F>*>(c))(); };
        b.closure = &body;
    }
    for (unsigned bz = 0; bz < grid.z && g_status == OK; ++bz)
        for (unsigned by = 0; by < grid.y && g_status == OK; ++by)
            for (unsigned bx = 0; bx < grid.x && g_status == OK; ++bx) {
                blockIdx = uint3{bx, by, bz};
                if (fibers) {
                    g_block = &b;
                    run_block_fibers(&b, stack_base);
                    g_block = nullptr;
                } else {
                    for (unsigned tz = 0; tz < block.z; ++tz)
                        for (unsigned ty = 0; ty < block.y; ++ty)
                            for (unsigned tx = 0; tx < block.x; ++tx) {
                                threadIdx = uint3{tx, ty, tz};
                                body();
                            }
                }
            }
    free(fib);
    return g_status;
}

// Launch `kernel` with `args`: one fiber per thread (always correct).
template <class... P>
int launch(void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem, std::type_identity_t<P>... args) {
    (void)shmem;
    return run(grid, block, true, [&] { kernel(args...); });
}

// Launch a kernel that never synchronizes: its threads run as a plain loop.
template <class... P>
int launch_loops(void (*kernel)(P...), dim3 grid, dim3 block, size_t shmem, std::type_identity_t<P>... args) {
    (void)shmem;
    return run(grid, block, false, [&] { kernel(args...); });
}

// cuLaunchKernel's convention: params[i] points at the i-th argument's value.
template <class... P, size_t... I>
int launch_params_(void (*kernel)(P...), dim3 grid, dim3 block, bool fibers, void** params, std::index_sequence<I...>) {
    return run(grid, block, fibers, [&] { kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(params[I])...); });
}
template <class... P>
int launch_params(void (*kernel)(P...), dim3 grid, dim3 block, bool fibers, void** params) {
    return launch_params_(kernel, grid, block, fibers, params, std::index_sequence_for<P...>{});
}

inline const char* message() { return g_message; }

}  // namespace sgshim

// -- synchronization and warp primitives ------------------------------------------------------
__forceinline__ void __syncthreads() { sgshim::barrier(sgshim::BAR_PLAIN, 0); }
__forceinline__ int __syncthreads_count(int p) { return (int)sgshim::barrier(sgshim::BAR_COUNT, p); }
__forceinline__ int __syncthreads_and(int p) { return (int)sgshim::barrier(sgshim::BAR_AND, p); }
__forceinline__ int __syncthreads_or(int p) { return (int)sgshim::barrier(sgshim::BAR_OR, p); }
__forceinline__ void __syncwarp(unsigned mask = 0xffffffffu) { sgshim::warp_op(sgshim::SYNCWARP, 0, 0, 32, mask); }
__forceinline__ unsigned __ballot_sync(unsigned mask, int p) { return (unsigned)sgshim::warp_op(sgshim::BALLOT, p != 0, 0, 32, mask); }
__forceinline__ int __any_sync(unsigned mask, int p) { return __ballot_sync(mask, p) != 0; }
__forceinline__ int __all_sync(unsigned mask, int p) { return __ballot_sync(mask, p) == __ballot_sync(mask, 1); }
__forceinline__ unsigned __activemask() { return 0xffffffffu; }

namespace sgshim {
template <class T>
__forceinline__ T shuffle(int op, unsigned mask, T v, int arg, int width) {
    static_assert(sizeof(T) <= 8, "warp shuffles move at most 8 bytes");
    unsigned long long bits = 0;
    memcpy(&bits, &v, sizeof(T));
    bits = warp_op(op, bits, arg, width, mask);
    T r;
    memcpy(&r, &bits, sizeof(T));
    return r;
}
}  // namespace sgshim

template <class T>
__forceinline__ T __shfl_sync(unsigned mask, T v, int lane, int width = 32) { return sgshim::shuffle(sgshim::SHFL_IDX, mask, v, lane, width); }
template <class T>
__forceinline__ T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) { return sgshim::shuffle(sgshim::SHFL_UP, mask, v, (int)delta, width); }
template <class T>
__forceinline__ T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) { return sgshim::shuffle(sgshim::SHFL_DOWN, mask, v, (int)delta, width); }
template <class T>
__forceinline__ T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) { return sgshim::shuffle(sgshim::SHFL_XOR, mask, v, lane_mask, width); }

// Host code may launch with SG_LAUNCH(kernel, grid, block, shmem, stream, args...) in place
// of kernel<<<grid, block, shmem, stream>>>(args...); it evaluates to the shim's status.
#define SG_LAUNCH(kernel, grid, block, shmem, stream, ...) \
    sgshim::launch((kernel), dim3(grid), dim3(block), (shmem), __VA_ARGS__)

// Storage for `extern __shared__ T name[];` (dynamic shared memory), 48 KiB like a device's
// default limit; place it once after the kernel source.
#define SGSHIM_DYNAMIC_SHARED(T, name) \
    alignas(16) thread_local T name[(48 * 1024) / sizeof(T)]

#endif  // !defined(__CUDACC__)
