/* test-stdit.c — STDiT/STDiT2: config derivation, loader errors, and forward-pass invariants on
 * tiny random models (padding and crop, caption packing, mask tiling, x_mask, weight dtypes,
 * the bf16 timestep quirk).  The numbers themselves are checked by the golden cases. */
#include <glib.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include "kin-error.h"
#include "kin-stdit.h"

/* ---------------------------------------------------------------------------------------------
 * Building weight files */

typedef struct {
  char *name;
  int ndim;
  int64_t shape[KIN_MAX_DIMS];
  float *data;
} Ent;

typedef struct {
  GPtrArray *ents;
  guint32 seed;
} Spec;

static void
ent_free (Ent *e)
{
  g_free (e->name);
  g_free (e->data);
  g_free (e);
}

static Spec *
spec_new (guint32 seed)
{
  Spec *s = g_new0 (Spec, 1);
  s->ents = g_ptr_array_new_with_free_func ((GDestroyNotify) ent_free);
  s->seed = seed;
  return s;
}

static void
spec_free (Spec *s)
{
  g_ptr_array_unref (s->ents);
  g_free (s);
}

G_DEFINE_AUTOPTR_CLEANUP_FUNC (Spec, spec_free)

static float
rnd (guint32 *state)
{
  *state = *state * 1664525u + 1013904223u;
  return ((*state >> 8) / 16777216.0f) * 2.0f - 1.0f;
}

static int64_t
numel (const Ent *e)
{
  int64_t n = 1;
  for (int i = 0; i < e->ndim; i++)
    n *= e->shape[i];
  return n;
}

/* Adds a tensor with uniform values in [−amp, amp] (@base added, for norm weights). */
static Ent *
spec_add (Spec *s, const char *name, float amp, float base, int ndim, ...)
{
  Ent *e = g_new0 (Ent, 1);
  va_list ap;
  va_start (ap, ndim);
  for (int i = 0; i < ndim; i++)
    e->shape[i] = va_arg (ap, int64_t);
  va_end (ap);
  e->name = g_strdup (name);
  e->ndim = ndim;
  e->data = g_new (float, numel (e));
  for (int64_t i = 0; i < numel (e); i++)
    e->data[i] = base + amp * rnd (&s->seed);
  g_ptr_array_add (s->ents, e);
  return e;
}

static Ent *
spec_find (Spec *s, const char *name)
{
  for (guint i = 0; i < s->ents->len; i++) {
    Ent *e = g_ptr_array_index (s->ents, i);
    if (strcmp (e->name, name) == 0)
      return e;
  }
  return NULL;
}

static void
spec_remove (Spec *s, const char *name)
{
  Ent *e = spec_find (s, name);
  g_assert_nonnull (e);
  g_ptr_array_remove (s->ents, e);
}

static void
add_linear (Spec *s, const char *prefix, int64_t in, int64_t out)
{
  g_autofree char *w = g_strdup_printf ("%s.weight", prefix);
  g_autofree char *b = g_strdup_printf ("%s.bias", prefix);
  spec_add (s, w, 1.7f / sqrtf ((float) in), 0, 2, out, in);
  spec_add (s, b, 0.05f, 0, 1, out);
}

static void
add_mlp (Spec *s, const char *prefix, int64_t in, int64_t out)
{
  g_autofree char *p0 = g_strdup_printf ("%s.mlp.0", prefix);
  g_autofree char *p2 = g_strdup_printf ("%s.mlp.2", prefix);
  add_linear (s, p0, in, out);
  add_linear (s, p2, out, out);
}

typedef struct {
  int version, c, heads, depth, cap, len;
} Tiny;

/* A complete random STDiT (v1.0) or STDiT2 (v1.1) state dict with the upstream key names. */
static Spec *
tiny_model (const Tiny *t, guint32 seed)
{
  Spec *s = spec_new (seed);
  int64_t c = t->c, hd = c / t->heads;
  spec_add (s, "x_embedder.proj.weight", 0.3f, 0, 5, c, (int64_t) 4, (int64_t) 1, (int64_t) 2, (int64_t) 2);
  spec_add (s, "x_embedder.proj.bias", 0.05f, 0, 1, c);
  add_mlp (s, "t_embedder", 256, c);
  add_linear (s, "t_block.1", c, 6 * c);
  add_linear (s, "y_embedder.y_proj.fc1", t->cap, c);
  add_linear (s, "y_embedder.y_proj.fc2", c, c);
  spec_add (s, "y_embedder.y_embedding", 0.1f, 0, 2, (int64_t) t->len, (int64_t) t->cap);
  if (t->version == 2) {
    add_linear (s, "t_block_temp.1", c, 3 * c);
    add_mlp (s, "csize_embedder", 256, c / 3);
    add_mlp (s, "ar_embedder", 256, c / 3);
    add_mlp (s, "fl_embedder", 256, c);
    add_mlp (s, "fps_embedder", 256, c);
    Ent *f = spec_add (s, "rope.freqs", 0, 0, 1, hd / 2);
    for (int64_t i = 0; i < hd / 2; i++)
      f->data[i] = (float) pow (10000.0, -2.0 * i / hd);
  }
  for (int i = 0; i < t->depth; i++) {
    char key[96];
    g_snprintf (key, sizeof key, "blocks.%d.scale_shift_table", i);
    spec_add (s, key, 0.1f, 0, 2, (int64_t) 6, c);
    if (t->version == 2) {
      g_snprintf (key, sizeof key, "blocks.%d.scale_shift_table_temporal", i);
      spec_add (s, key, 0.1f, 0, 2, (int64_t) 3, c);
    }
    const char *attns[2] = { "attn", "attn_temp" };
    for (int a = 0; a < 2; a++) {
      g_snprintf (key, sizeof key, "blocks.%d.%s.qkv", i, attns[a]);
      add_linear (s, key, c, 3 * c);
      g_snprintf (key, sizeof key, "blocks.%d.%s.proj", i, attns[a]);
      add_linear (s, key, c, c);
      if (t->version == 2) {
        g_snprintf (key, sizeof key, "blocks.%d.%s.q_norm.weight", i, attns[a]);
        spec_add (s, key, 0.1f, 1.0f, 1, hd);
        g_snprintf (key, sizeof key, "blocks.%d.%s.k_norm.weight", i, attns[a]);
        spec_add (s, key, 0.1f, 1.0f, 1, hd);
      }
    }
    g_snprintf (key, sizeof key, "blocks.%d.cross_attn.q_linear", i);
    add_linear (s, key, c, c);
    g_snprintf (key, sizeof key, "blocks.%d.cross_attn.kv_linear", i);
    add_linear (s, key, c, 2 * c);
    g_snprintf (key, sizeof key, "blocks.%d.cross_attn.proj", i);
    add_linear (s, key, c, c);
    g_snprintf (key, sizeof key, "blocks.%d.mlp.fc1", i);
    add_linear (s, key, c, 4 * c);
    g_snprintf (key, sizeof key, "blocks.%d.mlp.fc2", i);
    add_linear (s, key, 4 * c, c);
  }
  spec_add (s, "final_layer.scale_shift_table", 0.1f, 0, 2, (int64_t) 2, c);
  add_linear (s, "final_layer.linear", c, 32);
  return s;
}

