/* kin-application.c — see kin-application.h. */
#include "kin-config.h"
#include "kin-application.h"
#include "kin-preferences.h"
#include "kin-window.h"
#include <glib/gi18n.h>

struct _KinApplication {
  AdwApplication parent_instance;
  KinEngine *engine;
  GSettings *settings;
  char *self_test_dir;
};

G_DEFINE_FINAL_TYPE (KinApplication, kin_application, ADW_TYPE_APPLICATION)

KinEngine *kin_application_get_engine (KinApplication *self) { return self->engine; }
GSettings *kin_application_get_settings (KinApplication *self) { return self->settings; }

char *
kin_application_dup_projects_dir (void)
{
  const char *env = g_getenv ("KINORA_PROJECTS_DIR");
  if (env != NULL && *env)
    return g_strdup (env);
  const char *videos = g_get_user_special_dir (G_USER_DIRECTORY_VIDEOS);
  g_autofree char *fallback = g_build_filename (g_get_home_dir (), "Videos", NULL);
  char *dir = g_build_filename (videos ? videos : fallback, "Kinora", NULL);
  g_mkdir_with_parents (dir, 0755);
  return dir;
}

/* The schema comes from the system, or, when running from the build tree, from the schema
 * compiled there. */
static GSettings *
open_settings (void)
{
  GSettingsSchemaSource *system = g_settings_schema_source_get_default ();
  g_autoptr (GSettingsSchema) schema = system ? g_settings_schema_source_lookup (system, KIN_APPLICATION_ID, TRUE) : NULL;
  if (schema == NULL) {
    g_autoptr (GSettingsSchemaSource) local =
      g_settings_schema_source_new_from_directory (KIN_BUILD_DATADIR, system, FALSE, NULL);
    if (local != NULL)
      schema = g_settings_schema_source_lookup (local, KIN_APPLICATION_ID, FALSE);
  }
  if (schema == NULL)
    g_error ("The GSettings schema %s is not installed", KIN_APPLICATION_ID);
  return g_settings_new_full (schema, NULL, NULL);
}

void
kin_application_apply_models (KinApplication *self)
{
  g_autofree char *t = g_settings_get_string (self->settings, "transformer-folder");
  g_autofree char *e = g_settings_get_string (self->settings, "text-encoder-folder");
  g_autofree char *v = g_settings_get_string (self->settings, "vae-folder");
  KinModelPaths paths = { *t ? t : NULL, *e ? e : NULL, *v ? v : NULL };
  KinMemoryMode mode = g_settings_get_enum (self->settings, "memory-mode") == 1 ? KIN_MEMORY_LOW
                                                                              : KIN_MEMORY_BALANCED;
  kin_engine_set_models (self->engine, &paths, mode);
}

static void
on_models_changed (KinApplication *self, const char *key)
{
  kin_application_apply_models (self);
}

/* ---- actions ---- */

static void
show_preferences (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinApplication *self = data;
  GtkWindow *parent = gtk_application_get_active_window (GTK_APPLICATION (self));
  KinPreferences *prefs = kin_preferences_new (self, parent);
  gtk_window_present (GTK_WINDOW (prefs));
}

static void
show_about (GSimpleAction *a, GVariant *p, gpointer data)
{
  KinApplication *self = data;
  const char *developers[] = { "The Kinora developers", NULL };
  GtkWidget *about = g_object_new (ADW_TYPE_ABOUT_WINDOW,
    "transient-for", gtk_application_get_active_window (GTK_APPLICATION (self)),
    "application-name", _("Kinora"),
    "application-icon", KIN_APPLICATION_ID,
    "developer-name", _("The Kinora developers"),
    "version", KIN_VERSION,
    "comments", _("Turn a text prompt into a short video, on your own computer.\n\nKinora runs Open-Sora 1.0 and 1.1 models locally: nothing is uploaded and nothing is downloaded while it works."),
    "website", "https://github.com/kinora/kinora",
    "issue-url", "https://github.com/kinora/kinora/issues",
    "license-type", GTK_LICENSE_APACHE_2_0,
    "developers", developers,
    /* TRANSLATORS: your names, one per line */
    "translator-credits", _("translator-credits"),
    NULL);
  adw_about_window_add_acknowledgement_section (ADW_ABOUT_WINDOW (about), _("Models"),
    (const char *[]) { "Open-Sora (HPC-AI Tech) https://github.com/hpcaitech/Open-Sora",
                       "T5 v1.1 (Google, DeepFloyd)", "Stable Diffusion VAE (Stability AI)", NULL });
  gtk_window_present (GTK_WINDOW (about));
}

static void
quit (GSimpleAction *a, GVariant *p, gpointer data)
{
  /* Closing (not destroying) lets each window save its project and cancel its jobs. */
  GList *windows = g_list_copy (gtk_application_get_windows (GTK_APPLICATION (data)));
  for (GList *l = windows; l != NULL; l = l->next)
    gtk_window_close (GTK_WINDOW (l->data));
  g_list_free (windows);
}

static const GActionEntry app_entries[] = {
  { "preferences", show_preferences },
  { "about", show_about },
  { "quit", quit },
};

/* ---- lifecycle ---- */

