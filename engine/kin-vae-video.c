/* kin-vae-video.c — the SD VAE as Open-Sora's VideoAutoencoderKL uses it: [B, C, T, H, W] video
 * folded to frames in (b, t) order, micro-batches, the posterior sample (mean + std·ε with ε from
 * the caller) × scaling_factor, decoding with optional tiling, 8-bit RGB as upstream saves it;
 * and the decoder's sizes for benches.  Only the public kin-vae.h API is used here; the model
 * itself is in kin-vae.c. */
#include "kin-vae.h"
#include "kin-error.h"
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------------------------ */
/* Posterior and RGB                                                                          */
/* ------------------------------------------------------------------------------------------ */

static inline float
clamp_logvar (float lv)
{
  return lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
}

void
kin_vae_posterior_split (const float *moments, int64_t n, int latent, int64_t hw, float *mean,
                         float *logvar, float *std)
{
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < latent; c++)
      for (int64_t p = 0; p < hw; p++) {
        int64_t o = (i * latent + c) * hw + p;
        float lv = clamp_logvar (moments[(i * 2 * latent + latent + c) * hw + p]);
        if (mean)
          mean[o] = moments[(i * 2 * latent + c) * hw + p];
        if (logvar)
          logvar[o] = lv;
        if (std)
          std[o] = expf (0.5f * lv);
      }
}

void
kin_vae_posterior (const float *moments, int64_t n, int latent, int64_t hw, const float *noise,
                   float scale, float *out)
{
  for (int64_t i = 0; i < n; i++)
    for (int64_t c = 0; c < latent; c++)
      for (int64_t p = 0; p < hw; p++) {
        int64_t o = (i * latent + c) * hw + p;
        float v = moments[(i * 2 * latent + c) * hw + p];
        if (noise != NULL) {
          float sd = expf (0.5f * clamp_logvar (moments[(i * 2 * latent + latent + c) * hw + p]));
          v = v + sd * noise[o];
        }
        out[o] = v * scale;
      }
}

void
kin_vae_video_to_rgb8 (const float *video, int64_t b, int64_t t, int64_t h, int64_t w, guint8 *rgb)
{
  int64_t hw = h * w;
  for (int64_t bi = 0; bi < b; bi++)
    for (int64_t ti = 0; ti < t; ti++)
      for (int64_t p = 0; p < hw; p++)
        for (int c = 0; c < 3; c++) {
          float x = video[((bi * 3 + c) * t + ti) * hw + p];
          x = isnan (x) ? -1.0f : x < -1.0f ? -1.0f : x > 1.0f ? 1.0f : x;
          float v = (x + 1.0f) / 2.0f * 255.0f + 0.5f;
          v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
          rgb[((bi * t + ti) * hw + p) * 3 + c] = (guint8) v;
        }
}

/* ------------------------------------------------------------------------------------------ */
/* Video                                                                                      */
/* ------------------------------------------------------------------------------------------ */

static gboolean
check_video (KinVae *vae, const KinTensor *v, int channels, const char *what, GError **error)
{
  KinBackend *be = kin_vae_get_backend (vae);
  if (v == NULL || v->dtype != KIN_DTYPE_F32 || v->ndim != 5 || v->backend != be ||
      v->shape[1] != channels || v->shape[0] < 1 || v->shape[2] < 1) {
    g_autofree char *s = v ? kin_shape_to_string (v->ndim, v->shape) : g_strdup ("(none)");
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "VAE: %s must be an F32 tensor [B, %d, T, H, W] on the %s backend, got %s",
                 what, channels, be->name, s);
    return FALSE;
  }
  return TRUE;
}

/* [B, C, T, H, W] → [(B·T), C, H, W] in (b, t) order, or back with @to_video. */
static KinTensor *
fold_frames (KinBackend *be, const KinTensor *x, int64_t B, int64_t T, gboolean to_video,
             GError **error)
{
  static const int perm[4] = { 0, 2, 1, 3 };
  int64_t C = x->shape[1], hgt = x->shape[x->ndim - 2], wid = x->shape[x->ndim - 1], HW = hgt * wid;
  KinTensor *y;
  if (to_video) {           /* x [(B·T), C, H, W] seen as [B, T, C, HW] */
    int64_t dims[4] = { B, T, C, HW }, shape[5] = { B, C, T, hgt, wid };
    y = kin_tensor_new (be, KIN_DTYPE_F32, 5, shape, error);
    if (y != NULL)
      be->permute (be, y, x, 4, dims, perm);
  } else {                  /* x [B, C, T, H, W] seen as [B, C, T, HW] */
    int64_t dims[4] = { B, C, T, HW }, shape[4] = { B * T, C, hgt, wid };
    y = kin_tensor_new (be, KIN_DTYPE_F32, 4, shape, error);
    if (y != NULL)
      be->permute (be, y, x, 4, dims, perm);
  }
  if (y != NULL && !kin_backend_take_error (be, error))
    g_clear_pointer (&y, kin_tensor_free);
  return y;
}

