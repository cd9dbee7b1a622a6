/* kin-queue-row.h — a row of the job queue: preview, title, status with ETA, progress, cancel. */
#pragma once

#include <gtk/gtk.h>
#include "kin-job.h"

G_BEGIN_DECLS

#define KIN_TYPE_QUEUE_ROW (kin_queue_row_get_type ())
G_DECLARE_FINAL_TYPE (KinQueueRow, kin_queue_row, KIN, QUEUE_ROW, GtkListBoxRow)

GtkWidget *kin_queue_row_new (KinJob *job);
KinJob    *kin_queue_row_get_job (KinQueueRow *self);

G_END_DECLS
