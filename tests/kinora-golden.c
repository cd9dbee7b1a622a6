/* kinora-golden — runs one golden case (see kin-golden.h) on the CPU backend, or on CUDA with
 * --backend cuda (exit 77 when CUDA is unavailable). */
#include "kin-golden.h"
#include "kin-backend-cuda.h"
#include "kin-error.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static JsonNode *
config_lookup (KinGoldenCase *gc, const char *path)
{
  if (gc->config == NULL)
    return NULL;
  g_auto (GStrv) parts = g_strsplit (path, ".", -1);
  JsonObject *obj = gc->config;
  JsonNode *node = NULL;
  for (guint i = 0; parts[i] != NULL; i++) {
    if (obj == NULL || !json_object_has_member (obj, parts[i]))
      return NULL;
    node = json_object_get_member (obj, parts[i]);
    obj = JSON_NODE_HOLDS_OBJECT (node) ? json_node_get_object (node) : NULL;
  }
  return node;
}

JsonNode *
kin_golden_config_node (KinGoldenCase *gc, const char *path)
{
  return config_lookup (gc, path);
}

gint64
kin_golden_config_int (KinGoldenCase *gc, const char *path, gint64 def)
{
  JsonNode *n = config_lookup (gc, path);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return def;
  if (json_node_get_value_type (n) == G_TYPE_DOUBLE)
    return (gint64) json_node_get_double (n);
  return json_node_get_int (n);
}

double
kin_golden_config_double (KinGoldenCase *gc, const char *path, double def)
{
  JsonNode *n = config_lookup (gc, path);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return def;
  return json_node_get_double (n);
}

gboolean
kin_golden_config_bool (KinGoldenCase *gc, const char *path, gboolean def)
{
  JsonNode *n = config_lookup (gc, path);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return def;
  if (json_node_get_value_type (n) == G_TYPE_BOOLEAN)
    return json_node_get_boolean (n);
  return json_node_get_int (n) != 0;
}

const char *
kin_golden_config_string (KinGoldenCase *gc, const char *path, const char *def)
{
  JsonNode *n = config_lookup (gc, path);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return def;
  return json_node_get_string (n);
}

const KinWeightEntry *
kin_golden_entry (KinGoldenCase *gc, const char *name, GError **error)
{
  const KinWeightEntry *e = gc->tensors ? kin_weights_lookup (gc->tensors, name) : NULL;
  if (e == NULL)
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "golden case %s has no tensor %s", gc->case_name, name);
  return e;
}

float *
kin_golden_tensor_f32 (KinGoldenCase *gc, const char *name, size_t *n, GError **error)
{
  const KinWeightEntry *e = kin_golden_entry (gc, name, error);
  if (e == NULL)
    return NULL;
  float *f = kin_weight_entry_to_f32 (e);
  if (f == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS,
                 "golden tensor %s has an unsupported dtype", name);
    return NULL;
  }
  if (n)
    *n = e->nbytes / kin_dtype_size (e->dtype);
  return f;
}

gboolean
kin_golden_compare_tol (KinGoldenCase *gc, const char *name, const float *actual, size_t n,
                        double tolerance)
{
  g_autoptr (GError) error = NULL;
  size_t ng = 0;
  g_autofree float *golden = kin_golden_tensor_f32 (gc, name, &ng, &error);
  gc->n_compared++;
  if (golden == NULL) {
    printf ("  %-48s  MISSING (%s)\n", name, error->message);
    gc->n_failed++;
    return FALSE;
  }
  if (ng != n) {
    printf ("  %-48s  FAIL size %zu, golden has %zu\n", name, n, ng);
    gc->n_failed++;
    return FALSE;
  }
  double max_diff = 0, max_ref = 0;
  gboolean nan = FALSE;
  for (size_t i = 0; i < n; i++) {
    double d = fabs ((double) actual[i] - (double) golden[i]);
    if (isnan (actual[i]) || isnan (d))
      nan = TRUE;
    if (d > max_diff)
      max_diff = d;
    if (fabs (golden[i]) > max_ref)
      max_ref = fabs (golden[i]);
  }
  double rel = max_diff / (max_ref > 1e-30 ? max_ref : 1e-30);
  gboolean ok = !nan && rel <= tolerance;
  printf ("  %-48s  max rel err %.3e  (max |diff| %.3e, n %zu)  %s\n", name, rel, max_diff, n,
          nan ? "FAIL (NaN)" : ok ? "OK" : "FAIL");
  if (!ok)
    gc->n_failed++;
  return ok;
}

gboolean
kin_golden_compare (KinGoldenCase *gc, const char *name, const float *actual, size_t n)
{
  return kin_golden_compare_tol (gc, name, actual, n, gc->tolerance);
}

gboolean
kin_golden_compare_ids (KinGoldenCase *gc, const char *label, const int64_t *actual,
                        size_t n_actual, const int64_t *expected, size_t n_expected)
{
  gboolean ok = n_actual == n_expected;
  for (size_t i = 0; ok && i < n_actual; i++)
    ok = actual[i] == expected[i];
  gc->n_compared++;
  if (!ok) {
    gc->n_failed++;
    printf ("  %-48s  FAIL\n    got     ", label);
    for (size_t i = 0; i < n_actual; i++)
      printf (" %" G_GINT64_FORMAT, actual[i]);
    printf ("\n    expected");
    for (size_t i = 0; i < n_expected; i++)
      printf (" %" G_GINT64_FORMAT, expected[i]);
    printf ("\n");
  } else {
    printf ("  %-48s  exact (%zu ids)  OK\n", label, n_actual);
  }
  return ok;
}

static void
golden_case_clear (KinGoldenCase *gc)
{
  g_free (gc->case_name);
  g_free (gc->dir);
  g_free (gc->json_path);
  g_clear_object (&gc->parser);
  g_clear_pointer (&gc->tensors, kin_weights_free);
}

