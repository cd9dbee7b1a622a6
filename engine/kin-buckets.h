/* kin-buckets.h — Open-Sora 1.1's resolution × aspect-ratio buckets and the duration → frame
 * count rules (spec/stdit.md §5), as data in one place. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  const char *ratio;   /* H/W label, "0.56" */
  int height, width;   /* pixels */
} KinBucket;

typedef struct {
  const char *name;    /* "240p" */
  int pixels;          /* nominal pixel count */
  const KinBucket *buckets;
  int n_buckets;
} KinResolutionClass;

/* Output frame rate of Open-Sora 1.1 clips: 24 fps source, frame interval 3. */
#define KIN_OUTPUT_FPS 8
/* The fps value the v1.1 model is conditioned on (video / single image). */
#define KIN_CONDITION_FPS 24
#define KIN_CONDITION_FPS_IMAGE 120

const KinResolutionClass *kin_resolution_classes (int *n);
const KinResolutionClass *kin_resolution_class_find (const char *name);
/* The bucket of @cls whose ratio is nearest to @h_over_w (upstream's nearest-key rule). */
const KinBucket          *kin_bucket_nearest (const KinResolutionClass *cls, double h_over_w);
/* Parses "16:9", "9:16", "1:1", "4:3" or a number as W:H as people say it for video, and returns
 * H/W.  FALSE on junk. */
gboolean                  kin_aspect_parse (const char *text, double *h_over_w);

/* Frame counts the v1.1 model was trained on: 1 (image), 16, 32, 64, 128. */
const int *kin_frame_counts (int *n);
/* Duration in seconds → the frame count generated (nearest trained count ≥ 1 at KIN_OUTPUT_FPS;
 * 0 s → 1 frame = an image). */
int        kin_frames_for_seconds (double seconds);
double     kin_seconds_for_frames (int frames);

G_END_DECLS
