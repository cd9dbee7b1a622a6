#!/usr/bin/env bash
# kinora-cli end to end on a tiny random pack: generate, --json events, extend, loop, export,
# and clear errors for bad input.  Usage: test-cli.sh KINORA_CLI MAKE_TEST_PACK
set -u
cli=$1
make_pack=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "not ok - $*"; exit 1; }

"$make_pack" "$tmp/pack" || fail "make-test-pack"
models=(--transformer "$tmp/pack/transformer" --text-encoder "$tmp/pack/text_encoder" --vae "$tmp/pack/vae")

"$cli" generate "${models[@]}" --height 32 --width 48 --frames 6 --steps 3 --seed 42 \
  -o "$tmp/a.mp4" "a red circle moving right" > "$tmp/out.txt" 2> "$tmp/err.txt" || { cat "$tmp/err.txt"; fail "generate"; }
grep -q "6 frames 48×32" "$tmp/out.txt" || fail "generate summary: $(cat "$tmp/out.txt")"
[ -s "$tmp/a.mp4" ] && [ -s "$tmp/a.mp4.json" ] && [ -s "$tmp/a.mp4.latents.safetensors" ] || fail "outputs missing"
grep -q '"seed" : "42"' "$tmp/a.mp4.json" || fail "sidecar lacks the seed"
echo "ok 1 generate"

"$cli" generate "${models[@]}" --height 32 --width 48 --frames 4 --steps 2 --seed 7 --json \
  -o "$tmp/b.gif" "a blue square" > "$tmp/events.txt" 2>/dev/null || fail "generate --json"
grep -q '"event":"progress","stage":"denoising","step":2,"total":2' "$tmp/events.txt" || fail "no progress events"
tail -n 1 "$tmp/events.txt" | grep -q '"event":"done"' || fail "no done event"
python3 -c "import json,sys; [json.loads(l) for l in open(sys.argv[1])]" "$tmp/events.txt" || fail "events are not JSON"
echo "ok 2 json events"

"$cli" extend "${models[@]}" --from "$tmp/a.mp4" --frames 6 --condition-frames 2 --steps 3 \
  -o "$tmp/ext.webm" > "$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; fail "extend"; }
grep -q "10 frames" "$tmp/out.txt" || fail "extend did not join source (6) + new (4): $(cat "$tmp/out.txt")"
"$cli" loop "${models[@]}" --from "$tmp/a.mp4" --frames 6 --condition-frames 2 --steps 3 \
  -o "$tmp/loop.mp4" > "$tmp/out.txt" 2>&1 || { cat "$tmp/out.txt"; fail "loop"; }
grep -q "8 frames" "$tmp/out.txt" || fail "loop did not write source (6) + middle (2): $(cat "$tmp/out.txt")"
echo "ok 3 extend and loop"

"$cli" export "$tmp/a.mp4" "$tmp/frames" > "$tmp/out.txt" 2>&1 || fail "export"
[ "$(ls "$tmp/frames" | grep -c '\.png$')" = 6 ] || fail "export wrote $(ls "$tmp/frames" | wc -l) PNGs"
echo "ok 4 export"

"$cli" generate "${models[@]}" --height 3 --width 48 -o "$tmp/x.mp4" "x" > "$tmp/out.txt" 2>&1 && fail "accepted height 3"
grep -q "impossible" "$tmp/out.txt" || fail "unclear size error: $(cat "$tmp/out.txt")"
"$cli" generate --transformer /nonexistent --text-encoder /nonexistent --vae /nonexistent "x" > "$tmp/out.txt" 2>&1 && fail "accepted missing models"
grep -q "cannot load the transformer" "$tmp/out.txt" || fail "unclear model error: $(cat "$tmp/out.txt")"
"$cli" generate "${models[@]}" --resolution 999p "x" > "$tmp/out.txt" 2>&1 && fail "accepted 999p"
"$cli" extend "${models[@]}" --from "$tmp/none.mp4" "x" > "$tmp/out.txt" 2>&1 && fail "extended a missing clip"
grep -q "latents" "$tmp/out.txt" || fail "unclear extend error"
[ ! -e "$tmp/x.mp4" ] || fail "a failed run left output behind"
echo "ok 5 bad input"
echo "1..5"
