/* test-t5.c — the T5 encoder: bucket table, a double-precision reference on small random models
 * (f32 and bf16 files, sharded folders, padding masks of every shape, streamed weights), and the
 * errors for bad folders, bad weights and bad input. */
#include "kin-error.h"
#include "kin-t5.h"
#include <float.h>
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

/* --- a tiny random model --- */

typedef struct {
  KinT5Config cfg;
  GHashTable *w;          /* name → float* (f32 values as stored; bf16-rounded for bf16 files) */
  GPtrArray *names;       /* the order written */
} Tiny;

static void
tiny_add (Tiny *t, const char *name, int64_t n, double mean, double std, GRand *r)
{
  float *v = g_new (float, n);
  for (int64_t i = 0; i < n; i++) {
    /* Sum of 4 uniforms: close enough to a normal for test weights. */
    double u = 0;
    for (int k = 0; k < 4; k++)
      u += g_rand_double_range (r, -1, 1);
    v[i] = (float) (mean + std * u * sqrt (3.0 / 4.0));
  }
  g_hash_table_insert (t->w, g_strdup (name), v);
  g_ptr_array_add (t->names, g_strdup (name));
}

static void
tiny_init (Tiny *t, int heads, int layers, guint32 seed)
{
  t->cfg = (KinT5Config) { .vocab_size = 20, .d_model = 16, .d_kv = 4, .d_ff = 24,
                           .num_heads = heads, .num_layers = layers,
                           .relative_attention_num_buckets = 32,
                           .relative_attention_max_distance = 128, .layer_norm_epsilon = 1e-6f };
  t->w = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  t->names = g_ptr_array_new_with_free_func (g_free);
  g_autoptr (GRand) r = g_rand_new_with_seed (seed);
  int d = t->cfg.d_model, inner = heads * t->cfg.d_kv, ff = t->cfg.d_ff;
  tiny_add (t, "shared.weight", (int64_t) t->cfg.vocab_size * d, 0, 0.5, r);
  tiny_add (t, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            32 * heads, 0, 0.5, r);
  for (int l = 0; l < layers; l++) {
    struct { const char *k; int64_t n; double mean, std; } specs[] = {
      { "layer.0.SelfAttention.q.weight", (int64_t) inner * d, 0, 0.35 },
      { "layer.0.SelfAttention.k.weight", (int64_t) inner * d, 0, 0.25 },
      { "layer.0.SelfAttention.v.weight", (int64_t) inner * d, 0, 0.25 },
      { "layer.0.SelfAttention.o.weight", (int64_t) d * inner, 0, 0.25 },
      { "layer.0.layer_norm.weight", d, 1, 0.1 },
      { "layer.1.DenseReluDense.wi_0.weight", (int64_t) ff * d, 0, 0.25 },
      { "layer.1.DenseReluDense.wi_1.weight", (int64_t) ff * d, 0, 0.25 },
      { "layer.1.DenseReluDense.wo.weight", (int64_t) d * ff, 0, 0.2 },
      { "layer.1.layer_norm.weight", d, 1, 0.1 },
    };
    for (guint i = 0; i < G_N_ELEMENTS (specs); i++) {
      g_autofree char *name = g_strdup_printf ("encoder.block.%d.%s", l, specs[i].k);
      tiny_add (t, name, specs[i].n, specs[i].mean, specs[i].std, r);
    }
  }
  tiny_add (t, "encoder.final_layer_norm.weight", d, 1, 0.1, r);
}

static void
tiny_clear (Tiny *t)
{
  g_hash_table_unref (t->w);
  g_ptr_array_unref (t->names);
}

