#!/bin/sh
# Reproduce the Kinora demo model pack (data/models/kinora-demo) from scratch on the CPU.
# Fixed seeds; each training stage is bounded by a wall-clock budget, so the exact weights depend on
# the machine's speed (the recorded run: see data/models/kinora-demo/README.md).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=${WORK:-/tmp/kinora-demo-work}
py=${PYTHON:-/usr/bin/python3}
"$py" "$here/train.py" --work "$work" --out "$root/data/models/kinora-demo" --seed 1234 \
  --clips ${CLIPS:-1500} --vae-minutes ${VAE_MINUTES:-5} --dit-minutes ${DIT_MINUTES:-16} "$@"
"$py" "$here/fixtures.py" --pack "$root/data/models/kinora-demo" --out "$root/tests/data/demo"
