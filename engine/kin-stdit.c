/* kin-stdit.c — STDiT (v1.0) and STDiT2 (v1.1) forward pass on the backend op table.
 *
 * Spec: ../shared/spec/stdit.md §1–§3, §10.  Shapes: B batch, T frames, Hp×Wp patch grid
 * (S = Hp·Wp tokens per frame, N = T·S per sample, M = B·N in all), C hidden, hd head dim,
 * L caption tokens.  The residual stream x is [B, T, S, C] (token order (t, h, w) row-major).
 *
 * Quirks reproduced (numbers from §10):
 *  1. v1.0 temporal attention takes the raw residual (no LN, no modulation), gated by gate_msa;
 *     pos_embed_temporal is added to that input in block 0 only.
 *  2. The final layer modulates with the plain timestep embedding t (both versions).
 *  4. Timestep features are [cos | sin]; position tables [sin | cos]; the 2-D table puts the w
 *     coordinate in its first half.
 *  5. v1.1 bf16 rounding of timestep / sizes: KinStditConfig.bf16_quirks (off for the float32
 *     golden path, on to match the official bf16 inference).
 *  6. v1.1 RoPE before the q/k RMSNorm; its angle/cos/sin in bf16 under bf16_quirks.
 *  7. v1.1 double LayerNorm of the final layer for x_mask-False frames, which use t0 + data_info
 *     while the others use t without data_info.
 *  8. ar is taken as given (the official inference passes H/W).
 * 12. Position tables in the model precision: float64→float32 (v1.0), float32 (v1.1), bf16 when
 *     bf16_quirks.  The timestep frequencies use PyTorch's CPU float32 exp (see torch_expf), so
 *     t = 999 hits the same float32 angles as upstream.
 * 13. Odd latent sizes are zero-padded at the end for the patch embedding and cropped after.
 * 16. Deliberately different: without a caption mask upstream builds no block mask and lets the
 *     queries of one sample attend to the captions of all samples; here every sample attends to
 *     its own L tokens.  Pass the mask to match upstream in every case.
 * Outside the model, for its callers: 3 (CFG on 3 channels; the null caption masked with the
 * prompt's mask — pass mask_rows = number of prompts), 9 (fps 24 / 120 is the caller's value),
 * 10 and 14 (sampler, VAE).  11: every op here is float32, so softmax, norm statistics and the
 * RMSNorm cast order are exact; 15: v1.0 in fp16 is not emulated.
 * Also different: v1.0 takes T, H, W from the input instead of the fixed input_size (upstream
 * only runs at that size, where both agree), and v1.0 never rounds to fp16 (its configs run fp16;
 * the integer timesteps 0..999 are exact there).  Everything heavy runs through the op table;
 * reduced-precision matmuls are the backend's business. */
#include "kin-stdit-private.h"
#include "kin-error.h"
#include <math.h>
#include <string.h>

#define LN_EPS 1e-6f
#define RMS_EPS 1e-6f
/* MLP hidden activations are produced in row chunks of at most this many tokens */
#define MLP_CHUNK_ROWS 16384

struct _KinStditWork {
  /* sizes the buffers were made for */
  int64_t B, T, H, W, L;
  double pos_scale;           /* v1.1: the rs/input_sq_size the position table was built for */
  gboolean pos_valid;

  KinTensor *x;               /* [M, C] residual stream */
  KinTensor *xn;              /* [M, C] normalised/modulated input of a branch; cross-attn q */
  KinTensor *qkv;             /* [M, 3C] */
  KinTensor *qkv_split;       /* [3, M, C] q | k | v, when qk_norm */
  KinTensor *att;             /* [M, C] attention output (heads concatenated) */
  KinTensor *h;               /* [M, C] branch output before its gate */
  KinTensor *xp;              /* [M, C] a branch input regrouped per spatial position */
  KinTensor *hid;             /* [min(M, MLP_CHUNK_ROWS), mlp_hidden] */
  KinTensor *y_mid;           /* [B·L, C] caption fc1 output */
  KinTensor *y_all;           /* [B·L, C] caption embedding of every token */
  KinTensor *y_pad;           /* [B·L, C] sample b's valid tokens first, in rows b·L … */
  KinTensor *kv;              /* [B·L, 2C] */
  KinTensor *mod_spc;         /* [B·T, 6C] per-frame t_block output (t or t0 row) */
  KinTensor *mod_tmp;         /* [B·T, 3C] per-frame t_block_temp output (v1.1) */
  KinTensor *blk_spc;         /* [B·T, 6C] mod_spc + block scale_shift_table */
  KinTensor *blk_tmp;         /* [B·T, 3C] */
  KinTensor *fin;             /* [B, 2C] final-layer shift | scale */
  KinTensor *fin0;            /* [B, 2C] the same from t0 + data_info (x_mask) */
  KinTensor *pos;             /* [S, C] spatial position table */
  KinTensor *tpe;             /* [T, C] v1.0 temporal table */
  KinTensor *rope_cos;        /* [T, hd/2] v1.1 */
  KinTensor *rope_sin;
  KinTensor *x_frames;        /* [B·T, Cin, H, W] input regrouped per frame */
  KinTensor *conv;            /* [B·T, C, Hp, Wp] patch-embedding output */
  KinTensor *tok_out;         /* [M, p·p·Cout] final-layer output */
  KinTensor *unpatch;         /* [Cout, T, Hp·p, Wp·p] one sample, when cropping */
  KinTensor *feat;            /* [FEAT_ROWS·B, freq_dim] the call's sinusoid features (see below) */
};

/* Rows of KinStditWork.feat, in units of B rows: the host-made sinusoid features of one call,
 * uploaded once before any device work (and outside a captured graph).  v1.0 has only t. */
enum {
  FEAT_T = 0,                 /* timestep */
  FEAT_T0 = 1,                /* timestep 0 (x_mask) */
  FEAT_CSIZE = 2,             /* (height, width): 2 rows per sample */
  FEAT_AR = 4,
  FEAT_FL = 5,                /* num_frames */
  FEAT_FPS = 6,
  FEAT_ROWS_V2 = 7,
};

typedef struct {
  KinStdit *m;
  KinBackend *be;
  const KinStditConfig *cfg;
  const KinStditInput *in;
  KinStditWork *w;
  int64_t B, T, H, W, p, Hp, Wp, S, N, M, C, L, Cin, Cout;
  int heads, hd;
  int mask_rows, cond_rows;
  int32_t *y_lens;            /* [B] valid caption tokens of each sample */
  gboolean has_x_mask;
  /* per-call conditioning vectors */
  KinTensor *t;               /* [B, C] timestep embedding */
  KinTensor *t_mlp;           /* [B, 6C] t_block(t) (v1.0) / t_block(t + data_info) */
  KinTensor *t_tmp_mlp;       /* [B, 3C] t_block_temp(t + fl) */
  KinTensor *t0_spc;          /* [B, C] t0 + data_info */
  KinTensor *t0_mlp;          /* [B, 6C] */
  KinTensor *t0_tmp_mlp;      /* [B, 3C] */
  GPtrArray *temps;           /* per-call tensors, freed at the end */
  GError *error;              /* allocation failures */
} Run;

/* ---------------------------------------------------------------------------------------------
 * Small helpers */

