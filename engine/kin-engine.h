/* kin-engine.h — the engine thread.
 *
 * One thread owns the backend and the loaded pipeline.  Jobs enter through a queue and run one at
 * a time; progress (with previews) and results return to the thread-default main context of the
 * caller of _async.  The UI never waits on the engine. */
#pragma once

#include "kin-pipeline.h"
#include <gio/gio.h>

G_BEGIN_DECLS

#define KIN_TYPE_ENGINE (kin_engine_get_type ())
G_DECLARE_FINAL_TYPE (KinEngine, kin_engine, KIN, ENGINE, GObject)

/* Progress as delivered on the caller's context.  @preview (may be NULL) is only valid during
 * the call. */
typedef void (*KinEngineProgressFunc) (const char *stage, int step, int total, double eta_seconds,
                                       const guint8 *preview, int preview_frames, int preview_h,
                                       int preview_w, gpointer user_data);

KinEngine   *kin_engine_new (void);
/* Models to use for the next jobs (NULL fields: the demo pack); loading happens lazily on the
 * engine thread, and again when the paths or the memory mode change. */
void         kin_engine_set_models (KinEngine *engine, const KinModelPaths *paths, KinMemoryMode mode);
/* Starts a generation.  @progress is called on the caller's main context. */
void         kin_engine_generate_async (KinEngine *engine, const KinRequest *req,
                                        KinEngineProgressFunc progress, gpointer progress_data,
                                        GDestroyNotify progress_destroy, GCancellable *cancellable,
                                        GAsyncReadyCallback callback, gpointer user_data);
KinClip     *kin_engine_generate_finish (KinEngine *engine, GAsyncResult *result, GError **error);
/* Loads (or reloads) the models now and describes them; for validation feedback. */
void         kin_engine_describe_async (KinEngine *engine, GCancellable *cancellable,
                                        GAsyncReadyCallback callback, gpointer user_data);
char        *kin_engine_describe_finish (KinEngine *engine, GAsyncResult *result, GError **error);

G_END_DECLS
