/* superposition's native training step: `count` steps of the paper's tied models (linear,
 * relu_output, relu_hidden) on independent dense features (or the whole of a finite training set each
 * step), with Adam(W) or SGD, in place.
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

/* A vf is one of the machine's vector registers (GCC/Clang vector extension); a block row is NV of
 * them; times_w and output_side keep TILE × NV accumulators in registers. */
#if defined(__AVX512F__)
#define VL 16
#define NV 8
#elif defined(__AVX__)
#define VL 8
#define NV 8
#else
#define VL 4
#define NV 4
#endif
#define TILE 2
#define BLOCK (NV * VL)
#define GOLDEN 0x9E3779B97F4A7C15ULL
#define INLINE static inline __attribute__((always_inline))

typedef float vf __attribute__((vector_size(VL * sizeof(float)), may_alias));
typedef int32_t vi __attribute__((vector_size(VL * sizeof(float)), may_alias));

INLINE vf above(vf v, vf x) { return (vf)((vi)v & (x > (vf){0})); }  /* v where x > 0, else 0 */
INLINE vf positive(vf x) { return above((vf){0} + 1.0f, x); }         /* 1 where x > 0, else 0 */

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
    const float *data;         /* [inst, batch, feat]: a finite training set, the whole set each step; or NULL */
} sp_args;

int sp_version(void) { return 3; }

static inline uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Block rows are vf[NV]: x and d [feat][NV], z, h and dh [hidden][NV]. */
typedef struct { vf *x, *d, *z, *h, *dh, *mask; float *gW, *gb; } scratch;

INLINE float hsum(vf v) {
    float total = 0.0f;
    for (int l = 0; l < VL; l++) total += v[l];
    return total;
}

/* x[i][j] for rows r0..r0+R of step `step` (data.sample, independent law, uniform magnitude). */
static void sample_block(const sp_args *a, uint64_t key, const int64_t *th, int64_t step, int64_t r0, int R,
                         float *restrict x) {
    const int64_t n = a->n_feat;
    const int is_signed = a->signed_inputs;
    const uint64_t stride = (uint64_t)n * GOLDEN;  /* (c + j n) G = c G + j (n G), mod 2^64 */
    const uint64_t base = (uint64_t)step * (uint64_t)a->batch * (uint64_t)n + 1 + (uint64_t)r0 * (uint64_t)n;
    for (int64_t i = 0; i < n; i++) {
        const uint64_t t = (uint64_t)th[i], origin = key + (base + (uint64_t)i) * GOLDEN;
        float *restrict xi = x + i * BLOCK;
        if (is_signed) {
            for (int j = 0; j < R; j++) {
                const uint64_t bits = mix(origin + (uint64_t)j * stride);
                const float u = (float)(int32_t)(bits >> 40) * (1.0f / 16777216.0f);
                xi[j] = (u * 2.0f - 1.0f) * (float)((bits & 0xFFFFFFULL) < t);
            }
        } else {
            for (int j = 0; j < R; j++) {
                const uint64_t bits = mix(origin + (uint64_t)j * stride);
                const float u = (float)(int32_t)(bits >> 40) * (1.0f / 16777216.0f);
                xi[j] = u * (float)((bits & 0xFFFFFFULL) < t);
            }
        }
        for (int j = R; j < BLOCK; j++) xi[j] = 0.0f;  /* rows past the batch: finite, and masked */
    }
}

/* Rows r0..r0+R of a finite set, feature-major like sample_block's. */
static void load_block(const sp_args *a, int64_t inst, int64_t r0, int R, float *restrict x) {
    const int64_t n = a->n_feat;
    const float *rows = a->data + (inst * a->batch + r0) * n;
    for (int64_t i = 0; i < n; i++) {
        float *restrict xi = x + i * BLOCK;
        for (int j = 0; j < R; j++) xi[j] = rows[j * n + i];
        for (int j = R; j < BLOCK; j++) xi[j] = 0.0f;
    }
}

