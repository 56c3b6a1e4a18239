"""SAE training steps per second: one batched step over a grid vs one SAE at a time, eager vs compiled.

    python benchmarks/bench_sae.py                      # the sae-recovery quick grid (G = 64, h = 32)
    python benchmarks/bench_sae.py --steps 500 --threads 1 --compile
    python benchmarks/bench_sae.py --paper --steps 1000 --threads 1   # sparse products on and off

Prints a markdown table. The loop over instances trains each grid point alone (its own
`train_sae` call), which is what batching replaces.

`--paper` trains sae-recovery's paper-size grid (G = 512, h = 256: 20 ReLU SAEs of 256-2048
latents, batch 512) with the sparse products past the encoder (`superposition.sae.sparse`) and
without them, and prints milliseconds per step for each block of 100 steps: the latents that fire
thin out as the L1 penalty prunes, so the sparse path's advantage grows over the first steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from superposition.experiments.sae_recovery import dictionary_config
from superposition.sae import train_sae


def _rate(config, compile: bool) -> float:
    if compile:
        train_sae(dataclasses.replace(config, steps=3), compile=True)  # compile first, outside the timing
    t0 = time.perf_counter()
    train_sae(config, compile=compile)
    return config.steps / (time.perf_counter() - t0)


def _paper(steps: int) -> None:
    import superposition.sae.sparse as sparse

    config = dataclasses.replace(dictionary_config(False), steps=steps, log_every=100)
    density = sparse.SPARSE_DENSITY
    columns = {}
    for name, threshold in (("sparse where it pays", density), ("dense only", -1.0)):
        sparse.SPARSE_DENSITY = threshold
        times = [time.perf_counter()]
        train_sae(config, compile="auto", progress=lambda step, loss, times=times: times.append(time.perf_counter()))
        columns[name] = [1e3 * (b - a) / config.log_every for a, b in zip(times, times[1:], strict=False)]
    sparse.SPARSE_DENSITY = density
    head = f"| steps ({config.n_instances} SAEs, threads {torch.get_num_threads()}) | "
    print(head + " | ".join(columns) + " | ratio |")
    print("|---|---:|---:|---:|")
    on, off = columns.values()
    for i, (a, b) in enumerate(zip(on, off, strict=True)):
        print(f"| {i * 100 + 1}-{(i + 1) * 100} | {a:.0f} ms | {b:.0f} ms | {b / a:.2f}x |")
    print(f"| all | {sum(on) / len(on):.0f} ms | {sum(off) / len(off):.0f} ms | {sum(off) / sum(on):.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd steps")
    parser.add_argument("--paper", action="store_true", help="the paper-size grid, sparse products on and off")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.paper:
        _paper(args.steps)
        return
    config = dataclasses.replace(dictionary_config(True), steps=args.steps)
    rows = [("batched, eager", config.n_instances * _rate(config, False))]
    t0 = time.perf_counter()
    for i in range(config.n_instances):
        train_sae(config.alone(i))
    rows.append(("one at a time, eager", config.n_instances * args.steps / (time.perf_counter() - t0)))
    if args.compile:
        rows.append(("batched, compiled", config.n_instances * _rate(config, True)))
    print(f"| {config.n_instances} SAEs, {args.steps} steps, threads {torch.get_num_threads()} | SAE-steps/s |")
    print("|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.0f} |")


if __name__ == "__main__":
    main()
