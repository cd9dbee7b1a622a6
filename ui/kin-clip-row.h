/* kin-clip-row.h — a clip in the timeline: thumbnail, duration badge, prompt and size. */
#pragma once

#include <gtk/gtk.h>
#include "kin-project.h"

G_BEGIN_DECLS

#define KIN_TYPE_CLIP_ROW (kin_clip_row_get_type ())
G_DECLARE_FINAL_TYPE (KinClipRow, kin_clip_row, KIN, CLIP_ROW, GtkWidget)

GtkWidget *kin_clip_row_new (void);
void       kin_clip_row_set_clip (KinClipRow *self, KinProjectClip *clip);
/* "2.0 s · 16 frames" / "Image" */
char      *kin_describe_length (int frames, int fps);

G_END_DECLS
