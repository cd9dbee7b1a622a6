/* kin-pipeline.c — text → video (see kin-pipeline.h). */
#include "kin-config.h"
#include "kin-pipeline.h"
#include "kin-buckets.h"
#include "kin-caption.h"
#include "kin-dpm-solver.h"
#include "kin-error.h"
#include "kin-iddpm.h"
#include "kin-noise.h"
#include "kin-stdit.h"
#include "kin-t5.h"
#include "kin-tokenizer.h"
#include "kin-vae.h"
#include <math.h>
#include <string.h>

struct _KinPipeline {
  KinBackend *be;
  KinMemoryMode mode;
  KinModelPaths paths;
  KinTokenizer *tok;
  KinT5 *t5;                 /* NULL after release in low-memory mode (reloaded on demand) */
  KinStdit *dit;
  KinVae *vae;
  int factor;                /* VAE down-sampling */
  gboolean graphs;           /* replay the denoising step as a graph where the backend can */
};

/* A device out-of-memory error says what to do about it (once). */
static void
oom_hint (GError **error)
{
  if (error == NULL || *error == NULL || !g_error_matches (*error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY) ||
      strstr ((*error)->message, KIN_BACKEND_OOM_HINT) != NULL)
    return;
  GError *e = g_error_new (KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_OUT_OF_MEMORY, "%s; %s", (*error)->message,
                           KIN_BACKEND_OOM_HINT);
  g_clear_error (error);
  g_propagate_error (error, e);
}

/* --- model paths --- */

void
kin_model_paths_clear (KinModelPaths *paths)
{
  g_clear_pointer (&paths->transformer, g_free);
  g_clear_pointer (&paths->text_encoder, g_free);
  g_clear_pointer (&paths->vae, g_free);
}

static gboolean
pack_complete (const char *dir)
{
  const char *parts[] = { "transformer", "text_encoder", "vae" };
  for (guint i = 0; i < G_N_ELEMENTS (parts); i++) {
    g_autofree char *p = g_build_filename (dir, parts[i], "config.json", NULL);
    if (!g_file_test (p, G_FILE_TEST_IS_REGULAR))
      return FALSE;
  }
  return TRUE;
}

gboolean
kin_pipeline_default_paths (KinModelPaths *paths)
{
  const char *env = g_getenv ("KINORA_DEMO_PACK");
  g_autofree char *src = g_build_filename (KIN_SOURCE_DATADIR, "models", "kinora-demo", NULL);
  g_autofree char *inst = g_build_filename (KIN_PKGDATADIR, "models", "kinora-demo", NULL);
  const char *cands[] = { env, src, inst }; /* the source tree first: an uninstalled build never picks up a stale installed pack */
  for (guint i = 0; i < G_N_ELEMENTS (cands); i++) {
    if (cands[i] == NULL || !pack_complete (cands[i]))
      continue;
    paths->transformer = g_build_filename (cands[i], "transformer", NULL);
    paths->text_encoder = g_build_filename (cands[i], "text_encoder", NULL);
    paths->vae = g_build_filename (cands[i], "vae", NULL);
    return TRUE;
  }
  return FALSE;
}

/* --- loading --- */

static KinTokenizer *
load_tokenizer (const char *dir, GError **error)
{
  const char *names[] = { "spiece.model", "tokenizer.json" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *p = g_build_filename (dir, names[i], NULL);
    if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
      return kin_tokenizer_new_from_file (p, error);
  }
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
               "the text encoder folder %s has no spiece.model or tokenizer.json", dir);
  return NULL;
}

static gboolean
load_t5 (KinPipeline *p, GError **error)
{
  if (p->t5 != NULL)
    return TRUE;
  p->t5 = kin_t5_load (p->paths.text_encoder, p->be, error);
  return p->t5 != NULL;
}

