/* kinora-cli — the headless front end: info, bench (generate/extend/loop/export follow with the
 * pipeline). */
#include "kin-config.h"
#include "kin-backend.h"
#include "kin-bench.h"
#include "kin-cli.h"
#include "kin-error.h"
#include "kin-weights.h"
#include <cblas.h>
#include <gmodule.h>
#include <locale.h>
#include <stdio.h>
#include <string.h>

typedef struct {
  const char *name;
  int (*run) (int argc, char **argv);
  const char *help;
} Bench;

static const Bench benches[] = {
  { "ops", kin_bench_ops, "matmul and attention throughput at STDiT-XL shapes vs raw sgemm (CPU)" },
  { "t5", kin_bench_t5, "T5-XXL-shaped encoder (bf16 weights, 120 tokens) vs raw sgemm, peak RSS (CPU)" },
  { "vae", kin_bench_vae, "SD-VAE-shaped decoder, --frames N --size S (default one 256² frame; 720p: tiled), "
                          "per-frame ms vs the backend's matmul, peak memory [--backend]" },
  { "stdit", kin_bench_stdit, "STDiT-XL/2 (Open-Sora 1.1) forward, CFG batch 2 × 16 frames × 512², "
                              "ms, FLOP, TFLOP/s vs the backend's linear, peak memory [--backend]" },
  { "generate", kin_bench_generate, "100 IDDPM steps (cfg 7) on that STDiT + VAE decode, without T5: "
                                    "s per step, decode s, peak memory [--backend]" },
};

/* Looks for kinora-cuda.so (build tree first, then the install dir) and asks it for devices. */
static void
print_cuda_status (void)
{
  const char *dirs[] = { g_getenv ("KIN_CUDA_MODULE_DIR"), KIN_BUILD_KERNELSDIR, KIN_PKGLIBDIR };
  for (guint i = 0; i < G_N_ELEMENTS (dirs); i++) {
    if (dirs[i] == NULL)
      continue;
    g_autofree char *path = g_build_filename (dirs[i], "kinora-cuda.so", NULL);
    if (!g_file_test (path, G_FILE_TEST_EXISTS))
      continue;
    GModule *mod = g_module_open (path, G_MODULE_BIND_LOCAL | G_MODULE_BIND_LAZY);
    if (mod == NULL) {
      printf ("cuda:     module %s does not load (%s) — using the CPU\n", path, g_module_error ());
      return;
    }
    int (*discover) (char *, size_t) = NULL;
    char msg[256] = "";
    if (g_module_symbol (mod, "kin_cuda_discover", (gpointer *) &discover) && discover) {
      int n = discover (msg, sizeof msg);
      printf ("cuda:     %s%s\n", msg, n > 0 ? "" : " — using the CPU");
    } else {
      printf ("cuda:     module %s has no kin_cuda_discover — using the CPU\n", path);
    }
    g_module_close (mod);
    return;
  }
  printf ("cuda:     module not built or not installed — using the CPU\n");
}

