// Element-wise kernels of the forward pass: the GeGLU gate (tanh GELU) and a vector exp for
// softmax. The AVX2 exp is Cephes' expf (range reduction by ln 2 in two parts and a degree-6
// polynomial, within 2 ulp of expf), which tanh and the softmax are built on.
#include "gemma_kernels.h"
#include "kernels_internal.h"

#include <math.h>

#ifdef GEMMA_X86
AVX2 __m256 gemma_exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), _mm256_max_ps(_mm256_set1_ps(-87.3365447504f), x));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

// tanh(z) = 1 - 2 / (exp(2z) + 1), with z clamped where tanh is 1 in f32.
AVX2 static inline __m256 tanh8(__m256 z) {
    z = _mm256_min_ps(_mm256_set1_ps(9.0f), _mm256_max_ps(_mm256_set1_ps(-9.0f), z));
    const __m256 e = gemma_exp8(_mm256_add_ps(z, z));
    return _mm256_sub_ps(_mm256_set1_ps(1.0f), _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f))));
}

AVX2 static void gelu_tanh_mul_avx2(float *g, const float *u, int64_t n) {
    const __m256 c = _mm256_set1_ps(0.7978845608028654f), k = _mm256_set1_ps(0.044715f), half = _mm256_set1_ps(0.5f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 inner = _mm256_mul_ps(c, _mm256_fmadd_ps(_mm256_mul_ps(k, x), _mm256_mul_ps(x, x), x));
        const __m256 gelu = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(_mm256_set1_ps(1.0f), tanh8(inner)));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(gelu, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        const float x = g[i];
        g[i] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))) * u[i];
    }
}
#endif

static void gelu_tanh_mul_c(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x))) * u[i];
    }
}

typedef struct {
    float *g;
    const float *u;
    int64_t n, per_task;
} gelu_job;

static void gelu_task(void *context, int task) {
    const gelu_job *job = context;
    const int64_t begin = task * job->per_task;
    const int64_t count = begin + job->per_task < job->n ? job->per_task : job->n - begin;
    if (count <= 0) return;
#ifdef GEMMA_X86
    if (gemma_kernels_use_avx2()) { gelu_tanh_mul_avx2(job->g + begin, job->u + begin, count); return; }
#endif
    gelu_tanh_mul_c(job->g + begin, job->u + begin, count);
}

void gemma_gelu_tanh_mul(float *g, const float *u, int64_t n) {
    gelu_job job = {g, u, n, n};
    int tasks = 1;
    if (n >= 1 << 15) {
        tasks = gemma_threads();
        job.per_task = ((n + tasks - 1) / tasks + 7) / 8 * 8;
    }
    gemma_parallel_for(tasks, gelu_task, &job);
}
