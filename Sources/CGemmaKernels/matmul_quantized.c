// y = x W^T for Q8_0 and Q4_0 weights W (rows of ggml blocks, used where they lie) and f32
// activations x, quantized to Q8_0 per 32-element block as ggml does.
//
// Two AVX2 paths (after ggml's ggml_vec_dot_q8_0_q8_0, llamafile's tinyBLAS_Q0_AVX and ggml's
// repacked q4_0 8x8 GEMM/GEMV), each checked against the portable C path in the tests:
//  - packed weights (gemma_pack_quantized, done once at load): eight rows interleaved so that
//    lane r of a vector holds 4 weights of row r; one maddubs then multiplies 4 weights of 8
//    rows by 4 broadcast activations, several activation rows share every weight load, and
//    Q4_0's unsigned nibbles let 8 products add up in 16 bits before one widening per block;
//  - rows outside whole groups of 8 (or unpacked weights): tiles of RM rows x RN activation
//    rows, each product in its own register (decode: the Q4_0 nibbles kept unsigned too).
// The work is split over the pool in tasks of rows, and the blocks in spans whose activations
// stay in L2, so weights are read from memory once per call for all rows of x.
#include "gemma_kernels.h"
#include "kernels_internal.h"

#include <stdlib.h>
#include <string.h>

// Bytes of one block of eight packed rows: 8 x 32 quants (Q8_0) or 8 x 16 nibble bytes (Q4_0),
// then 8 f16 scales.
#define PACKED_Q8_0_BYTES 272
#define PACKED_Q4_0_BYTES 144
// Single-row (decode) kernels prefetch the packed weights this far ahead: the hardware
// prefetchers stop at every 4 KB boundary, and decode is bound by how fast weights stream in
// (BENCHMARKS.md, "Kernels": Q4_0 on a 131072 x 2048 matrix from about 21 to 25-30 GB/s with 2
// threads). Q4_0 prefetches non-temporally (each weight is read once a step; its whole step's
// products measured about 6% faster, and its decode reached 86% of the probe that way); Q8_0
// into every level (non-temporal measured no better alone and worse in the side-by-side run).
#ifndef PREFETCH_BYTES
#define PREFETCH_BYTES 2048
#endif
// The `lines` cache lines of a block, PREFETCH_BYTES ahead of `blk`.
#define PREFETCH_AHEAD(blk, lines, hint)                                                               \
    for (int line_ = 0; line_ < (lines); line_++) _mm_prefetch((const char *)(blk) + PREFETCH_BYTES + 64 * line_, hint)

// ---------------------------------------------------------------------------------------------
// Activations: Q8_0 quants (32 bytes per block, aligned), f32 scales, and 8 x the block's sum
// (for the unsigned-nibble Q4_0 path).

typedef struct {
    int8_t *q;      // [rows][blocks][32]
    float *d;       // [rows][blocks]
    int32_t *sum8;  // [rows][blocks]
    int64_t rows, blocks;
} activations_t;

// A per-thread buffer that grows and is reused, for the caller's quantized activations.
typedef struct {
    void *data;
    size_t size;
} buffer_t;

static _Thread_local buffer_t activation_buffer;

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

// Q4_0 rows x one activation row (decode): the nibbles stay unsigned, so maddubs takes them
// as they are and 8 x the activation block's sum comes off once per block, instead of
// re-centring and sign-flipping every weight.
#define Q4_GEMV(RM)                                                                                      \
    AVX2 static void q4_gemv_##RM(const uint8_t *w, size_t w_row_bytes, const activations_t *a, int64_t b0, \
                                  int64_t b1, float *y) {                                               \
        __m256 acc[RM];                                                                                  \
        for (int i = 0; i < RM; i++) acc[i] = _mm256_setzero_ps();                                       \
        const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8); \
        for (int64_t b = b0; b < b1; b++) {                                                              \
            const __m256i xv = _mm256_load_si256((const __m256i *)(a->q + b * GEMMA_QK));                \
            const __m256i offset = _mm256_madd_epi16(_mm256_maddubs_epi16(eight, xv), ones);             \
            const float dx = a->d[b];                                                                    \
            for (int i = 0; i < RM; i++) {                                                               \
                const uint8_t *blk = w + (size_t)i * w_row_bytes + (size_t)b * GEMMA_Q4_0_BYTES;         \
                const __m128i packed = _mm_loadu_si128((const __m128i *)(blk + 2));                      \
                const __m256i nibbles = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), low); \
                const __m256i p = _mm256_sub_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(nibbles, xv), ones), offset); \
                uint16_t dh;                                                                             \
                memcpy(&dh, blk, 2);                                                                     \
                acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(_cvtsh_ss(dh) * dx), acc[i]); \
            }                                                                                            \
        }                                                                                                \
        for (int i = 0; i < RM; i++) y[i] += hsum_float_8(acc[i]);                                       \
    }

