/* kin-backend.c — backend-independent helpers: sticky errors and host transfers. */
#include "kin-backend.h"
#include "kin-error.h"
#include "kin-backend-cuda.h"
#include <stdarg.h>

void
kin_backend_set_error (KinBackend *be, int code, const char *format, ...)
{
  if (be->error != NULL)
    return;
  va_list ap;
  va_start (ap, format);
  g_autofree char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  be->error = g_error_new_literal (KIN_ENGINE_ERROR, code, msg);
}

gboolean
kin_backend_take_error (KinBackend *be, GError **error)
{
  if (be->error == NULL)
    return TRUE;
  g_propagate_error (error, g_steal_pointer (&be->error));
  return FALSE;
}

gboolean
kin_backend_failed (KinBackend *be)
{
  return be->error != NULL;
}

KinTensor *
kin_tensor_from_host_f32 (KinBackend *be, const float *data, int ndim, const int64_t *shape,
                          GError **error)
{
  KinTensor *t = kin_tensor_new (be, KIN_DTYPE_F32, ndim, shape, error);
  if (t != NULL)
    be->upload (be, t->data, data, kin_tensor_nbytes (t));
  return t;
}

float *
kin_tensor_to_host_f32 (const KinTensor *t)
{
  g_return_val_if_fail (t->dtype == KIN_DTYPE_F32, NULL);
  float *out = g_new (float, MAX (kin_tensor_numel (t), 1));
  t->backend->download (t->backend, out, t->data, kin_tensor_nbytes (t));
  return out;
}

KinBackend *
kin_backend_for_device (const char *device)
{
  if (device != NULL && g_ascii_strcasecmp (device, "cpu") == 0)
    return kin_backend_cpu ();
  g_autoptr (GError) error = NULL;
  KinBackend *be = kin_backend_cuda (&error);
  if (be != NULL)
    return be;
  if (device != NULL && g_ascii_strcasecmp (device, "cuda") == 0)
    g_warning ("CUDA was asked for but is not available (%s); using the CPU", error->message);
  else
    g_debug ("CUDA not available (%s); using the CPU", error->message);
  return kin_backend_cpu ();
}

gboolean
kin_backend_memory_stats (KinBackend *be, uint64_t *in_use, uint64_t *peak, uint64_t *total)
{
  uint64_t a = 0, b = 0, c = 0;
  if (be == NULL || be->memory_stats == NULL) {
    if (in_use) *in_use = 0;
    if (peak) *peak = 0;
    if (total) *total = 0;
    return FALSE;
  }
  be->memory_stats (be, &a, &b, &c);
  if (in_use) *in_use = a;
  if (peak) *peak = b;
  if (total) *total = c;
  return TRUE;
}

void
kin_backend_reset_peak_memory (KinBackend *be)
{
  if (be != NULL && be->reset_peak_memory != NULL)
    be->reset_peak_memory (be);
}

gboolean
kin_backend_has_graphs (KinBackend *be)
{
  return be != NULL && be->graph_begin != NULL && be->graph_end != NULL && be->graph_launch != NULL &&
         be->graph_free != NULL;
}