static KinWindow *
new_window (KinApplication *self)
{
  KinWindow *window = kin_window_new (self);
  gtk_window_present (GTK_WINDOW (window));
  return window;
}

static void
kin_application_activate (GApplication *app)
{
  KinApplication *self = KIN_APPLICATION (app);
  GtkWindow *active = gtk_application_get_active_window (GTK_APPLICATION (app));
  if (active != NULL) {
    gtk_window_present (active);
    return;
  }
  KinWindow *window = new_window (self);
  kin_window_open_project (window, NULL);
}

static void
kin_application_open (GApplication *app, GFile **files, int n_files, const char *hint)
{
  KinApplication *self = KIN_APPLICATION (app);
  for (int i = 0; i < n_files; i++) {
    KinWindow *window = new_window (self);
    g_autofree char *path = g_file_get_path (files[i]);
    kin_window_open_project (window, path);
    if (self->self_test_dir != NULL && i == 0)
      kin_window_run_self_test (window, self->self_test_dir);
  }
}

static void
kin_application_startup (GApplication *app)
{
  KinApplication *self = KIN_APPLICATION (app);
  G_APPLICATION_CLASS (kin_application_parent_class)->startup (app);
  self->settings = open_settings ();
  /* The engine picks its backend when it starts; the preference is read once. */
  if (g_getenv ("KINORA_DEVICE") == NULL) {
    g_autofree char *device = g_settings_get_string (self->settings, "device");
    g_setenv ("KINORA_DEVICE", device, TRUE);
  }
  self->engine = kin_engine_new ();
  kin_application_apply_models (self);
  const char *keys[] = { "changed::transformer-folder", "changed::text-encoder-folder",
                         "changed::vae-folder", "changed::memory-mode" };
  for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
    g_signal_connect_swapped (self->settings, keys[i], G_CALLBACK (on_models_changed), self);

  g_action_map_add_action_entries (G_ACTION_MAP (app), app_entries, G_N_ELEMENTS (app_entries), app);
  struct { const char *action; const char *accels[3]; } accels[] = {
    { "app.preferences", { "<Control>comma", NULL } },
    { "app.quit", { "<Control>q", NULL } },
    { "win.generate", { "<Control>Return", "<Control>KP_Enter", NULL } },
    { "win.new-project", { "<Control>n", NULL } },
    { "win.open-project", { "<Control>o", NULL } },
    { "win.save-project-as", { "<Control><Shift>s", NULL } },
    { "win.clip-export", { "<Control>e", NULL } },
    { "win.clip-extend", { "<Control>plus", NULL } },
    { "win.clip-loop", { "<Control>l", NULL } },
    { "win.clip-delete", { "Delete", NULL } },
    { "window.close", { "<Control>w", NULL } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (accels); i++)
    gtk_application_set_accels_for_action (GTK_APPLICATION (app), accels[i].action, accels[i].accels);
}

static int
kin_application_handle_local_options (GApplication *app, GVariantDict *options)
{
  KinApplication *self = KIN_APPLICATION (app);
  if (g_variant_dict_contains (options, "version")) {
    g_print ("kinora %s\n", KIN_VERSION);
    return 0;
  }
  const char *dir = NULL;
  if (g_variant_dict_lookup (options, "self-test", "^&ay", &dir)) {
    self->self_test_dir = g_strdup (dir);
    /* A test run neither needs nor talks to another instance. */
    g_application_set_flags (app, g_application_get_flags (app) | G_APPLICATION_NON_UNIQUE);
  }
  return -1;
}

static void
kin_application_dispose (GObject *object)
{
  KinApplication *self = KIN_APPLICATION (object);
  if (self->settings != NULL)
    g_signal_handlers_disconnect_by_data (self->settings, self);
  g_clear_object (&self->settings);
  g_clear_object (&self->engine);
  g_clear_pointer (&self->self_test_dir, g_free);
  G_OBJECT_CLASS (kin_application_parent_class)->dispose (object);
}

static void
kin_application_class_init (KinApplicationClass *klass)
{
  GApplicationClass *app_class = G_APPLICATION_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = kin_application_dispose;
  app_class->activate = kin_application_activate;
  app_class->open = kin_application_open;
  app_class->startup = kin_application_startup;
  app_class->handle_local_options = kin_application_handle_local_options;
}

static void
kin_application_init (KinApplication *self)
{
  static const GOptionEntry options[] = {
    { "version", 0, 0, G_OPTION_ARG_NONE, NULL, N_("Print the version and exit"), NULL },
    { "self-test", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME, NULL,
      "Build the window on PROJECT, check it, save screenshots into DIR and exit", "DIR" },
    { NULL }
  };
  g_application_add_main_option_entries (G_APPLICATION (self), options);
  g_application_set_option_context_parameter_string (G_APPLICATION (self), _("[PROJECT…]"));
}

KinApplication *
kin_application_new (void)
{
  return g_object_new (KIN_TYPE_APPLICATION, "application-id", KIN_APPLICATION_ID,
                       "flags", G_APPLICATION_HANDLES_OPEN, "resource-base-path",
                       "/io/github/kinora/Kinora", NULL);
}
