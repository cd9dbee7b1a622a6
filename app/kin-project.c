/* kin-project.c — project folders (see kin-project.h). */
#include "kin-config.h"
#include "kin-project.h"
#include "kin-error.h"
#include "kin-weights.h"
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <glib/gi18n-lib.h>
#include <glib/gstdio.h>
#include <errno.h>
#include <string.h>

G_DEFINE_QUARK (kin-project-error-quark, kin_project_error)

#define PROJECT_FILE "project.json"
#define CLIP_FILE "clip.json"
#define REQUEST_FILE "request.json"
#define LATENTS_FILE "latents.safetensors"
#define THUMB_FILE "thumbnail.png"
#define THUMB_WIDTH 192

/* ================================================================ clips */

struct _KinProjectClip {
  GObject parent_instance;
  KinProject *project;       /* weak: the project outlives its clips' use in the UI */
  char *id;
  KinRequest request;
  int frames, width, height, fps;
  double gen_seconds;
  GDateTime *created;
  char *video;               /* file name inside the clip folder, or NULL */
};

G_DEFINE_FINAL_TYPE (KinProjectClip, kin_project_clip, G_TYPE_OBJECT)

enum { CLIP_PROP_0, CLIP_PROP_ID, CLIP_PROP_PROMPT, CLIP_N_PROPS };
static GParamSpec *clip_props[CLIP_N_PROPS];

static void
kin_project_clip_finalize (GObject *object)
{
  KinProjectClip *self = KIN_PROJECT_CLIP (object);
  if (self->project != NULL)
    g_object_remove_weak_pointer (G_OBJECT (self->project), (gpointer *) &self->project);
  g_free (self->id);
  g_free (self->video);
  kin_request_clear (&self->request);
  g_clear_pointer (&self->created, g_date_time_unref);
  G_OBJECT_CLASS (kin_project_clip_parent_class)->finalize (object);
}

static void
kin_project_clip_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  KinProjectClip *self = KIN_PROJECT_CLIP (object);
  switch (prop_id) {
  case CLIP_PROP_ID: g_value_set_string (value, self->id); break;
  case CLIP_PROP_PROMPT: g_value_set_string (value, self->request.prompt); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
  }
}

static void
kin_project_clip_class_init (KinProjectClipClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->finalize = kin_project_clip_finalize;
  object_class->get_property = kin_project_clip_get_property;
  clip_props[CLIP_PROP_ID] = g_param_spec_string ("id", NULL, NULL, NULL,
                                                  G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  clip_props[CLIP_PROP_PROMPT] = g_param_spec_string ("prompt", NULL, NULL, NULL,
                                                      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, CLIP_N_PROPS, clip_props);
}

static void
kin_project_clip_init (KinProjectClip *self)
{
}

static void
clip_attach (KinProjectClip *clip, KinProject *project)
{
  if (clip->project != NULL)
    g_object_remove_weak_pointer (G_OBJECT (clip->project), (gpointer *) &clip->project);
  clip->project = project;
  g_object_add_weak_pointer (G_OBJECT (project), (gpointer *) &clip->project);
}

const char *kin_project_clip_get_id (KinProjectClip *c) { return c->id; }
const char *kin_project_clip_get_prompt (KinProjectClip *c) { return c->request.prompt ? c->request.prompt : ""; }
const KinRequest *kin_project_clip_get_request (KinProjectClip *c) { return &c->request; }
int kin_project_clip_get_frames (KinProjectClip *c) { return c->frames; }
int kin_project_clip_get_width (KinProjectClip *c) { return c->width; }
int kin_project_clip_get_height (KinProjectClip *c) { return c->height; }
int kin_project_clip_get_fps (KinProjectClip *c) { return c->fps; }
double kin_project_clip_get_gen_seconds (KinProjectClip *c) { return c->gen_seconds; }
GDateTime *kin_project_clip_get_created (KinProjectClip *c) { return c->created; }

double
kin_project_clip_get_duration (KinProjectClip *c)
{
  return c->fps > 0 ? (double) c->frames / c->fps : 0.0;
}

char *
kin_project_clip_dup_dir (KinProjectClip *c)
{
  g_return_val_if_fail (c->project != NULL, NULL);
  return g_build_filename (kin_project_get_path (c->project), "clips", c->id, NULL);
}

static char *
clip_file (KinProjectClip *c, const char *name)
{
  g_autofree char *dir = kin_project_clip_dup_dir (c);
  return dir != NULL ? g_build_filename (dir, name, NULL) : NULL;
}

static char *
existing (char *path)
{
  if (path != NULL && !g_file_test (path, G_FILE_TEST_EXISTS))
    g_clear_pointer (&path, g_free);
  return path;
}

char *kin_project_clip_dup_thumbnail_path (KinProjectClip *c) { return existing (clip_file (c, THUMB_FILE)); }
char *kin_project_clip_dup_latents_path (KinProjectClip *c) { return existing (clip_file (c, LATENTS_FILE)); }

char *
kin_project_clip_dup_video_path (KinProjectClip *c)
{
  return c->video != NULL ? existing (clip_file (c, c->video)) : NULL;
}

char *
kin_project_clip_dup_frame_path (KinProjectClip *c, int index)
{
  g_autofree char *name = g_strdup_printf ("%04d.png", index);
  g_autofree char *dir = kin_project_clip_dup_dir (c);
  return dir != NULL ? g_build_filename (dir, "frames", name, NULL) : NULL;
}

guint8 *
kin_project_clip_load_frames (KinProjectClip *c, int *frames, int *height, int *width,
                              GError **error)
{
  gsize frame_bytes = (gsize) c->width * c->height * 3;
  g_autofree guint8 *rgb = g_malloc ((gsize) c->frames * frame_bytes);
  for (int f = 0; f < c->frames; f++) {
    g_autofree char *path = kin_project_clip_dup_frame_path (c, f);
    g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new_from_file (path, error);
    if (pb == NULL)
      return NULL;
    if (gdk_pixbuf_get_width (pb) != c->width || gdk_pixbuf_get_height (pb) != c->height ||
        gdk_pixbuf_get_bits_per_sample (pb) != 8) {
      g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_CORRUPT,
                   _("Frame %d of clip “%s” has the wrong size"), f, c->id);
      return NULL;
    }
    int nch = gdk_pixbuf_get_n_channels (pb), stride = gdk_pixbuf_get_rowstride (pb);
    const guint8 *px = gdk_pixbuf_read_pixels (pb);
    guint8 *dst = rgb + f * frame_bytes;
    for (int y = 0; y < c->height; y++)
      for (int x = 0; x < c->width; x++)
        memcpy (dst + ((gsize) y * c->width + x) * 3, px + (gsize) y * stride + x * nch, 3);
  }
  *frames = c->frames;
  *height = c->height;
  *width = c->width;
  return g_steal_pointer (&rgb);
}

