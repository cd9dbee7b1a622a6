/* kin-export.h — writing clips: MP4 (H.264), WebM (VP9), PNG sequence, animated GIF.
 *
 * Every format gets the prompt, seed and every parameter: in the container's tags (title =
 * prompt, comment = the request JSON) where the format has tags, and always in a sidecar
 * `<output>.json`, so a clip can be reproduced exactly.  Files are written to a temporary name
 * and renamed into place; on error or cancellation the partial output is removed. */
#pragma once

#include "kin-pipeline.h"
#include <gio/gio.h>

G_BEGIN_DECLS

typedef enum {
  KIN_EXPORT_MP4 = 0,
  KIN_EXPORT_WEBM,
  KIN_EXPORT_PNG,   /* a folder of frame-0001.png … */
  KIN_EXPORT_GIF,
} KinExportFormat;

const char *kin_export_format_name (KinExportFormat f);        /* "mp4", "webm", "png", "gif" */
gboolean    kin_export_format_from_name (const char *name, KinExportFormat *out);
/* The format implied by a file name's extension (a path without extension → PNG folder). */
KinExportFormat kin_export_format_for_path (const char *path);

/* Frames: RGB8 [frames, height, width, 3].  @request (may be NULL) goes into tags and sidecar. */
gboolean    kin_export_frames (const guint8 *rgb, int frames, int height, int width, int fps,
                               const KinRequest *request, const char *path, KinExportFormat format,
                               GCancellable *cancellable, GError **error);
gboolean    kin_export_clip (const KinClip *clip, const char *path, KinExportFormat format,
                             GCancellable *cancellable, GError **error);
/* The sidecar JSON alone (written beside @path as @path + ".json"). */
gboolean    kin_export_write_sidecar (const KinRequest *request, int frames, int height, int width,
                                      int fps, const char *path, GError **error);

/* Reads a video file back (any format GStreamer decodes, or a PNG folder) as RGB8 frames:
 * used by tests and by "extend from a video file".  *frames etc. receive the size. */
guint8     *kin_import_frames (const char *path, int *frames, int *height, int *width, int *fps,
                               GError **error);

G_END_DECLS
