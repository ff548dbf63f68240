#!/usr/bin/env bash
# The monitor stops a run whose learning rate is far too high (sgd lr 10): exit code 1, a critical lr_too_high
# finding at step 0 whose fix names the configured rate, and the run recorded as stopped.
#   bash monitor_fault_lr_too_high.sh <traindx binary> <source dir>
set -euo pipefail
traindx=$1
src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$src"
status=0
"$traindx" train bench/faults/lr_too_high.toml --out "$out/run" --quiet --set train.max_steps=50 || status=$?
if [ "$status" -ne 1 ]; then
  echo "expected exit code 1, got $status" >&2
  exit 1
fi
/usr/bin/python3 - "$out/run" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1] + "/findings.json"))
summary = json.load(open(sys.argv[1] + "/summary.json"))
hits = [f for f in findings if f["rule"] == "lr_too_high"]
assert hits, f"no lr_too_high finding in {[f['rule'] for f in findings]}"
assert hits[0]["severity"] == "critical", hits[0]
assert hits[0]["step"] <= 1, hits[0]
assert "train.lr from 10" in hits[0]["fixes"][0], hits[0]["fixes"]
assert summary["status"] == "stopped", summary["status"]
assert summary["steps"] < 50, summary["steps"]
PY
