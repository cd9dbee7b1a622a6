/* golden-stdit.c — golden runner for the stdit_* cases (STDiT v1.0, STDiT2 v1.1 with and without
 * x_mask).  The model is built from the sidecar's config.model and the case tensors; every
 * intermediate the model reports through its hook is compared with golden.<name> when the case
 * has it, and every golden.* tensor of the case must have been compared. */
#include "kin-golden.h"
#include "kin-error.h"
#include "kin-stdit.h"
#include <stdio.h>
#include <string.h>

typedef struct {
  KinGoldenCase *gc;
  GHashTable *seen;         /* golden names compared */
} HookState;

static void
compare_hooked (const char *name, int block, const KinTensor *t, gpointer user_data)
{
  HookState *st = user_data;
  KinGoldenCase *gc = st->gc;
  g_autofree char *golden = g_strconcat ("golden.", name, NULL);
  const char *ref = NULL;
  if (g_strcmp0 (name, "out") == 0)
    return;                 /* compared from the output tensor itself */
  if (kin_weights_contains (gc->tensors, golden))
    ref = golden;
  else if (g_str_has_prefix (name, "pos_embed") && kin_weights_contains (gc->tensors, name))
    ref = name;             /* v1.0: the upstream tables stored as buffers */
  if (ref == NULL)
    return;
  g_autofree float *host = kin_tensor_to_host_f32 (t);
  kin_golden_compare (gc, ref, host, (size_t) kin_tensor_numel (t));
  g_hash_table_add (st->seen, g_strdup (ref));
}

static KinTensor *
upload_input (KinGoldenCase *gc, const char *name, GError **error)
{
  const KinWeightEntry *e = kin_golden_entry (gc, name, error);
  if (e == NULL)
    return NULL;
  g_autofree float *f = kin_golden_tensor_f32 (gc, name, NULL, error);
  if (f == NULL)
    return NULL;
  return kin_tensor_from_host_f32 (gc->be, f, e->ndim, e->shape, error);
}

/* A host copy of an input as float (optional inputs: NULL without error when absent). */
static float *
host_input (KinGoldenCase *gc, const char *name, size_t *n)
{
  if (!kin_weights_contains (gc->tensors, name))
    return NULL;
  return kin_golden_tensor_f32 (gc, name, n, NULL);
}

/* The weight loader warns about keys it does not read: the case's inputs and goldens are not
 * weights, so mark them read first. */
static void
mark_non_weights (KinGoldenCase *gc)
{
  guint n = kin_weights_count (gc->tensors);
  for (guint i = 0; i < n; i++) {
    const char *name = kin_weights_nth (gc->tensors, i)->name;
    if (g_str_has_prefix (name, "input.") || g_str_has_prefix (name, "golden."))
      (void) kin_weights_lookup (gc->tensors, name);
  }
}

static gboolean
build_model (KinGoldenCase *gc, KinStdit **out, GError **error)
{
  JsonNode *node = kin_golden_config_node (gc, "model");
  JsonObject *json = node && JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  KinStditConfig cfg;
  kin_stdit_config_init (&cfg);
  if (!kin_stdit_config_derive (&cfg, json, gc->tensors, error))
    return FALSE;
  printf ("  STDiT v1.%d: depth %d, hidden %d, %d heads, caption %d×%d, qk_norm %d\n",
          cfg.version - 1, cfg.depth, cfg.hidden_size, cfg.num_heads, cfg.model_max_length,
          cfg.caption_channels, cfg.qk_norm);
  mark_non_weights (gc);
  *out = kin_stdit_load (gc->tensors, &cfg, gc->be, error);
  return *out != NULL;
}

/* golden.* tensors nothing compared count as failures: the runner must cover every block. */
static void
check_coverage (KinGoldenCase *gc, HookState *st)
{
  guint n = kin_weights_count (gc->tensors);
  for (guint i = 0; i < n; i++) {
    const char *name = kin_weights_nth (gc->tensors, i)->name;
    if (g_str_has_prefix (name, "golden.") && !g_hash_table_contains (st->seen, name)) {
      printf ("  %-48s  FAIL (the model produced nothing to compare)\n", name);
      gc->n_compared++;
      gc->n_failed++;
    }
  }
}

gboolean
kin_golden_run_stdit (KinGoldenCase *gc, GError **error)
{
  if (gc->tensors == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "case %s has no tensor file", gc->case_name);
    return FALSE;
  }
  g_autoptr (KinStdit) model = NULL;
  if (!build_model (gc, &model, error))
    return FALSE;
  const KinStditConfig *cfg = kin_stdit_get_config (model);

  g_autoptr (KinTensor) x = upload_input (gc, "input.x", error);
  g_autoptr (KinTensor) y = x ? upload_input (gc, "input.y", error) : NULL;
  size_t n_t = 0, n_mask = 0, n_xm = 0;
  g_autofree float *timestep = host_input (gc, "input.timestep", &n_t);
  g_autofree float *mask_f = host_input (gc, "input.mask", &n_mask);
  if (y == NULL)
    return FALSE;
  if (timestep == NULL || n_t != (size_t) x->shape[0]) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "case %s: input.timestep missing or not [B]", gc->case_name);
    return FALSE;
  }
  g_autofree int32_t *mask = NULL;
  int mask_rows = 0;
  if (mask_f != NULL) {
    const KinWeightEntry *e = kin_weights_lookup (gc->tensors, "input.mask");
    mask = g_new (int32_t, n_mask);
    for (size_t i = 0; i < n_mask; i++)
      mask[i] = (int32_t) mask_f[i];
    mask_rows = (int) e->shape[0];
  }
  g_autofree float *height = host_input (gc, "input.height", NULL);
  g_autofree float *width = host_input (gc, "input.width", NULL);
  g_autofree float *num_frames = host_input (gc, "input.num_frames", NULL);
  g_autofree float *ar = host_input (gc, "input.ar", NULL);
  g_autofree float *fps = host_input (gc, "input.fps", NULL);
  g_autofree float *xm_f = host_input (gc, "input.x_mask", &n_xm);
  g_autofree guint8 *x_mask = NULL;
  if (xm_f != NULL) {
    x_mask = g_new (guint8, n_xm);
    for (size_t i = 0; i < n_xm; i++)
      x_mask[i] = xm_f[i] != 0;
  }

  HookState st = { gc, g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL) };
  KinStditInput in = {
    .x = x, .timestep = timestep, .y = y, .mask = mask, .mask_rows = mask_rows,
    .height = height, .width = width, .num_frames = num_frames, .ar = ar, .fps = fps,
    .x_mask = x_mask, .hook = compare_hooked, .hook_data = &st,
  };
  int64_t out_shape[5] = { x->shape[0], cfg->out_channels, x->shape[2], x->shape[3], x->shape[4] };
  g_autoptr (KinTensor) out = kin_tensor_new (gc->be, KIN_DTYPE_F32, 5, out_shape, error);
  gboolean ok = out != NULL && kin_stdit_forward (model, &in, out, error);
  if (ok) {
    g_autofree float *host = kin_tensor_to_host_f32 (out);
    kin_golden_compare (gc, "golden.out", host, (size_t) kin_tensor_numel (out));
    g_hash_table_add (st.seen, g_strdup ("golden.out"));
    check_coverage (gc, &st);
  }
  g_hash_table_unref (st.seen);
  return ok;
}
