/* kin-pipeline.h — text → video: tokenize → T5 → (release T5) → sample → VAE decode → RGB.
 *
 * A pipeline owns the three models of one configuration (a folder per model, as users have them:
 * the v1.1 transformer folder or a v1.0 .pth, the DeepFloyd T5 folder, the SD VAE folder) on one
 * backend.  Requests are plain structs; results are clips holding 8-bit frames plus the final
 * latents, so a clip can be extended or looped later.  Synchronous: the engine thread
 * (kin-engine.h) runs it off the UI thread. */
#pragma once

#include "kin-types.h"
#include "kin-backend.h"
#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

typedef enum {
  KIN_SAMPLER_IDDPM = 0,     /* upstream default, 100 steps */
  KIN_SAMPLER_DPM_SOLVER,    /* DPM-Solver++ (2M), ~20 steps */
} KinSamplerKind;

typedef enum {
  KIN_MEMORY_BALANCED = 0,   /* keep T5 loaded when RAM allows */
  KIN_MEMORY_LOW,            /* release T5 after encoding, decode frame by frame, tile the VAE */
} KinMemoryMode;

typedef enum {
  KIN_COND_NONE = 0,
  KIN_COND_IMAGE,            /* image-to-video: an image at frame 0 */
  KIN_COND_EXTEND,           /* the last latent frames of an earlier clip seed the next */
  KIN_COND_LOOP,             /* both ends conditioned on the same frames: the clip loops */
  KIN_COND_EDIT,             /* video-to-video with an edit strength */
} KinCondKind;

/* Where the models are; NULL fields mean "the demo pack" (see kin_pipeline_default_paths). */
typedef struct {
  char *transformer;
  char *text_encoder;
  char *vae;
} KinModelPaths;

typedef struct {
  char *prompt;
  int height, width;         /* pixels (multiples of 8 after rounding down) */
  int frames;                /* 1 = an image */
  int fps;                   /* output frame rate (8 for v1.1) */
  guint64 seed;
  int steps;
  float guidance;            /* cfg scale, 7.0 */
  KinSamplerKind sampler;
  /* conditioning */
  KinCondKind cond;
  /* KIN_COND_IMAGE: RGB8 [cond_h, cond_w, 3], resized and centre-cropped to the request size */
  const guint8 *cond_image;
  int cond_image_w, cond_image_h;
  /* EXTEND/LOOP/EDIT: latents [C, T_ref, h, w] of an earlier clip (scaled, as stored in clips) */
  const float *cond_latents;
  int cond_latent_channels, cond_latent_frames, cond_latent_h, cond_latent_w;
  int cond_length;           /* latent frames taken from the reference (EXTEND/LOOP); 0 = 4 */
  float edit_strength;       /* EDIT: 0 keeps the source, 1 regenerates it; others use 0 */
} KinRequest;

typedef struct {
  int frames, height, width; /* decoded size */
  int fps;
  guint8 *rgb;               /* [frames, height, width, 3] */
  float *latents;            /* [C, T, h, w] final latents (scaled) */
  int latent_channels, latent_frames, latent_h, latent_w;
  KinRequest request;        /* deep copy (prompt owned; conditioning pointers cleared) */
  double seconds;            /* wall time of the generation */
} KinClip;

typedef struct _KinPipeline KinPipeline;

/* progress: stage ("encoding", "denoising", "decoding"), step/total within the stage, and for
 * denoising a cheap preview of every frame: RGB8 [frames, h, w, 3] at latent resolution (NULL
 * otherwise).  Return FALSE to cancel. */
typedef gboolean (*KinProgressFunc) (const char *stage, int step, int total, const guint8 *preview,
                                     int preview_frames, int preview_h, int preview_w,
                                     gpointer user_data);

/* Fills @paths with the demo pack's folders when it is installed (or present in the source tree
 * for uninstalled runs).  FALSE when none is found. */
gboolean     kin_pipeline_default_paths (KinModelPaths *paths);
void         kin_model_paths_clear (KinModelPaths *paths);

KinPipeline *kin_pipeline_new (const KinModelPaths *paths, KinBackend *be, KinMemoryMode mode,
                               GError **error);
void         kin_pipeline_free (KinPipeline *p);
/* One line per model: what was found, version, sizes (for `info` and the preferences dialog). */
char        *kin_pipeline_describe (KinPipeline *p);
/* The model family: 1 (Open-Sora 1.0) or 2 (1.1). */
int          kin_pipeline_version (KinPipeline *p);
int          kin_pipeline_max_text_length (KinPipeline *p);

/* Fills defaults for unset fields of @req (0 / NULL) for this pipeline's model. */
void         kin_pipeline_request_defaults (KinPipeline *p, KinRequest *req);
/* Checks sizes, steps, conditioning before any work; BAD_INPUT with a clear message. */
gboolean     kin_pipeline_validate (KinPipeline *p, const KinRequest *req, GError **error);
/* Errors: KIN_ENGINE_ERROR_OUT_OF_MEMORY when the device (or host) runs out of memory, with a
 * message that says what to try; the pipeline stays usable for a smaller request. */
KinClip     *kin_pipeline_generate (KinPipeline *p, const KinRequest *req, KinProgressFunc progress,
                                    gpointer user_data, GCancellable *cancellable, GError **error);
/* Whether the denoising step may run as a replayed graph on backends that have them (default on;
 * $KIN_CUDA_GRAPHS=0 turns it off).  Results are the same either way. */
void         kin_pipeline_set_graphs (KinPipeline *p, gboolean enable);

/* Requests and clips */
void         kin_request_copy (KinRequest *dst, const KinRequest *src);
void         kin_request_clear (KinRequest *req);
JsonNode    *kin_request_to_json (const KinRequest *req);
gboolean     kin_request_from_json (KinRequest *req, JsonNode *node, GError **error);
void         kin_clip_free (KinClip *clip);
const char  *kin_sampler_name (KinSamplerKind s);
gboolean     kin_sampler_from_name (const char *name, KinSamplerKind *out);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinPipeline, kin_pipeline_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinClip, kin_clip_free)

G_END_DECLS
