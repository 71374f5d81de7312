// y = x W^T for Q8_0 and Q4_0 weights W (rows of ggml blocks, used where they lie) and f32
// activations x, quantized to Q8_0 per 32-element block as ggml does.
//
// Three AVX2 paths (after ggml's ggml_vec_dot_q8_0_q8_0 / llamafile's tinyBLAS_Q0_AVX and
// ggml's repacked q4_0 8x8 GEMM), each checked against the portable C path in the tests:
//  - tiles of RM weight rows x RN activation rows, each weight block loaded once per tile and
//    each product accumulated in its own register (decode: RN = 1, four rows at a time);
//  - Q4_0 with several activation rows: eight weight rows are unpacked per span of blocks into
//    a small buffer with the rows interleaved (lane r of a vector = row r), so one maddubs
//    multiplies 4 weights of 8 rows at once and the unsigned nibbles let 8 of them add up in
//    16 bits before one widening per block;
//  - the work is split over the pool in tasks of rows, and the blocks in spans whose
//    activations stay in L2, so weights are read from memory once per call for all rows of x.
#include "gemma_kernels.h"
#include "kernels_internal.h"

#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// Activations: Q8_0 quants (32 bytes per block, aligned), f32 scales, and 8 x the block's sum
// (for the unsigned-nibble Q4_0 path).

typedef struct {
    int8_t *q;      // [rows][blocks][32]
    float *d;       // [rows][blocks]
    int32_t *sum8;  // [rows][blocks]
    int64_t rows, blocks;
} activations_t;

// Per-thread buffers that grow and are reused: the activations (caller's thread) and the
// interleaved weights (each thread running tasks).
typedef struct {
    void *data;
    size_t size;
} buffer_t;

static _Thread_local buffer_t activation_buffer, interleave_buffer;

static void *reserve(buffer_t *buffer, size_t bytes) {
    if (bytes > buffer->size) {
        free(buffer->data);
        buffer->size = (bytes + bytes / 4 + 63) / 64 * 64;
        buffer->data = aligned_alloc(64, buffer->size);
    }
    return buffer->data;
}

typedef struct {
    const float *x;
    int64_t n;
    activations_t *a;
} prepare_job;

static void prepare_rows(void *context, int task) {
    const prepare_job *job = context;
    const activations_t *a = job->a;
    const int64_t t = task;
    gemma_quantize_row_q8_0_split(job->x + t * job->n, a->q + t * a->blocks * GEMMA_QK, a->d + t * a->blocks,
                                  a->sum8 + t * a->blocks, job->n);
}

static void prepare_activations(const float *x, int64_t rows, int64_t n, activations_t *a) {
    const int64_t blocks = n / GEMMA_QK;
    const size_t q_bytes = (size_t)(rows * blocks * GEMMA_QK);
    const size_t d_bytes = (size_t)(rows * blocks) * sizeof(float);
    char *base = reserve(&activation_buffer, q_bytes + 2 * d_bytes + 128);
    a->q = (int8_t *)base;
    a->d = (float *)(base + (q_bytes + 63) / 64 * 64);
    a->sum8 = (int32_t *)((char *)a->d + d_bytes);
    a->rows = rows;
    a->blocks = blocks;
    prepare_job job = {x, n, a};
    if (rows * n >= 1 << 16) {
        gemma_parallel_for((int)rows, prepare_rows, &job);
    } else {
        for (int64_t t = 0; t < rows; t++) prepare_rows(&job, (int)t);
    }
}

// ---------------------------------------------------------------------------------------------
// Portable tile: out[i][j] = sum over blocks [b0, b1) of row i x activation row j.

