/* kin-stdit.h — Open-Sora STDiT (v1.0) and STDiT2 (v1.1) diffusion transformers.
 *
 * One config struct describes both versions; it is derived from an HF config.json (the layout of
 * hpcai-tech/OpenSora-STDiT-v2-stage3), from the tensor shapes of a checkpoint (v1.0 .pth files
 * carry no config), or both (shapes win where they are decisive; a contradiction is an error).
 * The model runs on any backend through the op table; the heavy math never leaves it.
 *
 * Facts and quirks: ../shared/spec/stdit.md §1–§3 and §10.  The reference used for the numbers is
 * the upstream float32 path (the golden cases); the bf16 quirks of the official v1.1 bf16
 * inference are available through KinStditConfig.bf16_quirks (see there). */
#pragma once

#include "kin-types.h"
#include "kin-tensor.h"
#include "kin-backend.h"
#include "kin-weights.h"
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef enum {
  KIN_STDIT_VERSION_UNKNOWN = 0,
  KIN_STDIT_V1 = 1,     /* STDiT, Open-Sora 1.0 */
  KIN_STDIT_V2 = 2,     /* STDiT2, Open-Sora 1.1 */
} KinStditVersion;

typedef struct {
  KinStditVersion version;
  int depth;
  int hidden_size;          /* C */
  int num_heads;            /* v1.0 files cannot tell: 16 for C = 1152, else C/72; overridable */
  int patch_size[3];        /* (pt, ph, pw); this engine needs pt = 1 and ph = pw */
  int in_channels;          /* 4 */
  int out_channels;         /* 2·in when pred_sigma */
  int caption_channels;     /* 4096 */
  int model_max_length;     /* rows of y_embedder.y_embedding: 120 (v1.0), 200 (v1.1) */
  int mlp_hidden;           /* fc1 width = C·mlp_ratio */
  int freq_dim;             /* timestep sinusoid width, 256 */
  int size_dim;             /* v1.1 csize/ar embedder width, C/3 */
  /* v1.0 position tables: grid coordinate = index / space_scale, frame position = t / time_scale */
  double space_scale;
  double time_scale;
  int input_size[3];        /* v1.0 training size (informational: sizes are taken from x) */
  /* v1.1 */
  int input_sq_size;        /* 512 for the published checkpoints (class default 32) */
  gboolean qk_norm;
  /* Reproduce the rounding of upstream's bf16 inference (v1.1 scripts run the model in bf16):
   * timestep and height/width/num_frames/ar/fps rounded to bf16 before embedding (t 999 → 1000),
   * their sinusoid features rounded to bf16, the 2-D position table's inv_freq and result rounded
   * to bf16 (also rs = sqrt(height·width) from the bf16 values), RoPE angles/cos/sin in bf16.
   * Off by default: the golden cases ran upstream in float32, where none of this happens.  The
   * matmuls themselves stay in the backend's precision either way. */
  gboolean bf16_quirks;
} KinStditConfig;

/* Sets every field to "unknown" (0), scales to 1.0. */
void      kin_stdit_config_init (KinStditConfig *cfg);
/* Fills the unknown fields of @cfg: first from @json (an HF config.json object or the golden
 * sidecar's config.model; may be NULL), then from the tensor shapes of @ws (may be NULL).  Fields
 * set before the call are kept (overrides) but must agree with the shapes.  Fails with
 * KIN_ENGINE_ERROR_BAD_WEIGHTS when @ws is clearly another model (a VAE, a T5) or shapes
 * contradict the config, BAD_INPUT when something stays unknown or unsupported. */
gboolean  kin_stdit_config_derive (KinStditConfig *cfg, JsonObject *json, KinWeights *ws,
                                   GError **error);
/* kin_stdit_config_derive with the object of a config.json file. */
gboolean  kin_stdit_config_from_json (KinStditConfig *cfg, const char *config_json_path,
                                      KinWeights *ws, GError **error);
/* kin_stdit_config_derive from shapes only (v1.0 .pth files). */
gboolean  kin_stdit_config_from_weights (KinStditConfig *cfg, KinWeights *ws, GError **error);

typedef struct _KinStdit KinStdit;

