/* test-cuda-ops.c — every op of the CUDA backend against the CPU backend on the same random
 * inputs of awkward sizes (odd lengths, single rows, head_dim 72, lengths just past a tile).
 * f32 results must agree within 1e-5 relative (max |gpu − cpu| / max |cpu|); linear() with
 * BF16/F16 weights on tensor cores (1e-5 in the exact mode) and attention's tensor-core kernel
 * (bf16 operands) within 2e-2.  Every path of an op (attention's four kernels, cuDNN and im2col,
 * cuBLASLt and plain cuBLAS, chunked scratch) is forced in turn.
 *
 * Exits 77 (skipped) when kin_backend_cuda() fails: no module, no driver or no device. */
#include "kin-backend.h"
#include "kin-backend-cuda.h"
#include "kin-error.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static KinBackend *gpu, *cpu;
static GRand *rng;

/* The same data on both backends. */
typedef struct {
  KinTensor *c, *g;
  int64_t n;
} Pair;

#define C(p) ((p) ? (p)->c : NULL)
#define G(p) ((p) ? (p)->g : NULL)

static Pair *
pair_from_host (const float *data, int64_t n)
{
  int64_t shape[1] = { MAX (n, 1) };
  Pair *p = g_new0 (Pair, 1);
  p->n = n;
  p->c = kin_tensor_new (cpu, KIN_DTYPE_F32, 1, shape, NULL);
  p->g = kin_tensor_new (gpu, KIN_DTYPE_F32, 1, shape, NULL);
  g_assert_nonnull (p->c);
  g_assert_nonnull (p->g);
  memcpy (p->c->data, data, n * sizeof (float));
  gpu->upload (gpu, p->g->data, data, n * sizeof (float));
  return p;
}

static Pair *
pair_rand (int64_t n, double lo, double hi)
{
  g_autofree float *f = g_new (float, MAX (n, 1));
  for (int64_t i = 0; i < n; i++)
    f[i] = (float) g_rand_double_range (rng, lo, hi);
  return pair_from_host (f, n);
}

static Pair *
pair_r (int64_t n)
{
  return pair_rand (n, -1.5, 1.5);
}

/* A BF16/F16 weight (rounded from random f32) on both backends. */
static Pair *
pair_half (KinDType dt, int64_t n)
{
  g_autofree float *f = g_new (float, MAX (n, 1));
  g_autofree uint16_t *h = g_new (uint16_t, MAX (n, 1));
  for (int64_t i = 0; i < n; i++)
    f[i] = (float) g_rand_double_range (rng, -1.5, 1.5);
  kin_convert_from_f32 (h, dt, f, n);
  int64_t shape[1] = { n };
  Pair *p = g_new0 (Pair, 1);
  p->n = n;
  p->c = kin_tensor_new (cpu, dt, 1, shape, NULL);
  p->g = kin_tensor_new (gpu, dt, 1, shape, NULL);
  g_assert_nonnull (p->c);
  g_assert_nonnull (p->g);
  memcpy (p->c->data, h, n * 2);
  gpu->upload (gpu, p->g->data, h, n * 2);
  return p;
}

static void
pair_free (Pair *p)
{
  if (p == NULL)
    return;
  kin_tensor_free (p->c);
  kin_tensor_free (p->g);
  g_free (p);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Pair, pair_free)

static void
backends_ok (const char *what)
{
  g_autoptr (GError) e1 = NULL;
  g_autoptr (GError) e2 = NULL;
  gpu->synchronize (gpu);
  if (!kin_backend_take_error (cpu, &e1))
    g_error ("%s: CPU backend error: %s", what, e1->message);
  if (!kin_backend_take_error (gpu, &e2))
    g_error ("%s: CUDA backend error: %s", what, e2->message);
}

/* max |gpu − cpu| / max |cpu| over the whole tensor (gaps between strided rows included) */
static void
expect_close (const char *what, const Pair *p, double tol)
{
  backends_ok (what);
  g_autofree float *g = kin_tensor_to_host_f32 (p->g);
  backends_ok (what);
  const float *c = p->c->data;
  double md = 0, mr = 1e-30;
  gboolean nan = FALSE;
  for (int64_t i = 0; i < p->n; i++) {
    if (isnan (g[i]) != isnan (c[i]))
      nan = TRUE;
    if (!isnan (c[i])) {
      md = MAX (md, fabs ((double) g[i] - c[i]));
      mr = MAX (mr, fabs ((double) c[i]));
    }
  }
  if (nan || !(md / mr <= tol))
    g_test_fail_printf ("%s: relative error %.3e > %.1e%s (n %" G_GINT64_FORMAT ")", what, md / mr, tol,
                        nan ? ", NaN mismatch" : "", p->n);
  else
    g_test_message ("%s: relative error %.2e", what, md / mr);
}

#define TOL 1e-5

/* --- matrices --- */

