#!/usr/bin/env bash
# A healthy run with the monitor at its defaults: exit code 0, findings.json present and without a critical
# finding.
#   bash monitor_healthy.sh <traindx binary> <source dir>
set -euo pipefail
traindx=$1
src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$src"
"$traindx" train bench/faults/healthy_mlp_adam.toml --out "$out/run" --quiet --set train.max_steps=150 \
  --set data.max_train=5000
/usr/bin/python3 - "$out/run/findings.json" <<'PY'
import json, sys
findings = json.load(open(sys.argv[1]))
critical = [f["rule"] for f in findings if f["severity"] == "critical"]
assert not critical, f"critical findings on a healthy run: {critical}"
PY