static const float *
W (Tiny *t, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static const float *
W (Tiny *t, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const float *v = g_hash_table_lookup (t->w, name);
  g_assert_nonnull (v);
  return v;
}

static void
tiny_shape (Tiny *t, const char *name, int *ndim, int64_t *shape)
{
  int d = t->cfg.d_model, inner = t->cfg.num_heads * t->cfg.d_kv, ff = t->cfg.d_ff;
  *ndim = 2;
  if (g_str_has_suffix (name, "norm.weight")) {
    *ndim = 1;
    shape[0] = d;
  } else if (strcmp (name, "shared.weight") == 0) {
    shape[0] = t->cfg.vocab_size, shape[1] = d;
  } else if (strstr (name, "relative_attention_bias")) {
    shape[0] = 32, shape[1] = t->cfg.num_heads;
  } else if (strstr (name, ".o.weight")) {
    shape[0] = d, shape[1] = inner;
  } else if (strstr (name, "SelfAttention.")) {
    shape[0] = inner, shape[1] = d;
  } else if (strstr (name, ".wo.")) {
    shape[0] = d, shape[1] = ff;
  } else {
    shape[0] = ff, shape[1] = d;
  }
}

/* Round the stored values to bf16 (what a bf16 file holds). */
static void
tiny_round_bf16 (Tiny *t)
{
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, t->w);
  while (g_hash_table_iter_next (&it, &k, &v)) {
    int nd;
    int64_t sh[2];
    tiny_shape (t, k, &nd, sh);
    int64_t n = nd == 1 ? sh[0] : sh[0] * sh[1];
    for (int64_t i = 0; i < n; i++)
      ((float *) v)[i] = kin_round_bf16 (((float *) v)[i]);
  }
}

typedef struct {
  KinDType dtype;
  const char *skip;           /* a key left out */
  const char *rename_shared;  /* write shared.weight under this name */
  const char *grow;           /* a key written with one extra row */
  int shards;                 /* 0/1 = model.safetensors, 2 = two shards + index */
  const char *config_extra;   /* JSON members appended to config.json; NULL = default */
  gboolean no_config;
  int config_d_model;         /* 0 = the real one */
} WriteOpts;

static void
write_shard (Tiny *t, const char *path, guint from, guint to, const WriteOpts *o)
{
  guint n = 0, cap = t->names->len;
  const char **names = g_new0 (const char *, cap);
  KinDType *dtypes = g_new0 (KinDType, cap);
  int *ndims = g_new0 (int, cap);
  int64_t *shapes = g_new0 (int64_t, 2 * (size_t) cap);   /* [cap][2] */
  const int64_t **shape_ptrs = g_new0 (const int64_t *, cap);
  const void **datas = g_new0 (const void *, cap);
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  for (guint i = from; i < to; i++) {
    const char *name = t->names->pdata[i];
    if (o->skip && strcmp (name, o->skip) == 0)
      continue;
    int64_t *sh = shapes + 2 * n;
    tiny_shape (t, name, &ndims[n], sh);
    if (o->grow && strcmp (name, o->grow) == 0)
      sh[0] += 1;
    int64_t numel = ndims[n] == 1 ? sh[0] : sh[0] * sh[1];
    const float *src = g_hash_table_lookup (t->w, name);
    gboolean shaped_like_src = !(o->grow && strcmp (name, o->grow) == 0);
    size_t esz = kin_dtype_size (o->dtype);
    void *buf = g_malloc0 (numel * esz);
    kin_convert_from_f32 (buf, o->dtype, src, shaped_like_src ? numel : numel - sh[1]);
    g_ptr_array_add (owned, buf);
    names[n] = (o->rename_shared && strcmp (name, "shared.weight") == 0) ? o->rename_shared : name;
    dtypes[n] = o->dtype;
    shape_ptrs[n] = sh;
    datas[n] = buf;
    n++;
  }
  g_autoptr (GError) error = NULL;
  g_assert_true (kin_safetensors_write (path, n, names, dtypes, ndims, shape_ptrs, datas, NULL, &error));
  g_assert_no_error (error);
  g_ptr_array_unref (owned);
  g_free (names);
  g_free (dtypes);
  g_free (ndims);
  g_free (shapes);
  g_free (shape_ptrs);
  g_free (datas);
}

static void
write_index (Tiny *t, const char *dir, guint split, const WriteOpts *o)
{
  GString *s = g_string_new ("{\"metadata\": {\"total_size\": 0}, \"weight_map\": {");
  for (guint i = 0; i < t->names->len; i++) {
    const char *name = t->names->pdata[i];
    if (o->skip && strcmp (name, o->skip) == 0)
      continue;
    if (o->rename_shared && strcmp (name, "shared.weight") == 0)
      name = o->rename_shared;
    g_string_append_printf (s, "%s\"%s\": \"model-%05u-of-00002.safetensors\"",
                            s->str[s->len - 1] == '{' ? "" : ", ", name, i < split ? 1 : 2);
  }
  g_string_append (s, "}}");
  g_autofree char *path = g_build_filename (dir, "model.safetensors.index.json", NULL);
  g_assert_true (g_file_set_contents (path, s->str, -1, NULL));
  g_string_free (s, TRUE);
}

