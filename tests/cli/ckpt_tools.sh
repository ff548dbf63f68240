#!/usr/bin/env bash
# End to end: `traindx ckpt inspect | diff | export | import` on real runs, with their exit codes:
# inspect/export/import 0 on success and 2 on bad input; diff 0 when identical, 1 when different.
#   bash tests/cli/ckpt_tools.sh <traindx binary> <source dir>
set -euo pipefail
traindx=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
# expect_exit CODE CMD...: runs CMD, saving stdout/stderr to $work/out and $work/err, and checks its exit code.
expect_exit() {
  local want=$1
  shift
  local got=0
  "$@" >"$work/out" 2>"$work/err" || got=$?
  [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want; stderr: $(cat "$work/err")"
}
contains() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 2000 "$1")"; }

cat >"$work/tiny.toml" <<'EOF'
[run]
seed = 2
[data]
source = "fashion-mnist"
max_train = 400
max_test = 100
[model]
layers = [ { type = "conv2d", out = 4, kernel = 3 }, { type = "relu" }, { type = "flatten" }, { type = "linear" } ]
[train]
optimizer = "adam"
batch_size = 40
epochs = 5
max_steps = 12
[checkpoint]
every_steps = 6
EOF

# Two runs of one config: deterministic on the CPU, so their last checkpoints are bit-identical.
expect_exit 0 "$traindx" train "$work/tiny.toml" --quiet --out "$work/a"
expect_exit 0 "$traindx" train "$work/tiny.toml" --quiet --out "$work/b" --set run.name=other

# inspect: text and JSON; a run directory resolves to checkpoints/latest.
expect_exit 0 "$traindx" ckpt inspect "$work/a"
contains "$work/out" "step-00000012"
contains "$work/out" "hashes verified"
contains "$work/out" "adam: exp_avg x4, exp_avg_sq x4"
contains "$work/out" "conv1.weight"
expect_exit 0 "$traindx" ckpt inspect "$work/a/checkpoints/step-00000006" --json
python3 - "$work/out" <<'EOF' || fail "inspect --json is not the expected document"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["kind"] == "traindx.ckpt.inspect" and d["step"] == 6, d
assert d["optimizer"]["name"] == "adam" and d["optimizer"]["slots"]["exp_avg"] == 4
assert [r["name"] for r in d["tensors"]["model"]] == ["conv1.weight", "conv1.bias", "fc1.weight", "fc1.bias"]
assert all(len(r["hash"]) == 32 for r in d["tensors"]["model"])
EOF

# diff: identical runs exit 0; two steps of one run exit 1 and name what differs.
expect_exit 0 "$traindx" ckpt diff "$work/a" "$work/b"
contains "$work/out" "identical: every tensor is bit-identical"
contains "$work/out" "run.name"
expect_exit 1 "$traindx" ckpt diff "$work/a/checkpoints/step-00000006" "$work/a"
contains "$work/out" "fc1.weight"
contains "$work/out" "step: 6 -> 12"
expect_exit 1 "$traindx" ckpt diff "$work/a/checkpoints/step-00000006" "$work/a" --json
python3 - "$work/out" <<'EOF' || fail "diff --json is not the expected document"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["identical"] is False and d["exit_code"] == 1
rows = {(r["file"], r["name"]): r for r in d["tensors"]}
w = rows[("model", "fc1.weight")]
assert w["status"] == "different" and w["comparison"]["max_abs"] > 0 and w["comparison"]["differing"] > 0, w
assert d["manifest"]["step"] == {"a": 6, "b": 12}
EOF

# Corrupt input is exit 2 with a message naming the file.
cp -r "$work/a/checkpoints/step-00000012" "$work/corrupt"
python3 - "$work/corrupt/model.safetensors" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[-5] ^= 0xFF
open(p, "wb").write(bytes(b))
EOF
expect_exit 2 "$traindx" ckpt inspect "$work/corrupt"
contains "$work/err" "model.safetensors"
contains "$work/err" "does not match its hash"
expect_exit 2 "$traindx" ckpt diff "$work/a" "$work/corrupt"
head -c 100 "$work/a/checkpoints/step-00000012/optimizer.safetensors" >"$work/truncated.safetensors"
cp -r "$work/a/checkpoints/step-00000012" "$work/truncated"
cp "$work/truncated.safetensors" "$work/truncated/optimizer.safetensors"
expect_exit 2 "$traindx" ckpt inspect "$work/truncated"
contains "$work/err" "optimizer.safetensors"
expect_exit 2 "$traindx" ckpt inspect "$work/nowhere"

# export, then import the export with the same config: a step-0 checkpoint with the same model tensors.
expect_exit 0 "$traindx" ckpt export "$work/a" --out "$work/export/model.safetensors"
[ -s "$work/export/model.safetensors" ] || fail "export wrote nothing"
expect_exit 0 "$traindx" ckpt import "$work/export/model.safetensors" --config "$work/tiny.toml" --out "$work/imported"
contains "$work/out" "imported 4 tensors"
expect_exit 0 "$traindx" ckpt inspect "$work/imported" --json
python3 - "$work/out" <<'EOF' || fail "the imported checkpoint is not as expected"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["step"] == 0 and d["import"]["format"] == "safetensors", d.get("import")
EOF
# The imported checkpoint differs in step, optimizer state and RNG (exit 1), not in the model tensors.
expect_exit 1 "$traindx" ckpt diff "$work/a" "$work/imported" --json
python3 - "$work/out" <<'EOF' || fail "import changed the model tensors"
import json, sys
d = json.load(open(sys.argv[1]))
model = [r for r in d["tensors"] if r["file"] == "model"]
assert model and all(r["status"] == "identical" for r in model), model
EOF
# Importing again into the same directory is refused; a config whose model does not fit is exit 2 with the keys.
expect_exit 2 "$traindx" ckpt import "$work/export/model.safetensors" --config "$work/tiny.toml" --out "$work/imported"
contains "$work/err" "not an empty directory"
expect_exit 2 "$traindx" ckpt import "$work/export/model.safetensors" --config "$work/tiny.toml" --out "$work/x" \
  --set 'model.layers=[{type="flatten"}, {type="linear", out=32, name="hidden"}, {type="relu"}, {type="linear"}]'
contains "$work/err" "missing (in the model, not in the file): hidden.weight [32, 784]"
contains "$work/err" "conv1.weight [4, 1, 3, 3]"
contains "$work/err" "reshaped: fc1.weight: checkpoint [10, 2704] vs model [10, 32]"
expect_exit 2 "$traindx" ckpt import "$work/nothing.pt" --config "$work/tiny.toml"

echo "ckpt_tools: ok"
