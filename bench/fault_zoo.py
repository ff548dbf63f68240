#!/usr/bin/python3
"""The monitor's fault zoo: trains every config under bench/faults/ and checks that the monitor names each fault.

Each fault config states in its leading comments
    # fault: what is wrong
    # expect: the rule id that must report it
    # onset: the step at which the fault shows (0 = present from the start), with why
Healthy configs (healthy_*.toml) must finish without a critical finding.

For every config the script runs `traindx train CONFIG --out DIR --quiet` with the monitor at its defaults (so a
critical finding stops the run, as it would for a user), reads DIR/findings.json and DIR/summary.json, and prints
a markdown table: config, fault, expected rule, detected, step detected (onset), other findings. Then the targets
of issue 3: every fault found by its rule; median detection within 50 steps of the onset (by step 100 for faults
present from the start); no critical finding on a healthy config. Exit status 1 when a target is missed.

    /usr/bin/python3 bench/fault_zoo.py [--traindx build/cli/traindx] [--only NAME ...] [--out DIR] [--set k=v]
"""
import argparse
import glob
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read_header(path):
    """The `# key: value` lines at the top of a config (continuation lines start with '#  ')."""
    meta, key = {}, None
    with open(path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            m = re.match(r"#\s*(fault|expect|onset|healthy):\s*(.*)", line)
            if m:
                key = m.group(1)
                meta[key] = m.group(2).strip()
            elif key and line.startswith("#  "):
                meta[key] += " " + line[1:].strip()
    return meta


def run_config(traindx, path, out_root, sets):
    name = os.path.splitext(os.path.basename(path))[0]
    out = os.path.join(out_root, name)
    start = time.time()
    cmd = [traindx, "train", path, "--out", out, "--quiet"]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.time() - start
    findings, summary = [], {}
    if os.path.exists(os.path.join(out, "findings.json")):
        with open(os.path.join(out, "findings.json")) as f:
            findings = json.load(f)
    if os.path.exists(os.path.join(out, "summary.json")):
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
    if proc.returncode not in (0, 1):
        sys.stderr.write(f"{name}: traindx exited {proc.returncode}\n{proc.stderr}\n")
    return {"name": name, "exit": proc.returncode, "seconds": seconds, "findings": findings, "summary": summary}


def other_findings(findings, expected=None):
    # One entry per rule: the most severe of its (rule, layer) findings.
    order = {"critical": 2, "warning": 1, "info": 0}
    worst = {}
    for f in findings:
        if f["rule"] == expected:
            continue
        if f["rule"] not in worst or order[f["severity"]] > order[worst[f["rule"]]]:
            worst[f["rule"]] = f["severity"]
    return ", ".join(f"{r} ({s})" for r, s in sorted(worst.items(), key=lambda kv: (-order[kv[1]], kv[0]))) or "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traindx", default=os.path.join(ROOT, "build", "cli", "traindx"))
    parser.add_argument("--only", nargs="*", help="config names (without .toml) to run")
    parser.add_argument("--out", help="keep run directories here (default: a temporary directory)")
    parser.add_argument("--set", dest="sets", action="append", default=[],
                        help="override a key in every config, e.g. --set run.seed=2 (repeatable)")
    args = parser.parse_args()
    traindx = os.path.abspath(args.traindx)
    if not os.path.exists(traindx):
        sys.exit(f"no traindx binary at {traindx}; build it or pass --traindx")

    configs = sorted(glob.glob(os.path.join(ROOT, "bench", "faults", "*.toml")))
    if args.only:
        configs = [c for c in configs if os.path.splitext(os.path.basename(c))[0] in args.only]
    scratch = None if args.out else tempfile.TemporaryDirectory(prefix="fault_zoo_")
    out_root = args.out or scratch.name
    os.makedirs(out_root, exist_ok=True)

    faults, healthy = [], []
    for path in configs:
        meta = read_header(path)
        result = run_config(traindx, path, out_root, args.sets)
        result.update(meta)
        name = result["name"]
        if "expect" in meta:
            onset = int(re.match(r"\d+", meta.get("onset", "0")).group(0))
            hits = [f for f in result["findings"] if f["rule"] == meta["expect"]]
            result["onset"] = onset
            result["detected_step"] = min(f["step"] for f in hits) if hits else None
            faults.append(result)
            status = f"step {result['detected_step']}" if hits else "MISSED"
        else:
            healthy.append(result)
            crit = [f["rule"] for f in result["findings"] if f["severity"] == "critical"]
            status = f"critical: {', '.join(crit)}" if crit else "ok"
        sys.stderr.write(f"{name:<24} {result['seconds']:6.1f} s  {status}\n")

    print("### Injected faults\n")
    print("| config | fault | expected rule | detected | step detected (onset) | other findings |")
    print("|---|---|---|---|---|---|")
    for r in faults:
        detected = "yes" if r["detected_step"] is not None else "**no**"
        step = f"{r['detected_step']} ({r['onset']})" if r["detected_step"] is not None else f"- ({r['onset']})"
        print(f"| {r['name']} | {r.get('fault', '')} | `{r['expect']}` | {detected} | {step} | "
              f"{other_findings(r['findings'], r['expect'])} |")
    print("\n### Healthy configs\n")
    print("| config | description | steps | final val accuracy | findings |")
    print("|---|---|---|---|---|")
    for r in healthy:
        with open(os.path.join(ROOT, "bench", "faults", r["name"] + ".toml")) as f:
            first = f.readline()
        desc = first.lstrip("#").strip().removeprefix("healthy:").strip()
        val = r["summary"].get("val", {}) or {}
        acc = f"{val['accuracy']:.3f}" if "accuracy" in val else "-"
        print(f"| {r['name']} | {desc} | {r['summary'].get('steps', '-')} | {acc} | {other_findings(r['findings'])} |")

    found = [r for r in faults if r["detected_step"] is not None]
    delays = [r["detected_step"] - r["onset"] for r in found]
    from_start = [r["detected_step"] for r in found if r["onset"] == 0]
    healthy_critical = [r["name"] for r in healthy if any(f["severity"] == "critical" for f in r["findings"])]
    median_delay = statistics.median(delays) if delays else float("nan")
    median_start = statistics.median(from_start) if from_start else float("nan")
    total = sum(r["seconds"] for r in faults + healthy)
    print("\n### Targets\n")
    print(f"- faults found by their rule: {len(found)} / {len(faults)}"
          + (f" (missed: {', '.join(r['name'] for r in faults if r['detected_step'] is None)})"
             if len(found) < len(faults) else ""))
    print(f"- median detection delay after onset: {median_delay:g} steps (target <= 50); "
          f"faults present from the start: median detection at step {median_start:g} (target <= 100), "
          f"latest {max(from_start) if from_start else '-'}")
    print(f"- healthy configs with a critical finding: {len(healthy_critical)} / {len(healthy)}"
          + (f" ({', '.join(healthy_critical)})" if healthy_critical else ""))
    print(f"- wall time: {total:.0f} s for {len(faults) + len(healthy)} runs")
    ok = len(found) == len(faults) and median_delay <= 50 and median_start <= 100 and not healthy_critical
    if scratch:
        scratch.cleanup()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
