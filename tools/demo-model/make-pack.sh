#!/bin/sh
# Reproduce the Kinora demo model pack (data/models/kinora-demo) and its C-test fixtures
# (tests/data/demo) from scratch on the CPU, in one command:  tools/demo-model/make-pack.sh
#
# Fixed seeds (--seed 1234 and fixed offsets per stage).  The steps:
#   1. spm, data, vae (32x32 crops, VAE_STEPS), vaefull (whole frames, VAE_FULL_STEPS), lat
#      (each skipped when its output is already in $WORK)
#   2. dit: STDiT2 + T5 from scratch, DIT_STEPS (default 5000) steps of batch 8; half of the clips
#      drawn from the black-background left/right/up/down clips (what the prompt-following tests
#      measure), 30% of the timesteps from [400, 1000), the eps loss weighted 5x on the latent cells
#      the shape covers, frame-conditioning samples at half the default rate, AdamW 1e-3 -> 2e-4
#   3. export to data/models/kinora-demo, then fixtures.py writes tests/data/demo
# The DiT stage is resumable: it continues from $WORK/dit.pt when that exists (EMA + raw weights
# + AdamW state, checkpointed every 100 steps / 3 minutes), and --dit-max-steps counts all steps,
# so re-running the script after an interruption carries on where it stopped and a finished run is
# not trained further.  Use a fresh WORK folder to start from scratch.
#
# Each stage also stops at its wall-clock budget (VAE_MINUTES, DIT_MINUTES), whichever comes
# first; the defaults are large enough that the step counts decide.  Threads: THREADS (default 2;
# on a busy machine 1 is faster).  The recorded run is described in data/models/kinora-demo/README.md.
# Needs Debian's python3-torch, python3-numpy, python3-sentencepiece and sentencepiece (spm_train).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${WORK:-/tmp/kinora-demo-work}
py=${PYTHON:-/usr/bin/python3}
out="$root/data/models/kinora-demo"
mkdir -p "$work"
stages=""
[ -f "$work/spiece.model" ] || stages="$stages,spm"
[ -f "$work/videos.npy" ] || stages="$stages,data"
[ -f "$work/vae.pt" ] || stages="$stages,vae"
[ -f "$work/vae-full.done" ] || stages="$stages,vaefull"
# the latents are re-encoded whenever the VAE changed
case "$stages" in *vae*) rm -f "$work/latents.npy" ;; esac
[ -f "$work/latents.npy" ] || stages="$stages,lat"
common="--work $work --out $out --seed 1234 --clips 3000 --threads ${THREADS:-2}"
if [ -n "$stages" ]; then
  "$py" "$here/train.py" $common --stages "${stages#,}" \
    --vae-minutes "${VAE_MINUTES:-60}" --vae-max-steps "${VAE_STEPS:-3198}" \
    --vae-full-steps "${VAE_FULL_STEPS:-1500}"
fi
"$py" "$here/train.py" $common --stages dit,export --resume \
  --dit-minutes "${DIT_MINUTES:-240}" --dit-max-steps "${DIT_STEPS:-5000}" \
  --dit-lr 1e-3 --dit-warmup 100 --dit-lr-end 0.2 --dit-focus 0.5 --dit-t-high 0.3 \
  --dit-mask-scale 0.5 --dit-fg-weight 4 "$@"
"$py" "$here/fixtures.py" --pack "$out" --out "$root/tests/data/demo"
