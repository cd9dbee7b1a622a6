/* kin-buckets.c — bucket tables (opensora/datasets/aspect.py, v1.1.0; see spec §5.1). */
#include "kin-buckets.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define B(r, h, w) { r, h, w }

static const KinBucket b144[] = {
  B ("0.38", 117, 312), B ("0.43", 125, 291), B ("0.48", 133, 277), B ("0.50", 135, 270),
  B ("0.53", 139, 262), B ("0.54", 141, 260), B ("0.56", 144, 256), B ("0.62", 151, 241),
  B ("0.67", 156, 234), B ("0.75", 166, 221), B ("1.00", 192, 192), B ("1.33", 221, 165),
  B ("1.50", 235, 156), B ("1.78", 256, 144), B ("1.89", 263, 139), B ("2.00", 271, 135),
  B ("2.08", 277, 132),
};
static const KinBucket b240[] = {
  B ("0.38", 196, 522), B ("0.43", 210, 490), B ("0.48", 222, 462), B ("0.50", 226, 452),
  B ("0.53", 232, 438), B ("0.54", 236, 436), B ("0.56", 240, 426), B ("0.62", 252, 404),
  B ("0.67", 262, 393), B ("0.75", 276, 368), B ("1.00", 320, 320), B ("1.33", 370, 278),
  B ("1.50", 392, 262), B ("1.78", 426, 240), B ("1.89", 440, 232), B ("2.00", 452, 226),
  B ("2.08", 462, 222),
};
static const KinBucket b360[] = {
  B ("0.38", 294, 784), B ("0.43", 314, 732), B ("0.48", 332, 692), B ("0.50", 340, 680),
  B ("0.53", 350, 662), B ("0.54", 352, 652), B ("0.56", 360, 640), B ("0.62", 380, 608),
  B ("0.67", 392, 588), B ("0.75", 416, 554), B ("1.00", 480, 480), B ("1.33", 554, 416),
  B ("1.50", 588, 392), B ("1.78", 640, 360), B ("1.89", 660, 350), B ("2.00", 678, 340),
  B ("2.08", 692, 332),
};
static const KinBucket b480[] = {
  B ("0.38", 392, 1046), B ("0.43", 420, 980), B ("0.48", 444, 925), B ("0.50", 452, 904),
  B ("0.53", 466, 880), B ("0.54", 470, 870), B ("0.56", 480, 854), B ("0.62", 506, 810),
  B ("0.67", 522, 784), B ("0.75", 554, 738), B ("1.00", 640, 640), B ("1.33", 740, 555),
  B ("1.50", 784, 522), B ("1.78", 854, 480), B ("1.89", 880, 466), B ("2.00", 906, 454),
  B ("2.08", 924, 444),
};
static const KinBucket b720[] = {
  B ("0.38", 588, 1568), B ("0.43", 628, 1466), B ("0.48", 666, 1388), B ("0.50", 678, 1356),
  B ("0.53", 698, 1318), B ("0.54", 706, 1306), B ("0.56", 720, 1280), B ("0.62", 758, 1212),
  B ("0.67", 784, 1176), B ("0.75", 832, 1110), B ("1.00", 960, 960), B ("1.33", 1108, 832),
  B ("1.50", 1176, 784), B ("1.78", 1280, 720), B ("1.89", 1320, 698), B ("2.00", 1358, 680),
  B ("2.08", 1386, 666),
};
static const KinBucket b1080[] = {
  B ("0.38", 882, 2352), B ("0.43", 942, 2198), B ("0.48", 998, 2080), B ("0.50", 1018, 2036),
  B ("0.53", 1048, 1980), B ("0.54", 1058, 1958), B ("0.56", 1080, 1920), B ("0.62", 1138, 1820),
  B ("0.67", 1176, 1764), B ("0.75", 1248, 1664), B ("1.00", 1440, 1440), B ("1.33", 1662, 1246),
  B ("1.50", 1764, 1176), B ("1.78", 1920, 1080), B ("1.89", 1980, 1048), B ("2.00", 2036, 1018),
  B ("2.08", 2078, 998),
};

static const KinResolutionClass classes[] = {
  { "144p", 36864, b144, G_N_ELEMENTS (b144) },
  { "240p", 102240, b240, G_N_ELEMENTS (b240) },
  { "360p", 230400, b360, G_N_ELEMENTS (b360) },
  { "480p", 409920, b480, G_N_ELEMENTS (b480) },
  { "720p", 921600, b720, G_N_ELEMENTS (b720) },
  { "1080p", 2073600, b1080, G_N_ELEMENTS (b1080) },
};

const KinResolutionClass *
kin_resolution_classes (int *n)
{
  *n = G_N_ELEMENTS (classes);
  return classes;
}

const KinResolutionClass *
kin_resolution_class_find (const char *name)
{
  for (guint i = 0; i < G_N_ELEMENTS (classes); i++)
    if (g_ascii_strcasecmp (classes[i].name, name) == 0)
      return &classes[i];
  return NULL;
}

const KinBucket *
kin_bucket_nearest (const KinResolutionClass *cls, double h_over_w)
{
  const KinBucket *best = NULL;
  double bd = INFINITY;
  for (int i = 0; i < cls->n_buckets; i++) {
    double d = fabs (g_ascii_strtod (cls->buckets[i].ratio, NULL) - h_over_w);
    if (d < bd) { /* first minimum wins, like Python's min over dict keys */
      bd = d;
      best = &cls->buckets[i];
    }
  }
  return best;
}

gboolean
kin_aspect_parse (const char *text, double *h_over_w)
{
  if (text == NULL || *text == '\0')
    return FALSE;
  const char *colon = strchr (text, ':');
  char *end = NULL;
  if (colon != NULL) {
    double w = g_ascii_strtod (text, &end);
    if (end != colon)
      return FALSE;
    double h = g_ascii_strtod (colon + 1, &end);
    if (*end != '\0' || !(w > 0) || !(h > 0))
      return FALSE;
    *h_over_w = h / w;
    return TRUE;
  }
  double r = g_ascii_strtod (text, &end);
  if (*end != '\0' || !(r > 0))
    return FALSE;
  *h_over_w = 1.0 / r; /* a bare number is W/H, "1.78" = 16:9 */
  return TRUE;
}

static const int frame_counts[] = { 1, 16, 32, 64, 128 };

const int *
kin_frame_counts (int *n)
{
  *n = G_N_ELEMENTS (frame_counts);
  return frame_counts;
}

int
kin_frames_for_seconds (double seconds)
{
  if (!(seconds > 0))
    return 1;
  double want = seconds * KIN_OUTPUT_FPS;
  int best = frame_counts[1];
  for (guint i = 1; i < G_N_ELEMENTS (frame_counts); i++)
    if (fabs (frame_counts[i] - want) < fabs (best - want))
      best = frame_counts[i];
  return best;
}

double
kin_seconds_for_frames (int frames)
{
  return frames <= 1 ? 0.0 : (double) frames / KIN_OUTPUT_FPS;
}
