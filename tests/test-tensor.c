/* test-tensor.c — tensor bookkeeping and half-precision conversion. */
#include "kin-backend.h"
#include "kin-error.h"
#include <math.h>

static void
test_bf16 (void)
{
  g_assert_cmpfloat (kin_bf16_to_f32 (0x3f80), ==, 1.0f);
  g_assert_cmpfloat (kin_bf16_to_f32 (0xc000), ==, -2.0f);
  g_assert_cmphex (kin_f32_to_bf16 (1.0f), ==, 0x3f80);
  /* round to nearest even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 → 1 */
  g_assert_cmphex (kin_f32_to_bf16 (1.0f + 1.0f / 256), ==, 0x3f80);
  g_assert_cmphex (kin_f32_to_bf16 (1.0f + 3.0f / 256), ==, 0x3f82);
  g_assert_true (isnan (kin_bf16_to_f32 (kin_f32_to_bf16 (NAN))));
  g_assert_true (isinf (kin_bf16_to_f32 (kin_f32_to_bf16 (INFINITY))));
  /* width 854 → 856 (the bf16 quirk the STDiT2 conditioning relies on) */
  g_assert_cmpfloat (kin_round_bf16 (854.0f), ==, 856.0f);
  g_assert_cmpfloat (kin_round_bf16 (738.0f), ==, 736.0f);
}

static void
test_f16 (void)
{
  g_assert_cmpfloat (kin_f16_to_f32 (0x3c00), ==, 1.0f);
  g_assert_cmpfloat (kin_f16_to_f32 (0x0001), ==, ldexpf (1, -24)); /* smallest subnormal */
  g_assert_cmpfloat (kin_f16_to_f32 (0x7bff), ==, 65504.0f);
  g_assert_true (isinf (kin_f16_to_f32 (0x7c00)));
  g_assert_cmphex (kin_f32_to_f16 (65504.0f), ==, 0x7bff);
  g_assert_cmphex (kin_f32_to_f16 (70000.0f), ==, 0x7c00);
  g_assert_cmphex (kin_f32_to_f16 (ldexpf (1, -24)), ==, 0x0001);
  g_assert_cmphex (kin_f32_to_f16 (ldexpf (1, -26)), ==, 0x0000);
  /* every finite f16 survives a round trip through f32 */
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00)
      continue;
    g_assert_cmphex (kin_f32_to_f16 (kin_f16_to_f32 ((uint16_t) h)), ==, h);
  }
  /* and every bf16 */
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7f80) == 0x7f80)
      continue;
    g_assert_cmphex (kin_f32_to_bf16 (kin_bf16_to_f32 ((uint16_t) h)), ==, h);
  }
}

static void
test_convert (void)
{
  int64_t i64[3] = { -5, 0, 7 };
  double f64[2] = { 0.5, -1e10 };
  uint8_t u8[2] = { 0, 255 };
  float out[3];
  g_assert_true (kin_convert_to_f32 (out, i64, KIN_DTYPE_I64, 3));
  g_assert_cmpfloat (out[0], ==, -5.0f);
  g_assert_cmpfloat (out[2], ==, 7.0f);
  g_assert_true (kin_convert_to_f32 (out, f64, KIN_DTYPE_F64, 2));
  g_assert_cmpfloat (out[1], ==, -1e10f);
  g_assert_true (kin_convert_to_f32 (out, u8, KIN_DTYPE_U8, 2));
  g_assert_cmpfloat (out[1], ==, 255.0f);
  g_assert_false (kin_convert_to_f32 (out, u8, KIN_DTYPE_COUNT, 2));
}

static void
test_tensor_new (void)
{
  KinBackend *be = kin_backend_cpu ();
  int64_t shape[3] = { 2, 3, 5 };
  g_autoptr (GError) error = NULL;
  g_autoptr (KinTensor) t = kin_tensor_new (be, KIN_DTYPE_F32, 3, shape, &error);
  g_assert_no_error (error);
  g_assert_cmpint (kin_tensor_numel (t), ==, 30);
  g_assert_cmpint (kin_tensor_nbytes (t), ==, 120);
  g_assert_cmpint (kin_tensor_dims (t, 1, 3), ==, 15);
  int64_t vshape[2] = { 3, 5 };
  g_autoptr (KinTensor) v = kin_tensor_view (t, 15, 2, vshape);
  g_assert_true ((float *) v->data == (float *) t->data + 15);
  g_assert_false (v->owns_data);
  g_autofree char *s = kin_shape_to_string (3, shape);
  g_assert_cmpstr (s, ==, "[2, 3, 5]");

  int64_t huge[3] = { G_MAXINT64 / 2, 4, 4 };
  KinTensor *h = kin_tensor_new (be, KIN_DTYPE_F32, 3, huge, &error);
  g_assert_null (h);
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  int64_t neg[1] = { -1 };
  g_assert_null (kin_tensor_new (be, KIN_DTYPE_F32, 1, neg, &error));
  g_assert_error (error, KIN_ENGINE_ERROR, KIN_ENGINE_ERROR_BAD_INPUT);
  g_clear_error (&error);
  int64_t big[1] = { (int64_t) 1 << 60 }; /* a valid shape that cannot be allocated */
  g_assert_null (kin_tensor_new (be, KIN_DTYPE_F32, 1, big, &error));
  g_assert_nonnull (error);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tensor/bf16", test_bf16);
  g_test_add_func ("/tensor/f16", test_f16);
  g_test_add_func ("/tensor/convert", test_convert);
  g_test_add_func ("/tensor/new", test_tensor_new);
  return g_test_run ();
}
