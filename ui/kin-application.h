/* kin-application.h — the Kinora application: one engine, the settings, windows, actions. */
#pragma once

#include <adwaita.h>
#include "kin-engine.h"

G_BEGIN_DECLS

#define KIN_APPLICATION_ID "io.github.kinora.Kinora"

#define KIN_TYPE_APPLICATION (kin_application_get_type ())
G_DECLARE_FINAL_TYPE (KinApplication, kin_application, KIN, APPLICATION, AdwApplication)

KinApplication *kin_application_new (void);
KinEngine      *kin_application_get_engine (KinApplication *self);
GSettings      *kin_application_get_settings (KinApplication *self);
/* Pushes the model folders and memory mode from the settings into the engine. */
void            kin_application_apply_models (KinApplication *self);
/* Where new projects go: $XDG_VIDEOS_DIR/Kinora (or $KINORA_PROJECTS_DIR). */
char           *kin_application_dup_projects_dir (void);

G_END_DECLS