/* out[k] = sum_i in[i] * w[i, k] for T consecutive k from k0 (z = x W, and dh = d W). */
INLINE void times_w(const vf *restrict in, const float *restrict w, int64_t n, int64_t m, int64_t k0, const int T,
                    vf *restrict out) {
    vf acc[TILE][NV];
    for (int t = 0; t < T; t++)
        for (int q = 0; q < NV; q++) acc[t][q] = (vf){0};
    for (int64_t i = 0; i < n; i++) {
        const vf *xi = in + i * NV;
        for (int t = 0; t < T; t++) {
            const float wik = w[i * m + k0 + t];
            for (int q = 0; q < NV; q++) acc[t][q] += xi[q] * wik;
        }
    }
    for (int t = 0; t < T; t++)
        for (int q = 0; q < NV; q++) out[(k0 + t) * NV + q] = acc[t][q];
}

/* The output side of T consecutive features from i0: pre = b + h Wᵀ, the error against x, d = dL/dpre.
 * Returns the importance-weighted squared error summed over the block's rows, as a vector. */
INLINE vf output_side(int kind, const scratch *s, const float *restrict w, const float *restrict bias,
                      const float *restrict imp, float scale, int64_t m, int64_t i0, const int T) {
    vf acc[TILE][NV], loss = (vf){0};
    for (int t = 0; t < T; t++)
        for (int q = 0; q < NV; q++) acc[t][q] = (vf){0} + bias[i0 + t];
    for (int64_t k = 0; k < m; k++) {
        const vf *hk = s->h + k * NV;
        for (int t = 0; t < T; t++) {
            const float wik = w[(i0 + t) * m + k];
            for (int q = 0; q < NV; q++) acc[t][q] += hk[q] * wik;
        }
    }
    for (int t = 0; t < T; t++) {
        const vf *xi = s->x + (i0 + t) * NV;
        vf *di = s->d + (i0 + t) * NV;
        vf gb = (vf){0};
        for (int q = 0; q < NV; q++) {
            const vf p = acc[t][q];
            vf active = s->mask[q], out = p;
            if (kind != LINEAR) {
                active *= positive(p);
                out = above(p, p);
            }
            const vf e = out - xi[q];
            const vf we = imp[i0 + t] * e * s->mask[q];
            loss += we * e;
            di[q] = we * scale * active;
            gb += di[q];
        }
        s->gb[i0 + t] += hsum(gb);
    }
    return loss;
}

/* gW[i, k] += sum_rows d_i h_k + x_i dh_k for TI features from i0 and TK hidden units from k0. */
INLINE void weight_grads(const scratch *s, int64_t m, int64_t i0, int64_t k0, const int TI, const int TK) {
    vf acc[2][4];
    for (int a = 0; a < TI; a++)
        for (int t = 0; t < TK; t++) acc[a][t] = (vf){0};
    for (int q = 0; q < NV; q++)
        for (int a = 0; a < TI; a++) {
            const vf di = s->d[(i0 + a) * NV + q], xi = s->x[(i0 + a) * NV + q];
            for (int t = 0; t < TK; t++)
                acc[a][t] += di * s->h[(k0 + t) * NV + q] + xi * s->dh[(k0 + t) * NV + q];
        }
    for (int a = 0; a < TI; a++)
        for (int t = 0; t < TK; t++) s->gW[(i0 + a) * m + k0 + t] += hsum(acc[a][t]);
}

/* Forward and backward of one block of rows (the mask zeroes rows past the batch); adds to gW and gb
 * and returns the block's sum of importance-weighted squared errors. */
