#!/bin/bash
# `traindx ckpt resume-check` end to end, with the resumed run in a fresh process: bit-exact on a small model that has
# BatchNorm, dropout, shuffling, SGD momentum and a schedule, interrupted mid-epoch; and resume faults planted with
# the hidden `--resume-skip` are named. Usage: repro_resume_check.sh TRAINDX_BINARY SOURCE_DIR
set -euo pipefail
bin="$1"
py=/usr/bin/python3
if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 540 training images: 17 batches of 32 per epoch, so --at 6 is mid-epoch and --steps 14 crosses an epoch end
# (a new shuffle and a validation pass after the resume).
cat > "$tmp/fast.toml" <<'EOF'
[run]
name = "resume-check-test"
seed = 3
deterministic = true
[data]
source = "fashion-mnist"
max_train = 600
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
optimizer = "sgd"
momentum = 0.9
lr = 0.05
batch_size = 32
epochs = 3
schedule = "step"
step_size = 5
gamma = 0.5
EOF

# 1. Bit-exact: exit 0 and the JSON says so, component by component. (The monitor is off here; case 2 covers it.)
rc=0
"$bin" ckpt resume-check "$tmp/fast.toml" --at 6 --steps 14 --json --out "$tmp/exact" --set monitor.enabled=false \
  > "$tmp/exact.json" || rc=$?
if [ "$rc" -ne 0 ]; then echo "FAIL: bit-exact resume-check exited $rc"; cat "$tmp/exact.json"; exit 1; fi
"$py" - "$tmp/exact.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["check"] == "resume" and r["verdict"] == "bit_exact" and r["exact"] is True, r["diagnosis"]
assert r["training_exact"] is True
assert r["fresh_process"] is True and r["deterministic"] is True and r["at"] == 6 and r["steps"] == 14
names = [c["component"] for c in r["final_state"]]
assert names == ["model", "optimizer", "rng", "batcher", "schedule", "early_stopping", "monitor"], names
assert all(c["equal"] for c in r["final_state"]), r["final_state"]
assert r["series"]["first_difference"] is None and "loss" in r["series"]["compared"], r["series"]
assert "val_loss" in r["series"]["compared"], r["series"]["compared"]
assert r["culprits"] == [] and r["planted"] == [] and r["round_trip"] == []
assert r["work_dir"].endswith("/exact"), r["work_dir"]
EOF
# The three runs are kept under --out, each with its checkpoints.
for run in uninterrupted interrupted resumed; do
  [ -d "$tmp/exact/$run/checkpoints" ] || { echo "FAIL: $tmp/exact/$run/checkpoints missing"; exit 1; }
done

# 2. With the monitor on, training stays bit-exact; if the monitor's own state does not resume exactly, it is the
#    only component blamed, as state the checkpoint does not hold.
rc=0
"$bin" ckpt resume-check "$tmp/fast.toml" --at 6 --steps 14 --json > "$tmp/monitor.json" || rc=$?
if [ "$rc" -gt 1 ]; then echo "FAIL: resume-check with the monitor exited $rc"; cat "$tmp/monitor.json"; exit 1; fi
"$py" - "$tmp/monitor.json" "$rc" <<'EOF'
import json, sys
r, rc = json.load(open(sys.argv[1])), int(sys.argv[2])
assert r["training_exact"] is True, r["diagnosis"]
assert (rc == 0) == r["exact"], (rc, r["exact"])
if not r["exact"]:
    assert [(c["component"], c["cause"]) for c in r["culprits"]] == [("monitor", "not_saved")], r["culprits"]
EOF

# 3. A planted fault is named (JSON), and the exit code is 1. (run_repro_test plants optimizer and batcher too.)
component=rng
rc=0
"$bin" ckpt resume-check "$tmp/fast.toml" --at 6 --steps 4 --json --resume-skip "$component" > "$tmp/$component.json" || rc=$?
if [ "$rc" -ne 1 ]; then echo "FAIL: resume-check with --resume-skip $component exited $rc"; cat "$tmp/$component.json"; exit 1; fi
"$py" - "$tmp/$component.json" "$component" <<'EOF'
import json, sys
r, planted = json.load(open(sys.argv[1])), sys.argv[2]
assert r["exact"] is False and r["verdict"] == "not_exact"
assert r["planted"] == [planted], r["planted"]
assert [(c["component"], c["cause"]) for c in r["culprits"]] == [(planted, "not_restored")], r["diagnosis"]
assert all(c["equal"] for c in r["before_save"]), r["before_save"]
diff = r["series"]["first_difference"]
# Without the RNG the dropout masks of step 6 differ; without momentum only the update of step 6 does.
assert diff["series"] == "loss" and diff["step"] == (6 if planted == "rng" else 7), diff
assert ("does not restore " + planted) in r["diagnosis"], r["diagnosis"]
EOF

# 4. The human-readable report names the component too.
rc=0
"$bin" ckpt resume-check "$tmp/fast.toml" --at 6 --steps 4 --resume-skip batcher > "$tmp/batcher.txt" || rc=$?
if [ "$rc" -ne 1 ]; then echo "FAIL: --resume-skip batcher exited $rc"; cat "$tmp/batcher.txt"; exit 1; fi
grep -q "resuming does not restore batcher" "$tmp/batcher.txt" || { echo "FAIL: batcher not named"; cat "$tmp/batcher.txt"; exit 1; }
grep -q "^  batcher *DIFFERS" "$tmp/batcher.txt" || { echo "FAIL: no batcher row"; cat "$tmp/batcher.txt"; exit 1; }

# 5. Bad usage is exit 2 with one line.
rc=0
"$bin" ckpt resume-check "$tmp/fast.toml" --at 40 --steps 20 > /dev/null 2> "$tmp/err.txt" || rc=$?
if [ "$rc" -ne 2 ] || ! grep -q "train.epochs" "$tmp/err.txt"; then
  echo "FAIL: a config too short for --at + --steps should exit 2 naming train.epochs (exit $rc)"; cat "$tmp/err.txt"; exit 1
fi
echo "PASS"
