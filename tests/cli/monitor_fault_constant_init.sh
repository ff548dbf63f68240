#!/usr/bin/env bash
# The monitor stops a run whose weights were initialised to a constant: exit code 1 and a critical
# symmetric_weights finding at step 0 in findings.json.
#   bash monitor_fault_constant_init.sh <traindx binary> <source dir>
set -euo pipefail
traindx=$1
src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$src"
status=0
"$traindx" train bench/faults/constant_init.toml --out "$out/run" --quiet --set train.max_steps=50 || status=$?
if [ "$status" -ne 1 ]; then
  echo "expected exit code 1, got $status" >&2
  exit 1
fi
/usr/bin/python3 - "$out/run/findings.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
hits = [f for f in findings if f["rule"] == "symmetric_weights"]
assert hits, f"no symmetric_weights finding in {[f['rule'] for f in findings]}"
assert hits[0]["severity"] == "critical", hits[0]
assert hits[0]["step"] == 0, hits[0]
assert hits[0]["fixes"], hits[0]
PY