static int
cmd_info (int argc, char **argv)
{
  printf ("Kinora %s — text-to-video with Open-Sora 1.0/1.1, on your machine\n", KIN_VERSION);
  printf ("cpu:      %u threads, OpenBLAS sgemm (kernel %s), OpenMP\n", g_get_num_processors (),
          openblas_get_corename ());
  if (g_strcmp0 (openblas_get_corename (), "Prescott") == 0 && g_getenv ("OPENBLAS_CORETYPE") == NULL)
    printf ("          OpenBLAS did not recognise this CPU and uses its slow generic kernel; if the CPU has\n"
            "          AVX-512 or AVX2, OPENBLAS_CORETYPE=SkylakeX or Haswell makes the engine about 3× faster\n");
  print_cuda_status ();
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--weights") == 0 && i + 1 < argc) {
      g_autoptr (GError) error = NULL;
      g_autoptr (KinWeights) ws = kin_weights_open (argv[++i], &error);
      if (ws == NULL) {
        fprintf (stderr, "kinora-cli: %s\n", error->message);
        return 1;
      }
      size_t total = 0;
      for (guint j = 0; j < kin_weights_count (ws); j++)
        total += kin_weights_nth (ws, j)->nbytes;
      printf ("weights:  %s — %u tensors, %.1f MiB\n", kin_weights_source (ws),
              kin_weights_count (ws), total / (1024.0 * 1024.0));
    }
  }
  gboolean buckets = FALSE;
  const char *tr = NULL, *te = NULL, *va = NULL;
  for (int i = 1; i < argc; i++) {
    if (strcmp (argv[i], "--buckets") == 0)
      buckets = TRUE;
    else if (strcmp (argv[i], "--transformer") == 0 && i + 1 < argc)
      tr = argv[++i];
    else if (strcmp (argv[i], "--text-encoder") == 0 && i + 1 < argc)
      te = argv[++i];
    else if (strcmp (argv[i], "--vae") == 0 && i + 1 < argc)
      va = argv[++i];
  }
  if (buckets) {
    kin_cli_print_buckets ();
    return 0;
  }
  return kin_cli_describe_models (tr, te, va) ? 0 : 1;
}

static int
cmd_bench (int argc, char **argv)
{
  if (argc < 2) {
    fprintf (stderr, "usage: kinora-cli bench NAME [options]   (bench NAME --help lists its options)\n");
    for (guint i = 0; i < G_N_ELEMENTS (benches); i++)
      fprintf (stderr, "  %-8s %s\n", benches[i].name, benches[i].help);
    fprintf (stderr, "--backend cpu|cuda|auto picks the backend (default auto); asking for cuda where it "
             "is not available fails instead of measuring the CPU.\n"
             "Small CPU run: kinora-cli bench stdit --backend cpu --depth 1 --frames 2 --size 64\n");
    return 2;
  }
  for (guint i = 0; i < G_N_ELEMENTS (benches); i++)
    if (strcmp (argv[1], benches[i].name) == 0)
      return benches[i].run (argc - 1, argv + 1);
  fprintf (stderr, "kinora-cli: unknown bench '%s'\n", argv[1]);
  return 2;
}

static void
usage (void)
{
  fprintf (stderr,
           "usage: kinora-cli COMMAND [options]\n"
           "  generate [PROMPT] [options]  make a clip (generate --help lists the options)\n"
           "  extend --from CLIP [PROMPT]  continue a clip made by generate\n"
           "  loop --from CLIP            make a clip loop seamlessly\n"
           "  export INPUT OUTPUT         convert a clip (mp4, webm, gif, PNG folder)\n"
           "  info [--buckets] [--weights PATH] [--transformer DIR --text-encoder DIR --vae DIR]\n"
           "                          show version, devices, models, buckets\n"
           "  bench NAME [options]    measure the engine: ops, t5, vae, stdit, generate\n"
           "                          (bench with no name describes them; --backend cpu|cuda|auto)\n");
}

int
main (int argc, char **argv)
{
  kin_backend_cpu_prepare_process (argv);
  /* the user's character set, so that help and messages print their non-ASCII characters (× …);
   * numbers stay in the C locale: scripts read what the benches and --json print */
  setlocale (LC_ALL, "");
  setlocale (LC_NUMERIC, "C");
  if (argc < 2) {
    usage ();
    return 2;
  }
  if (strcmp (argv[1], "info") == 0)
    return cmd_info (argc - 1, argv + 1);
  if (strcmp (argv[1], "bench") == 0)
    return cmd_bench (argc - 1, argv + 1);
  if (strcmp (argv[1], "generate") == 0 || strcmp (argv[1], "extend") == 0 || strcmp (argv[1], "loop") == 0)
    return kin_cli_generate (argc - 1, argv + 1);
  if (strcmp (argv[1], "export") == 0)
    return kin_cli_export (argc - 1, argv + 1);
  if (strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0) {
    usage ();
    return 0;
  }
  fprintf (stderr, "kinora-cli: unknown command '%s'\n", argv[1]);
  usage ();
  return 2;
}
