"""The SAE run directory: a trained batch of SAEs on disk, and reading it back with validation.

    SAE_RUN/
      config.json          the SAEConfig (JSON round-trip)
      weights.safetensors  W_enc [inst, hidden, latent], b_enc [inst, latent], W_dec [inst, latent, hidden],
                           b_dec [inst, hidden], threshold [inst, latent]
      metrics.json         n_inputs, loss curve, final losses (written last: marks the run complete)

Nothing read back is trusted: shapes are checked against the config, padding latents must be
zero, values finite and decoder rows of unit norm when the config normalises them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write_bytes, atomic_write_json, temporary_beside
from ..config import ConfigError
from .config import SAEConfig
from .model import TRAINED
from .sources import Source, build_source
from .train import SAERun, train_all

CONFIG, WEIGHTS, METRICS = "config.json", "weights.safetensors", "metrics.json"
FORMAT = "superposition-sae"


class SAEDirError(ValueError):
    """A path is not a readable, complete, consistent SAE run directory."""


def save_sae(sae: SAERun, path: str | os.PathLike[str]) -> Path:
    """Write `sae` as an SAE run directory; metrics.json goes last and marks it complete."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS).unlink(missing_ok=True)
    atomic_write_bytes(out / CONFIG, (sae.config.to_json() + "\n").encode())
    tensors = {name: sae.params[name] for name in TRAINED} | {"threshold": sae.threshold}
    with temporary_beside(out / WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp,
                  metadata={"format": FORMAT, "architecture": sae.config.architecture})
    atomic_write_json(out / METRICS, {"n_inputs": sae.n_inputs, "loss_steps": sae.loss_steps,
                                      "loss_curve": sae.loss_curve, "final_loss": sae.final_loss,
                                      "train_seconds": sae.train_seconds, "extra": sae.extra})
    return out


def stored_or_trained(config: SAEConfig, path: Path | None, run=None, *, source: Source | None = None,
                      compile: bool | str = "auto", workers: int | str = "auto") -> SAERun:
    """The SAEs of `config`, trained once: read back from `path` when it holds a complete SAE run of
    the same config (and, for SAEs on a toy model, of the same model weights), else trained
    (`train_sae`, with `compile` and `workers`) and saved there. `path` None: always train, save nothing."""
    return stored_or_trained_all([(config, path, run)], sources=[source], compile=compile, workers=workers)[0]


def stored_or_trained_all(items: list[tuple[SAEConfig, Path | None, Any]], *,
                          sources: list[Source | None] | None = None, compile: bool | str = "auto",
                          workers: int | str = "auto") -> list[SAERun]:
    """`stored_or_trained` of each (config, path, run), the ones not stored trained together
    (`train.train_all`: with `workers` > 1 their size groups share one pool of processes)."""
    sources = sources or [None] * len(items)
    out: list[SAERun | None] = [_stored(config, path, run) for config, path, run in items]
    missing = [i for i, sae in enumerate(out) if sae is None]
    todo = [items[i][0] for i in missing]
    built = [sources[i] or build_source(items[i][0], items[i][2]) for i in missing]
    for i, sae in zip(missing, train_all(todo, built, compile=compile, workers=workers), strict=True):
        config, path, run = items[i]
        if run is not None:
            sae.extra["source_sha256"] = _weights_sha256(run)
        if path is not None:
            save_sae(sae, path)
        out[i] = sae
    return out  # type: ignore[return-value]


def _stored(config: SAEConfig, path: Path | None, run) -> SAERun | None:
    """The complete SAE run of `config` (and of `run`'s weights) at `path`, or None."""
    if path is None or not (path / METRICS).is_file():
        return None
    try:
        sae = load_sae(path)
    except SAEDirError:
        return None  # damaged: train again
    fingerprint = _weights_sha256(run) if run is not None else None
    return sae if sae.config == config and sae.extra.get("source_sha256") == fingerprint else None


def _weights_sha256(run) -> str:
    digest = hashlib.sha256()
    for name in sorted(run.params):
        digest.update(name.encode())
        digest.update(run.params[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SAEDirError(f"{path.parent}: not a finished SAE run directory (no {path.name})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SAEDirError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None


def load_sae(path: str | os.PathLike[str]) -> SAERun:
    """Read an SAE run directory back, checking everything against its config."""
    out = Path(path)
    if not out.is_dir():
        raise SAEDirError(f"{out}: no such SAE run directory")
    try:
        config = SAEConfig.from_dict(_json(out / CONFIG))
    except ConfigError as exc:
        raise SAEDirError(f"{out / CONFIG}: not an SAE config ({exc})") from None
    meta = _json(out / METRICS)
    if not isinstance(meta, dict) or not isinstance(meta.get("n_inputs"), int) or meta["n_inputs"] < 1:
        raise SAEDirError(f"{out / METRICS}: needs a positive integer n_inputs")
    tensors = read_tensors(out / WEIGHTS, f"{out}: no {WEIGHTS}")
    sae = SAERun(config, {k: tensors[k] for k in TRAINED if k in tensors}, tensors.get("threshold"), meta["n_inputs"],
                 list(meta.get("loss_steps", [])), list(meta.get("loss_curve", [])),
                 list(meta.get("final_loss", [])), float(meta.get("train_seconds", 0.0)), dict(meta.get("extra", {})))
    check_sae(sae, str(out / WEIGHTS))
    return sae


def expected_shapes(config: SAEConfig, n_inputs: int) -> dict[str, tuple[int, ...]]:
    n, width = config.n_instances, config.max_latents
    return {"W_enc": (n, n_inputs, width), "b_enc": (n, width), "W_dec": (n, width, n_inputs),
            "b_dec": (n, n_inputs), "threshold": (n, width)}


def check_sae(sae: SAERun, where: str = "SAE") -> None:
    """Raise SAEDirError unless `sae`'s tensors fit its config (shapes, dtype, padding, finiteness, norms)."""
    tensors = {**sae.params, "threshold": sae.threshold}
    expected = expected_shapes(sae.config, sae.n_inputs)
    got = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    if got != expected:
        raise SAEDirError(f"{where}: tensors {got} do not match the config, which needs {expected}")
    for name, value in tensors.items():
        if value.dtype != torch.float32:
            raise SAEDirError(f"{where}: {name} has dtype {value.dtype}, expected float32")
        if not bool(torch.isfinite(value).all()):
            raise SAEDirError(f"{where}: {name} has non-finite values")
    pad = ~sae.mask
    if bool(sae.params["W_dec"][pad].any()) or bool(sae.params["W_enc"].transpose(1, 2)[pad].any()):
        raise SAEDirError(f"{where}: padding latents (beyond an instance's n_latents) must be zero")
    if sae.config.normalize_decoder:
        norms = sae.params["W_dec"].norm(dim=-1)[sae.mask]
        if not bool(((norms - 1).abs() < 1e-3).all()):
            raise SAEDirError(f"{where}: decoder rows must have unit norm (normalize_decoder is on); "
                              f"norms range {float(norms.min()):.4g} to {float(norms.max()):.4g}")


def read_tensors(path: Path, missing: str) -> dict:
    """The tensors of the safetensors file `path`; SAEDirError `missing` when absent, or naming the file
    when it is damaged."""
    try:
        return load_file(path)
    except FileNotFoundError:
        raise SAEDirError(missing) from None
    except Exception as exc:  # safetensors raises several types for damaged files
        raise SAEDirError(f"{path}: unreadable ({exc.__class__.__name__}: {exc})") from None
