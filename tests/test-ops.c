/* test-ops.c — every CPU backend op against a naive double-precision loop on random inputs with
 * awkward sizes (odd lengths, non-multiples of 8, single rows). */
#include "kin-backend.h"
#include "kin-error.h"
#include <math.h>
#include <string.h>

static GRand *rng;

static KinTensor *
rand_t (int64_t n)
{
  int64_t shape[1] = { n };
  KinTensor *t = kin_tensor_new (kin_backend_cpu (), KIN_DTYPE_F32, 1, shape, NULL);
  g_assert_nonnull (t);
  float *f = t->data;
  for (int64_t i = 0; i < n; i++)
    f[i] = (float) g_rand_double_range (rng, -1.5, 1.5);
  return t;
}

static KinTensor *
zeros_t (int64_t n)
{
  int64_t shape[1] = { n };
  return kin_tensor_new (kin_backend_cpu (), KIN_DTYPE_F32, 1, shape, NULL);
}

#define D(t, i) ((double) ((const float *) (t)->data)[i])

/* max |a − ref| / max |ref| over n values */
static void
assert_close (const KinTensor *a, const double *ref, int64_t n, double tol)
{
  double md = 0, mr = 1e-30;
  for (int64_t i = 0; i < n; i++) {
    md = MAX (md, fabs (D (a, i) - ref[i]));
    mr = MAX (mr, fabs (ref[i]));
  }
  if (!(md / mr <= tol))
    g_error ("relative error %.3e > %.1e", md / mr, tol);
}

static void
check_backend_ok (void)
{
  g_autoptr (GError) error = NULL;
  if (!kin_backend_take_error (kin_backend_cpu (), &error))
    g_error ("backend error: %s", error->message);
}

static void
test_linear (void)
{
  KinBackend *be = kin_backend_cpu ();
  const int64_t sizes[][3] = { { 1, 1, 1 }, { 1, 7, 13 }, { 5, 33, 17 }, { 37, 64, 9 }, { 129, 71, 130 } };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
    int64_t R = sizes[s][0], I = sizes[s][1], O = sizes[s][2];
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      g_autoptr (KinTensor) x = rand_t (R * I), w = rand_t (O * I), b = rand_t (O), y = zeros_t (R * O);
      be->linear (be, y, x, w, with_bias ? b : NULL, R, I, O);
      check_backend_ok ();
      g_autofree double *ref = g_new0 (double, R * O);
      for (int64_t r = 0; r < R; r++)
        for (int64_t o = 0; o < O; o++) {
          double acc = with_bias ? D (b, o) : 0;
          for (int64_t i = 0; i < I; i++)
            acc += D (x, r * I + i) * D (w, o * I + i);
          ref[r * O + o] = acc;
        }
      assert_close (y, ref, R * O, 1e-5);
    }
  }
}

static void
test_linear_half_weights (void)
{
  KinBackend *be = kin_backend_cpu ();
  /* 301 × 257 weights: large enough for the parallel widening path */
  int64_t R = 3, I = 257, O = 301;
  g_autoptr (KinTensor) x = rand_t (R * I), wf = rand_t (O * I), y = zeros_t (R * O);
  for (int k = 0; k < 2; k++) {
    KinDType dt = k ? KIN_DTYPE_F16 : KIN_DTYPE_BF16;
    int64_t shape[2] = { O, I };
    g_autoptr (KinTensor) wh = kin_tensor_new (be, dt, 2, shape, NULL);
    kin_convert_from_f32 (wh->data, dt, wf->data, O * I);
    be->linear (be, y, x, wh, NULL, R, I, O);
    check_backend_ok ();
    g_autofree double *ref = g_new0 (double, R * O);
    g_autofree float *wr = g_new (float, O * I);
    kin_convert_to_f32 (wr, wh->data, dt, O * I); /* the rounded weights are the reference */
    for (int64_t r = 0; r < R; r++)
      for (int64_t o = 0; o < O; o++)
        for (int64_t i = 0; i < I; i++)
          ref[r * O + o] += D (x, r * I + i) * wr[o * I + i];
    assert_close (y, ref, R * O, 1e-5);
  }
}

