// Causal attention over a KV cache for one sequence's rows, its cost linear in the context.
// Work is split in tasks of (query row, KV head, span of positions); each task keeps a running
// maximum, sum and weighted sum of values per query head over its span (as flash-decoding
// does), and the spans of a row are merged at the end. The heads that share a KV head are
// computed together, so each key and value is read once for all of them.
#include "gemma_kernels.h"
#include "kernels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Positions per task.
#define SPAN 256

typedef struct {
    const float *q;
    int64_t q_stride;
    int64_t rows, start;
    const float *keys, *values;
    int64_t kv_stride;
    int heads, kv_heads, head_dim;
    float scale;
    float *out;
    int64_t out_stride;
    int64_t spans;  // spans of the longest row
    // Per (row, kv head, span, head in group): max, sum and head_dim weighted values.
    float *partial;
    int avx2;
} attention_job;

static size_t partial_floats(const attention_job *job) { return (size_t)job->head_dim + 2; }

static float *partial_at(const attention_job *job, int64_t row, int64_t g, int64_t span, int64_t h) {
    const int64_t group = job->heads / job->kv_heads;
    const int64_t index = ((row * job->kv_heads + g) * job->spans + span) * group + h;
    return job->partial + (size_t)index * partial_floats(job);
}

static float dot_c(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

#ifdef GEMMA_X86
AVX2 static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float s = hsum_float_8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

// Scores of four query heads against one key.
AVX2 static void dot4_avx2(const float *q, int64_t q_step, const float *k, int n, float *out) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 kv = _mm256_loadu_ps(k + i);
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), kv, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + q_step + i), kv, s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 2 * q_step + i), kv, s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(q + 3 * q_step + i), kv, s3);
    }
    out[0] = hsum_float_8(s0);
    out[1] = hsum_float_8(s1);
    out[2] = hsum_float_8(s2);
    out[3] = hsum_float_8(s3);
    for (; i < n; i++) {
        for (int h = 0; h < 4; h++) out[h] += q[h * q_step + i] * k[i];
    }
}

// acc[0 .. n) += sum over p of weights[p] * v[p * stride + ...], 64 columns at a time.
AVX2 static void weighted_sum_avx2(const float *weights, int64_t count, const float *v, int64_t stride, int n, float *acc) {
    int c = 0;
    for (; c + 64 <= n; c += 64) {
        __m256 a[8];
        for (int i = 0; i < 8; i++) a[i] = _mm256_loadu_ps(acc + c + 8 * i);
        for (int64_t p = 0; p < count; p++) {
            const __m256 w = _mm256_broadcast_ss(weights + p);
            const float *row = v + p * stride + c;
            for (int i = 0; i < 8; i++) a[i] = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8 * i), a[i]);
        }
        for (int i = 0; i < 8; i++) _mm256_storeu_ps(acc + c + 8 * i, a[i]);
    }
    for (; c + 8 <= n; c += 8) {
        __m256 a = _mm256_loadu_ps(acc + c);
        for (int64_t p = 0; p < count; p++) a = _mm256_fmadd_ps(_mm256_broadcast_ss(weights + p), _mm256_loadu_ps(v + p * stride + c), a);
        _mm256_storeu_ps(acc + c, a);
    }
    for (; c < n; c++) {
        for (int64_t p = 0; p < count; p++) acc[c] += weights[p] * v[p * stride + c];
    }
}

// x[i] = exp(x[i] - m); returns the sum.
AVX2 static float exp_sum_avx2(float *x, int64_t count, float m) {
    __m256 sum = _mm256_setzero_ps();
    const __m256 mv = _mm256_set1_ps(m);
    int64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        const __m256 e = gemma_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mv));
        _mm256_storeu_ps(x + i, e);
        sum = _mm256_add_ps(sum, e);
    }
    float s = hsum_float_8(sum);
    for (; i < count; i++) { x[i] = expf(x[i] - m); s += x[i]; }
    return s;
}
#endif

static void weighted_sum_c(const float *weights, int64_t count, const float *v, int64_t stride, int n, float *acc) {
    for (int64_t p = 0; p < count; p++) {
        for (int c = 0; c < n; c++) acc[c] += weights[p] * v[p * stride + c];
    }
}

static float exp_sum_c(float *x, int64_t count, float m) {
    float s = 0.0f;
    for (int64_t i = 0; i < count; i++) { x[i] = expf(x[i] - m); s += x[i]; }
    return s;
}