/* A non-owning view of @t: @rows × @cols elements starting @offset elements in. */
static KinTensor
view2 (const KinTensor *t, int64_t offset, int64_t rows, int64_t cols)
{
  KinTensor v = *t;
  v.data = (char *) t->data + offset * (int64_t) kin_dtype_size (t->dtype);
  v.ndim = 2;
  memset (v.shape, 0, sizeof v.shape);
  v.shape[0] = rows;
  v.shape[1] = cols;
  v.owns_data = FALSE;
  return v;
}

static KinTensor *
new2 (KinBackend *be, GError **error, int64_t rows, int64_t cols)
{
  if (*error != NULL)
    return NULL;
  int64_t shape[2] = { rows, cols };
  return kin_tensor_new (be, KIN_DTYPE_F32, 2, shape, error);
}

/* A per-call tensor (freed with the run). */
static KinTensor *
run_new (Run *r, int64_t rows, int64_t cols)
{
  KinTensor *t = new2 (r->be, &r->error, rows, cols);
  if (t != NULL)
    g_ptr_array_add (r->temps, t);
  return t;
}

static KinTensor *
run_upload (Run *r, const float *data, int64_t rows, int64_t cols)
{
  if (r->error != NULL)
    return NULL;
  int64_t shape[2] = { rows, cols };
  KinTensor *t = kin_tensor_from_host_f32 (r->be, data, 2, shape, &r->error);
  if (t != NULL)
    g_ptr_array_add (r->temps, t);
  return t;
}

static void
hook (Run *r, const char *name, int block, const KinTensor *t)
{
  if (r->in->hook != NULL && t != NULL && !kin_backend_failed (r->be))
    r->in->hook (name, block, t, r->in->hook_data);
}

static void
hook2 (Run *r, const char *name, const KinTensor *t, int64_t rows, int64_t cols)
{
  if (t == NULL)
    return;
  KinTensor v = view2 (t, 0, rows, cols);
  hook (r, name, -1, &v);
}

static void
linear (Run *r, KinTensor *y, const KinTensor *x, const KinStditLinear *lin, int64_t rows)
{
  r->be->linear (r->be, y, x, lin->weight, lin->bias, rows, lin->in, lin->out);
}

static float
maybe_bf16 (const Run *r, float v)
{
  return r->cfg->bf16_quirks ? kin_round_bf16 (v) : v;
}

/* ---------------------------------------------------------------------------------------------
 * Host-side tables */

/* exp() of a float32 the way PyTorch's CPU kernels compute it (the vectorised SLEEF u10 scheme:
 * reduction by ln 2 split in two parts, a degree-6 polynomial, 1 + (s² · poly + s)).  The
 * timestep frequencies exp(−ln(10000)·i/128) differ from a correctly rounded expf by one ulp
 * for some i, which at t ≈ 1000 moves the sin/cos arguments by 3e-5; upstream's are these. */
static float
torch_expf (float d)
{
  float q = rintf (d * 1.442695040888963407359924681001892137f);
  float s = fmaf (q, -0.693145751953125f, d);
  s = fmaf (q, -1.428606765330187045e-06f, s);
  float u = 0.000198527617612853646278381f;
  u = fmaf (u, s, 0.00139304355252534151077271f);
  u = fmaf (u, s, 0.00833336077630519866943359f);
  u = fmaf (u, s, 0.0416664853692054748535156f);
  u = fmaf (u, s, 0.166666671633720397949219f);
  u = fmaf (u, s, 0.5f);
  u = 1.0f + fmaf (s * s, u, s);
  return ldexpf (u, (int) q);
}

/* GLIDE/DiT timestep features, [cos | sin], float32 as upstream: f_i = exp(−ln(10000)·i/half),
 * argument t·f_i in float32.  @out: [n, dim]. */
static void
timestep_features (float *out, const float *t, int64_t n, int dim, gboolean bf16)
{
  int half = dim / 2;
  float neg_log = (float) -log (10000.0);
  g_autofree float *freqs = g_new (float, half);
  for (int i = 0; i < half; i++)
    freqs[i] = torch_expf ((neg_log * (float) i) / (float) half);
  for (int64_t b = 0; b < n; b++)
    for (int i = 0; i < half; i++) {
      float arg = t[b] * freqs[i];
      float c = (float) cos ((double) arg), s = (float) sin ((double) arg);
      out[b * dim + i] = bf16 ? kin_round_bf16 (c) : c;
      out[b * dim + half + i] = bf16 ? kin_round_bf16 (s) : s;
    }
}

/* v1.0 2-D table (float64 numpy → float32): coordinate = index / space_scale in float32, then
 * ω_k = 10000^(−k/(C/4)); row h·Wp + w = [sin(x_w ω), cos(x_w ω), sin(x_h ω), cos(x_h ω)]. */
static void
pos_table_v1 (float *out, int64_t hp, int64_t wp, int64_t c, double space_scale)
{
  int64_t q = c / 4;
  g_autofree double *omega = g_new (double, q);
  for (int64_t k = 0; k < q; k++)
    omega[k] = 1.0 / pow (10000.0, (double) k / (double) q);
  for (int64_t h = 0; h < hp; h++)
    for (int64_t w = 0; w < wp; w++) {
      double xh = (float) h / (float) space_scale, xw = (float) w / (float) space_scale;
      float *row = out + (h * wp + w) * c;
      for (int64_t k = 0; k < q; k++) {
        row[k] = (float) sin (xw * omega[k]);
        row[q + k] = (float) cos (xw * omega[k]);
        row[2 * q + k] = (float) sin (xh * omega[k]);
        row[3 * q + k] = (float) cos (xh * omega[k]);
      }
    }
}

/* v1.0 temporal table (float64): row t = [sin(p ω), cos(p ω)], p = t / time_scale,
 * ω_k = 10000^(−k/(C/2)). */
static void
temporal_table_v1 (float *out, int64_t t_len, int64_t c, double time_scale)
{
  int64_t half = c / 2;
  for (int64_t t = 0; t < t_len; t++) {
    double p = (double) t / time_scale;
    for (int64_t k = 0; k < half; k++) {
      double omega = 1.0 / pow (10000.0, (double) k / (double) half);
      out[t * c + k] = (float) sin (p * omega);
      out[t * c + half + k] = (float) cos (p * omega);
    }
  }
}

/* v1.1 PositionEmbedding2D (float32 torch): inv_freq_k = 1 / 10000^(2k/(C/2)); coordinate
 * i / scale · (base_size / n) in float32; same layout as v1.0. */