float *
kin_project_clip_load_latents (KinProjectClip *c, int *channels, int *t, int *h, int *w,
                               GError **error)
{
  g_autofree char *path = clip_file (c, LATENTS_FILE);
  g_autoptr (KinWeights) ws = kin_weights_open (path, error);
  if (ws == NULL)
    return NULL;
  const KinWeightEntry *e = kin_weights_lookup (ws, "latents");
  if (e == NULL || e->ndim != 4) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_CORRUPT,
                 _("%s holds no 4-dimensional tensor “latents”"), path);
    return NULL;
  }
  float *out = kin_weight_entry_to_f32 (e);
  if (out == NULL) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_CORRUPT,
                 _("The latents in %s have an unsupported type"), path);
    return NULL;
  }
  *channels = (int) e->shape[0];
  *t = (int) e->shape[1];
  *h = (int) e->shape[2];
  *w = (int) e->shape[3];
  return out;
}

/* ---- clip ⇄ JSON ---- */

static JsonNode *
clip_to_json (KinProjectClip *c)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autofree char *created = g_date_time_format_iso8601 (c->created);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "id");
  json_builder_add_string_value (b, c->id);
  json_builder_set_member_name (b, "created");
  json_builder_add_string_value (b, created);
  json_builder_set_member_name (b, "frames");
  json_builder_add_int_value (b, c->frames);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, c->width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, c->height);
  json_builder_set_member_name (b, "fps");
  json_builder_add_int_value (b, c->fps);
  json_builder_set_member_name (b, "generation_seconds");
  json_builder_add_double_value (b, c->gen_seconds);
  json_builder_set_member_name (b, "video");
  if (c->video != NULL)
    json_builder_add_string_value (b, c->video);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "request");
  json_builder_add_value (b, kin_request_to_json (&c->request));
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static gboolean
valid_id (const char *id)
{
  if (id == NULL || *id == '\0' || strcmp (id, ".") == 0 || strcmp (id, "..") == 0)
    return FALSE;
  for (const char *p = id; *p; p++)
    if (!g_ascii_isalnum (*p) && *p != '-' && *p != '_')
      return FALSE;
  return TRUE;
}

static gboolean
corrupt (GError **error, const char *where, const char *what)
{
  g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_CORRUPT,
               _("%s is damaged: %s"), where, what);
  return FALSE;
}

