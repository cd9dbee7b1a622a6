/* kin-engine-fallback.c — TEMPORARY stand-ins for engine/kin-pipeline.c (requests and clips)
 * and engine/kin-engine.c (the engine thread), compiled into kinora-app-core only while those
 * files are not part of the engine library yet (see app/meson.build).  Every generation fails
 * with a clear error, so the application builds, runs and shows its error path.  Delete this
 * file once the engine has both. */
#include "kin-config.h"
#include "kin-engine.h"
#include "kin-error.h"
#include <string.h>

#ifdef KIN_FALLBACK_PIPELINE

void
kin_model_paths_clear (KinModelPaths *paths)
{
  g_clear_pointer (&paths->transformer, g_free);
  g_clear_pointer (&paths->text_encoder, g_free);
  g_clear_pointer (&paths->vae, g_free);
}

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
  else if (g_strcmp0 (name, "dpm-solver") == 0)
    *out = KIN_SAMPLER_DPM_SOLVER;
  else
    return FALSE;
  return TRUE;
}

static const char *cond_names[] = { "none", "image", "extend", "loop", "edit" };

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
  json_builder_set_member_name (b, "seed");
  json_builder_add_int_value (b, (gint64) req->seed);
  json_builder_set_member_name (b, "steps");
  json_builder_add_int_value (b, req->steps);
  json_builder_set_member_name (b, "guidance");
  json_builder_add_double_value (b, req->guidance);
  json_builder_set_member_name (b, "sampler");
  json_builder_add_string_value (b, kin_sampler_name (req->sampler));
  json_builder_set_member_name (b, "cond");
  json_builder_add_string_value (b, cond_names[CLAMP ((int) req->cond, 0, 4)]);
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
  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT, "a request is an object");
    return FALSE;
  }
  JsonObject *o = json_node_get_object (node);
  memset (req, 0, sizeof *req);
  req->prompt = g_strdup (json_object_get_string_member_with_default (o, "prompt", ""));
  req->height = (int) json_object_get_int_member_with_default (o, "height", 0);
  req->width = (int) json_object_get_int_member_with_default (o, "width", 0);
  req->frames = (int) json_object_get_int_member_with_default (o, "frames", 1);
  req->fps = (int) json_object_get_int_member_with_default (o, "fps", 8);
  req->seed = (guint64) json_object_get_int_member_with_default (o, "seed", 0);
  req->steps = (int) json_object_get_int_member_with_default (o, "steps", 0);
  req->guidance = (float) json_object_get_double_member_with_default (o, "guidance", 7.0);
  const char *s = json_object_get_string_member_with_default (o, "sampler", "iddpm");
  if (!kin_sampler_from_name (s, &req->sampler))
    req->sampler = KIN_SAMPLER_IDDPM;
  const char *c = json_object_get_string_member_with_default (o, "cond", "none");
  for (guint i = 0; i < G_N_ELEMENTS (cond_names); i++)
    if (g_strcmp0 (c, cond_names[i]) == 0)
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

#endif /* KIN_FALLBACK_PIPELINE */

#ifdef KIN_FALLBACK_ENGINE

struct _KinEngine {
  GObject parent_instance;
};

G_DEFINE_FINAL_TYPE (KinEngine, kin_engine, G_TYPE_OBJECT)

static void kin_engine_class_init (KinEngineClass *klass) {}
static void kin_engine_init (KinEngine *self) {}

KinEngine *
kin_engine_new (void)
{
  return g_object_new (KIN_TYPE_ENGINE, NULL);
}

void
kin_engine_set_models (KinEngine *engine, const KinModelPaths *paths, KinMemoryMode mode)
{
}

static void
fail_later (KinEngine *engine, gpointer tag, GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr (GTask) task = g_task_new (engine, NULL, callback, user_data);
  g_task_set_source_tag (task, tag);
  g_task_return_new_error (task, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_UNSUPPORTED,
                           "This build of Kinora has no generation engine yet");
}

void
kin_engine_generate_async (KinEngine *engine, const KinRequest *req, KinEngineProgressFunc progress,
                           gpointer progress_data, GDestroyNotify progress_destroy,
                           GCancellable *cancellable, GAsyncReadyCallback callback,
                           gpointer user_data)
{
  if (progress_destroy != NULL)
    progress_destroy (progress_data);
  fail_later (engine, kin_engine_generate_async, callback, user_data);
}

KinClip *
kin_engine_generate_finish (KinEngine *engine, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

void
kin_engine_describe_async (KinEngine *engine, GCancellable *cancellable,
                           GAsyncReadyCallback callback, gpointer user_data)
{
  fail_later (engine, kin_engine_describe_async, callback, user_data);
}

char *
kin_engine_describe_finish (KinEngine *engine, GAsyncResult *result, GError **error)
{
  return g_task_propagate_pointer (G_TASK (result), error);
}

#endif /* KIN_FALLBACK_ENGINE */
