#pragma once
// The engine's compute kernels: matrix products over quantized, half and f32 weights, attention,
// activations, and the thread pool they run on. Each kernel has a portable C version and, on
// x86-64, an AVX2/FMA/F16C version chosen at run time from the CPU's features.
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Elements per Q8_0 / Q4_0 block, and bytes per block.
#define GEMMA_QK 32
#define GEMMA_Q8_0_BYTES 34
#define GEMMA_Q4_0_BYTES 18

/// Whether the AVX2 kernels are in use on this CPU.
int gemma_kernels_use_avx2(void);
/// Turns the AVX2 kernels off (0) or back on where the CPU has them (1); for tests.
void gemma_kernels_set_avx2(int enabled);

/// Quantizes `n` floats (n a multiple of 32) to Q8_0 blocks, as ggml quantizes activations.
void gemma_quantize_row_q8_0(const float *x, void *y, int64_t n);

/// ggml type numbers of the weights the matrix kernels take.
#define GEMMA_TYPE_F32 0
#define GEMMA_TYPE_F16 1
#define GEMMA_TYPE_Q4_0 2
#define GEMMA_TYPE_Q8_0 8
#define GEMMA_TYPE_BF16 30

/// Bytes of the packed copy of Q8_0 or Q4_0 weights of `rows` rows of `n` (whole groups of 8
/// rows are packed; the same size as those rows).
int64_t gemma_packed_bytes(int type, int64_t rows, int64_t n);
/// Packs the first rows / 8 * 8 rows of W (eight rows interleaved per block, the layout the
/// AVX2 matrix kernels read fastest) into `packed`, on the pool.
void gemma_pack_quantized(int type, const void *w, int64_t rows, int64_t n, void *packed);

/// y[t * y_stride + r] = dot(W row r, x row t) for r < rows, t < x_rows: W has `rows` rows of
/// `n` (a multiple of 32) weights in Q8_0 or Q4_0 blocks, x is f32 [x_rows x n] and is quantized
/// to Q8_0 per block first. `packed` is NULL or W's packed copy (then used for whole groups of 8
/// rows). Weights are read once for all rows of x; the work runs on the pool.
void gemma_matmul_quantized_f32(int w_type, const void *w, const void *packed, int64_t rows, int64_t n,
                                const float *x, int64_t x_rows, float *y, int64_t y_stride);

/// The same for f32, f16 or bf16 weights (`n` any length; rows unaligned is fine).
void gemma_matmul_float(int w_type, const void *w, int64_t rows, int64_t n, const float *x, int64_t x_rows,
                        float *y, int64_t y_stride);

/// Converts `rows` rows of `n` f16 or bf16 values (unaligned is fine) to f32.
void gemma_convert_rows(int half_type, const void *w, int64_t rows, int64_t n, float *out);

/// g[i] = gelu_tanh(g[i]) * u[i] (PyTorch's gelu(approximate="tanh")), on the pool when long.
void gemma_gelu_tanh_mul(float *g, const float *u, int64_t n);

/// Causal attention of `rows` query rows of one sequence at positions start ..< start + rows
/// over its KV cache: row t attends to positions 0 ... start + t. `q` rows hold `heads` heads
/// of `head_dim`; key and value position p of KV head g is at keys/values + p * kv_stride +
/// g * head_dim; query head h uses KV head h / (heads / kv_heads). Scores are scaled by `scale`.
/// Output rows hold the heads' results side by side.
void gemma_attention(const float *q, int64_t q_stride, int64_t rows, int64_t start,
                     const float *keys, const float *values, int64_t kv_stride,
                     int heads, int kv_heads, int head_dim, float scale, float *out, int64_t out_stride);

/// A task of a parallel loop: `context` as given, `task` in 0 ..< tasks.
typedef void (*gemma_task_fn)(void *context, int task);

/// Runs fn(context, 0 ..< tasks) on the kernel threads (the caller is one of them) and returns
/// when all are done. Calls are serialized; idle threads sleep.
void gemma_parallel_for(int tasks, gemma_task_fn fn, void *context);

/// Threads the kernels use (1 ... 64; by default the online cores, at most 8), and the current
/// number. Not to be called from inside a task.
void gemma_set_threads(int threads);
int gemma_threads(void);

/// Reads `bytes` bytes (a multiple of 128) with wide loads and returns a checksum, to measure
/// memory read bandwidth.
float gemma_read_memory(const void *buffer, int64_t bytes);
/// Reads `bytes` bytes in `parts` equal parts on the pool's threads (bandwidth of the cores).
void gemma_read_memory_parallel(const void *buffer, int64_t bytes, int parts);

/// f16 bits to f32.
float gemma_fp16_to_fp32(uint16_t h);

#ifdef __cplusplus
}
#endif