KinPipeline *
kin_pipeline_new (const KinModelPaths *paths, KinBackend *be, KinMemoryMode mode, GError **error)
{
  g_autoptr (KinPipeline) p = g_new0 (KinPipeline, 1);
  p->be = be;
  p->mode = mode;
  p->graphs = g_strcmp0 (g_getenv ("KIN_CUDA_GRAPHS"), "0") != 0;
  gboolean have_t = paths && paths->transformer && *paths->transformer;
  gboolean have_e = paths && paths->text_encoder && *paths->text_encoder;
  gboolean have_v = paths && paths->vae && *paths->vae;
  if ((have_t || have_e || have_v) && !(have_t && have_e && have_v)) {
    /* half a configuration would silently run the demo pack instead of the user's model */
    g_autoptr (GString) missing = g_string_new (NULL);
    if (!have_t)
      g_string_append (missing, "the transformer");
    if (!have_e)
      g_string_append_printf (missing, "%sthe text encoder", missing->len ? (have_v ? " and " : ", ") : "");
    if (!have_v)
      g_string_append_printf (missing, "%sthe VAE", missing->len ? " and " : "");
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "a model needs all three folders (transformer, text encoder, VAE); %s %s not set. "
                 "Set the missing %s, or clear all three to use the built-in demo model",
                 missing->str, strstr (missing->str, " and ") ? "are" : "is",
                 strstr (missing->str, " and ") ? "ones" : "one");
    return NULL;
  }
  if (have_t && have_e && have_v) {
    p->paths.transformer = g_strdup (paths->transformer);
    p->paths.text_encoder = g_strdup (paths->text_encoder);
    p->paths.vae = g_strdup (paths->vae);
  } else if (!kin_pipeline_default_paths (&p->paths)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "no model is installed: the demo pack (data/models/kinora-demo) was not found. "
                 "Point Kinora at a model with --transformer DIR --text-encoder DIR --vae DIR "
                 "(Open-Sora STDiT, DeepFloyd t5-v1_1-xxl, sd-vae-ft-ema folders)");
    return NULL;
  }
  const char *which = "transformer";
  g_autoptr (GError) local = NULL;
  if ((p->dit = kin_stdit_open (p->paths.transformer, be, &local)) == NULL)
    goto fail;
  which = "text encoder";
  if ((p->tok = load_tokenizer (p->paths.text_encoder, &local)) == NULL || !load_t5 (p, &local))
    goto fail;
  which = "VAE";
  if ((p->vae = kin_vae_load (be, p->paths.vae, KIN_VAE_BOTH, &local)) == NULL)
    goto fail;
  p->factor = kin_vae_config_factor (kin_vae_get_config (p->vae));
  const KinStditConfig *dc = kin_stdit_get_config (p->dit);
  const KinT5Config *tc = kin_t5_get_config (p->t5);
  if (tc->d_model != dc->caption_channels) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "the text encoder produces %d-wide embeddings but the transformer expects %d: "
                 "these models do not belong together", tc->d_model, dc->caption_channels);
    return NULL;
  }
  if (kin_vae_get_config (p->vae)->latent_channels != dc->in_channels) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "the VAE has %d latent channels but the transformer expects %d",
                 kin_vae_get_config (p->vae)->latent_channels, dc->in_channels);
    return NULL;
  }
  return g_steal_pointer (&p);
fail:
  g_set_error (error, local->domain, local->code, "cannot load the %s: %s", which, local->message);
  oom_hint (error);
  return NULL;
}

void
kin_pipeline_set_graphs (KinPipeline *p, gboolean enable)
{
  p->graphs = enable;
}

void
kin_pipeline_free (KinPipeline *p)
{
  if (p == NULL)
    return;
  g_clear_pointer (&p->tok, kin_tokenizer_free);
  g_clear_pointer (&p->t5, kin_t5_free);
  g_clear_pointer (&p->dit, kin_stdit_free);
  g_clear_pointer (&p->vae, kin_vae_free);
  kin_model_paths_clear (&p->paths);
  g_free (p);
}

int
kin_pipeline_version (KinPipeline *p)
{
  return kin_stdit_get_config (p->dit)->version == KIN_STDIT_V1 ? 1 : 2;
}

int
kin_pipeline_max_text_length (KinPipeline *p)
{
  return kin_stdit_get_config (p->dit)->model_max_length;
}

