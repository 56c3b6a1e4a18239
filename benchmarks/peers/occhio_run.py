"""Train the bench_e2e work with occhio 0.2.3, the way its docs do, and print one JSON line.

occhio trains many toy models at once with a `ModelGrid` (one `ToyModel` per grid point, stacked
with `torch.func` and vmapped); its docstring example builds a grid over a "Density" axis of
`ToyModel(SparseUniform(n, p_active=p), TiedLinearRelu(n, m))`. Here the axis is the notebook's
p = 20**-linspace(0, 1, inst), importance 1, batch 1024, AdamW(lr 1e-3, weight_decay 0.01) (passed
to `ModelGrid.fit`, whose defaults are 3e-4 and 0.05), `compile=False` (its default). Each
distribution gets its own seeded generator, as `ModelGrid` requires for its sample cache.

Differences that occhio fixes: its init (unit-norm columns, not xavier) and its training loss
(sum over features, mean over models, where the notebook averages over features and sums over
instances; a constant factor, which Adam's update ignores up to eps). `fit` always shows a tqdm
bar (on stderr).

    python occhio_run.py --features 5 --hidden 2 --instances 10 --steps 10000 --threads 1

The final loss of each instance is the importance-weighted squared error averaged over 8192
fresh samples (occhio's own distribution) and over features, as the notebook loop reports it.
"""

from __future__ import annotations

import json
import time
from importlib.metadata import version

from work_args import work_parser


def main() -> None:
    ap = work_parser(__doc__.splitlines()[0])
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--compile", action="store_true", help="ModelGrid.fit(compile=True); off by default, as in occhio")
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch
    from occhio import ModelGrid, ToyModel
    from occhio.autoencoder import TiedLinearRelu
    from occhio.distributions.sparse import SparseUniform
    from occhio.model_grid import Axis

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    n_inst, n_feat = args.instances, args.features
    densities = 20.0 ** -torch.linspace(0, 1, n_inst)
    index = {float(p): k for k, p in enumerate(densities)}

    def create_model(params: dict) -> ToyModel:
        k = index[float(params["Density"])]
        gen = torch.Generator(args.device)
        gen.manual_seed(args.seed * 100_003 + k)
        dist = SparseUniform(n_feat, p_active=float(params["Density"]), generator=gen)
        ae = TiedLinearRelu(n_feat, args.hidden, generator=gen)
        return ToyModel(dist, ae, device=args.device, importances=torch.ones(n_feat))

    grid = ModelGrid(create_model, axes=[Axis(label="Density", values=densities)])
    t1 = time.perf_counter()
    grid.fit(n_epochs=args.steps, batch_size=args.batch, learning_rate=args.lr, weight_decay=args.weight_decay,
             compile=args.compile)
    final = []
    with torch.no_grad():
        for model in grid.models.ravel():
            x = model.distribution.sample(8192)
            x_hat = model.ae(x)[0]
            final.append(float((model.importances * (x - x_hat) ** 2).mean()))
    t2 = time.perf_counter()
    print(json.dumps({
        "impl": "occhio", "version": version("occhio"), "optimizer": "AdamW (ModelGrid.fit)",
        "features": n_feat, "hidden": args.hidden, "instances": n_inst, "batch": args.batch, "steps": args.steps,
        "threads": torch.get_num_threads(), "device": args.device, "compile": args.compile,
        "setup_s": t1 - t0, "train_s": t2 - t1, "final_loss": [round(v, 7) for v in final],
    }))


if __name__ == "__main__":
    main()
