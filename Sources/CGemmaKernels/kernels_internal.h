#pragma once
// Helpers shared by the kernel files (not part of the module's interface).
#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define GEMMA_X86 1
/// Compiles one function for AVX2 + FMA + F16C; callers check gemma_kernels_use_avx2() first.
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum_float_8(const __m256 x) {
    __m128 res = _mm256_extractf128_ps(x, 1);
    res = _mm_add_ps(res, _mm256_castps256_ps128(x));
    res = _mm_add_ps(res, _mm_movehl_ps(res, res));
    res = _mm_add_ss(res, _mm_movehdup_ps(res));
    return _mm_cvtss_f32(res);
}

/// exp of 8 floats (Cephes' expf, within 2 ulp).
AVX2 __m256 gemma_exp8(__m256 x);
#endif

/// The rows [*r0, *r1) of task `task` when tasks take `per_task` of `rows` rows each; 0 when
/// the task has none.
static inline int gemma_task_rows(int task, int64_t per_task, int64_t rows, int64_t *r0, int64_t *r1) {
    *r0 = task * per_task;
    *r1 = *r0 + per_task < rows ? *r0 + per_task : rows;
    return *r0 < *r1;
}

/// Quantizes one row of `n` floats to Q8_0 with quants, f32 scales and 8 x each block's sum of
/// quants in separate arrays (the layout the matrix kernels read).
void gemma_quantize_row_q8_0_split(const float *x, int8_t *q, float *d, int32_t *sum8, int64_t n);