/* Accepts CASE.json, CASE.safetensors or CASE (a path without extension). */
static gboolean
golden_case_open (KinGoldenCase *gc, const char *arg, GError **error)
{
  g_autofree char *base = NULL;
  if (g_str_has_suffix (arg, ".json"))
    base = g_strndup (arg, strlen (arg) - 5);
  else if (g_str_has_suffix (arg, ".safetensors"))
    base = g_strndup (arg, strlen (arg) - 12);
  else
    base = g_strdup (arg);
  gc->json_path = g_strconcat (base, ".json", NULL);
  gc->dir = g_path_get_dirname (base);
  gc->parser = json_parser_new ();
  if (!json_parser_load_from_file (gc->parser, gc->json_path, error))
    return FALSE;
  JsonNode *root = json_parser_get_root (gc->parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: not a golden sidecar (no JSON object)", gc->json_path);
    return FALSE;
  }
  gc->root = json_node_get_object (root);
  gc->case_name = g_strdup (json_object_get_string_member_with_default (gc->root, "case", ""));
  if (gc->case_name[0] == '\0') {
    g_free (gc->case_name);
    gc->case_name = g_path_get_basename (base);
  }
  if (json_object_has_member (gc->root, "config") &&
      JSON_NODE_HOLDS_OBJECT (json_object_get_member (gc->root, "config")))
    gc->config = json_object_get_object_member (gc->root, "config");
  const char *file = json_object_get_string_member_with_default (gc->root, "file", NULL);
  g_autofree char *st = file ? g_build_filename (gc->dir, file, NULL)
                             : g_strconcat (base, ".safetensors", NULL);
  if (g_file_test (st, G_FILE_TEST_EXISTS) && g_str_has_suffix (st, ".safetensors")) {
    gc->tensors = kin_weights_new ();
    if (!kin_safetensors_load (gc->tensors, st, error))
      return FALSE;
    /* inputs and goldens are not model weights: mark them used so that a model's "unexpected
     * tensors" warning lists only real surprises */
    JsonNode *tl = json_object_get_member (gc->root, "tensors");
    if (tl && JSON_NODE_HOLDS_ARRAY (tl)) {
      JsonArray *arr = json_node_get_array (tl);
      for (guint i = 0; i < json_array_get_length (arr); i++) {
        JsonObject *t = json_array_get_object_element (arr, i);
        const char *role = t ? json_object_get_string_member_with_default (t, "role", "") : "";
        const char *name = t ? json_object_get_string_member_with_default (t, "name", NULL) : NULL;
        if (name && g_strcmp0 (role, "weight") != 0)
          kin_weights_lookup (gc->tensors, name);
      }
    }
  }
  return TRUE;
}

typedef gboolean (*GoldenRunner) (KinGoldenCase *gc, GError **error);

static GoldenRunner
find_runner (const char *name)
{
  static const struct { const char *prefix; GoldenRunner run; } table[] = {
    { "stdit", kin_golden_run_stdit },
    { "iddpm", kin_golden_run_iddpm },
    { "t5", kin_golden_run_t5 },
    { "vae", kin_golden_run_vae },
    { "tokenizer", kin_golden_run_tokenizer },
  };
  for (guint i = 0; i < G_N_ELEMENTS (table); i++)
    if (g_str_has_prefix (name, table[i].prefix))
      return table[i].run;
  return NULL;
}

int
main (int argc, char **argv)
{
  double tolerance = 0;
  g_autofree char *backend = NULL;
  GOptionEntry entries[] = {
    { "tolerance", 't', 0, G_OPTION_ARG_DOUBLE, &tolerance, "Relative tolerance (default 1e-5)", "TOL" },
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend, "Backend: cpu (default) or cuda", "NAME" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("CASE.json|CASE.safetensors — run one golden case");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc != 2) {
    fprintf (stderr, "usage: kinora-golden [--tolerance TOL] CASE.json\n%s\n",
             error ? error->message : "");
    return 2;
  }
  KinBackend *be = kin_backend_cpu ();
  if (g_strcmp0 (backend, "cuda") == 0) {
    be = kin_backend_cuda (&error);
    if (be == NULL) {  /* skipped: no module, driver or device */
      fprintf (stderr, "kinora-golden: %s\n", error->message);
      return 77;
    }
    printf ("backend cuda: %s\n", kin_backend_cuda_describe (be));
  } else if (backend != NULL && g_strcmp0 (backend, "cpu") != 0) {
    fprintf (stderr, "kinora-golden: unknown backend %s (cpu or cuda)\n", backend);
    return 2;
  }

  KinGoldenCase gc = { 0 };
  gc.tolerance = tolerance > 0 ? tolerance : 1e-5;
  gc.be = be;
  int rc = 0;
  if (!golden_case_open (&gc, argv[1], &error)) {
    fprintf (stderr, "kinora-golden: %s\n", error->message);
    rc = 2;
  } else {
    GoldenRunner run = find_runner (gc.case_name);
    printf ("case %s (%s)\n", gc.case_name, gc.json_path);
    if (run == NULL) {
      fprintf (stderr, "kinora-golden: unknown case kind '%s'\n", gc.case_name);
      rc = 2;
    } else if (!run (&gc, &error)) {
      fprintf (stderr, "kinora-golden: case %s could not run: %s\n", gc.case_name, error->message);
      rc = 1;
    } else {
      if (gc.n_compared == 0)
        gc.n_failed++;
      printf ("%s: %d compared, %d failed\n", gc.case_name, gc.n_compared, gc.n_failed);
      rc = gc.n_failed > 0 ? 1 : 0;
    }
  }
  golden_case_clear (&gc);
  return rc;
}
