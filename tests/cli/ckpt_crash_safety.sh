#!/usr/bin/env bash
# Crash safety through the real binary: `traindx train` checkpointing after every step is killed with SIGKILL at a
# random moment (0-300 ms after its first checkpoint, so the kill lands while checkpoints are being written), then
# restarted with --resume from the killed run, as a preempted job would be. After every kill, `latest` must load with
# all hashes checked (`ckpt inspect`, exit 0), name a visible complete directory, and `ckpt verify` must reproduce the
# golden probe. Each trial pays a process start and data loading (~1.5 s), so this script runs few trials
# (TRAINDX_CLI_CRASH_TRIALS, default 6); the many-kill test is tests/checkpoint_crash_test.cpp (120 kills, forked).
#   bash tests/cli/ckpt_crash_safety.sh <traindx binary> <source dir>
set -euo pipefail
traindx=$1
trials=${TRAINDX_CLI_CRASH_TRIALS:-6}
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -9 "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

cat >"$work/tiny.toml" <<'EOF'
[run]
seed = 5
[data]
source = "fashion-mnist"
max_train = 500
max_test = 100
[model]
layers = [ { type = "flatten" }, { type = "linear" } ]
[train]
optimizer = "sgd"
momentum = 0.9
batch_size = 50
epochs = 100000
max_steps = 1000000
log_every = 1000000
[checkpoint]
every_steps = 1
keep_last = 3
probe_size = 32
EOF

start=$SECONDS
prev=""
last_step=-1
for k in $(seq 1 "$trials"); do
  out="$work/run$k"
  resume=()
  if [ -n "$prev" ]; then resume=(--resume "$prev"); fi
  "$traindx" train "$work/tiny.toml" --quiet --out "$out" "${resume[@]}" >"$work/train.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 400); do
    [ -f "$out/checkpoints/latest" ] && break
    kill -0 "$pid" 2>/dev/null || fail "trial $k: training ended before its first checkpoint: $(cat "$work/train.log")"
    sleep 0.025
  done
  [ -f "$out/checkpoints/latest" ] || fail "trial $k: no checkpoint after 10 s"
  sleep "$(printf '0.%03d' $((RANDOM % 300)))"
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  pid=""

  "$traindx" ckpt inspect "$out" --json >"$work/inspect.json" 2>"$work/inspect.err" ||
    fail "trial $k: latest ($(cat "$out/checkpoints/latest")) does not load: $(cat "$work/inspect.err")"
  step=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["step"])' "$work/inspect.json")
  [ "$step" -gt "$last_step" ] || fail "trial $k: latest is at step $step, not past the resumed step $last_step"
  latest=$(cat "$out/checkpoints/latest")
  case "$latest" in .*) fail "trial $k: latest names a hidden directory '$latest' without a re-save" ;; esac
  for d in "$out"/checkpoints/step-*; do
    [ -f "$d/manifest.json" ] || fail "trial $k: $d is visible but incomplete"
  done
  "$traindx" ckpt verify "$out" >"$work/verify.out" 2>&1 || fail "trial $k: verify failed: $(cat "$work/verify.out")"
  last_step=$step
  prev="$out"
done
echo "ckpt_crash_safety: ok, $trials kills in $((SECONDS - start)) s, last step $last_step"
