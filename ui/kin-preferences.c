/* kin-preferences.c — see kin-preferences.h. */
#include "kin-config.h"
#include "kin-preferences.h"
#include "kin-weights.h"
#include <glib/gi18n.h>
#include <json-glib/json-glib.h>

typedef struct {
  const char *key;           /* GSettings key */
  const char *kind;          /* "transformer", "text-encoder", "vae" */
  AdwActionRow *row;
  GtkWidget *clear;
  guint serial;
} FolderRow;

enum { ROW_TRANSFORMER, ROW_TEXT_ENCODER, ROW_VAE, N_ROWS };

struct _KinPreferences {
  AdwPreferencesWindow parent_instance;
  KinApplication *app;
  GSettings *settings;
  GCancellable *cancellable;
  FolderRow rows[N_ROWS];

  AdwActionRow *transformer_row, *text_encoder_row, *vae_row;
  GtkButton *transformer_choose, *text_encoder_choose, *vae_choose;
  GtkButton *transformer_clear, *text_encoder_clear, *vae_clear;
  AdwActionRow *check_row;
  GtkSpinner *check_spinner;
  GtkButton *check_button;
  AdwComboRow *device_row, *memory_row, *export_row;
  gboolean checking;
  gboolean check_ok;
  char *check_result;
};

G_DEFINE_FINAL_TYPE (KinPreferences, kin_preferences, ADW_TYPE_PREFERENCES_WINDOW)

/* ================================================================ folder validation */

static const char *
model_family (const char *path)
{
  g_autofree char *config = g_build_filename (path, "config.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, config, NULL))
    return NULL;
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    return NULL;
  JsonObject *o = json_node_get_object (root);
  const char *names[] = { "_class_name", "model_type", "architecture" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    const char *v = json_object_get_string_member_with_default (o, names[i], NULL);
    if (v != NULL)
      return g_intern_string (v);
  }
  JsonArray *arch = json_object_get_array_member (o, "architectures");
  if (arch != NULL && json_array_get_length (arch) > 0)
    return g_intern_string (json_array_get_string_element (arch, 0));
  return g_intern_static_string ("config.json");
}

static gboolean
has_tokenizer (const char *path)
{
  const char *names[] = { "spiece.model", "tokenizer.json" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++) {
    g_autofree char *p = g_build_filename (path, names[i], NULL);
    if (g_file_test (p, G_FILE_TEST_IS_REGULAR))
      return TRUE;
  }
  return FALSE;
}

char *
kin_describe_model_folder (const char *path, const char *kind, GError **error)
{
  if (!g_file_test (path, G_FILE_TEST_EXISTS)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, _("%s does not exist"), path);
    return NULL;
  }
  if (g_strcmp0 (kind, "text-encoder") == 0 && g_file_test (path, G_FILE_TEST_IS_DIR) &&
      !has_tokenizer (path)) {
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                 _("No tokenizer (spiece.model or tokenizer.json) in this folder"));
    return NULL;
  }
  g_autoptr (KinWeights) ws = kin_weights_open (path, error);
  if (ws == NULL)
    return NULL;
  guint64 disk = 0, memory = 0;
  guint n = kin_weights_count (ws);
  for (guint i = 0; i < n; i++) {
    const KinWeightEntry *e = kin_weights_nth (ws, i);
    disk += e->nbytes;
    /* The CPU backend computes in f32: half-precision weights take twice their size. */
    memory += (e->dtype == KIN_DTYPE_F16 || e->dtype == KIN_DTYPE_BF16) ? e->nbytes * 2 : e->nbytes;
  }
  const char *family = g_file_test (path, G_FILE_TEST_IS_DIR) ? model_family (path) : NULL;
  g_autofree char *disk_s = g_format_size (disk);
  g_autofree char *mem_s = g_format_size (memory);
  /* TRANSLATORS: "STDiT2 · 1,152 tensors from model.safetensors · 2.3 GB on disk · about 4.6 GB
   * of memory" */
  return g_strdup_printf (_("%s · %u tensors from %s · %s on disk · about %s of memory"),
                          family ? family : _("checkpoint"), n, kin_weights_source (ws), disk_s,
                          mem_s);
}

