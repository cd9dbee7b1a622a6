/* kin-frame-stream.c — see kin-frame-stream.h. */
#include "kin-frame-stream.h"

struct _KinFrameStream {
  GtkMediaStream parent_instance;
  GPtrArray *textures;       /* GdkTexture, one per frame */
  int width, height;
  int fps;
  int current;
  guint tick_id;
};

static void kin_frame_stream_paintable_init (GdkPaintableInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (KinFrameStream, kin_frame_stream, GTK_TYPE_MEDIA_STREAM,
                               G_IMPLEMENT_INTERFACE (GDK_TYPE_PAINTABLE,
                                                      kin_frame_stream_paintable_init))

static gint64
frame_time (KinFrameStream *self, int frame)
{
  return (gint64) frame * G_USEC_PER_SEC / MAX (1, self->fps);
}

static void
show_frame (KinFrameStream *self, int frame)
{
  self->current = frame;
  gtk_media_stream_update (GTK_MEDIA_STREAM (self), frame_time (self, frame));
  gdk_paintable_invalidate_contents (GDK_PAINTABLE (self));
}

static gboolean
tick (gpointer data)
{
  KinFrameStream *self = data;
  int n = (int) self->textures->len;
  if (n == 0)
    return G_SOURCE_CONTINUE;
  int next = self->current + 1;
  if (next >= n) {
    if (!gtk_media_stream_get_loop (GTK_MEDIA_STREAM (self))) {
      self->tick_id = 0;
      gtk_media_stream_stream_ended (GTK_MEDIA_STREAM (self));
      return G_SOURCE_REMOVE;
    }
    next = 0;
  }
  show_frame (self, next);
  return G_SOURCE_CONTINUE;
}

static gboolean
kin_frame_stream_play (GtkMediaStream *stream)
{
  KinFrameStream *self = KIN_FRAME_STREAM (stream);
  if (self->textures->len == 0)
    return FALSE;
  if (self->current >= (int) self->textures->len - 1 && !gtk_media_stream_get_loop (stream))
    show_frame (self, 0);
  if (self->tick_id == 0)
    self->tick_id = g_timeout_add (1000 / MAX (1, self->fps), tick, self);
  return TRUE;
}

static void
kin_frame_stream_pause (GtkMediaStream *stream)
{
  g_clear_handle_id (&KIN_FRAME_STREAM (stream)->tick_id, g_source_remove);
}

static void
kin_frame_stream_seek (GtkMediaStream *stream, gint64 timestamp)
{
  KinFrameStream *self = KIN_FRAME_STREAM (stream);
  int n = (int) self->textures->len;
  int frame = (int) (timestamp * MAX (1, self->fps) / G_USEC_PER_SEC);
  show_frame (self, CLAMP (frame, 0, MAX (0, n - 1)));
  gtk_media_stream_seek_success (stream);
}

static void
kin_frame_stream_dispose (GObject *object)
{
  KinFrameStream *self = KIN_FRAME_STREAM (object);
  g_clear_handle_id (&self->tick_id, g_source_remove);
  g_clear_pointer (&self->textures, g_ptr_array_unref);
  G_OBJECT_CLASS (kin_frame_stream_parent_class)->dispose (object);
}

static void
kin_frame_stream_class_init (KinFrameStreamClass *klass)
{
  GtkMediaStreamClass *stream_class = GTK_MEDIA_STREAM_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = kin_frame_stream_dispose;
  stream_class->play = kin_frame_stream_play;
  stream_class->pause = kin_frame_stream_pause;
  stream_class->seek = kin_frame_stream_seek;
}

static void
kin_frame_stream_init (KinFrameStream *self)
{
  self->textures = g_ptr_array_new_with_free_func (g_object_unref);
  self->fps = 8;
}

/* ---- GdkPaintable ---- */

static void
paintable_snapshot (GdkPaintable *paintable, GdkSnapshot *snapshot, double width, double height)
{
  KinFrameStream *self = KIN_FRAME_STREAM (paintable);
  if (self->textures == NULL || self->current >= (int) self->textures->len)
    return;
  GdkPaintable *tex = g_ptr_array_index (self->textures, self->current);
  gdk_paintable_snapshot (tex, snapshot, width, height);
}

static GdkPaintable *
paintable_get_current_image (GdkPaintable *paintable)
{
  KinFrameStream *self = KIN_FRAME_STREAM (paintable);
  if (self->textures == NULL || self->current >= (int) self->textures->len)
    return gdk_paintable_new_empty (self->width, self->height);
  return g_object_ref (g_ptr_array_index (self->textures, self->current));
}

static int paintable_get_width (GdkPaintable *p) { return KIN_FRAME_STREAM (p)->width; }
static int paintable_get_height (GdkPaintable *p) { return KIN_FRAME_STREAM (p)->height; }

static void
kin_frame_stream_paintable_init (GdkPaintableInterface *iface)
{
  iface->snapshot = paintable_snapshot;
  iface->get_current_image = paintable_get_current_image;
  iface->get_intrinsic_width = paintable_get_width;
  iface->get_intrinsic_height = paintable_get_height;
}

/* ---- public ---- */

KinFrameStream *
kin_frame_stream_new (int fps)
{
  KinFrameStream *self = g_object_new (KIN_TYPE_FRAME_STREAM, NULL);
  self->fps = fps > 0 ? fps : 8;
  return self;
}

void
kin_frame_stream_set_frames (KinFrameStream *self, const guint8 *rgb, int frames, int height,
                             int width)
{
  g_return_if_fail (KIN_IS_FRAME_STREAM (self));
  gboolean resized = width != self->width || height != self->height;
  g_ptr_array_set_size (self->textures, 0);
  gsize frame_bytes = (gsize) width * height * 3;
  for (int f = 0; f < frames; f++) {
    g_autoptr (GBytes) bytes = g_bytes_new (rgb + f * frame_bytes, frame_bytes);
    g_ptr_array_add (self->textures,
                     gdk_memory_texture_new (width, height, GDK_MEMORY_R8G8B8, bytes, width * 3));
  }
  self->width = width;
  self->height = height;
  if (self->current >= frames)
    self->current = 0;
  GtkMediaStream *stream = GTK_MEDIA_STREAM (self);
  if (!gtk_media_stream_is_prepared (stream))
    gtk_media_stream_stream_prepared (stream, FALSE, TRUE, TRUE, frame_time (self, MAX (1, frames)));
  if (resized)
    gdk_paintable_invalidate_size (GDK_PAINTABLE (self));
  gdk_paintable_invalidate_contents (GDK_PAINTABLE (self));
}

int kin_frame_stream_get_n_frames (KinFrameStream *self) { return (int) self->textures->len; }
int kin_frame_stream_get_current_frame (KinFrameStream *self) { return self->current; }