/* Writes the spec as safetensors with every tensor stored as @dtype. */
static void
spec_write (Spec *s, const char *path, KinDType dtype)
{
  guint n = s->ents->len;
  g_autofree const char **names = g_new (const char *, n);
  g_autofree KinDType *dtypes = g_new (KinDType, n);
  g_autofree int *ndims = g_new (int, n);
  g_autofree const int64_t **shapes = g_new (const int64_t *, n);
  g_autofree const void **datas = g_new (const void *, n);
  g_autoptr (GPtrArray) bufs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < n; i++) {
    Ent *e = g_ptr_array_index (s->ents, i);
    void *buf = g_malloc (numel (e) * kin_dtype_size (dtype));
    g_assert_true (kin_convert_from_f32 (buf, dtype, e->data, numel (e)));
    g_ptr_array_add (bufs, buf);
    names[i] = e->name;
    dtypes[i] = dtype;
    ndims[i] = e->ndim;
    shapes[i] = e->shape;
    datas[i] = buf;
  }
  g_autoptr (GError) error = NULL;
  g_assert_true (kin_safetensors_write (path, n, (const char *const *) names, dtypes, ndims,
                                        (const int64_t *const *) shapes,
                                        (const void *const *) datas, NULL, &error));
  g_assert_no_error (error);
}

static char *tmp_dir;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmp_dir, name, NULL);
}

static KinWeights *
write_and_open (Spec *s, const char *name, KinDType dtype)
{
  g_autofree char *path = tmp_path (name);
  spec_write (s, path, dtype);
  g_autoptr (GError) error = NULL;
  KinWeights *ws = kin_weights_open (path, &error);
  g_assert_no_error (error);
  return ws;
}

static KinStdit *
load_spec (Spec *s, const char *name, KinDType dtype, gboolean bf16_quirks)
{
  g_autoptr (KinWeights) ws = write_and_open (s, name, dtype);
  g_autoptr (GError) error = NULL;
  KinStditConfig cfg;
  kin_stdit_config_init (&cfg);
  cfg.bf16_quirks = bf16_quirks;
  cfg.num_heads = 2;                        /* the tiny models' head count (v1.0 cannot tell) */
  g_assert_true (kin_stdit_config_from_weights (&cfg, ws, &error));
  g_assert_no_error (error);
  KinStdit *m = kin_stdit_load (ws, &cfg, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  return m;
}

static const Tiny tiny_v1 = { 1, 24, 2, 2, 16, 6 };
static const Tiny tiny_v2 = { 2, 24, 2, 2, 16, 6 };

/* ---------------------------------------------------------------------------------------------
 * Running the model */

typedef struct {
  int64_t b, t, h, w, len;
  float *x;             /* [b, 4, t, h, w] */
  float *y;             /* [b, len, 16] */
  float timestep[4];
  int32_t *mask;
  int mask_rows;
  float height[4], width[4], frames[4], ar[4], fps[4];
  guint8 *x_mask;
} Inputs;

static void
inputs_init (Inputs *in, int64_t b, int64_t t, int64_t h, int64_t w, int64_t len, guint32 seed)
{
  memset (in, 0, sizeof *in);
  in->b = b;
  in->t = t;
  in->h = h;
  in->w = w;
  in->len = len;
  in->x = g_new (float, b * 4 * t * h * w);
  in->y = g_new (float, b * len * 16);
  for (int64_t i = 0; i < b * 4 * t * h * w; i++)
    in->x[i] = rnd (&seed);
  for (int64_t i = 0; i < b * len * 16; i++)
    in->y[i] = rnd (&seed);
  for (int i = 0; i < 4; i++) {
    in->timestep[i] = i == 0 ? 999.0f : 421.0f - 100.0f * i;
    in->height[i] = (float) (8 * h);
    in->width[i] = (float) (8 * w);
    in->frames[i] = (float) t;
    in->ar[i] = (float) h / (float) w;
    in->fps[i] = 24.0f;
  }
  in->mask = g_new (int32_t, b * len);
  for (int64_t i = 0; i < b * len; i++)
    in->mask[i] = 1;
  in->mask_rows = (int) b;
}

static void
inputs_clear (Inputs *in)
{
  g_free (in->x);
  g_free (in->y);
  g_free (in->mask);
  g_free (in->x_mask);
}

/* Runs the model; returns the host output [b, 8, t, h, w] or NULL with @error. */
static float *
run (KinStdit *m, const Inputs *in, GError **error)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t xs[5] = { in->b, 4, in->t, in->h, in->w };
  int64_t ys[3] = { in->b, in->len, 16 };
  int64_t os[5] = { in->b, 8, in->t, in->h, in->w };
  g_autoptr (KinTensor) x = kin_tensor_from_host_f32 (be, in->x, 5, xs, error);
  g_autoptr (KinTensor) y = kin_tensor_from_host_f32 (be, in->y, 3, ys, error);
  g_autoptr (KinTensor) out = kin_tensor_new (be, KIN_DTYPE_F32, 5, os, error);
  g_assert_nonnull (out);
  gboolean v2 = kin_stdit_get_config (m)->version == KIN_STDIT_V2;
  KinStditInput input = {
    .x = x, .timestep = in->timestep, .y = y, .mask = in->mask, .mask_rows = in->mask_rows,
    .height = v2 ? in->height : NULL, .width = v2 ? in->width : NULL,
    .num_frames = v2 ? in->frames : NULL, .ar = v2 ? in->ar : NULL, .fps = v2 ? in->fps : NULL,
    .x_mask = in->x_mask,
  };
  if (!kin_stdit_forward (m, &input, out, error))
    return NULL;
  return kin_tensor_to_host_f32 (out);
}

