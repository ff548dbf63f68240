#!/usr/bin/python3
"""Which learning-rate suggestion rule to trust: traindx's centred-minimum rule against fastai's valley and minimum
rules and Lightning's steepest-slope rule, on the fault zoo (bench/faults/*.toml), the examples and noisy variants.

For every config:
  1. `traindx lr-find CONFIG --json` with run.seed 1, 2, 3 (three different initialisations and batch orders: the
     curve's noise). Each rule's suggestion per seed; its spread over the seeds in decades (max - min of log10 lr)
     says how much the rule depends on the noise.
  2. `traindx train` for a fixed budget (train.max_steps = --budget, monitor off so nothing stops a run early,
     always run.seed 1, so only the suggested rate differs) at each rule's suggestion from each of the three
     sweeps, at the configured train.lr, and at a grid of rates 1e-5 .. 3 in half decades (the grid's best
     validation loss is the reference the rules are measured against).
Every rule is scored over all (config, sweep) pairs by its regret: validation loss at its suggestion minus the best
grid validation loss (a run whose loss is not finite counts as diverged), and by its accuracy gap to the best grid
accuracy. A rule that is robust to noisy curves has small regret for every sweep, not only on average.

Then the lr_too_high / lr_too_low findings of the same sweeps, against the configured rate's own regret: a finding
on a rate within 0.05 of the grid's best is a false alarm, a rate with regret above 0.3 (or diverging) should be
flagged. For comparison, the same count for a finding raised whenever train.lr is more than 10x from the default
rule's suggestion alone.

Prints per-config tables and the summary as markdown (docs/benchmarks.md, "Doctor: learning-rate rules").

    /usr/bin/python3 bench/lr_rules.py [--traindx build/cli/traindx] [--only NAME ...] [--budget 300]
                                       [--out DIR] [--json FILE]

Results are cached in DIR/cache.json by command line and config contents, so a rerun after changing one rule or
one config only runs what changed.
"""
import argparse
import glob
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = ["minimum", "centred_min", "valley", "steepest"]  # lr_rules() order
SEEDS = [1, 2, 3]
GRID = [10 ** (k / 2) for k in range(-10, 2)]  # 1e-5 .. 3.16, half decades

# Variants of the healthy configs with a noisier range-test curve (smaller batches, another optimizer).
VARIANTS = [
    ("healthy_mlp_adam+batch8", "bench/faults/healthy_mlp_adam.toml", ["train.batch_size=8"],
     "batch 8: a noisy curve"),
    ("fashion_mlp+sgd_batch16", "examples/fashion_mlp.toml",
     ["train.optimizer=\"sgd\"", "train.momentum=0.9", "train.batch_size=16", "train.lr=0.05"],
     "sgd with momentum, batch 16"),
    ("breast_cancer+batch4", "examples/breast_cancer.toml", ["train.batch_size=4"], "batch 4 on 569 rows"),
    ("wine+adam_batch8", "examples/wine.toml", ["train.optimizer=\"adam\"", "train.lr=0.001", "train.batch_size=8"],
     "adam, batch 8 on 178 rows"),
]
EXAMPLES = ["fashion_mlp", "fashion_cnn", "breast_cancer", "wine"]


def configs(only):
    out = []
    for path in sorted(glob.glob(os.path.join(ROOT, "bench", "faults", "*.toml"))):
        out.append((os.path.splitext(os.path.basename(path))[0], path, [], header(path)))
    for name in EXAMPLES:
        path = os.path.join(ROOT, "examples", name + ".toml")
        if os.path.exists(path):
            out.append((name, path, [], "example"))
    for name, base, sets, why in VARIANTS:
        out.append((name, os.path.join(ROOT, base), sets, why))
    if only:
        out = [c for c in out if c[0] in only]
    return out


def header(path):
    """The fault or healthy description at the top of a fault-zoo config."""
    with open(path) as f:
        first = f.readline().lstrip("#").strip()
    return first


def common_sets(path, budget):
    sets = ["monitor.enabled=false", "checkpoint.at_end=false", f"train.max_steps={budget}", "train.epochs=1000"]
    with open(path) as f:
        text = f.read()
    # Fashion-MNIST configs without their own cap train on 5000 examples, as the fault zoo does (the budget is 300
    # steps of 64 anyway).
    if "fashion-mnist" in text and "max_train" not in text:
        sets.append("data.max_train=5000")
    return sets