Q4_GEMV(4)
Q4_GEMV(1)

// Rows [r0, r0 + rm) x activation rows [0, cols) over blocks [b0, b1) with the direct tiles.
AVX2 static void direct_avx2(int type, const uint8_t *w, size_t w_row_bytes, int64_t r0, int64_t rm,
                             const activations_t *a, int64_t b0, int64_t b1, float *y, int64_t y_stride) {
    const int64_t cols = a->rows;
    // Shapes: 4x1 for one activation row; 2x4 (and 2x3) for several.
    int64_t r = r0;
    if (cols == 1 && type == GEMMA_TYPE_Q4_0) {
        for (; r + 4 <= r0 + rm; r += 4) q4_gemv_4(w + r * w_row_bytes, w_row_bytes, a, b0, b1, y + r);
        for (; r < r0 + rm; r++) q4_gemv_1(w + r * w_row_bytes, w_row_bytes, a, b0, b1, y + r);
        return;
    }
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

// Packed weights (see gemma_pack_quantized): eight rows interleaved per block. Q8_0: vector g,
// lane r = weights 4g .. 4g+3 of row r (signed); Q4_0: vector g (g < 4), lane r = bytes
// 4g .. 4g+3 of row r's nibbles, whose low nibbles are weights 4g .. 4g+3 and high nibbles
// weights 16+4g .. 16+4g+3; then the 8 rows' f16 scales.

// Q8_0: eight packed rows x RN activation rows over `count` blocks from block b0 (`blk` points
// at block b0 of the group); y[j * y_stride + r] += the sums. Per group of 4 weights:
// maddubs(|w|, sign(x, w)) for 8 rows at once, widened and added.
#define PACKED_Q8(RN)                                                                                     \
    AVX2 static void packed_q8_##RN(const uint8_t *blk, int64_t count, const activations_t *a, int64_t j0, \
                                    int64_t b0, float *y, int64_t y_stride) {                             \
        __m256 acc[RN];                                                                                   \
        for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                                        \
        const __m256i ones = _mm256_set1_epi16(1);                                                        \
        for (int64_t k = 0; k < count; k++, blk += PACKED_Q8_0_BYTES) {                                   \
            const int64_t b = b0 + k;                                                                     \
            if (RN == 1) PREFETCH_AHEAD(blk, 5, _MM_HINT_T0);                                            \
            __m256i s[RN];                                                                                \
            const int32_t *xq[RN];                                                                        \
            for (int j = 0; j < RN; j++) {                                                                \
                s[j] = _mm256_setzero_si256();                                                            \
                xq[j] = (const int32_t *)(a->q + ((j0 + j) * a->blocks + b) * GEMMA_QK);                  \
            }                                                                                             \
            for (int g = 0; g < 8; g++) {                                                                 \
                const __m256i wg = _mm256_loadu_si256((const __m256i *)(blk + 32 * g));                   \
                const __m256i ag = _mm256_sign_epi8(wg, wg);                                              \
                for (int j = 0; j < RN; j++) {                                                            \
                    const __m256i sx = _mm256_sign_epi8(_mm256_set1_epi32(xq[j][g]), wg);                 \
                    s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(_mm256_maddubs_epi16(ag, sx), ones)); \
                }                                                                                         \
            }                                                                                             \
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 256)));              \
            for (int j = 0; j < RN; j++) {                                                                \
                const __m256 dx = _mm256_broadcast_ss(a->d + (j0 + j) * a->blocks + b);                   \
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), _mm256_mul_ps(d, dx), acc[j]);         \
            }                                                                                             \
        }                                                                                                 \
        for (int j = 0; j < RN; j++) {                                                                    \
            float *out = y + (j0 + j) * y_stride;                                                         \
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), acc[j]));                           \
        }                                                                                                 \
    }