static KinProjectClip *
clip_from_json (JsonNode *node, const char *where, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    corrupt (error, where, _("a clip entry is not an object"));
    return NULL;
  }
  JsonObject *o = json_node_get_object (node);
  const char *id = json_object_get_string_member_with_default (o, "id", NULL);
  if (!valid_id (id)) {
    corrupt (error, where, _("a clip has no valid “id”"));
    return NULL;
  }
  g_autoptr (KinProjectClip) c = g_object_new (KIN_TYPE_PROJECT_CLIP, NULL);
  c->id = g_strdup (id);
  c->frames = (int) json_object_get_int_member_with_default (o, "frames", 0);
  c->width = (int) json_object_get_int_member_with_default (o, "width", 0);
  c->height = (int) json_object_get_int_member_with_default (o, "height", 0);
  c->fps = (int) json_object_get_int_member_with_default (o, "fps", 8);
  c->gen_seconds = json_object_get_double_member_with_default (o, "generation_seconds", 0);
  if (c->frames < 1 || c->width < 1 || c->height < 1 || c->frames > 100000 ||
      c->width > 16384 || c->height > 16384) {
    corrupt (error, where, _("a clip has impossible sizes"));
    return NULL;
  }
  const char *created = json_object_get_string_member_with_default (o, "created", NULL);
  c->created = created ? g_date_time_new_from_iso8601 (created, NULL) : NULL;
  if (c->created == NULL)
    c->created = g_date_time_new_now_local ();
  const char *video = json_object_get_string_member_with_default (o, "video", NULL);
  if (video != NULL && strchr (video, '/') == NULL && video[0] != '.')
    c->video = g_strdup (video);
  JsonNode *req = json_object_get_member (o, "request");
  g_autoptr (GError) local = NULL;
  if (req == NULL || !kin_request_from_json (&c->request, req, &local)) {
    corrupt (error, where, local ? local->message : _("a clip has no request"));
    return NULL;
  }
  return g_steal_pointer (&c);
}

/* ================================================================ projects */

struct _KinProject {
  GObject parent_instance;
  char *path;                /* the .kinora folder */
  char *name;
  GDateTime *created;
  GListStore *clips;
  gboolean dirty;
};

G_DEFINE_FINAL_TYPE (KinProject, kin_project, G_TYPE_OBJECT)

enum { PROP_0, PROP_PATH, PROP_NAME, PROP_DIRTY, N_PROPS };
static GParamSpec *props[N_PROPS];

static void
kin_project_finalize (GObject *object)
{
  KinProject *self = KIN_PROJECT (object);
  g_free (self->path);
  g_free (self->name);
  g_clear_pointer (&self->created, g_date_time_unref);
  g_clear_object (&self->clips);
  G_OBJECT_CLASS (kin_project_parent_class)->finalize (object);
}

static void
kin_project_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  KinProject *self = KIN_PROJECT (object);
  switch (prop_id) {
  case PROP_PATH: g_value_set_string (value, self->path); break;
  case PROP_NAME: g_value_set_string (value, self->name); break;
  case PROP_DIRTY: g_value_set_boolean (value, self->dirty); break;
  default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
  }
}

static void
kin_project_class_init (KinProjectClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->finalize = kin_project_finalize;
  object_class->get_property = kin_project_get_property;
  props[PROP_PATH] = g_param_spec_string ("path", NULL, NULL, NULL,
                                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  props[PROP_NAME] = g_param_spec_string ("name", NULL, NULL, NULL,
                                          G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  props[PROP_DIRTY] = g_param_spec_boolean ("dirty", NULL, NULL, FALSE,
                                            G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
}

static void
kin_project_init (KinProject *self)
{
  self->clips = g_list_store_new (KIN_TYPE_PROJECT_CLIP);
}

static void
set_dirty (KinProject *self, gboolean dirty)
{
  if (self->dirty == dirty)
    return;
  self->dirty = dirty;
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_DIRTY]);
}

const char *kin_project_get_path (KinProject *self) { return self->path; }
const char *kin_project_get_name (KinProject *self) { return self->name; }
gboolean kin_project_get_dirty (KinProject *self) { return self->dirty; }
GListModel *kin_project_get_clips (KinProject *self) { return G_LIST_MODEL (self->clips); }

void
kin_project_set_name (KinProject *self, const char *name)
{
  if (g_strcmp0 (self->name, name) == 0)
    return;
  g_free (self->name);
  self->name = g_strdup (name);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_NAME]);
  set_dirty (self, TRUE);
}

