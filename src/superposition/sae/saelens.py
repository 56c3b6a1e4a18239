"""SAELens interoperability: write one trained SAE as a SAELens directory, read one back.

A SAELens (≥ 6) SAE directory holds

    cfg.json                 {"architecture": "standard" | "topk" | "jumprelu", "d_in", "d_sae",
                              "dtype", "device", "apply_b_dec_to_input", "normalize_activations",
                              "reshape_activations", "metadata": {...}, "k" (topk),
                              "rescale_acts_by_decoder_norm" (topk)}
    sae_weights.safetensors  W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in],
                             threshold [d_sae] (jumprelu)

and `sae_lens.SAE.load_from_disk(path)` loads it (format learnt from sae_lens 6.54: `SAE.save_model`,
`SAEConfig.to_dict`, `sae_lens_disk_loader`). Our architectures map to SAELens's: relu →
standard, topk → topk, batchtopk → jumprelu with every latent's threshold set to the learnt
batch threshold (SAELens itself saves a trained BatchTopK SAE as a JumpReLU one for inference).
Nothing here imports sae_lens: writing and reading the format needs only safetensors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..atomic import atomic_write_json, temporary_beside
from .config import SAEConfig, SourceConfig
from .storage import SAEDirError, check_sae, read_tensors
from .train import SAERun

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
SAELENS_VERSION = "6.54.12"
"""The SAELens version whose format this writes (6.x config layout)."""
TO_SAELENS = {"relu": "standard", "topk": "topk", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}
FROM_SAELENS = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}


def export_saelens(sae: SAERun, instance: int, path: str | os.PathLike[str], hook_name: str = "hidden",
                   model_name: str = "superposition-toy") -> Path:
    """Write instance `instance` of `sae` as a SAELens SAE directory at `path` (atomic files)."""
    if not 0 <= instance < sae.n_instances:
        raise ValueError(f"instance = {instance} is invalid: the SAE run has {sae.n_instances} instance(s)")
    point = sae.config.grid()[instance]
    n = point.n_latents
    arch = TO_SAELENS[sae.config.architecture]
    p = {k: v[instance].detach().cpu() for k, v in sae.params.items()}
    tensors = {"W_enc": p["W_enc"][:, :n], "b_enc": p["b_enc"][:n], "W_dec": p["W_dec"][:n], "b_dec": p["b_dec"]}
    if arch == "jumprelu":
        tensors["threshold"] = sae.threshold[instance, :n].detach().cpu()
    cfg: dict[str, Any] = {
        "architecture": arch, "d_in": sae.n_inputs, "d_sae": n, "dtype": "float32", "device": "cpu",
        "apply_b_dec_to_input": True, "normalize_activations": "none", "reshape_activations": "none",
        "metadata": {"sae_lens_version": SAELENS_VERSION, "model_name": model_name, "hook_name": hook_name,
                     "superposition": {"config": sae.config.to_dict(), "instance": instance}}}
    if arch == "topk":
        cfg.update(k=point.k, rescale_acts_by_decoder_norm=False)
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    with temporary_beside(out / WEIGHTS) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, tmp)
    atomic_write_json(out / CFG, cfg)
    return out


def _fail(path: Path, what: str) -> None:
    raise SAEDirError(f"{path}: {what}")


def _read_cfg(path: Path) -> dict[str, Any]:
    try:
        cfg = json.loads((path / CFG).read_text())
    except FileNotFoundError:
        raise SAEDirError(f"{path}: not a SAELens SAE directory (no {CFG})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SAEDirError(f"{path / CFG}: unreadable ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(cfg, dict):
        _fail(path / CFG, "must hold a JSON object")
    arch = cfg.get("architecture", "standard")
    if arch not in FROM_SAELENS:
        _fail(path / CFG, f"architecture = {arch!r} is not supported: must be one of {', '.join(FROM_SAELENS)}")
    for key in ("d_in", "d_sae"):
        if isinstance(cfg.get(key), bool) or not isinstance(cfg.get(key), int) or cfg[key] < 1:
            _fail(path / CFG, f"{key} = {cfg.get(key)!r} is invalid: must be a positive integer")
    if cfg.get("normalize_activations", "none") != "none":
        _fail(path / CFG, f"normalize_activations = {cfg['normalize_activations']!r} is not supported: must be 'none'")
    if cfg.get("reshape_activations", "none") != "none":
        _fail(path / CFG, f"reshape_activations = {cfg['reshape_activations']!r} is not supported: must be 'none'")
    if arch == "topk":
        k = cfg.get("k")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= cfg["d_sae"]:
            _fail(path / CFG, f"k = {k!r} is invalid: must be an integer in [1, d_sae = {cfg['d_sae']}]")
        if cfg.get("rescale_acts_by_decoder_norm", False):
            _fail(path / CFG, "rescale_acts_by_decoder_norm = true is not supported: fold the decoder norm first")
    return cfg


def _read_weights(path: Path, cfg: dict[str, Any]) -> dict[str, torch.Tensor]:
    raw = read_tensors(path / WEIGHTS, f"{path}: not a SAELens SAE directory (no {WEIGHTS})")
    d_in, d_sae = cfg["d_in"], cfg["d_sae"]
    shapes = {"W_enc": (d_in, d_sae), "b_enc": (d_sae,), "W_dec": (d_sae, d_in), "b_dec": (d_in,)}
    if cfg.get("architecture") == "jumprelu":
        if "threshold" not in raw and "log_threshold" in raw:
            raw["threshold"] = raw.pop("log_threshold").exp()
        shapes["threshold"] = (d_sae,)
    for name, shape in shapes.items():
        if name not in raw:
            _fail(path / WEIGHTS, f"has no tensor {name}")
        if tuple(raw[name].shape) != shape:
            _fail(path / WEIGHTS, f"{name} has shape {tuple(raw[name].shape)}; cfg.json needs {shape}")
        if not raw[name].is_floating_point() or not bool(torch.isfinite(raw[name]).all()):
            _fail(path / WEIGHTS, f"{name} must hold finite floating-point values")
    return {name: raw[name].to(torch.float32) for name in shapes}


def import_saelens(path: str | os.PathLike[str]) -> SAERun:
    """Read a SAELens SAE directory as a one-instance `SAERun` (architecture relu, topk or jumprelu).

    The result encodes as SAELens does: with apply_b_dec_to_input off, b_dec's effect on the
    encoder is folded into b_enc; decoder rows keep their norms (normalize_decoder is off).
    """
    out = Path(path)
    if not out.is_dir():
        raise SAEDirError(f"{out}: no such SAELens SAE directory")
    cfg = _read_cfg(out)
    w = _read_weights(out, cfg)
    b_enc = w["b_enc"] if cfg.get("apply_b_dec_to_input", True) else w["b_enc"] + w["b_dec"] @ w["W_enc"]
    arch = FROM_SAELENS[cfg.get("architecture", "standard")]
    config = SAEConfig(architecture=arch, n_latents=(cfg["d_sae"],), l1_coefficient=(0.0,),
                       k=(cfg["k"],) if arch == "topk" else None, normalize_decoder=False,
                       source=SourceConfig(kind="run"), name=str(cfg.get("metadata", {}).get("hook_name", "saelens")))
    params = {"W_enc": w["W_enc"][None], "b_enc": b_enc[None], "W_dec": w["W_dec"][None], "b_dec": w["b_dec"][None]}
    threshold = w["threshold"][None] if "threshold" in w else torch.zeros(1, cfg["d_sae"])
    sae = SAERun(config, params, threshold, cfg["d_in"], extra={"saelens_cfg": cfg})
    check_sae(sae, str(out))
    return sae
