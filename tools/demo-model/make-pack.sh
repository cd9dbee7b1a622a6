#!/bin/sh
# Reproduce the Kinora demo model pack (data/models/kinora-demo) and its C-test fixtures
# (tests/data/demo) from scratch on the CPU, in one command:  tools/demo-model/make-pack.sh
#
# Fixed seeds (--seed 1234 and fixed offsets per stage).  The steps:
#   1. spm, data, vae, lat   (each skipped when its output is already in $WORK)
#   2. dit phase 1: STDiT2 + T5 from scratch on all clips, up to DIT1_STEPS (default 1069) steps
#   3. dit phase 2 ("focus"): resume from $WORK/dit.pt and continue to DIT_STEPS steps in all,
#      91% of the clips drawn from the black-background left/right/up/down clips, 40% of the
#      timesteps from [400, 1000), frame-conditioning samples halved, AdamW 1e-3 -> 2e-4
#   4. export to data/models/kinora-demo, then fixtures.py writes tests/data/demo
# Every DiT phase is resumable: it continues from $WORK/dit.pt when that exists (EMA + raw weights
# + AdamW state, checkpointed every 100 steps / 3 minutes), and --dit-max-steps counts all steps,
# so re-running the script after an interruption carries on where it stopped and a finished run is
# not trained further.  Use a fresh WORK folder to start from scratch.
#
# Each stage also stops at its wall-clock budget (VAE_MINUTES, DIT1_MINUTES, DIT_MINUTES), whichever
# comes first.  The recorded run (data/models/kinora-demo/README.md) reached 3198 VAE steps, 1069
# phase-1 steps and 3081 DiT steps in all; the defaults below repeat those step counts with budgets
# large enough for a shared 2-core machine.  Threads: THREADS (default 1).
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
[ -f "$work/latents.npy" ] || stages="$stages,lat"
common="--work $work --out $out --seed 1234 --clips 1200"
if [ -n "$stages" ]; then
  "$py" "$here/train.py" $common --stages "${stages#,}" \
    --vae-minutes "${VAE_MINUTES:-60}" --vae-max-steps "${VAE_STEPS:-3198}"
fi
# phase 1: all clips, uniform timesteps (the original recipe)
"$py" "$here/train.py" $common --stages dit --resume \
  --dit-minutes "${DIT1_MINUTES:-120}" --dit-max-steps "${DIT1_STEPS:-1069}"
# phase 2: prompt-following focus, resumed from phase 1
"$py" "$here/train.py" $common --stages dit,export --resume \
  --dit-minutes "${DIT_MINUTES:-120}" --dit-max-steps "${DIT_STEPS:-3081}" \
  --dit-lr 1e-3 --dit-warmup 50 --dit-lr-end 0.2 --dit-focus 0.85 --dit-t-high 0.4 --dit-mask-scale 0.5 "$@"
"$py" "$here/fixtures.py" --pack "$out" --out "$root/tests/data/demo"