char *
kin_pipeline_describe (KinPipeline *p)
{
  const KinStditConfig *dc = kin_stdit_get_config (p->dit);
  const KinVaeConfig *vc = kin_vae_get_config (p->vae);
  GString *s = g_string_new (NULL);
  g_string_append_printf (s, "transformer:  %s — %s, depth %d, hidden %d, %d heads, captions of %d tokens\n",
                          p->paths.transformer, dc->version == KIN_STDIT_V1 ? "STDiT (Open-Sora 1.0)" : "STDiT2 (Open-Sora 1.1)",
                          dc->depth, dc->hidden_size, dc->num_heads, dc->model_max_length);
  if (p->t5) {
    const KinT5Config *tc = kin_t5_get_config (p->t5);
    g_string_append_printf (s, "text encoder: %s — T5 encoder, %d layers, d_model %d, vocabulary %u\n",
                            p->paths.text_encoder, tc->num_layers, tc->d_model, kin_tokenizer_get_vocab_size (p->tok));
  } else {
    g_string_append_printf (s, "text encoder: %s — released (loaded again when needed)\n", p->paths.text_encoder);
  }
  g_string_append_printf (s, "vae:          %s — AutoencoderKL, %d blocks (×%d), %d latent channels, scale %.5f",
                          p->paths.vae, vc->n_blocks, p->factor, vc->latent_channels, vc->scaling_factor);
  return g_string_free (s, FALSE);
}

/* --- requests --- */

const char *
kin_sampler_name (KinSamplerKind s)
{
  return s == KIN_SAMPLER_DPM_SOLVER ? "dpm-solver" : "iddpm";
}

gboolean
kin_sampler_from_name (const char *name, KinSamplerKind *out)
{
  if (g_strcmp0 (name, "iddpm") == 0)
    *out = KIN_SAMPLER_IDDPM;
  else if (g_strcmp0 (name, "dpm-solver") == 0 || g_strcmp0 (name, "dpm") == 0 || g_strcmp0 (name, "dpm-solver++") == 0)
    *out = KIN_SAMPLER_DPM_SOLVER;
  else
    return FALSE;
  return TRUE;
}

void
kin_pipeline_request_defaults (KinPipeline *p, KinRequest *req)
{
  if (req->height <= 0 || req->width <= 0) {
    /* the demo model is trained at 64×64; the real ones at 240p 16:9 */
    gboolean small = kin_stdit_get_config (p->dit)->hidden_size < 512;
    req->height = small ? 64 : 240;
    req->width = small ? 64 : 426;
  }
  if (req->frames <= 0)
    req->frames = 16;
  if (req->fps <= 0)
    req->fps = KIN_OUTPUT_FPS;
  if (req->steps <= 0)
    req->steps = req->sampler == KIN_SAMPLER_DPM_SOLVER ? 20 : 100;
  if (req->guidance <= 0)
    req->guidance = 7.0f;
  if (req->seed == 0)
    req->seed = kin_noise_random_seed ();
  if (req->cond_length <= 0)
    req->cond_length = MIN (4, MAX (1, req->frames / 4));
}

