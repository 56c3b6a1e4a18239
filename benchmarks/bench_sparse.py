"""High sparsity: the step's cost against the notebook loop at a small feature probability p.

For each work item (features/hidden x instances at one p, batch 1024) this times, interleaved in
one process on the same machine, the notebook loop of ../shared/bench/baseline.py (its `ToyModel`
and `sample`, driven at that p instead of its 1 → 1/20 grid) and `superposition.train` with the
dense and the sparse sampler (`data.sampler`), eagerly and compiled. It prints milliseconds per
step (median over --repeats runs; ours from `Metrics.steps_per_second`, which leaves out the first,
compiling step; the loop's from timed chunks after a warm-up), each side's ratio to the loop, the
final losses, and the load average during the run.

    python benchmarks/bench_sparse.py                         # 400/30x10 at p = 0.05 and 0.01, 10000/2x1 at 0.001
    python benchmarks/bench_sparse.py --work 400/30x10@0.05 --steps 300 --repeats 3 --compile off

It refuses to report when the 1-minute load average is above --max-load (1.5) unless --allow-load.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = ROOT.parent / "shared/bench/baseline.py"
DEFAULT_WORK = ("400/30x10@0.05", "400/30x10@0.01", "10000/2x1@0.001")
SPEC = re.compile(r"^(\d+)/(\d+)x(\d+)@([0-9.eE-]+)$")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=",".join(DEFAULT_WORK), help="comma-separated N/MxINST@P items")
    ap.add_argument("--steps", type=int, default=200, help="training steps per timed run (every side)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each side (median)")
    ap.add_argument("--compile", default="off,on", help="our compile modes to time: off, on or both")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="path to baseline.py")
    ap.add_argument("--max-load", type=float, default=1.5, help="1-minute load average above which it refuses")
    ap.add_argument("--allow-load", action="store_true", help="measure even when the load is above --max-load")
    return ap.parse_args(argv)


def parse_work(text: str) -> list[tuple[int, int, int, float]]:
    works = []
    for item in (t.strip() for t in text.split(",")):
        match = SPEC.match(item)
        if not match:
            raise SystemExit(f"--work {item!r}: expected N/MxINST@P, e.g. 400/30x10@0.05")
        n, m, inst, p = int(match[1]), int(match[2]), int(match[3]), float(match[4])
        if min(n, m, inst) < 1 or not 0 < p <= 1:
            raise SystemExit(f"--work {item!r}: sizes must be >= 1 and p in (0, 1]")
        works.append((n, m, inst, p))
    return works


def load_baseline(path: Path):
    spec = importlib.util.spec_from_file_location("baseline", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise SystemExit(f"--baseline {path}: not a readable Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def time_loop(baseline, n: int, m: int, inst: int, p: float, steps: int) -> tuple[float, float]:
    """The notebook loop at probability p: (ms per step, mean final loss over 8192 samples)."""
    torch.manual_seed(0)
    probability = torch.full((inst,), p)
    model = baseline.ToyModel(inst, n, m)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    warmup, t0 = min(10, steps // 5), 0.0
    for step in range(steps):
        if step == warmup:
            t0 = time.perf_counter()
        x = baseline.sample(1024, probability, n)
        loss = ((x - model(x)) ** 2).mean(dim=(0, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    ms = 1000 * (time.perf_counter() - t0) / (steps - warmup)
    with torch.no_grad():
        x = baseline.sample(8192, probability, n)
        final = ((x - model(x)) ** 2).mean().item()
    return ms, final


def time_ours(n: int, m: int, inst: int, p: float, steps: int, sampler: str, compile: bool) -> tuple[float, float]:
    import superposition as sp

    config = sp.RunConfig(model=sp.ModelConfig("relu_output", n_features=n, n_hidden=m),
                          data=sp.DataConfig(feature_probability=(p,) * inst, sampler=sampler),
                          train=sp.TrainConfig(steps=steps, log_every=max(1, steps // 4)))
    run = sp.train(config, compile=compile, progress=False)
    return 1000 / run.metrics.steps_per_second, statistics.fmean(run.metrics.final_loss)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    works = parse_work(args.work)
    modes = [m.strip() for m in args.compile.split(",") if m.strip()]
    if not set(modes) <= {"off", "on"}:
        raise SystemExit(f"--compile {args.compile!r}: expected off, on or off,on")
    load = os.getloadavg()[0]
    if load > args.max_load and not args.allow_load:
        print(f"load average {load:.2f} > {args.max_load}: refusing to measure (pass --allow-load)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    baseline = load_baseline(args.baseline)
    sides = ["loop"] + [f"{s}/{c}" for c in modes for s in ("dense", "sparse")]
    print(f"# bench_sparse: {args.steps} steps, batch 1024, {args.threads} thread(s), median of {args.repeats}; "
          f"load at start {load:.2f}")
    print("| work | " + " | ".join(f"{s} ms/step" for s in sides) + " | " +
          " | ".join(f"{s} vs loop" for s in sides[1:]) + " | final loss loop / sparse | load |")
    print("|" + "---|" * (2 * len(sides) + 2))
    for n, m, inst, p in works:
        times: dict[str, list[float]] = {s: [] for s in sides}
        losses: dict[str, float] = {}
        for _ in range(args.repeats):
            for side in sides:
                if side == "loop":
                    ms, loss = time_loop(baseline, n, m, inst, p, args.steps)
                else:
                    sampler, mode = side.split("/")
                    ms, loss = time_ours(n, m, inst, p, args.steps, sampler, mode == "on")
                times[side].append(ms)
                losses[side] = loss
        med = {s: statistics.median(v) for s, v in times.items()}
        sparse_side = next(s for s in sides if s.startswith("sparse"))
        print(f"| {n} → {m} × {inst}, p = {p:g} | " + " | ".join(f"{med[s]:.1f}" for s in sides) + " | " +
              " | ".join(f"{med['loop'] / med[s]:.2f}×" for s in sides[1:]) +
              f" | {losses['loop']:.4g} / {losses[sparse_side]:.4g} | {os.getloadavg()[0]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
