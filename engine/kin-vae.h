/* kin-vae.h — the SD VAE (diffusers AutoencoderKL) encoder and decoder, applied per video frame.
 *
 * What it computes (spec/t5-vae-formats.md §3, spec/stdit.md §7.2):
 *   encode: frames [N, in, H, W] in [−1, 1] → moments [N, 2·latent, H/f, W/f] (quant_conv output,
 *           [mean | logvar]) with f = 2^(blocks−1) (8 for SD);
 *   decode: latents [N, latent, h, w] (already divided by the scaling factor) → [N, out, f·h, f·w],
 *           not clamped.
 * The video helpers add what Open-Sora's VideoAutoencoderKL does around them: [B, C, T, H, W] ↔
 * frames in (b, t) order, micro-batches, posterior sampling (mean + std·ε, ε from the caller),
 * the 0.18215 scaling, and tiled decoding for large frames.
 *
 * Weights: one set may use any of three key dialects (detected once, mapped in one table in
 * kin-vae.c): diffusers (to_q/to_k/to_v/to_out.0), old diffusers (query/key/value/proj_attn), and
 * the original LDM names (encoder.down.N.block.M, decoder.up reversed, mid.attn_1.q as 1×1 convs),
 * optionally under the prefix "first_stage_model." (full SD checkpoints) or "vae.".
 *
 * Frame sizes must be multiples of f (8 for SD); other sizes are refused with
 * KIN_ENGINE_ERROR_BAD_INPUT rather than padded, so the caller decides how to pad or crop. */
#pragma once

#include <json-glib/json-glib.h>
#include "kin-types.h"
#include "kin-tensor.h"
#include "kin-backend.h"
#include "kin-weights.h"

G_BEGIN_DECLS

#define KIN_VAE_MAX_BLOCKS 8
#define KIN_VAE_SD_SCALING_FACTOR 0.18215f

typedef struct {
  int in_channels;                               /* 3 */
  int out_channels;                              /* 3 */
  int latent_channels;                           /* 4 */
  int n_blocks;                                  /* len(block_out_channels): 4 */
  int block_out_channels[KIN_VAE_MAX_BLOCKS];    /* 128, 256, 512, 512 */
  int layers_per_block;                          /* encoder resnets per block; decoder has +1 */
  int norm_num_groups;                           /* 32 */
  float norm_eps;                                /* 1e-6 (hard-coded in diffusers) */
  float scaling_factor;                          /* 0.18215 */
  gboolean use_quant_conv;
  gboolean use_post_quant_conv;
  gboolean mid_block_add_attention;
} KinVaeConfig;

typedef enum {
  KIN_VAE_DIALECT_DIFFUSERS = 0,  /* to_q, to_k, to_v, to_out.0 */
  KIN_VAE_DIALECT_DIFFUSERS_OLD,  /* query, key, value, proj_attn */
  KIN_VAE_DIALECT_LDM,            /* CompVis / original SD names */
} KinVaeDialect;

typedef enum {
  KIN_VAE_ENCODER = 1 << 0,
  KIN_VAE_DECODER = 1 << 1,
  KIN_VAE_BOTH = KIN_VAE_ENCODER | KIN_VAE_DECODER,
} KinVaeParts;

typedef struct _KinVae KinVae;

/* Called with each recorded intermediate ("encoder.conv_in.out", "encoder.down_blocks.0.out",
 * "encoder.mid_block.out", "encoder.out", "moments", "post_quant_conv.out",
 * "decoder.conv_in.out", "decoder.mid_block.out", "decoder.up_blocks.0.out", "decoded"); the
 * tensor is only valid during the call. */
typedef void (*KinVaeTapFunc) (const char *name, const KinTensor *t, gpointer user_data);

/* Fills @n standard-normal floats; called once per micro-batch of frames (as upstream draws one
 * torch.randn per micro-batch), in frame order. */
typedef void (*KinVaeNoiseFunc) (float *out, size_t n, gpointer user_data);

/* --- configuration --- */