KinProjectClip *
kin_project_find_clip (KinProject *self, const char *id)
{
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->clips));
  for (guint i = 0; i < n; i++) {
    g_autoptr (KinProjectClip) c = g_list_model_get_item (G_LIST_MODEL (self->clips), i);
    if (g_strcmp0 (c->id, id) == 0)
      return c; /* the store keeps a reference */
  }
  return NULL;
}

static char *
name_from_path (const char *path)
{
  g_autofree char *base = g_path_get_basename (path);
  if (g_str_has_suffix (base, KIN_PROJECT_SUFFIX))
    base[strlen (base) - strlen (KIN_PROJECT_SUFFIX)] = '\0';
  return g_steal_pointer (&base);
}

static char *
normalise_path (const char *path)
{
  g_autofree char *abs = g_canonicalize_filename (path, NULL);
  if (g_str_has_suffix (abs, "/" PROJECT_FILE))
    abs[strlen (abs) - strlen ("/" PROJECT_FILE)] = '\0';
  return g_steal_pointer (&abs);
}

static JsonNode *
project_to_json (KinProject *self)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_autofree char *created = g_date_time_format_iso8601 (self->created);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, KIN_PROJECT_VERSION);
  json_builder_set_member_name (b, "generator");
  json_builder_add_string_value (b, "Kinora " KIN_VERSION);
  json_builder_set_member_name (b, "name");
  json_builder_add_string_value (b, self->name);
  json_builder_set_member_name (b, "created");
  json_builder_add_string_value (b, created);
  json_builder_set_member_name (b, "clips");
  json_builder_begin_array (b);
  guint n = g_list_model_get_n_items (G_LIST_MODEL (self->clips));
  for (guint i = 0; i < n; i++) {
    g_autoptr (KinProjectClip) c = g_list_model_get_item (G_LIST_MODEL (self->clips), i);
    json_builder_add_value (b, clip_to_json (c));
  }
  json_builder_end_array (b);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}

static gboolean
write_json (const char *path, JsonNode *node, GError **error)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_pretty (gen, TRUE);
  json_generator_set_root (gen, node);
  gsize len = 0;
  g_autofree char *text = json_generator_to_data (gen, &len);
  g_autoptr (GError) local = NULL;
  /* g_file_set_contents writes a temporary file beside @path and renames it into place. */
  if (!g_file_set_contents_full (path, text, (gssize) len, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                 &local)) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO, _("Could not write %s: %s"),
                 path, local->message);
    return FALSE;
  }
  return TRUE;
}

static char *
damaged_name (const char *file)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%d-%H%M%S");
  return g_strdup_printf ("%s.damaged-%s", file, stamp);
}

/* Parses project.json into a node; any syntax problem is CORRUPT. */
static JsonNode *
read_json (const char *file, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) local = NULL;
  if (!json_parser_load_from_mapped_file (parser, file, &local)) {
    if (g_error_matches (local, G_FILE_ERROR, G_FILE_ERROR_NOENT))
      g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_NOT_FOUND,
                   _("There is no Kinora project at %s"), file);
    else if (local->domain == G_FILE_ERROR)
      g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO, _("Could not read %s: %s"),
                   file, local->message);
    else
      corrupt (error, file, local->message);
    return NULL;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    corrupt (error, file, _("it does not hold a JSON object"));
    return NULL;
  }
  return json_node_copy (root);
}

gboolean
kin_project_save (KinProject *self, GError **error)
{
  g_autofree char *file = g_build_filename (self->path, PROJECT_FILE, NULL);
  /* Someone else's damaged file is kept beside ours rather than silently replaced. */
  if (g_file_test (file, G_FILE_TEST_EXISTS)) {
    g_autoptr (JsonNode) old = read_json (file, NULL);
    if (old == NULL) {
      g_autofree char *aside = damaged_name (file);
      g_warning ("%s could not be read; keeping it as %s", file, aside);
      if (g_rename (file, aside) != 0) {
        int e = errno;
        g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO,
                     _("%s is damaged and could not be set aside: %s"), file, g_strerror (e));
        return FALSE;
      }
    }
  }
  g_autoptr (JsonNode) root = project_to_json (self);
  if (!write_json (file, root, error))
    return FALSE;
  set_dirty (self, FALSE);
  return TRUE;
}

static gboolean
make_dir (const char *path, GError **error)
{
  if (g_mkdir_with_parents (path, 0755) != 0) {
    int e = errno;
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO, _("Could not create %s: %s"),
                 path, g_strerror (e));
    return FALSE;
  }
  return TRUE;
}