static float *
run_ok (KinStdit *m, const Inputs *in)
{
  g_autoptr (GError) error = NULL;
  float *out = run (m, in, &error);
  g_assert_no_error (error);
  g_assert_nonnull (out);
  return out;
}

static double
max_rel (const float *a, const float *b, int64_t n)
{
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < n; i++) {
    g_assert_true (isfinite (a[i]) && isfinite (b[i]));
    diff = MAX (diff, fabs ((double) a[i] - b[i]));
    ref = MAX (ref, fabs ((double) b[i]));
  }
  return diff / MAX (ref, 1e-30);
}

/* ---------------------------------------------------------------------------------------------
 * Config */

static void
test_config_json (void)
{
  static const char json[] =
    "{\"architectures\": [\"STDiT2\"], \"model_type\": \"stdit2\", \"caption_channels\": 4096,"
    " \"class_dropout_prob\": 0.1, \"depth\": 28, \"drop_path\": 0.0,"
    " \"enable_flash_attn\": false, \"enable_layernorm_kernel\": false,"
    " \"enable_sequence_parallelism\": false, \"freeze\": null, \"hidden_size\": 1152,"
    " \"in_channels\": 4, \"input_size\": [32, 60, 106], \"input_sq_size\": 512,"
    " \"mlp_ratio\": 4.0, \"model_max_length\": 200, \"no_temporal_pos_emb\": false,"
    " \"num_heads\": 16, \"patch_size\": [1, 2, 2], \"pred_sigma\": true, \"qk_norm\": true,"
    " \"torch_dtype\": \"float32\", \"transformers_version\": \"4.40.1\"}";
  g_autofree char *path = tmp_path ("config.json");
  g_assert_true (g_file_set_contents (path, json, -1, NULL));
  g_autoptr (GError) error = NULL;
  KinStditConfig cfg;
  kin_stdit_config_init (&cfg);
  g_assert_true (kin_stdit_config_from_json (&cfg, path, NULL, &error));
  g_assert_no_error (error);
  g_assert_cmpint (cfg.version, ==, KIN_STDIT_V2);
  g_assert_cmpint (cfg.depth, ==, 28);
  g_assert_cmpint (cfg.hidden_size, ==, 1152);
  g_assert_cmpint (cfg.num_heads, ==, 16);
  g_assert_cmpint (cfg.model_max_length, ==, 200);
  g_assert_cmpint (cfg.caption_channels, ==, 4096);
  g_assert_cmpint (cfg.mlp_hidden, ==, 4608);
  g_assert_cmpint (cfg.out_channels, ==, 8);
  g_assert_cmpint (cfg.size_dim, ==, 384);
  g_assert_cmpint (cfg.input_sq_size, ==, 512);
  g_assert_cmpint (cfg.patch_size[1], ==, 2);
  g_assert_true (cfg.qk_norm);
  g_assert_false (cfg.bf16_quirks);
}

/* Shapes only: the tensors config derivation reads, for a given hidden size (data shared). */
static KinWeights *
shapes_only_v1 (int64_t c, int depth, int64_t cap, int64_t len, gpointer *buffer)
{
  KinWeights *ws = kin_weights_new ();
  int64_t big = MAX (4 * c * c, 1 << 16);
  *buffer = g_malloc0 (big * sizeof (float));
  struct { const char *name; int ndim; int64_t s[5]; } t[] = {
    { "x_embedder.proj.weight", 5, { c, 4, 1, 2, 2 } },
    { "final_layer.linear.weight", 2, { 32, c } },
    { "y_embedder.y_proj.fc1.weight", 2, { c, cap } },
    { "y_embedder.y_embedding", 2, { len, cap } },
    { "t_embedder.mlp.0.weight", 2, { c, 256 } },
    { "blocks.0.mlp.fc1.weight", 2, { 4 * c, c } },
  };
  g_autoptr (GError) error = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (t); i++) {
    int64_t n = 1;
    for (int d = 0; d < t[i].ndim; d++)
      n *= t[i].s[d];
    g_assert_true (kin_weights_add_entry (ws, t[i].name, KIN_DTYPE_F32, t[i].ndim, t[i].s,
                                          *buffer, n * sizeof (float), "shapes.safetensors", &error));
  }
  for (int i = 0; i < depth; i++) {
    g_autofree char *key = g_strdup_printf ("blocks.%d.scale_shift_table", i);
    int64_t s[2] = { 6, c };
    g_assert_true (kin_weights_add_entry (ws, key, KIN_DTYPE_F32, 2, s, *buffer,
                                          6 * c * sizeof (float), "shapes.safetensors", &error));
  }
  g_assert_no_error (error);
  return ws;
}

