"""Sweep throughput: a 10,000-model phase-diagram sweep (n = 2, m = 1) on this machine, in models/s.

The grid is the paper's section-4 phase diagram: relu_output, two features in one dimension, the
second feature's importance r log-spaced over 0.1 … 10 (40 values) × its density p log-spaced over
1 … 0.01 (25 values, for both features) × 10 seeds = 10,000 models, batch 1024.

    python benchmarks/bench_sweep.py                         # 2,000 steps, the default executor
    python benchmarks/bench_sweep.py --layouts 2x1,1x2       # workers × torch threads per worker
    python benchmarks/bench_sweep.py --seeds 1 --steps 500 --chunk-size 64 --figure phase.png

For each layout (W workers × T threads, each a fresh sweep directory) it reports wall time,
chunks, models/s and the phase map (mean represented features over the seeds). With --baseline it
also times ../shared/bench/baseline.py, the notebook's loop, training one 25-density run per
importance value, and reports its models/s on one core and times the cores (perfect parallelism).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

DEFAULT_BASELINE = Path(__file__).resolve().parents[2] / "shared/bench/baseline.py"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000, help="training steps per model")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--densities", type=int, default=25, help="p values, log-spaced 1 … 0.01")
    ap.add_argument("--importances", type=int, default=40, help="r values, log-spaced 0.1 … 10")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--layouts", default="auto",
                    help="comma-separated WxT (workers x threads; helpers start at once) or auto (the default)")
    ap.add_argument("--chunk-size", type=int, default=None, help="models per chunk (default: chosen automatically)")
    ap.add_argument("--compile", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--out", type=Path, default=None, help="keep the sweep directories here (default: temporary)")
    ap.add_argument("--figure", type=Path, default=None, help="save the phase map of the last layout as a PNG")
    ap.add_argument("--baseline", nargs="?", const=DEFAULT_BASELINE, type=Path, default=None,
                    help="also time the baseline loop (path to baseline.py; default ../shared/bench/baseline.py)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    return ap.parse_args(argv)


def spec(args: argparse.Namespace, chunk_size: int | None):
    import superposition as sp
    from superposition.sweep import Axis, SweepSpec

    base = sp.RunConfig(model=sp.ModelConfig("relu_output", 2, 1), data=sp.DataConfig(importance=(1.0, 1.0)),
                        train=sp.TrainConfig(steps=args.steps, batch_size=args.batch))
    axes = (Axis.log("p", 1.0, 0.01, args.densities), Axis.log("importance[1]", 0.1, 10.0, args.importances),
            Axis.range("seed", args.seeds))
    return SweepSpec(base, axes, name="bench-phase", chunk_size=chunk_size)


def layouts(text: str) -> list[tuple[int, int] | None]:
    """"2x1,1x2,auto" → [(2, 1), (1, 2), None]; None is the default executor."""
    items = [item.strip().lower() for item in text.split(",") if item.strip()]
    return [None if item == "auto" else tuple(int(v) for v in item.split("x")) for item in items]


def bench_layout(args: argparse.Namespace, layout: tuple[int, int] | None, out: Path) -> dict:
    import torch

    from superposition.backends.local import LocalExecutor
    from superposition.sweep import pivot_grid, run_sweep

    torch.compiler.reset()  # each layout compiles afresh (from the disk cache), as a new process would
    executor = LocalExecutor() if layout is None else LocalExecutor(*layout)
    name = "auto" if layout is None else f"{executor.workers}x{executor.threads}"
    compile_mode = {"auto": "auto", "on": True, "off": False}[args.compile]
    t0 = time.perf_counter()
    result = run_sweep(spec(args, args.chunk_size), out, executor=executor, compile=compile_mode, progress=True)
    wall = time.perf_counter() - t0
    phase = pivot_grid(result.index, "represented", "p", "importance[1]")
    stored = json.loads((out / "sweep.json").read_text())
    return {"layout": name, "workers": executor.workers, "threads": executor.threads, "models": len(result.index),
            "chunks": result.chunks, "chunk_size": stored["chunk_size"], "wall_s": round(wall, 1),
            "models_per_s": round(len(result.index) / wall, 2), "phase": phase, "out": str(out)}


def bench_baseline(path: Path, args: argparse.Namespace) -> dict:
    """The notebook's loop, one run of all densities per importance value, on one thread."""
    steps = min(args.steps, 500)
    cmd = [sys.executable, str(path), "--features", "2", "--hidden", "1", "--instances", str(args.densities),
           "--steps", str(steps), "--batch", str(args.batch), "--threads", "1"]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    rate = out["steps_per_s"] * args.densities / args.steps
    return {"steps_timed": steps, "steps_per_s": round(out["steps_per_s"], 1), "models_per_s_one_core": round(rate, 2),
            "models_per_s_all_cores": round(rate * (os.cpu_count() or 1), 2)}


def phase_map(phase) -> str:
    """Rows p (dense at the top), columns r: '.' one feature represented, '#' both, ':' between."""
    chars = [["." if v < 1.25 else "#" if v > 1.75 else ":" for v in row] for row in phase.to_numpy()[::-1]]
    return "\n".join(f"  p={p:<7.3g} " + "".join(row) for p, row in zip(phase.index[::-1], chars, strict=True))


def save_figure(phase, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.2), layout="constrained")
    ax = fig.add_subplot()
    mesh = ax.pcolormesh(phase.columns, phase.index, phase.to_numpy(), cmap="viridis", vmin=0, vmax=2,
                         shading="nearest")
    ax.set(xscale="log", yscale="log", xlabel="importance of feature 2, r", ylabel="feature probability p = 1 − S",
           title=f"n = 2, m = 1: mean represented features ({len(phase.index)} × {len(phase.columns)} cells)")
    fig.colorbar(mesh, ax=ax, label="represented features")
    fig.savefig(path, dpi=120)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results, base = [], None
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = args.out or Path(tmp)
        if args.baseline:
            base = bench_baseline(args.baseline, args)
        for k, layout in enumerate(layouts(args.layouts)):
            results.append(bench_layout(args, layout, root / f"sweep-{k}"))
    n = args.densities * args.importances * args.seeds
    print(f"\n{n:,} models (n = 2, m = 1, {args.steps} steps, batch {args.batch}); {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end\n")
    print("| workers × threads | chunks (size) | wall s | models/s |\n|---|---:|---:|---:|")
    for r in results:
        print(f"| {r['layout']} | {r['chunks']} ({r['chunk_size']}) | {r['wall_s']} | **{r['models_per_s']}** |")
    if base:
        print(f"\nbaseline loop ({args.densities} densities per run, 1 thread, {base['steps_timed']} steps timed): "
              f"{base['models_per_s_one_core']} models/s on one core, {base['models_per_s_all_cores']} on all cores")
    print("\nphase map (mean represented features; '.' 1, '#' 2), r from 0.1 (left) to 10 (right):")
    print(phase_map(results[-1]["phase"]))
    if args.figure:
        save_figure(results[-1]["phase"], args.figure)
        print(f"figure {args.figure}")
    if args.json:
        record = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "steps": args.steps, "models": n,
                  "layouts": [{k: v for k, v in r.items() if k != "phase"} for r in results], "baseline": base}
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