static void
test_linear (void)
{
  const int64_t sizes[][3] = { { 1, 1, 1 }, { 1, 7, 13 }, { 5, 33, 17 }, { 37, 64, 9 },
                               { 129, 71, 130 }, { 300, 1152, 97 } };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
    int64_t R = sizes[s][0], I = sizes[s][1], O = sizes[s][2];
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      g_autoptr (Pair) x = pair_r (R * I), w = pair_r (O * I), b = pair_r (O), y = pair_r (R * O);
      cpu->linear (cpu, y->c, x->c, w->c, with_bias ? b->c : NULL, R, I, O);
      gpu->linear (gpu, y->g, x->g, w->g, with_bias ? b->g : NULL, R, I, O);
      g_autofree char *what = g_strdup_printf ("linear %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " bias %d", R, I, O, with_bias);
      expect_close (what, y, TOL);
    }
  }
}

static void
test_linear_half (void)
{
  const int64_t sizes[][3] = { { 3, 19, 11 }, { 77, 256, 130 }, { 1, 1152, 4 } };
  for (int k = 0; k < 2; k++) {
    KinDType dt = k ? KIN_DTYPE_F16 : KIN_DTYPE_BF16;
    for (int exact = 0; exact < 2; exact++) {
      g_assert_true (kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_EXACT_HALF, exact));
      for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
        int64_t R = sizes[s][0], I = sizes[s][1], O = sizes[s][2];
        g_autoptr (Pair) x = pair_r (R * I), w = pair_half (dt, O * I), b = pair_r (O), y = pair_r (R * O);
        cpu->linear (cpu, y->c, x->c, w->c, b->c, R, I, O);
        gpu->linear (gpu, y->g, x->g, w->g, b->g, R, I, O);
        g_autofree char *what = g_strdup_printf ("linear %s exact %d %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT,
                                                 kin_dtype_name (dt), exact, R, I, O);
        expect_close (what, y, exact ? TOL : 1e-2);
      }
    }
  }
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_EXACT_HALF, 0);
}

static void
one_matmul (int B, int M, int N, int K, gboolean ta, gboolean tb, float alpha, int64_t sa,
            int64_t sb, int64_t sc)
{
  int64_t na = (B - 1) * sa + (int64_t) M * K, nb = (B - 1) * sb + (int64_t) K * N;
  int64_t nc = (B - 1) * sc + (int64_t) M * N;
  g_autoptr (Pair) a = pair_r (na), b = pair_r (nb), c = pair_r (nc);
  cpu->matmul (cpu, c->c, a->c, b->c, B, M, N, K, ta, tb, alpha, sa, sb, sc);
  gpu->matmul (gpu, c->g, a->g, b->g, B, M, N, K, ta, tb, alpha, sa, sb, sc);
  g_autofree char *what = g_strdup_printf ("matmul B%d %dx%dx%d ta %d tb %d strides %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT,
                                           B, M, N, K, ta, tb, sa, sb, sc);
  expect_close (what, c, TOL);
}

static void
test_matmul (void)
{
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      one_matmul (3, 5, 7, 9, ta, tb, 0.5f, 45, 63, 35);
      one_matmul (1, 33, 65, 129, ta, tb, 1.0f, 0, 0, 0);
      one_matmul (4, 17, 3, 72, ta, tb, 0.125f, 17 * 72, 3 * 72, 17 * 3);
    }
  one_matmul (2, 3, 5, 4, FALSE, FALSE, 1.0f, 12, 0, 15);  /* a shared right-hand side */
  one_matmul (3, 6, 5, 4, FALSE, TRUE, 1.0f, 0, 20, 30);   /* a shared left-hand side */
  one_matmul (2, 3, 5, 4, FALSE, FALSE, 1.0f, 12, 20, 20); /* gaps between outputs */
}

/* --- normalisations --- */

