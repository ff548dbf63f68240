#!/usr/bin/env bash
# End to end: a run directory holds config.toml, summary.json, findings.json, store.sqlite and a checkpoint;
# `runs list/show` read it; the effective config reloads; deterministic runs give bitwise identical weights.
# usage: train_basics.sh TRAINDX_BINARY SOURCE_DIR
set -eu
traindx=$1
src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

args=(--set data.max_train=2000 --set data.max_test=500 --set train.max_steps=40 --set run.deterministic=true
      --set train.eval_every=20 --quiet)
"$traindx" train "$src/examples/fashion_mlp.toml" "${args[@]}" --out "$tmp/runs/a" >/dev/null
for f in config.toml summary.json findings.json store.sqlite checkpoints/latest; do
  [ -e "$tmp/runs/a/$f" ] || fail "run directory lacks $f"
done
/usr/bin/python3 - "$tmp/runs/a/summary.json" <<'PY' || fail "summary.json incomplete"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["status"] == "completed", s["status"]
assert s["steps"] == 40, s["steps"]
for split in ("train", "val", "test"):
    assert 0.0 <= s[split]["accuracy"] <= 1.0, split
assert s["wall_seconds"] > 0 and "environment" in s
PY

# The effective config reloads and, being deterministic, reproduces the weights bit for bit.
"$traindx" train "$tmp/runs/a/config.toml" --out "$tmp/runs/b" --quiet >/dev/null
a=$(cat "$tmp/runs/a/checkpoints/latest"); b=$(cat "$tmp/runs/b/checkpoints/latest")
cmp -s "$tmp/runs/a/checkpoints/$a/model.safetensors" "$tmp/runs/b/checkpoints/$b/model.safetensors" \
  || fail "two deterministic runs of the same config gave different weights"
cmp -s "$tmp/runs/a/checkpoints/$a/optimizer.safetensors" "$tmp/runs/b/checkpoints/$b/optimizer.safetensors" \
  || fail "two deterministic runs gave different optimizer state"

"$traindx" runs --root "$tmp/runs" list | grep -q "^a " || fail "runs list does not show run a"
"$traindx" runs --root "$tmp/runs" show a | grep -q "status   completed" || fail "runs show lacks the status"
"$traindx" runs --root "$tmp/runs" show a --json | /usr/bin/python3 -c \
  'import json,sys; d=json.load(sys.stdin); assert d["series"]["loss"]["points"] == 40, d["series"]["loss"]'

# --json prints one parseable document on stdout.
"$traindx" train "$src/examples/fashion_mlp.toml" "${args[@]}" --out "$tmp/runs/c" --json \
  | /usr/bin/python3 -c 'import json,sys; assert json.load(sys.stdin)["steps"] == 40'

# The tabular example trains on the real scikit-learn table.
"$traindx" train "$src/examples/breast_cancer.toml" --set train.epochs=5 --out "$tmp/runs/bc" --quiet >/dev/null
/usr/bin/python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["test"]["accuracy"] > 0.85, s["test"]' \
  "$tmp/runs/bc/summary.json" || fail "breast-cancer example below 85% after 5 epochs"
echo "train basics ok"