gboolean
kin_pipeline_validate (KinPipeline *p, const KinRequest *req, GError **error)
{
  int f = p->factor;
  if (req->height < f || req->width < f || req->height > 4096 || req->width > 4096) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "a %d×%d video is impossible: height and width must be between %d and 4096 pixels",
                 req->width, req->height, f);
    return FALSE;
  }
  if (req->frames < 1 || req->frames > 512) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                 "%d frames is impossible: choose 1 to 512", req->frames);
    return FALSE;
  }
  if (req->steps < 1 || req->steps > 1000) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "%d sampling steps is impossible: choose 1 to 1000", req->steps);
    return FALSE;
  }
  if (!(req->guidance >= 0 && req->guidance <= 50)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "guidance %.2f is out of range (0 to 50)", req->guidance);
    return FALSE;
  }
  if (req->cond != KIN_COND_NONE) {
    if (kin_pipeline_version (p) == 1) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                   "frame conditioning needs an Open-Sora 1.1 (STDiT2) transformer; this is 1.0");
      return FALSE;
    }
    if (req->sampler != KIN_SAMPLER_IDDPM) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                   "frame conditioning works with the IDDPM sampler only");
      return FALSE;
    }
    if (req->cond == KIN_COND_IMAGE && (req->cond_image == NULL || req->cond_image_w <= 0 || req->cond_image_h <= 0)) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "image-to-video needs an image");
      return FALSE;
    }
    if (req->cond != KIN_COND_IMAGE) {
      int need = req->cond == KIN_COND_EDIT ? req->frames : req->cond_length;
      int lh = req->height / f, lw = req->width / f;
      if (req->cond_latents != NULL &&
          (req->cond_latent_channels != kin_stdit_get_config (p->dit)->in_channels ||
           req->cond_latent_h != lh || req->cond_latent_w != lw)) {
        g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                     "the reference clip's latents are %d×%d×%d; this request needs %d×%d×%d "
                     "(the same size as the clip it continues)", req->cond_latent_channels,
                     req->cond_latent_h, req->cond_latent_w, kin_stdit_get_config (p->dit)->in_channels, lh, lw);
        return FALSE;
      }
      if (req->cond_latents == NULL || req->cond_latent_frames < need) {
        g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                     "the reference clip has %d latent frames; %d are needed", req->cond_latent_frames, need);
        return FALSE;
      }
      int min_frames = req->cond == KIN_COND_LOOP ? 2 * req->cond_length + 1 : req->cond_length + 1;
      if (req->cond != KIN_COND_EDIT && req->frames < min_frames) {
        g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT,
                     "a clip of %d frames cannot hold %d conditioning frames and new ones; use at least %d frames",
                     req->frames, req->cond_length * (req->cond == KIN_COND_LOOP ? 2 : 1), min_frames);
        return FALSE;
      }
    }
  }
  return TRUE;
}

/* --- generation --- */

typedef struct {
  KinPipeline *p;
  const KinRequest *req;
  KinTensor *y;          /* [2, L, C_cap]: prompt, null caption */
  KinTensor *xt, *ot;    /* the model's input [2, C, T, h, w] and output [2, 2C, T, h, w] */
  int32_t mask[1 * 4096];
  int L;
  float height, width, num_frames, ar, fps;
  int64_t shape[5];      /* [2, C, T, h, w] */
  KinProgressFunc progress;
  gpointer progress_data;
  int lh, lw, T;
} Gen;

static gboolean
model_call (gpointer user, const float *x, const float *timesteps, const guint8 *x_mask, float *out,
            GError **error)
{
  Gen *g = user;
  KinBackend *be = g->p->be;
  /* made once per job: the same buffers every step */
  if (g->xt == NULL && (g->xt = kin_tensor_new (be, KIN_DTYPE_F32, 5, g->shape, error)) == NULL)
    return FALSE;
  int64_t os[5] = { g->shape[0], 2 * g->shape[1], g->shape[2], g->shape[3], g->shape[4] };
  if (g->ot == NULL && (g->ot = kin_tensor_new (be, KIN_DTYPE_F32, 5, os, error)) == NULL)
    return FALSE;
  be->upload (be, g->xt->data, x, kin_tensor_nbytes (g->xt));
  KinStditInput in = { .x = g->xt, .timestep = timesteps, .y = g->y, .mask = g->mask, .mask_rows = 1,
                       .height = &g->height, .width = &g->width, .num_frames = &g->num_frames,
                       .ar = &g->ar, .fps = &g->fps, .cond_rows = 1, .x_mask = x_mask };
  if (!kin_stdit_forward (g->p->dit, &in, g->ot, error))
    return FALSE;
  be->download (be, out, g->ot->data, kin_tensor_nbytes (g->ot));
  return kin_backend_take_error (be, error);
}

static void
noise_call (gpointer user, float *out, size_t n)
{
  kin_noise_fill (user, out, n);
}

/* Cheap preview: latent → RGB by a fixed 4×3 linear map (the usual SD-latent approximation),
 * at latent resolution.  Good enough to watch a clip take shape. */