static void tile_c(int type, const uint8_t *w, size_t w_row_bytes, int rm, const activations_t *a,
                   int64_t j0, int rn, int64_t b0, int64_t b1, float *out, int64_t out_stride) {
    const size_t block_bytes = type == GEMMA_TYPE_Q8_0 ? GEMMA_Q8_0_BYTES : GEMMA_Q4_0_BYTES;
    for (int i = 0; i < rm; i++) {
        for (int j = 0; j < rn; j++) {
            float sum = 0.0f;
            for (int64_t b = b0; b < b1; b++) {
                const uint8_t *blk = w + (size_t)i * w_row_bytes + (size_t)b * block_bytes;
                uint16_t dh;
                memcpy(&dh, blk, 2);
                const int8_t *xq = a->q + ((j0 + j) * a->blocks + b) * GEMMA_QK;
                int s = 0;
                if (type == GEMMA_TYPE_Q8_0) {
                    for (int k = 0; k < GEMMA_QK; k++) s += (int8_t)blk[2 + k] * xq[k];
                } else {
                    for (int k = 0; k < GEMMA_QK / 2; k++) {
                        s += ((blk[2 + k] & 0x0F) - 8) * xq[k];
                        s += ((blk[2 + k] >> 4) - 8) * xq[k + GEMMA_QK / 2];
                    }
                }
                sum += (float)s * (gemma_fp16_to_fp32(dh) * a->d[(j0 + j) * a->blocks + b]);
            }
            out[j * out_stride + i] += sum;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2 tiles.

#ifdef GEMMA_X86

// The 32 weights of a block as signed bytes.
AVX2 static inline __m256i load_weights(int type, const uint8_t *blk) {
    if (type == GEMMA_TYPE_Q8_0) return _mm256_loadu_si256((const __m256i *)(blk + 2));
    const __m128i packed = _mm_loadu_si128((const __m128i *)(blk + 2));
    const __m256i bytes = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_sub_epi8(_mm256_and_si256(bytes, _mm256_set1_epi8(0x0F)), _mm256_set1_epi8(8));
}

// RM weight rows x RN activation rows over blocks [b0, b1); sums are added to out.
#define TILE_BODY(RM, RN)                                                                                \
    const size_t block_bytes = type == GEMMA_TYPE_Q8_0 ? GEMMA_Q8_0_BYTES : GEMMA_Q4_0_BYTES;            \
    __m256 acc[RM][RN];                                                                                  \
    for (int i = 0; i < RM; i++)                                                                         \
        for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();                                    \
    const __m256i ones = _mm256_set1_epi16(1);                                                           \
    for (int64_t b = b0; b < b1; b++) {                                                                  \
        __m256i wv[RM], aw[RM];                                                                          \
        __m256 dw[RM];                                                                                   \
        for (int i = 0; i < RM; i++) {                                                                   \
            const uint8_t *blk = w + (size_t)i * w_row_bytes + (size_t)b * block_bytes;                  \
            wv[i] = load_weights(type, blk);                                                             \
            aw[i] = _mm256_sign_epi8(wv[i], wv[i]);                                                      \
            uint16_t dh;                                                                                 \
            memcpy(&dh, blk, 2);                                                                         \
            dw[i] = _mm256_set1_ps(_cvtsh_ss(dh));                                                       \
        }                                                                                                \
        for (int j = 0; j < RN; j++) {                                                                   \
            const __m256i xv = _mm256_load_si256((const __m256i *)(a->q + ((j0 + j) * a->blocks + b) * GEMMA_QK)); \
            const __m256 dx = _mm256_broadcast_ss(a->d + (j0 + j) * a->blocks + b);                      \
            for (int i = 0; i < RM; i++) {                                                               \
                const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[i], _mm256_sign_epi8(xv, wv[i])), ones); \
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_mul_ps(dw[i], dx), acc[i][j]); \
            }                                                                                            \
        }                                                                                                \
    }                                                                                                    \
    for (int i = 0; i < RM; i++)                                                                         \
        for (int j = 0; j < RN; j++) out[j * out_stride + i] += hsum_float_8(acc[i][j]);

#define DEFINE_TILE(RM, RN)                                                                               \
    AVX2 static void tile_##RM##x##RN(int type, const uint8_t *w, size_t w_row_bytes, const activations_t *a, \
                                      int64_t j0, int64_t b0, int64_t b1, float *out, int64_t out_stride) { \
        TILE_BODY(RM, RN)                                                                                 \
    }

DEFINE_TILE(4, 1)
DEFINE_TILE(1, 1)
DEFINE_TILE(2, 4)
DEFINE_TILE(2, 3)
DEFINE_TILE(2, 2)
DEFINE_TILE(2, 1)
DEFINE_TILE(1, 4)

typedef void (*tile_fn)(int, const uint8_t *, size_t, const activations_t *, int64_t, int64_t, int64_t, float *, int64_t);