static void
pos_table_v2 (float *out, int64_t hp, int64_t wp, int64_t c, double scale, double base_size,
              gboolean bf16)
{
  int64_t q = c / 4, half_dim = c / 2;
  g_autofree float *inv = g_new (float, q);
  g_autofree float *ch = g_new (float, hp);
  g_autofree float *cw = g_new (float, wp);
  for (int64_t k = 0; k < q; k++) {
    float e = (float) (2 * k) / (float) half_dim;
    inv[k] = 1.0f / (float) pow (10000.0, (double) e);
    if (bf16)
      inv[k] = kin_round_bf16 (inv[k]);
  }
  for (int64_t i = 0; i < hp; i++)
    ch[i] = ((float) i / (float) scale) * (float) (base_size / (double) hp);
  for (int64_t i = 0; i < wp; i++)
    cw[i] = ((float) i / (float) scale) * (float) (base_size / (double) wp);
  for (int64_t h = 0; h < hp; h++)
    for (int64_t w = 0; w < wp; w++) {
      float *row = out + (h * wp + w) * c;
      for (int64_t k = 0; k < q; k++) {
        float aw = cw[w] * inv[k], ah = ch[h] * inv[k];
        row[k] = (float) sin ((double) aw);
        row[q + k] = (float) cos ((double) aw);
        row[2 * q + k] = (float) sin ((double) ah);
        row[3 * q + k] = (float) cos ((double) ah);
      }
      if (bf16)
        for (int64_t k = 0; k < c; k++)
          row[k] = kin_round_bf16 (row[k]);
    }
}

/* RoPE tables [T, hd/2] for rotary-embedding-torch: θ = position · freqs_i, positions = frame
 * index.  Under bf16_quirks the freqs, the angle and cos/sin are bf16 as in upstream's bf16 run. */
static void
rope_tables (float *cos_t, float *sin_t, const float *freqs, int64_t t_len, int half, gboolean bf16)
{
  for (int64_t t = 0; t < t_len; t++)
    for (int i = 0; i < half; i++) {
      float theta;
      if (bf16)
        theta = kin_round_bf16 (kin_round_bf16 ((float) t) * kin_round_bf16 (freqs[i]));
      else
        theta = (float) t * freqs[i];
      float c = (float) cos ((double) theta), s = (float) sin ((double) theta);
      cos_t[t * half + i] = bf16 ? kin_round_bf16 (c) : c;
      sin_t[t * half + i] = bf16 ? kin_round_bf16 (s) : s;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Work buffers */

void
kin_stdit_work_free (KinStditWork *w)
{
  if (w == NULL)
    return;
  KinTensor **all[] = { &w->x, &w->xn, &w->qkv, &w->qkv_split, &w->att, &w->h, &w->xp, &w->hid,
                        &w->y_mid, &w->y_all, &w->y_pad, &w->kv, &w->mod_spc, &w->mod_tmp,
                        &w->blk_spc, &w->blk_tmp, &w->fin, &w->fin0, &w->pos, &w->tpe,
                        &w->rope_cos, &w->rope_sin, &w->x_frames, &w->conv, &w->tok_out,
                        &w->unpatch, &w->feat };
  for (guint i = 0; i < G_N_ELEMENTS (all); i++)
    g_clear_pointer (all[i], kin_tensor_free);
  g_free (w);
}

static gboolean
work_alloc (Run *r, KinStditWork *w, GError **error)
{
  KinBackend *be = r->be;
  const KinStditConfig *cfg = r->cfg;
  int64_t m = r->M, c = r->C, bt = r->B * r->T, bl = r->B * r->L;
  int64_t chunk = MIN (m, MLP_CHUNK_ROWS);
  w->x = new2 (be, error, m, c);
  w->xn = new2 (be, error, m, c);
  w->qkv = new2 (be, error, m, 3 * c);
  if (cfg->qk_norm)
    w->qkv_split = new2 (be, error, 3 * m, c);
  w->att = new2 (be, error, m, c);
  w->h = new2 (be, error, m, c);
  w->xp = new2 (be, error, m, c);
  w->hid = new2 (be, error, chunk, cfg->mlp_hidden);
  w->y_mid = new2 (be, error, bl, c);
  w->y_all = new2 (be, error, bl, c);
  w->y_pad = new2 (be, error, bl, c);
  w->kv = new2 (be, error, bl, 2 * c);
  w->mod_spc = new2 (be, error, bt, 6 * c);
  w->blk_spc = new2 (be, error, bt, 6 * c);
  if (cfg->version == KIN_STDIT_V2) {
    w->mod_tmp = new2 (be, error, bt, 3 * c);
    w->blk_tmp = new2 (be, error, bt, 3 * c);
  }
  w->fin = new2 (be, error, r->B, 2 * c);
  w->fin0 = new2 (be, error, r->B, 2 * c);
  w->x_frames = new2 (be, error, bt * r->Cin, r->H * r->W);
  w->conv = new2 (be, error, bt * c, r->S);
  w->tok_out = new2 (be, error, m, r->p * r->p * r->Cout);
  if (r->Hp * r->p != r->H || r->Wp * r->p != r->W)
    w->unpatch = new2 (be, error, r->Cout * r->T, r->Hp * r->p * r->Wp * r->p);
  w->feat = new2 (be, error, (cfg->version == KIN_STDIT_V2 ? FEAT_ROWS_V2 : 1) * r->B, cfg->freq_dim);
  if (*error != NULL)
    return FALSE;
  /* Rows of y_pad past a sample's caption are never attended to, but kv_linear reads them:
   * start them at zero so no stale NaN can ride along on a device backend. */
  g_autofree float *zeros = g_new0 (float, bl * c);
  be->upload (be, w->y_pad->data, zeros, bl * c * sizeof (float));
  return TRUE;
}

static gboolean
work_tables (Run *r, KinStditWork *w, GError **error)
{
  const KinStditConfig *cfg = r->cfg;
  int64_t shape[2];
  if (cfg->version == KIN_STDIT_V1) {
    g_autofree float *tpe = g_new (float, r->T * r->C);
    temporal_table_v1 (tpe, r->T, r->C, cfg->time_scale);
    shape[0] = r->T;
    shape[1] = r->C;
    w->tpe = kin_tensor_from_host_f32 (r->be, tpe, 2, shape, error);
    return w->tpe != NULL;
  }
  int half = r->hd / 2;
  g_autofree float *cs = g_new (float, r->T * half);
  g_autofree float *sn = g_new (float, r->T * half);
  rope_tables (cs, sn, r->m->rope_freqs, r->T, half, cfg->bf16_quirks);
  shape[0] = r->T;
  shape[1] = half;
  w->rope_cos = kin_tensor_from_host_f32 (r->be, cs, 2, shape, error);
  if (w->rope_cos == NULL)
    return FALSE;
  w->rope_sin = kin_tensor_from_host_f32 (r->be, sn, 2, shape, error);
  return w->rope_sin != NULL;
}

/* Reuses the buffers while B, T, H, W and L stay the same (a sampler calls with fixed sizes). */
static gboolean
work_prepare (Run *r, GError **error)
{
  KinStdit *m = r->m;
  KinStditWork *w = m->work;
  if (w != NULL && w->B == r->B && w->T == r->T && w->H == r->H && w->W == r->W && w->L == r->L) {
    r->w = w;
    return TRUE;
  }
  /* a graph recorded on the old buffers must never replay on the new ones (which may even sit at
   * the old addresses) */
  if (m->work != NULL)
    kin_stdit_graphs_clear (m);
  g_clear_pointer (&m->work, kin_stdit_work_free);
  w = g_new0 (KinStditWork, 1);
  w->B = r->B;
  w->T = r->T;
  w->H = r->H;
  w->W = r->W;
  w->L = r->L;
  if (!work_alloc (r, w, error) || !work_tables (r, w, error)) {
    kin_stdit_work_free (w);
    return FALSE;
  }
  m->work = r->w = w;
  return TRUE;
}

/* The spatial table: fixed for v1.0; for v1.1 it depends on rs = sqrt(height·width) of sample 0. */
static gboolean
prepare_pos (Run *r, GError **error)
{
  const KinStditConfig *cfg = r->cfg;
  KinStditWork *w = r->w;
  double scale = 0, base_size = 0;
  if (cfg->version == KIN_STDIT_V2) {
    double h0 = maybe_bf16 (r, r->in->height[0]), w0 = maybe_bf16 (r, r->in->width[0]);
    scale = sqrt (h0 * w0) / cfg->input_sq_size;
    base_size = rint (sqrt ((double) r->S));      /* Python round: half to even */
    if (!(scale > 0)) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                   "STDiT2: height %g × width %g gives no position scale", h0, w0);
      return FALSE;
    }
  }
  if (w->pos_valid && w->pos_scale == scale)
    return TRUE;
  g_clear_pointer (&w->pos, kin_tensor_free);
  w->pos_valid = FALSE;
  g_autofree float *pos = g_new (float, r->S * r->C);
  if (cfg->version == KIN_STDIT_V1)
    pos_table_v1 (pos, r->Hp, r->Wp, r->C, cfg->space_scale);
  else
    pos_table_v2 (pos, r->Hp, r->Wp, r->C, scale, base_size, cfg->bf16_quirks);
  int64_t shape[2] = { r->S, r->C };
  w->pos = kin_tensor_from_host_f32 (r->be, pos, 2, shape, error);
  if (w->pos == NULL)
    return FALSE;
  w->pos_scale = scale;
  w->pos_valid = TRUE;
  return TRUE;
}