static void
latent_preview (const float *x, int C, int T, int h, int w, guint8 *rgb)
{
  static const float m[4][3] = { { 0.298f, 0.207f, 0.208f }, { 0.187f, 0.286f, 0.173f },
                                 { -0.158f, 0.189f, 0.264f }, { -0.184f, -0.271f, -0.473f } };
  size_t frame = (size_t) h * w;
  for (int t = 0; t < T; t++)
    for (size_t j = 0; j < frame; j++)
      for (int k = 0; k < 3; k++) {
        float v = 0;
        for (int c = 0; c < MIN (C, 4); c++)
          v += m[c][k] * x[((size_t) c * T + t) * frame + j];
        v = (v + 1.0f) * 127.5f;
        rgb[((size_t) t * frame + j) * 3 + k] = (guint8) CLAMP (v, 0.0f, 255.0f);
      }
}

static gboolean
on_step (gpointer user, int step, int total, const float *x_cond)
{
  Gen *g = user;
  if (g->progress == NULL)
    return TRUE;
  g_autofree guint8 *rgb = g_new (guint8, (size_t) g->T * g->lh * g->lw * 3);
  latent_preview (x_cond, (int) g->shape[1], g->T, g->lh, g->lw, rgb);
  return g->progress ("denoising", step + 1, total, rgb, g->T, g->lh, g->lw, g->progress_data);
}

static gboolean
encode_text (KinPipeline *p, Gen *g, GError **error)
{
  const KinStditConfig *dc = kin_stdit_get_config (p->dit);
  int L = dc->model_max_length;
  if (L > 4096) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED, "captions of %d tokens are not supported", L);
    return FALSE;
  }
  if (!load_t5 (p, error))
    return FALSE;
  g_autofree int64_t *ids = g_new0 (int64_t, L), *mask = g_new0 (int64_t, L);
  /* Open-Sora cleans every prompt (clean_caption, twice) before T5 (spec t5-vae-formats §0) */
  g_autofree char *clean = kin_caption_preprocess (g->req->prompt ? g->req->prompt : "", TRUE);
  kin_tokenizer_encode_padded (p->tok, clean, L, ids, mask);
  int C = dc->caption_channels;
  g_autofree float *y = g_new (float, (size_t) 2 * L * C);
  if (!kin_t5_encode (p->t5, ids, mask, 1, L, y, error))
    return FALSE;
  if (p->mode == KIN_MEMORY_LOW) /* the transformer needs the memory more than T5 does */
    g_clear_pointer (&p->t5, kin_t5_free);
  /* the null caption, masked with the prompt's token count (upstream's quirk, §1.5) */
  g_autofree float *null = kin_tensor_to_host_f32 (kin_stdit_get_null_caption (p->dit));
  memcpy (y + (size_t) L * C, null, sizeof (float) * L * C);
  for (int i = 0; i < L; i++)
    g->mask[i] = (int32_t) mask[i];
  int64_t shape[3] = { 2, L, C };
  g->y = kin_tensor_from_host_f32 (p->be, y, 3, shape, error);
  g->L = L;
  return g->y != NULL;
}

/* Nearest-neighbour-free area resize + centre crop of an RGB8 image into [3, H, W] in [−1, 1]
 * (bilinear sampling of the covering scale, as Open-Sora's resize_crop does with bicubic). */
static void
image_to_frame (const guint8 *img, int iw, int ih, int W, int H, float *out)
{
  double s = MAX ((double) W / iw, (double) H / ih);
  double ox = (iw * s - W) / 2, oy = (ih * s - H) / 2;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      double sx = (x + ox + 0.5) / s - 0.5, sy = (y + oy + 0.5) / s - 0.5;
      int x0 = (int) floor (sx), y0 = (int) floor (sy);
      double fx = sx - x0, fy = sy - y0;
      for (int c = 0; c < 3; c++) {
        double acc = 0;
        for (int dy = 0; dy < 2; dy++)
          for (int dx = 0; dx < 2; dx++) {
            int xx = CLAMP (x0 + dx, 0, iw - 1), yy = CLAMP (y0 + dy, 0, ih - 1);
            acc += img[((size_t) yy * iw + xx) * 3 + c] * (dx ? fx : 1 - fx) * (dy ? fy : 1 - fy);
          }
        out[((size_t) c * H + y) * W + x] = (float) (acc / 127.5 - 1.0);
      }
    }
}

