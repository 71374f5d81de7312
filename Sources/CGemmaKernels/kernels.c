#include "gemma_kernels.h"
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { uint16_t d; int8_t qs[GEMMA_QK]; } block_q8_0;
_Static_assert(sizeof(block_q8_0) == GEMMA_Q8_0_BYTES, "Q8_0 block size");

// ---------------------------------------------------------------------------------------------
// Half precision, portable.

float gemma_fp16_to_fp32(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exponent = (h >> 10) & 0x1F;
    uint32_t mantissa = h & 0x3FF;
    uint32_t bits;
    if (exponent == 0) {
        if (mantissa == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            exponent = 127 - 15 + 1;
            while ((mantissa & 0x400) == 0) { mantissa <<= 1; exponent--; }
            mantissa &= 0x3FF;
            bits = sign | (exponent << 23) | (mantissa << 13);
        }
    } else if (exponent == 31) {
        bits = sign | 0x7F800000u | (mantissa << 13);
    } else {
        bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static uint16_t fp32_to_fp16(float f) {
    // Round to nearest even, as F16C and numpy do.
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    const uint32_t sign = (x >> 16) & 0x8000;
    const uint32_t abs = x & 0x7FFFFFFF;
    if (abs >= 0x7F800000) return (uint16_t)(sign | 0x7C00 | (abs > 0x7F800000 ? 0x200 : 0));
    if (abs >= 0x477FF000) return (uint16_t)(sign | 0x7C00);  // rounds to infinity
    if (abs < 0x38800000) {  // subnormal half (or zero)
        float a;
        memcpy(&a, &abs, sizeof a);
        // 2^-24 is the smallest half subnormal; scale and round to nearest even.
        const float scaled = a * 16777216.0f;
        return (uint16_t)(sign | (uint32_t)nearbyintf(scaled));
    }
    uint32_t mantissa = abs & 0x7FFFFF;
    uint32_t exponent = (abs >> 23) - 127 + 15;
    uint32_t half = (exponent << 10) | (mantissa >> 13);
    const uint32_t rest = mantissa & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (half & 1))) half++;
    return (uint16_t)(sign | half);
}

// ---------------------------------------------------------------------------------------------
// Portable kernels.

static void quantize_row_q8_0_c(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / GEMMA_QK; i++) {
        float amax = 0.0f;
        for (int j = 0; j < GEMMA_QK; j++) amax = fmaxf(amax, fabsf(x[i * GEMMA_QK + j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < GEMMA_QK; j++) y[i].qs[j] = (int8_t)roundf(x[i * GEMMA_QK + j] * id);
    }
}

static void quantize_row_q8_0_split_c(const float *x, int8_t *q, float *d, int32_t *sum8, int64_t n) {
    for (int64_t i = 0; i < n / GEMMA_QK; i++) {
        block_q8_0 block;
        quantize_row_q8_0_c(x + i * GEMMA_QK, &block, GEMMA_QK);
        d[i] = gemma_fp16_to_fp32(block.d);
        int sum = 0;
        for (int j = 0; j < GEMMA_QK; j++) { q[i * GEMMA_QK + j] = block.qs[j]; sum += block.qs[j]; }
        sum8[i] = 8 * sum;
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2 kernels (after ggml's ggml-cpu/arch/x86/quants.c).

#ifdef GEMMA_X86

AVX2 static void quantize_row_q8_0_avx2(const float *x, void *vy, int64_t n) {
    block_q8_0 *y = vy;
    const __m256 sign_bit = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / GEMMA_QK; i++) {
        __m256 v[4];
        __m256 max_abs = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + i * GEMMA_QK + 8 * k);
            max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, v[k]));
        }
        __m128 max4 = _mm_max_ps(_mm256_extractf128_ps(max_abs, 1), _mm256_castps256_ps128(max_abs));
        max4 = _mm_max_ps(max4, _mm_movehl_ps(max4, max4));
        max4 = _mm_max_ss(max4, _mm_movehdup_ps(max4));
        const float amax = _mm_cvtss_f32(max4);
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[i].d = fp32_to_fp16(d);
        const __m256 mul = _mm256_set1_ps(id);
        __m256i q[4];
        for (int k = 0; k < 4; k++) {
            q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], mul), _MM_ROUND_NEAREST));
        }
        // int32 -> int16 -> int8, then undo the lane interleaving of the packs.
        __m256i p01 = _mm256_packs_epi32(q[0], q[1]);
        __m256i p23 = _mm256_packs_epi32(q[2], q[3]);
        __m256i p = _mm256_packs_epi16(p01, p23);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[i].qs, p);
    }
}

