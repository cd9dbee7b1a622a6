/* kin-clip-row.c — see kin-clip-row.h. */
#include "kin-config.h"
#include "kin-clip-row.h"
#include <glib/gi18n.h>

struct _KinClipRow {
  GtkWidget parent_instance;
  GtkWidget *box;
  GtkPicture *thumbnail;
  GtkLabel *badge;
  GtkLabel *caption;
  GtkLabel *details;
};

G_DEFINE_FINAL_TYPE (KinClipRow, kin_clip_row, GTK_TYPE_WIDGET)

static void
kin_clip_row_dispose (GObject *object)
{
  gtk_widget_dispose_template (GTK_WIDGET (object), KIN_TYPE_CLIP_ROW);
  G_OBJECT_CLASS (kin_clip_row_parent_class)->dispose (object);
}

static void
kin_clip_row_class_init (KinClipRowClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = kin_clip_row_dispose;
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BIN_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "kinclip");
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/kinora/Kinora/kin-clip-row.ui");
  gtk_widget_class_bind_template_child (widget_class, KinClipRow, box);
  gtk_widget_class_bind_template_child (widget_class, KinClipRow, thumbnail);
  gtk_widget_class_bind_template_child (widget_class, KinClipRow, badge);
  gtk_widget_class_bind_template_child (widget_class, KinClipRow, caption);
  gtk_widget_class_bind_template_child (widget_class, KinClipRow, details);
}

static void
kin_clip_row_init (KinClipRow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

GtkWidget *
kin_clip_row_new (void)
{
  return g_object_new (KIN_TYPE_CLIP_ROW, NULL);
}

char *
kin_describe_length (int frames, int fps)
{
  if (frames <= 1)
    return g_strdup (_("Image"));
  /* TRANSLATORS: a clip's length, "2.0 s · 16 frames" */
  return g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%.1f s · %d frame", "%.1f s · %d frames",
                                       frames),
                          (double) frames / MAX (1, fps), frames);
}

void
kin_clip_row_set_clip (KinClipRow *self, KinProjectClip *clip)
{
  if (clip == NULL) {
    gtk_picture_set_paintable (self->thumbnail, NULL);
    return;
  }
  g_autofree char *thumb = kin_project_clip_dup_thumbnail_path (clip);
  gtk_picture_set_filename (self->thumbnail, thumb);
  int frames = kin_project_clip_get_frames (clip);
  g_autofree char *badge = frames > 1
    ? g_strdup_printf ("%.1f s", kin_project_clip_get_duration (clip))
    : g_strdup (_("Image"));
  gtk_label_set_label (self->badge, badge);
  const char *prompt = kin_project_clip_get_prompt (clip);
  gtk_label_set_label (self->caption, *prompt ? prompt : _("Untitled clip"));
  g_autofree char *details = g_strdup_printf ("%d × %d · %s", kin_project_clip_get_width (clip),
                                              kin_project_clip_get_height (clip),
                                              kin_project_clip_get_request (clip)->cond == KIN_COND_LOOP
                                                ? _("loop") : kin_project_clip_get_request (clip)->cond == KIN_COND_EXTEND
                                                ? _("extension") : _("clip"));
  gtk_label_set_label (self->details, details);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self), prompt);
}
