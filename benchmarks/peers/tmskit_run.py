"""Train the bench_e2e work with tms-kit 0.4.1, the way its README does, and print one JSON line.

The README's minimal example: a `TMS` bundling `Model`, `IIDFeatureGenerator` and
`ImportanceWeightedLoss`, trained with `tms_kit.optimize.optimize`. Here: n features, m hidden,
one instance per feature probability p = 20**-linspace(0, 1, inst), importance 1, batch 1024,
lr 1e-3. `optimize` hard-codes `torch.optim.Adam` (no weight decay), so that is the one setting
that differs from the notebook loop's AdamW(weight_decay=0.01); a step costs the same.

    python tmskit_run.py --features 5 --hidden 2 --instances 10 --steps 10000 --threads 1

The final loss of each instance is the importance-weighted squared error averaged over 8192
fresh samples (tms-kit's own generator) and over features, as the notebook loop reports it.
"""

from __future__ import annotations

import json
import time

from work_args import work_parser


def main() -> None:
    ap = work_parser(__doc__.splitlines()[0])
    args = ap.parse_args()

    t0 = time.perf_counter()
    import torch
    from tms_kit.data import IIDFeatureGenerator
    from tms_kit.loss import ImportanceWeightedLoss
    from tms_kit.model import Model
    from tms_kit.optimize import optimize
    from tms_kit.tms import TMS
    from tms_kit.utils.device import set_device

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    set_device(args.device)
    n_inst, n_feat = args.instances, args.features
    probability = (20.0 ** -torch.linspace(0, 1, n_inst))[:, None].expand(n_inst, n_feat).to(args.device)
    importance = torch.ones(n_inst, n_feat, device=args.device)

    class BenchTMS(TMS):
        def __init__(self) -> None:
            self.model = Model(n_features=n_feat, n_inst=n_inst, d_hidden=args.hidden, device=args.device)
            self.loss_calc = ImportanceWeightedLoss(n_features=n_feat, feature_importance=importance)
            self.data_gen = IIDFeatureGenerator(n_features=n_feat, n_inst=n_inst, feature_probability=probability)

    tms = BenchTMS()
    t1 = time.perf_counter()
    optimize(tms, disable_tqdm=True, batch_size=args.batch, steps=args.steps, lr=args.lr)
    with torch.no_grad():
        x = tms.data_gen.generate_batch(8192)
        final = (importance * (x - tms.model(x)) ** 2).mean(dim=(0, 2))
    t2 = time.perf_counter()
    print(json.dumps({
        "impl": "tms-kit", "version": __import__("tms_kit").__version__, "optimizer": "Adam (tms_kit.optimize)",
        "features": n_feat, "hidden": args.hidden, "instances": n_inst, "batch": args.batch, "steps": args.steps,
        "threads": torch.get_num_threads(), "device": args.device,
        "setup_s": t1 - t0, "train_s": t2 - t1, "final_loss": [round(v, 7) for v in final.tolist()],
    }))


if __name__ == "__main__":
    main()