AVX2 static void quantize_row_q8_0_split_avx2(const float *x, int8_t *q, float *d, int32_t *sum8, int64_t n) {
    for (int64_t i = 0; i < n / GEMMA_QK; i++) {
        block_q8_0 block;
        quantize_row_q8_0_avx2(x + i * GEMMA_QK, &block, GEMMA_QK);
        d[i] = _cvtsh_ss(block.d);
        const __m256i v = _mm256_loadu_si256((const __m256i *)block.qs);
        _mm256_storeu_si256((__m256i *)(q + i * GEMMA_QK), v);
        // Sum of the 32 quants: maddubs with 1s, then madd with 1s, then a horizontal add.
        const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), v);
        const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
        sum8[i] = 8 * _mm_cvtsi128_si32(t);
    }
}
#endif

void gemma_quantize_row_q8_0_split(const float *x, int8_t *q, float *d, int32_t *sum8, int64_t n) {
#ifdef GEMMA_X86
    if (gemma_kernels_use_avx2()) { quantize_row_q8_0_split_avx2(x, q, d, sum8, n); return; }
#endif
    quantize_row_q8_0_split_c(x, q, d, sum8, n);
}

// ---------------------------------------------------------------------------------------------
// Half-precision weights.

static inline float bf16_to_fp32(uint16_t h) {
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static void convert_row_c(int half_type, const uint8_t *w, int64_t n, float *out) {
    for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, w + 2 * i, 2);
        out[i] = half_type == GEMMA_TYPE_BF16 ? bf16_to_fp32(h) : gemma_fp16_to_fp32(h);
    }
}

#ifdef GEMMA_X86
AVX2 static void convert_row_avx2(int half_type, const uint8_t *w, int64_t n, float *out) {
    int64_t i = 0;
    if (half_type == GEMMA_TYPE_BF16) {
        for (; i + 8 <= n; i += 8) {
            const __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * i));
            const __m256i wide = _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16);
            _mm256_storeu_ps(out + i, _mm256_castsi256_ps(wide));
        }
    } else {
        for (; i + 8 <= n; i += 8) {
            const __m128i h = _mm_loadu_si128((const __m128i *)(w + 2 * i));
            _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
        }
    }
    if (i < n) convert_row_c(half_type, w + 2 * i, n - i, out + i);
}

#endif

void gemma_convert_rows(int half_type, const void *w, int64_t rows, int64_t n, float *out) {
    const uint8_t *bytes = w;
    for (int64_t r = 0; r < rows; r++) {
#ifdef GEMMA_X86
        if (gemma_kernels_use_avx2()) { convert_row_avx2(half_type, bytes + 2 * r * n, n, out + r * n); continue; }
#endif
        convert_row_c(half_type, bytes + 2 * r * n, n, out + r * n);
    }
}

// ---------------------------------------------------------------------------------------------
// Memory bandwidth probe.

#ifdef GEMMA_X86
AVX2 static float read_memory_avx2(const void *buffer, int64_t bytes) {
    const __m256 *p = buffer;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t i = 0; i < bytes / 32; i += 4) {
        a0 = _mm256_add_ps(a0, _mm256_load_ps((const float *)(p + i)));
        a1 = _mm256_add_ps(a1, _mm256_load_ps((const float *)(p + i + 1)));
        a2 = _mm256_add_ps(a2, _mm256_load_ps((const float *)(p + i + 2)));
        a3 = _mm256_add_ps(a3, _mm256_load_ps((const float *)(p + i + 3)));
    }
    return hsum_float_8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}
#endif

float gemma_read_memory(const void *buffer, int64_t bytes) {
#ifdef GEMMA_X86
    if (gemma_kernels_use_avx2()) return read_memory_avx2(buffer, bytes);
#endif
    const uint64_t *p = buffer;
    uint64_t sum = 0;
    for (int64_t i = 0; i < bytes / 8; i++) sum += p[i];
    return (float)sum;
}

typedef struct {
    const char *buffer;
    int64_t part;
} read_job;

static void read_task(void *context, int task) {
    const read_job *job = context;
    volatile float sink = gemma_read_memory(job->buffer + task * job->part, job->part);
    (void)sink;
}

void gemma_read_memory_parallel(const void *buffer, int64_t bytes, int parts) {
    read_job job = {buffer, bytes / parts / 128 * 128};
    gemma_parallel_for(parts, read_task, &job);
}

// ---------------------------------------------------------------------------------------------
// Dispatch.

static int cached_avx2 = -1;

void gemma_kernels_set_avx2(int enabled) {
    cached_avx2 = -1;
    if (!enabled) { cached_avx2 = 0; return; }
    (void)gemma_kernels_use_avx2();
}

int gemma_kernels_use_avx2(void) {
#ifdef GEMMA_X86
    int cached = cached_avx2;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
        cached_avx2 = cached;
    }
    return cached;
#else
    return 0;
#endif
}

void gemma_quantize_row_q8_0(const float *x, void *y, int64_t n) {
#ifdef GEMMA_X86
    if (gemma_kernels_use_avx2()) { quantize_row_q8_0_avx2(x, y, n); return; }
#endif
    quantize_row_q8_0_c(x, y, n);
}
