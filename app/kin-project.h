/* kin-project.h — a Kinora project: a folder `Name.kinora/` on disk.
 *
 *   Name.kinora/
 *     project.json              {"version": 1, "name": …, "clips": [ … ]}
 *     clips/<id>/request.json   the exact request that made the clip (kin_request_to_json)
 *     clips/<id>/latents.safetensors   the final latents [C, T, h, w] as tensor "latents"
 *     clips/<id>/frames/0000.png …     the decoded frames (PNG sequence)
 *     clips/<id>/clip.<ext>     a playable video file when one was written (kin-export)
 *     clips/<id>/thumbnail.png  a small picture of the middle frame
 *
 * A clip is written completely before it enters the project, and project.json is rewritten
 * (temporary file, then rename) after each change, so a crash loses nothing that finished.  A
 * project.json that cannot be read is never overwritten: opening fails with
 * KIN_PROJECT_ERROR_CORRUPT and kin_project_recover() rebuilds the project from clips/ after
 * setting the damaged file aside.
 *
 * No widgets here: the GUI and the CLI share this code. */
#pragma once

#include <gio/gio.h>
#include "kin-pipeline.h"

G_BEGIN_DECLS

#define KIN_PROJECT_VERSION 1
#define KIN_PROJECT_SUFFIX ".kinora"

#define KIN_PROJECT_ERROR (kin_project_error_quark ())
typedef enum {
  KIN_PROJECT_ERROR_NOT_FOUND,   /* no project.json in the folder */
  KIN_PROJECT_ERROR_CORRUPT,     /* project.json is not a Kinora project we can read */
  KIN_PROJECT_ERROR_TOO_NEW,     /* written by a newer Kinora */
  KIN_PROJECT_ERROR_EXISTS,      /* creating over an existing project */
  KIN_PROJECT_ERROR_IO,          /* a file could not be written or read */
} KinProjectError;
GQuark kin_project_error_quark (void);

/* ---- one clip of a project ---- */

#define KIN_TYPE_PROJECT_CLIP (kin_project_clip_get_type ())
G_DECLARE_FINAL_TYPE (KinProjectClip, kin_project_clip, KIN, PROJECT_CLIP, GObject)

const char       *kin_project_clip_get_id (KinProjectClip *clip);
const char       *kin_project_clip_get_prompt (KinProjectClip *clip);
/* The request as stored (prompt owned by the clip; conditioning pointers are NULL). */
const KinRequest *kin_project_clip_get_request (KinProjectClip *clip);
int               kin_project_clip_get_frames (KinProjectClip *clip);
int               kin_project_clip_get_width (KinProjectClip *clip);
int               kin_project_clip_get_height (KinProjectClip *clip);
int               kin_project_clip_get_fps (KinProjectClip *clip);
double            kin_project_clip_get_duration (KinProjectClip *clip);   /* seconds */
double            kin_project_clip_get_gen_seconds (KinProjectClip *clip); /* generation time */
GDateTime        *kin_project_clip_get_created (KinProjectClip *clip);
/* Absolute paths (NULL when the clip has no such file). */
char             *kin_project_clip_dup_dir (KinProjectClip *clip);
char             *kin_project_clip_dup_thumbnail_path (KinProjectClip *clip);
char             *kin_project_clip_dup_video_path (KinProjectClip *clip);
char             *kin_project_clip_dup_latents_path (KinProjectClip *clip);
char             *kin_project_clip_dup_frame_path (KinProjectClip *clip, int index);
/* Reads the decoded frames back: RGB8 [frames, h, w, 3] (g_free). */
guint8           *kin_project_clip_load_frames (KinProjectClip *clip, int *frames, int *height,
                                                int *width, GError **error);
/* Reads the latents back: [C, T, h, w] f32 (g_free). */
float            *kin_project_clip_load_latents (KinProjectClip *clip, int *channels, int *t,
                                                 int *h, int *w, GError **error);

/* ---- the project ---- */

#define KIN_TYPE_PROJECT (kin_project_get_type ())
G_DECLARE_FINAL_TYPE (KinProject, kin_project, KIN, PROJECT, GObject)

/* Creates @path (a folder; ".kinora" is appended when missing) with an empty project. */
KinProject *kin_project_create (const char *path, GError **error);
/* Opens an existing project folder (or its project.json). */
KinProject *kin_project_open (const char *path, GError **error);
/* Sets a damaged project.json aside (project.json.damaged-<time>) and rebuilds the project from
 * the clip folders it finds.  The result is saved. */
KinProject *kin_project_recover (const char *path, GError **error);

const char *kin_project_get_path (KinProject *self);
const char *kin_project_get_name (KinProject *self);
void        kin_project_set_name (KinProject *self, const char *name);
/* TRUE when something changed since the last save. */
gboolean    kin_project_get_dirty (KinProject *self);
/* The clips, in timeline order: a GListModel of KinProjectClip. */
GListModel *kin_project_get_clips (KinProject *self);
KinProjectClip *kin_project_find_clip (KinProject *self, const char *id);

/* Writes project.json (temporary file + rename). */
gboolean    kin_project_save (KinProject *self, GError **error);
/* Copies the whole folder to @path and continues there. */
gboolean    kin_project_save_as (KinProject *self, const char *path, GError **error);

/* Writes @clip's files and appends it to the timeline (then saves).  @video_writer may write a
 * playable video of the clip at the given path (without extension it chooses one and returns
 * the file name it wrote); NULL keeps the PNG frames only. */
typedef char *(*KinClipVideoWriter) (const KinClip *clip, const char *dir, gpointer user_data,
                                     GError **error);
KinProjectClip *kin_project_add_clip (KinProject *self, const KinClip *clip,
                                      KinClipVideoWriter video_writer, gpointer user_data,
                                      GError **error);
/* The two halves of kin_project_add_clip, for callers that write off the main thread:
 * _write_clip only writes files (any thread; a failing video writer is not fatal, the PNG frames
 * stay) and returns a new clip that is not in the timeline yet; _append_clip (the thread that
 * owns the project) adds it and saves. */
KinProjectClip *kin_project_write_clip (KinProject *self, const KinClip *clip,
                                        KinClipVideoWriter video_writer, gpointer user_data,
                                        GError **error);
gboolean        kin_project_append_clip (KinProject *self, KinProjectClip *clip, GError **error);
/* Takes a clip out of the timeline (files stay until kin_project_purge_clip) and returns the
 * position it had, for undo; -1 when it is not in the project. */
int         kin_project_remove_clip (KinProject *self, KinProjectClip *clip, GError **error);
/* Puts a removed clip back at @position (undo). */
gboolean    kin_project_restore_clip (KinProject *self, KinProjectClip *clip, guint position,
                                      GError **error);
/* Deletes a removed clip's files for good. */
gboolean    kin_project_purge_clip (KinProject *self, KinProjectClip *clip, GError **error);

/* "Untitled" helpers for the GUI: a new project folder under @parent that does not exist yet. */
char       *kin_project_make_unique_path (const char *parent, const char *name);

G_END_DECLS