static void
test_matmul (void)
{
  KinBackend *be = kin_backend_cpu ();
  int B = 3, M = 5, N = 7, K = 9;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      g_autoptr (KinTensor) a = rand_t (B * M * K), b = rand_t (B * K * N), c = zeros_t (B * M * N);
      be->matmul (be, c, a, b, B, M, N, K, ta, tb, 0.5f, M * K, K * N, M * N);
      check_backend_ok ();
      g_autofree double *ref = g_new0 (double, B * M * N);
      for (int bb = 0; bb < B; bb++)
        for (int i = 0; i < M; i++)
          for (int j = 0; j < N; j++) {
            double acc = 0;
            for (int k = 0; k < K; k++) {
              double av = ta ? D (a, bb * M * K + k * M + i) : D (a, bb * M * K + i * K + k);
              double bv = tb ? D (b, bb * K * N + j * K + k) : D (b, bb * K * N + k * N + j);
              acc += av * bv;
            }
            ref[bb * M * N + i * N + j] = 0.5 * acc;
          }
      assert_close (c, ref, B * M * N, 1e-5);
    }
  /* stride 0: a shared right-hand side */
  g_autoptr (KinTensor) a = rand_t (2 * 3 * 4), b = rand_t (4 * 5), c = zeros_t (2 * 3 * 5);
  be->matmul (be, c, a, b, 2, 3, 5, 4, FALSE, FALSE, 1.0f, 12, 0, 15);
  g_autofree double *ref = g_new0 (double, 30);
  for (int bb = 0; bb < 2; bb++)
    for (int i = 0; i < 3; i++)
      for (int j = 0; j < 5; j++)
        for (int k = 0; k < 4; k++)
          ref[bb * 15 + i * 5 + j] += D (a, bb * 12 + i * 4 + k) * D (b, k * 5 + j);
  assert_close (c, ref, 30, 1e-5);
}

static void
test_norms (void)
{
  KinBackend *be = kin_backend_cpu ();
  const int64_t sizes[][2] = { { 1, 1 }, { 1, 13 }, { 7, 72 }, { 33, 1152 } };
  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
    int64_t R = sizes[s][0], C = sizes[s][1];
    g_autoptr (KinTensor) x = rand_t (R * C), w = rand_t (C), b = rand_t (C), y = zeros_t (R * C);
    g_autofree double *ref = g_new0 (double, R * C);
    for (int affine = 0; affine < 2; affine++) {
      be->layer_norm (be, y, x, affine ? w : NULL, affine ? b : NULL, R, C, 1e-6f);
      check_backend_ok ();
      for (int64_t r = 0; r < R; r++) {
        double m = 0, v = 0;
        for (int64_t i = 0; i < C; i++)
          m += D (x, r * C + i);
        m /= C;
        for (int64_t i = 0; i < C; i++)
          v += (D (x, r * C + i) - m) * (D (x, r * C + i) - m);
        v /= C;
        for (int64_t i = 0; i < C; i++) {
          double o = (D (x, r * C + i) - m) / sqrt (v + 1e-6);
          ref[r * C + i] = affine ? o * D (w, i) + D (b, i) : o;
        }
      }
      assert_close (y, ref, R * C, 2e-6);
    }
    be->rms_norm (be, y, x, w, R, C, 1e-6f);
    check_backend_ok ();
    for (int64_t r = 0; r < R; r++) {
      double ss = 0;
      for (int64_t i = 0; i < C; i++)
        ss += D (x, r * C + i) * D (x, r * C + i);
      for (int64_t i = 0; i < C; i++)
        ref[r * C + i] = D (w, i) * D (x, r * C + i) / sqrt (ss / C + 1e-6);
    }
    assert_close (y, ref, R * C, 2e-6);
  }
}