KinProject *
kin_project_create (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_autofree char *dir = normalise_path (path);
  if (!g_str_has_suffix (dir, KIN_PROJECT_SUFFIX)) {
    char *with = g_strconcat (dir, KIN_PROJECT_SUFFIX, NULL);
    g_free (dir);
    dir = with;
  }
  g_autofree char *file = g_build_filename (dir, PROJECT_FILE, NULL);
  if (g_file_test (file, G_FILE_TEST_EXISTS)) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_EXISTS,
                 _("A project already exists at %s"), dir);
    return NULL;
  }
  g_autofree char *clips = g_build_filename (dir, "clips", NULL);
  if (!make_dir (clips, error))
    return NULL;
  g_autoptr (KinProject) self = g_object_new (KIN_TYPE_PROJECT, NULL);
  self->path = g_steal_pointer (&dir);
  self->name = name_from_path (self->path);
  self->created = g_date_time_new_now_local ();
  if (!kin_project_save (self, error))
    return NULL;
  return g_steal_pointer (&self);
}

static gboolean
load_clips (KinProject *self, JsonObject *o, const char *file, GError **error)
{
  JsonNode *clips = json_object_get_member (o, "clips");
  if (clips == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY (clips))
    return corrupt (error, file, _("“clips” is not a list"));
  JsonArray *arr = json_node_get_array (clips);
  for (guint i = 0; i < json_array_get_length (arr); i++) {
    g_autoptr (KinProjectClip) c = clip_from_json (json_array_get_element (arr, i), file, error);
    if (c == NULL)
      return FALSE;
    if (kin_project_find_clip (self, c->id) != NULL)
      return corrupt (error, file, _("two clips share one id"));
    clip_attach (c, self);
    g_list_store_append (self->clips, c);
  }
  return TRUE;
}

KinProject *
kin_project_open (const char *path, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  g_autofree char *dir = normalise_path (path);
  if (!g_file_test (dir, G_FILE_TEST_EXISTS) && !g_str_has_suffix (dir, KIN_PROJECT_SUFFIX)) {
    char *with = g_strconcat (dir, KIN_PROJECT_SUFFIX, NULL);
    g_free (dir);
    dir = with;
  }
  g_autofree char *file = g_build_filename (dir, PROJECT_FILE, NULL);
  g_autoptr (JsonNode) root = read_json (file, error);
  if (root == NULL)
    return NULL;
  JsonObject *o = json_node_get_object (root);
  JsonNode *version = json_object_get_member (o, "version");
  if (version == NULL || json_node_get_value_type (version) != G_TYPE_INT64) {
    corrupt (error, file, _("it has no “version” number, so it is not a Kinora project"));
    return NULL;
  }
  gint64 v = json_node_get_int (version);
  if (v > KIN_PROJECT_VERSION) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_TOO_NEW,
                 _("%s was saved by a newer Kinora (format %d; this version reads up to %d)"),
                 file, (int) v, KIN_PROJECT_VERSION);
    return NULL;
  }
  if (v < 1) {
    corrupt (error, file, _("its “version” is not valid"));
    return NULL;
  }
  g_autoptr (KinProject) self = g_object_new (KIN_TYPE_PROJECT, NULL);
  self->path = g_steal_pointer (&dir);
  const char *name = json_object_get_string_member_with_default (o, "name", NULL);
  self->name = name != NULL && *name ? g_strdup (name) : name_from_path (self->path);
  const char *created = json_object_get_string_member_with_default (o, "created", NULL);
  self->created = created ? g_date_time_new_from_iso8601 (created, NULL) : NULL;
  if (self->created == NULL)
    self->created = g_date_time_new_now_local ();
  if (!load_clips (self, o, file, error))
    return NULL;
  return g_steal_pointer (&self);
}

static gint
compare_created (gconstpointer a, gconstpointer b, gpointer user_data)
{
  KinProjectClip *ca = (KinProjectClip *) a, *cb = (KinProjectClip *) b;
  int r = g_date_time_compare (ca->created, cb->created);
  return r != 0 ? r : g_strcmp0 (ca->id, cb->id);
}