static void
write_config (Tiny *t, const char *dir, const WriteOpts *o)
{
  const KinT5Config *c = &t->cfg;
  g_autofree char *json = g_strdup_printf (
    "{\"architectures\": [\"T5EncoderModel\"], \"d_model\": %d, \"d_kv\": %d, \"d_ff\": %d,"
    " \"num_heads\": %d, \"num_layers\": %d, \"vocab_size\": %d,"
    " \"relative_attention_num_buckets\": 32, \"relative_attention_max_distance\": 128,"
    " \"layer_norm_epsilon\": 1e-06, \"dropout_rate\": 0.1, \"model_type\": \"t5\"%s}",
    o->config_d_model ? o->config_d_model : c->d_model, c->d_kv, c->d_ff, c->num_heads,
    c->num_layers, c->vocab_size,
    o->config_extra ? o->config_extra : ", \"feed_forward_proj\": \"gated-gelu\"");
  g_autofree char *path = g_build_filename (dir, "config.json", NULL);
  g_assert_true (g_file_set_contents (path, json, -1, NULL));
}

static char *
write_model (Tiny *t, const WriteOpts *o)
{
  g_autoptr (GError) error = NULL;
  char *dir = g_dir_make_tmp ("kin-t5-XXXXXX", &error);
  g_assert_no_error (error);
  if (o->shards == 2) {
    guint split = t->names->len / 2;
    g_autofree char *p1 = g_build_filename (dir, "model-00001-of-00002.safetensors", NULL);
    g_autofree char *p2 = g_build_filename (dir, "model-00002-of-00002.safetensors", NULL);
    write_shard (t, p1, 0, split, o);
    write_shard (t, p2, split, t->names->len, o);
    write_index (t, dir, split, o);
  } else {
    g_autofree char *p = g_build_filename (dir, "model.safetensors", NULL);
    write_shard (t, p, 0, t->names->len, o);
  }
  if (!o->no_config)
    write_config (t, dir, o);
  return dir;
}

static void
remove_dir (const char *dir)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name (d)) != NULL) {
    g_autofree char *p = g_build_filename (dir, name, NULL);
    g_remove (p);
  }
  g_rmdir (dir);
}

/* --- the reference: HF T5EncoderModel semantics in double --- */

static void
ref_rms (const double *x, const float *w, int d, double eps, double *y)
{
  double ss = 0;
  for (int i = 0; i < d; i++)
    ss += x[i] * x[i];
  double inv = 1.0 / sqrt (ss / d + eps);
  for (int i = 0; i < d; i++)
    y[i] = w[i] * (x[i] * inv);
}

static void
ref_linear (const double *x, const float *w, int in, int out, double *y)
{
  for (int o = 0; o < out; o++) {
    double s = 0;
    for (int i = 0; i < in; i++)
      s += x[i] * w[(size_t) o * in + i];
    y[o] = s;
  }
}

static double
ref_gelu (double x)
{
  return 0.5 * x * (1.0 + tanh (sqrt (2.0 / G_PI) * (x + 0.044715 * x * x * x)));
}