static void
test_norms (void)
{
  const int64_t sizes[][2] = { { 1, 1 }, { 1, 13 }, { 7, 72 }, { 37, 256 }, { 9, 257 }, { 33, 1152 }, { 3, 4099 } };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
    int64_t R = sizes[s][0], D = sizes[s][1];
    g_autoptr (Pair) x = pair_rand (R * D, -3, 5), w = pair_r (D), b = pair_r (D), y = pair_r (R * D);
    for (int affine = 0; affine < 3; affine++) {
      const Pair *pw = affine ? w : NULL, *pb = affine == 2 ? b : NULL;
      cpu->layer_norm (cpu, y->c, x->c, C (pw), C (pb), R, D, 1e-6f);
      gpu->layer_norm (gpu, y->g, x->g, G (pw), G (pb), R, D, 1e-6f);
      g_autofree char *what = g_strdup_printf ("layer_norm %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " affine %d", R, D, affine);
      expect_close (what, y, TOL);
      cpu->rms_norm (cpu, y->c, x->c, C (pw), R, D, 1e-6f);
      gpu->rms_norm (gpu, y->g, x->g, G (pw), R, D, 1e-6f);
      g_autofree char *what2 = g_strdup_printf ("rms_norm %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " w %d", R, D, affine != 0);
      expect_close (what2, y, TOL);
    }
  }
}

static void
test_modulate_gate (void)
{
  const int64_t cases[][3] = { { 1, 1, 1 }, { 3, 5, 37 }, { 2, 130, 72 }, { 3, 7, 300 } };
  for (guint s = 0; s < G_N_ELEMENTS (cases); s++) {
    int64_t Gr = cases[s][0], R = cases[s][1], D = cases[s][2], n = Gr * R * D;
    /* shift/scale/gate are slices of one [groups, 6*dim] tensor, as adaLN's chunks are */
    g_autoptr (Pair) x = pair_r (n), y = pair_r (n), mod = pair_r (Gr * 6 * D);
    cpu->modulate (cpu, y->c, x->c, mod->c, D, mod->c, 2 * D, 6 * D, Gr, R, D);
    gpu->modulate (gpu, y->g, x->g, mod->g, D, mod->g, 2 * D, 6 * D, Gr, R, D);
    expect_close ("modulate", y, TOL);
    cpu->modulate (cpu, x->c, x->c, mod->c, 3 * D, mod->c, 4 * D, 6 * D, Gr, R, D);
    gpu->modulate (gpu, x->g, x->g, mod->g, 3 * D, mod->g, 4 * D, 6 * D, Gr, R, D);
    expect_close ("modulate in place", x, TOL);
    cpu->gate_add (cpu, x->c, y->c, mod->c, 5 * D, 6 * D, Gr, R, D);
    gpu->gate_add (gpu, x->g, y->g, mod->g, 5 * D, 6 * D, Gr, R, D);
    expect_close ("gate_add", x, TOL);
    cpu->gate_add (cpu, x->c, y->c, NULL, 0, 0, Gr, R, D);
    gpu->gate_add (gpu, x->g, y->g, NULL, 0, 0, Gr, R, D);
    expect_close ("gate_add without gate", x, TOL);
  }
}

/* --- element-wise --- */

static void
test_elementwise (void)
{
  const int64_t sizes[] = { 1, 37, 100003 };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
    int64_t n = sizes[s];
    g_autoptr (Pair) x = pair_rand (n, -8, 8), y = pair_r (n);
    cpu->gelu_tanh (cpu, y->c, x->c);
    gpu->gelu_tanh (gpu, y->g, x->g);
    expect_close ("gelu_tanh", y, TOL);
    cpu->silu (cpu, y->c, x->c);
    gpu->silu (gpu, y->g, x->g);
    expect_close ("silu", y, TOL);
    cpu->scale (cpu, y->c, x->c, -0.75f, 0.5f);
    gpu->scale (gpu, y->g, x->g, -0.75f, 0.5f);
    expect_close ("scale", y, TOL);
    cpu->silu (cpu, x->c, x->c);
    gpu->silu (gpu, x->g, x->g);
    expect_close ("silu in place", x, TOL);
  }
  const int64_t reps[][2] = { { 12 * 37, 1 }, { 12 * 37, 37 }, { 12 * 37, 12 * 37 }, { 5, 5 } };
  for (guint s = 0; s < G_N_ELEMENTS (reps); s++) {
    g_autoptr (Pair) a = pair_r (reps[s][0]), b = pair_r (reps[s][1]), y = pair_r (reps[s][0]);
    cpu->add (cpu, y->c, a->c, b->c);
    gpu->add (gpu, y->g, a->g, b->g);
    expect_close ("add", y, TOL);
    cpu->mul (cpu, y->c, a->c, b->c);
    gpu->mul (gpu, y->g, a->g, b->g);
    expect_close ("mul", y, TOL);
    cpu->add (cpu, a->c, a->c, b->c);
    gpu->add (gpu, a->g, a->g, b->g);
    expect_close ("add in place", a, TOL);
  }
}

static void
test_softmax (void)
{
  const int64_t sizes[][2] = { { 1, 1 }, { 7, 5 }, { 33, 1000 }, { 3, 4099 } };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
    int64_t R = sizes[s][0], D = sizes[s][1];
    g_autofree float *f = g_new (float, R * D);
    for (int64_t i = 0; i < R * D; i++)
      f[i] = (float) g_rand_double_range (rng, -20, 20);
    /* a fully masked row and a partly masked one */
    if (R > 2) {
      for (int64_t i = 0; i < D; i++)
        f[i] = -INFINITY;
      for (int64_t i = 0; i < D; i += 2)
        f[D + i] = -INFINITY;
    }
    g_autoptr (Pair) x = pair_from_host (f, R * D), y = pair_r (R * D);
    cpu->softmax (cpu, y->c, x->c, R, D);
    gpu->softmax (gpu, y->g, x->g, R, D);
    expect_close ("softmax", y, TOL);
    cpu->softmax (cpu, x->c, x->c, R, D);
    gpu->softmax (gpu, x->g, x->g, R, D);
    expect_close ("softmax in place", x, TOL);
  }
}

/* --- attention --- */

typedef struct {
  int B, H, LQ, LK, D;
  gboolean packed;    /* q, k, v slices of one qkv tensor [B*L, 3*H*D] (needs LQ == LK) */
  gboolean lens;      /* per-sample kv_lens, including 0 and > lk */
  gboolean bias;      /* additive bias with a few −∞ */
} AttnCase;

/* KIN_CUDA_OPTION_FAST_ATTENTION as last set */
static gboolean attn_fast = TRUE;

/* The kernel the CUDA backend runs for @path (its dispatch rule: an impossible choice falls back
 * to auto), and the tolerance that goes with it: path 4 rounds q, k, v and the probabilities to
 * bf16 (f32 accumulation), ~3e-3 relative measured as expect_close measures; f32 paths 1e-5. */