// Q4_0: the same with unsigned nibbles, which maddubs takes as they are: 8 products per lane
// add up in 16 bits, one widening per block, and 8 x the activation block's sum comes off.
#define PACKED_Q4(RN)                                                                                     \
    AVX2 static void packed_q4_##RN(const uint8_t *blk, int64_t count, const activations_t *a, int64_t j0, \
                                    int64_t b0, float *y, int64_t y_stride) {                             \
        __m256 acc[RN];                                                                                   \
        for (int j = 0; j < RN; j++) acc[j] = _mm256_setzero_ps();                                        \
        const __m256i ones = _mm256_set1_epi16(1), low = _mm256_set1_epi8(0x0F);                          \
        for (int64_t k = 0; k < count; k++, blk += PACKED_Q4_0_BYTES) {                                   \
            const int64_t b = b0 + k;                                                                     \
            if (RN == 1) PREFETCH_AHEAD(blk, 3, _MM_HINT_NTA);                                           \
            __m256i s[RN];                                                                                \
            const int32_t *xq[RN];                                                                        \
            for (int j = 0; j < RN; j++) {                                                                \
                s[j] = _mm256_setzero_si256();                                                            \
                xq[j] = (const int32_t *)(a->q + ((j0 + j) * a->blocks + b) * GEMMA_QK);                  \
            }                                                                                             \
            for (int g = 0; g < 4; g++) {                                                                 \
                const __m256i v = _mm256_loadu_si256((const __m256i *)(blk + 32 * g));                    \
                const __m256i lo = _mm256_and_si256(v, low);                                              \
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low);                        \
                for (int j = 0; j < RN; j++) {                                                            \
                    s[j] = _mm256_add_epi16(s[j], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(xq[j][g])));   \
                    s[j] = _mm256_add_epi16(s[j], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(xq[j][g + 4]))); \
                }                                                                                         \
            }                                                                                             \
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(blk + 128)));              \
            for (int j = 0; j < RN; j++) {                                                                \
                const int64_t at = (j0 + j) * a->blocks + b;                                              \
                const __m256i dot = _mm256_sub_epi32(_mm256_madd_epi16(s[j], ones), _mm256_set1_epi32(a->sum8[at])); \
                acc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(d, _mm256_broadcast_ss(a->d + at)), acc[j]); \
            }                                                                                             \
        }                                                                                                 \
        for (int j = 0; j < RN; j++) {                                                                    \
            float *out = y + (j0 + j) * y_stride;                                                         \
            _mm256_storeu_ps(out, _mm256_add_ps(_mm256_loadu_ps(out), acc[j]));                           \
        }                                                                                                 \
    }

PACKED_Q8(4)
PACKED_Q8(2)
PACKED_Q8(1)
PACKED_Q4(4)
PACKED_Q4(2)
PACKED_Q4(1)

typedef void (*packed_fn)(const uint8_t *, int64_t, const activations_t *, int64_t, int64_t, float *, int64_t);
#endif

// ---------------------------------------------------------------------------------------------
// Packing.

static int64_t packed_block_bytes(int type) { return type == GEMMA_TYPE_Q8_0 ? PACKED_Q8_0_BYTES : PACKED_Q4_0_BYTES; }

int64_t gemma_packed_bytes(int type, int64_t rows, int64_t n) {
    return rows / 8 * (n / GEMMA_QK) * packed_block_bytes(type);
}