class Runner:
    def __init__(self, traindx, out, budget):
        self.traindx, self.out, self.budget = traindx, out, budget
        self.cache_path = os.path.join(out, "cache.json")
        self.cache = json.load(open(self.cache_path)) if os.path.exists(self.cache_path) else {}
        self.seconds = 0.0

    def _run(self, args):
        # The config's contents are part of the key: the fault zoo is edited while results accumulate.
        with open(args[1], "rb") as f:
            key = hashlib.sha1(f.read()).hexdigest()[:12] + " " + " ".join(args)
        if key in self.cache:
            return self.cache[key]
        shutil.rmtree(os.path.join(self.out, "run"), ignore_errors=True)  # train refuses a non-empty --out
        start = time.time()
        proc = subprocess.run([self.traindx] + args, cwd=ROOT, capture_output=True, text=True)
        self.seconds += time.time() - start
        try:
            result = json.loads(proc.stdout)
        except json.JSONDecodeError:
            result = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
        result["exit"] = proc.returncode
        if proc.returncode >= 2:  # bad input or a crash: report it, never cache it
            sys.stderr.write(f"traindx {key}\n  exited {proc.returncode}: {result.get('error', '')}\n")
            return result
        self.cache[key] = result
        with open(self.cache_path + ".tmp", "w") as f:
            json.dump(self.cache, f)
        os.replace(self.cache_path + ".tmp", self.cache_path)
        return result

    def lr_find(self, path, sets, seed):
        args = ["lr-find", path, "--json"]
        for s in common_sets(path, self.budget) + sets + [f"run.seed={seed}"]:
            args += ["--set", s]
        return self._run(args)

    def train(self, path, sets, lr):
        args = ["train", path, "--json", "--quiet", "--out", os.path.join(self.out, "run")]
        extra = [f"train.lr={lr:.6g}"] if lr is not None else []
        for s in common_sets(path, self.budget) + sets + ["run.seed=1"] + extra:
            args += ["--set", s]
        r = self._run(args)
        val = r.get("val") or {}
        loss = val.get("loss")
        return {"loss": loss if isinstance(loss, (int, float)) and math.isfinite(loss) else None,
                "accuracy": val.get("accuracy"), "status": r.get("status", r.get("error"))}


def fmt_lr(lr):
    return "-" if lr is None else f"{lr:.2g}"


def fmt_loss(x):
    return "diverged" if x is None else f"{x:.3f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traindx", default=os.path.join(ROOT, "build", "cli", "traindx"))
    parser.add_argument("--only", nargs="*", help="config names to run")
    parser.add_argument("--budget", type=int, default=300, help="training steps per run")
    parser.add_argument("--out", help="cache and scratch directory (default: a temporary directory)")
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    traindx = os.path.abspath(args.traindx)
    if not os.path.exists(traindx):
        sys.exit(f"no traindx binary at {traindx}; build it or pass --traindx")
    out = args.out or tempfile.mkdtemp(prefix="lr_rules_")
    os.makedirs(out, exist_ok=True)
    runner = Runner(traindx, out, args.budget)

    rows = []
    for name, path, sets, why in configs(args.only):
        finds = [runner.lr_find(path, sets, seed) for seed in SEEDS]
        suggestions = {rule: [f.get("alternatives", {}).get(rule) for f in finds] for rule in RULES}
        configured = finds[0].get("configured_lr")
        grid = {lr: runner.train(path, sets, lr) for lr in GRID}
        trained = {rule: [runner.train(path, sets, lr) if lr else None for lr in suggestions[rule]] for rule in RULES}
        trained["configured"] = [runner.train(path, sets, None)] * len(SEEDS)
        finite = [g for g in grid.values() if g["loss"] is not None]
        best_loss = min((g["loss"] for g in finite), default=None)
        best_acc = max((g["accuracy"] for g in finite if g["accuracy"] is not None), default=None)
        best_lr = min(grid, key=lambda lr: grid[lr]["loss"] if grid[lr]["loss"] is not None else math.inf)
        row = {"name": name, "why": why, "curve": finds[0].get("losses", [])[:30], "configured": configured,
               "best_loss": best_loss, "best_acc": best_acc,
               "best_lr": best_lr if best_loss is not None else None, "suggestions": suggestions, "trained": trained,
               "grid": {f"{lr:.3g}": g for lr, g in grid.items()},
               "stopped_early": [f.get("stopped_early") for f in finds],
               "lr_findings": [sorted({x["rule"] for x in f.get("findings", [])} & {"lr_too_high", "lr_too_low"})
                               for f in finds]}
        for rule in RULES:
            lrs = [s for s in suggestions[rule] if s]
            row.setdefault("spread", {})[rule] = (max(map(math.log10, lrs)) - min(map(math.log10, lrs))
                                                  if len(lrs) == len(SEEDS) else None)
        rows.append(row)
        outcome = ", ".join(
            f"{r} {fmt_lr(suggestions[r][0])} -> {fmt_loss(trained[r][0]['loss']) if trained[r][0] else '-'}"
            for r in RULES)
        sys.stderr.write(f"{name:<26} best grid lr {fmt_lr(row['best_lr'])} loss {fmt_loss(best_loss)}; {outcome}  "
                         f"({runner.seconds:.0f} s)\n")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print_tables(rows, args.budget)