/* ---------------------------------------------------------------------------------------------
 * Embeddings */

/* Patch embedding: the (1, p, p) Conv3d is a stride-p Conv2d per frame; odd H/W are padded with
 * zeros at the bottom/right (the conv's end padding), as upstream's F.pad. */
static void
embed_x (Run *r)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  KinStdit *m = r->m;
  /* x [B, Cin, T, H·W] → x_frames [B, T, Cin, H·W] */
  int64_t dims[4] = { r->B, r->Cin, r->T, r->H * r->W };
  int perm[4] = { 0, 2, 1, 3 };
  be->permute (be, w->x_frames, r->in->x, 4, dims, perm);
  KinConv2d conv = {
    .n = (int) (r->B * r->T), .cin = (int) r->Cin, .h = (int) r->H, .w = (int) r->W,
    .cout = (int) r->C, .kh = (int) r->p, .kw = (int) r->p, .stride = (int) r->p,
    .pad_t = 0, .pad_b = (int) (r->Hp * r->p - r->H),
    .pad_l = 0, .pad_r = (int) (r->Wp * r->p - r->W),
  };
  be->conv2d (be, w->conv, w->x_frames, m->x_embedder_weight, m->x_embedder_bias, &conv);
  /* conv [B·T, C, S] → x [B·T, S, C] */
  int64_t cdims[3] = { r->B * r->T, r->C, r->S };
  int cperm[3] = { 0, 2, 1 };
  be->permute (be, w->x, w->conv, 3, cdims, cperm);
  hook2 (r, "x_embedder.out", w->x, r->M, r->C);
  /* x += pos_embed, the [S, C] table repeated over every frame */
  be->add (be, w->x, w->x, w->pos);
  hook2 (r, "x_embed", w->x, r->M, r->C);
}

/* Linear → SiLU → Linear on @rows rows of @x; returns a per-call tensor [rows, out]. */
static KinTensor *
mlp_silu (Run *r, const KinStditMlp *mlp, const KinTensor *x, int64_t rows)
{
  KinTensor *h = run_new (r, rows, mlp->l0.out);
  KinTensor *y = run_new (r, rows, mlp->l2.out);
  if (y == NULL)
    return NULL;
  linear (r, h, x, &mlp->l0, rows);
  r->be->silu (r->be, h, h);
  linear (r, y, h, &mlp->l2, rows);
  return y;
}

/* t_embedder on the timestep features at feat rows [row·B, row·B + B): MLP → [B, C].  @freq_name
 * names the hook. */
static KinTensor *
embed_timestep (Run *r, int row, const char *freq_name)
{
  KinTensor ft = view2 (r->w->feat, row * r->B * r->cfg->freq_dim, r->B, r->cfg->freq_dim);
  hook2 (r, freq_name, &ft, r->B, r->cfg->freq_dim);
  return mlp_silu (r, &r->m->t_embedder, &ft, r->B);
}

/* SiLU → Linear (t_block, t_block_temp) on [B, C]. */
static KinTensor *
adaln (Run *r, const KinStditLinear *lin, const KinTensor *x)
{
  KinTensor *s = run_new (r, r->B, r->C);
  KinTensor *y = run_new (r, r->B, lin->out);
  if (y == NULL)
    return NULL;
  r->be->silu (r->be, s, x);
  linear (r, y, s, lin, r->B);
  return y;
}

/* A SizeEmbedder on @dims scalars per sample, whose features are at feat rows starting row·B:
 * [B, dims·out]. */
static KinTensor *
embed_sizes (Run *r, const KinStditMlp *mlp, int row, int dims)
{
  int64_t n = r->B * dims;
  KinTensor ft = view2 (r->w->feat, row * r->B * r->cfg->freq_dim, n, r->cfg->freq_dim);
  return mlp_silu (r, mlp, &ft, n);
}

/* The host-made inputs of the call, in one upload to w->feat: sinusoid features of the timesteps
 * (quirk 5: 999 → 1000 under bf16_quirks), of timestep 0, and of the v1.1 size conditioning
 * (entry of sample b at values[b % cond_rows]). */
static void
upload_features (Run *r)
{
  int f = r->cfg->freq_dim;
  int64_t B = r->B;
  gboolean bf16 = r->cfg->bf16_quirks;
  int64_t rows = r->w->feat->shape[0];
  g_autofree float *feat = g_new0 (float, rows * f);
  g_autofree float *s = g_new (float, MAX (2 * B, 1));
  for (int64_t b = 0; b < B; b++)
    s[b] = maybe_bf16 (r, r->in->timestep[b]);
  timestep_features (feat + FEAT_T * B * f, s, B, f, bf16);
  if (r->cfg->version == KIN_STDIT_V2) {
    for (int64_t b = 0; b < B; b++)
      s[b] = 0.0f;
    timestep_features (feat + FEAT_T0 * B * f, s, B, f, bf16);
    const KinStditInput *in = r->in;
    const struct { int row, dims; const float *v[2]; } sizes[] = {
      { FEAT_CSIZE, 2, { in->height, in->width } }, { FEAT_AR, 1, { in->ar } },
      { FEAT_FL, 1, { in->num_frames } }, { FEAT_FPS, 1, { in->fps } },
    };
    for (guint i = 0; i < G_N_ELEMENTS (sizes); i++) {
      int dims = sizes[i].dims;
      for (int64_t b = 0; b < B; b++)
        for (int d = 0; d < dims; d++)
          s[b * dims + d] = maybe_bf16 (r, sizes[i].v[d][b % r->cond_rows]);
      timestep_features (feat + sizes[i].row * B * f, s, B * dims, f, bf16);
    }
  }
  r->be->upload (r->be, r->w->feat->data, feat, rows * f * sizeof (float));
}

