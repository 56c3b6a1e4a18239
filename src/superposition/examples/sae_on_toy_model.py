"""Train a toy model, then a grid of SAEs on its hidden layer; score them against the model's
features and hand one to SAELens. About half a minute on a laptop CPU.

    PYTHONPATH=src python examples/sae_on_toy_model.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

from superposition import DataConfig, ModelConfig, RunConfig, TrainConfig, train
from superposition.analysis import represented
from superposition.sae import SAEConfig, SourceConfig, build_source, evaluate_sae, export_saelens, save_sae, train_sae


def main(out: Path) -> dict:
    run = train(RunConfig(ModelConfig("relu_output", n_features=20, n_hidden=5),
                          DataConfig(feature_probability=(0.03,), importance_decay=0.7),
                          TrainConfig(steps=4000, restarts=2), name="toy-20-5"), compile=False, progress=False)
    # 2 dictionary sizes x 2 values of k x 2 seeds = 8 SAEs, trained in one batched step
    config = SAEConfig(architecture="topk", n_latents=(20, 40), k=(1, 2), l1_coefficient=(0.0,), seeds=(0, 1),
                       steps=2000, batch_size=512, lr=3e-3, source=SourceConfig(kind="run", run_name="toy-20-5"))
    sae = train_sae(config, run=run)
    truth = run.W[0][represented(run.W)[0]]  # the features the toy model stores, as hidden-space directions
    scores = evaluate_sae(sae, build_source(config, run), features=truth)
    save_sae(sae, out / "sae")
    export_saelens(sae, 3, out / "saelens")  # sae_lens.SAE.load_from_disk(out / "saelens") loads it
    return {"grid": config.grid(), "recovered": scores.recovered, "of": scores.n_true,
            "loss_recovered": scores.loss_recovered}


if __name__ == "__main__":
    result = main(Path(sys.argv[1] if len(sys.argv) > 1 else "sae-example"))
    for point, got, lr in zip(result["grid"], result["recovered"], result["loss_recovered"], strict=True):
        print(f"{point}: recovered {got}/{result['of']}, loss recovered {lr:.3f}")  # noqa: T201