/* Places reference latents into z and writes the frame mask (§6.3). */
static gboolean
apply_conditioning (KinPipeline *p, const KinRequest *req, float *z, float *mask, int C, int T, int h,
                    int w, GError **error)
{
  size_t frame = (size_t) h * w;
  for (int t = 0; t < T; t++)
    mask[t] = 1.0f;
  if (req->cond == KIN_COND_NONE)
    return TRUE;
  if (req->cond == KIN_COND_IMAGE) {
    int H = h * p->factor, W = w * p->factor;
    g_autofree float *px = g_new (float, (size_t) 3 * H * W);
    image_to_frame (req->cond_image, req->cond_image_w, req->cond_image_h, W, H, px);
    int64_t vs[5] = { 1, 3, 1, H, W };
    g_autoptr (KinTensor) video = kin_tensor_from_host_f32 (p->be, px, 5, vs, error);
    if (video == NULL)
      return FALSE;
    KinVaeEncodeOptions eo = { .use_mean = TRUE };
    g_autoptr (KinTensor) lat = kin_vae_encode_video (p->vae, video, &eo, error);
    if (lat == NULL)
      return FALSE;
    g_autofree float *l = kin_tensor_to_host_f32 (lat);
    for (int c = 0; c < C; c++)
      memcpy (z + ((size_t) c * T + 0) * frame, l + (size_t) c * frame, frame * sizeof (float));
    mask[0] = 0.0f;
    return TRUE;
  }
  int R = req->cond_latent_frames, L = req->cond_length;
  const float *ref = req->cond_latents;
  /* copy ref frames [rs, rs+n) to target [ts, ts+n) with mask value v */
#define PLACE(rs, ts, n, v)                                                                         \
  for (int k = 0; k < (n); k++) {                                                                   \
    for (int c = 0; c < C; c++)                                                                     \
      memcpy (z + ((size_t) c * T + (ts) + k) * frame, ref + ((size_t) c * R + (rs) + k) * frame,   \
              frame * sizeof (float));                                                              \
    mask[(ts) + k] = (v);                                                                           \
  }
  switch (req->cond) {
  case KIN_COND_EXTEND: /* the last L frames of the earlier clip become frames 0..L−1 */
    PLACE (R - L, 0, L, 0.0f);
    break;
  case KIN_COND_LOOP: /* starts where the clip ends and ends where it starts: clip ++ new loops */
    PLACE (R - L, 0, L, 0.0f);
    PLACE (0, T - L, L, 0.0f);
    break;
  case KIN_COND_EDIT:
    PLACE (0, 0, T, CLAMP (req->edit_strength, 0.0f, 1.0f));
    break;
  default:
    break;
  }
#undef PLACE
  return TRUE;
}