/* v1.0: t and t_block(t).  v1.1: t, data_info, fl, their t_block / t_block_temp outputs, and
 * the same for timestep 0 when an x_mask is given. */
static void
embed_conditions (Run *r)
{
  KinBackend *be = r->be;
  KinStdit *m = r->m;
  r->t = embed_timestep (r, FEAT_T, "t_freq");
  hook2 (r, "t", r->t, r->B, r->C);
  if (r->cfg->version == KIN_STDIT_V1) {
    r->t_mlp = adaln (r, &m->t_block, r->t);
    hook2 (r, "t0", r->t_mlp, r->B, 6 * r->C);     /* upstream v1.0 calls t_block(t) "t0" */
    return;
  }
  KinTensor *csize = embed_sizes (r, &m->csize_embedder, FEAT_CSIZE, 2);  /* [B, 2D] */
  KinTensor *ar = embed_sizes (r, &m->ar_embedder, FEAT_AR, 1);          /* [B, D] */
  KinTensor *fl = embed_sizes (r, &m->fl_embedder, FEAT_FL, 1);
  KinTensor *fps = embed_sizes (r, &m->fps_embedder, FEAT_FPS, 1);
  KinTensor *data_info = run_new (r, r->B, r->C);
  KinTensor *t_spc = run_new (r, r->B, r->C);
  KinTensor *t_tmp = run_new (r, r->B, r->C);
  if (t_tmp == NULL || r->t == NULL)
    return;
  int64_t d = r->cfg->size_dim;
  hook2 (r, "csize", csize, r->B, 2 * d);
  hook2 (r, "ar_emb", ar, r->B, d);
  hook2 (r, "fl_emb", fl, r->B, r->C);
  hook2 (r, "fps_emb", fps, r->B, r->C);
  /* data_info = [csize | ar] per sample */
  for (int64_t b = 0; b < r->B; b++) {
    be->copy (be, data_info, b * r->C, csize, b * 2 * d, 2 * d);
    be->copy (be, data_info, b * r->C + 2 * d, ar, b * d, d);
  }
  be->add (be, fl, fl, fps);                 /* fl = fl_emb + fps_emb */
  be->add (be, t_spc, r->t, data_info);
  be->add (be, t_tmp, r->t, fl);
  r->t_mlp = adaln (r, &m->t_block, t_spc);
  r->t_tmp_mlp = adaln (r, &m->t_block_temp, t_tmp);
  hook2 (r, "t_spc_mlp", r->t_mlp, r->B, 6 * r->C);
  hook2 (r, "t_tmp_mlp", r->t_tmp_mlp, r->B, 3 * r->C);
  if (!r->has_x_mask)
    return;
  KinTensor *t0 = embed_timestep (r, FEAT_T0, "t0_freq");
  KinTensor *t0_tmp = run_new (r, r->B, r->C);
  r->t0_spc = run_new (r, r->B, r->C);
  if (t0_tmp == NULL || t0 == NULL)
    return;
  hook2 (r, "t0", t0, r->B, r->C);
  be->add (be, r->t0_spc, t0, data_info);
  be->add (be, t0_tmp, t0, fl);
  r->t0_mlp = adaln (r, &m->t_block, r->t0_spc);
  r->t0_tmp_mlp = adaln (r, &m->t_block_temp, t0_tmp);
  hook2 (r, "t0_spc_mlp", r->t0_mlp, r->B, 6 * r->C);
  hook2 (r, "t0_tmp_mlp", r->t0_tmp_mlp, r->B, 3 * r->C);
}

/* Each sample's caption tokens (mask ≠ 0) and how many: y_lens.  Host only (before any device
 * work: the lengths decide the copies of embed_captions and the attention masks). */
static gboolean
caption_lens (Run *r, GError **error)
{
  for (int64_t b = 0; b < r->B; b++) {
    const int32_t *mask = r->in->mask ? r->in->mask + (b % r->mask_rows) * r->L : NULL;
    int32_t n = 0;
    for (int64_t l = 0; l < r->L; l++)
      n += mask == NULL || mask[l] != 0;
    if (n == 0) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                   "STDiT: sample %" G_GINT64_FORMAT " has an empty caption mask", b);
      return FALSE;
    }
    r->y_lens[b] = n;
  }
  return TRUE;
}

/* Caption MLP on all B·L tokens, then each sample's valid tokens (mask ≠ 0, in order) moved to
 * the front of its rows in y_pad.  Same selection as upstream's packing. */
static void
embed_captions (Run *r)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  int64_t bl = r->B * r->L, c = r->C, l_len = r->L;
  KinTensor y = view2 (r->in->y, 0, bl, r->cfg->caption_channels);
  linear (r, w->y_mid, &y, &r->m->y_fc1, bl);
  be->gelu_tanh (be, w->y_mid, w->y_mid);
  linear (r, w->y_all, w->y_mid, &r->m->y_fc2, bl);
  hook2 (r, "y_embedder.out", w->y_all, bl, c);
  for (int64_t b = 0; b < r->B; b++) {
    const int32_t *mask = r->in->mask ? r->in->mask + (b % r->mask_rows) * l_len : NULL;
    int64_t n = 0;
    for (int64_t l = 0; l < l_len;) {
      if (mask != NULL && mask[l] == 0) {
        l++;
        continue;
      }
      int64_t run = 1;
      while (l + run < l_len && (mask == NULL || mask[l + run] != 0))
        run++;
      be->copy (be, w->y_pad, (b * l_len + n) * c, w->y_all, (b * l_len + l) * c, run * c);
      n += run;
      l += run;
    }
  }
}

/* The golden files record the packed captions [1, Σ y_len, C] and y_lens: made for the hook only. */
static void
hook_captions (Run *r)
{
  if (r->in->hook == NULL)
    return;
  int64_t total = 0;
  g_autofree float *lens = g_new (float, r->B);
  for (int64_t b = 0; b < r->B; b++) {
    total += r->y_lens[b];
    lens[b] = (float) r->y_lens[b];
  }
  KinTensor *packed = run_new (r, total, r->C);
  KinTensor *lt = run_upload (r, lens, r->B, 1);
  if (packed == NULL || lt == NULL)
    return;
  for (int64_t b = 0, at = 0; b < r->B; at += r->y_lens[b], b++)
    r->be->copy (r->be, packed, at * r->C, r->w->y_pad, b * r->L * r->C, r->y_lens[b] * r->C);
  hook2 (r, "y_packed", packed, total, r->C);
  hook2 (r, "y_lens", lt, r->B, 1);
}

/* Per-frame modulation rows: frame (b, t) takes row b of the t tables, or of the t0 tables when
 * x_mask[b, t] is 0.  Selecting the rows up front is exactly upstream's per-frame torch.where of
 * the modulated/gated tensors, since the modulation is affine per frame. */