KinTensor *
kin_vae_encode_video (KinVae *vae, const KinTensor *video, const KinVaeEncodeOptions *opts,
                      GError **error)
{
  const KinVaeConfig *cfg = kin_vae_get_config (vae);
  KinBackend *be = kin_vae_get_backend (vae);
  KinVaeEncodeOptions defaults = { .use_mean = TRUE };
  opts = opts ? opts : &defaults;
  if (!check_video (vae, video, cfg->in_channels, "video", error))
    return NULL;
  if (!opts->use_mean && opts->noise == NULL && opts->noise_func == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "VAE: sampling the posterior needs noise (an array or a generator), or use_mean");
    return NULL;
  }
  int64_t B = video->shape[0], T = video->shape[2], NF = B * T;
  int f = kin_vae_config_factor (cfg), L = cfg->latent_channels;
  int64_t H = video->shape[3], W = video->shape[4], hw = (H / f) * (W / f);
  g_autoptr (KinTensor) frames = fold_frames (be, video, B, T, FALSE, error);   /* [B·T, C, H, W] */
  if (frames == NULL)
    return NULL;
  int64_t mb = opts->micro_batch > 0 ? opts->micro_batch : NF;
  g_autofree float *lat = g_try_new (float, (gsize) (NF * L * hw));
  g_autofree float *noise_buf = NULL;
  if (lat == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "VAE: out of memory");
    return NULL;
  }
  for (int64_t f0 = 0; f0 < NF; f0 += mb) {
    int64_t nf = MIN (mb, NF - f0);
    int64_t vshape[4] = { nf, frames->shape[1], H, W };
    g_autoptr (KinTensor) chunk = kin_tensor_view (frames, (size_t) (f0 * frames->shape[1] * H * W), 4, vshape);
    g_autoptr (KinTensor) moments = kin_vae_encode_moments (vae, chunk, error);     /* [nf, 2L, h, w] */
    if (moments == NULL)
      return NULL;
    g_autofree float *m = kin_tensor_to_host_f32 (moments);
    const float *eps = NULL;
    if (!opts->use_mean && opts->noise != NULL) {
      eps = opts->noise + f0 * L * hw;
    } else if (!opts->use_mean) {
      g_free (noise_buf);
      noise_buf = g_new (float, nf * L * hw);
      opts->noise_func (noise_buf, (size_t) (nf * L * hw), opts->noise_data);
      eps = noise_buf;
    }
    kin_vae_posterior (m, nf, L, hw, eps, cfg->scaling_factor, lat + f0 * L * hw);
  }
  int64_t lshape[4] = { NF, L, H / f, W / f };
  g_autoptr (KinTensor) z = kin_tensor_from_host_f32 (be, lat, 4, lshape, error);
  if (z == NULL)
    return NULL;
  return fold_frames (be, z, B, T, TRUE, error);                              /* [B, L, T, h, w] */
}

KinTensor *
kin_vae_decode_video (KinVae *vae, const KinTensor *latents, const KinVaeDecodeOptions *opts,
                      GError **error)
{
  const KinVaeConfig *cfg = kin_vae_get_config (vae);
  KinBackend *be = kin_vae_get_backend (vae);
  KinVaeDecodeOptions defaults = { 0 };
  opts = opts ? opts : &defaults;
  if (!check_video (vae, latents, cfg->latent_channels, "latents", error))
    return NULL;
  int64_t B = latents->shape[0], T = latents->shape[2], NF = B * T;
  int64_t h = latents->shape[3], w = latents->shape[4], f = kin_vae_config_factor (cfg);
  int64_t C = cfg->out_channels, H = h * f, W = w * f;
  g_autoptr (KinTensor) z = fold_frames (be, latents, B, T, FALSE, error);     /* [B·T, L, h, w] */
  if (z == NULL)
    return NULL;
  be->scale (be, z, z, 1.0f / cfg->scaling_factor, 0.0f);
  int64_t threshold = opts->tile_threshold > 0 ? opts->tile_threshold : 64 * 64;
  gboolean tiled = opts->tiling_mode == KIN_VAE_TILING_ON ||
                   (opts->tiling_mode == KIN_VAE_TILING_AUTO && h * w > threshold);
  int64_t oshape[4] = { NF, C, H, W };
  g_autoptr (KinTensor) out = kin_tensor_new (be, KIN_DTYPE_F32, 4, oshape, error);
  if (out == NULL)
    return NULL;
  int64_t mb = opts->micro_batch > 0 ? opts->micro_batch : NF;
  for (int64_t f0 = 0; f0 < NF; f0 += mb) {
    int64_t nf = MIN (mb, NF - f0);
    int64_t vshape[4] = { nf, cfg->latent_channels, h, w };
    g_autoptr (KinTensor) chunk = kin_tensor_view (z, (size_t) (f0 * cfg->latent_channels * h * w), 4, vshape);
    g_autoptr (KinTensor) dec = tiled ? kin_vae_decode_frames_tiled (vae, chunk, &opts->tiling, error)
                                      : kin_vae_decode_frames (vae, chunk, error);
    if (dec == NULL)
      return NULL;
    be->copy (be, out, f0 * C * H * W, dec, 0, kin_tensor_numel (dec));
  }
  if (!kin_backend_take_error (be, error))
    return NULL;
  return fold_frames (be, out, B, T, TRUE, error);                            /* [B, C, T, H, W] */
}