KinProject *
kin_project_recover (const char *path, GError **error)
{
  g_autofree char *dir = normalise_path (path);
  g_autofree char *file = g_build_filename (dir, PROJECT_FILE, NULL);
  if (g_file_test (file, G_FILE_TEST_EXISTS)) {
    g_autofree char *aside = damaged_name (file);
    if (g_rename (file, aside) != 0) {
      int e = errno;
      g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO,
                   _("Could not set %s aside: %s"), file, g_strerror (e));
      return NULL;
    }
  }
  g_autoptr (KinProject) self = g_object_new (KIN_TYPE_PROJECT, NULL);
  self->path = g_steal_pointer (&dir);
  self->name = name_from_path (self->path);
  self->created = g_date_time_new_now_local ();
  g_autofree char *clips = g_build_filename (self->path, "clips", NULL);
  if (!make_dir (clips, error))
    return NULL;
  g_autoptr (GDir) d = g_dir_open (clips, 0, NULL);
  const char *entry;
  while (d != NULL && (entry = g_dir_read_name (d)) != NULL) {
    g_autofree char *cj = g_build_filename (clips, entry, CLIP_FILE, NULL);
    g_autoptr (JsonNode) node = read_json (cj, NULL);
    g_autoptr (KinProjectClip) c = node ? clip_from_json (node, cj, NULL) : NULL;
    if (c == NULL || strcmp (c->id, entry) != 0 || kin_project_find_clip (self, c->id) != NULL)
      continue; /* unreadable or half-written clips stay on disk, untouched */
    clip_attach (c, self);
    g_list_store_insert_sorted (self->clips, c, compare_created, NULL);
  }
  if (!kin_project_save (self, error))
    return NULL;
  return g_steal_pointer (&self);
}

/* ---- copying a project (Save As) ---- */

static gboolean
copy_tree (GFile *src, GFile *dst, GError **error)
{
  if (!g_file_make_directory_with_parents (dst, NULL, error)) {
    if (!g_error_matches (*error, G_IO_ERROR, G_IO_ERROR_EXISTS))
      return FALSE;
    g_clear_error (error);
  }
  g_autoptr (GFileEnumerator) en = g_file_enumerate_children (
      src, G_FILE_ATTRIBUTE_STANDARD_NAME "," G_FILE_ATTRIBUTE_STANDARD_TYPE,
      G_FILE_QUERY_INFO_NOFOLLOW_SYMLINKS, NULL, error);
  if (en == NULL)
    return FALSE;
  for (;;) {
    GFileInfo *info = NULL;
    GFile *child = NULL;
    if (!g_file_enumerator_iterate (en, &info, &child, NULL, error))
      return FALSE;
    if (info == NULL)
      break;
    g_autoptr (GFile) target = g_file_get_child (dst, g_file_info_get_name (info));
    gboolean ok = g_file_info_get_file_type (info) == G_FILE_TYPE_DIRECTORY
                    ? copy_tree (child, target, error)
                    : g_file_copy (child, target, G_FILE_COPY_OVERWRITE, NULL, NULL, NULL, error);
    if (!ok)
      return FALSE;
  }
  return TRUE;
}

gboolean
kin_project_save_as (KinProject *self, const char *path, GError **error)
{
  g_autofree char *dir = normalise_path (path);
  if (!g_str_has_suffix (dir, KIN_PROJECT_SUFFIX)) {
    char *with = g_strconcat (dir, KIN_PROJECT_SUFFIX, NULL);
    g_free (dir);
    dir = with;
  }
  if (g_strcmp0 (dir, self->path) == 0)
    return kin_project_save (self, error);
  g_autofree char *file = g_build_filename (dir, PROJECT_FILE, NULL);
  if (g_file_test (file, G_FILE_TEST_EXISTS)) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_EXISTS,
                 _("A project already exists at %s"), dir);
    return FALSE;
  }
  g_autoptr (GFile) src = g_file_new_for_path (self->path);
  g_autoptr (GFile) dst = g_file_new_for_path (dir);
  g_autoptr (GError) local = NULL;
  if (!copy_tree (src, dst, &local)) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO, _("Could not copy %s to %s: %s"),
                 self->path, dir, local->message);
    return FALSE;
  }
  g_free (self->path);
  self->path = g_steal_pointer (&dir);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_PATH]);
  g_free (self->name);
  self->name = name_from_path (self->path);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_NAME]);
  return kin_project_save (self, error);
}

/* ---- adding clips ---- */

static char *
new_clip_id (KinProject *self)
{
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%Y%m%d-%H%M%S");
  for (;;) {
    char *id = g_strdup_printf ("clip-%s-%04x", stamp, g_random_int_range (0, 0x10000));
    g_autofree char *dir = g_build_filename (self->path, "clips", id, NULL);
    g_autofree char *part = g_strconcat (dir, ".partial", NULL);
    /* Only the disk is consulted: this may run off the main thread. */
    if (!g_file_test (dir, G_FILE_TEST_EXISTS) && !g_file_test (part, G_FILE_TEST_EXISTS))
      return id;
    g_free (id);
  }
}

