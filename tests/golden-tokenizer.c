/* golden-tokenizer.c — golden runner for the `tokenizer` case: a SentencePiece unigram model
 * (tokenizer.model beside the sidecar) and, for every string of the sidecar's "cases", the ids of
 * sentencepiece's encode plus the T5 post-processing at config "max_length" (input_ids,
 * attention_mask).  The case has no .safetensors; everything is in the sidecar. */
#include "kin-golden.h"
#include "kin-error.h"
#include "kin-tokenizer.h"
#include <stdio.h>

/* A JSON array of integers as int64 (g_free); NULL when it is not one. */
static int64_t *
json_ids (JsonObject *o, const char *name, gsize *n)
{
  if (!json_object_has_member (o, name) ||
      !JSON_NODE_HOLDS_ARRAY (json_object_get_member (o, name)))
    return NULL;
  JsonArray *a = json_object_get_array_member (o, name);
  *n = json_array_get_length (a);
  int64_t *ids = g_new (int64_t, *n + 1);
  for (gsize i = 0; i < *n; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!JSON_NODE_HOLDS_VALUE (e) || json_node_get_value_type (e) != G_TYPE_INT64) {
      g_free (ids);
      return NULL;
    }
    ids[i] = json_node_get_int (e);
  }
  return ids;
}

static void
label_for (char *buf, gsize size, guint index, const char *what, const char *text)
{
  g_autofree char *valid = g_utf8_make_valid (text, -1);
  g_autofree char *shown = g_utf8_substring (valid, 0, MIN (g_utf8_strlen (valid, -1), 24));
  for (char *p = shown; *p; p++)
    if ((guchar) *p < 0x20)
      *p = ' ';
  g_snprintf (buf, size, "#%02u %-14s \"%s\"", index, what, shown);
}

static gboolean
run_one (KinGoldenCase *gc, KinTokenizer *tok, guint index, JsonObject *c, gsize max_len,
         GError **error)
{
  const char *text = json_object_get_string_member_with_default (c, "text", NULL);
  gsize n_exp = 0, n_in = 0, n_mask = 0, n = 0;
  g_autofree int64_t *expected = json_ids (c, "ids", &n_exp);
  g_autofree int64_t *exp_in = json_ids (c, "input_ids", &n_in);
  g_autofree int64_t *exp_mask = json_ids (c, "attention_mask", &n_mask);
  if (text == NULL || expected == NULL || exp_in == NULL || exp_mask == NULL ||
      n_in != max_len || n_mask != max_len) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: case %u lacks text, ids, input_ids or attention_mask", gc->json_path, index);
    return FALSE;
  }
  char label[96];
  g_autofree int64_t *ids = kin_tokenizer_encode (tok, text, &n);
  label_for (label, sizeof label, index, "ids", text);
  kin_golden_compare_ids (gc, label, ids, n, expected, n_exp);

  g_autofree int64_t *padded = g_new (int64_t, max_len);
  g_autofree int64_t *mask = g_new (int64_t, max_len);
  kin_tokenizer_encode_padded (tok, text, max_len, padded, mask);
  label_for (label, sizeof label, index, "input_ids", text);
  kin_golden_compare_ids (gc, label, padded, max_len, exp_in, n_in);
  label_for (label, sizeof label, index, "attention_mask", text);
  kin_golden_compare_ids (gc, label, mask, max_len, exp_mask, n_mask);
  return TRUE;
}

gboolean
kin_golden_run_tokenizer (KinGoldenCase *gc, GError **error)
{
  const char *model = json_object_get_string_member_with_default (gc->root, "model_file",
                                                                  "tokenizer.model");
  gint64 max_len = json_object_get_int_member_with_default (gc->root, "max_length", 0);
  if (!json_object_has_member (gc->root, "cases") ||
      !JSON_NODE_HOLDS_ARRAY (json_object_get_member (gc->root, "cases")) || max_len <= 0) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                 "%s: no \"cases\" array or no max_length", gc->json_path);
    return FALSE;
  }
  g_autofree char *path = g_build_filename (gc->dir, model, NULL);
  g_autoptr (KinTokenizer) tok = kin_tokenizer_new_from_file (path, error);
  if (tok == NULL)
    return FALSE;
  printf ("  model %s: %u pieces, unk %d, eos %d, pad %d, max_length %" G_GINT64_FORMAT "\n",
          model, kin_tokenizer_get_vocab_size (tok), kin_tokenizer_get_unk_id (tok),
          kin_tokenizer_get_eos_id (tok), kin_tokenizer_get_pad_id (tok), max_len);
  JsonArray *cases = json_object_get_array_member (gc->root, "cases");
  for (guint i = 0; i < json_array_get_length (cases); i++) {
    JsonNode *e = json_array_get_element (cases, i);
    if (!JSON_NODE_HOLDS_OBJECT (e)) {
      g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE,
                   "%s: case %u is not an object", gc->json_path, i);
      return FALSE;
    }
    if (!run_one (gc, tok, i, json_node_get_object (e), (gsize) max_len, error))
      return FALSE;
  }
  return TRUE;
}