static double
attn_tolerance (const AttnCase *t, int path)
{
  gboolean small_d = t->D <= 128;
  if (((path == 1 || path == 5) && !(small_d && t->LK <= 64)) ||
      ((path == 2 || path == 4 || path == 6) && !small_d))
    path = 0;
  if (path == 0)
    path = !small_d ? 3 : t->LK <= 64 ? 5 : attn_fast ? 6 : 2;  /* as KIN_ATTN_AUTO_* */
  return path == 4 || path == 6 ? 2e-2 : TOL;
}

static void
one_attention (const AttnCase *t, int path)
{
  int64_t HD = (int64_t) t->H * t->D;
  KinAttention d = { .batch = t->B, .heads = t->H, .lq = t->LQ, .lk = t->LK, .head_dim = t->D,
                     .scale = 1.0f / sqrtf ((float) t->D) };
  g_autoptr (Pair) q = NULL, k = NULL, v = NULL, bias = NULL;
  g_autoptr (Pair) qkv = NULL;
  if (t->packed) {
    qkv = pair_r ((int64_t) t->B * t->LQ * 3 * HD);
    d.q_offset = 0, d.k_offset = HD, d.v_offset = 2 * HD;
    d.q_stride = d.kv_stride = 3 * HD;
  } else {
    q = pair_r ((int64_t) t->B * t->LQ * HD + 3);
    k = pair_r ((int64_t) t->B * t->LK * (HD + 2));
    v = pair_r ((int64_t) t->B * t->LK * (HD + 2) + 5);
    d.q_offset = 3, d.k_offset = 0, d.v_offset = 5;
    d.q_stride = HD, d.kv_stride = HD + 2;
  }
  /* output rows with a gap, at an offset: the gaps must stay untouched */
  d.out_offset = 7, d.out_stride = HD + 3;
  g_autoptr (Pair) out = pair_r (7 + (int64_t) t->B * t->LQ * (HD + 3));
  int32_t *lens = g_new (int32_t, t->B);
  for (int b = 0; b < t->B; b++)
    lens[b] = b == 0 ? t->LK : b == 1 ? 0 : b == 2 ? t->LK + 9 : 1 + (int) g_rand_int_range (rng, 0, t->LK);
  d.kv_lens = t->lens ? lens : NULL;
  if (t->bias) {
    int64_t nb = (int64_t) t->H * t->LQ * t->LK;
    g_autofree float *f = g_new (float, nb);
    for (int64_t i = 0; i < nb; i++)
      f[i] = g_rand_int_range (rng, 0, 17) == 0 ? -INFINITY : (float) g_rand_double_range (rng, -2, 2);
    bias = pair_from_host (f, nb);
  }
  g_autofree float *out0 = g_memdup2 (out->c->data, out->n * sizeof (float));
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_ATTENTION_PATH, path);
  const KinTensor *qc = t->packed ? qkv->c : q->c, *kc = t->packed ? qkv->c : k->c, *vc = t->packed ? qkv->c : v->c;
  const KinTensor *qg = t->packed ? qkv->g : q->g, *kg = t->packed ? qkv->g : k->g, *vg = t->packed ? qkv->g : v->g;
  d.bias = C (bias);
  cpu->attention (cpu, out->c, qc, kc, vc, &d);
  d.bias = G (bias);
  gpu->attention (gpu, out->g, qg, kg, vg, &d);
  g_autofree char *what = g_strdup_printf ("attention path %d%s B%d H%d lq %d lk %d D %d packed %d lens %d bias %d",
                                           path, attn_fast ? "" : " (f32 only)", t->B, t->H, t->LQ, t->LK,
                                           t->D, t->packed, t->lens, t->bias);
  expect_close (what, out, attn_tolerance (t, path));
  /* what lies outside the heads' channels of the output rows is untouched, bit for bit (a
   * loose tolerance would not see a stray write) */
  g_autofree float *og = kin_tensor_to_host_f32 (out->g);
  int64_t bad = 0;
  for (int64_t i = 0; i < out->n; i++) {
    int64_t col = (i - 7) % (HD + 3);
    if ((i < 7 || col >= HD) && memcmp (&og[i], &out0[i], sizeof (float)) != 0)
      bad++;
  }
  if (bad > 0)
    g_test_fail_printf ("%s: %" G_GINT64_FORMAT " values outside the output written", what, bad);
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_ATTENTION_PATH, 0);
  g_free (lens);
}

