#!/usr/bin/env bash
# Activations overflow to inf partway through the first forward pass: exit code 1 and a critical nan_or_inf
# finding that names the first layer whose output is non-finite (a linear layer after at least one finite one).
#   bash monitor_fault_nan_forward.sh <traindx binary> <source dir>
set -euo pipefail
traindx=$1
src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$src"
status=0
"$traindx" train bench/faults/nan_forward.toml --out "$out/run" --quiet --set train.max_steps=20 || status=$?
if [ "$status" -ne 1 ]; then
  echo "expected exit code 1, got $status" >&2
  exit 1
fi
/usr/bin/python3 - "$out/run/findings.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
hits = [f for f in findings if f["rule"] == "nan_or_inf"]
assert hits, f"no nan_or_inf finding in {[f['rule'] for f in findings]}"
f = hits[0]
assert f["severity"] == "critical" and f["step"] == 0, f
assert f["evidence"]["phase"] == "forward", f
assert f["layer"].startswith("fc") and f["layer"] != "fc1", f
assert f["evidence"]["previous_layer"].startswith("fc"), f
PY