/* stabilityai/sd-vae-ft-ema. */
void      kin_vae_config_init_sd (KinVaeConfig *cfg);
/* Reads the fields of a diffusers AutoencoderKL config.json object; absent fields keep the
 * values already in @cfg (call kin_vae_config_init_sd first). */
gboolean  kin_vae_config_from_json_object (KinVaeConfig *cfg, JsonObject *obj, GError **error);
gboolean  kin_vae_config_from_json_file (KinVaeConfig *cfg, const char *path, GError **error);
/* Everything the shapes tell (blocks, channels, layers, latent channels, which convs exist);
 * norm_num_groups, eps and the scaling factor keep their values in @cfg. */
gboolean  kin_vae_config_infer (KinVaeConfig *cfg, KinWeights *ws, GError **error);
/* Checks sizes and group counts; BAD_INPUT naming the problem. */
gboolean  kin_vae_config_validate (const KinVaeConfig *cfg, GError **error);
/* Spatial down-sampling factor 2^(n_blocks − 1). */
int       kin_vae_config_factor (const KinVaeConfig *cfg);

/* --- loading --- */

/* Builds the model from a weight set (kept by the caller, may be freed afterwards: weights are
 * copied to @be).  @cfg NULL: inferred from shapes with SD defaults for the rest. */
KinVae   *kin_vae_new (KinBackend *be, KinWeights *ws, const KinVaeConfig *cfg, KinVaeParts parts,
                       GError **error);
/* A diffusers folder (config.json + weights) or a single weight file (LDM .safetensors/.ckpt,
 * a full SD checkpoint, a diffusers file with its config.json beside it). */
KinVae   *kin_vae_load (KinBackend *be, const char *path, KinVaeParts parts, GError **error);
void      kin_vae_free (KinVae *vae);

const KinVaeConfig *kin_vae_get_config (KinVae *vae);
KinBackend         *kin_vae_get_backend (KinVae *vae);
KinVaeDialect       kin_vae_get_dialect (KinVae *vae);
const char         *kin_vae_dialect_name (KinVaeDialect dialect);
void                kin_vae_set_tap (KinVae *vae, KinVaeTapFunc func, gpointer user_data);

/* --- frames --- */

/* frames [N, in, H, W] → moments [N, 2·latent, H/f, W/f]. */
KinTensor *kin_vae_encode_moments (KinVae *vae, const KinTensor *frames, GError **error);
/* latents [N, latent, h, w] (unscaled) → [N, out, f·h, f·w], one pass, not clamped. */
KinTensor *kin_vae_decode_frames (KinVae *vae, const KinTensor *z, GError **error);

typedef struct {
  int tile;        /* tile edge in latent pixels (0 = 32, i.e. 256 px for SD) */
  int overlap;     /* overlap between neighbouring tiles in latent pixels (0 = tile/4) */
  int trunk_mib;   /* budget for the untiled low-resolution stages (0 = 512 MiB, < 0 = none) */
} KinVaeTiling;

/* Decodes in overlapping tiles and blends them with linear ramps over the overlaps (weights
 * normalised per pixel).  The low-resolution stages (conv_in and the mid block with its global
 * attention, then up blocks while their output stays within trunk_mib / 4) run in one pass;
 * the tiles are cut from their output, so the memory depends on the tile size and the budget,
 * not on the frame size.  GroupNorm statistics of the tiled stages are per tile and tile
 * borders see zero padding, so results differ from kin_vae_decode_frames; tests/test-vae.c
 * states the measured tolerance. */
KinTensor *kin_vae_decode_frames_tiled (KinVae *vae, const KinTensor *z, const KinVaeTiling *tiling,
                                        GError **error);

typedef struct {
  int untiled_stages;   /* −1: everything tiled; k ≥ 0: conv_in + mid block and up blocks < k in one pass */
  int tiles_y, tiles_x; /* tile grid */
  int tile_h, tile_w;   /* tile size in latent pixels */
} KinVaeTilePlan;

/* What kin_vae_decode_frames_tiled does for @n frames of an h×w latent; FALSE (plan zeroed) when
 * one tile covers the frame and it decodes in one pass. */
