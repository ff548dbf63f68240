#!/bin/bash
# `traindx lr-find` end to end on small data: the JSON result (curve, suggestion, every rule, early stop), the files
# --out writes, the text report with its plot, an lr_too_high finding for a configured rate far above the
# suggestion, and exit 2 on bad usage.
#   bash lr_find.sh <traindx binary> <source dir>
set -euo pipefail
bin="$1"
src="$2"
py=/usr/bin/python3
csv=/usr/lib/python3/dist-packages/sklearn/datasets/data/breast_cancer.csv
if [ ! -e "$csv" ]; then
  echo "SKIP: python3-sklearn's breast_cancer.csv is not installed"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cat > "$tmp/table.toml" <<EOF
[run]
seed = 2
[data]
source = "csv"
path = "$csv"
header = "sklearn"
max_train = 300
[model]
layers = [{ type = "linear", out = 16 }, { type = "relu" }, { type = "linear" }]
[train]
optimizer = "sgd"
momentum = 0.9
lr = 0.01
batch_size = 16
EOF

rc=0
"$bin" lr-find "$tmp/table.toml" --json --out "$tmp/out" > "$tmp/r.json" || rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL: lr-find --json exited $rc"; cat "$tmp/r.json"; exit 1; fi
"$py" - "$tmp/r.json" "$tmp/out" <<'EOF'
import csv, json, math, os, sys
r = json.load(open(sys.argv[1]))
n = len(r["lrs"])
assert 10 <= n <= 100 and len(r["losses"]) == n and len(r["smoothed"]) == n, n
assert abs(r["lrs"][0] - 1e-7) < 1e-19, r["lrs"][0]
ratio = (10 / 1e-7) ** (1 / 99)
assert all(abs(b / a / ratio - 1) < 1e-9 for a, b in zip(r["lrs"], r["lrs"][1:])), "not an exponential sweep"
# sgd with momentum 0.9 cannot take lr 10: the smoothed loss passes 4x its best and the sweep stops.
assert r["stopped_early"] is True and "4x" in r["stop_reason"], r["stop_reason"]
assert r["rule"] == "minimum" and r["suggestion"] == r["alternatives"]["minimum"], r
assert set(r["alternatives"]) == {"centred_min", "valley", "steepest", "minimum"}, r["alternatives"]
assert 1e-5 < r["suggestion"] < r["lrs"][-1], r["suggestion"]
assert r["configured_lr"] == 0.01 and isinstance(r["findings"], list)
# --out: the same result, the curve as CSV, the plot as text.
assert json.load(open(os.path.join(sys.argv[2], "lr_find.json")))["lrs"] == r["lrs"]
rows = list(csv.DictReader(open(os.path.join(sys.argv[2], "lr_find.csv"))))
assert len(rows) == n and list(rows[0]) == ["step", "lr", "loss", "smoothed"], rows[0]
assert math.isclose(float(rows[5]["smoothed"]), r["smoothed"][5], rel_tol=1e-12)
plot = open(os.path.join(sys.argv[2], "lr_find.txt")).read()
assert "M = minimum" in plot and "*" in plot, plot
EOF

# The text report: suggestion, other rules, the plot; a rate 500x the suggestion is reported with the fix.
rc=0
"$bin" lr-find "$tmp/table.toml" --set train.lr=5.0 --steps 60 > "$tmp/r.txt" || rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL: lr-find exited $rc"; cat "$tmp/r.txt"; exit 1; fi
for text in "suggestion: train.lr = " "other rules: centred_min" "smoothed loss vs learning rate" "[warning] lr_too_high" \
            "try: set train.lr = "; do
  grep -qF "$text" "$tmp/r.txt" || { echo "FAIL: '$text' missing from the report"; cat "$tmp/r.txt"; exit 1; }
done

# Bad usage exits 2.
for args in "--rule nope" "--steps 1" "--set train.lr=-1"; do
  rc=0
  # shellcheck disable=SC2086
  "$bin" lr-find "$tmp/table.toml" $args > "$tmp/bad.txt" 2>&1 || rc=$?
  if [ "$rc" -ne 2 ]; then echo "FAIL: lr-find $args exited $rc, expected 2"; cat "$tmp/bad.txt"; exit 1; fi
done

# An image model, when Fashion-MNIST is installed: a short sweep of a small CNN.
if [ -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  rc=0
  "$bin" lr-find "$src/examples/fashion_cnn.toml" --set data.max_train=512 --steps 30 --json > "$tmp/cnn.json" || rc=$?
  if [ "$rc" -ne 0 ]; then echo "FAIL: lr-find on fashion_cnn exited $rc"; cat "$tmp/cnn.json"; exit 1; fi
  "$py" -c 'import json,sys; r=json.load(open(sys.argv[1])); assert 2 <= len(r["lrs"]) <= 30, r["lrs"]' "$tmp/cnn.json"
fi
echo "PASS"
