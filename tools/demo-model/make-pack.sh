#!/bin/sh
# Reproduce the Kinora demo model pack (data/models/kinora-demo) and its C-test fixtures
# (tests/data/demo) from scratch on the CPU:  tools/demo-model/make-pack.sh
#
# Fixed seeds (--seed 1234 and fixed offsets per stage).  Every training stage stops at its
# wall-clock budget (VAE_MINUTES, DIT_MINUTES) or at its step cap (VAE_STEPS, DIT_STEPS),
# whichever comes first.  The recorded run (data/models/kinora-demo/README.md) reached 3198 VAE
# steps and 1069 DiT steps within the default budgets; a faster machine gets further (better), a
# busier one stops earlier.  VAE_STEPS=3198 DIT_STEPS=1069 (with large budgets) repeats its step
# counts exactly.
# Needs Debian's python3-torch, python3-numpy, python3-sentencepiece and sentencepiece (spm_train).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${WORK:-/tmp/kinora-demo-work}
py=${PYTHON:-/usr/bin/python3}
mkdir -p "$work"
"$py" "$here/train.py" --work "$work" --out "$root/data/models/kinora-demo" --seed 1234 \
  --clips 1200 \
  --vae-minutes "${VAE_MINUTES:-7}" --vae-max-steps "${VAE_STEPS:-1000000000}" \
  --dit-minutes "${DIT_MINUTES:-42}" --dit-max-steps "${DIT_STEPS:-1000000000}" "$@"
"$py" "$here/fixtures.py" --pack "$root/data/models/kinora-demo" --out "$root/tests/data/demo"
