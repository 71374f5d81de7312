#pragma once
// Dot-product kernels over ggml's Q8_0 and Q4_0 blocks. Each kernel has a portable C version
// and, on x86-64, an AVX2/FMA/F16C version chosen at run time from the CPU's features.
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

/// Dot product of `n` elements: Q8_0 weights with Q8_0 activations.
float gemma_dot_q8_0_q8_0(int64_t n, const void *w, const void *x);
/// Dot product of `n` elements: Q4_0 weights with Q8_0 activations.
float gemma_dot_q4_0_q8_0(int64_t n, const void *w, const void *x);

/// y[t * y_stride + r] = dot(W row r, X row t) for weight rows [row_begin, row_end) and
/// activation rows t < x_rows. W has `n` columns of `w_type` blocks (8 = Q8_0, 2 = Q4_0);
/// X rows are Q8_0 with `n` columns. Each weight row is read once for all activation rows.
void gemma_matmul_quantized(int w_type, const void *w, int64_t n, int64_t row_begin, int64_t row_end,
                            const void *x, int64_t x_rows, float *y, int64_t y_stride);

/// Half-precision weight types for gemma_convert_rows / gemma_matmul_half.
#define GEMMA_HALF_F16 1
#define GEMMA_HALF_BF16 30

/// Converts `rows` rows of `n` f16 or bf16 values (unaligned is fine) to f32.
void gemma_convert_rows(int half_type, const void *w, int64_t rows, int64_t n, float *out);

/// y[t * y_stride + r] = dot(W row r, x row t) for f16/bf16 weights W (n columns) and f32
/// activations, weight rows [row_begin, row_end), activation rows t < x_rows.
void gemma_matmul_half(int half_type, const void *w, int64_t n, int64_t row_begin, int64_t row_end,
                       const float *x, int64_t x_rows, float *y, int64_t y_stride);

/// Reads `bytes` bytes (a multiple of 128) with wide loads and returns a checksum, to measure
/// memory read bandwidth.
float gemma_read_memory(const void *buffer, int64_t bytes);

/// f16 bits to f32.
float gemma_fp16_to_fp32(uint16_t h);

#ifdef __cplusplus
}
#endif
