/* kin-cli-generate.c — `kinora-cli generate|extend|loop|export`.
 *
 * generate writes the clip (MP4 by default), a sidecar JSON with every parameter, and the final
 * latents (<output>.latents.safetensors) so that `extend` and `loop` can continue it later. */
#include "kin-cli.h"
#include "kin-buckets.h"
#include "kin-error.h"
#include "kin-export.h"
#include "kin-pipeline.h"
#include "kin-weights.h"
#include <gdk-pixbuf/gdk-pixbuf.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  gboolean json;
  gboolean tty;
  gint64 start;
  int last_width;
} Reporter;

static void
json_event (const char *type, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
json_event (const char *type, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *rest = fmt ? g_strdup_vprintf (fmt, ap) : NULL;
  va_end (ap);
  printf ("{\"event\":\"%s\"%s%s}\n", type, rest ? "," : "", rest ? rest : "");
  fflush (stdout);
}

static gboolean
on_progress (const char *stage, int step, int total, const guint8 *preview, int pf, int ph, int pw,
             gpointer user_data)
{
  Reporter *r = user_data;
  double el = (g_get_monotonic_time () - r->start) / 1e6;
  double eta = -1;
  static gint64 denoise_start = 0;
  if (g_strcmp0 (stage, "denoising") == 0) {
    if (step <= 1)
      denoise_start = g_get_monotonic_time ();
    else
      eta = (g_get_monotonic_time () - denoise_start) / 1e6 / (step - 1) * (total - step);
  }
  if (r->json) {
    json_event ("progress", "\"stage\":\"%s\",\"step\":%d,\"total\":%d,\"elapsed\":%.2f,\"eta\":%.2f",
                stage, step, total, el, eta);
  } else if (r->tty) {
    int width = 30, fill = total > 0 ? width * step / total : 0;
    char bar[64];
    memset (bar, '#', fill);
    memset (bar + fill, '-', width - fill);
    bar[width] = '\0';
    char etas[32] = "";
    if (eta >= 0)
      g_snprintf (etas, sizeof etas, " ETA %02d:%02d", (int) eta / 60, (int) eta % 60);
    fprintf (stderr, "\r%-10s [%s] %3d/%-3d %6.1fs%s   ", stage, bar, step, total, el, etas);
    if (g_strcmp0 (stage, "decoding") == 0 && step == total)
      fprintf (stderr, "\n");
  } else if (step == total || g_strcmp0 (stage, "denoising") != 0 || step % 10 == 0) {
    if (eta >= 0)
      fprintf (stderr, "%s %d/%d (%.1f s, ETA %.0f s)\n", stage, step, total, el, eta);
    else
      fprintf (stderr, "%s %d/%d (%.1f s)\n", stage, step, total, el);
  }
  return TRUE;
}

static gboolean
write_latents (const KinClip *clip, const char *path, GError **error)
{
  g_autofree char *p = g_strconcat (path, ".latents.safetensors", NULL);
  const char *names[1] = { "latents" };
  KinDType dt = KIN_DTYPE_F32;
  int nd = 4;
  int64_t shape[4] = { clip->latent_channels, clip->latent_frames, clip->latent_h, clip->latent_w };
  const int64_t *shapes[1] = { shape };
  const void *datas[1] = { clip->latents };
  g_autoptr (GHashTable) meta = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  g_autoptr (JsonNode) rj = kin_request_to_json (&clip->request);
  g_hash_table_insert (meta, "request", json_to_string (rj, FALSE));
  return kin_safetensors_write (p, 1, names, &dt, &nd, shapes, datas, meta, error);
}

/* Reads <clip>.latents.safetensors and <clip>.json (for the request). */
static float *
read_latents (const char *clip_path, int shape[4], KinRequest *req, GError **error)
{
  g_autofree char *p = g_strconcat (clip_path, ".latents.safetensors", NULL);
  g_autoptr (KinWeights) ws = kin_weights_open (p, error);
  if (ws == NULL) {
    g_prefix_error (error, "cannot continue %s (its latents are kept in %s.latents.safetensors): ", clip_path, clip_path);
    return NULL;
  }
  int64_t want[4] = { -1, -1, -1, -1 };
  const KinWeightEntry *e = kin_weights_require (ws, "latents", 4, want, error);
  if (e == NULL)
    return NULL;
  for (int i = 0; i < 4; i++)
    shape[i] = (int) e->shape[i];
  g_autofree char *side = g_strconcat (clip_path, ".json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (json_parser_load_from_file (parser, side, NULL)) {
    JsonNode *root = json_parser_get_root (parser);
    if (root && JSON_NODE_HOLDS_OBJECT (root)) {
      JsonNode *r = json_object_get_member (json_node_get_object (root), "request");
      if (r)
        kin_request_from_json (req, r, NULL);
    }
  }
  return kin_weight_entry_to_f32 (e);
}

static guint8 *
load_image (const char *path, int *w, int *h, GError **error)
{
  g_autoptr (GError) local = NULL;
  g_autoptr (GdkPixbuf) pb0 = gdk_pixbuf_new_from_file (path, &local);
  if (pb0 == NULL) {
    g_set_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_FILE, "cannot read the image %s: %s", path, local->message);
    return NULL;
  }
  g_autoptr (GdkPixbuf) pb = gdk_pixbuf_apply_embedded_orientation (pb0);
  *w = gdk_pixbuf_get_width (pb), *h = gdk_pixbuf_get_height (pb);
  int nch = gdk_pixbuf_get_n_channels (pb), stride = gdk_pixbuf_get_rowstride (pb);
  const guint8 *px = gdk_pixbuf_read_pixels (pb);
  guint8 *rgb = g_new (guint8, (gsize) *w * *h * 3);
  for (int y = 0; y < *h; y++)
    for (int x = 0; x < *w; x++)
      memcpy (rgb + ((gsize) y * *w + x) * 3, px + (gsize) y * stride + x * nch, 3);
  return rgb;
}