static void
test_attention (void)
{
  const AttnCase cases[] = {
    { 1, 1, 1, 1, 8, FALSE, FALSE, FALSE },
    { 2, 3, 7, 5, 72, FALSE, FALSE, FALSE },
    { 4, 2, 16, 16, 72, TRUE, FALSE, FALSE },   /* temporal: packed qkv, short */
    { 4, 2, 33, 64, 64, FALSE, TRUE, TRUE },
    { 3, 2, 100, 257, 72, FALSE, TRUE, FALSE }, /* cross-attention with text lengths */
    { 2, 3, 65, 65, 72, TRUE, FALSE, FALSE },   /* spatial: packed qkv */
    { 4, 1, 17, 65, 128, FALSE, TRUE, TRUE },
    { 1, 2, 9, 40, 40, FALSE, FALSE, TRUE },
    { 1, 2, 9, 33, 1, FALSE, FALSE, FALSE },
    { 3, 1, 20, 30, 160, FALSE, TRUE, TRUE },   /* head_dim > 128: cuBLAS path only */
    { 2, 1, 50, 50, 512, TRUE, FALSE, FALSE },  /* the VAE's single 512-channel head */
    { 70, 1, 3, 40, 32, FALSE, TRUE, FALSE },   /* more sequences with lengths than one launch takes */
    /* the model's shapes scaled down, for the tensor-core kernel (blocks of 128 query rows, tiles
     * of 64 keys) */
    { 2, 2, 130, 130, 72, TRUE, FALSE, FALSE }, /* spatial: packed qkv (float4 loads) */
    { 4, 2, 100, 200, 72, FALSE, TRUE, FALSE }, /* cross: text lengths (0, lk, > lk, random) */
    { 3, 2, 70, 150, 128, FALSE, TRUE, TRUE },  /* head_dim 128 */
    { 3, 1, 80, 80, 40, TRUE, TRUE, TRUE },     /* head_dim 40 (padded to 48), packed, lens, bias */
    /* for path 5 (short sequences, staged in shared memory) */
    { 8, 3, 16, 16, 72, TRUE, FALSE, FALSE },   /* temporal, scaled down: 16-byte copies, 3 slots a block */
    { 5, 2, 100, 40, 72, FALSE, TRUE, TRUE },   /* 4 query tiles a slot, 2 chunks, lengths, bias */
    { 3, 2, 7, 64, 128, FALSE, TRUE, TRUE },    /* the largest lk and head_dim */
    { 2, 4, 33, 33, 40, TRUE, TRUE, FALSE },    /* 3 tiles a slot, packed, lengths */
    { 2, 3, 20, 12, 37, FALSE, FALSE, TRUE },   /* odd head_dim */
    { 2100, 1, 3, 3, 4, TRUE, TRUE, FALSE },    /* more sequences with lengths than one launch takes */
    /* for path 6 (mma.sync flash) */
    { 3, 2, 150, 77, 8, FALSE, TRUE, TRUE },    /* head_dim 8; lq, lk off the tiles; lens, bias */
    { 2, 2, 129, 129, 40, TRUE, FALSE, TRUE },  /* packed (pair loads), head_dim 40, bias */
    { 4, 1, 140, 200, 72, FALSE, TRUE, TRUE },  /* cross-like: lens (0, lk, > lk) and bias */
    { 3, 1, 131, 131, 128, TRUE, TRUE, FALSE }, /* head_dim 128 packed with lens */
    { 2, 1, 20, 64, 24, FALSE, FALSE, TRUE },   /* one whole key tile, head_dim 24 */
    { 1, 3, 17, 300, 100, FALSE, FALSE, FALSE }, /* head_dim 100, several tiles */
    { 3, 1, 100, 100, 57, TRUE, TRUE, FALSE },  /* odd head_dim: single-float loads */
  };
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_FAST_ATTENTION, TRUE);
  attn_fast = TRUE;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    for (int path = 0; path <= 6; path++)
      one_attention (&cases[i], path);
  /* without fast attention auto keeps to f32 (the tight tolerance) */
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_FAST_ATTENTION, FALSE);
  attn_fast = FALSE;
  one_attention (&cases[4], 0);
  one_attention (&cases[12], 0);
  one_attention (&cases[13], 1);
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_FAST_ATTENTION, TRUE);
  attn_fast = TRUE;
  /* score bands smaller than lq (scratch of 4 KiB: a few rows per band) */
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_SCRATCH_KIB, 4);
  one_attention (&cases[3], 3);
  one_attention (&cases[9], 3);
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_SCRATCH_KIB, 0);
}

/* --- convolution and friends --- */

static void
one_conv (const KinConv2d *d, gboolean with_bias)
{
  int oh = (d->h + d->pad_t + d->pad_b - d->kh) / d->stride + 1;
  int ow = (d->w + d->pad_l + d->pad_r - d->kw) / d->stride + 1;
  g_autoptr (Pair) x = pair_r ((int64_t) d->n * d->cin * d->h * d->w);
  g_autoptr (Pair) w = pair_r ((int64_t) d->cout * d->cin * d->kh * d->kw);
  g_autoptr (Pair) b = pair_r (d->cout), y = pair_r ((int64_t) d->n * d->cout * oh * ow);
  cpu->conv2d (cpu, y->c, x->c, w->c, with_bias ? b->c : NULL, d);
  gpu->conv2d (gpu, y->g, x->g, w->g, with_bias ? b->g : NULL, d);
  g_autofree char *what = g_strdup_printf ("conv2d n%d %d→%d %dx%d k%dx%d s%d pad %d,%d,%d,%d bias %d",
                                           d->n, d->cin, d->cout, d->h, d->w, d->kh, d->kw, d->stride,
                                           d->pad_t, d->pad_b, d->pad_l, d->pad_r, with_bias);
  expect_close (what, y, TOL);
}