// Rows [r0, r0 + rm) x activation rows [0, cols) over blocks [b0, b1) with the direct tiles.
AVX2 static void direct_avx2(int type, const uint8_t *w, size_t w_row_bytes, int64_t r0, int64_t rm,
                             const activations_t *a, int64_t b0, int64_t b1, float *y, int64_t y_stride) {
    const int64_t cols = a->rows;
    // Shapes: 4x1 for one activation row; 2x4 (and 2x3) for several.
    int64_t r = r0;
    if (cols == 1) {
        for (; r + 4 <= r0 + rm; r += 4) tile_4x1(type, w + r * w_row_bytes, w_row_bytes, a, 0, b0, b1, y + r, y_stride);
        for (; r < r0 + rm; r++) tile_1x1(type, w + r * w_row_bytes, w_row_bytes, a, 0, b0, b1, y + r, y_stride);
        return;
    }
    for (; r + 2 <= r0 + rm; r += 2) {
        int64_t j = 0;
        for (; j + 4 <= cols; j += 4) tile_2x4(type, w + r * w_row_bytes, w_row_bytes, a, j, b0, b1, y + j * y_stride + r, y_stride);
        const tile_fn rest = cols - j == 3 ? tile_2x3 : cols - j == 2 ? tile_2x2 : cols - j == 1 ? tile_2x1 : NULL;
        if (rest) rest(type, w + r * w_row_bytes, w_row_bytes, a, j, b0, b1, y + j * y_stride + r, y_stride);
    }
    for (; r < r0 + rm; r++) {
        int64_t j = 0;
        for (; j + 4 <= cols; j += 4) tile_1x4(type, w + r * w_row_bytes, w_row_bytes, a, j, b0, b1, y + j * y_stride + r, y_stride);
        for (; j < cols; j++) tile_1x1(type, w + r * w_row_bytes, w_row_bytes, a, j, b0, b1, y + j * y_stride + r, y_stride);
    }
}

// Eight weight rows interleaved, per block: vector g, lane r = weights 4g .. 4g+3 of row r, as
// unsigned nibbles (Q4_0) or as |w| and w (Q8_0, for the sign trick), and the 8 row scales.
typedef struct {
    __m256i g[8];
    __m256i w[8];  // signed weights (Q8_0 only)
    __m256 d;
} interleaved_t;