static void
test_config_v1_shapes (void)
{
  g_autoptr (GError) error = NULL;
  gpointer buf = NULL;
  KinStditConfig cfg;

  /* STDiT-XL/2: 28 blocks, 16 heads by convention, T5 4096 × 120 */
  g_autoptr (KinWeights) xl = shapes_only_v1 (1152, 28, 4096, 120, &buf);
  kin_stdit_config_init (&cfg);
  g_assert_true (kin_stdit_config_from_weights (&cfg, xl, &error));
  g_assert_no_error (error);
  g_assert_cmpint (cfg.version, ==, KIN_STDIT_V1);
  g_assert_cmpint (cfg.depth, ==, 28);
  g_assert_cmpint (cfg.num_heads, ==, 16);
  g_assert_cmpint (cfg.model_max_length, ==, 120);
  g_assert_cmpint (cfg.caption_channels, ==, 4096);
  g_assert_cmpint (cfg.mlp_hidden, ==, 4608);
  g_assert_cmpfloat (cfg.space_scale, ==, 1.0);
  g_assert_false (cfg.qk_norm);
  g_free (buf);

  /* hidden 144: heads of 72 → 2; a hidden size that 72 does not divide needs num_heads */
  g_autoptr (KinWeights) w144 = shapes_only_v1 (144, 3, 32, 8, &buf);
  kin_stdit_config_init (&cfg);
  g_assert_true (kin_stdit_config_from_weights (&cfg, w144, &error));
  g_assert_cmpint (cfg.num_heads, ==, 2);
  g_assert_cmpint (cfg.depth, ==, 3);
  g_free (buf);

  g_autoptr (KinWeights) w64 = shapes_only_v1 (64, 2, 32, 8, &buf);
  kin_stdit_config_init (&cfg);
  g_assert_false (kin_stdit_config_from_weights (&cfg, w64, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_assert_nonnull (strstr (error->message, "num_heads"));
  g_clear_error (&error);
  kin_stdit_config_init (&cfg);
  cfg.num_heads = 4;                      /* the override */
  g_assert_true (kin_stdit_config_from_weights (&cfg, w64, &error));
  g_assert_cmpint (cfg.num_heads, ==, 4);
  g_free (buf);
}

/* space_scale / time_scale come back from the stored v1.0 buffers (16x256: 0.5; 64x512: 2/3). */
static void
test_config_v1_scales (void)
{
  g_autoptr (Spec) s = tiny_model (&tiny_v1, 1);
  int64_t c = tiny_v1.c;
  Ent *pe = spec_add (s, "pos_embed", 0, 0, 3, (int64_t) 1, (int64_t) 4, c);
  Ent *pt = spec_add (s, "pos_embed_temporal", 0, 0, 3, (int64_t) 1, (int64_t) 3, c);
  for (int64_t n = 0; n < 4; n++) {
    double xw = (n % 2) / 0.5, xh = (n / 2) / 0.5;
    for (int64_t k = 0; k < c / 4; k++) {
      double om = pow (10000.0, -(double) k / (c / 4));
      pe->data[n * c + k] = (float) sin (xw * om);
      pe->data[n * c + c / 4 + k] = (float) cos (xw * om);
      pe->data[n * c + c / 2 + k] = (float) sin (xh * om);
      pe->data[n * c + 3 * c / 4 + k] = (float) cos (xh * om);
    }
  }
  for (int64_t t = 0; t < 3; t++)
    for (int64_t k = 0; k < c / 2; k++) {
      double om = pow (10000.0, -(double) k / (c / 2)), p = t * 1.5;
      pt->data[t * c + k] = (float) sin (p * om);
      pt->data[t * c + c / 2 + k] = (float) cos (p * om);
    }
  g_autoptr (KinWeights) ws = write_and_open (s, "v1-scales.safetensors", KIN_DTYPE_F32);
  g_autoptr (GError) error = NULL;
  KinStditConfig cfg;
  kin_stdit_config_init (&cfg);
  cfg.num_heads = 2;                        /* hidden 24 is no multiple of 72 */
  g_assert_true (kin_stdit_config_from_weights (&cfg, ws, &error));
  g_assert_no_error (error);
  g_assert_cmpfloat_with_epsilon (cfg.space_scale, 0.5, 1e-9);
  g_assert_cmpfloat_with_epsilon (cfg.time_scale, 2.0 / 3.0, 1e-9);
  /* a loaded model ignores the stored tables without listing them as unexpected */
  g_autoptr (KinStdit) m = kin_stdit_load (ws, &cfg, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  g_auto (GStrv) unused = kin_weights_unused (ws);
  g_assert_cmpint (g_strv_length (unused), ==, 0);
}

static void
test_config_conflict (void)
{
  g_autoptr (Spec) s = tiny_model (&tiny_v2, 2);
  g_autoptr (KinWeights) ws = write_and_open (s, "conflict.safetensors", KIN_DTYPE_F32);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, "{\"depth\": 5, \"num_heads\": 2}", -1, NULL));
  g_autoptr (GError) error = NULL;
  KinStditConfig cfg;
  kin_stdit_config_init (&cfg);
  g_assert_false (kin_stdit_config_derive (&cfg, json_node_get_object (json_parser_get_root (p)),
                                           ws, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS);
  g_assert_nonnull (strstr (error->message, "depth"));
  g_clear_error (&error);
  /* the head count of an STDiT2 is readable from q_norm: a wrong one is refused */
  kin_stdit_config_init (&cfg);
  cfg.num_heads = 3;
  g_assert_false (kin_stdit_config_from_weights (&cfg, ws, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS);
  g_assert_nonnull (strstr (error->message, "num_heads"));
}

/* ---------------------------------------------------------------------------------------------
 * Loader errors */

static void
expect_load_error (Spec *s, const char *file, const char *const *needles)
{
  g_autoptr (KinWeights) ws = write_and_open (s, file, KIN_DTYPE_F32);
  g_autoptr (GError) error = NULL;
  KinStditConfig cfg;
  kin_stdit_config_init (&cfg);
  cfg.num_heads = 2;
  g_autoptr (KinStdit) m = NULL;
  if (kin_stdit_config_from_weights (&cfg, ws, &error))
    m = kin_stdit_load (ws, &cfg, kin_backend_cpu (), &error);
  g_assert_null (m);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS);
  for (guint i = 0; needles[i] != NULL; i++)
    if (strstr (error->message, needles[i]) == NULL)
      g_error ("'%s' not in the error message: %s", needles[i], error->message);
}

static void
test_load_missing_key (void)
{
  g_autoptr (Spec) s = tiny_model (&tiny_v2, 3);
  spec_remove (s, "blocks.1.attn_temp.proj.bias");
  const char *needles[] = { "blocks.1.attn_temp.proj.bias", "missing.safetensors", "[24]", NULL };
  expect_load_error (s, "missing.safetensors", needles);
}

static void
test_load_misshaped_key (void)
{
  g_autoptr (Spec) s = tiny_model (&tiny_v2, 4);
  spec_remove (s, "blocks.0.cross_attn.kv_linear.weight");
  spec_add (s, "blocks.0.cross_attn.kv_linear.weight", 0.1f, 0, 2, (int64_t) 47, (int64_t) 24);
  const char *needles[] = { "blocks.0.cross_attn.kv_linear.weight", "misshaped.safetensors",
                            "[47, 24]", "[48, 24]", NULL };
  expect_load_error (s, "misshaped.safetensors", needles);
}

static void
test_not_stdit (void)
{
  g_autoptr (Spec) vae = spec_new (5);
  spec_add (vae, "encoder.conv_in.weight", 0.1f, 0, 4, (int64_t) 8, (int64_t) 3, (int64_t) 3, (int64_t) 3);
  spec_add (vae, "encoder.down_blocks.0.resnets.0.conv1.weight", 0.1f, 0, 4, (int64_t) 8, (int64_t) 8, (int64_t) 3, (int64_t) 3);
  spec_add (vae, "quant_conv.weight", 0.1f, 0, 4, (int64_t) 8, (int64_t) 8, (int64_t) 1, (int64_t) 1);
  const char *vae_needles[] = { "VAE", "vae.safetensors", NULL };
  expect_load_error (vae, "vae.safetensors", vae_needles);

  g_autoptr (Spec) t5 = spec_new (6);
  spec_add (t5, "shared.weight", 0.1f, 0, 2, (int64_t) 32, (int64_t) 16);
  spec_add (t5, "encoder.block.0.layer.0.SelfAttention.q.weight", 0.1f, 0, 2, (int64_t) 16, (int64_t) 16);
  const char *t5_needles[] = { "T5", "t5.safetensors", NULL };
  expect_load_error (t5, "t5.safetensors", t5_needles);

  /* and through kin_stdit_open, the path users give */
  g_autofree char *path = tmp_path ("vae.safetensors");
  g_autoptr (GError) error = NULL;
  g_autoptr (KinStdit) m = kin_stdit_open (path, kin_backend_cpu (), &error);
  g_assert_null (m);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_WEIGHTS);
  g_assert_nonnull (strstr (error->message, "VAE"));
}

/* Extra keys are listed in one warning (run in a subprocess: warnings are fatal in tests). */
static void
test_unused_keys_warning (void)
{
  if (g_test_subprocess ()) {
    g_log_set_always_fatal (G_LOG_FATAL_MASK);
    g_autoptr (Spec) s = tiny_model (&tiny_v2, 7);
    spec_add (s, "extra.weight", 0.1f, 0, 1, (int64_t) 3);
    spec_add (s, "ema.shadow", 0.1f, 0, 1, (int64_t) 3);
    g_autoptr (KinStdit) m = load_spec (s, "extra.safetensors", KIN_DTYPE_F32, FALSE);
    g_assert_nonnull (m);
    return;
  }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*STDiT2*extra.weight*ema.shadow*");
}

static void
test_open_folder (void)
{
  g_autofree char *dir = tmp_path ("hf-folder");
  g_assert_cmpint (g_mkdir_with_parents (dir, 0700), ==, 0);
  g_autofree char *json = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (json, "{\"model_type\": \"stdit2\", \"num_heads\": 2, "
                                      "\"input_sq_size\": 256, \"qk_norm\": true}", -1, NULL));
  g_autoptr (Spec) s = tiny_model (&tiny_v2, 8);
  g_autofree char *st = g_build_filename (dir, "model.safetensors", NULL);
  spec_write (s, st, KIN_DTYPE_F32);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinStdit) m = kin_stdit_open (dir, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  const KinStditConfig *cfg = kin_stdit_get_config (m);
  g_assert_cmpint (cfg->version, ==, KIN_STDIT_V2);
  g_assert_cmpint (cfg->input_sq_size, ==, 256);
  g_assert_cmpint (cfg->num_heads, ==, 2);
  g_assert_cmpint (cfg->depth, ==, 2);
  const KinTensor *null_cap = kin_stdit_get_null_caption (m);
  g_assert_cmpint (null_cap->shape[0], ==, 6);
  g_assert_cmpint (null_cap->shape[1], ==, 16);

  /* a lone v1.0 file of a hidden size 72 does not divide: the head count must be given */
  g_autoptr (Spec) s1 = tiny_model (&tiny_v1, 9);
  g_autofree char *lone = tmp_path ("lone-v1.safetensors");
  spec_write (s1, lone, KIN_DTYPE_F32);
  g_autoptr (KinStdit) none = kin_stdit_open (lone, kin_backend_cpu (), &error);
  g_assert_null (none);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_assert_nonnull (strstr (error->message, "num_heads"));
  g_clear_error (&error);
  KinStditConfig preset;
  kin_stdit_config_init (&preset);
  preset.num_heads = 2;
  preset.bf16_quirks = TRUE;
  g_autoptr (KinStdit) v1 = kin_stdit_open_full (lone, &preset, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  g_assert_cmpint (kin_stdit_get_config (v1)->version, ==, KIN_STDIT_V1);
  g_assert_cmpint (kin_stdit_get_config (v1)->num_heads, ==, 2);
  g_assert_true (kin_stdit_get_config (v1)->bf16_quirks);
}

/* ---------------------------------------------------------------------------------------------
 * Forward invariants */

/* An odd latent is zero-padded to the patch grid and the output cropped: the same as running the
 * zero-padded latent and cropping by hand (same height/width conditioning). */
static void
test_forward_padding (void)
{
  g_autoptr (Spec) s = tiny_model (&tiny_v2, 11);
  g_autoptr (KinStdit) m = load_spec (s, "pad.safetensors", KIN_DTYPE_F32, FALSE);
  Inputs odd, even;
  inputs_init (&odd, 1, 3, 5, 7, 6, 12);
  inputs_init (&even, 1, 3, 6, 8, 6, 12);
  memcpy (even.y, odd.y, 6 * 16 * sizeof (float));
  memset (even.x, 0, 4 * 3 * 6 * 8 * sizeof (float));
  for (int64_t ct = 0; ct < 4 * 3; ct++)
    for (int64_t h = 0; h < 5; h++)
      memcpy (even.x + (ct * 6 + h) * 8, odd.x + (ct * 5 + h) * 7, 7 * sizeof (float));
  for (int i = 0; i < 4; i++) {
    even.height[i] = odd.height[i];
    even.width[i] = odd.width[i];
    even.ar[i] = odd.ar[i];
  }
  g_autofree float *a = run_ok (m, &odd);
  g_autofree float *b = run_ok (m, &even);
  g_autofree float *crop = g_new (float, 8 * 3 * 5 * 7);
  for (int64_t ct = 0; ct < 8 * 3; ct++)
    for (int64_t h = 0; h < 5; h++)
      memcpy (crop + (ct * 5 + h) * 7, b + (ct * 6 + h) * 8, 7 * sizeof (float));
  g_assert_cmpfloat (max_rel (a, crop, 8 * 3 * 5 * 7), <, 1e-6);
  inputs_clear (&odd);
  inputs_clear (&even);
}

/* Captions are packed by the mask, any 0/1 pattern: a batch with holes in its masks gives what
 * each sample gives alone with its valid tokens moved to the front. */
static void
check_caption_packing (const Tiny *tiny, guint32 seed)
{
  g_autoptr (Spec) s = tiny_model (tiny, seed);
  g_autoptr (KinStdit) m = load_spec (s, "pack.safetensors", KIN_DTYPE_F32, FALSE);
  const int32_t pattern[2][6] = { { 1, 0, 1, 1, 0, 0 }, { 0, 1, 1, 1, 1, 0 } };
  Inputs batch;
  inputs_init (&batch, 2, 3, 4, 6, 6, seed + 1);
  memcpy (batch.mask, pattern, sizeof pattern);
  g_autofree float *both = run_ok (m, &batch);
  int64_t per_x = 4 * 3 * 4 * 6, per_out = 8 * 3 * 4 * 6;
  for (int b = 0; b < 2; b++) {
    Inputs one;
    inputs_init (&one, 1, 3, 4, 6, 6, seed + 2);
    memcpy (one.x, batch.x + b * per_x, per_x * sizeof (float));
    one.timestep[0] = batch.timestep[b];
    int n = 0;
    for (int l = 0; l < 6; l++)
      if (pattern[b][l])
        memcpy (one.y + (n++) * 16, batch.y + (b * 6 + l) * 16, 16 * sizeof (float));
    for (int l = 0; l < 6; l++)
      one.mask[l] = l < n;
    g_autofree float *alone = run_ok (m, &one);
    g_assert_cmpfloat (max_rel (both + b * per_out, alone, per_out), <, 1e-5);
    inputs_clear (&one);
  }
  inputs_clear (&batch);
}

static void
test_forward_caption_packing (void)
{
  check_caption_packing (&tiny_v1, 21);
  check_caption_packing (&tiny_v2, 22);
}

/* One mask row for a doubled (CFG) batch is tiled, as upstream's mask.repeat. */
static void
test_forward_mask_tiling (void)
{
  g_autoptr (Spec) s = tiny_model (&tiny_v2, 31);
  g_autoptr (KinStdit) m = load_spec (s, "tile.safetensors", KIN_DTYPE_F32, FALSE);
  Inputs in;
  inputs_init (&in, 2, 2, 4, 4, 6, 32);
  const int32_t row[6] = { 1, 1, 1, 0, 0, 0 };
  memcpy (in.mask, row, sizeof row);
  memcpy (in.mask + 6, row, sizeof row);
  g_autofree float *two_rows = run_ok (m, &in);
  in.mask_rows = 1;
  g_autofree float *one_row = run_ok (m, &in);
  g_assert_cmpmem (two_rows, 2 * 8 * 2 * 16 * sizeof (float), one_row, 2 * 8 * 2 * 16 * sizeof (float));
  inputs_clear (&in);
}

/* x_mask all True is the plain path; a False frame switches that frame to timestep-0 modulation. */
static void
test_forward_x_mask (void)
{
  g_autoptr (Spec) s = tiny_model (&tiny_v2, 41);
  g_autoptr (KinStdit) m = load_spec (s, "xmask.safetensors", KIN_DTYPE_F32, FALSE);
  Inputs in;
  inputs_init (&in, 2, 3, 4, 4, 6, 42);
  int64_t n = 2 * 8 * 3 * 16;
  g_autofree float *plain = run_ok (m, &in);
  in.x_mask = g_new (guint8, 6);
  memset (in.x_mask, 1, 6);
  g_autofree float *ones = run_ok (m, &in);
  g_assert_cmpmem (plain, n * sizeof (float), ones, n * sizeof (float));
  in.x_mask[1] = 0;
  g_autofree float *cond = run_ok (m, &in);
  g_assert_cmpfloat (max_rel (cond, plain, n), >, 1e-3);
  inputs_clear (&in);
}

/* BF16 / F16 checkpoints run as the F32 checkpoint holding the same (rounded) values. */
static void
test_forward_weight_dtypes (void)
{
  KinDType types[2] = { KIN_DTYPE_BF16, KIN_DTYPE_F16 };
  for (int i = 0; i < 2; i++) {
    g_autoptr (Spec) s = tiny_model (&tiny_v2, 51);
    for (guint e = 0; e < s->ents->len; e++) {
      Ent *ent = g_ptr_array_index (s->ents, e);
      g_autofree void *tmp = g_malloc (numel (ent) * 2);
      kin_convert_from_f32 (tmp, types[i], ent->data, numel (ent));
      kin_convert_to_f32 (ent->data, tmp, types[i], numel (ent));
    }
    g_autoptr (KinStdit) narrow = load_spec (s, "narrow.safetensors", types[i], FALSE);
    g_autoptr (KinStdit) wide = load_spec (s, "wide.safetensors", KIN_DTYPE_F32, FALSE);
    Inputs in;
    inputs_init (&in, 1, 2, 4, 4, 6, 52);
    g_autofree float *a = run_ok (narrow, &in);
    g_autofree float *b = run_ok (wide, &in);
    g_assert_cmpfloat (max_rel (a, b, 8 * 2 * 16), <, 1e-5);
    inputs_clear (&in);
  }
}

/* bf16_quirks: upstream's bf16 inference embeds t = 999 as 1000; the float32 path does not. */
static void
test_forward_bf16_timestep (void)
{
  g_autoptr (Spec) s = tiny_model (&tiny_v2, 61);
  g_autoptr (KinStdit) exact = load_spec (s, "q0.safetensors", KIN_DTYPE_F32, FALSE);
  g_autoptr (KinStdit) quirky = load_spec (s, "q1.safetensors", KIN_DTYPE_F32, TRUE);
  Inputs in;
  inputs_init (&in, 1, 2, 4, 4, 6, 62);
  int64_t n = 8 * 2 * 16;
  in.timestep[0] = 999;
  g_autofree float *e999 = run_ok (exact, &in);
  g_autofree float *q999 = run_ok (quirky, &in);
  in.timestep[0] = 1000;
  g_autofree float *e1000 = run_ok (exact, &in);
  g_autofree float *q1000 = run_ok (quirky, &in);
  g_assert_cmpmem (q999, n * sizeof (float), q1000, n * sizeof (float));
  g_assert_cmpfloat (max_rel (e999, e1000, n), >, 1e-4);
  inputs_clear (&in);
}

typedef struct {
  const char *name;
  float *table;
  int64_t n;
} Capture;

static void
capture_hook (const char *name, int block, const KinTensor *t, gpointer user_data)
{
  Capture *c = user_data;
  if (strcmp (name, c->name) == 0 && c->table == NULL) {
    c->table = kin_tensor_to_host_f32 (t);
    c->n = kin_tensor_numel (t);
  }
}

/* Upstream's tables, transcribed literally: PositionEmbedding2D (v1.1) builds
 * meshgrid(grid_w, grid_h, indexing="ij"), transposes and flattens; get_2d_sincos_pos_embed
 * (v1.0) uses numpy's meshgrid(grid_w, grid_h) ("xy") and a reshape.  Either way the first half of
 * row n = h·Wp + w encodes w.  Here on a non-square grid, against the model's table. */
static double
check_pos_table (KinStdit *m, const Inputs *in, double scale, double base, const char *name)
{
  int64_t hp = (in->h + 1) / 2, wp = (in->w + 1) / 2, c = kin_stdit_get_config (m)->hidden_size;
  int64_t q = c / 4;
  g_autofree double *grid_h = g_new (double, hp);
  g_autofree double *grid_w = g_new (double, wp);
  for (int64_t i = 0; i < hp; i++)
    grid_h[i] = i / scale * (base > 0 ? base / hp : 1);
  for (int64_t i = 0; i < wp; i++)
    grid_w[i] = i / scale * (base > 0 ? base / wp : 1);
  /* ij meshgrid of (grid_w, grid_h): A[i][j] = grid_w[i]; A.t() flattened: index j·Wp + i */
  g_autofree double *first = g_new (double, hp * wp);
  g_autofree double *second = g_new (double, hp * wp);
  for (int64_t i = 0; i < wp; i++)
    for (int64_t j = 0; j < hp; j++) {
      first[j * wp + i] = grid_w[i];
      second[j * wp + i] = grid_h[j];
    }
  Capture cap = { name, NULL, 0 };
  KinBackend *be = kin_backend_cpu ();
  int64_t xs[5] = { in->b, 4, in->t, in->h, in->w }, ys[3] = { in->b, in->len, 16 };
  int64_t os[5] = { in->b, 8, in->t, in->h, in->w };
  g_autoptr (KinTensor) x = kin_tensor_from_host_f32 (be, in->x, 5, xs, NULL);
  g_autoptr (KinTensor) y = kin_tensor_from_host_f32 (be, in->y, 3, ys, NULL);
  g_autoptr (KinTensor) out = kin_tensor_new (be, KIN_DTYPE_F32, 5, os, NULL);
  gboolean v2 = base > 0;
  KinStditInput input = {
    .x = x, .timestep = in->timestep, .y = y, .mask = in->mask, .mask_rows = in->mask_rows,
    .height = v2 ? in->height : NULL, .width = v2 ? in->width : NULL,
    .num_frames = v2 ? in->frames : NULL, .ar = v2 ? in->ar : NULL, .fps = v2 ? in->fps : NULL,
    .hook = capture_hook, .hook_data = &cap,
  };
  g_autoptr (GError) error = NULL;
  g_assert_true (kin_stdit_forward (m, &input, out, &error));
  g_assert_no_error (error);
  g_assert_cmpint (cap.n, ==, hp * wp * c);
  double worst = 0;
  for (int64_t n = 0; n < hp * wp; n++)
    for (int64_t k = 0; k < q; k++) {
      double om = pow (10000.0, -(double) k / q);
      double want[4] = { sin (first[n] * om), cos (first[n] * om), sin (second[n] * om),
                         cos (second[n] * om) };
      for (int part = 0; part < 4; part++)
        worst = MAX (worst, fabs (cap.table[n * c + part * q + k] - want[part]));
    }
  g_free (cap.table);
  return worst;
}

static void
test_forward_pos_table_nonsquare (void)
{
  /* v1.1: latent 6×11 → grid 3×6, 48×88 pixels: scale = sqrt(48·88)/512, base = round(√18) */
  g_autoptr (Spec) s2 = tiny_model (&tiny_v2, 81);
  g_autoptr (KinStdit) v2 = load_spec (s2, "pos2.safetensors", KIN_DTYPE_F32, FALSE);
  Inputs in;
  inputs_init (&in, 1, 2, 6, 11, 6, 82);
  g_assert_cmpfloat (check_pos_table (v2, &in, sqrt (48.0 * 88.0) / 512, 4, "pos_emb"), <, 2e-5);
  inputs_clear (&in);
  /* v1.0 with space_scale 0.5 (the 16x256 checkpoints) */
  g_autoptr (Spec) s1 = tiny_model (&tiny_v1, 83);
  g_autoptr (KinWeights) ws = write_and_open (s1, "pos1.safetensors", KIN_DTYPE_F32);
  KinStditConfig cfg;
  kin_stdit_config_init (&cfg);
  cfg.num_heads = 2;
  cfg.space_scale = 0.5;
  g_autoptr (GError) error = NULL;
  g_assert_true (kin_stdit_config_from_weights (&cfg, ws, &error));
  g_autoptr (KinStdit) v1 = kin_stdit_load (ws, &cfg, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  inputs_init (&in, 1, 3, 4, 10, 6, 84);
  g_assert_cmpfloat (check_pos_table (v1, &in, 0.5, 0, "pos_embed"), <, 1e-6);
  inputs_clear (&in);
}

static void
test_forward_bad_input (void)
{
  g_autoptr (Spec) s1 = tiny_model (&tiny_v1, 71);
  g_autoptr (Spec) s2 = tiny_model (&tiny_v2, 72);
  g_autoptr (KinStdit) v1 = load_spec (s1, "bad1.safetensors", KIN_DTYPE_F32, FALSE);
  g_autoptr (KinStdit) v2 = load_spec (s2, "bad2.safetensors", KIN_DTYPE_F32, FALSE);
  g_autoptr (GError) error = NULL;
  Inputs in;
  inputs_init (&in, 2, 2, 4, 4, 6, 73);

  in.x_mask = g_new0 (guint8, 4);           /* x_mask is a v1.1 input */
  g_assert_null (run (v1, &in, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  g_clear_pointer (&in.x_mask, g_free);

  memset (in.mask + 6, 0, 6 * sizeof (int32_t));     /* an empty caption */
  g_assert_null (run (v2, &in, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);

  in.mask_rows = 3;                                   /* does not divide the batch */
  g_assert_null (run (v1, &in, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  inputs_clear (&in);
}

static void
remove_tree (const char *path)
{
  if (g_file_test (path, G_FILE_TEST_IS_DIR) && !g_file_test (path, G_FILE_TEST_IS_SYMLINK)) {
    g_autoptr (GDir) dir = g_dir_open (path, 0, NULL);
    const char *name;
    while (dir && (name = g_dir_read_name (dir)) != NULL) {
      g_autofree char *child = g_build_filename (path, name, NULL);
      remove_tree (child);
    }
  }
  g_remove (path);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmp_dir = g_dir_make_tmp ("test-stdit-XXXXXX", NULL);
  g_assert_nonnull (tmp_dir);
  g_test_add_func ("/stdit/config/json", test_config_json);
  g_test_add_func ("/stdit/config/v1-shapes", test_config_v1_shapes);
  g_test_add_func ("/stdit/config/v1-scales", test_config_v1_scales);
  g_test_add_func ("/stdit/config/conflict", test_config_conflict);
  g_test_add_func ("/stdit/load/missing-key", test_load_missing_key);
  g_test_add_func ("/stdit/load/misshaped-key", test_load_misshaped_key);
  g_test_add_func ("/stdit/load/not-stdit", test_not_stdit);
  g_test_add_func ("/stdit/load/unused-keys", test_unused_keys_warning);
  g_test_add_func ("/stdit/load/open-folder", test_open_folder);
  g_test_add_func ("/stdit/forward/padding", test_forward_padding);
  g_test_add_func ("/stdit/forward/caption-packing", test_forward_caption_packing);
  g_test_add_func ("/stdit/forward/mask-tiling", test_forward_mask_tiling);
  g_test_add_func ("/stdit/forward/x-mask", test_forward_x_mask);
  g_test_add_func ("/stdit/forward/weight-dtypes", test_forward_weight_dtypes);
  g_test_add_func ("/stdit/forward/bf16-timestep", test_forward_bf16_timestep);
  g_test_add_func ("/stdit/forward/pos-table-nonsquare", test_forward_pos_table_nonsquare);
  g_test_add_func ("/stdit/forward/bad-input", test_forward_bad_input);
  int rc = g_test_run ();
  remove_tree (tmp_dir);
  g_free (tmp_dir);
  return rc;
}