static void
test_modulate_gate (void)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t G = 3, R = 5, C = 7, stride = 6 * C; /* shift/scale/gate as chunks of a t_block row */
  g_autoptr (KinTensor) x = rand_t (G * R * C), t = rand_t (G * stride), y = zeros_t (G * R * C);
  be->modulate (be, y, x, t, 0, t, C, stride, G, R, C);
  check_backend_ok ();
  g_autofree double *ref = g_new0 (double, G * R * C);
  for (int64_t g = 0; g < G; g++)
    for (int64_t r = 0; r < R; r++)
      for (int64_t c = 0; c < C; c++)
        ref[(g * R + r) * C + c] = D (x, (g * R + r) * C + c) * (1 + D (t, g * stride + C + c)) + D (t, g * stride + c);
  assert_close (y, ref, G * R * C, 1e-6);

  g_autoptr (KinTensor) acc = rand_t (G * R * C);
  g_autofree double *ref2 = g_new0 (double, G * R * C);
  for (int64_t g = 0; g < G; g++)
    for (int64_t r = 0; r < R; r++)
      for (int64_t c = 0; c < C; c++) {
        int64_t i = (g * R + r) * C + c;
        ref2[i] = D (acc, i) + D (t, g * stride + 2 * C + c) * D (y, i);
      }
  be->gate_add (be, acc, y, t, 2 * C, stride, G, R, C);
  check_backend_ok ();
  assert_close (acc, ref2, G * R * C, 1e-6);
}

static void
test_elementwise (void)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t n = 1001;
  g_autoptr (KinTensor) x = rand_t (n), b = rand_t (7 * 11), y = zeros_t (n);
  g_autofree double *ref = g_new0 (double, n);
  be->gelu_tanh (be, y, x);
  for (int64_t i = 0; i < n; i++) {
    double v = D (x, i);
    ref[i] = 0.5 * v * (1 + tanh (sqrt (2 / G_PI) * (v + 0.044715 * v * v * v)));
  }
  assert_close (y, ref, n, 1e-6);
  be->silu (be, y, x);
  for (int64_t i = 0; i < n; i++)
    ref[i] = D (x, i) / (1 + exp (-D (x, i)));
  assert_close (y, ref, n, 1e-6);
  be->scale (be, y, x, -2.0f, 0.25f);
  for (int64_t i = 0; i < n; i++)
    ref[i] = -2 * D (x, i) + 0.25;
  assert_close (y, ref, n, 1e-6);
  /* broadcast by repetition */
  g_autoptr (KinTensor) a = rand_t (7 * 11 * 3), z = zeros_t (7 * 11 * 3);
  g_autofree double *r2 = g_new0 (double, 7 * 11 * 3);
  be->add (be, z, a, b);
  for (int i = 0; i < 231; i++)
    r2[i] = D (a, i) + D (b, i % 77);
  assert_close (z, r2, 231, 1e-6);
  be->mul (be, z, a, b);
  for (int i = 0; i < 231; i++)
    r2[i] = D (a, i) * D (b, i % 77);
  assert_close (z, r2, 231, 1e-6);
  check_backend_ok ();
  /* a shape mismatch is a sticky error, not a crash */
  g_autoptr (KinTensor) bad = rand_t (10);
  be->add (be, z, a, bad);
  g_autoptr (GError) error = NULL;
  g_assert_false (kin_backend_take_error (be, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
}

static void
test_softmax (void)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t R = 9, C = 17;
  g_autoptr (KinTensor) x = rand_t (R * C), y = zeros_t (R * C);
  ((float *) x->data)[3] = 80.0f; /* large values must not overflow */
  be->softmax (be, y, x, R, C);
  check_backend_ok ();
  g_autofree double *ref = g_new0 (double, R * C);
  for (int64_t r = 0; r < R; r++) {
    double m = -1e300, s = 0;
    for (int64_t i = 0; i < C; i++)
      m = MAX (m, D (x, r * C + i));
    for (int64_t i = 0; i < C; i++)
      s += exp (D (x, r * C + i) - m);
    for (int64_t i = 0; i < C; i++)
      ref[r * C + i] = exp (D (x, r * C + i) - m) / s;
  }
  assert_close (y, ref, R * C, 1e-6);
}