KinClip *
kin_pipeline_generate (KinPipeline *p, const KinRequest *req_in, KinProgressFunc progress,
                       gpointer user_data, GCancellable *cancellable, GError **error)
{
  KinRequest req;
  kin_request_copy (&req, req_in);
  req.cond_image = req_in->cond_image;
  req.cond_latents = req_in->cond_latents;
  kin_pipeline_request_defaults (p, &req);
  KinClip *clip = NULL;
  Gen g = { .p = p, .req = &req, .progress = progress, .progress_data = user_data };
  KinIddpmSchedule *sched = NULL;
  KinTensor *lat_t = NULL, *video = NULL;
  float *z = NULL, *sample = NULL, *mask = NULL;
  gint64 t0 = g_get_monotonic_time ();
  if (!kin_pipeline_validate (p, &req, error))
    goto out;
  const KinStditConfig *dc = kin_stdit_get_config (p->dit);
  int C = dc->in_channels, T = req.frames;
  int lh = req.height / p->factor, lw = req.width / p->factor;
  g.lh = lh, g.lw = lw, g.T = T;
  if (progress && !progress ("encoding", 0, 1, NULL, 0, 0, 0, user_data))
    goto cancelled;
  if (!encode_text (p, &g, error))
    goto out;
  if (progress && !progress ("encoding", 1, 1, NULL, 0, 0, 0, user_data))
    goto cancelled;
  /* v1.1 conditioning values as the official inference passes them (§3.5) */
  g.height = (float) req.height, g.width = (float) req.width, g.num_frames = (float) T;
  g.ar = (float) req.height / (float) req.width;
  g.fps = T == 1 ? KIN_CONDITION_FPS_IMAGE : KIN_CONDITION_FPS;
  int64_t shape[5] = { 2, C, T, lh, lw };
  memcpy (g.shape, shape, sizeof shape);
  size_t n = (size_t) C * T * lh * lw;
  z = g_new (float, n);
  sample = g_new (float, n);
  mask = g_new (float, T);
  KinNoise ns;
  kin_noise_init (&ns, req.seed);
  kin_noise_fill (&ns, z, n);
  if (!apply_conditioning (p, &req, z, mask, C, T, lh, lw, error))
    goto out;
  KinIddpmRun run = {
    .n = 1, .channels = C, .frames = T, .height = lh, .width = lw, .cfg_scale = req.guidance,
    .cfg_channels = 3, .frame_mask = req.cond != KIN_COND_NONE ? mask : NULL,
    .model = model_call, .model_data = &g, .noise = noise_call, .noise_data = &ns,
    .on_step = on_step, .step_data = &g, .cancellable = cancellable,
  };
  gboolean ok;
  /* CUDA graphs for the denoising step: the first step runs eagerly, the second is captured,
   * the others replay it (kin_stdit_set_graphs); off again when sampling ends */
  kin_stdit_set_graphs (p->dit, p->graphs && kin_backend_has_graphs (p->be));
  if (req.sampler == KIN_SAMPLER_DPM_SOLVER) {
    ok = kin_dpm_solver_sample (req.steps, &run, z, sample, error);
  } else {
    sched = kin_iddpm_schedule_new (req.steps, 1000, kin_pipeline_version (p) == 1 ? KIN_IDDPM_TABLES_F64
                                                                                : KIN_IDDPM_TABLES_F32, error);
    ok = sched != NULL && kin_iddpm_sample (sched, &run, z, sample, error);
  }
  kin_stdit_set_graphs (p->dit, FALSE);
  g_clear_pointer (&g.xt, kin_tensor_free);
  g_clear_pointer (&g.ot, kin_tensor_free);
  if (!ok)
    goto out;
  if (progress && !progress ("decoding", 0, 1, NULL, 0, 0, 0, user_data))
    goto cancelled;
  int64_t ls[5] = { 1, C, T, lh, lw };
  lat_t = kin_tensor_from_host_f32 (p->be, sample, 5, ls, error);
  KinVaeDecodeOptions dopt = { .micro_batch = p->mode == KIN_MEMORY_LOW ? 1 : 4 };
  if (lat_t == NULL || (video = kin_vae_decode_video (p->vae, lat_t, &dopt, error)) == NULL)
    goto out;
  if (g_cancellable_is_cancelled (cancellable))
    goto cancelled;
  clip = g_new0 (KinClip, 1);
  clip->frames = T;
  clip->height = (int) video->shape[3];
  clip->width = (int) video->shape[4];
  clip->fps = req.fps;
  clip->rgb = g_new (guint8, (size_t) T * clip->height * clip->width * 3);
  {
    g_autofree float *vh = kin_tensor_to_host_f32 (video);
    kin_vae_video_to_rgb8 (vh, 1, T, clip->height, clip->width, clip->rgb);
  }
  clip->latents = g_steal_pointer (&sample);
  clip->latent_channels = C, clip->latent_frames = T, clip->latent_h = lh, clip->latent_w = lw;
  kin_request_copy (&clip->request, &req);
  clip->seconds = (g_get_monotonic_time () - t0) / 1e6;
  if (progress)
    progress ("decoding", 1, 1, NULL, 0, 0, 0, user_data);
  goto out;
cancelled:
  g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_CANCELLED, "generation cancelled");