def print_tables(rows, budget):
    print(f"Validation loss after {budget} steps (training with run.seed 1) at the configured train.lr, at the best "
          "rate of the half-decade grid 1e-5 .. 3, and at each rule's suggestion from the seed-1 sweep; in brackets "
          "the rule's mean regret over the three sweeps (run.seed 1, 2, 3).\n")
    print("| config | configured lr → val loss | best grid lr → val loss | " +
          " | ".join(f"{r} lr → val loss" for r in RULES) + " |")
    print("|---|---|---|" + "---|" * len(RULES))
    for r in rows:
        cells = [f"{fmt_lr(r['configured'])} → {fmt_loss(r['trained']['configured'][0]['loss'])}",
                 f"{fmt_lr(r['best_lr'])} → {fmt_loss(r['best_loss'])}"]
        for rule in RULES:
            t = r["trained"][rule][0]
            if t is None:
                cells.append("no suggestion")
                continue
            regrets = [x["loss"] - r["best_loss"] if x and x["loss"] is not None and r["best_loss"] is not None
                       else None for x in r["trained"][rule]]
            mean = (f" ({statistics.mean(regrets):+.3f})" if all(x is not None for x in regrets)
                    else (" (diverged)" if r["best_loss"] is not None else ""))
            cells.append(f"{fmt_lr(r['suggestions'][rule][0])} → {fmt_loss(t['loss'])}{mean}")
        print(f"| {r['name']} | " + " | ".join(cells) + " |")

    print("\nSummary over every (config, sweep) pair where the grid trains at all, identical sweeps counted once "
          "(regret: validation loss at the suggestion minus "
          "the grid's best; accuracy gap: the grid's best accuracy minus the accuracy at the suggestion; spread: "
          "max - min of log10(suggestion) over run.seed 1, 2, 3).\n")
    print("| rule | median regret | mean regret | within 0.05 of best | accuracy gap (median / worst) | "
          "diverged or no suggestion | median spread (decades) | worst spread |")
    # Every (config, sweep) pair is one trial; "configured" repeats its one run for each sweep.
    print("|---|---|---|---|---|---|---|---|")
    # Configs whose seed-1 sweep is identical (lr_too_high, lr_too_low and loss_oscillating share model, data and
    # optimizer; only train.lr differs, which the sweep replaces) count once.
    scored, seen = [], set()
    for r in rows:
        key = json.dumps(r["curve"])
        if r["best_loss"] is not None and key not in seen:
            seen.add(key)
            scored.append(r)
    for rule in RULES + ["configured"]:
        regrets, gaps, failed, spreads = [], [], 0, []
        for r in scored:
            if rule != "configured" and r["spread"][rule] is not None:
                spreads.append(r["spread"][rule])
            for t in r["trained"][rule]:
                if t is None or t["loss"] is None:
                    failed += 1
                    continue
                regrets.append(t["loss"] - r["best_loss"])
                if t["accuracy"] is not None and r["best_acc"] is not None:
                    gaps.append(r["best_acc"] - t["accuracy"])
        med = statistics.median(regrets) if regrets else float("nan")
        mean = statistics.mean(regrets) if regrets else float("nan")
        close = sum(1 for x in regrets if x <= 0.05)
        gap = f"{statistics.median(gaps):.3f} / {max(gaps):.3f}" if gaps else "-"
        spread = f"{statistics.median(spreads):.2f}" if spreads else "-"
        worst = f"{max(spreads):.2f}" if spreads else "-"
        trials = len(scored) * len(SEEDS)
        print(f"| {rule} | {med:.3f} | {mean:.3f} | {close} of {trials} | {gap} | {failed} | {spread} | {worst} |")

    print("\nlr_too_high / lr_too_low findings per sweep (every config: those sharing a sweep differ in train.lr), "
          "against the configured "
          "rate's regret: within 0.05 of the grid's best = well chosen, above 0.3 or diverging = badly chosen.\n")
    print("| finding raised when train.lr is | false alarms on well-chosen rates | badly chosen rates flagged | "
          "badly chosen, not flagged |")
    print("|---|---|---|---|")
    for label in ("> 10x outside the range of minimum, centred_min, valley (traindx)",
                  f"> 10x from the {RULES[0]} rule's suggestion alone"):
        alarms, good, bad, missed = 0, 0, 0, set()
        flagged = 0
        for r in (r for r in rows if r["best_loss"] is not None):
            regret = (r["trained"]["configured"][0]["loss"] - r["best_loss"]
                      if r["trained"]["configured"][0]["loss"] is not None else math.inf)
            for s, found in enumerate(r["lr_findings"]):
                sug = r["suggestions"][RULES[0]][s]
                if label.endswith("(traindx)"):
                    alarm = bool(found)
                else:
                    alarm = bool(sug) and abs(math.log10(r["configured"] / sug)) > 1
                if regret <= 0.05:
                    good += 1
                    alarms += alarm
                elif regret > 0.3:
                    bad += 1
                    flagged += alarm
                    if not alarm:
                        missed.add(r["name"])
        print(f"| {label} | {alarms} of {good} | {flagged} of {bad} | {', '.join(sorted(missed)) or '-'} |")


if __name__ == "__main__":
    main()