// 8x8 transpose of 32-bit groups: group g of row r -> vector g, lane r.
AVX2 static inline void transpose_groups(const __m256i rows[8], __m256i out[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(rows[0], rows[1]), t1 = _mm256_unpackhi_epi32(rows[0], rows[1]);
    __m256i t2 = _mm256_unpacklo_epi32(rows[2], rows[3]), t3 = _mm256_unpackhi_epi32(rows[2], rows[3]);
    __m256i t4 = _mm256_unpacklo_epi32(rows[4], rows[5]), t5 = _mm256_unpackhi_epi32(rows[4], rows[5]);
    __m256i t6 = _mm256_unpacklo_epi32(rows[6], rows[7]), t7 = _mm256_unpackhi_epi32(rows[6], rows[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    // u0: group 0 of rows 0-3 | group 4 of rows 0-3; u4 the same for rows 4-7.
    out[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    out[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    out[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    out[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    out[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    out[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    out[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    out[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

AVX2 static void interleave(int type, const uint8_t *w, size_t w_row_bytes, int64_t b0, int64_t b1, interleaved_t *out) {
    const __m256i low = _mm256_set1_epi8(0x0F);
    const size_t block_bytes = type == GEMMA_TYPE_Q8_0 ? GEMMA_Q8_0_BYTES : GEMMA_Q4_0_BYTES;
    for (int64_t b = b0; b < b1; b++) {
        __m256i rows[8];
        uint16_t dh[8];
        for (int r = 0; r < 8; r++) {
            const uint8_t *blk = w + (size_t)r * w_row_bytes + (size_t)b * block_bytes;
            memcpy(&dh[r], blk, 2);
            if (type == GEMMA_TYPE_Q8_0) {
                rows[r] = _mm256_loadu_si256((const __m256i *)(blk + 2));
            } else {
                // Weights 0..15 in the low lane, 16..31 in the high lane, one per byte.
                const __m128i packed = _mm_loadu_si128((const __m128i *)(blk + 2));
                rows[r] = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low);
            }
        }
        interleaved_t *o = out + (b - b0);
        if (type == GEMMA_TYPE_Q8_0) {
            transpose_groups(rows, o->w);
            for (int g = 0; g < 8; g++) o->g[g] = _mm256_sign_epi8(o->w[g], o->w[g]);
        } else {
            transpose_groups(rows, o->g);
        }
        o->d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dh));
    }
}

// Q8_0: eight interleaved rows x RN activation rows over `count` blocks from block b0;
// y[j * y_stride + r] += the sums (r < 8). maddubs(|w|, sign(x, w)) per group, widened at once.
#define Q8_TILE(RN)                                                                                       \
    AVX2 static void q8_interleaved_##RN(const interleaved_t *blocks, int64_t count, const activations_t *a, \
                                         int64_t j0, int64_t b0, float *y, int64_t y_stride) {            \
        __m256 acc[RN];                                                                                   \
        for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                                        \
        const __m256i ones = _mm256_set1_epi16(1);                                                        \
        for (int64_t k = 0; k < count; k++) {                                                             \
            const interleaved_t *blk = blocks + k;                                                        \
            const int64_t b = b0 + k;                                                                     \
            __m256i s[RN];                                                                                \
            const int32_t *xq[RN];                                                                        \
            for (int j = 0; j < RN; j++) {                                                                \
                s[j] = _mm256_setzero_si256();                                                            \
                xq[j] = (const int32_t *)(a->q + ((j0 + j) * a->blocks + b) * GEMMA_QK);                  \
            }                                                                                             \
            for (int g = 0; g < 8; g++) {                                                                 \
                const __m256i ag = _mm256_load_si256(&blk->g[g]);                                         \
                const __m256i wg = _mm256_load_si256(&blk->w[g]);                                         \
                for (int j = 0; j < RN; j++) {                                                            \
                    const __m256i sx = _mm256_sign_epi8(_mm256_set1_epi32(xq[j][g]), wg);                 \
                    s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(_mm256_maddubs_epi16(ag, sx), ones)); \
                }                                                                                         \
            }                                                                                             \
            for (int j = 0; j < RN; j++) {                                                                \
                const int64_t at = (j0 + j) * a->blocks + b;                                              \
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), _mm256_mul_ps(blk->d, _mm256_broadcast_ss(a->d + at)), acc[j]); \
            }                                                                                             \
        }                                                                                                 \
        for (int j = 0; j < RN; j++) {                                                                    \
            float *out = y + (j0 + j) * y_stride;                                                         \
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), acc[j]));                           \
        }                                                                                                 \
    }

Q8_TILE(4)
Q8_TILE(1)

// Eight interleaved rows x RN activation rows over `count` blocks starting at block b0;
// y[j * y_stride + r] += the sums (r < 8).
#define Q4_TILE(RN)                                                                                       \
    AVX2 static void q4_interleaved_##RN(const interleaved_t *blocks, int64_t count, const activations_t *a, \
                                         int64_t j0, int64_t b0, float *y, int64_t y_stride) {            \
        __m256 acc[RN];                                                                                   \
        for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                                        \
        const __m256i ones = _mm256_set1_epi16(1);                                                        \
        for (int64_t k = 0; k < count; k++) {                                                             \
            const interleaved_t *blk = blocks + k;                                                     \
            const int64_t b = b0 + k;                                                                     \
            __m256i s[RN];                                                                                \
            const int32_t *xq[RN];                                                                        \
            for (int j = 0; j < RN; j++) {                                                                \
                s[j] = _mm256_setzero_si256();                                                            \
                xq[j] = (const int32_t *)(a->q + ((j0 + j) * a->blocks + b) * GEMMA_QK);                  \
            }                                                                                             \
            for (int g = 0; g < 8; g++) {                                                                 \
                const __m256i wg = _mm256_load_si256(&blk->g[g]);                                         \
                for (int j = 0; j < RN; j++)                                                              \
                    s[j] = _mm256_add_epi16(s[j], _mm256_maddubs_epi16(wg, _mm256_set1_epi32(xq[j][g]))); \
            }                                                                                             \
            for (int j = 0; j < RN; j++) {                                                                \
                const int64_t at = (j0 + j) * a->blocks + b;                                              \
                const __m256i dot = _mm256_sub_epi32(_mm256_madd_epi16(s[j], ones), _mm256_set1_epi32(a->sum8[at])); \
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(blk->d, _mm256_broadcast_ss(a->d + at)), acc[j]); \
            }                                                                                             \
        }                                                                                                 \
        for (int j = 0; j < RN; j++) {                                                                    \
            float *out = y + (j0 + j) * y_stride;                                                         \
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), acc[j]));                           \
        }                                                                                                 \
    }

Q4_TILE(4)
Q4_TILE(1)
#endif

// ---------------------------------------------------------------------------------------------
// The parallel driver.