static void
fail (Reporter *r, GError *error)
{
  if (r->json) {
    g_autoptr (JsonNode) msg = json_node_init_string (json_node_alloc (), error->message);
    g_autofree char *quoted = json_to_string (msg, FALSE);
    json_event ("error", "\"code\":%d,\"message\":%s", error->code, quoted);
  }
  fprintf (stderr, "kinora-cli: %s\n", error->message);
}

int
kin_cli_generate (int argc, char **argv)
{
  const char *cmd = argv[0];
  g_autofree char *prompt = NULL, *resolution = NULL, *aspect = NULL, *sampler = NULL, *output = NULL;
  g_autofree char *format = NULL, *transformer = NULL, *text_encoder = NULL, *vae = NULL, *image = NULL;
  g_autofree char *from = NULL, *memory = NULL, *seed_s = NULL, *device = NULL;
  int height = 0, width = 0, frames = 0, fps = 0, steps = 0, cond_len = 0, threads = 0;
  double duration = -1, guidance = 0, strength = -1;
  gboolean json = FALSE, no_latents = FALSE, no_join = FALSE;
  GOptionEntry entries[] = {
    { "prompt", 'p', 0, G_OPTION_ARG_STRING, &prompt, "What the video shows", "TEXT" },
    { "resolution", 'r', 0, G_OPTION_ARG_STRING, &resolution, "144p, 240p, 360p, 480p, 720p (with --aspect)", "NAME" },
    { "aspect", 'a', 0, G_OPTION_ARG_STRING, &aspect, "Aspect ratio W:H, e.g. 16:9, 9:16, 1:1 (default 16:9)", "W:H" },
    { "height", 0, 0, G_OPTION_ARG_INT, &height, "Height in pixels (instead of --resolution)", "PX" },
    { "width", 0, 0, G_OPTION_ARG_INT, &width, "Width in pixels", "PX" },
    { "duration", 'd', 0, G_OPTION_ARG_DOUBLE, &duration, "Seconds (2, 4, 8, 16; 0 = one image)", "S" },
    { "frames", 'f', 0, G_OPTION_ARG_INT, &frames, "Frame count (instead of --duration)", "N" },
    { "fps", 0, 0, G_OPTION_ARG_INT, &fps, "Output frame rate (default 8)", "N" },
    { "seed", 's', 0, G_OPTION_ARG_STRING, &seed_s, "Seed (default: random, printed)", "N" },
    { "steps", 0, 0, G_OPTION_ARG_INT, &steps, "Sampling steps (IDDPM 100, DPM-Solver 20)", "N" },
    { "guidance", 'g', 0, G_OPTION_ARG_DOUBLE, &guidance, "Classifier-free guidance (default 7)", "X" },
    { "sampler", 0, 0, G_OPTION_ARG_STRING, &sampler, "iddpm (default) or dpm-solver", "NAME" },
    { "image", 'i', 0, G_OPTION_ARG_FILENAME, &image, "Image-to-video: the first frame", "FILE" },
    { "from", 0, 0, G_OPTION_ARG_FILENAME, &from, "extend/loop: the clip to continue (made by generate)", "CLIP" },
    { "condition-frames", 0, 0, G_OPTION_ARG_INT, &cond_len, "extend/loop: latent frames shared with the source (default 4)", "N" },
    { "strength", 0, 0, G_OPTION_ARG_DOUBLE, &strength, "Edit the --from clip with this strength (0 keeps it, 1 replaces it)", "X" },
    { "no-join", 0, 0, G_OPTION_ARG_NONE, &no_join, "extend/loop: write only the new clip, not source + new", NULL },
    { "transformer", 0, 0, G_OPTION_ARG_FILENAME, &transformer, "STDiT folder or .pth (default: demo pack)", "DIR" },
    { "text-encoder", 0, 0, G_OPTION_ARG_FILENAME, &text_encoder, "T5 folder (default: demo pack)", "DIR" },
    { "vae", 0, 0, G_OPTION_ARG_FILENAME, &vae, "VAE folder (default: demo pack)", "DIR" },
    { "memory", 0, 0, G_OPTION_ARG_STRING, &memory, "balanced (default) or low", "MODE" },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "auto (default), cpu or cuda", "NAME" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &threads, "CPU threads (default: all)", "N" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &output, "Output file (.mp4, .webm, .gif, or a folder for PNGs)", "PATH" },
    { "format", 0, 0, G_OPTION_ARG_STRING, &format, "mp4, webm, png, gif (default: from the extension)", "NAME" },
    { "no-latents", 0, 0, G_OPTION_ARG_NONE, &no_latents, "Do not keep the final latents beside the output", NULL },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "One JSON event per line on stdout", NULL },
    { NULL }
  };
  g_autofree char *param = g_strdup_printf ("[PROMPT] — %s a video", g_str_equal (cmd, "generate") ? "generate"
                                            : g_str_equal (cmd, "extend") ? "extend" : "loop");
  g_autoptr (GOptionContext) ctx = g_option_context_new (param);
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "kinora-cli %s: %s\n", cmd, error->message);
    return 2;
  }
  if (prompt == NULL && argc > 1)
    prompt = g_strjoinv (" ", argv + 1);
  Reporter rep = { .json = json, .tty = isatty (2) && !json, .start = g_get_monotonic_time () };
  KinRequest req = { 0 };
  KinRequest src_req = { 0 };
  g_autofree float *src_lat = NULL;
  int src_shape[4] = { 0 };
  gboolean continuing = !g_str_equal (cmd, "generate") || (from != NULL);
  if (continuing) {
    if (from == NULL) {
      fprintf (stderr, "kinora-cli %s: --from CLIP is required (a clip written by `kinora-cli generate`)\n", cmd);
      return 2;
    }
    src_lat = read_latents (from, src_shape, &src_req, &error);
    if (src_lat == NULL) {
      fail (&rep, error);
      return 1;
    }
  }
  if (prompt == NULL)
    prompt = g_strdup (src_req.prompt ? src_req.prompt : "");
  req.prompt = prompt; /* owned by the g_autofree above */
  /* size: explicit, else bucket, else the source clip's, else the model's default */
  if (height > 0 && width > 0) {
    req.height = height, req.width = width;
  } else if (resolution != NULL) {
    const KinResolutionClass *cls = kin_resolution_class_find (resolution);
    double r = 9.0 / 16.0;
    if (cls == NULL || (aspect && !kin_aspect_parse (aspect, &r))) {
      fprintf (stderr, "kinora-cli: unknown %s '%s' (see `kinora-cli info --buckets`)\n", cls ? "aspect ratio" : "resolution",
               cls ? aspect : resolution);
      return 2;
    }
    const KinBucket *b = kin_bucket_nearest (cls, r);
    req.height = b->height, req.width = b->width;
  } else if (continuing) {
    req.height = src_req.height, req.width = src_req.width;
  }
  req.frames = frames > 0 ? frames : duration >= 0 ? kin_frames_for_seconds (duration)
               : continuing && src_req.frames > 0 ? src_req.frames : 0;
  req.fps = fps;
  req.steps = steps;
  req.guidance = (float) guidance;
  if (seed_s)
    req.seed = g_ascii_strtoull (seed_s, NULL, 10);
  if (sampler && !kin_sampler_from_name (sampler, &req.sampler)) {
    fprintf (stderr, "kinora-cli: unknown sampler '%s' (iddpm or dpm-solver)\n", sampler);
    return 2;
  }
  g_autofree guint8 *img = NULL;
  if (image) {
    img = load_image (image, &req.cond_image_w, &req.cond_image_h, &error);
    if (img == NULL) {
      fail (&rep, error);
      return 1;
    }
    req.cond = KIN_COND_IMAGE;
    req.cond_image = img;
  }
  if (continuing) {
    req.cond = g_str_equal (cmd, "loop") ? KIN_COND_LOOP : g_str_equal (cmd, "extend") ? KIN_COND_EXTEND : KIN_COND_EDIT;
    if (strength >= 0 && g_str_equal (cmd, "generate"))
      req.cond = KIN_COND_EDIT;
    req.cond_latents = src_lat;
    req.cond_latent_channels = src_shape[0], req.cond_latent_frames = src_shape[1];
    req.cond_latent_h = src_shape[2], req.cond_latent_w = src_shape[3];
    req.cond_length = cond_len;
    req.edit_strength = strength >= 0 ? (float) strength : 0.5f;
  }
  KinModelPaths paths = { transformer, text_encoder, vae };
  if ((transformer || text_encoder || vae) && !(transformer && text_encoder && vae)) {
    fprintf (stderr, "kinora-cli: give all three of --transformer, --text-encoder and --vae (or none for the demo pack)\n");
    return 2;
  }
  KinMemoryMode mm = memory && g_str_equal (memory, "low") ? KIN_MEMORY_LOW : KIN_MEMORY_BALANCED;
  if (threads > 0)
    kin_backend_cpu_set_threads (threads);
  if (json)
    json_event ("loading", NULL);
  else
    fprintf (stderr, "loading models…\n");
  KinBackend *be = kin_backend_for_device (device ? device : g_getenv ("KINORA_DEVICE"));
  if (!json)
    fprintf (stderr, "device: %s\n", be->name);
  g_autoptr (KinPipeline) pipe = kin_pipeline_new (transformer ? &paths : NULL, be, mm, &error);
  if (pipe == NULL) {
    fail (&rep, error);
    return 1;
  }
  kin_pipeline_request_defaults (pipe, &req);
  KinExportFormat fmt = KIN_EXPORT_MP4;
  if (output == NULL)
    output = g_strdup_printf ("kinora-%" G_GUINT64_FORMAT ".%s", req.seed,
                              format ? format : "mp4");
  if (format ? !kin_export_format_from_name (format, &fmt) : FALSE) {
    fprintf (stderr, "kinora-cli: unknown format '%s' (mp4, webm, png, gif)\n", format);
    return 2;
  }
  if (!format)
    fmt = kin_export_format_for_path (output);
  if (!json)
    fprintf (stderr, "%s %d×%d, %d frames, %d %s steps, guidance %.1f, seed %" G_GUINT64_FORMAT "\n", cmd,
             req.width, req.height, req.frames, req.steps, kin_sampler_name (req.sampler), req.guidance, req.seed);
  else
    json_event ("start", "\"seed\":\"%" G_GUINT64_FORMAT "\",\"width\":%d,\"height\":%d,\"frames\":%d,\"steps\":%d",
                req.seed, req.width, req.height, req.frames, req.steps);
  g_autoptr (KinClip) clip = kin_pipeline_generate (pipe, &req, on_progress, &rep, NULL, &error);
  if (clip == NULL) {
    if (rep.tty)
      fprintf (stderr, "\n");
    fail (&rep, error);
    return 1;
  }
  /* extend/loop: source ++ the new frames (the shared ones once) */
  const guint8 *rgb = clip->rgb;
  int nframes = clip->frames;
  g_autofree guint8 *joined = NULL;
  if ((req.cond == KIN_COND_EXTEND || req.cond == KIN_COND_LOOP) && !no_join) {
    int sf = 0, sh = 0, sw = 0;
    g_autofree guint8 *src = kin_import_frames (from, &sf, &sh, &sw, NULL, &error);
    if (src == NULL || sh != clip->height || sw != clip->width) {
      fprintf (stderr, "kinora-cli: cannot join with %s (%s); writing the new clip alone\n", from,
               error ? error->message : "different size");
      g_clear_error (&error);
    } else {
      int L = req.cond_length, tail = req.cond == KIN_COND_LOOP ? L : 0;
      int add = clip->frames - L - tail;
      gsize fsz = (gsize) sh * sw * 3;
      joined = g_new (guint8, fsz * (sf + add));
      memcpy (joined, src, fsz * sf);
      memcpy (joined + fsz * sf, clip->rgb + fsz * L, fsz * add);
      rgb = joined, nframes = sf + add;
    }
  }
  if (!kin_export_frames (rgb, nframes, clip->height, clip->width, clip->fps, &clip->request, output, fmt, NULL, &error) ||
      (!no_latents && !write_latents (clip, output, &error))) {
    fail (&rep, error);
    return 1;
  }
  if (json)
  {
    g_autoptr (JsonNode) on = json_node_init_string (json_node_alloc (), output);
    g_autofree char *oq = json_to_string (on, FALSE);
    json_event ("done", "\"output\":%s,\"frames\":%d,\"seconds\":%.2f", oq, nframes, clip->seconds);
  }
  else
    printf ("%s: %d frames %d×%d in %.1f s (seed %" G_GUINT64_FORMAT ")\n", output, nframes, clip->width,
            clip->height, clip->seconds, req.seed);
  kin_request_clear (&src_req);
  return 0;
}

