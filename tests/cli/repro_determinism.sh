#!/bin/bash
# `traindx determinism` end to end: the same steps twice in one process, twice in fresh processes and with 1 vs 2
# threads. Same-settings runs must be bitwise equal; the thread pair is reported either way, and located when it
# differs. Usage: repro_determinism.sh TRAINDX_BINARY SOURCE_DIR
set -euo pipefail
bin="$1"
py=/usr/bin/python3
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/fast.toml" <<'EOF'
[run]
name = "determinism-test"
seed = 5
deterministic = true
[data]
source = "fashion-mnist"
max_train = 400
max_test = 100
val_fraction = 0.1
[model]
layers = [
  { type = "conv2d", out = 4, kernel = 3, padding = 1 },
  { type = "batchnorm" },
  { type = "relu" },
  { type = "maxpool2d", kernel = 2 },
  { type = "flatten" },
  { type = "linear", out = 16 },
  { type = "relu" },
  { type = "dropout", p = 0.3 },
  { type = "linear" },
]
[train]
optimizer = "adam"
lr = 0.003
batch_size = 32
EOF

rc=0
"$bin" determinism "$tmp/fast.toml" --steps 5 --json > "$tmp/det.json" || rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL: determinism exited $rc"; cat "$tmp/det.json"; exit 1; fi
"$py" - "$tmp/det.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["check"] == "determinism" and r["steps"] == 5 and r["reproducible"] is True, r
pairs = {p["pair"]: p for p in r["pairs"]}
assert list(pairs) == ["same_process", "fresh_process", "threads"], list(pairs)
for name in ("same_process", "fresh_process"):
    p = pairs[name]
    assert p["ran"] and p["equal"] and p["loss_equal"] and p["weights_equal"], p["message"]
    assert p["first_step"] is None and p["layers"] == [], p
t = pairs["threads"]
assert t["ran"] and t["description"].startswith("run.threads 1 vs 2"), t
if not t["equal"]:
    # A difference is located: the step whose computation parted, and where in it.
    assert isinstance(t["first_step"], int) and t["pass"] in ("forward", "loss", "backward", "optimizer", "not_reproduced"), t
    if t["pass"] in ("forward", "backward"):
        assert t["first_layer"] and t["op"], t
# run.deterministic is already on, so there is nothing to re-run with it.
assert r["deterministic"] is True and r["deterministic_mode"] is None
EOF

# Human-readable output lists every pair and ends with the verdict.
rc=0
"$bin" determinism "$tmp/fast.toml" --steps 3 --set run.threads=2 > "$tmp/det.txt" || rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL: determinism (text) exited $rc"; cat "$tmp/det.txt"; exit 1; fi
for word in same_process fresh_process threads reproducible; do
  grep -q "$word" "$tmp/det.txt" || { echo "FAIL: '$word' missing from the report"; cat "$tmp/det.txt"; exit 1; }
done
echo "PASS"
