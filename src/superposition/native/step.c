/* superposition's native training step: `count` steps of the paper's tied models (linear,
 * relu_output, relu_hidden) on independent dense features, with Adam(W) or SGD, in place.
 *
 * The same maths as `models.fused.loss_and_grads` + `optim.update`, and the same data as
 * `data.sample` (SplitMix64 of key + counter * golden; gate from bits 0-23, value from bits 40-63),
 * bit for bit. Layout: an instance at a time (its parameters stay in L1), the batch in blocks of
 * BLOCK rows held feature-major so that every inner loop runs over the block and vectorises.
 * Instances are independent, so they run in parallel (OpenMP) and an instance's result does not
 * depend on the others or on the thread count. Built and loaded by `superposition.native`. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 64
#define GOLDEN 0x9E3779B97F4A7C15ULL

enum { LINEAR = 0, RELU_OUTPUT = 1, RELU_HIDDEN = 2 };
enum { ADAM = 0, ADAMW = 1, SGD = 2 };

typedef struct {
    int kind, optimizer, signed_inputs, nesterov, threads;
    int64_t n_inst, n_feat, n_hidden, batch, start, count;
    float beta1, beta2, eps, weight_decay, momentum;
    float *W, *b;              /* [inst, feat, hidden], [inst, feat] */
    float *W1, *W2, *b1, *b2;  /* optimiser state of W and b: Adam's moments, or SGD's buffer (1) */
    const int64_t *keys;       /* [inst] */
    const int64_t *threshold;  /* [inst, feat]: ceil(p * 2^24) */
    const float *importance;   /* [inst, feat] */
    const float *lrs;          /* [>= start + count] */
    const float *l1;           /* [inst] or NULL */
    float *loss_sum;           /* [inst] */
} sp_args;

int sp_version(void) { return 1; }

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct { float *x, *pre, *d, *z, *h, *dh, *gW, *gb; } scratch;

/* x[i][j] for rows r0..r0+R of step `step` (data.sample, independent law, uniform magnitude). */
static void sample_block(const sp_args *a, uint64_t key, const int64_t *th, int64_t step, int64_t r0, int R,
                         float *x) {
    const int64_t n = a->n_feat;
    const uint64_t base = (uint64_t)step * (uint64_t)a->batch * (uint64_t)n + 1 + (uint64_t)r0 * (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t t = (uint64_t)th[i];
        float *xi = x + i * BLOCK;
        for (int j = 0; j < R; j++) {
            const uint64_t bits = mix(key + (base + (uint64_t)j * (uint64_t)n + (uint64_t)i) * GOLDEN);
            float u = (float)(int32_t)(bits >> 40) * (1.0f / 16777216.0f);
            if (a->signed_inputs) u = u * 2.0f - 1.0f;
            xi[j] = u * (float)((bits & 0xFFFFFFULL) < t);
        }
    }
}

/* Forward and backward of one block; adds to gW, gb and returns the block's sum of weighted squares. */
static double block_grads(const sp_args *a, int64_t inst, const float *w, const float *bias, int R, scratch *s) {
    const int64_t n = a->n_feat, m = a->n_hidden;
    const int kind = a->kind;
    const float *imp = a->importance + inst * n;
    const float scale = 2.0f / ((float)a->batch * (float)n);
    for (int64_t k = 0; k < m; k++) {
        float *zk = s->z + k * BLOCK, *hk = s->h + k * BLOCK;
        for (int j = 0; j < R; j++) zk[j] = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            const float wik = w[i * m + k];
            const float *xi = s->x + i * BLOCK;
            for (int j = 0; j < R; j++) zk[j] += xi[j] * wik;
        }
        for (int j = 0; j < R; j++) hk[j] = kind == RELU_HIDDEN ? fmaxf(zk[j], 0.0f) : zk[j];
    }
    double loss = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float *p = s->pre + i * BLOCK, *di = s->d + i * BLOCK;
        const float *xi = s->x + i * BLOCK;
        const float bi = bias[i], ii = imp[i];
        for (int j = 0; j < R; j++) p[j] = bi;
        for (int64_t k = 0; k < m; k++) {
            const float wik = w[i * m + k];
            const float *hk = s->h + k * BLOCK;
            for (int j = 0; j < R; j++) p[j] += hk[j] * wik;
        }
        float lb = 0.0f, gbi = 0.0f;
        for (int j = 0; j < R; j++) {
            const float active = kind == LINEAR ? 1.0f : (float)(p[j] > 0.0f);
            const float e = p[j] * active - xi[j];
            const float we = ii * e;
            lb += we * e;
            di[j] = we * scale * active;
            gbi += di[j];
        }
        loss += lb;
        s->gb[i] += gbi;
    }
    for (int64_t k = 0; k < m; k++) {
        float *g = s->dh + k * BLOCK;
        const float *hk = s->h + k * BLOCK, *zk = s->z + k * BLOCK;
        for (int j = 0; j < R; j++) g[j] = 0.0f;
        for (int64_t i = 0; i < n; i++) {
            const float wik = w[i * m + k];
            const float *di = s->d + i * BLOCK;
            for (int j = 0; j < R; j++) g[j] += di[j] * wik;
        }
        if (a->l1) {  /* d/dh of l1 * mean_batch sum_k |h_k| */
            const float c = a->l1[inst] / (float)a->batch;
            for (int j = 0; j < R; j++) g[j] += c * (float)((hk[j] > 0.0f) - (hk[j] < 0.0f));
        }
        if (kind == RELU_HIDDEN)
            for (int j = 0; j < R; j++) g[j] *= (float)(zk[j] > 0.0f);
    }
    for (int64_t i = 0; i < n; i++) {
        const float *di = s->d + i * BLOCK, *xi = s->x + i * BLOCK;
        for (int64_t k = 0; k < m; k++) {
            const float *hk = s->h + k * BLOCK, *g = s->dh + k * BLOCK;
            float acc = 0.0f;
            for (int j = 0; j < R; j++) acc += di[j] * hk[j] + xi[j] * g[j];
            s->gW[i * m + k] += acc;
        }
    }
    return loss;
}

