// A small fork-join pool for the kernels: the caller runs task 0 itself and `threads - 1`
// workers run the rest. Idle workers block on a condition variable (after a short bounded spin,
// so back-to-back kernels of one forward pass do not pay a wake-up each); nothing spins while
// the engine is idle.
#include "gemma_kernels.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_THREADS 64
// Spins of a thread waiting for a job (or for its helpers) before it sleeps: about 20-50 us,
// enough to bridge the gap between the kernels of one forward pass.
#define SPIN_LIMIT 2000

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_cond_t done;
    pthread_t workers[MAX_THREADS];
    int started;  // workers created
    int threads;  // threads a job uses (caller included)

    // The current job.
    gemma_task_fn fn;
    void *context;
    int tasks;
    atomic_int next_task;
    atomic_int pending;  // workers still inside the job
    // Per worker: the number of the last job it was given. A worker runs a job when its number
    // changes; workers beyond the current thread count are not given jobs and stay asleep.
    atomic_uint_fast64_t job[MAX_THREADS];
    uint64_t first_job[MAX_THREADS];  // job number when the worker was created
    uint64_t jobs;  // jobs submitted
} pool_t;

static pool_t pool = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .wake = PTHREAD_COND_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
    .threads = 0,  // 0: not chosen yet, the online cores (at most 8) on first use
};
static pthread_mutex_t submit_lock = PTHREAD_MUTEX_INITIALIZER;

static void run_tasks(void) {
    for (;;) {
        const int task = atomic_fetch_add(&pool.next_task, 1);
        if (task >= pool.tasks) break;
        pool.fn(pool.context, task);
    }
}

static void *worker_main(void *arg) {
    const int index = (int)(intptr_t)arg;
    atomic_uint_fast64_t *job = &pool.job[index];
    uint64_t seen = pool.first_job[index];
    for (;;) {
        int spins = 0;
        while (atomic_load_explicit(job, memory_order_acquire) == seen && spins < SPIN_LIMIT) {
            CPU_RELAX();
            spins++;
        }
        if (atomic_load_explicit(job, memory_order_acquire) == seen) {
            pthread_mutex_lock(&pool.lock);
            while (atomic_load(job) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
            pthread_mutex_unlock(&pool.lock);
        }
        seen = atomic_load(job);
        run_tasks();
        if (atomic_fetch_sub(&pool.pending, 1) == 1) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.lock);
        }
    }
    return NULL;
}

void gemma_set_threads(int threads) {
    pthread_mutex_lock(&submit_lock);
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    pool.threads = threads;
    pthread_mutex_unlock(&submit_lock);
}

static int default_threads(void) {
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores < 1 ? 1 : cores > 8 ? 8 : (int)cores;
}

int gemma_threads(void) {
    pthread_mutex_lock(&submit_lock);
    if (pool.threads == 0) pool.threads = default_threads();
    const int threads = pool.threads;
    pthread_mutex_unlock(&submit_lock);
    return threads;
}

void gemma_parallel_for(int tasks, gemma_task_fn fn, void *context) {
    if (tasks <= 0) return;
    pthread_mutex_lock(&submit_lock);
    if (pool.threads == 0) pool.threads = default_threads();
    const int threads = pool.threads;
    if (threads == 1 || tasks == 1) {
        for (int t = 0; t < tasks; t++) fn(context, t);
        pthread_mutex_unlock(&submit_lock);
        return;
    }
    while (pool.started < threads - 1) {
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
        atomic_store(&pool.job[pool.started], pool.jobs);
        pool.first_job[pool.started] = pool.jobs;
        if (pthread_create(&pool.workers[pool.started], &attr, worker_main, (void *)(intptr_t)pool.started) != 0) {
            pthread_attr_destroy(&attr);
            break;
        }
        pthread_attr_destroy(&attr);
        pool.started++;
    }
    pool.fn = fn;
    pool.context = context;
    pool.tasks = tasks;
    atomic_store(&pool.next_task, 0);
    const int helpers = pool.started < threads - 1 ? pool.started : threads - 1;
    atomic_store(&pool.pending, helpers);
    pool.jobs++;
    pthread_mutex_lock(&pool.lock);
    for (int i = 0; i < helpers; i++) atomic_store_explicit(&pool.job[i], pool.jobs, memory_order_release);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);

    run_tasks();

    int spins = 0;
    while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0 && spins < SPIN_LIMIT) {
        CPU_RELAX();
        spins++;
    }
    if (atomic_load(&pool.pending) > 0) {
        pthread_mutex_lock(&pool.lock);
        while (atomic_load(&pool.pending) > 0) pthread_cond_wait(&pool.done, &pool.lock);
        pthread_mutex_unlock(&pool.lock);
    }
    pthread_mutex_unlock(&submit_lock);
}
