/* kin-frame-stream.h — a GtkMediaStream over RGB8 frames held in memory.
 *
 * Plays clips whose frames are known but that have no video file (PNG sequences), and the live
 * preview of a job while it denoises: set_frames swaps the frames and keeps the position. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define KIN_TYPE_FRAME_STREAM (kin_frame_stream_get_type ())
G_DECLARE_FINAL_TYPE (KinFrameStream, kin_frame_stream, KIN, FRAME_STREAM, GtkMediaStream)

KinFrameStream *kin_frame_stream_new (int fps);
/* Copies @rgb [frames, height, width, 3]. */
void            kin_frame_stream_set_frames (KinFrameStream *self, const guint8 *rgb, int frames,
                                             int height, int width);
int             kin_frame_stream_get_n_frames (KinFrameStream *self);
int             kin_frame_stream_get_current_frame (KinFrameStream *self);

G_END_DECLS