typedef struct {
    int type;
    const uint8_t *w;
    size_t w_row_bytes;
    int64_t rows;
    int64_t rows_per_task;
    int64_t span;  // blocks per span
    const activations_t *a;
    float *y;
    int64_t y_stride;
    int avx2;
} matmul_job;

// Activation rows from which weights are interleaved (the cost of interleaving a block is
// shared by the activation rows).
#define Q4_INTERLEAVE_MIN_ROWS 3
#define Q8_INTERLEAVE_MIN_ROWS 3

static void matmul_task(void *context, int task) {
    const matmul_job *job = context;
    const activations_t *a = job->a;
    const int64_t r0 = task * job->rows_per_task;
    const int64_t r1 = r0 + job->rows_per_task < job->rows ? r0 + job->rows_per_task : job->rows;
    if (r0 >= r1) return;
    for (int64_t t = 0; t < a->rows; t++) memset(job->y + t * job->y_stride + r0, 0, sizeof(float) * (size_t)(r1 - r0));
    for (int64_t b0 = 0; b0 < a->blocks; b0 += job->span) {
        const int64_t b1 = b0 + job->span < a->blocks ? b0 + job->span : a->blocks;
#ifdef GEMMA_X86
        if (job->avx2) {
            int64_t r = r0;
            const int q4 = job->type == GEMMA_TYPE_Q4_0;
            if (a->rows >= (q4 ? Q4_INTERLEAVE_MIN_ROWS : Q8_INTERLEAVE_MIN_ROWS)) {
                interleaved_t *buffer = reserve(&interleave_buffer, sizeof(interleaved_t) * (size_t)(b1 - b0));
                for (; r + 8 <= r1; r += 8) {
                    interleave(job->type, job->w + (size_t)r * job->w_row_bytes, job->w_row_bytes, b0, b1, buffer);
                    int64_t j = 0;
                    if (q4) {
                        for (; j + 4 <= a->rows; j += 4) q4_interleaved_4(buffer, b1 - b0, a, j, b0, job->y + r, job->y_stride);
                        for (; j < a->rows; j++) q4_interleaved_1(buffer, b1 - b0, a, j, b0, job->y + r, job->y_stride);
                    } else {
                        for (; j + 4 <= a->rows; j += 4) q8_interleaved_4(buffer, b1 - b0, a, j, b0, job->y + r, job->y_stride);
                        for (; j < a->rows; j++) q8_interleaved_1(buffer, b1 - b0, a, j, b0, job->y + r, job->y_stride);
                    }
                }
            }
            if (r < r1) direct_avx2(job->type, job->w, job->w_row_bytes, r, r1 - r, a, b0, b1, job->y, job->y_stride);
            continue;
        }
#endif
        for (int64_t r = r0; r < r1; r++) {
            tile_c(job->type, job->w + (size_t)r * job->w_row_bytes, job->w_row_bytes, 1, a, 0, (int)a->rows, b0, b1,
                   job->y + r, job->y_stride);
        }
    }
}

void gemma_matmul_quantized_f32(int w_type, const void *w, int64_t rows, int64_t n, const float *x, int64_t x_rows,
                                float *y, int64_t y_stride) {
    if (rows <= 0 || x_rows <= 0) return;
    activations_t a;
    prepare_activations(x, x_rows, n, &a);
    matmul_job job;
    job.type = w_type;
    job.w = w;
    job.w_row_bytes = (size_t)(n / GEMMA_QK) * (w_type == GEMMA_TYPE_Q8_0 ? GEMMA_Q8_0_BYTES : GEMMA_Q4_0_BYTES);
    job.rows = rows;
    job.a = &a;
    job.y = y;
    job.y_stride = y_stride;
    job.avx2 = gemma_kernels_use_avx2();
    // Spans of blocks whose activations (34 bytes a block a row) fit in about 192 KB of L2.
    int64_t span = (192 * 1024) / (x_rows * (GEMMA_QK + 4));
    span = span < 16 ? 16 : span;
    job.span = span >= a.blocks ? a.blocks : span;
    // Tasks of whole groups of 8 rows, several per thread so that a slow core takes fewer.
    const int threads = gemma_threads();
    const int64_t work = rows * n * x_rows;
    int64_t tasks = work < (1 << 18) ? 1 : (int64_t)threads * 4;
    int64_t per_task = (rows + tasks - 1) / tasks;
    per_task = (per_task + 7) / 8 * 8;
    job.rows_per_task = per_task;
    tasks = (rows + per_task - 1) / per_task;
    gemma_parallel_for((int)tasks, matmul_task, &job);
}
