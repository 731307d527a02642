/* A caller of an emitted function written from docs/abi.md alone (no generated code was
 * read to write it). It works for any NAME:
 *
 *   cc -std=c99 -DSG_NAME=mlp -DSG_HEADER='"mlp.h"' -I BUNDLE abi_client.c BUNDLE/mlp.c -lm
 *   ./a.out D0 D1 ...            (one value per dim)
 *
 * It checks the metadata functions and the documented error codes (section 5-6: refused
 * dims write nothing), fills every input with a deterministic pattern, runs the function
 * twice on the same workspace, checks both runs agree bitwise, and prints every output:
 *
 *   output K NAME dtype=D shape=(S0,S1,...)
 *   v0 v1 v2 ...
 *
 * Input i, element n: floats ((37 n + 11 i) mod 101) / 50 - 1, integers n mod 3, bools n mod 2.
 * Exit status 0 when every check passed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include SG_HEADER

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define API(suffix) CAT(SG_NAME, suffix)
#define CODE(suffix) CAT(SG_NAME, suffix)

static int failures = 0;

static void expect(int cond, const char* what) {
  if (!cond) {
    fprintf(stderr, "FAILED: %s\n", what);
    ++failures;
  }
}

static size_t item_size(int32_t dtype) {
  switch (dtype) {
    case CODE(_FLOAT32): return sizeof(float);
    case CODE(_FLOAT64): return sizeof(double);
    case CODE(_INT32): return sizeof(int32_t);
    case CODE(_INT64): return sizeof(int64_t);
    case CODE(_BOOL): return 1;
    default: return 0;
  }
}

static size_t count(const int64_t* shape, int32_t rank) {
  size_t n = 1;
  for (int32_t a = 0; a < rank; ++a) n *= (size_t)shape[a];
  return n;
}

static void fill(void* p, int32_t dtype, size_t n, int32_t i) {
  for (size_t k = 0; k < n; ++k) {
    double v = (double)((37 * (long long)k + 11 * (long long)i) % 101) / 50.0 - 1.0;
    switch (dtype) {
      case CODE(_FLOAT32): ((float*)p)[k] = (float)v; break;
      case CODE(_FLOAT64): ((double*)p)[k] = v; break;
      case CODE(_INT32): ((int32_t*)p)[k] = (int32_t)(k % 3); break;
      case CODE(_INT64): ((int64_t*)p)[k] = (int64_t)(k % 3); break;
      case CODE(_BOOL): ((uint8_t*)p)[k] = (uint8_t)(k % 2); break;
      default: break;
    }
  }
}

static void print_values(const void* p, int32_t dtype, size_t n) {
  for (size_t k = 0; k < n; ++k) {
    switch (dtype) {
      case CODE(_FLOAT32): printf("%.9g", (double)((const float*)p)[k]); break;
      case CODE(_FLOAT64): printf("%.17g", ((const double*)p)[k]); break;
      case CODE(_INT32): printf("%ld", (long)((const int32_t*)p)[k]); break;
      case CODE(_INT64): printf("%lld", (long long)((const int64_t*)p)[k]); break;
      case CODE(_BOOL): printf("%d", (int)((const uint8_t*)p)[k]); break;
      default: break;
    }
    putchar(k + 1 < n ? ' ' : '\n');
  }
  if (n == 0) putchar('\n');
}

int main(int argc, char** argv) {
  const int32_t ni = API(_num_inputs)(), no = API(_num_outputs)(), nd = API(_num_dims)();
  int64_t dims[64];
  int64_t shape[64];

  /* section 4: metadata */
  expect(API(_abi_version)() == 1, "abi_version is 1");
  expect(CODE(_ABI_VERSION) == 1, "NAME_ABI_VERSION is 1");
  expect(ni == CODE(_NUM_INPUTS) && no == CODE(_NUM_OUTPUTS) && nd == CODE(_NUM_DIMS), "counts");
  expect(argc - 1 == nd, "one command-line value per dim");
  if (argc - 1 != nd || nd > 64) return 2;
  for (int32_t j = 0; j < nd; ++j) dims[j] = strtoll(argv[j + 1], NULL, 10);
  expect(API(_input_name)(-1) == NULL && API(_input_name)(ni) == NULL, "input_name out of range");
  expect(API(_output_name)(no) == NULL && API(_dim_name)(nd) == NULL, "name out of range");
  expect(API(_input_dtype)(ni) == -1 && API(_output_rank)(-1) == -1, "dtype/rank out of range");
  expect(API(_input_dim)(0, -1) == CODE(_DIM_INVALID), "input_dim out of range");
  expect(API(_output_shape_text)(no) == NULL, "shape_text out of range");
  {
    int32_t in = -1, ax = -1;
    int64_t bytes = 0;
    expect(API(_dim_source)(nd, &in, &ax) == CODE(_ERR_BAD_ARGUMENT), "dim_source out of range");
    expect(API(_workspace_size)(dims, NULL) == CODE(_ERR_BAD_ARGUMENT), "workspace_size NULL");
    expect(API(_input_shape)(ni, dims, shape) == CODE(_ERR_BAD_ARGUMENT), "input_shape out of range");
    for (int32_t j = 0; j < nd; ++j) {
      expect(API(_dim_source)(j, &in, &ax) == 0, "dim_source");
      expect(in >= 0 && in < ni && ax >= 0 && ax < API(_input_rank)(in), "dim_source range");
      expect(API(_input_dim)(in, ax) == -1 - j, "dim_source agrees with input_dim");
      expect(API(_dim_name)(j) != NULL, "dim_name");
    }
    expect(API(_workspace_size)(dims, &bytes) == 0 && bytes >= 0, "workspace_size");
  }

  /* the arrays */
  const void* in_ptr[64];
  void* out_ptr[64];
  size_t out_bytes[64];
  if (ni > 64 || no > 64) return 2;
  for (int32_t i = 0; i < ni; ++i) {
    expect(API(_input_name)(i) != NULL, "input_name");
    expect(API(_input_shape_text)(i) != NULL, "input_shape_text");
    expect(API(_input_shape)(i, dims, shape) == 0, "input_shape");
    const int32_t dt = API(_input_dtype)(i);
    const size_t n = count(shape, API(_input_rank)(i));
    void* p = malloc(n * item_size(dt) + 1);
    fill(p, dt, n, i);
    in_ptr[i] = p;
  }
  for (int32_t k = 0; k < no; ++k) {
    expect(API(_output_shape)(k, dims, shape) == 0, "output_shape");
    out_bytes[k] = count(shape, API(_output_rank)(k)) * item_size(API(_output_dtype)(k));
    out_ptr[k] = malloc(out_bytes[k] + 1);
    memset(out_ptr[k], 0x5A, out_bytes[k]);
  }
  int64_t ws_bytes = 0;
  API(_workspace_size)(dims, &ws_bytes);
  unsigned char* ws_raw = (unsigned char*)malloc((size_t)ws_bytes + 64);
  void* ws = (void*)(((uintptr_t)ws_raw + 63) / 64 * 64);
  memset(ws, 0x5A, (size_t)ws_bytes);

  /* sections 5-6: refused calls write nothing */
  expect(API()(in_ptr, out_ptr, NULL, ws) == (nd > 0 ? CODE(_ERR_NULL) : 0) || nd == 0, "NULL dims");
  if (nd > 0) {
    int64_t bad[64];
    memcpy(bad, dims, sizeof(int64_t) * (size_t)nd);
    bad[nd - 1] = -3;
    expect(API()(in_ptr, out_ptr, bad, ws) == CODE(_ERR_NEGATIVE_DIM), "negative dim");
    expect(API(_check_dims)(bad) == CODE(_ERR_NEGATIVE_DIM), "check_dims negative");
    for (int32_t j = 0; j < nd; ++j) bad[j] = (int64_t)1 << 62;
    expect(API()(in_ptr, out_ptr, bad, ws) == CODE(_ERR_OVERFLOW), "overflowing dims");
    expect(API(_workspace_size)(bad, &ws_bytes) == CODE(_ERR_OVERFLOW), "workspace_size overflow");
    API(_workspace_size)(dims, &ws_bytes);
  }
  if (ws_bytes > 0) expect(API()(in_ptr, out_ptr, dims, NULL) == CODE(_ERR_NULL), "NULL workspace");
  expect(API()(NULL, out_ptr, dims, ws) == (ni > 0 ? CODE(_ERR_NULL) : 0) || ni == 0, "NULL inputs");
  for (int32_t k = 0; k < no; ++k) {
    const unsigned char* p = (const unsigned char*)out_ptr[k];
    for (size_t b = 0; b < out_bytes[k]; ++b)
      if (p[b] != 0x5A) { expect(0, "a refused call wrote an output"); break; }
  }
  for (int64_t b = 0; b < ws_bytes; ++b)
    if (((unsigned char*)ws)[b] != 0x5A) { expect(0, "a refused call wrote the workspace"); break; }
  expect(strlen(API(_error_string)(CODE(_ERR_OVERFLOW))) > 0, "error_string");

  /* two runs on one workspace agree bitwise */
  int32_t rc = API()(in_ptr, out_ptr, dims, ws);
  expect(rc == CODE(_OK), "the call succeeds");
  if (rc != 0) fprintf(stderr, "error %d: %s\n", (int)rc, API(_error_string)(rc));
  void* first[64];
  for (int32_t k = 0; k < no; ++k) {
    first[k] = malloc(out_bytes[k] + 1);
    memcpy(first[k], out_ptr[k], out_bytes[k]);
  }
  rc = API()(in_ptr, out_ptr, dims, ws);
  expect(rc == CODE(_OK), "the second call succeeds");
  for (int32_t k = 0; k < no; ++k) expect(memcmp(first[k], out_ptr[k], out_bytes[k]) == 0, "deterministic");

  for (int32_t k = 0; k < no; ++k) {
    const int32_t rank = API(_output_rank)(k);
    API(_output_shape)(k, dims, shape);
    printf("output %d %s dtype=%d shape=(", (int)k, API(_output_name)(k), (int)API(_output_dtype)(k));
    for (int32_t a = 0; a < rank; ++a) printf("%s%lld", a ? "," : "", (long long)shape[a]);
    printf(")\n");
    print_values(out_ptr[k], API(_output_dtype)(k), count(shape, rank));
  }
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  for (int32_t i = 0; i < ni; ++i) free((void*)in_ptr[i]);
  for (int32_t k = 0; k < no; ++k) { free(out_ptr[k]); free(first[k]); }
  free(ws_raw);
  return failures ? 1 : 0;
}