/* Reference attention on the strided layout of KinAttention. */
static void
ref_attention (double *out, const KinTensor *q, const KinTensor *k, const KinTensor *v,
               const KinAttention *d)
{
  for (int b = 0; b < d->batch; b++)
    for (int h = 0; h < d->heads; h++)
      for (int i = 0; i < d->lq; i++) {
        int lk = d->kv_lens ? d->kv_lens[b] : d->lk;
        g_autofree double *s = g_new0 (double, MAX (lk, 1));
        double m = -1e300, sum = 0;
        for (int j = 0; j < lk; j++) {
          double acc = 0;
          for (int e = 0; e < d->head_dim; e++)
            acc += D (q, d->q_offset + (int64_t) (b * d->lq + i) * d->q_stride + h * d->head_dim + e) *
                   D (k, d->k_offset + (int64_t) (b * d->lk + j) * d->kv_stride + h * d->head_dim + e);
          s[j] = acc * d->scale + (d->bias ? D (d->bias, ((int64_t) h * d->lq + i) * d->lk + j) : 0);
          m = MAX (m, s[j]);
        }
        for (int j = 0; j < lk; j++)
          sum += (s[j] = exp (s[j] - m));
        for (int e = 0; e < d->head_dim; e++) {
          double acc = 0;
          for (int j = 0; j < lk; j++)
            acc += s[j] / sum * D (v, d->v_offset + (int64_t) (b * d->lk + j) * d->kv_stride + h * d->head_dim + e);
          out[(int64_t) (b * d->lq + i) * d->heads * d->head_dim + h * d->head_dim + e] = lk ? acc : 0;
        }
      }
}

static void
run_attention_case (int B, int H, int LQ, int LK, int HD, gboolean packed, gboolean lens,
                    gboolean bias)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t C = (int64_t) H * HD;
  g_autoptr (KinTensor) qkv = rand_t ((int64_t) B * MAX (LQ, LK) * 3 * C);
  g_autoptr (KinTensor) q = rand_t ((int64_t) B * LQ * C), kv = rand_t ((int64_t) B * LK * 2 * C);
  g_autoptr (KinTensor) bt = rand_t ((int64_t) H * LQ * LK), out = zeros_t ((int64_t) B * LQ * C);
  int32_t kl[16];
  for (int b = 0; b < B; b++)
    kl[b] = b == 1 ? 0 : 1 + (b * 7) % LK; /* batch 1 has no keys at all */
  KinAttention d = { .batch = B, .heads = H, .lq = LQ, .lk = LK, .head_dim = HD,
                     .scale = 1.0f / sqrtf ((float) HD), .kv_lens = lens ? kl : NULL,
                     .bias = bias ? bt : NULL, .out_stride = C };
  const KinTensor *qt, *kt;
  if (packed) { /* self attention on one qkv projection */
    d.lk = LQ;
    d.q_offset = 0, d.k_offset = C, d.v_offset = 2 * C, d.q_stride = 3 * C, d.kv_stride = 3 * C;
    qt = kt = qkv;
    if (bias)
      d.bias = NULL;
  } else { /* cross attention: q alone, kv packed */
    d.q_stride = C, d.k_offset = 0, d.v_offset = C, d.kv_stride = 2 * C;
    qt = q, kt = kv;
  }
  be->attention (be, out, qt, kt, kt, &d);
  check_backend_ok ();
  g_autofree double *ref = g_new0 (double, (int64_t) B * LQ * C);
  ref_attention (ref, qt, kt, kt, &d);
  assert_close (out, ref, (int64_t) B * LQ * C, 2e-6);
}

static void
test_attention (void)
{
  run_attention_case (1, 1, 1, 1, 8, TRUE, FALSE, FALSE);
  run_attention_case (2, 3, 13, 13, 16, TRUE, FALSE, FALSE);
  run_attention_case (3, 2, 131, 131, 6, TRUE, FALSE, FALSE); /* more than one query block */
  run_attention_case (3, 3, 17, 9, 10, FALSE, TRUE, FALSE);   /* per-sample key lengths */
  run_attention_case (2, 4, 11, 11, 4, FALSE, TRUE, TRUE);    /* T5: bias + padding mask */
}

