/* kin-backend.h — the backend operation table.
 *
 * Model code calls these functions and never knows which backend runs them.  Every op works on
 * F32 tensors that live on the backend (weights given to kin_backend_linear may also be F16 or
 * BF16: they are widened on the fly with f32 accumulation).  All tensors are contiguous and
 * row-major; sizes are passed explicitly where an op could read them several ways.
 *
 * Errors are sticky: ops return nothing; a backend that fails (device out of memory, a bad
 * launch, a shape mismatch caught at run time) records the first error, ignores further ops, and
 * kin_backend_take_error() hands it to the caller.  Models check it at block boundaries.
 *
 * Output tensors may alias inputs only where an op says "in place allowed". */
#pragma once

#include "kin-types.h"
#include "kin-tensor.h"

G_BEGIN_DECLS

/* Attention description.  Tokens are rows; heads are interleaved along a row, head h occupying
 * channels [h*head_dim, (h+1)*head_dim) of the row.  Row r of batch b of q is at
 * q->data + q_offset + (b*lq + r)*q_stride (in elements), similarly k, v with kv_stride and out
 * with out_stride.  This lets q, k and v be slices of one packed qkv projection. */
typedef struct {
  int batch;            /* independent sequences */
  int heads;
  int lq;               /* query rows per sequence */
  int lk;               /* key rows per sequence (the maximum when kv_lens is given) */
  int head_dim;
  int64_t q_offset, k_offset, v_offset, out_offset;     /* elements */
  int64_t q_stride, kv_stride, out_stride;              /* elements between rows */
  float scale;          /* multiplies q·kᵀ (1.0 for T5, head_dim^-0.5 elsewhere) */
  const int32_t *kv_lens; /* host array [batch]: keys ≥ kv_lens[b] are masked; NULL = all lk */
  const KinTensor *bias;  /* optional additive score bias [heads, lq, lk] shared by all batches */
} KinAttention;

/* 2-D convolution, NCHW input, weight [cout, cin, kh, kw], optional bias [cout].
 * Output size: oh = (h + pad_t + pad_b - kh)/stride + 1, likewise ow. */
typedef struct {
  int n, cin, h, w;
  int cout, kh, kw;
  int stride;
  int pad_t, pad_b, pad_l, pad_r;
} KinConv2d;

struct _KinBackend {
  const char *name;     /* "cpu", "cuda" */
  void *priv;

  /* memory */
  void    *(*alloc) (KinBackend *be, size_t bytes);          /* NULL when out of memory */
  void     (*free) (KinBackend *be, void *ptr);
  void     (*upload) (KinBackend *be, void *dst, const void *host, size_t bytes);
  void     (*download) (KinBackend *be, void *host, const void *src, size_t bytes);
  void     (*synchronize) (KinBackend *be);

  /* y[rows, out] = x[rows, in] · w[out, in]ᵀ + bias[out]   (the torch Linear) */
  void (*linear) (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
                  const KinTensor *bias, int64_t rows, int64_t in, int64_t out);
  /* c[b] = alpha · op(a[b]) · op(b[b]) for b < batch, a [M,K] (or [K,M] when trans_a),
   * b [K,N] (or [N,K] when trans_b), c [M,N]; stride_* are elements between batches
   * (0 = the same matrix for every batch). */
  void (*matmul) (KinBackend *be, KinTensor *c, const KinTensor *a, const KinTensor *b,
                  int batch, int m, int n, int k, gboolean trans_a, gboolean trans_b,
                  float alpha, int64_t stride_a, int64_t stride_b, int64_t stride_c);

