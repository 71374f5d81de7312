// y = x W^T for f32, f16 and bf16 weights W (rows used where they lie) and f32 activations x.
// After llamafile's tinyBLAS: tiles of RM weight rows x RN activation rows, each weight vector
// converted to f32 once per tile and each product accumulated in its own register; spans of
// columns keep the activations in L2; rows split over the pool.
#include "gemma_kernels.h"
#include "kernels_internal.h"

#include <cblas.h>
#include <pthread.h>
#include <string.h>

static inline float load_scalar(int type, const void *w, int64_t i) {
    if (type == GEMMA_TYPE_F32) return ((const float *)w)[i];
    uint16_t h;
    memcpy(&h, (const uint8_t *)w + 2 * i, 2);
    if (type == GEMMA_TYPE_F16) return gemma_fp16_to_fp32(h);
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static size_t element_bytes(int type) { return type == GEMMA_TYPE_F32 ? 4 : 2; }

// Portable: rows [r0, r1) x every activation row over columns [k0, k1), added to y.
static void span_c(int type, const uint8_t *w, size_t w_row_bytes, int64_t r0, int64_t r1, const float *x,
                   int64_t x_rows, int64_t n, int64_t k0, int64_t k1, float *y, int64_t y_stride) {
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = w + (size_t)r * w_row_bytes;
        for (int64_t t = 0; t < x_rows; t++) {
            float sum = 0.0f;
            for (int64_t k = k0; k < k1; k++) sum += load_scalar(type, row, k) * x[t * n + k];
            y[t * y_stride + r] += sum;
        }
    }
}

#ifdef GEMMA_X86
AVX2 static inline __m256 load8(int type, const uint8_t *row, int64_t k) {
    if (type == GEMMA_TYPE_F32) return _mm256_loadu_ps((const float *)row + k);
    const __m128i h = _mm_loadu_si128((const __m128i *)(row + 2 * k));
    if (type == GEMMA_TYPE_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

#define FLOAT_TILE(RM, RN)                                                                               \
    AVX2 static void ftile_##RM##x##RN(int type, const uint8_t *w, size_t w_row_bytes, const float *x,   \
                                       int64_t n, int64_t k0, int64_t k1, float *y, int64_t y_stride) {   \
        __m256 acc[RM][RN];                                                                              \
        for (int i = 0; i < RM; i++)                                                                     \
            for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();                                \
        int64_t k = k0;                                                                                  \
        for (; k + 8 <= k1; k += 8) {                                                                    \
            __m256 wv[RM];                                                                               \
            for (int i = 0; i < RM; i++) wv[i] = load8(type, w + (size_t)i * w_row_bytes, k);            \
            for (int j = 0; j < RN; j++) {                                                               \
                const __m256 xv = _mm256_loadu_ps(x + j * n + k);                                        \
                for (int i = 0; i < RM; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);          \
            }                                                                                            \
        }                                                                                                \
        for (int i = 0; i < RM; i++) {                                                                   \
            for (int j = 0; j < RN; j++) {                                                               \
                float sum = hsum_float_8(acc[i][j]);                                                     \
                for (int64_t t = k; t < k1; t++)                                                         \
                    sum += load_scalar(type, w + (size_t)i * w_row_bytes, t) * x[j * n + t];             \
                y[j * y_stride + i] += sum;                                                              \
            }                                                                                            \
        }                                                                                                \
    }

FLOAT_TILE(4, 1)
FLOAT_TILE(1, 1)
FLOAT_TILE(3, 4)
FLOAT_TILE(1, 4)
FLOAT_TILE(3, 3)
FLOAT_TILE(3, 2)
FLOAT_TILE(3, 1)

typedef void (*ftile_fn)(int, const uint8_t *, size_t, const float *, int64_t, int64_t, int64_t, float *, int64_t);

AVX2 static void span_avx2(int type, const uint8_t *w, size_t w_row_bytes, int64_t r0, int64_t r1, const float *x,
                           int64_t x_rows, int64_t n, int64_t k0, int64_t k1, float *y, int64_t y_stride) {
    int64_t r = r0;
    if (x_rows == 1) {
        for (; r + 4 <= r1; r += 4) ftile_4x1(type, w + (size_t)r * w_row_bytes, w_row_bytes, x, n, k0, k1, y + r, y_stride);
        for (; r < r1; r++) ftile_1x1(type, w + (size_t)r * w_row_bytes, w_row_bytes, x, n, k0, k1, y + r, y_stride);
        return;
    }
    for (; r + 3 <= r1; r += 3) {
        int64_t j = 0;
        for (; j + 4 <= x_rows; j += 4)
            ftile_3x4(type, w + (size_t)r * w_row_bytes, w_row_bytes, x + j * n, n, k0, k1, y + j * y_stride + r, y_stride);
        const ftile_fn rest = x_rows - j == 3 ? ftile_3x3 : x_rows - j == 2 ? ftile_3x2 : x_rows - j == 1 ? ftile_3x1 : NULL;
        if (rest) rest(type, w + (size_t)r * w_row_bytes, w_row_bytes, x + j * n, n, k0, k1, y + j * y_stride + r, y_stride);
    }
    for (; r < r1; r++) {
        int64_t j = 0;
        for (; j + 4 <= x_rows; j += 4)
            ftile_1x4(type, w + (size_t)r * w_row_bytes, w_row_bytes, x + j * n, n, k0, k1, y + j * y_stride + r, y_stride);
        for (; j < x_rows; j++)
            ftile_1x1(type, w + (size_t)r * w_row_bytes, w_row_bytes, x + j * n, n, k0, k1, y + j * y_stride + r, y_stride);
    }
}
#endif

typedef struct {
    int type;
    const uint8_t *w;
    size_t w_row_bytes;
    int64_t rows, n, rows_per_task, span;
    const float *x;
    int64_t x_rows;
    float *y;
    int64_t y_stride;
    int avx2;
} float_job;

static void float_task(void *context, int task) {
    const float_job *job = context;
    int64_t r0, r1;
    if (!gemma_task_rows(task, job->rows_per_task, job->rows, &r0, &r1)) return;
    for (int64_t t = 0; t < job->x_rows; t++) memset(job->y + t * job->y_stride + r0, 0, sizeof(float) * (size_t)(r1 - r0));
    for (int64_t k0 = 0; k0 < job->n; k0 += job->span) {
        const int64_t k1 = k0 + job->span < job->n ? k0 + job->span : job->n;
#ifdef GEMMA_X86
        if (job->avx2) {
            span_avx2(job->type, job->w, job->w_row_bytes, r0, r1, job->x, job->x_rows, job->n, k0, k1, job->y, job->y_stride);
            continue;
        }
#endif
        span_c(job->type, job->w, job->w_row_bytes, r0, r1, job->x, job->x_rows, job->n, k0, k1, job->y, job->y_stride);
    }
}

// f32 weights times many activation rows (a prompt): OpenBLAS's sgemm on each task's rows of
// W, single-threaded inside our pool (no OpenBLAS threads spinning beside ours). It measures
// 1.2-2x faster than the tiles from 64 rows on, and slower below 48 (BENCHMARKS.md, "Kernels").
#define SGEMM_MIN_ROWS 64

typedef struct {
    const float *w, *x;
    float *y;
    int64_t rows, n, x_rows, y_stride, rows_per_task;
} sgemm_job;

static void sgemm_task(void *context, int task) {
    const sgemm_job *job = context;
    int64_t r0, r1;
    if (!gemma_task_rows(task, job->rows_per_task, job->rows, &r0, &r1)) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)job->x_rows, (blasint)(r1 - r0), (blasint)job->n, 1.0f,
                job->x, (blasint)job->n, job->w + r0 * job->n, (blasint)job->n, 0.0f, job->y + r0, (blasint)job->y_stride);
}

