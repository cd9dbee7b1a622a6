/* kin-queue-row.c — see kin-queue-row.h. */
#include "kin-config.h"
#include "kin-queue-row.h"
#include <glib/gi18n.h>

struct _KinQueueRow {
  GtkListBoxRow parent_instance;
  KinJob *job;
  GtkStack *preview_stack;
  GtkImage *state_icon;
  GtkPicture *preview;
  GtkLabel *title;
  GtkLabel *status;
  GtkProgressBar *progress;
  GtkButton *cancel_button;
};

G_DEFINE_FINAL_TYPE (KinQueueRow, kin_queue_row, GTK_TYPE_LIST_BOX_ROW)

static void
on_cancel_clicked (KinQueueRow *self)
{
  if (self->job != NULL)
    kin_job_cancel (self->job);
}

static const char *
state_icon (KinJobState s)
{
  switch (s) {
  case KIN_JOB_DONE: return "object-select-symbolic";
  case KIN_JOB_FAILED: return "dialog-warning-symbolic";
  case KIN_JOB_CANCELLED: return "process-stop-symbolic";
  default: return "content-loading-symbolic";
  }
}

static void
update (KinQueueRow *self)
{
  KinJob *job = self->job;
  KinJobState s = kin_job_get_state (job);
  gtk_progress_bar_set_fraction (self->progress, kin_job_get_fraction (job));
  gtk_label_set_label (self->status, kin_job_get_status (job));
  gtk_image_set_from_icon_name (self->state_icon, state_icon (s));
  gboolean has_preview = kin_frame_stream_get_n_frames (kin_job_get_preview (job)) > 0;
  gtk_stack_set_visible_child_name (self->preview_stack, has_preview ? "preview" : "waiting");
  gtk_widget_set_visible (GTK_WIDGET (self->cancel_button), !kin_job_is_finished (job));
  gtk_widget_set_visible (GTK_WIDGET (self->progress), s == KIN_JOB_RUNNING || s == KIN_JOB_SAVING);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->status), kin_job_get_status (job));
  if (s == KIN_JOB_FAILED)
    gtk_widget_add_css_class (GTK_WIDGET (self->status), "error");
  else
    gtk_widget_remove_css_class (GTK_WIDGET (self->status), "error");
}

static void
kin_queue_row_dispose (GObject *object)
{
  KinQueueRow *self = KIN_QUEUE_ROW (object);
  if (self->job != NULL)
    g_signal_handlers_disconnect_by_data (self->job, self);
  g_clear_object (&self->job);
  G_OBJECT_CLASS (kin_queue_row_parent_class)->dispose (object);
}

static void
kin_queue_row_class_init (KinQueueRowClass *klass)
{
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  G_OBJECT_CLASS (klass)->dispose = kin_queue_row_dispose;
  gtk_widget_class_set_template_from_resource (widget_class,
                                               "/io/github/kinora/Kinora/kin-queue-row.ui");
  gtk_widget_class_bind_template_child (widget_class, KinQueueRow, preview_stack);
  gtk_widget_class_bind_template_child (widget_class, KinQueueRow, state_icon);
  gtk_widget_class_bind_template_child (widget_class, KinQueueRow, preview);
  gtk_widget_class_bind_template_child (widget_class, KinQueueRow, title);
  gtk_widget_class_bind_template_child (widget_class, KinQueueRow, status);
  gtk_widget_class_bind_template_child (widget_class, KinQueueRow, progress);
  gtk_widget_class_bind_template_child (widget_class, KinQueueRow, cancel_button);
  gtk_widget_class_bind_template_callback (widget_class, on_cancel_clicked);
}

static void
kin_queue_row_init (KinQueueRow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
}

GtkWidget *
kin_queue_row_new (KinJob *job)
{
  KinQueueRow *self = g_object_new (KIN_TYPE_QUEUE_ROW, NULL);
  self->job = g_object_ref (job);
  gtk_label_set_label (self->title, kin_job_get_title (job));
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->title), kin_job_get_title (job));
  gtk_picture_set_paintable (self->preview, GDK_PAINTABLE (kin_job_get_preview (job)));
  g_signal_connect_swapped (job, "notify", G_CALLBACK (update), self);
  update (self);
  return GTK_WIDGET (self);
}

KinJob *
kin_queue_row_get_job (KinQueueRow *self)
{
  return self->job;
}