static void
build_frame_tables (Run *r)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  const guint8 *xm = r->in->x_mask;
  for (int64_t b = 0; b < r->B; b++)
    for (int64_t t = 0; t < r->T; t++) {
      gboolean zero = r->has_x_mask && xm[b * r->T + t] == 0;
      int64_t f = b * r->T + t;
      be->copy (be, w->mod_spc, f * 6 * r->C, zero ? r->t0_mlp : r->t_mlp, b * 6 * r->C, 6 * r->C);
      if (r->cfg->version == KIN_STDIT_V2)
        be->copy (be, w->mod_tmp, f * 3 * r->C, zero ? r->t0_tmp_mlp : r->t_tmp_mlp,
                  b * 3 * r->C, 3 * r->C);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Blocks */

/* Self-attention over @batch sequences of @len tokens held in @x [batch·len, C] (rows in sequence
 * order); result (after proj) in @out [batch·len, C]. */
static void
self_attention (Run *r, const KinStditSelfAttn *sa, KinTensor *out, const KinTensor *x,
                int64_t batch, int64_t len, gboolean rope)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  int64_t rows = batch * len, c = r->C;
  linear (r, w->qkv, x, &sa->qkv, rows);                /* qkv [rows, 3C] */
  const KinTensor *q = w->qkv, *k = w->qkv, *v = w->qkv;
  int64_t q_off = 0, k_off = c, v_off = 2 * c, stride = 3 * c;
  if (r->cfg->qk_norm) {
    /* split into [3, rows, C] so that q and k are runs of [rows·heads, hd] for the RMSNorm */
    int64_t dims[3] = { rows, 3, c };
    int perm[3] = { 1, 0, 2 };
    be->permute (be, w->qkv_split, w->qkv, 3, dims, perm);
    q = k = v = w->qkv_split;
    q_off = 0;
    k_off = rows * c;
    v_off = 2 * rows * c;
    stride = c;
  }
  if (rope) {
    /* quirk 6: rotary embedding first, then the q/k RMSNorm */
    be->rope (be, (KinTensor *) q, q_off, stride, batch, len, r->heads, r->hd,
              w->rope_cos, w->rope_sin);
    be->rope (be, (KinTensor *) k, k_off, stride, batch, len, r->heads, r->hd,
              w->rope_cos, w->rope_sin);
  }
  if (r->cfg->qk_norm) {
    /* normalised q, k go to the (now free) qkv buffer: q at 0, k at rows·C */
    int64_t n = rows * r->heads;
    KinTensor qs = view2 (w->qkv_split, 0, n, r->hd), ks = view2 (w->qkv_split, rows * c, n, r->hd);
    KinTensor qd = view2 (w->qkv, 0, n, r->hd), kd = view2 (w->qkv, rows * c, n, r->hd);
    be->rms_norm (be, &qd, &qs, sa->q_norm, n, r->hd, RMS_EPS);
    be->rms_norm (be, &kd, &ks, sa->k_norm, n, r->hd, RMS_EPS);
    q = k = w->qkv;
  }
  KinAttention desc = {
    .batch = (int) batch, .heads = r->heads, .lq = (int) len, .lk = (int) len,
    .head_dim = r->hd, .q_offset = q_off, .k_offset = k_off, .v_offset = v_off,
    .out_offset = 0, .q_stride = stride, .kv_stride = stride, .out_stride = c,
    .scale = 1.0f / sqrtf ((float) r->hd), .kv_lens = NULL, .bias = NULL,
  };
  be->attention (be, w->att, q, k, v, &desc);
  linear (r, out, w->att, &sa->proj, rows);
}

/* xn = LN(x)·(1 + scale) + shift with per-frame rows of @table (shift at column @shift_col,
 * scale at @shift_col + C, @width columns per row). */
static void
norm_modulate (Run *r, KinTensor *out, const KinTensor *x, const KinTensor *table,
               int64_t shift_col, int64_t width)
{
  KinBackend *be = r->be;
  be->layer_norm (be, out, x, NULL, NULL, r->M, r->C, LN_EPS);
  be->modulate (be, out, out, table, shift_col, table, shift_col + r->C, width,
                r->B * r->T, r->S, r->C);
}

/* x [B, T, S, C] ↔ [B, S, T, C] */
static void
regroup (Run *r, KinTensor *dst, const KinTensor *src, gboolean to_temporal)
{
  int64_t dims[4] = { r->B, to_temporal ? r->T : r->S, to_temporal ? r->S : r->T, r->C };
  int perm[4] = { 0, 2, 1, 3 };
  r->be->permute (r->be, dst, src, 4, dims, perm);
}

static void
spatial_branch (Run *r, const KinStditBlock *blk)
{
  KinStditWork *w = r->w;
  int64_t c6 = 6 * r->C;
  norm_modulate (r, w->xn, w->x, w->blk_spc, 0, c6);             /* shift_msa, scale_msa */
  self_attention (r, &blk->attn, w->h, w->xn, r->B * r->T, r->S, FALSE);
  r->be->gate_add (r->be, w->x, w->h, w->blk_spc, 2 * r->C, c6, r->B * r->T, r->S, r->C);
}

static void
temporal_branch (Run *r, const KinStditBlock *blk, int index)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  gboolean v2 = r->cfg->version == KIN_STDIT_V2;
  if (v2) {
    norm_modulate (r, w->xn, w->x, w->blk_tmp, 0, 3 * r->C);    /* shift_tmp, scale_tmp */
    regroup (r, w->xp, w->xn, TRUE);
  } else {
    /* quirk 1: the raw residual, plus the temporal table in block 0 only */
    regroup (r, w->xp, w->x, TRUE);
    if (index == 0)
      be->add (be, w->xp, w->xp, w->tpe);                         /* [T, C] per position */
  }
  self_attention (r, &blk->attn_temp, w->xn, w->xp, r->B * r->S, r->T, v2);
  regroup (r, w->h, w->xn, FALSE);
  if (v2)
    be->gate_add (be, w->x, w->h, w->blk_tmp, 2 * r->C, 3 * r->C, r->B * r->T, r->S, r->C);
  else  /* quirk 1: gated by gate_msa */
    be->gate_add (be, w->x, w->h, w->blk_spc, 2 * r->C, 6 * r->C, r->B * r->T, r->S, r->C);
}

/* x += proj(attn(q_linear(x), kv_linear(y))), sample b's queries over its y_lens[b] tokens; no
 * norm, modulation or gate. */
static void
cross_branch (Run *r, const KinStditBlock *blk)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  int64_t c = r->C;
  linear (r, w->xn, w->x, &blk->cross_q_linear, r->M);              /* q [M, C] */
  linear (r, w->kv, w->y_pad, &blk->cross_kv_linear, r->B * r->L);  /* [k | v] [B·L, 2C] */
  KinAttention desc = {
    .batch = (int) r->B, .heads = r->heads, .lq = (int) r->N, .lk = (int) r->L,
    .head_dim = r->hd, .q_offset = 0, .k_offset = 0, .v_offset = c, .out_offset = 0,
    .q_stride = c, .kv_stride = 2 * c, .out_stride = c,
    .scale = 1.0f / sqrtf ((float) r->hd), .kv_lens = r->y_lens, .bias = NULL,
  };
  be->attention (be, w->att, w->xn, w->kv, w->kv, &desc);
  linear (r, w->h, w->att, &blk->cross_proj, r->M);
  be->add (be, w->x, w->x, w->h);
}