  /* Normalisations over the last dim of [rows, dim].  w/b may be NULL (no affine). */
  void (*layer_norm) (KinBackend *be, KinTensor *y, const KinTensor *x,
                      const KinTensor *w, const KinTensor *b, int64_t rows, int64_t dim, float eps);
  /* y = w ⊙ x·rsqrt(mean(x²)+eps); w may be NULL. */
  void (*rms_norm) (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
                    int64_t rows, int64_t dim, float eps);
  /* x [groups, rows, dim]; shift/scale [groups, dim] at the given element offsets and with
   * group stride sstride (elements between consecutive groups' vectors):
   * y = x·(1+scale[g]) + shift[g].  In place allowed. */
  void (*modulate) (KinBackend *be, KinTensor *y, const KinTensor *x,
                    const KinTensor *shift, int64_t shift_offset,
                    const KinTensor *scale, int64_t scale_offset, int64_t sstride,
                    int64_t groups, int64_t rows, int64_t dim);
  /* x[g, r, :] += gate[g] ⊙ y[g, r, :]; gate at gate_offset, group stride gstride; gate NULL = 1. */
  void (*gate_add) (KinBackend *be, KinTensor *x, const KinTensor *y,
                    const KinTensor *gate, int64_t gate_offset, int64_t gstride,
                    int64_t groups, int64_t rows, int64_t dim);

  /* Element-wise (in place allowed). */
  void (*gelu_tanh) (KinBackend *be, KinTensor *y, const KinTensor *x);
  void (*silu) (KinBackend *be, KinTensor *y, const KinTensor *x);
  /* softmax over the last dim of [rows, dim], in place allowed */
  void (*softmax) (KinBackend *be, KinTensor *y, const KinTensor *x, int64_t rows, int64_t dim);
  /* y[i] = a[i] + b[i % numel(b)]  (b broadcast by repetition; numel(a) % numel(b) == 0) */
  void (*add) (KinBackend *be, KinTensor *y, const KinTensor *a, const KinTensor *b);
  /* y[i] = a[i] · b[i % numel(b)] */
  void (*mul) (KinBackend *be, KinTensor *y, const KinTensor *a, const KinTensor *b);
  /* y = alpha·x + beta (in place allowed) */
  void (*scale) (KinBackend *be, KinTensor *y, const KinTensor *x, float alpha, float beta);

  void (*attention) (KinBackend *be, KinTensor *out, const KinTensor *q, const KinTensor *k,
                     const KinTensor *v, const KinAttention *desc);

  void (*conv2d) (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
                  const KinTensor *bias, const KinConv2d *desc);
  /* x [n, c, hw]; groups divides c; w/b [c] optional; silu fused when asked. In place allowed. */
  void (*group_norm) (KinBackend *be, KinTensor *y, const KinTensor *x, const KinTensor *w,
                      const KinTensor *b, int64_t n, int64_t c, int64_t hw, int groups,
                      float eps, gboolean silu);
  /* x [nc, h, w] → y [nc, 2h, 2w] */
  void (*upsample_nearest2x) (KinBackend *be, KinTensor *y, const KinTensor *x,
                              int64_t nc, int64_t h, int64_t w);

  /* Interleaved-pair rotary embedding, in place on x viewed as [batch, len, heads, head_dim]
   * where token (b, l) starts at x_offset + (b*len + l)*stride elements:
   *   out[2i]   = x[2i]·cos[l, i] − x[2i+1]·sin[l, i]
   *   out[2i+1] = x[2i+1]·cos[l, i] + x[2i]·sin[l, i]
   * cos/sin are [len, head_dim/2] tables computed by the caller (so model quirks stay there). */
  void (*rope) (KinBackend *be, KinTensor *x, int64_t x_offset, int64_t stride,
                int64_t batch, int64_t len, int heads, int head_dim,
                const KinTensor *cos, const KinTensor *sin);

  /* y = x permuted: x has shape dims[0..ndim) (contiguous), y[perm-order] — y's dim i is x's
   * dim perm[i].  ndim ≤ KIN_MAX_DIMS. */
  void (*permute) (KinBackend *be, KinTensor *y, const KinTensor *x, int ndim,
                   const int64_t *dims, const int *perm);
  /* Copies n elements from x[x_offset…] to y[y_offset…]. */
  void (*copy) (KinBackend *be, KinTensor *y, int64_t y_offset, const KinTensor *x,
                int64_t x_offset, int64_t n);

