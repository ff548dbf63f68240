#!/usr/bin/env bash
# The doctor end to end (--quick): a healthy table gets exit 0, every check run and a report; planted faults get
# exit 1 with the planted cause ranked first (a learning rate far too high, where the failed overfit of one batch
# must run its whole diagnosis ladder; constant init, where the overfit failure escalates the symmetric weights;
# weights that overflow to inf, where the determinism audit must compare NaN runs bitwise; one layer initialised far
# below the others; the width and depth ladder); bad input gets exit 2.
#   bash doctor.sh <traindx binary> <source dir>
set -euo pipefail
traindx=$1
src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$src"

expect_status() {  # expected, then the command
  local want=$1
  shift
  local status=0
  "$@" > "$out/stdout" 2> "$out/stderr" || status=$?
  if [ "$status" -ne "$want" ]; then
    echo "expected exit code $want, got $status from: $*" >&2
    tail -20 "$out/stderr" >&2
    exit 1
  fi
}

expect_status 0 "$traindx" doctor bench/faults/healthy_tabular.toml --quick --out "$out/healthy" --json
/usr/bin/python3 - "$out/healthy" "$out/stdout" <<'PY'
import json, os, sys
report = json.load(open(sys.argv[1] + "/report.json"))
assert json.load(open(sys.argv[2])) == report, "--json prints report.json"
ids = [c["id"] for c in report["checks"]]
for want in ["data", "init", "gradient_check", "overfit_one_batch", "lr_range_test", "determinism", "training"]:
    assert want in ids, (want, ids)
assert all(c["status"] != "skipped" for c in report["checks"]), report["checks"]
assert not [f for f in report["findings"] if f["severity"] == "critical"], report["findings"]
assert os.path.getsize(sys.argv[1] + "/report.html") > 100_000, "report.html embeds its chart library"
PY

for fault in lr_too_high constant_init nan_forward; do
  expect_status 1 "$traindx" doctor "bench/faults/$fault.toml" --quick --out "$out/$fault" --json
  /usr/bin/python3 - "$out/$fault" "$fault" <<'PY'
import json, sys
report = json.load(open(sys.argv[1] + "/report.json"))
fault = sys.argv[2]
top = report["findings"][0]
want = {"lr_too_high": {"lr_too_high"}, "constant_init": {"symmetric_weights"}, "nan_forward": {"nan_or_inf"}}[fault]
assert top["rule"] in want and top["severity"] == "critical", (fault, top["rule"], top["severity"])
for key in ["message", "evidence", "causes", "fixes"]:
    assert top[key], (fault, key, top)
overfit = next(c for c in report["checks"] if c["id"] == "overfit_one_batch")
if fault == "lr_too_high":
    assert overfit["details"]["diagnosis"] == "learning rate too high", overfit["details"].get("diagnosis")
    assert len(overfit["details"]["attempts"]) >= 2, overfit["details"]["attempts"]
if fault == "constant_init":
    assert top["evidence"].get("escalated_by") == "overfit_one_batch" or top["severity"] == "critical", top
if fault == "nan_forward":
    det = next(c for c in report["checks"] if c["id"] == "determinism")
    assert det["status"] != "skipped" and det["details"]["same_process_bitwise"] is True, det
PY
done

# One layer initialised 500x below the others: the doctor names that layer's scale first, links the dead ReLUs it
# feeds to it, and reports the step-0 dead_relu observation once although two checks make it.
expect_status 0 "$traindx" doctor bench/faults/layer_update_ratio.toml --quick --out "$out/layer_scale" --json
/usr/bin/python3 - "$out/layer_scale" <<'PY'
import json, sys
report = json.load(open(sys.argv[1] + "/report.json"))
top = report["findings"][0]
assert (top["rule"], top["layer"]) == ("layer_init_scale", "fc2"), (top["rule"], top["layer"])
assert 100 < 1 / top["evidence"]["ratio"] < 2000, top["evidence"]
dead = [f for f in report["findings"] if f["rule"] == "dead_relu" and f["layer"] == "relu2"]
assert len(dead) == 1, [(f["rule"], f["layer"], f["step"]) for f in dead]
assert "fc2" in dead[0]["causes"][0] and "fc2" in dead[0]["fixes"][0], dead[0]
for f in report["findings"]:
    if f["rule"] == "lr_range_no_descent":  # the labels are fine: the sweep must not blame them
        assert "labels" not in f["message"] and "fc2" in f["fixes"][0], f
init = next(c for c in report["checks"] if c["id"] == "init")
assert [g["layer"] for g in init["details"]["layer_gains"]] == ["fc1", "fc2", "fc3"], init["details"]["layer_gains"]
PY

# --ladder: the width ladder (x0.25 .. x2) and the depth ladder (the last hidden block removed, then repeated),
# each variant trained on the same budget, in report.json and on the page.
expect_status 0 "$traindx" doctor bench/faults/healthy_tabular.toml --quick --ladder --out "$out/ladder" --json
/usr/bin/python3 - "$out/ladder" <<'PY'
import json, sys
report = json.load(open(sys.argv[1] + "/report.json"))
ladder = next(c for c in report["checks"] if c["id"] == "ladder")
params = {v["name"]: v["parameters"] for v in ladder["details"]["variants"]}
assert list(params) == ["width x0.25", "width x0.5", "width x1", "width x2", "depth -1", "depth +1"], params
widths = [params[n] for n in ["width x0.25", "width x0.5", "width x1", "width x2"]]
assert widths == sorted(set(widths)), widths
# 30 features -> 32 -> 2: without the hidden block 30*2+2 parameters, with it repeated 32*32+32 more.
assert params["depth -1"] == 62 and params["depth +1"] == params["width x1"] + 32 * 32 + 32, params
assert ladder["details"]["best_width"] and ladder["details"]["best_depth"], ladder["details"]
assert all(0 <= v["val_accuracy"] <= 1 for v in ladder["details"]["variants"])
assert 'id="ladder"' in open(sys.argv[1] + "/report.html").read()
PY

expect_status 2 "$traindx" doctor bench/faults/healthy_tabular.toml --quick --out "$out/bad" --set train.lr=-1
grep -q "train.lr" "$out/stderr" || { echo "bad-input message does not name train.lr" >&2; exit 1; }
