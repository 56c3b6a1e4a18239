"""SAE training steps per second: one batched step over a grid vs one SAE at a time, eager vs compiled.

    python benchmarks/bench_sae.py                      # the sae-recovery quick grid (G = 64, h = 32)
    python benchmarks/bench_sae.py --steps 500 --threads 1 --compile

Prints a markdown table. The loop over instances trains each grid point alone (its own
`train_sae` call), which is what batching replaces.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd steps")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