static void
mlp_branch (Run *r, const KinStditBlock *blk)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  int64_t c = r->C, hidden = r->cfg->mlp_hidden;
  norm_modulate (r, w->xn, w->x, w->blk_spc, 3 * c, 6 * c);      /* shift_mlp, scale_mlp */
  for (int64_t row = 0; row < r->M; row += MLP_CHUNK_ROWS) {
    int64_t n = MIN (MLP_CHUNK_ROWS, r->M - row);
    KinTensor xin = view2 (w->xn, row * c, n, c);
    KinTensor hid = view2 (w->hid, 0, n, hidden);
    KinTensor out = view2 (w->h, row * c, n, c);
    linear (r, &hid, &xin, &blk->mlp_fc1, n);
    be->gelu_tanh (be, &hid, &hid);
    linear (r, &out, &hid, &blk->mlp_fc2, n);
  }
  be->gate_add (be, w->x, w->h, w->blk_spc, 5 * c, 6 * c, r->B * r->T, r->S, c);
}

static void
block_forward (Run *r, int index)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  const KinStditBlock *blk = &r->m->blocks[index];
  /* (shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp) per frame */
  be->add (be, w->blk_spc, w->mod_spc, blk->scale_shift_table);
  if (r->cfg->version == KIN_STDIT_V2)
    be->add (be, w->blk_tmp, w->mod_tmp, blk->scale_shift_table_temporal);
  spatial_branch (r, blk);
  temporal_branch (r, blk, index);
  cross_branch (r, blk);
  mlp_branch (r, blk);
}

/* ---------------------------------------------------------------------------------------------
 * Final layer and unpatchify */

/* [shift | scale] = final scale_shift_table + [v | v] for each sample. */
static void
final_table (Run *r, KinTensor *table, const KinTensor *v)
{
  for (int64_t b = 0; b < r->B; b++) {
    r->be->copy (r->be, table, b * 2 * r->C, v, b * r->C, r->C);
    r->be->copy (r->be, table, b * 2 * r->C + r->C, v, b * r->C, r->C);
  }
  r->be->add (r->be, table, table, r->m->final_scale_shift_table);
}

static void
final_layer (Run *r)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  int64_t c = r->C;
  final_table (r, w->fin, r->t);                     /* quirk 2: the plain t */
  be->layer_norm (be, w->xn, w->x, NULL, NULL, r->M, c, LN_EPS);
  be->modulate (be, w->xn, w->xn, w->fin, 0, w->fin, c, 2 * c, r->B, r->N, c);
  if (r->has_x_mask) {
    /* quirk 7: masked frames take LN of the already modulated x, with t0 + data_info */
    final_table (r, w->fin0, r->t0_spc);
    be->layer_norm (be, w->h, w->xn, NULL, NULL, r->M, c, LN_EPS);
    be->modulate (be, w->h, w->h, w->fin0, 0, w->fin0, c, 2 * c, r->B, r->N, c);
    for (int64_t f = 0; f < r->B * r->T; f++)
      if (r->in->x_mask[f] == 0)
        be->copy (be, w->xn, f * r->S * c, w->h, f * r->S * c, r->S * c);
  }
  linear (r, w->tok_out, w->xn, &r->m->final_linear, r->M);
  hook2 (r, "final_layer.out", w->tok_out, r->M, w->tok_out->shape[1]);
}

/* Token outputs are ordered (ph, pw, Cout) with Cout fastest; out is [B, Cout, T, H, W]. */
static void
unpatchify (Run *r, KinTensor *out)
{
  KinBackend *be = r->be;
  KinStditWork *w = r->w;
  int64_t p = r->p, hpp = r->Hp * p, wpp = r->Wp * p, po = p * p * r->Cout;
  int64_t per_out = r->Cout * r->T * r->H * r->W;
  gboolean crop = w->unpatch != NULL;
  for (int64_t b = 0; b < r->B; b++) {
    KinTensor src = view2 (w->tok_out, b * r->N * po, r->N, po);
    KinTensor dst = crop ? view2 (w->unpatch, 0, r->Cout * r->T, hpp * wpp)
                         : view2 (out, b * per_out, r->Cout * r->T, r->H * r->W);
    /* [T, Hp, Wp, p, p, Cout] → [Cout, T, Hp, p, Wp, p] */
    int64_t dims[6] = { r->T, r->Hp, r->Wp, p, p, r->Cout };
    int perm[6] = { 5, 0, 1, 3, 2, 4 };
    be->permute (be, &dst, &src, 6, dims, perm);
    if (!crop)
      continue;
    /* quirk 13: drop the padded last row/column */
    for (int64_t ct = 0; ct < r->Cout * r->T; ct++) {
      int64_t o = b * per_out + ct * r->H * r->W;
      if (wpp == r->W)
        be->copy (be, out, o, w->unpatch, ct * hpp * wpp, r->H * r->W);
      else
        for (int64_t h = 0; h < r->H; h++)
          be->copy (be, out, o + h * r->W, w->unpatch, (ct * hpp + h) * wpp, r->W);
    }
  }
  KinTensor whole = view2 (out, 0, r->B * r->Cout, r->T * r->H * r->W);
  hook (r, "out", -1, &whole);
}

/* ---------------------------------------------------------------------------------------------
 * Entry point */

static gboolean
bad_input (GError **error, const char *what)
{
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "STDiT forward: %s", what);
  return FALSE;
}

static gboolean
check_input (Run *r, KinTensor *out, GError **error)
{
  const KinStditInput *in = r->in;
  const KinStditConfig *cfg = r->cfg;
  const KinTensor *x = in->x, *y = in->y;
  if (x == NULL || y == NULL || in->timestep == NULL || out == NULL)
    return bad_input (error, "x, y, timestep and out are required");
  if (x->ndim != 5 || x->dtype != KIN_DTYPE_F32 || x->shape[1] != cfg->in_channels)
    return bad_input (error, "x must be F32 [B, in_channels, T, H, W]");
  r->B = x->shape[0];
  r->Cin = x->shape[1];
  r->T = x->shape[2];
  r->H = x->shape[3];
  r->W = x->shape[4];
  if (r->B <= 0 || r->T <= 0 || r->H <= 0 || r->W <= 0)
    return bad_input (error, "x has an empty dimension");
  if ((y->ndim != 3 && y->ndim != 4) || (y->ndim == 4 && y->shape[1] != 1) ||
      y->shape[0] != r->B || y->shape[y->ndim - 1] != cfg->caption_channels ||
      y->dtype != KIN_DTYPE_F32)
    return bad_input (error, "y must be F32 [B, L, caption_channels] or [B, 1, L, caption_channels]");
  r->L = y->shape[y->ndim - 2];
  r->mask_rows = in->mask_rows > 0 ? in->mask_rows : (int) r->B;
  r->cond_rows = in->cond_rows > 0 ? in->cond_rows : (int) r->B;
  if (r->L <= 0 || r->B % r->mask_rows != 0 || r->B % r->cond_rows != 0)
    return bad_input (error, "mask_rows / cond_rows must divide the batch");
  if (cfg->version == KIN_STDIT_V2 &&
      (!in->height || !in->width || !in->num_frames || !in->ar || !in->fps))
    return bad_input (error, "STDiT2 needs height, width, num_frames, ar and fps");
  if (cfg->version == KIN_STDIT_V1 && in->x_mask != NULL)
    return bad_input (error, "x_mask is an STDiT2 (v1.1) input");
  r->p = cfg->patch_size[1];
  r->Hp = (r->H + r->p - 1) / r->p;
  r->Wp = (r->W + r->p - 1) / r->p;
  r->S = r->Hp * r->Wp;
  r->N = r->T * r->S;
  r->M = r->B * r->N;
  r->C = cfg->hidden_size;
  r->Cout = cfg->out_channels;
  r->heads = cfg->num_heads;
  r->hd = (int) (r->C / r->heads);
  r->has_x_mask = in->x_mask != NULL;
  if (out->dtype != KIN_DTYPE_F32 || kin_tensor_numel (out) != r->B * r->Cout * r->T * r->H * r->W)
    return bad_input (error, "out must be F32 [B, out_channels, T, H, W]");
  if (r->M > G_MAXINT || r->B * r->S > G_MAXINT)
    return bad_input (error, "the input is too large");
  return TRUE;
}