static void
test_conv2d (void)
{
  KinBackend *be = kin_backend_cpu ();
  const int cases[][9] = {
    /* n cin h w cout k stride pad_tl pad_br */
    { 1, 3, 7, 9, 5, 3, 1, 1, 1 },
    { 2, 4, 8, 6, 3, 1, 1, 0, 0 },
    { 1, 5, 9, 7, 4, 3, 2, 0, 1 }, /* the VAE's asymmetric stride-2 downsample */
    { 2, 2, 5, 5, 3, 3, 2, 1, 1 },
    { 1, 3, 1, 1, 2, 3, 1, 1, 1 },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++) {
    KinConv2d d = { .n = cases[c][0], .cin = cases[c][1], .h = cases[c][2], .w = cases[c][3],
                    .cout = cases[c][4], .kh = cases[c][5], .kw = cases[c][5], .stride = cases[c][6],
                    .pad_t = cases[c][7], .pad_l = cases[c][7], .pad_b = cases[c][8], .pad_r = cases[c][8] };
    int oh = (d.h + d.pad_t + d.pad_b - d.kh) / d.stride + 1, ow = (d.w + d.pad_l + d.pad_r - d.kw) / d.stride + 1;
    int64_t ny = (int64_t) d.n * d.cout * oh * ow;
    g_autoptr (KinTensor) x = rand_t ((int64_t) d.n * d.cin * d.h * d.w);
    g_autoptr (KinTensor) w = rand_t ((int64_t) d.cout * d.cin * d.kh * d.kw), b = rand_t (d.cout), y = zeros_t (ny);
    be->conv2d (be, y, x, w, b, &d);
    check_backend_ok ();
    g_autofree double *ref = g_new0 (double, ny);
    for (int n = 0; n < d.n; n++)
      for (int co = 0; co < d.cout; co++)
        for (int oy = 0; oy < oh; oy++)
          for (int ox = 0; ox < ow; ox++) {
            double acc = D (b, co);
            for (int ci = 0; ci < d.cin; ci++)
              for (int ky = 0; ky < d.kh; ky++)
                for (int kx = 0; kx < d.kw; kx++) {
                  int iy = oy * d.stride - d.pad_t + ky, ix = ox * d.stride - d.pad_l + kx;
                  if (iy >= 0 && iy < d.h && ix >= 0 && ix < d.w)
                    acc += D (x, (((int64_t) n * d.cin + ci) * d.h + iy) * d.w + ix) *
                           D (w, (((int64_t) co * d.cin + ci) * d.kh + ky) * d.kw + kx);
                }
            ref[(((int64_t) n * d.cout + co) * oh + oy) * ow + ox] = acc;
          }
    assert_close (y, ref, ny, 1e-5);
  }
}

static void
test_group_norm_upsample (void)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t N = 2, C = 12, HW = 35;
  int G = 4;
  g_autoptr (KinTensor) x = rand_t (N * C * HW), w = rand_t (C), b = rand_t (C), y = zeros_t (N * C * HW);
  g_autofree double *ref = g_new0 (double, N * C * HW);
  for (int silu = 0; silu < 2; silu++) {
    be->group_norm (be, y, x, w, b, N, C, HW, G, 1e-6f, silu);
    check_backend_ok ();
    int64_t cg = C / G;
    for (int64_t n = 0; n < N; n++)
      for (int g = 0; g < G; g++) {
        double m = 0, v = 0;
        int64_t base = (n * C + g * cg) * HW;
        for (int64_t j = 0; j < cg * HW; j++)
          m += D (x, base + j);
        m /= cg * HW;
        for (int64_t j = 0; j < cg * HW; j++)
          v += (D (x, base + j) - m) * (D (x, base + j) - m);
        v /= cg * HW;
        for (int64_t j = 0; j < cg * HW; j++) {
          double o = (D (x, base + j) - m) / sqrt (v + 1e-6) * D (w, g * cg + j / HW) + D (b, g * cg + j / HW);
          ref[base + j] = silu ? o / (1 + exp (-o)) : o;
        }
      }
    assert_close (y, ref, N * C * HW, 2e-6);
  }
  be->group_norm (be, y, x, w, b, N, C, HW, 5, 1e-6f, FALSE);
  g_autoptr (GError) error = NULL;
  g_assert_false (kin_backend_take_error (be, &error));

  int64_t nc = 3, h = 5, wd = 3;
  g_autoptr (KinTensor) u = rand_t (nc * h * wd), uy = zeros_t (nc * h * wd * 4);
  be->upsample_nearest2x (be, uy, u, nc, h, wd);
  check_backend_ok ();
  g_autofree double *r2 = g_new0 (double, nc * h * wd * 4);
  for (int64_t p = 0; p < nc; p++)
    for (int64_t oy = 0; oy < 2 * h; oy++)
      for (int64_t ox = 0; ox < 2 * wd; ox++)
        r2[(p * 2 * h + oy) * 2 * wd + ox] = D (u, (p * h + oy / 2) * wd + ox / 2);
  assert_close (uy, r2, nc * h * wd * 4, 0);
}