static gboolean
save_rgb_png (const guint8 *rgb, int w, int h, const char *path, int thumb_w, GError **error)
{
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_new_from_data (rgb, GDK_COLORSPACE_RGB, FALSE, 8, w, h,
                                                       w * 3, NULL, NULL);
  g_autoptr (GdkPixbuf) scaled = NULL;
  if (thumb_w > 0 && thumb_w < w)
    scaled = gdk_pixbuf_scale_simple (pb, thumb_w, MAX (1, h * thumb_w / w), GDK_INTERP_BILINEAR);
  g_autofree char *tmp = g_strconcat (path, ".part", NULL);
  g_autoptr (GError) local = NULL;
  if (!gdk_pixbuf_save (scaled ? scaled : pb, tmp, "png", &local, "compression", "3", NULL) ||
      g_rename (tmp, path) != 0) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO, _("Could not write %s: %s"),
                 path, local ? local->message : g_strerror (errno));
    g_unlink (tmp);
    return FALSE;
  }
  return TRUE;
}

/* Until app/kin-export lands, the frames of every clip are kept as a PNG sequence; the GUI plays
 * them from memory and a video writer (when given) adds a playable file beside them. */
static gboolean
write_frames (const KinClip *clip, const char *dir, GError **error)
{
  g_autofree char *frames = g_build_filename (dir, "frames", NULL);
  if (!make_dir (frames, error))
    return FALSE;
  gsize frame_bytes = (gsize) clip->width * clip->height * 3;
  for (int f = 0; f < clip->frames; f++) {
    g_autofree char *name = g_strdup_printf ("%04d.png", f);
    g_autofree char *path = g_build_filename (frames, name, NULL);
    if (!save_rgb_png (clip->rgb + f * frame_bytes, clip->width, clip->height, path, 0, error))
      return FALSE;
  }
  g_autofree char *thumb = g_build_filename (dir, THUMB_FILE, NULL);
  return save_rgb_png (clip->rgb + (clip->frames / 2) * frame_bytes, clip->width, clip->height,
                       thumb, THUMB_WIDTH, error);
}

static gboolean
write_latents (const KinClip *clip, const char *dir, GError **error)
{
  if (clip->latents == NULL)
    return TRUE;
  g_autofree char *path = g_build_filename (dir, LATENTS_FILE, NULL);
  const char *names[] = { "latents" };
  KinDType dtypes[] = { KIN_DTYPE_F32 };
  int ndims[] = { 4 };
  int64_t shape[] = { clip->latent_channels, clip->latent_frames, clip->latent_h, clip->latent_w };
  const int64_t *shapes[] = { shape };
  const void *datas[] = { clip->latents };
  g_autoptr (GHashTable) meta = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  g_hash_table_insert (meta, (char *) "format", g_strdup ("kinora-latents"));
  g_hash_table_insert (meta, (char *) "prompt", g_strdup (clip->request.prompt ? clip->request.prompt : ""));
  g_hash_table_insert (meta, (char *) "seed",
                       g_strdup_printf ("%" G_GUINT64_FORMAT, clip->request.seed));
  return kin_safetensors_write (path, 1, names, dtypes, ndims, shapes, datas, meta, error);
}

static KinProjectClip *
clip_from_kin_clip (KinProject *self, const KinClip *clip, char *id)
{
  KinProjectClip *c = g_object_new (KIN_TYPE_PROJECT_CLIP, NULL);
  c->id = id;
  kin_request_copy (&c->request, &clip->request);
  c->request.cond_image = NULL;
  c->request.cond_latents = NULL;
  c->frames = clip->frames;
  c->width = clip->width;
  c->height = clip->height;
  c->fps = clip->fps > 0 ? clip->fps : 8;
  c->gen_seconds = clip->seconds;
  c->created = g_date_time_new_now_local ();
  clip_attach (c, self);
  return c;
}

static void
remove_tree (const char *path)
{
  g_autoptr (GDir) d = g_dir_open (path, 0, NULL);
  const char *entry;
  while (d != NULL && (entry = g_dir_read_name (d)) != NULL) {
    g_autofree char *child = g_build_filename (path, entry, NULL);
    if (g_file_test (child, G_FILE_TEST_IS_DIR) && !g_file_test (child, G_FILE_TEST_IS_SYMLINK))
      remove_tree (child);
    else
      g_unlink (child);
  }
  g_rmdir (path);
}

