"""How much of a compiled training step is data generation.

For each benchmark configuration (the same as bench_train.py) this times, in one process:

- the whole compiled training step (sampling, loss and gradients, Adam(W));
- the sampler alone, compiled, writing the batch in the layout the step uses;
- a compiled function that only writes a buffer of that size (call overhead + memory);
- the baseline's data: two `torch.rand` calls of the batch's size.

"hashing" is sampler minus buffer: the part of the step that generating numbers costs.

    python benchmarks/bench_sampling.py
"""

from __future__ import annotations

import time

import torch

import superposition as sp
from superposition.data import feature_spec, sample
from superposition.optim import lr_table
from superposition.train import init_state, keep_freed_memory, l1_vector, make_step

CONFIGS = {"5/2x10": (5, 2, 10), "20/5x10": (20, 5, 10), "200/20x20": (200, 20, 20)}
BATCH = 1024


def median_ms(fn, n: int = 300) -> float:
    for _ in range(max(10, n // 10)):
        fn()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return sorted(times)[n // 2] * 1e3


def measure(features: int, hidden: int, instances: int) -> dict:
    grid = tuple((20.0 ** -torch.linspace(0, 1, instances)).tolist())
    config = sp.RunConfig(model=sp.ModelConfig("relu_output", features, hidden),
                          data=sp.DataConfig(feature_probability=grid), train=sp.TrainConfig(steps=10_000))
    state = init_state(config, torch.device("cpu"))
    spec, lrs = feature_spec(config), lr_table(config.train)
    step_fn = make_step(config, compiled=True)
    sampler = torch.compile(lambda s: sample(spec, s, BATCH).transpose(1, 2).contiguous(), fullgraph=True)
    buffer = torch.compile(lambda s: torch.zeros(instances, features, BATCH) + s, fullgraph=True)
    at = torch.tensor(5)
    args = (state.params, state.exp_avg, state.exp_avg_sq, state.step, state.loss_sum, spec, lrs, l1_vector(config))
    shape = (BATCH, instances, features)
    return {
        "step": median_ms(lambda: step_fn(*args), n=100 if features > 50 else 300),
        "sampler": median_ms(lambda: sampler(at)),
        "buffer": median_ms(lambda: buffer(at)),
        "torch_rand_x2": median_ms(lambda: (torch.rand(shape), torch.rand(shape))),
    }


def main() -> None:
    print("| config | step ms | sampler ms | buffer only ms | hashing, share of step | baseline's 2× torch.rand ms |")
    print("|---|---:|---:|---:|---:|---:|")
    with keep_freed_memory():  # the allocator as train() sets it: no page faults on reused buffers
        for name, (f, h, i) in CONFIGS.items():
            r = measure(f, h, i)
            share = 100 * (r["sampler"] - r["buffer"]) / r["step"]
            print(f"| {name} | {r['step']:.3f} | {r['sampler']:.3f} | {r['buffer']:.3f} | {share:.0f}% "
                  f"| {r['torch_rand_x2']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
