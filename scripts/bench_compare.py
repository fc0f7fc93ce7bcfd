#!/usr/bin/env python3
"""Run gaia and the authors'-style PyTorch side by side, alternating, for
several rounds, and print the ratios with their spread (`make bench-compare`).

    scripts/bench_compare.py --gaia bin/gaia --model build/bench/resnet20.pt \
        --arch cifar_resnet20 --batches 1,32,128 --rounds 3 --seconds 1

Both sides use the same TorchScript file's weights, input shape, batch and
thread count (--threads, default all CPUs), and the same LibTorch version when
the Python is the one whose torch gaia links. Per round: gaia speed, then
scripts/bench_reference.py (the order alternates between rounds). Reports, per
workload, the median images/s of each side, the median ratio gaia / reference
and its range over the rounds, and gaia's time over its own
forward+backward(input) floor; then the project's targets. gaia keeps freed
blocks in glibc's heap (torch/module.go); by default the reference gets the
same through GLIBC_TUNABLES, so that the comparison is of the work and not of
the allocator (--ref-malloc default compares against a stock Python).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def run_gaia(a, batch, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [a.gaia, "speed", "--model", a.model, "--batch", str(batch), "--seconds", str(a.seconds), "--format", "json",
           "--device", "cpu"]
    if a.input:
        cmd += ["--input", a.input]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return {r["name"].replace("all detectors", "all"): r["images_per_sec"] for r in json.loads(out)["results"]}


def run_ref(a, batch, threads):
    cmd = [sys.executable, os.path.join(HERE, "bench_reference.py"), "--model", a.model, "--arch", a.arch,
           "--batch", str(batch), "--seconds", str(a.seconds), "--threads", str(threads), "--json"]
    if a.input:
        cmd += ["--input", a.input]
    env = dict(os.environ)
    if a.ref_malloc == "tuned":
        # The allocator setting gaia applies in-process (torch/module.go, tuneMalloc).
        env["GLIBC_TUNABLES"] = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return {r["name"]: r["images_per_sec"] for r in json.loads(out)["results"]}


def spread(v):
    return f"{statistics.median(v):.2f} [{min(v):.2f}-{max(v):.2f}]"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gaia", default="bin/gaia")
    p.add_argument("--model", required=True)
    p.add_argument("--arch", required=True)
    p.add_argument("--input", default="")
    p.add_argument("--batches", default="1,32,128")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--ref-malloc", choices=("tuned", "default"), default="tuned",
                   help="the reference's glibc malloc: tuned as gaia tunes its own (the fair comparison), "
                        "or glibc's default (a stock Python)")
    a = p.parse_args()
    threads = a.threads or os.cpu_count() or 1
    print(f"# {a.model} ({a.arch}{', input ' + a.input if a.input else ''}), {threads} threads, "
          f"{a.rounds} rounds of {a.seconds}s per workload, python {sys.executable}, reference malloc {a.ref_malloc}")
    for batch in [int(b) for b in a.batches.split(",")]:
        go_runs, ref_runs = [], []
        for r in range(a.rounds):
            if r % 2 == 0:
                go_runs.append(run_gaia(a, batch, threads))
                ref_runs.append(run_ref(a, batch, threads))
            else:
                ref_runs.append(run_ref(a, batch, threads))
                go_runs.append(run_gaia(a, batch, threads))
            print(f"  batch {batch}: round {r + 1} done", file=sys.stderr, flush=True)
        print(f"\n## batch {batch}\n")
        print("| workload | gaia images/s | reference images/s | gaia / reference | gaia time / its fwd+bwd(input) |")
        print("| --- | ---: | ---: | ---: | ---: |")
        names = list(go_runs[0])
        for n in names:
            g = [run[n] for run in go_runs]
            ref = [run.get(n) for run in ref_runs]
            ratio = [x / y for x, y in zip(g, ref) if y]
            floor = [run["forward+backward(input)"] / run[n] for run in go_runs]
            print(f"| {n} | {statistics.median(g):.1f} | "
                  f"{statistics.median([v for v in ref if v]) if any(ref) else float('nan'):.1f} | "
                  f"{spread(ratio) if ratio else '-'} | {spread(floor)} |")
        med = lambda runs, n: statistics.median(run[n] for run in runs)  # noqa: E731
        z_vs_ref = med(go_runs, "gaia-z") / med(ref_runs, "gaia-z")
        a_vs_ref = med(go_runs, "gaia-a") / med(ref_runs, "gaia-a")
        z_floor = med(go_runs, "forward+backward(input)") / med(go_runs, "gaia-z")
        all_z = med(go_runs, "gaia-z") / med(go_runs, "all")
        gn = med(go_runs, "gradnorm") / med(ref_runs, "gradnorm")
        print()
        for name, val, ok in [("GAIA-Z >= 1.4x the authors' style", z_vs_ref, z_vs_ref >= 1.4),
                              ("GAIA-A >= 3x the authors' style", a_vs_ref, a_vs_ref >= 3),
                              ("GAIA-Z time <= 1.1x forward+backward(input)", z_floor, z_floor <= 1.1),
                              ("all seven time <= 1.3x GAIA-Z alone", all_z, all_z <= 1.3),
                              ("GradNorm >= 100x the per-sample reference", gn, gn >= 100)]:
            print(f"- {name}: {val:.2f} ({'met' if ok else 'MISSED'})")


if __name__ == "__main__":
    main()