static void
test_conv2d (void)
{
  const KinConv2d cases[] = {
    { .n = 2, .cin = 3, .h = 9, .w = 11, .cout = 5, .kh = 3, .kw = 3, .stride = 1, .pad_t = 1, .pad_b = 1, .pad_l = 1, .pad_r = 1 },
    { .n = 1, .cin = 4, .h = 8, .w = 8, .cout = 6, .kh = 3, .kw = 3, .stride = 2, .pad_t = 0, .pad_b = 1, .pad_l = 0, .pad_r = 1 },
    { .n = 3, .cin = 8, .h = 5, .w = 7, .cout = 4, .kh = 1, .kw = 1, .stride = 1 },
    { .n = 1, .cin = 3, .h = 16, .w = 12, .cout = 8, .kh = 4, .kw = 4, .stride = 4 },
    { .n = 3, .cin = 5, .h = 7, .w = 6, .cout = 3, .kh = 3, .kw = 3, .stride = 2, .pad_t = 1, .pad_b = 1, .pad_l = 1, .pad_r = 1 },
    { .n = 2, .cin = 32, .h = 17, .w = 19, .cout = 33, .kh = 3, .kw = 3, .stride = 1, .pad_t = 1, .pad_b = 1, .pad_l = 1, .pad_r = 1 },
    { .n = 1, .cin = 2, .h = 1, .w = 1, .cout = 3, .kh = 1, .kw = 1, .stride = 1 },
    /* the STDiT's 2×2 patch embedding (im2col + cuBLAS even with cuDNN), an odd row left over */
    { .n = 4, .cin = 4, .h = 9, .w = 8, .cout = 7, .kh = 2, .kw = 2, .stride = 2 },
  };
  for (int cudnn = 1; cudnn >= 0; cudnn--) {
    kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_CUDNN, cudnn);
    for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
      for (int bias = 0; bias < 2; bias++)
        one_conv (&cases[i], bias);
  }
  /* im2col in chunks of images, then in bands of output rows */
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_SCRATCH_KIB, 8);
  one_conv (&cases[0], TRUE);
  one_conv (&cases[5], TRUE);
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_SCRATCH_KIB, 0);
  kin_backend_cuda_set_option (gpu, KIN_CUDA_OPTION_CUDNN, 1);
}

static void
test_group_norm (void)
{
  const int64_t cases[][4] = { { 2, 12, 37, 4 }, { 1, 12, 1, 12 }, { 3, 8, 100, 1 }, { 2, 64, 257, 32 } };
  for (guint s = 0; s < G_N_ELEMENTS (cases); s++) {
    int64_t N = cases[s][0], Ch = cases[s][1], HW = cases[s][2];
    int groups = (int) cases[s][3];
    g_autoptr (Pair) x = pair_rand (N * Ch * HW, -2, 3), w = pair_r (Ch), b = pair_r (Ch), y = pair_r (N * Ch * HW);
    for (int affine = 0; affine < 2; affine++)
      for (int silu = 0; silu < 2; silu++) {
        cpu->group_norm (cpu, y->c, x->c, affine ? w->c : NULL, affine ? b->c : NULL, N, Ch, HW, groups, 1e-6f, silu);
        gpu->group_norm (gpu, y->g, x->g, affine ? w->g : NULL, affine ? b->g : NULL, N, Ch, HW, groups, 1e-6f, silu);
        g_autofree char *what = g_strdup_printf ("group_norm %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " groups %d affine %d silu %d",
                                                 N, Ch, HW, groups, affine, silu);
        expect_close (what, y, TOL);
      }
    cpu->group_norm (cpu, x->c, x->c, w->c, b->c, N, Ch, HW, groups, 1e-6f, TRUE);
    gpu->group_norm (gpu, x->g, x->g, w->g, b->g, N, Ch, HW, groups, 1e-6f, TRUE);
    expect_close ("group_norm in place", x, TOL);
  }
}

static void
test_upsample (void)
{
  const int64_t cases[][3] = { { 1, 1, 1 }, { 5, 3, 7 }, { 2, 17, 16 } };
  for (guint s = 0; s < G_N_ELEMENTS (cases); s++) {
    int64_t NC = cases[s][0], H = cases[s][1], W = cases[s][2];
    g_autoptr (Pair) x = pair_r (NC * H * W), y = pair_r (NC * H * W * 4);
    cpu->upsample_nearest2x (cpu, y->c, x->c, NC, H, W);
    gpu->upsample_nearest2x (gpu, y->g, x->g, NC, H, W);
    expect_close ("upsample_nearest2x", y, TOL);
  }
}

static void
test_rope (void)
{
  const int cases[][4] = { { 2, 5, 3, 8 }, { 1, 1, 1, 2 }, { 3, 17, 4, 72 } };
  for (guint s = 0; s < G_N_ELEMENTS (cases); s++) {
    int64_t B = cases[s][0], L = cases[s][1];
    int H = cases[s][2], D = cases[s][3];
    int64_t stride = 3 * H * D + 2, off = 4;  /* q inside a packed qkv row, at an offset */
    g_autoptr (Pair) x = pair_r (off + B * L * stride), cs = pair_r (L * D / 2), sn = pair_r (L * D / 2);
    cpu->rope (cpu, x->c, off, stride, B, L, H, D, cs->c, sn->c);
    gpu->rope (gpu, x->g, off, stride, B, L, H, D, cs->g, sn->g);
    expect_close ("rope", x, TOL);
  }
}