static double block_grads(const sp_args *a, int64_t inst, const float *restrict w, const float *restrict bias,
                          const scratch *s) {
    const int64_t n = a->n_feat, m = a->n_hidden;
    const int kind = a->kind;
    const float *imp = a->importance + inst * n;
    const float scale = 2.0f / ((float)a->batch * (float)n);
    int64_t k = 0, i = 0;
    for (; k + TILE <= m; k += TILE) times_w(s->x, w, n, m, k, TILE, s->z);
    for (; k < m; k++) times_w(s->x, w, n, m, k, 1, s->z);
    for (int64_t j = 0; j < m * NV; j++) s->h[j] = s->z[j];
    if (kind == RELU_HIDDEN)
        for (int64_t j = 0; j < m * NV; j++) s->h[j] = above(s->z[j], s->z[j]);
    vf loss = (vf){0};
    for (; i + TILE <= n; i += TILE) loss += output_side(kind, s, w, bias, imp, scale, m, i, TILE);
    for (; i < n; i++) loss += output_side(kind, s, w, bias, imp, scale, m, i, 1);
    for (k = 0; k + TILE <= m; k += TILE) times_w(s->d, w, n, m, k, TILE, s->dh);
    for (; k < m; k++) times_w(s->d, w, n, m, k, 1, s->dh);
    if (a->l1) {  /* d/dh of l1 * mean_batch sum_k |h_k| */
        const float c = a->l1[inst] / (float)a->batch;
        for (int64_t j = 0; j < m * NV; j++)
            s->dh[j] += c * (positive(s->h[j]) - positive(-s->h[j])) * s->mask[j % NV];
    }
    if (kind == RELU_HIDDEN)
        for (int64_t j = 0; j < m * NV; j++) s->dh[j] = above(s->dh[j], s->z[j]);
    for (i = 0; i + 2 <= n; i += 2) {
        for (k = 0; k + 4 <= m; k += 4) weight_grads(s, m, i, k, 2, 4);
        for (; k < m; k++) weight_grads(s, m, i, k, 2, 1);
    }
    for (; i < n; i++) {
        for (k = 0; k + 4 <= m; k += 4) weight_grads(s, m, i, k, 1, 4);
        for (; k < m; k++) weight_grads(s, m, i, k, 1, 1);
    }
    return (double)hsum(loss);
}

/* optim.adam_update / optim.sgd_update on N values. */
static void update(const sp_args *a, float *restrict p, float *restrict s1, float *restrict s2,
                   const float *restrict grad, int64_t N, float lr, int64_t t) {
    const float decay = a->weight_decay, momentum = a->momentum, eps = a->eps;
    if (a->optimizer == SGD) {
        const int nesterov = a->nesterov;
        for (int64_t q = 0; q < N; q++) {
            float g = grad[q] + (decay != 0.0f ? decay * p[q] : 0.0f);
            if (momentum != 0.0f) {
                s1[q] = s1[q] * momentum + g;
                g = nesterov ? g + momentum * s1[q] : s1[q];
            }
            p[q] -= lr * g;
        }
        return;
    }
    const float b1 = a->beta1, b2 = a->beta2;
    const float bias1 = 1.0f - powf(b1, (float)t), bias2_sqrt = sqrtf(1.0f - powf(b2, (float)t));
    const float step_size = lr / bias1;
    const int adamw = a->optimizer == ADAMW;
    for (int64_t q = 0; q < N; q++) {
        float g = grad[q];
        if (adamw) p[q] *= 1.0f - lr * decay;
        else if (decay != 0.0f) g += decay * p[q];
        s1[q] += (1.0f - b1) * (g - s1[q]);
        s2[q] = s2[q] * b2 + (1.0f - b2) * g * g;
        p[q] -= step_size * s1[q] / (sqrtf(s2[q]) / bias2_sqrt + eps);
    }
}

static int train_instance(const sp_args *a, int64_t inst, const scratch *s) {
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
            for (int j = 0; j < BLOCK; j++) ((float *)s->mask)[j] = j < R ? 1.0f : 0.0f;
            if (a->data) load_block(a, inst, r0, R, (float *)s->x);
            else sample_block(a, key, th, step, r0, R, (float *)s->x);
            loss += block_grads(a, inst, w, bias, s);
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
    const size_t vectors = (size_t)(NV * (2 * n + 3 * m + 1)), floats = (size_t)(n * m + n);
    int failed = 0;
#pragma omp parallel num_threads(a->threads)
    {
        void *mem = NULL;
        if (posix_memalign(&mem, sizeof(vf), vectors * sizeof(vf) + floats * sizeof(float)) != 0) {
            mem = NULL;
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed) {
            scratch s;
            s.x = mem; s.d = s.x + NV * n; s.z = s.d + NV * n; s.h = s.z + NV * m; s.dh = s.h + NV * m;
            s.mask = s.dh + NV * m; s.gW = (float *)(s.mask + NV); s.gb = s.gW + n * m;
#pragma omp for schedule(dynamic, 1)
            for (int64_t inst = 0; inst < a->n_inst; inst++) train_instance(a, inst, &s);
        }
        free(mem);
    }
    return failed;
}
