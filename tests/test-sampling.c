/* test-sampling.c — IDDPM schedule and step arithmetic, the Philox noise stream, buckets. */
#include "kin-buckets.h"
#include "kin-error.h"
#include "kin-iddpm.h"
#include "kin-noise.h"
#include <math.h>
#include <string.h>

static void
test_respacing (void)
{
  /* spec/stdit.md §4.1: the kept steps for K = 100 and K = 50 */
  static const int k100[] = { 0, 10, 20, 30, 40, 50, 61, 71, 81, 91, 101, 111, 121, 131, 141, 151, 161, 172,
    182, 192, 202, 212, 222, 232, 242, 252, 262, 272, 283, 293, 303, 313, 323, 333, 343, 353, 363, 373, 383, 394,
    404, 414, 424, 434, 444, 454, 464, 474, 484, 494, 505, 515, 525, 535, 545, 555, 565, 575, 585, 595, 605, 616,
    626, 636, 646, 656, 666, 676, 686, 696, 706, 716, 727, 737, 747, 757, 767, 777, 787, 797, 807, 817, 827, 838,
    848, 858, 868, 878, 888, 898, 908, 918, 928, 938, 949, 959, 969, 979, 989, 999 };
  static const int k50[] = { 0, 20, 41, 61, 82, 102, 122, 143, 163, 183, 204, 224, 245, 265, 285, 306, 326, 347,
    367, 387, 408, 428, 449, 469, 489, 510, 530, 550, 571, 591, 612, 632, 652, 673, 693, 714, 734, 754, 775, 795,
    816, 836, 856, 877, 897, 917, 938, 958, 979, 999 };
  g_autoptr (GError) error = NULL;
  KinIddpmSchedule *s = kin_iddpm_schedule_new (100, 1000, KIN_IDDPM_TABLES_F64, &error);
  g_assert_no_error (error);
  for (int i = 0; i < 100; i++)
    g_assert_cmpint (s->timestep_map[i], ==, k100[i]);
  /* β'_0 = 1e-4, ᾱ_999 ≈ 4.036e-5 */
  g_assert_cmpfloat (fabs (s->betas[0] - 1e-4), <, 1e-12);
  g_assert_cmpfloat (fabs (s->alphas_cumprod[99] - 4.036e-5), <, 1e-7);
  kin_iddpm_schedule_free (s);
  s = kin_iddpm_schedule_new (50, 1000, KIN_IDDPM_TABLES_F32, &error);
  for (int i = 0; i < 50; i++)
    g_assert_cmpint (s->timestep_map[i], ==, k50[i]);
  /* f32 tables hold f32 values */
  for (int i = 0; i < 50; i++)
    g_assert_cmpfloat (s->posterior_mean_coef1[i], ==, (double) (float) s->posterior_mean_coef1[i]);
  kin_iddpm_schedule_free (s);
  g_assert_null (kin_iddpm_schedule_new (0, 1000, KIN_IDDPM_TABLES_F64, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  g_assert_null (kin_iddpm_schedule_new (1001, 1000, KIN_IDDPM_TABLES_F64, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
}

static void
test_step_and_guide (void)
{
  g_autoptr (GError) error = NULL;
  KinIddpmSchedule *s = kin_iddpm_schedule_new (10, 1000, KIN_IDDPM_TABLES_F64, &error);
  /* one element, batch 1, channel 1: check the formulas of §4.1 directly */
  float x = 0.7f, out[2] = { -0.3f, 0.2f }, z = 1.1f, xn, p0;
  int i = 5;
  kin_iddpm_p_sample (s, i, 1, 1, 1, &x, out, &z, &xn, &p0);
  double x0 = s->sqrt_recip_alphas_cumprod[i] * x - s->sqrt_recipm1_alphas_cumprod[i] * out[0];
  double mean = s->posterior_mean_coef1[i] * x0 + s->posterior_mean_coef2[i] * x;
  double frac = (out[1] + 1) / 2, lv = frac * log (s->betas[i]) + (1 - frac) * s->posterior_log_variance_clipped[i];
  g_assert_cmpfloat (fabs (p0 - x0), <, 1e-5);
  g_assert_cmpfloat (fabs (xn - (mean + exp (0.5 * lv) * z)), <, 1e-5);
  /* the last step adds no noise */
  kin_iddpm_p_sample (s, 0, 1, 1, 1, &x, out, &z, &xn, NULL);
  x0 = s->sqrt_recip_alphas_cumprod[0] * x - s->sqrt_recipm1_alphas_cumprod[0] * out[0];
  g_assert_cmpfloat (fabs (xn - (s->posterior_mean_coef1[0] * x0 + s->posterior_mean_coef2[0] * x)), <, 1e-5);
  kin_iddpm_schedule_free (s);

  /* guidance: n = 1, 4 output channels, 1 value each; 3 guided, the 4th untouched */
  float mo[8] = { 1, 2, 3, 4, /* uncond */ 0, 0, 0, 9 };
  kin_iddpm_guide (mo, 1, 4, 1, 3, 7.0f);
  g_assert_cmpfloat (mo[0], ==, 7.0f);
  g_assert_cmpfloat (mo[4], ==, 7.0f);
  g_assert_cmpfloat (mo[2], ==, 21.0f);
  g_assert_cmpfloat (mo[3], ==, 4.0f);
  g_assert_cmpfloat (mo[7], ==, 9.0f);
}

static void
test_philox_kat (void)
{
  /* Known-answer vectors of the Random123 distribution for philox4x32-10 */
  const uint32_t c0[4] = { 0, 0, 0, 0 }, k0[2] = { 0, 0 };
  const uint32_t e0[4] = { 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8 };
  const uint32_t c1[4] = { 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff }, k1[2] = { 0xffffffff, 0xffffffff };
  const uint32_t e1[4] = { 0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd };
  const uint32_t c2[4] = { 0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344 }, k2[2] = { 0xa4093822, 0x299f31d0 };
  const uint32_t e2[4] = { 0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1 };
  uint32_t o[4];
  kin_philox4x32_10 (c0, k0, o);
  g_assert_cmpmem (o, 16, e0, 16);
  kin_philox4x32_10 (c1, k1, o);
  g_assert_cmpmem (o, 16, e1, 16);
  kin_philox4x32_10 (c2, k2, o);
  g_assert_cmpmem (o, 16, e2, 16);
}

static void
test_noise_stream (void)
{
  size_t n = 1 << 18;
  g_autofree float *a = g_new (float, n), *b = g_new (float, n);
  KinNoise ns;
  kin_noise_init (&ns, 42);
  kin_noise_fill (&ns, a, n);
  /* the same values drawn in pieces, and at an offset without state */
  kin_noise_init (&ns, 42);
  kin_noise_fill (&ns, b, 1000);
  kin_noise_fill (&ns, b + 1000, n - 1000);
  g_assert_cmpmem (a, n * 4, b, n * 4);
  kin_noise_at (42, 250, b, 100);
  g_assert_cmpmem (a + 1000, 400, b, 400);
  /* moments of a standard normal */
  double m = 0, v = 0;
  for (size_t i = 0; i < n; i++)
    m += a[i];
  m /= n;
  for (size_t i = 0; i < n; i++)
    v += (a[i] - m) * (a[i] - m);
  v /= n;
  g_assert_cmpfloat (fabs (m), <, 0.01);
  g_assert_cmpfloat (fabs (v - 1), <, 0.01);
  /* another seed gives other values */
  kin_noise_at (43, 0, b, 16);
  g_assert_false (memcmp (a, b, 64) == 0);
}

static void
test_buckets (void)
{
  const KinResolutionClass *c = kin_resolution_class_find ("240p");
  g_assert_nonnull (c);
  double r;
  g_assert_true (kin_aspect_parse ("16:9", &r));
  const KinBucket *b = kin_bucket_nearest (c, r);
  g_assert_cmpint (b->height, ==, 240);
  g_assert_cmpint (b->width, ==, 426);
  g_assert_true (kin_aspect_parse ("9:16", &r));
  b = kin_bucket_nearest (c, r);
  g_assert_cmpint (b->height, ==, 426);
  g_assert_true (kin_aspect_parse ("1:1", &r));
  g_assert_cmpint (kin_bucket_nearest (kin_resolution_class_find ("720p"), r)->width, ==, 960);
  g_assert_false (kin_aspect_parse ("wide", &r));
  g_assert_false (kin_aspect_parse ("0:9", &r));
  g_assert_null (kin_resolution_class_find ("8k"));
  g_assert_cmpint (kin_frames_for_seconds (2), ==, 16);
  g_assert_cmpint (kin_frames_for_seconds (4), ==, 32);
  g_assert_cmpint (kin_frames_for_seconds (0), ==, 1);
  g_assert_cmpint (kin_frames_for_seconds (100), ==, 128);
  g_assert_cmpfloat (kin_seconds_for_frames (64), ==, 8.0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/sampling/respacing", test_respacing);
  g_test_add_func ("/sampling/step-and-guide", test_step_and_guide);
  g_test_add_func ("/noise/philox-kat", test_philox_kat);
  g_test_add_func ("/noise/stream", test_noise_stream);
  g_test_add_func ("/buckets/lookup", test_buckets);
  return g_test_run ();
}