static void attention_task(void *context, int task) {
    const attention_job *job = context;
    const int64_t span = task % job->spans;
    const int64_t g = (task / job->spans) % job->kv_heads;
    const int64_t row = task / job->spans / job->kv_heads;
    const int group = job->heads / job->kv_heads;
    const int d = job->head_dim;
    const int64_t visible = job->start + row + 1;
    const int64_t p0 = span * SPAN;
    const int64_t p1 = p0 + SPAN < visible ? p0 + SPAN : visible;
    if (p0 >= p1) {
        for (int h = 0; h < group; h++) partial_at(job, row, g, span, h)[0] = -INFINITY;
        return;
    }
    const int64_t count = p1 - p0;
    float scores[SPAN * 16];
    float *s = group <= 16 ? scores : malloc(sizeof(float) * (size_t)(SPAN * group));
    const float *q = job->q + row * job->q_stride + (int64_t)g * group * d;
    const float *k = job->keys + p0 * job->kv_stride + (int64_t)g * d;
    // Scores, head-major: s[h * count + p].
    for (int64_t p = 0; p < count; p++) {
        const float *kp = k + p * job->kv_stride;
        int h = 0;
#ifdef GEMMA_X86
        if (job->avx2) {
            float four[4];
            for (; h + 4 <= group; h += 4) {
                dot4_avx2(q + (int64_t)h * d, d, kp, d, four);
                for (int i = 0; i < 4; i++) s[(h + i) * count + p] = four[i] * job->scale;
            }
            for (; h < group; h++) s[h * count + p] = dot_avx2(q + (int64_t)h * d, kp, d) * job->scale;
        }
#endif
        for (; h < group; h++) s[h * count + p] = dot_c(q + (int64_t)h * d, kp, d) * job->scale;
    }
    const float *v = job->values + p0 * job->kv_stride + (int64_t)g * d;
    for (int h = 0; h < group; h++) {
        float *sh = s + h * count;
        float m = -INFINITY;
        for (int64_t p = 0; p < count; p++) m = sh[p] > m ? sh[p] : m;
        float *part = partial_at(job, row, g, span, h);
        float *acc = part + 2;
        memset(acc, 0, sizeof(float) * (size_t)d);
#ifdef GEMMA_X86
        if (job->avx2) {
            part[1] = exp_sum_avx2(sh, count, m);
            weighted_sum_avx2(sh, count, v, job->kv_stride, d, acc);
            part[0] = m;
            continue;
        }
#endif
        part[1] = exp_sum_c(sh, count, m);
        weighted_sum_c(sh, count, v, job->kv_stride, d, acc);
        part[0] = m;
    }
    if (s != scores) free(s);
}

static _Thread_local float *partial_buffer = NULL;
static _Thread_local size_t partial_size = 0;

void gemma_attention(const float *q, int64_t q_stride, int64_t rows, int64_t start,
                     const float *keys, const float *values, int64_t kv_stride,
                     int heads, int kv_heads, int head_dim, float scale, float *out, int64_t out_stride) {
    if (rows <= 0) return;
    attention_job job = {q, q_stride, rows, start, keys, values, kv_stride, heads, kv_heads, head_dim, scale,
                         out, out_stride, 0, NULL, gemma_kernels_use_avx2()};
    job.spans = (start + rows + SPAN - 1) / SPAN;
    const size_t needed = (size_t)(rows * heads * job.spans) * partial_floats(&job);
    if (needed > partial_size) {
        free(partial_buffer);
        partial_size = needed + needed / 4;
        partial_buffer = malloc(sizeof(float) * partial_size);
    }
    job.partial = partial_buffer;
    const int64_t tasks = rows * kv_heads * job.spans;
    if (tasks > 1 && (start + rows) * rows * heads * head_dim >= 1 << 16) {
        gemma_parallel_for((int)tasks, attention_task, &job);
    } else {
        for (int64_t t = 0; t < tasks; t++) attention_task(&job, (int)t);
    }
    // Merge the spans: out = sum_s exp(m_s - M) acc_s / sum_s exp(m_s - M) l_s.
    const int group = heads / kv_heads;
    for (int64_t row = 0; row < rows; row++) {
        for (int g = 0; g < kv_heads; g++) {
            for (int h = 0; h < group; h++) {
                float m = -INFINITY;
                for (int64_t sp = 0; sp < job.spans; sp++) {
                    const float ms = partial_at(&job, row, g, sp, h)[0];
                    m = ms > m ? ms : m;
                }
                float *o = out + row * out_stride + (int64_t)(g * group + h) * head_dim;
                memset(o, 0, sizeof(float) * (size_t)head_dim);
                float total = 0.0f;
                for (int64_t sp = 0; sp < job.spans; sp++) {
                    const float *part = partial_at(&job, row, g, sp, h);
                    if (part[0] == -INFINITY) continue;
                    const float f = expf(part[0] - m);
                    total += f * part[1];
                    for (int c = 0; c < head_dim; c++) o[c] += f * part[2 + c];
                }
                const float inverse = 1.0f / total;
                for (int c = 0; c < head_dim; c++) o[c] *= inverse;
            }
        }
    }
}