static void
test_permute (void)
{
  static const struct { int ndim; int64_t dims[6]; int perm[6]; } cases[] = {
    { 1, { 7 }, { 0 } },
    { 2, { 5, 9 }, { 1, 0 } },
    { 3, { 2, 3, 4 }, { 2, 0, 1 } },
    { 4, { 2, 3, 4, 5 }, { 0, 2, 1, 3 } },
    { 5, { 2, 4, 3, 5, 6 }, { 0, 2, 3, 4, 1 } },  /* [B, C, T, H, W] → [B, T, H, W, C] */
    { 6, { 2, 1, 3, 2, 3, 2 }, { 5, 3, 1, 0, 4, 2 } },
    { 6, { 2, 3, 2, 3, 2, 3 }, { 0, 1, 2, 3, 4, 5 } },
    /* trailing dimensions kept (runs of ≥ 32 elements copied whole) */
    { 4, { 2, 5, 3, 40 }, { 0, 2, 1, 3 } },       /* [B, T, S, C] ↔ [B, S, T, C] */
    { 3, { 7, 3, 36 }, { 1, 0, 2 } },             /* the qkv split */
    { 4, { 2, 3, 4, 33 }, { 2, 0, 1, 3 } },
    { 5, { 2, 3, 2, 4, 9 }, { 1, 0, 2, 3, 4 } },  /* runs of 2·4·9 over merged dims */
    { 3, { 300, 2, 260 }, { 1, 0, 2 } },          /* more runs than threads, runs > a block */
  };
  for (guint s = 0; s < G_N_ELEMENTS (cases); s++) {
    int64_t n = 1;
    for (int i = 0; i < cases[s].ndim; i++)
      n *= cases[s].dims[i];
    g_autoptr (Pair) x = pair_r (n), y = pair_r (n);
    cpu->permute (cpu, y->c, x->c, cases[s].ndim, cases[s].dims, cases[s].perm);
    gpu->permute (gpu, y->g, x->g, cases[s].ndim, cases[s].dims, cases[s].perm);
    g_autofree char *what = g_strdup_printf ("permute %d dims", cases[s].ndim);
    expect_close (what, y, TOL);
  }
}

static void
test_copy (void)
{
  g_autoptr (Pair) x = pair_r (1000), y = pair_r (777);
  cpu->copy (cpu, y->c, 11, x->c, 100, 700);
  gpu->copy (gpu, y->g, 11, x->g, 100, 700);
  expect_close ("copy", y, TOL);
  /* overlapping, both directions: memmove semantics */
  cpu->copy (cpu, x->c, 10, x->c, 0, 900);
  gpu->copy (gpu, x->g, 10, x->g, 0, 900);
  expect_close ("copy overlapping forward", x, TOL);
  cpu->copy (cpu, x->c, 0, x->c, 37, 900);
  gpu->copy (gpu, x->g, 0, x->g, 37, 900);
  expect_close ("copy overlapping backward", x, TOL);
}

/* --- memory and graphs --- */

static void
test_memory (void)
{
  uint64_t use0 = 0, peak = 0, total = 0, use = 0;
  g_assert_false (kin_backend_memory_stats (cpu, &use, &peak, &total));
  g_assert_true (kin_backend_memory_stats (gpu, &use0, &peak, &total));
  g_assert_cmpuint (total, >, 0);
  g_assert_cmpuint (peak, >=, use0);
  kin_backend_reset_peak_memory (gpu);

  int64_t n = 100003;
  g_autofree float *ones = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    ones[i] = 1.0f;
  KinTensor *a = kin_tensor_new (gpu, KIN_DTYPE_F32, 1, &n, NULL);
  g_assert_nonnull (a);
  gpu->upload (gpu, a->data, ones, n * sizeof (float));
  kin_backend_memory_stats (gpu, &use, &peak, NULL);
  g_assert_cmpuint (use, >=, use0 + n * sizeof (float));
  g_assert_cmpuint (peak, ==, use);
  uint64_t use_a = use;
  void *addr = a->data;
  kin_tensor_free (a);
  kin_backend_memory_stats (gpu, &use, &peak, NULL);
  g_assert_cmpuint (use, ==, use0);
  g_assert_cmpuint (peak, ==, use_a);

  /* the cached block comes back for the same size, zeroed again */
  KinTensor *b = kin_tensor_new (gpu, KIN_DTYPE_F32, 1, &n, NULL);
  g_assert_nonnull (b);
  g_assert_true (b->data == addr);
  g_autofree float *back = kin_tensor_to_host_f32 (b);
  for (int64_t i = 0; i < n; i++)
    g_assert_cmpfloat (back[i], ==, 0.0f);
  kin_tensor_free (b);
  kin_backend_reset_peak_memory (gpu);
  kin_backend_memory_stats (gpu, &use, &peak, NULL);
  g_assert_cmpuint (peak, ==, use0);
  g_assert_true (kin_backend_cuda_trim (gpu));
  kin_backend_memory_stats (gpu, &use, NULL, NULL);
  g_assert_cmpuint (use, ==, use0);
  backends_ok ("memory");
}

/* y = 2·silu(x) + x through a temporary made inside the capture */
static void
graph_body (KinBackend *be, KinTensor *y, const KinTensor *x)
{
  g_autoptr (KinTensor) tmp = kin_tensor_new (be, KIN_DTYPE_F32, 1, x->shape, NULL);
  g_assert_nonnull (tmp);
  be->silu (be, tmp, x);
  be->scale (be, tmp, tmp, 2.0f, 0.0f);
  be->add (be, y, tmp, x);
}