static void
test_rope (void)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t B = 3, L = 5, H = 2, HD = 6, stride = 3 * H * HD; /* q slice of a packed qkv row */
  g_autoptr (KinTensor) x = rand_t (B * L * stride), cs = zeros_t (L * HD / 2), sn = zeros_t (L * HD / 2);
  for (int64_t l = 0; l < L; l++)
    for (int64_t i = 0; i < HD / 2; i++) {
      double th = l * pow (10000, -2.0 * i / HD);
      ((float *) cs->data)[l * HD / 2 + i] = (float) cos (th);
      ((float *) sn->data)[l * HD / 2 + i] = (float) sin (th);
    }
  g_autofree double *ref = g_new0 (double, B * L * stride);
  for (int64_t i = 0; i < B * L * stride; i++)
    ref[i] = D (x, i);
  for (int64_t b = 0; b < B; b++)
    for (int64_t l = 0; l < L; l++)
      for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < HD / 2; i++) {
          int64_t o = (b * L + l) * stride + H * HD /* k slice */ + h * HD + 2 * i;
          double th = l * pow (10000, -2.0 * i / HD);
          double a = D (x, o), c = D (x, o + 1);
          ref[o] = a * cos (th) - c * sin (th);
          ref[o + 1] = c * cos (th) + a * sin (th);
        }
  be->rope (be, x, H * HD, stride, B, L, (int) H, (int) HD, cs, sn);
  check_backend_ok ();
  assert_close (x, ref, B * L * stride, 1e-6);
}

static void
test_permute_copy (void)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t dims[4] = { 2, 3, 5, 7 };
  int perm[4] = { 0, 2, 1, 3 }; /* [B, T, S, C] → [B, S, T, C] */
  int64_t n = 2 * 3 * 5 * 7;
  g_autoptr (KinTensor) x = rand_t (n), y = zeros_t (n), z = zeros_t (n);
  be->permute (be, y, x, 4, dims, perm);
  check_backend_ok ();
  g_autofree double *ref = g_new0 (double, n);
  for (int b = 0; b < 2; b++)
    for (int t = 0; t < 3; t++)
      for (int s = 0; s < 5; s++)
        for (int c = 0; c < 7; c++)
          ref[((b * 5 + s) * 3 + t) * 7 + c] = D (x, ((b * 3 + t) * 5 + s) * 7 + c);
  assert_close (y, ref, n, 0);
  int perm2[3] = { 2, 0, 1 };
  int64_t d3[3] = { 6, 5, 7 };
  be->permute (be, z, x, 3, d3, perm2);
  for (int a = 0; a < 6; a++)
    for (int b = 0; b < 5; b++)
      for (int c = 0; c < 7; c++)
        ref[(c * 6 + a) * 5 + b] = D (x, (a * 5 + b) * 7 + c);
  assert_close (z, ref, n, 0);
  be->copy (be, z, 3, x, 10, 20);
  check_backend_ok ();
  for (int i = 0; i < 20; i++)
    g_assert_cmpfloat (((float *) z->data)[3 + i], ==, ((float *) x->data)[10 + i]);
  int bad[4] = { 0, 0, 1, 2 };
  be->permute (be, y, x, 4, dims, bad);
  g_autoptr (GError) error = NULL;
  g_assert_false (kin_backend_take_error (be, &error));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  rng = g_rand_new_with_seed (1234);
  g_test_add_func ("/ops/linear", test_linear);
  g_test_add_func ("/ops/linear-half-weights", test_linear_half_weights);
  g_test_add_func ("/ops/matmul", test_matmul);
  g_test_add_func ("/ops/norms", test_norms);
  g_test_add_func ("/ops/modulate-gate", test_modulate_gate);
  g_test_add_func ("/ops/elementwise", test_elementwise);
  g_test_add_func ("/ops/softmax", test_softmax);
  g_test_add_func ("/ops/attention", test_attention);
  g_test_add_func ("/ops/conv2d", test_conv2d);
  g_test_add_func ("/ops/group-norm-upsample", test_group_norm_upsample);
  g_test_add_func ("/ops/rope", test_rope);
  g_test_add_func ("/ops/permute-copy", test_permute_copy);
  int rc = g_test_run ();
  g_rand_free (rng);
  return rc;
}