static pthread_once_t openblas_single_thread = PTHREAD_ONCE_INIT;
static void set_openblas_single_thread(void) { openblas_set_num_threads(1); }

void gemma_matmul_float(int w_type, const void *w, int64_t rows, int64_t n, const float *x, int64_t x_rows,
                        float *y, int64_t y_stride) {
    if (rows <= 0 || x_rows <= 0) return;
    if (w_type == GEMMA_TYPE_F32 && x_rows >= SGEMM_MIN_ROWS && gemma_kernels_use_avx2()) {
        pthread_once(&openblas_single_thread, set_openblas_single_thread);
        const int64_t tasks = (int64_t)gemma_threads() * 2;
        sgemm_job job = {w, x, y, rows, n, x_rows, y_stride, ((rows + tasks - 1) / tasks + 15) / 16 * 16};
        gemma_parallel_for((int)((rows + job.rows_per_task - 1) / job.rows_per_task), sgemm_task, &job);
        return;
    }
    float_job job;
    job.type = w_type;
    job.w = w;
    job.w_row_bytes = (size_t)n * element_bytes(w_type);
    job.rows = rows;
    job.n = n;
    job.x = x;
    job.x_rows = x_rows;
    job.y = y;
    job.y_stride = y_stride;
    job.avx2 = gemma_kernels_use_avx2();
    // Spans of columns (multiples of 8) whose activations fit in about 192 KB of L2.
    int64_t span = (192 * 1024 / 4) / x_rows / 8 * 8;
    span = span < 256 ? 256 : span;
    job.span = span >= n ? n : span;
    const int threads = gemma_threads();
    int64_t tasks = rows * n * x_rows < (1 << 17) ? 1 : (int64_t)threads * 4;
    int64_t per_task = (rows + tasks - 1) / tasks;
    per_task = (per_task + 11) / 12 * 12;
    job.rows_per_task = per_task;
    tasks = (rows + per_task - 1) / per_task;
    gemma_parallel_for((int)tasks, float_task, &job);
}
