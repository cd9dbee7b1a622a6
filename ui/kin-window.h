/* kin-window.h — the main window: prompt and controls, queue, player, timeline. */
#pragma once

#include <adwaita.h>
#include "kin-application.h"
#include "kin-project.h"

G_BEGIN_DECLS

#define KIN_TYPE_WINDOW (kin_window_get_type ())
G_DECLARE_FINAL_TYPE (KinWindow, kin_window, KIN, WINDOW, AdwApplicationWindow)

KinWindow  *kin_window_new (KinApplication *app);
/* Opens the project at @path, or the last one, or a new untitled one (@path NULL). */
void        kin_window_open_project (KinWindow *self, const char *path);
KinProject *kin_window_get_project (KinWindow *self);
void        kin_window_show_error (KinWindow *self, const char *heading, const GError *error);

/* --self-test: checks the widgets, queues a job, screenshots into @dir, then quits with the
 * result (0 = every check passed). */
void        kin_window_run_self_test (KinWindow *self, const char *dir);
/* 0 after a passed self-test (or none), 1 after a failed one. */
int         kin_self_test_exit_status (void);

G_END_DECLS