  /* Optional (NULL = not tracked): bytes of backend memory in use now, the most in use since the
   * last reset, and the device's total (0 if unknown).  reset_peak sets peak to in_use. */
  void (*memory_stats) (KinBackend *be, uint64_t *in_use, uint64_t *peak, uint64_t *total);
  void (*reset_peak_memory) (KinBackend *be);

  /* Optional (NULL = no graphs; see kin_backend_has_graphs): record the ops queued between
   * graph_begin() and graph_end() into a graph instead of running them, then replay it with
   * graph_launch().  Inside a capture nothing may upload, download or synchronize (the backend
   * fails those ops), and host-side decisions are frozen into the graph, so a captured sequence
   * must depend on nothing but device memory whose address stays the same.  Memory allocated or
   * freed during the capture (and everything live when it began) stays reserved for the graph
   * until graph_free(), so its temporaries keep their addresses across replays.  graph_end()
   * returns NULL (with the backend's error set) when the capture broke; the backend stays
   * usable.  At most one graph lives at a time. */
  gboolean (*graph_begin) (KinBackend *be);
  gpointer (*graph_end) (KinBackend *be);
  void     (*graph_launch) (KinBackend *be, gpointer graph);
  void     (*graph_free) (KinBackend *be, gpointer graph);

  /* Storage for linear-layer weights that a checkpoint keeps in F32 (kin_weights_get_linear):
   * FALSE keeps F32 (the CPU, bit-exact); TRUE converts them to BF16 once at load (device
   * backends: half the memory, tensor cores, f32 accumulation).  F16/BF16 weights always keep
   * their type. */
  gboolean linear_weights_bf16;

  /* error state (see the top of this file) */
  GError *error;
};

/* Backend memory statistics (see memory_stats above); FALSE when the backend does not track them. */
gboolean  kin_backend_memory_stats (KinBackend *be, uint64_t *in_use, uint64_t *peak, uint64_t *total);
void      kin_backend_reset_peak_memory (KinBackend *be);
/* TRUE when @be can capture and replay graphs (graph_begin … above). */
gboolean  kin_backend_has_graphs (KinBackend *be);

/* What to tell a user whose device ran out of memory; appended to OUT_OF_MEMORY messages. */
#define KIN_BACKEND_OOM_HINT \
  "try a smaller size or fewer frames, the CPU device, or low memory mode"

/* The CPU backend (process-wide singleton; thread-safe to use from one engine thread). */
KinBackend *kin_backend_cpu (void);

/* Records @code/@format as the backend's error unless one is already set. */
void      kin_backend_set_error (KinBackend *be, int code, const char *format, ...) G_GNUC_PRINTF (3, 4);
/* TRUE if no error is pending; otherwise moves the error into @error and returns FALSE. */
gboolean  kin_backend_take_error (KinBackend *be, GError **error);
gboolean  kin_backend_failed (KinBackend *be);

/* Convenience: a tensor copied from host f32 data (works on every backend). */
KinTensor *kin_tensor_from_host_f32 (KinBackend *be, const float *data, int ndim,
                                     const int64_t *shape, GError **error);
/* Copies a tensor's data (any backend, must be F32) to a new host array of numel floats. */
float     *kin_tensor_to_host_f32 (const KinTensor *t);

/* Call first thing in main(): makes OpenMP threads sleep instead of spin while they wait
 * (OMP_WAIT_POLICY=passive), unless the user chose a policy.  libgomp reads its environment when
 * it loads, so this re-executes the program once with the variable set.  Spinning workers cost
 * up to 10× in wall time on a machine whose cores are busy with anything else. */
void      kin_backend_cpu_prepare_process (char **argv);

/* The backend for a device preference: "cpu", "cuda" or "auto"/NULL (CUDA when its module loads
 * and a device answers, else the CPU).  Never fails: a CUDA problem is logged with its reason and
 * the CPU is used. */
KinBackend *kin_backend_for_device (const char *device);

/* Sets the number of threads the CPU backend uses (0 = all cores). */
void      kin_backend_cpu_set_threads (int n);

G_END_DECLS