int
kin_cli_export (int argc, char **argv)
{
  g_autofree char *format = NULL;
  GOptionEntry entries[] = {
    { "format", 0, 0, G_OPTION_ARG_STRING, &format, "mp4, webm, png, gif (default: from the extension)", "NAME" },
    { NULL }
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("INPUT OUTPUT — convert a clip to another format");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error) || argc != 3) {
    fprintf (stderr, "usage: kinora-cli export [--format F] INPUT OUTPUT\n");
    return 2;
  }
  KinExportFormat fmt = kin_export_format_for_path (argv[2]);
  if (format && !kin_export_format_from_name (format, &fmt)) {
    fprintf (stderr, "kinora-cli: unknown format '%s'\n", format);
    return 2;
  }
  int n, h, w, fps = 8;
  g_autofree guint8 *rgb = kin_import_frames (argv[1], &n, &h, &w, &fps, &error);
  KinRequest req = { 0 };
  g_autofree char *side = g_strconcat (argv[1], ".json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  gboolean have_req = FALSE;
  if (json_parser_load_from_file (parser, side, NULL)) {
    JsonNode *root = json_parser_get_root (parser);
    JsonNode *r = root && JSON_NODE_HOLDS_OBJECT (root) ? json_object_get_member (json_node_get_object (root), "request") : NULL;
    have_req = r && kin_request_from_json (&req, r, NULL);
  }
  if (rgb == NULL || !kin_export_frames (rgb, n, h, w, fps > 0 ? fps : 8, have_req ? &req : NULL, argv[2], fmt, NULL, &error)) {
    fprintf (stderr, "kinora-cli: %s\n", error->message);
    kin_request_clear (&req);
    return 1;
  }
  printf ("%s: %d frames %d×%d\n", argv[2], n, w, h);
  kin_request_clear (&req);
  return 0;
}