typedef struct {
    int type;
    const uint8_t *w;
    int64_t n;
    uint8_t *packed;
} pack_job;

static void pack_group(void *context, int group) {
    const pack_job *job = context;
    const int64_t blocks = job->n / GEMMA_QK;
    const size_t block_bytes = job->type == GEMMA_TYPE_Q8_0 ? GEMMA_Q8_0_BYTES : GEMMA_Q4_0_BYTES;
    const size_t row_bytes = (size_t)blocks * block_bytes;
    const int64_t pb = packed_block_bytes(job->type);
    const int groups_of_4 = job->type == GEMMA_TYPE_Q8_0 ? 8 : 4;  // 4-byte groups per block
    uint8_t *out = job->packed + (size_t)group * (size_t)(blocks * pb);
    for (int64_t b = 0; b < blocks; b++, out += pb) {
        for (int r = 0; r < 8; r++) {
            const uint8_t *blk = job->w + (size_t)(group * 8 + r) * row_bytes + (size_t)b * block_bytes;
            for (int g = 0; g < groups_of_4; g++) memcpy(out + 32 * g + 4 * r, blk + 2 + 4 * g, 4);
            memcpy(out + 32 * groups_of_4 + 2 * r, blk, 2);
        }
    }
}

void gemma_pack_quantized(int type, const void *w, int64_t rows, int64_t n, void *packed) {
    pack_job job = {type, w, n, packed};
    gemma_parallel_for((int)(rows / 8), pack_group, &job);
}

// ---------------------------------------------------------------------------------------------
// The parallel driver.

typedef struct {
    int type;
    const uint8_t *w;
    const uint8_t *packed;  // NULL, or the packed copy of the first rows / 8 * 8 rows
    size_t w_row_bytes;
    int64_t rows;
    int64_t rows_per_task;
    int64_t span;  // blocks per span
    const activations_t *a;
    float *y;
    int64_t y_stride;
    int avx2;
} matmul_job;

static void matmul_task(void *context, int task) {
    const matmul_job *job = context;
    const activations_t *a = job->a;
    int64_t r0, r1;
    if (!gemma_task_rows(task, job->rows_per_task, job->rows, &r0, &r1)) return;
    for (int64_t t = 0; t < a->rows; t++) memset(job->y + t * job->y_stride + r0, 0, sizeof(float) * (size_t)(r1 - r0));
    for (int64_t b0 = 0; b0 < a->blocks; b0 += job->span) {
        const int64_t b1 = b0 + job->span < a->blocks ? b0 + job->span : a->blocks;
#ifdef GEMMA_X86
        if (job->avx2) {
            int64_t r = r0;
            if (job->packed) {
                const int q4 = job->type == GEMMA_TYPE_Q4_0;
                const packed_fn four = q4 ? packed_q4_4 : packed_q8_4, two = q4 ? packed_q4_2 : packed_q8_2,
                                one = q4 ? packed_q4_1 : packed_q8_1;
                const int64_t pb = packed_block_bytes(job->type);
                for (; r + 8 <= r1 && r + 8 <= job->rows / 8 * 8; r += 8) {
                    const uint8_t *blk = job->packed + (size_t)((r / 8 * a->blocks + b0) * pb);
                    int64_t j = 0;
                    for (; j + 4 <= a->rows; j += 4) four(blk, b1 - b0, a, j, b0, job->y + r, job->y_stride);
                    for (; j + 2 <= a->rows; j += 2) two(blk, b1 - b0, a, j, b0, job->y + r, job->y_stride);
                    for (; j < a->rows; j++) one(blk, b1 - b0, a, j, b0, job->y + r, job->y_stride);
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

void gemma_matmul_quantized_f32(int w_type, const void *w, const void *packed, int64_t rows, int64_t n,
                                const float *x, int64_t x_rows, float *y, int64_t y_stride) {
    if (rows <= 0 || x_rows <= 0) return;
    activations_t a;
    prepare_activations(x, x_rows, n, &a);
    matmul_job job;
    job.type = w_type;
    job.w = w;
    job.packed = packed;
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