static gboolean
write_clip_files (KinProjectClip *c, const KinClip *clip, const char *part,
                  KinClipVideoWriter video_writer, gpointer user_data, GError **error)
{
  g_autofree char *req_path = g_build_filename (part, REQUEST_FILE, NULL);
  g_autoptr (JsonNode) req = kin_request_to_json (&c->request);
  if (!write_json (req_path, req, error) || !write_latents (clip, part, error) ||
      !write_frames (clip, part, error))
    return FALSE;
  if (video_writer != NULL) {
    g_autoptr (GError) local = NULL;
    c->video = video_writer (clip, part, user_data, &local);
    if (c->video == NULL) /* the PNG frames still hold the clip; players fall back to them */
      g_message ("No video file for clip %s: %s", c->id, local ? local->message : "?");
  }
  g_autofree char *clip_path = g_build_filename (part, CLIP_FILE, NULL);
  g_autoptr (JsonNode) meta = clip_to_json (c);
  return write_json (clip_path, meta, error);
}

KinProjectClip *
kin_project_write_clip (KinProject *self, const KinClip *clip, KinClipVideoWriter video_writer,
                        gpointer user_data, GError **error)
{
  g_return_val_if_fail (clip != NULL && clip->rgb != NULL && clip->frames > 0, NULL);
  g_autoptr (KinProjectClip) c = clip_from_kin_clip (self, clip, new_clip_id (self));
  g_autofree char *dir = g_build_filename (self->path, "clips", c->id, NULL);
  g_autofree char *part = g_strconcat (dir, ".partial", NULL);
  /* Everything is written into clips/<id>.partial and renamed at the end: a clip folder
   * without the suffix is always complete. */
  if (!make_dir (part, error) ||
      !write_clip_files (c, clip, part, video_writer, user_data, error)) {
    remove_tree (part);
    return NULL;
  }
  if (g_rename (part, dir) != 0) {
    int e = errno;
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO, _("Could not write %s: %s"), dir,
                 g_strerror (e));
    remove_tree (part);
    return NULL;
  }
  return g_steal_pointer (&c);
}

gboolean
kin_project_append_clip (KinProject *self, KinProjectClip *clip, GError **error)
{
  clip_attach (clip, self);
  g_list_store_append (self->clips, clip);
  set_dirty (self, TRUE);
  /* On failure the clip stays in the timeline and on disk; saving can be retried. */
  return kin_project_save (self, error);
}

KinProjectClip *
kin_project_add_clip (KinProject *self, const KinClip *clip, KinClipVideoWriter video_writer,
                      gpointer user_data, GError **error)
{
  g_autoptr (KinProjectClip) c = kin_project_write_clip (self, clip, video_writer, user_data, error);
  if (c == NULL || !kin_project_append_clip (self, c, error))
    return NULL;
  return c; /* owned by the store */
}

int
kin_project_remove_clip (KinProject *self, KinProjectClip *clip, GError **error)
{
  guint pos = 0;
  if (!g_list_store_find (self->clips, clip, &pos))
    return -1;
  g_object_ref (clip); /* keep it for undo even while it is out of the store */
  g_list_store_remove (self->clips, pos);
  set_dirty (self, TRUE);
  gboolean ok = kin_project_save (self, error);
  g_object_unref (clip);
  return ok ? (int) pos : -1;
}

gboolean
kin_project_restore_clip (KinProject *self, KinProjectClip *clip, guint position, GError **error)
{
  if (kin_project_find_clip (self, clip->id) == NULL) {
    guint n = g_list_model_get_n_items (G_LIST_MODEL (self->clips));
    clip_attach (clip, self);
    g_list_store_insert (self->clips, MIN (position, n), clip);
    set_dirty (self, TRUE);
  }
  return kin_project_save (self, error);
}

gboolean
kin_project_purge_clip (KinProject *self, KinProjectClip *clip, GError **error)
{
  if (kin_project_find_clip (self, clip->id) != NULL) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO,
                 _("Clip “%s” is still in the timeline"), clip->id);
    return FALSE;
  }
  g_autofree char *dir = g_build_filename (self->path, "clips", clip->id, NULL);
  remove_tree (dir);
  if (g_file_test (dir, G_FILE_TEST_EXISTS)) {
    g_set_error (error, KIN_PROJECT_ERROR, KIN_PROJECT_ERROR_IO, _("Could not delete %s"), dir);
    return FALSE;
  }
  return TRUE;
}

char *
kin_project_make_unique_path (const char *parent, const char *name)
{
  for (int i = 1;; i++) {
    g_autofree char *base = i == 1 ? g_strconcat (name, KIN_PROJECT_SUFFIX, NULL)
                                   : g_strdup_printf ("%s %d" KIN_PROJECT_SUFFIX, name, i);
    char *path = g_build_filename (parent, base, NULL);
    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      return path;
    g_free (path);
  }
}
