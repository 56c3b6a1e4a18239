"""Training speed against the reference loop (../shared/bench/baseline.py), on the same machine.

For each configuration (features/hidden x instances, importance decay 1, the baseline's density grid
p = 20**-linspace(0, 1, instances), batch 1024) this runs the baseline as a subprocess and
`superposition.train` (relu_output) for the same number of steps, interleaved, on each path
(`--paths`: `native`, the C kernel of `superposition.native` that `compile="auto"` takes for the
paper's models; and compiled torch with the hand-written `fused` gradients or the `autograd` path
that any other model takes, both sharing our sampler and the compiled update), and prints a markdown
table: steps/s of each side, the ratio, each side's mean final loss (8192 fresh samples per instance
on both sides) and our cold compile time.

    python benchmarks/bench_train.py                       # all three configs, 1000 steps
    python benchmarks/bench_train.py --configs 5/2x10 --steps 3000 --repeats 5 --json out.json

Our steps/s is the median over --repeats runs of `Metrics.steps_per_second` (which excludes the
first, compiling step); the compile (or the native library's build) is warmed by one short run
first, whose wall time is reported as the cold compile time. Unless --keep-cache, Inductor compiles
into a fresh temporary cache, so that time is truly cold. The baseline's steps/s is its own median
over timed chunks (median over --baseline-repeats runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "shared/bench/baseline.py"
CONFIGS = {"5/2x10": (5, 2, 10), "20/5x10": (20, 5, 10), "200/20x20": (200, 20, 20)}
PATHS = ("native", "fused", "autograd")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000, help="training steps per run (both sides)")
    ap.add_argument("--repeats", type=int, default=3, help="our timed runs per config (median reported)")
    ap.add_argument("--baseline-repeats", type=int, default=1, help="baseline runs per config (median reported)")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="path to baseline.py")
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both sides; 0 keeps torch's default")
    ap.add_argument("--keep-cache", action="store_true", help="use the usual Inductor cache (compile time not cold)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    ap.add_argument("--paths", default="native,fused,autograd", help="paths to time: native, fused, autograd")
    args = ap.parse_args(argv)
    args.paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not args.paths or any(p not in PATHS for p in args.paths):
        ap.error(f"--paths {args.paths}: choose from {', '.join(PATHS)}")
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in args.configs if c not in CONFIGS]
    if unknown:
        ap.error(f"unknown config(s) {unknown}; choose from {', '.join(CONFIGS)}")
    if not args.baseline.is_file():
        ap.error(f"baseline not found at {args.baseline}; pass --baseline PATH")
    if min(args.steps, args.repeats, args.baseline_repeats) < 1:
        ap.error("--steps, --repeats and --baseline-repeats must be >= 1")
    return args


def run_baseline(path: Path, features: int, hidden: int, instances: int, steps: int, threads: int) -> dict:
    cmd = [sys.executable, str(path), "--features", str(features), "--hidden", str(hidden),
           "--instances", str(instances), "--steps", str(steps), "--batch", "1024", "--importance-decay", "1"]
    if threads:
        cmd += ["--threads", str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_config(name: str, path: str, args: argparse.Namespace) -> dict:
    import torch

    import superposition as sp

    features, hidden, instances = CONFIGS[name]
    grid = tuple((20.0 ** -torch.linspace(0, 1, instances)).tolist())
    # The baseline's xavier_normal_ on the whole [inst, feat, hidden] tensor has fan_in = feat * hidden
    # and fan_out = inst * hidden, so its scale shrinks with the instance count. Timing and losses are
    # compared at that same init; our default (xavier per instance) is reported beside it.
    baseline_std = (2.0 / (features * hidden + instances * hidden)) ** 0.5
    model = sp.ModelConfig("relu_output", features, hidden, init_std=baseline_std)
    data = sp.DataConfig(feature_probability=grid)
    mode, gradients = ("native", "fused") if path == "native" else (True, path)
    train_cfg = sp.TrainConfig(steps=args.steps, batch_size=1024, gradients=gradients)
    config = sp.RunConfig(model=model, data=data, train=train_cfg)
    warm = sp.RunConfig(model=model, data=data, train=sp.TrainConfig(steps=3, batch_size=1024, gradients=gradients))

    t0 = time.perf_counter()
    sp.train(warm, compile=mode, progress=False)
    compile_s = time.perf_counter() - t0

    ours, base = [], []
    for i in range(max(args.repeats, args.baseline_repeats)):  # interleaved, so both see the same load
        if i < args.baseline_repeats:
            base.append(run_baseline(args.baseline, features, hidden, instances, args.steps, args.threads))
        if i < args.repeats:
            run = sp.train(config, compile=mode, progress=False)
            assert run.provenance["step"] == ("native" if path == "native" else "compiled"), "the step fell back"
            ours.append(run.metrics)
    default_init = sp.RunConfig(model=sp.ModelConfig("relu_output", features, hidden), data=data, train=config.train)
    ours_xavier = sp.train(default_init, compile=mode, progress=False).metrics
    ours_rate = statistics.median(m.steps_per_second for m in ours)
    base_rate = statistics.median(b["steps_per_s"] for b in base)
    return {
        "config": name, "path": path, "features": features, "hidden": hidden, "instances": instances,
        "steps": args.steps, "threads": torch.get_num_threads(), "load": os.getloadavg()[0],
        "baseline_steps_per_s": base_rate,
        "ours_steps_per_s": ours_rate,
        "ours_steps_per_s_all": [m.steps_per_second for m in ours],
        "speedup": ours_rate / base_rate,
        "baseline_final_loss": statistics.mean(statistics.mean(b["final_loss"]) for b in base),
        "ours_final_loss": statistics.mean(statistics.mean(m.final_loss) for m in ours),
        "ours_final_loss_per_instance_xavier": statistics.mean(ours_xavier.final_loss),
        "compile_s": compile_s,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| config | path | steps | baseline steps/s | ours steps/s | speedup | baseline final loss "
        "| ours final loss | ours final loss, per-instance xavier | cold compile s | load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['path']} | {r['steps']} | {r['baseline_steps_per_s']:.0f} "
            f"| {r['ours_steps_per_s']:.0f} "
            f"| {r['speedup']:.1f}x | {r['baseline_final_loss']:.5f} | {r['ours_final_loss']:.5f} "
            f"| {r['ours_final_loss_per_instance_xavier']:.5f} | {r['compile_s']:.1f} | {r['load']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.keep_cache:  # before torch is imported, so Inductor compiles from scratch
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench_train_inductor_")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.configs:
        for path in args.paths:
            rows.append(bench_config(name, path, args))
            print(f"{name} {path}: {rows[-1]['speedup']:.1f}x", file=sys.stderr, flush=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{stamp}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print(table(rows))
    if args.json is not None:
        args.json.write_text(json.dumps({"date": stamp, "argv": sys.argv, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
