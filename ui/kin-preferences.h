/* kin-preferences.h — the preferences window: model folders with validation, device, memory
 * mode, default export format; everything stored in GSettings. */
#pragma once

#include <adwaita.h>
#include "kin-application.h"

G_BEGIN_DECLS

#define KIN_TYPE_PREFERENCES (kin_preferences_get_type ())
G_DECLARE_FINAL_TYPE (KinPreferences, kin_preferences, KIN, PREFERENCES, AdwPreferencesWindow)

KinPreferences *kin_preferences_new (KinApplication *app, GtkWindow *parent);
/* Loads the configured models on the engine thread and shows what it found (the Check button). */
void            kin_preferences_check (KinPreferences *self);
/* TRUE while a check runs; the check's result line (NULL before the first check). */
gboolean        kin_preferences_get_checking (KinPreferences *self);
/* The feedback shown under a model folder row (@key: "vae-folder" …). */
const char     *kin_preferences_get_folder_status (KinPreferences *self, const char *key);
const char     *kin_preferences_get_check_result (KinPreferences *self, gboolean *ok);

/* What a model folder holds, in one line for people ("STDiT2 · model.safetensors · 2.3 GB on
 * disk · about 4.6 GB of memory"); the error says what is missing.  Blocking; for threads. */
char *kin_describe_model_folder (const char *path, const char *kind, GError **error);

G_END_DECLS
