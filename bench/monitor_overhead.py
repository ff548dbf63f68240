#!/usr/bin/python3
"""Step time of the monitor: off, at its defaults, and at full detail every step, side by side in one run.

Trains examples/fashion_cnn.toml (batch 128) in three settings, alternating runs (A B C A B C ...) so that drift in
the machine's load hits all three alike:
    A  monitor.enabled = false
    B  the defaults (per-step checks; per-layer detail every monitor.interval steps)
    C  monitor.every_step = true (per-layer detail at every step)
Two measures per setting and round:
  wall  (compute_seconds + data_seconds) / steps from summary.json of a run of --steps steps: the training loop
        only, without data loading, model building and final evaluations (what issue 3 asks for);
  cpu   CPU seconds per step of the traindx process, from a run of --steps steps minus a run of --short steps
        (which cancels loading, building, the final evaluations and the checkpoint). On a shared machine other
        jobs inflate wall time at random; they barely move a single-threaded process's CPU time.
Reports, per measure, the median step time of each setting and the median over rounds of the per-round ratios B/A
and C/A. Targets (issue 3): B/A <= 1.03, C/A <= 1.5.

    /usr/bin/python3 bench/monitor_overhead.py [--traindx build/cli/traindx] [--rounds 5] [--steps 200]
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = [
    ("off", ["monitor.enabled=false"]),
    ("default", []),
    ("every_step", ["monitor.every_step=true"]),
]
# Small final evaluations and no mid-run evaluation, so the fixed part of a run stays small next to the steps.
COMMON = ["data.max_train=5000", "data.max_test=1000", "train.eval_every=1000000", "train.epochs=1000",
          "run.threads=1"]


def run(traindx, config, steps, sets, out):
    cmd = [traindx, "train", config, "--out", out, "--quiet", "--set", f"train.max_steps={steps}"]
    for s in COMMON + sets:
        cmd += ["--set", s]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    wall = (summary["compute_seconds"] + summary["data_seconds"]) / summary["steps"]
    return wall, cpu


def table(title, times):
    off = times["off"]
    print(f"\n{title}\n")
    print("| monitor | median step time | ratio to off (median of per-round ratios) | per-round ratios |")
    print("|---|---|---|---|")
    ratios = {}
    for name, _ in SETTINGS:
        r = [t / o for t, o in zip(times[name], off)]
        ratios[name] = statistics.median(r)
        print(f"| {name} | {1000 * statistics.median(times[name]):.2f} ms | {ratios[name]:.3f}x | "
              f"{', '.join(f'{x:.3f}' for x in r)} |")
    return ratios


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traindx", default=os.path.join(ROOT, "build", "cli", "traindx"))
    parser.add_argument("--config", default=os.path.join(ROOT, "examples", "fashion_cnn.toml"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--short", type=int, default=20, help="steps of the run whose CPU time is subtracted")
    args = parser.parse_args()
    traindx = os.path.abspath(args.traindx)
    wall = {name: [] for name, _ in SETTINGS}
    cpu = {name: [] for name, _ in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="monitor_overhead_") as tmp:
        for r in range(args.rounds):
            for name, sets in SETTINGS:
                w, c_long = run(traindx, args.config, args.steps, sets, os.path.join(tmp, f"{name}-{r}-long"))
                _, c_short = run(traindx, args.config, args.short, sets, os.path.join(tmp, f"{name}-{r}-short"))
                wall[name].append(w)
                cpu[name].append((c_long - c_short) / (args.steps - args.short))
                sys.stderr.write(f"round {r + 1}/{args.rounds} {name:<10} wall {1000 * w:8.2f} ms/step  "
                                 f"cpu {1000 * cpu[name][-1]:8.2f} ms/step\n")
    print(f"config: {os.path.relpath(args.config, ROOT)} (batch 128), {args.steps} steps x {args.rounds} rounds, "
          f"settings alternated, run.threads = 1")
    wall_ratio = table("Wall time of the training loop (summary.json compute + data seconds per step):", wall)
    cpu_ratio = table(f"CPU time per step (run of {args.steps} steps minus run of {args.short}):", cpu)
    for label, ratios in (("wall", wall_ratio), ("cpu", cpu_ratio)):
        print(f"\n{label}: default {ratios['default']:.3f}x (target <= 1.03: "
              f"{'met' if ratios['default'] <= 1.03 else 'MISSED'}), every step {ratios['every_step']:.3f}x "
              f"(target <= 1.5: {'met' if ratios['every_step'] <= 1.5 else 'MISSED'})")
    ok = cpu_ratio["default"] <= 1.03 and cpu_ratio["every_step"] <= 1.5
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