typedef struct {
  KinPreferences *prefs;
  FolderRow *row;
  guint serial;
  char *path;
} DescribeData;

static void
describe_data_free (DescribeData *d)
{
  g_object_unref (d->prefs);
  g_free (d->path);
  g_free (d);
}

static void
describe_thread (GTask *task, gpointer source, gpointer data, GCancellable *cancellable)
{
  DescribeData *d = data;
  GError *error = NULL;
  char *text = kin_describe_model_folder (d->path, d->row->kind, &error);
  if (text == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_pointer (task, text, g_free);
}

static char *
shorten_home (const char *path)
{
  const char *home = g_get_home_dir ();
  return g_str_has_prefix (path, home) ? g_strconcat ("~", path + strlen (home), NULL) : g_strdup (path);
}

static void
on_described (GObject *source, GAsyncResult *result, gpointer data)
{
  DescribeData *d = g_task_get_task_data (G_TASK (result));
  g_autoptr (GError) error = NULL;
  g_autofree char *text = g_task_propagate_pointer (G_TASK (result), &error);
  if (d->serial != d->row->serial || g_cancellable_is_cancelled (d->prefs->cancellable))
    return;
  g_autofree char *shown = shorten_home (d->path);
  g_autofree char *escaped = g_markup_escape_text (shown, -1);
  g_autofree char *info = g_markup_escape_text (text ? text : error->message, -1);
  g_autofree char *subtitle = text != NULL
    ? g_strdup_printf ("%s\n%s", escaped, info)
    : g_strdup_printf ("%s\n<span foreground=\"#c01c28\">⚠ %s</span>", escaped, info);
  adw_action_row_set_subtitle (d->row->row, subtitle);
}

static void
update_row (KinPreferences *self, FolderRow *row)
{
  g_autofree char *path = g_settings_get_string (self->settings, row->key);
  row->serial++;
  gtk_widget_set_sensitive (row->clear, *path != '\0');
  if (*path == '\0') {
    /* Unset: the demo pack, when this installation has one. */
    KinModelPaths demo = { 0 };
    if (kin_pipeline_default_paths (&demo)) {
      kin_model_paths_clear (&demo);
      adw_action_row_set_subtitle (row->row, _("Built-in demo model"));
    } else {
      g_autofree char *msg = g_markup_printf_escaped ("<span foreground=\"#c01c28\">⚠ %s</span>",
        _("The built-in demo model is not installed: choose a model folder"));
      adw_action_row_set_subtitle (row->row, msg);
    }
    return;
  }
  g_autofree char *shown = shorten_home (path);
  g_autofree char *escaped = g_markup_escape_text (shown, -1);
  g_autofree char *subtitle = g_strdup_printf ("%s\n%s", escaped, _("Checking…"));
  adw_action_row_set_subtitle (row->row, subtitle);
  DescribeData *d = g_new0 (DescribeData, 1);
  d->prefs = g_object_ref (self);
  d->row = row;
  d->serial = row->serial;
  d->path = g_steal_pointer (&path);
  g_autoptr (GTask) task = g_task_new (NULL, self->cancellable, on_described, NULL);
  g_task_set_task_data (task, d, (GDestroyNotify) describe_data_free);
  g_task_run_in_thread (task, describe_thread);
}

static void
on_setting_changed (GSettings *settings, const char *key, KinPreferences *self)
{
  for (int i = 0; i < N_ROWS; i++)
    if (g_strcmp0 (key, self->rows[i].key) == 0)
      update_row (self, &self->rows[i]);
}

/* ================================================================ choosing folders */

static void
on_folder_chosen (GtkNativeDialog *dialog, int response, KinPreferences *self)
{
  FolderRow *row = g_object_get_data (G_OBJECT (dialog), "row");
  if (response == GTK_RESPONSE_ACCEPT) {
    g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
    g_autofree char *path = g_file_get_path (file);
    g_settings_set_string (self->settings, row->key, path);
  }
  g_object_unref (dialog);
}

static void
choose_folder (KinPreferences *self, FolderRow *row)
{
  GtkFileChooserNative *dialog = gtk_file_chooser_native_new (
      adw_preferences_row_get_title (ADW_PREFERENCES_ROW (row->row)), GTK_WINDOW (self),
      GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, _("_Select"), NULL);
  g_object_set_data (G_OBJECT (dialog), "row", row);
  g_signal_connect (dialog, "response", G_CALLBACK (on_folder_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (dialog));
}

static void on_choose_transformer (KinPreferences *s) { choose_folder (s, &s->rows[ROW_TRANSFORMER]); }
static void on_choose_text_encoder (KinPreferences *s) { choose_folder (s, &s->rows[ROW_TEXT_ENCODER]); }
static void on_choose_vae (KinPreferences *s) { choose_folder (s, &s->rows[ROW_VAE]); }
static void on_clear_transformer (KinPreferences *s) { g_settings_reset (s->settings, s->rows[ROW_TRANSFORMER].key); }
static void on_clear_text_encoder (KinPreferences *s) { g_settings_reset (s->settings, s->rows[ROW_TEXT_ENCODER].key); }
static void on_clear_vae (KinPreferences *s) { g_settings_reset (s->settings, s->rows[ROW_VAE].key); }

/* ================================================================ engine check */

static void
on_engine_described (GObject *source, GAsyncResult *result, gpointer data)
{
  g_autoptr (KinPreferences) self = data;
  g_autoptr (GError) error = NULL;
  g_autofree char *text = kin_engine_describe_finish (KIN_ENGINE (source), result, &error);
  if (g_cancellable_is_cancelled (self->cancellable))
    return;
  gtk_spinner_stop (self->check_spinner);
  gtk_widget_set_sensitive (GTK_WIDGET (self->check_button), TRUE);
  self->checking = FALSE;
  self->check_ok = text != NULL;
  g_free (self->check_result);
  self->check_result = g_strdup (text ? text : error->message);
  g_autofree char *escaped = g_markup_escape_text (text ? g_strstrip (text) : error->message, -1);
  g_autofree char *subtitle = text != NULL
    ? g_strdup (escaped)
    : g_strdup_printf ("<span foreground=\"#c01c28\">⚠ %s</span>", escaped);
  adw_action_row_set_subtitle (self->check_row, subtitle);
}

void
kin_preferences_check (KinPreferences *self)
{
  if (self->checking)
    return;
  self->checking = TRUE;
  kin_application_apply_models (self->app);
  gtk_spinner_start (self->check_spinner);
  gtk_widget_set_sensitive (GTK_WIDGET (self->check_button), FALSE);
  adw_action_row_set_subtitle (self->check_row, _("Loading the models…"));
  kin_engine_describe_async (kin_application_get_engine (self->app), self->cancellable,
                             on_engine_described, g_object_ref (self));
}

const char *
kin_preferences_get_folder_status (KinPreferences *self, const char *key)
{
  for (int i = 0; i < N_ROWS; i++)
    if (g_strcmp0 (self->rows[i].key, key) == 0)
      return adw_action_row_get_subtitle (self->rows[i].row);
  return NULL;
}

gboolean
kin_preferences_get_checking (KinPreferences *self)
{
  return self->checking;
}

const char *
kin_preferences_get_check_result (KinPreferences *self, gboolean *ok)
{
  if (ok != NULL)
    *ok = self->check_ok;
  return self->check_result;
}

/* ================================================================ enum ⇄ combo */

static gboolean
enum_get (GValue *value, GVariant *variant, gpointer data)
{
  const char *const *nicks = data;
  const char *nick = g_variant_get_string (variant, NULL);
  for (guint i = 0; nicks[i] != NULL; i++)
    if (g_strcmp0 (nicks[i], nick) == 0) {
      g_value_set_uint (value, i);
      return TRUE;
    }
  return FALSE;
}

static GVariant *
enum_set (const GValue *value, const GVariantType *type, gpointer data)
{
  const char *const *nicks = data;
  guint i = g_value_get_uint (value);
  return i < g_strv_length ((char **) nicks) ? g_variant_new_string (nicks[i]) : NULL;
}

static void
bind_enum (GSettings *settings, const char *key, AdwComboRow *row, const char *const *nicks)
{
  g_settings_bind_with_mapping (settings, key, row, "selected", G_SETTINGS_BIND_DEFAULT, enum_get,
                                enum_set, (gpointer) nicks, NULL);
}

static const char *const device_nicks[] = { "auto", "cpu", "cuda", NULL };
static const char *const memory_nicks[] = { "balanced", "low", NULL };
static const char *const export_nicks[] = { "mp4", "webm", "png", "gif", NULL };

/* ================================================================ object */

static void
kin_preferences_dispose (GObject *object)
{
  KinPreferences *self = KIN_PREFERENCES (object);
  if (self->cancellable != NULL)
    g_cancellable_cancel (self->cancellable);
  g_clear_object (&self->cancellable);
  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_clear_object (&self->settings);
  g_clear_object (&self->app);
  g_clear_pointer (&self->check_result, g_free);
  gtk_widget_dispose_template (GTK_WIDGET (self), KIN_TYPE_PREFERENCES);
  G_OBJECT_CLASS (kin_preferences_parent_class)->dispose (object);
}

static void
kin_preferences_class_init (KinPreferencesClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = kin_preferences_dispose;
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/kinora/Kinora/kin-preferences.ui");
#define CHILD(name) gtk_widget_class_bind_template_child (widget_class, KinPreferences, name)
  CHILD (transformer_row); CHILD (text_encoder_row); CHILD (vae_row);
  CHILD (transformer_choose); CHILD (text_encoder_choose); CHILD (vae_choose);
  CHILD (transformer_clear); CHILD (text_encoder_clear); CHILD (vae_clear);
  CHILD (check_row); CHILD (check_spinner); CHILD (check_button);
  CHILD (device_row); CHILD (memory_row); CHILD (export_row);
#undef CHILD
}

static void
kin_preferences_init (KinPreferences *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->cancellable = g_cancellable_new ();
}

static void
connect_row (KinPreferences *self, int i, const char *key, const char *kind, AdwActionRow *row,
             GtkButton *choose, GCallback on_choose, GtkButton *clear, GCallback on_clear)
{
  self->rows[i] = (FolderRow) { key, kind, row, GTK_WIDGET (clear), 0 };
  g_signal_connect_swapped (choose, "clicked", on_choose, self);
  g_signal_connect_swapped (clear, "clicked", on_clear, self);
  update_row (self, &self->rows[i]);
}

KinPreferences *
kin_preferences_new (KinApplication *app, GtkWindow *parent)
{
  KinPreferences *self = g_object_new (KIN_TYPE_PREFERENCES, "transient-for", parent,
                                       "modal", parent != NULL, NULL);
  self->app = g_object_ref (app);
  self->settings = g_object_ref (kin_application_get_settings (app));
  connect_row (self, ROW_TRANSFORMER, "transformer-folder", "transformer", self->transformer_row,
               self->transformer_choose, G_CALLBACK (on_choose_transformer),
               self->transformer_clear, G_CALLBACK (on_clear_transformer));
  connect_row (self, ROW_TEXT_ENCODER, "text-encoder-folder", "text-encoder",
               self->text_encoder_row, self->text_encoder_choose,
               G_CALLBACK (on_choose_text_encoder), self->text_encoder_clear,
               G_CALLBACK (on_clear_text_encoder));
  connect_row (self, ROW_VAE, "vae-folder", "vae", self->vae_row, self->vae_choose,
               G_CALLBACK (on_choose_vae), self->vae_clear, G_CALLBACK (on_clear_vae));
  g_signal_connect (self->settings, "changed", G_CALLBACK (on_setting_changed), self);
  g_signal_connect_swapped (self->check_button, "clicked", G_CALLBACK (kin_preferences_check), self);
  bind_enum (self->settings, "device", self->device_row, device_nicks);
  bind_enum (self->settings, "memory-mode", self->memory_row, memory_nicks);
  bind_enum (self->settings, "default-export-format", self->export_row, export_nicks);
  return self;
}