void
kin_cli_print_buckets (void)
{
  int n;
  const KinResolutionClass *cls = kin_resolution_classes (&n);
  printf ("resolution buckets (H×W by H/W ratio; Open-Sora 1.1 aspect.py):\n");
  for (int i = 0; i < n; i++) {
    printf ("  %-5s", cls[i].name);
    for (int j = 0; j < cls[i].n_buckets; j++)
      printf ("%s %s:%dx%d", j && j % 6 == 0 ? "\n       " : "", cls[i].buckets[j].ratio, cls[i].buckets[j].height,
              cls[i].buckets[j].width);
    printf ("\n");
  }
  int nf;
  const int *fc = kin_frame_counts (&nf);
  printf ("durations (frames at %d fps):", KIN_OUTPUT_FPS);
  for (int i = 0; i < nf; i++) {
    if (fc[i] == 1)
      printf (" 1 (image)");
    else
      printf (" %d (%.0f s)", fc[i], kin_seconds_for_frames (fc[i]));
  }
  printf ("\n");
}

gboolean
kin_cli_describe_models (const char *transformer, const char *text_encoder, const char *vae)
{
  KinModelPaths paths = { (char *) transformer, (char *) text_encoder, (char *) vae };
  g_autoptr (GError) error = NULL;
  g_autoptr (KinPipeline) p = kin_pipeline_new (transformer ? &paths : NULL, kin_backend_cpu (), KIN_MEMORY_BALANCED, &error);
  if (p == NULL) {
    printf ("models:   %s\n", error->message);
    return FALSE;
  }
  g_autofree char *d = kin_pipeline_describe (p);
  printf ("%s\n", d);
  return TRUE;
}
