#!/usr/bin/python3
"""Wall time of `traindx doctor` (the README's main job) at its default budget and with --quick, side by side:
the two alternate (default, quick, default, quick, ...) so that drift in the machine's load hits both alike.
Runs the built-in Fashion-MNIST CNN (no config) or CONFIG; prints the median and the worst wall time of each,
and each check's median seconds from report.json. Targets (issue 5): default <= 90 s, --quick <= 20 s on 2 cores.

    /usr/bin/python3 bench/doctor_time.py [--traindx build/cli/traindx] [--rounds 3] [CONFIG]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGETS = {"default": 90.0, "quick": 20.0}


def run(traindx, config, quick, out):
    cmd = [traindx, "doctor"] + ([config] if config else []) + ["--out", out] + (["--quick"] if quick else [])
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if proc.returncode not in (0, 1):
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    with open(os.path.join(out, "report.json")) as f:
        report = json.load(f)
    checks = {c["id"]: c.get("seconds", 0.0) for c in report.get("checks", [])}
    return wall, checks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traindx", default=os.path.join(ROOT, "build/cli/traindx"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("config", nargs="?", default="")
    args = ap.parse_args()
    walls = {"default": [], "quick": []}
    checks = {"default": {}, "quick": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for mode in ("default", "quick"):
                wall, per_check = run(args.traindx, args.config, mode == "quick", f"{tmp}/{mode}-{r}")
                walls[mode].append(wall)
                for k, v in per_check.items():
                    checks[mode].setdefault(k, []).append(v)
                print(f"round {r + 1}/{args.rounds} {mode:8s} {wall:6.1f} s", file=sys.stderr, flush=True)

    print(f"doctor on {args.config or 'the built-in Fashion-MNIST CNN'}, {args.rounds} rounds, alternating\n")
    print("| doctor | median wall | worst wall | target | per-round |")
    print("|---|---|---|---|---|")
    missed = []
    for mode in ("default", "quick"):
        w = walls[mode]
        worst = max(w)
        if worst > TARGETS[mode]:
            missed.append(mode)
        print(f"| {mode} | {statistics.median(w):.1f} s | {worst:.1f} s | <= {TARGETS[mode]:.0f} s | "
              + ", ".join(f"{x:.1f}" for x in w) + " |")
    ids = list(checks["default"].keys())
    print("\n| check | default (median s) | --quick (median s) |")
    print("|---|---|---|")
    for k in ids:
        q = checks["quick"].get(k)
        print(f"| {k} | {statistics.median(checks['default'][k]):.1f} | "
              + (f"{statistics.median(q):.1f}" if q else "-") + " |")
    print(f"\nmissed: {', '.join(missed) if missed else 'none'}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