out:
  oom_hint (error);
  kin_iddpm_schedule_free (sched);
  kin_tensor_free (g.y);
  kin_tensor_free (g.xt);
  kin_tensor_free (g.ot);
  kin_tensor_free (lat_t);
  kin_tensor_free (video);
  g_free (z);
  g_free (sample);
  g_free (mask);
  kin_request_clear (&req);
  return clip;
}

/* --- requests and clips --- */

void
kin_request_copy (KinRequest *dst, const KinRequest *src)
{
  *dst = *src;
  dst->prompt = g_strdup (src->prompt);
  dst->cond_image = NULL;
  dst->cond_latents = NULL;
}

void
kin_request_clear (KinRequest *req)
{
  g_clear_pointer (&req->prompt, g_free);
}

static const char *const cond_names[] = { "none", "image", "extend", "loop", "edit" };

JsonNode *
kin_request_to_json (const KinRequest *req)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "prompt");
  json_builder_add_string_value (b, req->prompt ? req->prompt : "");
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, req->height);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, req->width);
  json_builder_set_member_name (b, "frames");
  json_builder_add_int_value (b, req->frames);
  json_builder_set_member_name (b, "fps");
  json_builder_add_int_value (b, req->fps);
  json_builder_set_member_name (b, "seed"); /* a string: JSON numbers lose 64-bit precision */
  g_autofree char *seed = g_strdup_printf ("%" G_GUINT64_FORMAT, req->seed);
  json_builder_add_string_value (b, seed);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, req->steps);
  json_builder_set_member_name (b, "guidance");
  json_builder_add_double_value (b, req->guidance);
  json_builder_set_member_name (b, "sampler");
  json_builder_add_string_value (b, kin_sampler_name (req->sampler));
  json_builder_set_member_name (b, "conditioning");
  json_builder_add_string_value (b, cond_names[CLAMP (req->cond, 0, (int) G_N_ELEMENTS (cond_names) - 1)]);
  json_builder_set_member_name (b, "cond_length");
  json_builder_add_int_value (b, req->cond_length);
  json_builder_set_member_name (b, "edit_strength");
  json_builder_add_double_value (b, req->edit_strength);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

gboolean
kin_request_from_json (KinRequest *req, JsonNode *node, GError **error)
{
  memset (req, 0, sizeof *req);
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "a request must be a JSON object");
    return FALSE;
  }
  JsonObject *o = json_node_get_object (node);
  req->prompt = g_strdup (json_object_get_string_member_with_default (o, "prompt", ""));
  req->height = (int) json_object_get_int_member_with_default (o, "height", 0);
  req->width = (int) json_object_get_int_member_with_default (o, "width", 0);
  req->frames = (int) json_object_get_int_member_with_default (o, "frames", 0);
  req->fps = (int) json_object_get_int_member_with_default (o, "fps", 0);
  const char *seed = json_object_get_string_member_with_default (o, "seed", "0");
  req->seed = g_ascii_strtoull (seed ? seed : "0", NULL, 10);
  req->steps = (int) json_object_get_int_member_with_default (o, "steps", 0);
  req->guidance = (float) json_object_get_double_member_with_default (o, "guidance", 0);
  if (!kin_sampler_from_name (json_object_get_string_member_with_default (o, "sampler", "iddpm"), &req->sampler)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "unknown sampler in request");
    kin_request_clear (req);
    return FALSE;
  }
  const char *cond = json_object_get_string_member_with_default (o, "conditioning", "none");
  for (guint i = 0; i < G_N_ELEMENTS (cond_names); i++)
    if (g_strcmp0 (cond, cond_names[i]) == 0)
      req->cond = (KinCondKind) i;
  req->cond_length = (int) json_object_get_int_member_with_default (o, "cond_length", 0);
  req->edit_strength = (float) json_object_get_double_member_with_default (o, "edit_strength", 0);
  return TRUE;
}

void
kin_clip_free (KinClip *clip)
{
  if (clip == NULL)
    return;
  g_free (clip->rgb);
  g_free (clip->latents);
  kin_request_clear (&clip->request);
  g_free (clip);
}