/* ------------------------------------------------------------------------------------------ */
/* Sizes                                                                                      */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
  KinConv2d *out;
  int max, count;
  double flops;
} ConvList;

static void
list_conv (ConvList *cl, int n, int cin, int cout, int k, int h, int w)
{
  KinConv2d d = { .n = n, .cin = cin, .h = h, .w = w, .cout = cout, .kh = k, .kw = k, .stride = 1,
                  .pad_t = k / 2, .pad_b = k / 2, .pad_l = k / 2, .pad_r = k / 2 };
  if (cl->count < cl->max)
    cl->out[cl->count] = d;
  cl->count++;
  cl->flops += 2.0 * n * cout * (double) h * w * cin * k * k;
}

static void
list_resnet (ConvList *cl, int n, int cin, int cout, int h, int w)
{
  list_conv (cl, n, cin, cout, 3, h, w);
  list_conv (cl, n, cout, cout, 3, h, w);
  if (cin != cout)
    list_conv (cl, n, cin, cout, 1, h, w);
}

/* Decoder pieces for an h×w latent: the trunk (post_quant_conv, conv_in, mid block) when
 * @trunk, up blocks [@first, @last) at their own resolution, and the output layers when @out. */
static void
list_decoder (const KinVaeConfig *cfg, int n, int h, int w, gboolean trunk, int first, int last,
              gboolean out, ConvList *cl)
{
  const int *boc = cfg->block_out_channels;
  int nb = cfg->n_blocks, c = boc[nb - 1];
  if (trunk) {
    if (cfg->use_post_quant_conv)
      list_conv (cl, n, cfg->latent_channels, cfg->latent_channels, 1, h, w);
    list_conv (cl, n, cfg->latent_channels, c, 3, h, w);
    list_resnet (cl, n, c, c, h, w);
    if (cfg->mid_block_add_attention) {
      double hw = (double) h * w;
      cl->flops += n * (4 * 2.0 * hw * c * c + 2 * 2.0 * hw * hw * c);
    }
    list_resnet (cl, n, c, c, h, w);
  }
  for (int i = 0; i < nb; i++) {
    int cout = boc[nb - 1 - i];
    for (int j = 0; j < cfg->layers_per_block + 1; j++) {
      if (i >= first && i < last)
        list_resnet (cl, n, c, cout, h, w);
      c = cout;
    }
    if (i < nb - 1) {
      h *= 2;
      w *= 2;
      if (i >= first && i < last)
        list_conv (cl, n, c, c, 3, h, w);
    }
  }
  if (out)
    list_conv (cl, n, boc[0], cfg->out_channels, 3, h, w);
}

int
kin_vae_decoder_convs (const KinVaeConfig *cfg, int n, int h, int w, KinConv2d *out, int max)
{
  ConvList cl = { out, out ? max : 0, 0, 0 };
  list_decoder (cfg, n, h, w, TRUE, 0, cfg->n_blocks, TRUE, &cl);
  return cl.count;
}

double
kin_vae_decoder_flops (const KinVaeConfig *cfg, int n, int h, int w)
{
  ConvList cl = { NULL, 0, 0, 0 };
  list_decoder (cfg, n, h, w, TRUE, 0, cfg->n_blocks, TRUE, &cl);
  return cl.flops;
}

double
kin_vae_decoder_tiled_flops (const KinVaeConfig *cfg, int n, int h, int w, const KinVaeTiling *tiling)
{
  KinVaeTilePlan plan;
  if (!kin_vae_tile_plan (cfg, n, h, w, tiling, &plan))
    return kin_vae_decoder_flops (cfg, n, h, w);
  int k = plan.untiled_stages, tiles = plan.tiles_y * plan.tiles_x;
  ConvList once = { NULL, 0, 0, 0 }, per_tile = { NULL, 0, 0, 0 };
  if (k >= 0)
    list_decoder (cfg, n, h, w, TRUE, 0, k, FALSE, &once);
  list_decoder (cfg, n, plan.tile_h, plan.tile_w, k < 0, MAX (k, 0), cfg->n_blocks, TRUE, &per_tile);
  return once.flops + tiles * per_tile.flops;
}
