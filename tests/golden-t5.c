/* golden-t5.c — golden runner for the t5 case(s): HF T5EncoderModel on a tiny config.
 *
 * Reads the model config from config.t5, the inputs input.input_ids / input.attention_mask
 * [B, L], runs kin-t5 over the case file's own weight set and compares the bucket table, the
 * relative bias, the embeddings, every block output and last_hidden_state.  Sizes, head counts
 * and block counts all come from the sidecar and the tensors. */
#include "kin-golden.h"
#include "kin-error.h"
#include "kin-t5.h"
#include <stdio.h>
#include <string.h>

typedef struct {
  KinGoldenCase *gc;
  size_t n;   /* elements of one hidden-state tensor */
} HookData;

static void
compare_hidden (int block, const KinTensor *hidden, gpointer user_data)
{
  HookData *hd = user_data;
  g_autofree float *host = kin_tensor_to_host_f32 (hidden);
  g_autofree char *name = block < 0 ? g_strdup ("golden.embeds")
                                    : g_strdup_printf ("golden.block.%d.out", block);
  kin_golden_compare (hd->gc, name, host, hd->n);
}

/* An I64 input [B, L] as a host array (memcpy: the mapped data need not be aligned). */
static int64_t *
read_ids (KinGoldenCase *gc, const char *name, int *batch, int *len, GError **error)
{
  const KinWeightEntry *e = kin_golden_entry (gc, name, error);
  if (e == NULL)
    return NULL;
  if (e->dtype != KIN_DTYPE_I64 || e->ndim != 2) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "golden tensor %s: expected I64 [B, L], got %s with %d dims", name,
                 kin_dtype_name (e->dtype), e->ndim);
    return NULL;
  }
  *batch = (int) e->shape[0];
  *len = (int) e->shape[1];
  int64_t *out = g_new (int64_t, MAX (e->nbytes / 8, 1));
  memcpy (out, e->data, e->nbytes);
  return out;
}

static void
compare_position_tables (KinGoldenCase *gc, KinT5 *m, int len)
{
  const KinT5Config *c = kin_t5_get_config (m);
  size_t nn = (size_t) len * len;
  g_autofree int32_t *bk = g_new (int32_t, nn);
  g_autofree int64_t *bk64 = g_new (int64_t, nn);
  kin_t5_relative_buckets (len, c->relative_attention_num_buckets,
                           c->relative_attention_max_distance, bk);
  for (size_t i = 0; i < nn; i++)
    bk64[i] = bk[i];
  /* The tables are checked when the case records them (the hidden states always are). */
  const KinWeightEntry *e = kin_weights_lookup (gc->tensors, "golden.rel_bucket");
  if (e != NULL && e->dtype == KIN_DTYPE_I64) {
    g_autofree int64_t *want = g_new (int64_t, MAX (e->nbytes / 8, 1));
    memcpy (want, e->data, e->nbytes);
    kin_golden_compare_ids (gc, "golden.rel_bucket", bk64, nn, want, e->nbytes / 8);
  }
  if (!kin_weights_contains (gc->tensors, "golden.rel_bias"))
    return;
  g_autofree float *bias = g_new (float, (size_t) c->num_heads * nn);
  kin_t5_position_bias (m, len, bias);
  kin_golden_compare (gc, "golden.rel_bias", bias, (size_t) c->num_heads * nn);
}

gboolean
kin_golden_run_t5 (KinGoldenCase *gc, GError **error)
{
  JsonNode *node = kin_golden_config_node (gc, "t5");
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT (node) || gc->tensors == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: no config.t5 object or no tensor file", gc->json_path);
    return FALSE;
  }
  KinT5Config cfg;
  if (!kin_t5_config_from_json (json_node_get_object (node), gc->json_path, &cfg, error))
    return FALSE;
  int batch, len, mb, ml;
  g_autofree int64_t *ids = read_ids (gc, "input.input_ids", &batch, &len, error);
  if (ids == NULL)
    return FALSE;
  g_autofree int64_t *mask = read_ids (gc, "input.attention_mask", &mb, &ml, error);
  if (mask == NULL)
    return FALSE;
  if (mb != batch || ml != len) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "input.attention_mask is [%d, %d], input.input_ids [%d, %d]", mb, ml, batch, len);
    return FALSE;
  }
  g_autoptr (KinT5) m = kin_t5_load_weights (gc->tensors, &cfg, gc->be, error);
  if (m == NULL)
    return FALSE;
  compare_position_tables (gc, m, len);

  size_t n = (size_t) batch * len * cfg.d_model;
  HookData hd = { gc, n };
  kin_t5_set_block_hook (m, compare_hidden, &hd);
  g_autofree float *out = g_new (float, n);
  if (!kin_t5_encode (m, ids, mask, batch, len, out, error))
    return FALSE;
  kin_golden_compare (gc, "golden.last_hidden_state", out, n);

  /* The streamed weight path must give the same numbers. */
  kin_t5_set_block_hook (m, NULL, NULL);
  g_autofree float *out2 = g_new (float, n);
  if (!kin_t5_set_weight_mode (m, KIN_T5_WEIGHTS_STREAM, error) ||
      !kin_t5_encode (m, ids, mask, batch, len, out2, error))
    return FALSE;
  gboolean same = memcmp (out, out2, n * sizeof (float)) == 0;
  printf ("  %-48s  %s\n", "streamed weights == resident weights", same ? "OK" : "FAIL");
  gc->n_compared++;
  if (!same)
    gc->n_failed++;
  return TRUE;
}