static void
test_graphs (void)
{
  g_autoptr (GError) error = NULL;
  g_assert_false (kin_backend_has_graphs (cpu));
  g_assert_true (kin_backend_has_graphs (gpu));
  const int64_t n = 5000;
  g_autoptr (Pair) x = pair_r (n), y = pair_r (n);
  g_assert_true (gpu->graph_begin (gpu));
  graph_body (gpu, y->g, x->g);  /* recorded, not run: the temporary is freed inside the capture */
  gpointer graph = gpu->graph_end (gpu);
  g_assert_nonnull (graph);
  backends_ok ("graph capture");
  /* one graph at a time */
  g_assert_false (gpu->graph_begin (gpu));
  g_assert_false (kin_backend_take_error (gpu, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);

  guint64 launches = kin_backend_cuda_graph_launches (gpu);
  g_autofree float *h = g_new (float, n);
  for (int rep = 0; rep < 3; rep++) {
    /* a new input in the graph's input buffer, then a replay, with other work around it that
     * allocates and frees: nothing of it may land in the graph's memory */
    for (int64_t i = 0; i < n; i++)
      h[i] = (float) g_rand_double_range (rng, -3, 3);
    memcpy (x->c->data, h, n * sizeof (float));
    gpu->upload (gpu, x->g->data, h, n * sizeof (float));
    g_autoptr (Pair) other = pair_r (n);
    gpu->graph_launch (gpu, graph);
    g_autoptr (Pair) other2 = pair_r (n);
    cpu->scale (cpu, other->c, other->c, 3.0f, 1.0f);
    gpu->scale (gpu, other->g, other->g, 3.0f, 1.0f);
    graph_body (cpu, y->c, x->c);
    expect_close ("graph replay", y, TOL);
    expect_close ("work between replays", other, TOL);
    expect_close ("work between replays 2", other2, TOL);
  }
  g_assert_cmpuint (kin_backend_cuda_graph_launches (gpu), ==, launches + 3);
  gpu->graph_free (gpu, graph);
  backends_ok ("graph free");

  /* an upload inside a capture breaks it cleanly: no graph, an error, a usable backend */
  g_assert_true (gpu->graph_begin (gpu));
  gpu->upload (gpu, x->g->data, h, n * sizeof (float));
  g_assert_null (gpu->graph_end (gpu));
  g_assert_false (kin_backend_take_error (gpu, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_test_message ("broken capture: %s", error->message);
  g_clear_error (&error);
  graph_body (cpu, y->c, x->c);
  graph_body (gpu, y->g, x->g);
  expect_close ("after a broken capture", y, TOL);
}

/* --- errors --- */

static void
test_errors (void)
{
  /* out of device memory is a recoverable GError */
  g_autoptr (GError) error = NULL;
  int64_t huge[2] = { (int64_t) 1 << 30, (int64_t) 1 << 12 };  /* 16 TiB */
  KinTensor *t = kin_tensor_new (gpu, KIN_DTYPE_F32, 2, huge, &error);
  g_assert_null (t);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY);
  g_test_message ("out of memory: %s", error->message);
  g_clear_error (&error);
  g_assert_true (kin_backend_take_error (gpu, NULL));  /* nothing sticky left behind */

  /* a host tensor handed to a CUDA op is refused, not dereferenced */
  g_autoptr (Pair) x = pair_r (64), y = pair_r (64);
  gpu->silu (gpu, y->g, x->c);
  g_assert_false (kin_backend_take_error (gpu, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);

  /* the backend keeps working afterwards */
  cpu->silu (cpu, y->c, x->c);
  gpu->silu (gpu, y->g, x->g);
  expect_close ("silu after errors", y, TOL);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_autoptr (GError) error = NULL;
  gpu = kin_backend_cuda (&error);
  if (gpu == NULL) {
    printf ("SKIP: %s\n", error->message);
    return 77;
  }
  printf ("# CUDA: %s\n", kin_backend_cuda_describe (gpu));
  cpu = kin_backend_cpu ();
  rng = g_rand_new_with_seed (20240611);
  g_test_add_func ("/cuda/linear", test_linear);
  g_test_add_func ("/cuda/linear-half", test_linear_half);
  g_test_add_func ("/cuda/matmul", test_matmul);
  g_test_add_func ("/cuda/norms", test_norms);
  g_test_add_func ("/cuda/modulate-gate", test_modulate_gate);
  g_test_add_func ("/cuda/elementwise", test_elementwise);
  g_test_add_func ("/cuda/softmax", test_softmax);
  g_test_add_func ("/cuda/attention", test_attention);
  g_test_add_func ("/cuda/conv2d", test_conv2d);
  g_test_add_func ("/cuda/group-norm", test_group_norm);
  g_test_add_func ("/cuda/upsample", test_upsample);
  g_test_add_func ("/cuda/rope", test_rope);
  g_test_add_func ("/cuda/permute", test_permute);
  g_test_add_func ("/cuda/copy", test_copy);
  g_test_add_func ("/cuda/errors", test_errors);
  g_test_add_func ("/cuda/memory", test_memory);
  g_test_add_func ("/cuda/graphs", test_graphs);
  int rc = g_test_run ();
  g_rand_free (rng);
  return rc;
}