/* optim.adam_update / optim.sgd_update on N values. */
static void update(const sp_args *a, float *p, float *s1, float *s2, const float *grad, int64_t N, float lr,
                   int64_t t) {
    const float decay = a->weight_decay;
    if (a->optimizer == SGD) {
        for (int64_t q = 0; q < N; q++) {
            float g = grad[q] + (decay != 0.0f ? decay * p[q] : 0.0f);
            if (a->momentum != 0.0f) {
                s1[q] = s1[q] * a->momentum + g;
                g = a->nesterov ? g + a->momentum * s1[q] : s1[q];
            }
            p[q] -= lr * g;
        }
        return;
    }
    const float b1 = a->beta1, b2 = a->beta2;
    const float bias1 = 1.0f - powf(b1, (float)t), bias2_sqrt = sqrtf(1.0f - powf(b2, (float)t));
    const float step_size = lr / bias1;
    for (int64_t q = 0; q < N; q++) {
        float g = grad[q];
        if (a->optimizer == ADAMW) p[q] *= 1.0f - lr * decay;
        else if (decay != 0.0f) g += decay * p[q];
        s1[q] += (1.0f - b1) * (g - s1[q]);
        s2[q] = s2[q] * b2 + (1.0f - b2) * g * g;
        p[q] -= step_size * s1[q] / (sqrtf(s2[q]) / bias2_sqrt + a->eps);
    }
}

static int train_instance(const sp_args *a, int64_t inst, scratch *s) {
    const int64_t n = a->n_feat, m = a->n_hidden;
    float *w = a->W + inst * n * m, *bias = a->b + inst * n;
    float *w1 = a->W1 + inst * n * m, *bb1 = a->b1 + inst * n;
    float *w2 = a->W2 ? a->W2 + inst * n * m : NULL, *bb2 = a->b2 ? a->b2 + inst * n : NULL;
    const uint64_t key = (uint64_t)a->keys[inst];
    const int64_t *th = a->threshold + inst * n;
    for (int64_t c = 0; c < a->count; c++) {
        const int64_t step = a->start + c;
        memset(s->gW, 0, sizeof(float) * n * m);
        memset(s->gb, 0, sizeof(float) * n);
        double loss = 0.0;
        for (int64_t r0 = 0; r0 < a->batch; r0 += BLOCK) {
            const int R = (int)(a->batch - r0 < BLOCK ? a->batch - r0 : BLOCK);
            sample_block(a, key, th, step, r0, R, s->x);
            loss += block_grads(a, inst, w, bias, R, s);
        }
        a->loss_sum[inst] += (float)(loss / ((double)a->batch * (double)n));
        const float lr = a->lrs[step];
        update(a, w, w1, w2, s->gW, n * m, lr, step + 1);
        update(a, bias, bb1, bb2, s->gb, n, lr, step + 1);
    }
    return 0;
}

/* Returns 0, or 1 when scratch memory could not be allocated (nothing is then changed). */
int sp_train_steps(const sp_args *a) {
    const int64_t n = a->n_feat, m = a->n_hidden;
    int failed = 0;
#pragma omp parallel num_threads(a->threads)
    {
        scratch s;
        float *mem = malloc(sizeof(float) * (size_t)(BLOCK * (3 * n + 3 * m) + n * m + n));
        if (!mem) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
            s.x = mem; s.pre = s.x + BLOCK * n; s.d = s.pre + BLOCK * n;
            s.z = s.d + BLOCK * n; s.h = s.z + BLOCK * m; s.dh = s.h + BLOCK * m;
            s.gW = s.dh + BLOCK * m; s.gb = s.gW + n * m;
#pragma omp for schedule(dynamic, 1)
            for (int64_t inst = 0; inst < a->n_inst; inst++) train_instance(a, inst, &s);
        }
        free(mem);
    }
    return failed;
}
