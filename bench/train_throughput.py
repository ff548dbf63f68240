#!/usr/bin/python3
"""Training throughput of examples/fashion_cnn.toml: traindx against the same model in PyTorch (same LibTorch 1.13),
run alternately (A B A B ...) so machine drift hits both alike; prints the per-pair ratio and medians.

    /usr/bin/python3 bench/train_throughput.py [--traindx build/cli/traindx] [--rounds 5] [--steps 300]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def run_traindx(binary, steps, batch, threads):
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [binary, "train", os.path.join(ROOT, "examples/fashion_cnn.toml"), "--json", "--out", tmp + "/run",
             "--set", f"train.max_steps={steps}", "--set", f"train.batch_size={batch}",
             "--set", f"run.threads={threads}", "--set", "train.schedule=\"constant\""],
            check=True, capture_output=True, text=True).stdout
    s = json.loads(out)
    return {"samples_per_second": s["samples_per_second"], "data_seconds": s["data_seconds"],
            "compute_seconds": s["compute_seconds"]}


def run_pytorch(steps, batch, threads):
    out = subprocess.run(["/usr/bin/python3", os.path.join(HERE, "pytorch_fashion_cnn.py"), "--steps", str(steps),
                          "--batch-size", str(batch), "--threads", str(threads)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traindx", default=os.path.join(ROOT, "build/cli/traindx"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    ratios, ours, theirs, data_frac = [], [], [], []
    for r in range(args.rounds):
        a = run_traindx(args.traindx, args.steps, args.batch_size, args.threads)
        b = run_pytorch(args.steps, args.batch_size, args.threads)
        ours.append(a["samples_per_second"])
        theirs.append(b["samples_per_second"])
        ratios.append(a["samples_per_second"] / b["samples_per_second"])
        data_frac.append(a["data_seconds"] / (a["data_seconds"] + a["compute_seconds"]))
        print(f"round {r + 1}: traindx {ours[-1]:.0f} samples/s, pytorch {theirs[-1]:.0f} samples/s, "
              f"ratio {ratios[-1]:.3f}, traindx data-loading share {100 * data_frac[-1]:.1f}%", file=sys.stderr)
    print(f"| threads | batch | steps | traindx samples/s (median) | PyTorch samples/s (median) | ratio median "
          f"(min..max) | traindx time in data loading |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.threads} | {args.batch_size} | {args.steps} | {statistics.median(ours):.0f} | "
          f"{statistics.median(theirs):.0f} | {statistics.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f}) | "
          f"{100 * statistics.median(data_frac):.1f}% |")


if __name__ == "__main__":
    main()
