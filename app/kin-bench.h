/* kin-bench.h — `kinora-cli bench NAME …` entry points.  Each prints a table of measured
 * numbers (always beside a baseline measured in the same run) and returns an exit status. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Times @fn(@data) @reps times after one warm-up call; returns the median seconds. */
double kin_bench_time (void (*fn) (void *data), void *data, int reps);
/* Peak resident set size of this process in MiB (VmHWM), or -1. */
double kin_bench_peak_rss_mib (void);
/* Raw OpenBLAS sgemm GFLOP/s for C[m,n] = A[m,k]·B[n,k]ᵀ, the baseline every bench prints. */
double kin_bench_sgemm_gflops (int m, int n, int k, int reps);

int kin_bench_ops (int argc, char **argv);
int kin_bench_t5 (int argc, char **argv);
int kin_bench_vae (int argc, char **argv);

G_END_DECLS
