/* kin-t5.h — the T5 v1.1 encoder (HF `T5EncoderModel`, DeepFloyd/t5-v1_1-xxl), encoder only.
 *
 * Forward pass (spec/t5-vae-formats.md §1.2):
 *   x = shared[ids]                                   [B, L, d_model], no scaling
 *   P = relbias[bucket(j − i)] (+ −3.4e38 on padded key columns), computed once from block 0,
 *       reused by every block
 *   per block:  x += o(attn(rms(x)))   with scores q·kᵀ + P, NO 1/sqrt(d_kv)
 *               x += wo(gelu_tanh(wi_0·rms(x)) ⊙ wi_1·rms(x))
 *   y = rms(x, final_layer_norm)                      = last_hidden_state
 * Padded query positions are computed like the others; callers keep the mask beside the output.
 *
 * Weights and memory.  The embedding table is never uploaded: its rows are gathered on the host
 * from the weight set (only the rows used are touched).  The block matrices keep the dtype of the
 * file (F32, F16 or BF16; the backend's linear widens on the fly, compute is f32).  On the CPU
 * backend they are not copied at all: tensors are views of the memory-mapped files.  Whether the
 * matrices stay resident or are fetched block by block is KinT5WeightMode; see there. */
#pragma once

#include <json-glib/json-glib.h>
#include "kin-backend.h"
#include "kin-weights.h"

G_BEGIN_DECLS

typedef struct {
  int vocab_size;                       /* rows of shared.weight (0 = take it from the weights) */
  int d_model;
  int d_kv;                             /* per-head width; inner = num_heads·d_kv */
  int d_ff;
  int num_heads;
  int num_layers;
  int relative_attention_num_buckets;   /* 32 */
  int relative_attention_max_distance;  /* 128 */
  float layer_norm_epsilon;             /* 1e-6 */
} KinT5Config;

/* T5 v1.1 XXL as used by Open-Sora (vocab 32128, 4096/64/10240, 64 heads, 24 layers). */
void      kin_t5_config_init_xxl (KinT5Config *cfg);
/* Reads a transformers T5 config object.  Missing fields take transformers' defaults; only
 * feed_forward_proj "gated-gelu" (gelu_new, gated) is supported — anything else is
 * KIN_ENGINE_ERROR_UNSUPPORTED.  @what names the source in messages. */
gboolean  kin_t5_config_from_json (JsonObject *obj, const char *what, KinT5Config *cfg,
                                   GError **error);
gboolean  kin_t5_config_load (const char *config_json_path, KinT5Config *cfg, GError **error);

/* Bidirectional relative-position bucket of key j for query i (rel = j − i), computed in f32
 * exactly like HF's _relative_position_bucket. */
int       kin_t5_relative_bucket (int rel, int num_buckets, int max_distance);
/* buckets[i*len + j] for a sequence of @len tokens. */
void      kin_t5_relative_buckets (int len, int num_buckets, int max_distance, int32_t *buckets);

/* Where the block matrices live. */
typedef enum {
  /* RESIDENT on device backends.  On the CPU backend: views of the mapped files made once; when the
   * model opened the files itself (kin_t5_load) and its block matrices exceed 4 GiB (T5-XXL:
   * 9.5 GB bf16, 19 GB f32), STREAM instead. */
  KIN_T5_WEIGHTS_AUTO,
  /* Every block's matrices on the backend for the model's lifetime (device: uploaded once, in the
   * file's dtype; CPU: views of the mapped files, copies only where a view is impossible). */
  KIN_T5_WEIGHTS_RESIDENT,
  /* Each block's matrices fetched just before the block runs and dropped after it.  On the CPU
   * these are views too; when the model owns the mapped files their pages are handed back to the
   * kernel after each block (MADV_PAGEOUT), so the resident set stays near one block (~0.8 GB f32
   * for XXL) instead of growing to the 19 GB of the files.  Device backends upload per block. */
  KIN_T5_WEIGHTS_STREAM,
} KinT5WeightMode;

typedef struct _KinT5 KinT5;

/* Called after the embedding (block = -1) and after each block, with the hidden states
 * [batch·len, d_model] F32 on the backend.  For tests and debugging. */
typedef void (*KinT5BlockHook) (int block, const KinTensor *hidden, gpointer user_data);

/* Opens a DeepFloyd-style folder (config.json + model.safetensors / model-*.safetensors with
 * model.safetensors.index.json / pytorch_model-*.bin with pytorch_model.bin.index.json) or one
 * weight file with a config.json beside it.  Checks every tensor's name and shape before
 * returning.  `decoder.*` and `lm_head.weight` (full encoder-decoder files) are ignored. */
KinT5       *kin_t5_load (const char *folder_or_file, KinBackend *be, GError **error);
/* Builds the encoder over an existing weight set, which must outlive the model (it is borrowed).
 * cfg->vocab_size 0 takes the vocabulary size from the embedding table. */
KinT5       *kin_t5_load_weights (KinWeights *ws, const KinT5Config *cfg, KinBackend *be,
                                  GError **error);
void         kin_t5_free (KinT5 *m);

const KinT5Config *kin_t5_get_config (KinT5 *m);
/* Resolves AUTO once the model is loaded; may be called at any time between encodes. */
gboolean     kin_t5_set_weight_mode (KinT5 *m, KinT5WeightMode mode, GError **error);
KinT5WeightMode kin_t5_get_weight_mode (KinT5 *m);
void         kin_t5_set_block_hook (KinT5 *m, KinT5BlockHook hook, gpointer user_data);

/* Encodes @batch sequences of @len tokens.  @ids [batch, len]; @mask [batch, len] with 1 = real
 * token (incl. </s>), 0 = padding, NULL = all ones.  Ids outside [0, vocab) or mask values other
 * than 0/1 are KIN_ENGINE_ERROR_BAD_INPUT.  Returns last_hidden_state [batch, len, d_model] (F32,
 * on the model's backend). */
KinTensor   *kin_t5_encode_tensor (KinT5 *m, const int64_t *ids, const int64_t *mask, int batch,
                                   int len, GError **error);
/* The same, copied to @out (host, batch·len·d_model floats). */
gboolean     kin_t5_encode (KinT5 *m, const int64_t *ids, const int64_t *mask, int batch, int len,
                            float *out, GError **error);

/* The relative position bias of @len tokens without the mask: out[h, i, j] = bias[bucket(j − i), h],
 * [num_heads, len, len] on the host (the golden file's rel_bias). */
void         kin_t5_position_bias (KinT5 *m, int len, float *out);

/* Multiply-adds ×2 of one encode (the projections and the attention products), for benches. */
double       kin_t5_encode_flops (const KinT5Config *cfg, int batch, int len);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (KinT5, kin_t5_free)

G_END_DECLS