gboolean   kin_vae_tile_plan (const KinVaeConfig *cfg, int n, int h, int w, const KinVaeTiling *tiling,
                              KinVaeTilePlan *plan);

/* Host helpers for the posterior (spec §3.2), @moments [n, 2·latent, hw] (host f32).
 * _split: mean, clamp(logvar, −30, 20) and std = exp(logvar/2), each [n, latent, hw] (any may be
 * NULL).  kin_vae_posterior: out = (mean + std·noise) · scale, or mean · scale when @noise is
 * NULL; @noise and @out are [n, latent, hw]. */
void       kin_vae_posterior_split (const float *moments, int64_t n, int latent, int64_t hw,
                                    float *mean, float *logvar, float *std);
void       kin_vae_posterior (const float *moments, int64_t n, int latent, int64_t hw,
                              const float *noise, float scale, float *out);

/* --- video (Open-Sora VideoAutoencoderKL) --- */

typedef struct {
  int micro_batch;              /* frames per chunk; 0 = all frames at once */
  gboolean use_mean;            /* TRUE: the posterior mean; FALSE: mean + std·ε */
  const float *noise;           /* ε for all frames [(B·T), latent, h, w] in (b, t) order, or NULL */
  KinVaeNoiseFunc noise_func;   /* used when @noise is NULL and !@use_mean */
  gpointer noise_data;
} KinVaeEncodeOptions;

typedef enum {
  KIN_VAE_TILING_AUTO = 0,      /* tile when h·w exceeds tile_threshold latent pixels */
  KIN_VAE_TILING_OFF,
  KIN_VAE_TILING_ON,
} KinVaeTilingMode;

typedef struct {
  int micro_batch;              /* frames per chunk; 0 = all frames at once */
  KinVaeTilingMode tiling_mode;
  int64_t tile_threshold;       /* AUTO: latent pixels per frame above which to tile (0 = 64·64) */
  KinVaeTiling tiling;
} KinVaeDecodeOptions;

/* video [B, in, T, H, W] → latents [B, latent, T, H/f, W/f] × scaling_factor.  @opts NULL: all
 * frames at once, the posterior mean. */
KinTensor *kin_vae_encode_video (KinVae *vae, const KinTensor *video, const KinVaeEncodeOptions *opts,
                                 GError **error);
/* latents [B, latent, T, h, w] (scaled) → video [B, out, T, f·h, f·w], not clamped. */
KinTensor *kin_vae_decode_video (KinVae *vae, const KinTensor *latents, const KinVaeDecodeOptions *opts,
                                 GError **error);

/* 8-bit RGB as Open-Sora saves it: clamp to [−1, 1], (x+1)/2, ×255 + 0.5, clamp [0, 255],
 * truncate.  @video is host f32 [B, 3, T, H, W]; @rgb gets [B, T, H, W, 3]. */
void       kin_vae_video_to_rgb8 (const float *video, int64_t b, int64_t t, int64_t h, int64_t w,
                                  guint8 *rgb);

/* --- sizes (for benches and memory planning) --- */

/* The decoder's convolutions for @n frames of an h×w latent, in execution order; returns how
 * many there are (fills at most @max of @out). */
int        kin_vae_decoder_convs (const KinVaeConfig *cfg, int n, int h, int w, KinConv2d *out, int max);
/* Floating-point operations of one decode (convolutions + attention matmuls). */
double     kin_vae_decoder_flops (const KinVaeConfig *cfg, int n, int h, int w);
/* The same for kin_vae_decode_frames_tiled, overlaps included (the work actually done). */
double     kin_vae_decoder_tiled_flops (const KinVaeConfig *cfg, int n, int h, int w,
                                        const KinVaeTiling *tiling);

/* A weight set with random values in @dialect's names (Conv/Linear N(0, 1/√fan_in), biases
 * N(0, 0.05), norms 1 + N(0, 0.1)), for tests and benches. */
KinWeights *kin_vae_random_weights (const KinVaeConfig *cfg, KinVaeDialect dialect, KinVaeParts parts,
                                    guint64 seed);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinVae, kin_vae_free)

G_END_DECLS
