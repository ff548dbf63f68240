#!/usr/bin/python3
"""The doctor over the monitor's fault zoo: for every fault config under bench/faults/ the top-ranked finding of
`traindx doctor CONFIG --quick` must name the planted fault (its `# expect:` rule, or one of the rules listed in
`# doctor:` when a config names the doctor's own more specific id), and no healthy config may get a critical finding.
Also times the doctor. Prints a markdown table; exit status 1 when a target is missed.

    /usr/bin/python3 bench/doctor_zoo.py [--traindx build/cli/traindx] [--full] [--only NAME ...]
"""
import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def header(path):
    meta = {}
    with open(path) as f:
        for line in f:
            m = re.match(r"#\s*(fault|expect|doctor):\s*(.*)", line)
            if m:
                meta[m.group(1)] = m.group(2).strip()
            elif not line.startswith("#"):
                break
    return meta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traindx", default=os.path.join(ROOT, "build/cli/traindx"))
    ap.add_argument("--full", action="store_true", help="run the default doctor instead of --quick")
    ap.add_argument("--only", nargs="*")
    args = ap.parse_args()
    rows, misses, seconds = [], [], []
    for path in sorted(glob.glob(os.path.join(ROOT, "bench/faults/*.toml"))):
        name = os.path.splitext(os.path.basename(path))[0]
        if args.only and name not in args.only:
            continue
        meta = header(path)
        healthy = name.startswith("healthy")
        # "# doctor: rule rule (why)": the rules that count, without the explanation.
        expected = set(meta.get("doctor", meta.get("expect", "")).split("(")[0].replace(",", " ").split())
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [args.traindx, "doctor", path, "--out", tmp + "/d", "--json"] + ([] if args.full else ["--quick"])
            t0 = time.time()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            seconds.append(time.time() - t0)
            if proc.returncode not in (0, 1):
                rows.append((name, meta.get("fault", "healthy"), " ".join(sorted(expected)) or "-", "ERROR",
                             proc.stderr.strip().splitlines()[-1][:80] if proc.stderr.strip() else "", ""))
                misses.append(name)
                continue
            report = json.loads(proc.stdout)
        findings = report.get("findings", [])
        top = findings[0] if findings else None
        top_text = f"{top['rule']} ({top['severity']})" if top else "none"
        critical = [f["rule"] for f in findings if f["severity"] == "critical"]
        if healthy:
            ok = not critical
            verdict = "ok" if ok else "CRITICAL: " + ", ".join(critical)
        else:
            ok = top is not None and top["rule"] in expected
            verdict = "yes" if ok else "no"
        if not ok:
            misses.append(name)
        others = ", ".join(f"{f['rule']}:{f['severity'][0]}" for f in findings[1:6])
        rows.append((name, meta.get("fault", "healthy"), " ".join(sorted(expected)) or "-", verdict, top_text, others))
    print(f"| config | fault | expected top rule | top names it | top finding | next findings |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    if seconds:
        seconds.sort()
        print(f"\ndoctor {'default' if args.full else '--quick'} wall time per config: median {seconds[len(seconds)//2]:.1f} s, "
              f"max {seconds[-1]:.1f} s")
    print(f"\nmissed: {', '.join(misses) if misses else 'none'}")
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
