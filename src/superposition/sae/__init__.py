"""Sparse autoencoders on toy models, trained many at once and scored against the true features.

    config    SAEConfig (a grid: dictionary size × L1 coefficient × k × seed), SourceConfig, DictionaryConfig
    sources   the activations: a generated dictionary (Sharkey et al.) or a toy-model run's hidden layer
    model     batched SAEs, instance axis first: relu + L1, topk, batchtopk; hand-written gradients
    sparse    the step past the encoder over the latents that fire, when few do (bag-sums, sampled products)
    train     train_sae(config, run=None) -> SAERun, every instance in one step; train_all for several
    parallel  the size groups in worker processes at once (workers=), bit for bit as in one process
    metrics   pure scores: MMCS, recovered features, dead/dense latents, L0, FVE, spliced loss
    evaluate  evaluate_sae(sae, source) -> SAEScores; support_scores (the encoder against the true support)
    absorption  feature absorption on hierarchical features
    storage   save_sae / load_sae (config.json + weights.safetensors + metrics.json); stored_or_trained(_all)
    saelens   export_saelens / import_saelens (SAELens's cfg.json + sae_weights.safetensors)
"""

from .config import DictionaryConfig, GridPoint, SAEConfig, SourceConfig
from .evaluate import SAEScores, SupportScores, evaluate_sae, support_scores
from .saelens import export_saelens, import_saelens
from .sources import DictionarySource, RunSource, build_source
from .storage import SAEDirError, load_sae, save_sae, stored_or_trained, stored_or_trained_all
from .train import SAERun, train_all, train_sae

__all__ = ["DictionaryConfig", "DictionarySource", "GridPoint", "RunSource", "SAEConfig", "SAEDirError", "SAERun",
           "SAEScores", "SourceConfig", "SupportScores", "build_source", "evaluate_sae", "export_saelens",
           "import_saelens", "load_sae", "save_sae", "stored_or_trained", "stored_or_trained_all", "support_scores",
           "train_all", "train_sae"]
