/* kin-golden.h — the shared golden-case runner (`kinora-golden CASE`).
 *
 * A case is a sidecar JSON (layout of ../shared/golden/CASE.json: "case", "config", "tensors" with
 * roles weight/input/golden) plus, for most cases, a .safetensors file beside it.  The runner
 * opens both and calls the per-model function for the case; that function compares its results
 * with kin_golden_compare(), which prints one line per tensor and records failures.
 *
 * Relative error used everywhere: max_i |actual_i − golden_i| / max_i |golden_i|
 * (the largest deviation relative to the tensor's scale; per-element ratios explode near zero). */
#pragma once

#include <json-glib/json-glib.h>
#include "kin-backend.h"
#include "kin-weights.h"

G_BEGIN_DECLS

typedef struct {
  char *case_name;      /* "stdit_v2" */
  char *dir;            /* folder holding the case's files */
  char *json_path;
  JsonParser *parser;
  JsonObject *root;     /* the sidecar */
  JsonObject *config;   /* root["config"] (may be NULL) */
  KinWeights *tensors;  /* the case's .safetensors (NULL when the case has none) */
  KinBackend *be;
  double tolerance;     /* default 1e-5, --tolerance overrides */
  int n_compared;
  int n_failed;
} KinGoldenCase;

/* Compares @n floats with golden tensor @name (any float dtype in the file).  Prints
 * "  name  max-rel-err  OK|FAIL".  Returns FALSE (and counts a failure) when the tensor is
 * missing, the element count differs, anything is NaN, or the error exceeds the tolerance. */
gboolean  kin_golden_compare (KinGoldenCase *gc, const char *name, const float *actual, size_t n);
/* The same with an explicit tolerance. */
gboolean  kin_golden_compare_tol (KinGoldenCase *gc, const char *name, const float *actual,
                                  size_t n, double tolerance);
/* Exact comparison of integer sequences (tokenizer ids). */
gboolean  kin_golden_compare_ids (KinGoldenCase *gc, const char *label, const int64_t *actual,
                                  size_t n_actual, const int64_t *expected, size_t n_expected);
/* Host f32 copy of a tensor of the case file (g_free); NULL and @error when absent. */
float    *kin_golden_tensor_f32 (KinGoldenCase *gc, const char *name, size_t *n, GError **error);
/* The entry itself (shape, dtype); NULL and @error when absent. */
const KinWeightEntry *kin_golden_entry (KinGoldenCase *gc, const char *name, GError **error);
/* Config helpers: dotted paths into root["config"], e.g. "model.hidden_size".  Defaults when
 * absent. */
gint64    kin_golden_config_int (KinGoldenCase *gc, const char *path, gint64 def);
double    kin_golden_config_double (KinGoldenCase *gc, const char *path, double def);
gboolean  kin_golden_config_bool (KinGoldenCase *gc, const char *path, gboolean def);
const char *kin_golden_config_string (KinGoldenCase *gc, const char *path, const char *def);
JsonNode *kin_golden_config_node (KinGoldenCase *gc, const char *path);

/* Per-model runners (tests/golden-*.c).  Return FALSE with @error when the case cannot run at
 * all; comparison failures are counted in gc->n_failed instead. */
gboolean  kin_golden_run_stdit (KinGoldenCase *gc, GError **error);
gboolean  kin_golden_run_iddpm (KinGoldenCase *gc, GError **error);
gboolean  kin_golden_run_t5 (KinGoldenCase *gc, GError **error);
gboolean  kin_golden_run_vae (KinGoldenCase *gc, GError **error);
gboolean  kin_golden_run_tokenizer (KinGoldenCase *gc, GError **error);

G_END_DECLS