static void
ref_attention (Tiny *t, int l, double *n, const int64_t *mask, int L, double *x)
{
  int d = t->cfg.d_model, H = t->cfg.num_heads, dk = t->cfg.d_kv, inner = H * dk;
  const float *rb = W (t, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
  g_autofree double *q = g_new (double, (size_t) L * inner);
  g_autofree double *k = g_new (double, (size_t) L * inner);
  g_autofree double *v = g_new (double, (size_t) L * inner);
  g_autofree double *att = g_new0 (double, (size_t) L * inner);
  g_autofree double *s = g_new (double, L);
  g_autofree double *o = g_new (double, d);
  for (int i = 0; i < L; i++) {
    ref_linear (n + (size_t) i * d, W (t, "encoder.block.%d.layer.0.SelfAttention.q.weight", l), d, inner, q + (size_t) i * inner);
    ref_linear (n + (size_t) i * d, W (t, "encoder.block.%d.layer.0.SelfAttention.k.weight", l), d, inner, k + (size_t) i * inner);
    ref_linear (n + (size_t) i * d, W (t, "encoder.block.%d.layer.0.SelfAttention.v.weight", l), d, inner, v + (size_t) i * inner);
  }
  for (int h = 0; h < H; h++)
    for (int i = 0; i < L; i++) {
      double mx = -INFINITY, sum = 0;
      for (int j = 0; j < L; j++) {
        double dot = 0;
        for (int c = 0; c < dk; c++)
          dot += q[(size_t) i * inner + h * dk + c] * k[(size_t) j * inner + h * dk + c];
        int b = kin_t5_relative_bucket (j - i, 32, 128);
        /* HF adds finfo(f32).min, which swallows everything else in f32. */
        s[j] = mask && mask[j] == 0 ? -FLT_MAX : dot + rb[b * H + h];
        mx = MAX (mx, s[j]);
      }
      for (int j = 0; j < L; j++)
        sum += (s[j] = exp (s[j] - mx));
      for (int j = 0; j < L; j++)
        for (int c = 0; c < dk; c++)
          att[(size_t) i * inner + h * dk + c] += s[j] / sum * v[(size_t) j * inner + h * dk + c];
    }
  for (int i = 0; i < L; i++) {
    ref_linear (att + (size_t) i * inner, W (t, "encoder.block.%d.layer.0.SelfAttention.o.weight", l), inner, d, o);
    for (int c = 0; c < d; c++)
      x[(size_t) i * d + c] += o[c];
  }
}

static void
ref_ff (Tiny *t, int l, const double *n, double *x)
{
  int d = t->cfg.d_model, ff = t->cfg.d_ff;
  g_autofree double *a = g_new (double, ff);
  g_autofree double *b = g_new (double, ff);
  g_autofree double *o = g_new (double, d);
  ref_linear (n, W (t, "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", l), d, ff, a);
  ref_linear (n, W (t, "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", l), d, ff, b);
  for (int i = 0; i < ff; i++)
    a[i] = ref_gelu (a[i]) * b[i];
  ref_linear (a, W (t, "encoder.block.%d.layer.1.DenseReluDense.wo.weight", l), ff, d, o);
  for (int c = 0; c < d; c++)
    x[c] += o[c];
}

/* One sequence: out [L, d]. */
static void
ref_encode (Tiny *t, const int64_t *ids, const int64_t *mask, int L, double *out)
{
  int d = t->cfg.d_model;
  double eps = t->cfg.layer_norm_epsilon;
  g_autofree double *x = g_new (double, (size_t) L * d);
  g_autofree double *n = g_new (double, (size_t) L * d);
  for (int i = 0; i < L; i++)
    for (int c = 0; c < d; c++)
      x[(size_t) i * d + c] = W (t, "shared.weight")[ids[i] * d + c];
  for (int l = 0; l < t->cfg.num_layers; l++) {
    for (int i = 0; i < L; i++)
      ref_rms (x + (size_t) i * d, W (t, "encoder.block.%d.layer.0.layer_norm.weight", l), d, eps, n + (size_t) i * d);
    ref_attention (t, l, n, mask, L, x);
    for (int i = 0; i < L; i++) {
      ref_rms (x + (size_t) i * d, W (t, "encoder.block.%d.layer.1.layer_norm.weight", l), d, eps, n + (size_t) i * d);
      ref_ff (t, l, n + (size_t) i * d, x + (size_t) i * d);
    }
  }
  for (int i = 0; i < L; i++)
    ref_rms (x + (size_t) i * d, W (t, "encoder.final_layer_norm.weight"), d, eps, out + (size_t) i * d);
}

static double
rel_error (const float *a, const double *ref, size_t n)
{
  double md = 0, mr = 0;
  for (size_t i = 0; i < n; i++) {
    md = MAX (md, fabs (a[i] - ref[i]));
    mr = MAX (mr, fabs (ref[i]));
    if (isnan (a[i]))
      return INFINITY;
  }
  return md / MAX (mr, 1e-30);
}

/* Inputs: B sequences of L tokens with the given number of real tokens (prefix masks), ids ending
 * in eos 1 then pads 0, like the tokenizer's output. */
static void
make_inputs (Tiny *t, int B, int L, const int *lens, int64_t *ids, int64_t *mask, guint32 seed)
{
  g_autoptr (GRand) r = g_rand_new_with_seed (seed);
  for (int b = 0; b < B; b++)
    for (int i = 0; i < L; i++) {
      int64_t *id = &ids[(size_t) b * L + i];
      *id = i < lens[b] - 1 ? g_rand_int_range (r, 2, t->cfg.vocab_size) : i == lens[b] - 1 ? 1 : 0;
      mask[(size_t) b * L + i] = i < lens[b];
    }
}

static double
check_against_ref (Tiny *t, KinT5 *m, int B, int L, const int64_t *ids, const int64_t *mask)
{
  int d = t->cfg.d_model;
  size_t n = (size_t) B * L * d;
  g_autofree float *out = g_new (float, n);
  g_autofree double *ref = g_new (double, n);
  g_autoptr (GError) error = NULL;
  g_assert_true (kin_t5_encode (m, ids, mask, B, L, out, &error));
  g_assert_no_error (error);
  for (int b = 0; b < B; b++)
    ref_encode (t, ids + (size_t) b * L, mask + (size_t) b * L, L, ref + (size_t) b * L * d);
  double err = rel_error (out, ref, n);
  g_test_message ("max rel err %.3e", err);
  return err;
}

/* --- tests --- */

static void
test_buckets (void)
{
  /* spec/t5-vae-formats.md §1.3: |rel| → b for 32 buckets, max distance 128. */
  static const struct { int lo, hi, b; } table[] = {
    { 8, 11, 8 }, { 12, 15, 9 }, { 16, 22, 10 }, { 23, 31, 11 }, { 32, 45, 12 },
    { 46, 63, 13 }, { 64, 90, 14 }, { 91, 400, 15 },
  };
  for (int a = 0; a < 8; a++) {
    g_assert_cmpint (kin_t5_relative_bucket (-a, 32, 128), ==, a);
    g_assert_cmpint (kin_t5_relative_bucket (a, 32, 128), ==, a ? a + 16 : 0);
  }
  for (guint k = 0; k < G_N_ELEMENTS (table); k++)
    for (int a = table[k].lo; a <= table[k].hi; a++) {
      g_assert_cmpint (kin_t5_relative_bucket (-a, 32, 128), ==, table[k].b);
      g_assert_cmpint (kin_t5_relative_bucket (a, 32, 128), ==, table[k].b + 16);
    }
  /* The spec's example row: keys i−20 … i+20. */
  static const int row[41] = { 10, 10, 10, 10, 10, 9, 9, 9, 9, 8, 8, 8, 8, 7, 6, 5, 4, 3, 2, 1, 0,
                               17, 18, 19, 20, 21, 22, 23, 24, 24, 24, 24, 25, 25, 25, 25,
                               26, 26, 26, 26, 26 };
  for (int r = -20; r <= 20; r++)
    g_assert_cmpint (kin_t5_relative_bucket (r, 32, 128), ==, row[r + 20]);
  /* Other settings stay in range. */
  for (int r = -300; r <= 300; r++) {
    int b = kin_t5_relative_bucket (r, 8, 20);
    g_assert_cmpint (b, >=, r > 0 ? 4 : 0);
    g_assert_cmpint (b, <, r > 0 ? 8 : 4);
  }
}

static void
run_model_test (KinDType dtype, int shards, const char *rename)
{
  Tiny t;
  tiny_init (&t, 3, 2, 11);
  if (dtype == KIN_DTYPE_BF16)
    tiny_round_bf16 (&t);
  WriteOpts o = { .dtype = dtype, .shards = shards, .rename_shared = rename };
  g_autofree char *dir = write_model (&t, &o);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinT5) m = kin_t5_load (dir, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  g_assert_cmpint (kin_t5_get_config (m)->vocab_size, ==, 20);
  int B = 3, L = 40;
  int lens[3] = { 40, 17, 1 };
  g_autofree int64_t *ids = g_new (int64_t, B * L);
  g_autofree int64_t *mask = g_new (int64_t, B * L);
  make_inputs (&t, B, L, lens, ids, mask, 5);
  g_assert_cmpfloat (check_against_ref (&t, m, B, L, ids, mask), <, 1e-5);
  kin_t5_free (g_steal_pointer (&m));
  remove_dir (dir);
  tiny_clear (&t);
}

static void
test_encode_f32 (void)
{
  run_model_test (KIN_DTYPE_F32, 1, NULL);
}

static void
test_encode_bf16 (void)
{
  run_model_test (KIN_DTYPE_BF16, 1, NULL);
}

static void
test_encode_sharded_alias (void)
{
  /* Two shards through model.safetensors.index.json, the embedding only under its alias. */
  run_model_test (KIN_DTYPE_F32, 2, "encoder.embed_tokens.weight");
}

static void
test_masks_and_modes (void)
{
  Tiny t;
  tiny_init (&t, 5, 3, 21);   /* 5 heads: not a power of two */
  WriteOpts o = { .dtype = KIN_DTYPE_F32 };
  g_autofree char *dir = write_model (&t, &o);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinT5) m = kin_t5_load (dir, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  int B = 3, L = 9;
  int lens[3] = { 9, 4, 6 };
  g_autofree int64_t *ids = g_new (int64_t, B * L);
  g_autofree int64_t *mask = g_new (int64_t, B * L);
  make_inputs (&t, B, L, lens, ids, mask, 9);
  size_t n = (size_t) B * L * t.cfg.d_model;
  g_autofree float *resident = g_new (float, n);
  g_assert_true (kin_t5_encode (m, ids, mask, B, L, resident, &error));

  /* Streaming gives identical numbers. */
  g_assert_true (kin_t5_set_weight_mode (m, KIN_T5_WEIGHTS_STREAM, &error));
  g_assert_cmpint (kin_t5_get_weight_mode (m), ==, KIN_T5_WEIGHTS_STREAM);
  g_autofree float *streamed = g_new (float, n);
  g_assert_true (kin_t5_encode (m, ids, mask, B, L, streamed, &error));
  g_assert_cmpmem (resident, n * sizeof (float), streamed, n * sizeof (float));

  /* A mask with holes and an all-padding row take the per-sample path; HF semantics. */
  mask[1 * L + 1] = 0;
  for (int j = 0; j < L; j++)
    mask[2 * L + j] = 0;
  g_assert_cmpfloat (check_against_ref (&t, m, B, L, ids, mask), <, 1e-5);
  /* NULL mask = all ones. */
  g_autofree int64_t *ones = g_new (int64_t, B * L);
  for (int i = 0; i < B * L; i++)
    ones[i] = 1;
  g_autofree float *a = g_new (float, n);
  g_autofree float *b = g_new (float, n);
  g_assert_true (kin_t5_set_weight_mode (m, KIN_T5_WEIGHTS_RESIDENT, &error));
  g_assert_true (kin_t5_encode (m, ids, NULL, B, L, a, &error));
  g_assert_true (kin_t5_encode (m, ids, ones, B, L, b, &error));
  g_assert_cmpmem (a, n * sizeof (float), b, n * sizeof (float));
  g_assert_no_error (error);
  kin_t5_free (g_steal_pointer (&m));
  remove_dir (dir);
  tiny_clear (&t);
}

static void
count_hook (int block, const KinTensor *hidden, gpointer user_data)
{
  int *calls = user_data;
  g_assert_cmpint (block, ==, *calls - 1);
  g_assert_cmpint (hidden->dtype, ==, KIN_DTYPE_F32);
  (*calls)++;
}

static void
test_hook_and_weights_api (void)
{
  /* kin_t5_load_weights over a caller's set, the config from JSON, the block hook. */
  Tiny t;
  tiny_init (&t, 2, 3, 33);
  WriteOpts o = { .dtype = KIN_DTYPE_BF16 };
  g_autofree char *dir = write_model (&t, &o);
  g_autoptr (GError) error = NULL;
  g_autofree char *cfg_path = g_build_filename (dir, "config.json", NULL);
  KinT5Config cfg;
  g_assert_true (kin_t5_config_load (cfg_path, &cfg, &error));
  g_assert_cmpint (cfg.num_heads, ==, 2);
  g_assert_cmpint (cfg.d_ff, ==, 24);
  g_assert_cmpfloat (cfg.layer_norm_epsilon, ==, 1e-6f);
  g_autofree char *file = g_build_filename (dir, "model.safetensors", NULL);
  g_autoptr (KinWeights) ws = kin_weights_open (file, &error);
  g_assert_no_error (error);
  cfg.vocab_size = 0;   /* from the weights */
  g_autoptr (KinT5) m = kin_t5_load_weights (ws, &cfg, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  g_assert_cmpint (kin_t5_get_config (m)->vocab_size, ==, 20);
  int calls = 0;
  kin_t5_set_block_hook (m, count_hook, &calls);
  int64_t ids[5] = { 3, 4, 5, 1, 0 }, mask[5] = { 1, 1, 1, 1, 0 };
  g_autoptr (KinTensor) y = kin_t5_encode_tensor (m, ids, mask, 1, 5, &error);
  g_assert_no_error (error);
  g_assert_cmpint (calls, ==, 4);
  g_assert_cmpint (y->ndim, ==, 3);
  g_assert_cmpint (y->shape[0], ==, 1);
  g_assert_cmpint (y->shape[1], ==, 5);
  g_assert_cmpint (y->shape[2], ==, 16);
  /* FLOP count: 3 layers of 5 rows. */
  double expect = 3 * (2.0 * 5 * (4.0 * 16 * 8 + 3.0 * 16 * 24) + 4.0 * 2 * 5 * 5 * 4);
  g_assert_cmpfloat (fabs (kin_t5_encode_flops (&cfg, 1, 5) - expect), <, 1e-6);
  kin_t5_free (g_steal_pointer (&m));
  kin_weights_free (g_steal_pointer (&ws));
  remove_dir (dir);
  tiny_clear (&t);
}

/* --- errors --- */

static void
expect_load_error (const WriteOpts *o, int code, const char *const *needles)
{
  Tiny t;
  tiny_init (&t, 2, 2, 44);
  g_autofree char *dir = write_model (&t, o);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinT5) m = kin_t5_load (dir, kin_backend_cpu (), &error);
  g_assert_null (m);
  g_assert_error (error, KIN_ENGINE_ERROR, code);
  g_test_message ("%s", error->message);
  for (guint i = 0; needles[i]; i++)
    if (strstr (error->message, needles[i]) == NULL)
      g_error ("message \"%s\" lacks \"%s\"", error->message, needles[i]);
  remove_dir (dir);
  tiny_clear (&t);
}

static void
test_error_missing_key (void)
{
  WriteOpts o = { .dtype = KIN_DTYPE_F32, .skip = "encoder.block.1.layer.1.DenseReluDense.wo.weight" };
  const char *needles[] = { "encoder.block.1.layer.1.DenseReluDense.wo.weight", "model.safetensors",
                            "[16, 24]", NULL };
  expect_load_error (&o, KIN_ENGINE_ERROR_BAD_WEIGHTS, needles);
}

static void
test_error_bad_shape (void)
{
  WriteOpts o = { .dtype = KIN_DTYPE_BF16, .grow = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" };
  const char *needles[] = { "encoder.block.0.layer.1.DenseReluDense.wi_0.weight", "model.safetensors",
                            "[25, 16]", "[24, 16]", NULL };
  expect_load_error (&o, KIN_ENGINE_ERROR_BAD_WEIGHTS, needles);
}

static void
test_error_bad_norm_and_bias (void)
{
  WriteOpts o = { .dtype = KIN_DTYPE_F32,
                  .grow = "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" };
  const char *needles[] = { "relative_attention_bias", "[33, 2]", "[32, 2]", NULL };
  expect_load_error (&o, KIN_ENGINE_ERROR_BAD_WEIGHTS, needles);
  WriteOpts o2 = { .dtype = KIN_DTYPE_F32, .skip = "encoder.final_layer_norm.weight" };
  const char *needles2[] = { "encoder.final_layer_norm.weight", NULL };
  expect_load_error (&o2, KIN_ENGINE_ERROR_BAD_WEIGHTS, needles2);
}

static void
test_error_no_embedding (void)
{
  WriteOpts o = { .dtype = KIN_DTYPE_F32, .skip = "shared.weight" };
  const char *needles[] = { "shared.weight", "encoder.embed_tokens.weight", NULL };
  expect_load_error (&o, KIN_ENGINE_ERROR_BAD_WEIGHTS, needles);
}

static void
test_error_no_config (void)
{
  WriteOpts o = { .dtype = KIN_DTYPE_F32, .no_config = TRUE };
  const char *needles[] = { "config.json", NULL };
  expect_load_error (&o, KIN_ENGINE_ERROR_BAD_FILE, needles);
}

static void
test_error_wrong_d_model (void)
{
  WriteOpts o = { .dtype = KIN_DTYPE_F32, .config_d_model = 32 };
  const char *needles[] = { "shared.weight", "[20, 16]", "[20, 32]", NULL };
  expect_load_error (&o, KIN_ENGINE_ERROR_BAD_WEIGHTS, needles);
}

static void
test_error_config (void)
{
  WriteOpts o = { .dtype = KIN_DTYPE_F32, .config_extra = ", \"feed_forward_proj\": \"relu\"" };
  const char *needles[] = { "relu", "gated-gelu", NULL };
  expect_load_error (&o, KIN_ENGINE_ERROR_UNSUPPORTED, needles);
  WriteOpts o2 = { .dtype = KIN_DTYPE_F32,
                   .config_extra = ", \"feed_forward_proj\": \"gated-gelu\", \"num_heads\": -3" };
  const char *needles2[] = { "num_heads", NULL };
  expect_load_error (&o2, KIN_ENGINE_ERROR_BAD_FILE, needles2);
  WriteOpts o3 = { .dtype = KIN_DTYPE_F32, .config_extra = ", \"feed_forward_proj\": " };
  const char *needles3[] = { "config.json", NULL };
  expect_load_error (&o3, KIN_ENGINE_ERROR_BAD_FILE, needles3);
  g_autoptr (GError) error = NULL;
  g_assert_null (kin_t5_load ("/nonexistent/t5-folder", kin_backend_cpu (), &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_IO);
}

static void
test_error_input (void)
{
  Tiny t;
  tiny_init (&t, 2, 1, 55);
  WriteOpts o = { .dtype = KIN_DTYPE_F32 };
  g_autofree char *dir = write_model (&t, &o);
  g_autoptr (GError) error = NULL;
  g_autoptr (KinT5) m = kin_t5_load (dir, kin_backend_cpu (), &error);
  g_assert_no_error (error);
  float out[4 * 16];
  int64_t ids[4] = { 3, 20, 1, 0 }, mask[4] = { 1, 1, 1, 0 };
  g_assert_false (kin_t5_encode (m, ids, mask, 1, 4, out, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_assert_nonnull (strstr (error->message, "20"));
  g_assert_nonnull (strstr (error->message, "vocabulary"));
  g_clear_error (&error);
  ids[1] = -1;
  g_assert_false (kin_t5_encode (m, ids, mask, 1, 4, out, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  ids[1] = 4;
  mask[3] = 2;
  g_assert_false (kin_t5_encode (m, ids, mask, 1, 4, out, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_assert_nonnull (strstr (error->message, "mask"));
  g_clear_error (&error);
  mask[3] = 0;
  g_assert_false (kin_t5_encode (m, ids, mask, 0, 4, out, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  /* And the model still works after the errors. */
  g_assert_true (kin_t5_encode (m, ids, mask, 1, 4, out, &error));
  g_assert_no_error (error);
  kin_t5_free (g_steal_pointer (&m));
  remove_dir (dir);
  tiny_clear (&t);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/t5/buckets", test_buckets);
  g_test_add_func ("/t5/encode/f32", test_encode_f32);
  g_test_add_func ("/t5/encode/bf16", test_encode_bf16);
  g_test_add_func ("/t5/encode/sharded-alias", test_encode_sharded_alias);
  g_test_add_func ("/t5/encode/masks-and-modes", test_masks_and_modes);
  g_test_add_func ("/t5/encode/hook-and-weights-api", test_hook_and_weights_api);
  g_test_add_func ("/t5/error/missing-key", test_error_missing_key);
  g_test_add_func ("/t5/error/bad-shape", test_error_bad_shape);
  g_test_add_func ("/t5/error/bad-bias-and-norm", test_error_bad_norm_and_bias);
  g_test_add_func ("/t5/error/no-embedding", test_error_no_embedding);
  g_test_add_func ("/t5/error/no-config", test_error_no_config);
  g_test_add_func ("/t5/error/wrong-d-model", test_error_wrong_d_model);
  g_test_add_func ("/t5/error/config", test_error_config);
  g_test_add_func ("/t5/error/input", test_error_input);
  return g_test_run ();
}