/* Uploads the weights of @ws to @be (F16/BF16 matrices stay in their storage type; F32 linear
 * weights become BF16 on a backend that asks for it, see KinBackend.linear_weights_bf16).  Missing or
 * mis-shaped keys fail with BAD_WEIGHTS naming the key, the file and both shapes.  Stored v1.0
 * pos_embed / pos_embed_temporal buffers are accepted and ignored (recomputed).  Keys nothing
 * reads are listed in one warning. */
KinStdit *kin_stdit_load (KinWeights *ws, const KinStditConfig *cfg, KinBackend *be,
                          GError **error);
/* Opens a model as users have it: a v1.1 HF folder (config.json + model.safetensors), a folder
 * or file with a v1.0 .pth, or a bare .safetensors; derives the config (from the folder's
 * config.json when there is one, else from the shapes) and loads it. */
KinStdit *kin_stdit_open (const char *path, KinBackend *be, GError **error);
/* The same with @preset (from kin_stdit_config_init, then fields set by the caller): its set
 * fields override (num_heads of a v1.0 file, …) and its bf16_quirks is used. */
KinStdit *kin_stdit_open_full (const char *path, const KinStditConfig *preset, KinBackend *be,
                               GError **error);
void      kin_stdit_free (KinStdit *m);

const KinStditConfig *kin_stdit_get_config (KinStdit *m);
/* The null caption y_embedder.y_embedding, [model_max_length, caption_channels] on the backend:
 * the unconditional input for classifier-free guidance (masked by the prompts' token counts). */
const KinTensor *kin_stdit_get_null_caption (KinStdit *m);

/* Called with intermediate tensors when set: @name is the golden name without "golden."
 * ("x_embedder.out", "t", "block.3.out", …), @block the block index or -1.  The tensor lives on the
 * model's backend and is valid only during the call. */
typedef void (*KinStditHook) (const char *name, int block, const KinTensor *t, gpointer user_data);

typedef struct {
  const KinTensor *x;         /* [B, in_channels, T, H, W] F32 on the model's backend */
  const float *timestep;      /* host [B]: original diffusion step (0..999), may be fractional */
  const KinTensor *y;         /* [B, L, C_cap] or [B, 1, L, C_cap] F32 (T5 output or null caption) */
  const int32_t *mask;        /* host [mask_rows, L], 1 = real token; row of sample b = b % mask_rows.
                               * NULL = every token (upstream then leaks attention across the
                               * batch; this engine keeps samples apart — see kin-stdit.c) */
  int mask_rows;              /* divides B; 0 means B */
  /* v1.1 conditioning, host arrays; entry of sample b = [b % cond_rows] */
  const float *height;        /* pixel height */
  const float *width;         /* pixel width */
  const float *num_frames;
  const float *ar;            /* height / width (the official inference; §3.5) */
  const float *fps;           /* conditioning fps: 24 for video, 120 for images */
  int cond_rows;              /* 0 means B */
  const guint8 *x_mask;       /* host [B, T] or NULL; 0 = conditioning frame (timestep-0 modulation) */
  KinStditHook hook;
  gpointer hook_data;
} KinStditInput;

/* Runs the model.  @out: [B, out_channels, T, H, W] F32 on the model's backend (cropped back to
 * the input size when H or W was padded). */
gboolean  kin_stdit_forward (KinStdit *m, const KinStditInput *in, KinTensor *out, GError **error);

/* Graphs (backends with kin_backend_has_graphs; a no-op elsewhere).  While on, a forward whose
 * device work is the same as the previous call's — same sizes, the same y tensor (its contents
 * may change), the same caption mask and x_mask, no hook — is captured into a graph once (the
 * first call of a shape runs eagerly) and replayed by every later matching call.  What changes
 * per call (x, the timesteps, the size conditioning) goes into persistent device buffers before
 * the replay, outside the graph.  A call that does not match runs eagerly and drops the graph.
 * A capture that fails is logged and the model stays eager until graphs are turned on again.
 * Turning graphs off frees the graph (do it when sampling ends: the graph reserves its memory). */
void      kin_stdit_set_graphs (KinStdit *m, gboolean on);
/* Forward calls that were graph replays / captures since the model was loaded (for tests). */
guint     kin_stdit_graph_replays (KinStdit *m);
guint     kin_stdit_graph_captures (KinStdit *m);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinStdit, kin_stdit_free)

G_END_DECLS