/* The device work from the embedded x (w->x) to the final layer's tokens (w->tok_out).  Nothing
 * in here uploads, downloads or looks at device data on the host (with hooks off), so it can be
 * captured into a graph: its host-side decisions depend only on what graph_key() records. */
static void
body (Run *r)
{
  embed_conditions (r);
  if (r->error == NULL)
    embed_captions (r);
  hook_captions (r);
  if (r->error != NULL)
    return;
  build_frame_tables (r);
  for (int i = 0; i < r->cfg->depth && !kin_backend_failed (r->be); i++) {
    block_forward (r, i);
    g_autofree char *name = g_strdup_printf ("block.%d.out", i);
    KinTensor v = view2 (r->w->x, 0, r->M, r->C);
    hook (r, name, i, &v);
  }
  final_layer (r);
}

/* What body()'s work depends on besides the contents of device memory: the work buffers and the
 * sizes, the caption tensor's address, each sample's caption mask and the x_mask.  (Replacing the
 * work buffers also drops the graph: work_prepare.) */
static GByteArray *
graph_key (Run *r)
{
  GByteArray *k = g_byte_array_new ();
  const void *ptrs[2] = { r->w, r->in->y->data };
  const int64_t sizes[5] = { r->B, r->T, r->H, r->W, r->L };
  g_byte_array_append (k, (const guint8 *) ptrs, sizeof ptrs);
  g_byte_array_append (k, (const guint8 *) sizes, sizeof sizes);
  g_autofree int32_t *row = g_new (int32_t, r->L);
  for (int64_t b = 0; b < r->B; b++) {
    const int32_t *mask = r->in->mask ? r->in->mask + (b % r->mask_rows) * r->L : NULL;
    for (int64_t l = 0; l < r->L; l++)
      row[l] = mask == NULL || mask[l] != 0;
    g_byte_array_append (k, (const guint8 *) row, r->L * sizeof (int32_t));
  }
  guint8 xm = r->has_x_mask;
  g_byte_array_append (k, &xm, 1);
  if (r->has_x_mask)
    g_byte_array_append (k, r->in->x_mask, r->B * r->T);
  return k;
}

/* Runs body() eagerly, or through the model's graph (kin_stdit_set_graphs): the first call with a
 * new key runs eagerly, the second is captured and launched, later ones are replays. */
static void
run_body (Run *r)
{
  KinStditGraphs *gs = &r->m->graphs;
  KinBackend *be = r->be;
  if (!gs->on || gs->failed || r->in->hook != NULL || !kin_backend_has_graphs (be) ||
      kin_backend_failed (be)) {
    body (r);
    return;
  }
  g_autoptr (GByteArray) key = graph_key (r);
  gboolean same = gs->key != NULL && gs->key->len == key->len &&
                  memcmp (gs->key->data, key->data, key->len) == 0;
  if (same && gs->graph != NULL) {
    be->graph_launch (be, gs->graph);
    gs->replays++;
    return;
  }
  if (gs->graph != NULL) {  /* another shape or layout: the old graph never runs again */
    be->graph_free (be, gs->graph);
    gs->graph = NULL;
  }
  if (!same) {  /* eager first: buffers and tables are made, caches warm */
    g_clear_pointer (&gs->key, g_byte_array_unref);
    gs->key = g_steal_pointer (&key);
    body (r);
    return;
  }
  if (be->graph_begin (be)) {
    body (r);  /* recorded, not run */
    gpointer g = be->graph_end (be);
    if (g != NULL && r->error == NULL) {
      gs->graph = g;
      gs->captures++;
      be->graph_launch (be, g);
      gs->replays++;
      return;
    }
    if (g != NULL)
      be->graph_free (be, g);
  }
  /* Something in the body was not capture-safe (or memory ran out inside the capture): nothing
   * of it ran, so run it eagerly and stay eager. */
  g_autoptr (GError) why = NULL;
  kin_backend_take_error (be, &why);
  g_warning ("STDiT: graph capture failed (%s); running without graphs",
             why ? why->message : r->error ? r->error->message : "unknown reason");
  g_clear_error (&r->error);
  gs->failed = TRUE;
  body (r);
}

static gboolean
forward (Run *r, KinTensor *out, GError **error)
{
  if (!check_input (r, out, error) || !work_prepare (r, error) || !prepare_pos (r, error))
    return FALSE;
  if (r->cfg->version == KIN_STDIT_V1) {
    hook2 (r, "pos_embed", r->w->pos, r->S, r->C);
    hook2 (r, "pos_embed_temporal", r->w->tpe, r->T, r->C);
  } else {
    hook2 (r, "pos_emb", r->w->pos, r->S, r->C);
  }
  r->y_lens = g_new0 (int32_t, r->B);
  if (!caption_lens (r, error))
    return FALSE;
  /* the call's inputs into persistent buffers: features uploaded, x through the patch embedding */
  upload_features (r);
  embed_x (r);
  run_body (r);
  if (r->error != NULL) {
    g_propagate_error (error, g_steal_pointer (&r->error));
    return FALSE;
  }
  unpatchify (r, out);
  return kin_backend_take_error (r->be, error);
}

gboolean
kin_stdit_forward (KinStdit *m, const KinStditInput *in, KinTensor *out, GError **error)
{
  g_return_val_if_fail (m != NULL && in != NULL, FALSE);
  Run r = { .m = m, .be = m->be, .cfg = &m->cfg, .in = in };
  r.temps = g_ptr_array_new_with_free_func ((GDestroyNotify) kin_tensor_free);
  gboolean ok = forward (&r, out, error);
  if (r.error != NULL) {
    if (ok)
      g_propagate_error (error, r.error);
    else
      g_error_free (r.error);
    ok = FALSE;
  }
  g_ptr_array_unref (r.temps);
  g_free (r.y_lens);
  return ok;
}

void
kin_stdit_graphs_clear (KinStdit *m)
{
  if (m->graphs.graph != NULL)
    m->be->graph_free (m->be, m->graphs.graph);
  m->graphs.graph = NULL;
  g_clear_pointer (&m->graphs.key, g_byte_array_unref);
}

void
kin_stdit_set_graphs (KinStdit *m, gboolean on)
{
  g_return_if_fail (m != NULL);
  kin_stdit_graphs_clear (m);
  m->graphs.on = on;
  m->graphs.failed = FALSE;
}

guint
kin_stdit_graph_replays (KinStdit *m)
{
  return m->graphs.replays;
}

guint
kin_stdit_graph_captures (KinStdit *m)
{
  return m->graphs.captures;
}
