#!/usr/bin/env bash
# A checkpoint whose manifest.json was edited and its manifest_hash recomputed (the hash is no signature): every
# command that reads it exits 2 with a message naming the file and the key, never a JSON type error (exit 3). An
# edit without a recomputed hash is exit 2 too, naming the hash.
#   bash ckpt_tampered_manifest.sh <traindx binary> <source dir> <rehash_manifest binary>
set -euo pipefail
traindx=$1
rehash=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
expect_exit() {  # CODE CMD...
  local want=$1
  shift
  local got=0
  "$@" >"$work/out" 2>"$work/err" || got=$?
  [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want; stderr: $(cat "$work/err")"
}
contains() { grep -qF -- "$2" "$1" || fail "$1 lacks '$2': $(head -c 2000 "$1")"; }

cat >"$work/iris.toml" <<'TOML'
[run]
seed = 1
[data]
source = "csv"
path = "/usr/lib/python3/dist-packages/sklearn/datasets/data/iris.csv"
header = "sklearn"
[model]
layers = [{ type = "linear", out = 8 }, { type = "relu" }, { type = "linear" }]
[train]
max_steps = 3
[checkpoint]
probe_size = 4
TOML
expect_exit 0 "$traindx" train "$work/iris.toml" --out "$work/run" --quiet
ckpt=$(ls -d "$work"/run/checkpoints/step-*)

# edit KEY_PATH VALUE_JSON DIR [rehash]: a copy of the checkpoint with one manifest field replaced.
edit() {
  rm -rf "$3"
  cp -r "$ckpt" "$3"
  /usr/bin/python3 - "$3/manifest.json" "$1" "$2" <<'PY'
import json, sys
path, keys, value = sys.argv[1], sys.argv[2].split("."), json.loads(sys.argv[3])
m = json.load(open(path))
node = m
for k in keys[:-1]:
    node = node[int(k)] if isinstance(node, list) else node[k]
node[int(keys[-1]) if isinstance(node, list) else keys[-1]] = value
json.dump(m, open(path, "w"), indent=2)
PY
  if [ "${4:-}" = rehash ]; then "$rehash" "$3/manifest.json"; fi
}

edit data_info.input_shape '[4, -1]' "$work/shape" rehash
for cmd in "ckpt inspect" "ckpt verify"; do
  # shellcheck disable=SC2086
  expect_exit 2 "$traindx" $cmd "$work/shape"
  contains "$work/err" "manifest.json: data_info.input_shape[1] is -1, not a size"
done
expect_exit 2 "$traindx" train "$work/iris.toml" --out "$work/resumed" --resume "$work/shape"
contains "$work/err" "data_info.input_shape[1]"

edit trainer.schedule.total_steps '"three"' "$work/schedule" rehash
expect_exit 2 "$traindx" ckpt inspect "$work/schedule"
contains "$work/err" "trainer.schedule.total_steps is string, not an integer"

edit step 99 "$work/unhashed"
expect_exit 2 "$traindx" ckpt inspect "$work/unhashed"
contains "$work/err" "manifest_hash does not match the manifest"
echo "ckpt_tampered_manifest: ok"
