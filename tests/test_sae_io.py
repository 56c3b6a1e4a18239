"""SAE run directories and SAELens interoperability: round trips, validation of what is read."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from superposition.sae import (
    SAEDirError,
    build_source,
    evaluate_sae,
    export_saelens,
    import_saelens,
    load_sae,
    save_sae,
    train_sae,
)
from superposition.sae.model import decode, encode

from .test_sae import small


@pytest.fixture(scope="module", params=["relu", "topk", "batchtopk"])
def trained(request):
    return train_sae(small(request.param, steps=40))


def _encode(sae, x):
    threshold = sae.threshold if sae.config.architecture in ("batchtopk", "jumprelu") else None
    return encode(sae.params, x, sae.buffers, threshold).acts


def test_save_load_round_trip_reproduces_encodings(trained, tmp_path):
    save_sae(trained, tmp_path / "sae")
    back = load_sae(tmp_path / "sae")
    assert back.config == trained.config and back.final_loss == trained.final_loss
    x = build_source(trained.config).batch(7, 32)
    assert torch.equal(_encode(back, x), _encode(trained, x))
    assert not list(tmp_path.glob("sae/.*.tmp"))


def test_load_rejects_what_does_not_fit(trained, tmp_path):
    path = save_sae(trained, tmp_path / "sae")
    weights = load_file(path / "weights.safetensors")
    with pytest.raises(SAEDirError, match="no such SAE run directory"):
        load_sae(tmp_path / "missing")
    bad = dict(weights, W_dec=weights["W_dec"][:, :3].contiguous())
    save_file(bad, path / "weights.safetensors")
    with pytest.raises(SAEDirError, match="do not match the config"):
        load_sae(path)
    nan = dict(weights, b_dec=torch.full_like(weights["b_dec"], float("nan")))
    save_file(nan, path / "weights.safetensors")
    with pytest.raises(SAEDirError, match="b_dec has non-finite values"):
        load_sae(path)
    padded = {k: v.clone() for k, v in weights.items()}
    padded["W_dec"][0, -1] = 1.0  # instance 0 has 8 latents of 16: row 15 is padding
    save_file(padded, path / "weights.safetensors")
    with pytest.raises(SAEDirError, match="padding latents"):
        load_sae(path)
    (path / "weights.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(SAEDirError, match="unreadable"):
        load_sae(path)
    (path / "config.json").write_text('{"architecture": "relu", "n_latents": [8], "k": [2]}')
    with pytest.raises(SAEDirError, match=r"not an SAE config \(sae.k"):
        load_sae(path)
    (path / "metrics.json").unlink()
    with pytest.raises(SAEDirError):
        load_sae(path)


def test_saelens_export_import_round_trip(trained, tmp_path):
    x = build_source(trained.config).batch(3, 64)
    # batchtopk is exported as its inference rule (a JumpReLU at the learnt threshold)
    threshold = trained.threshold if trained.config.architecture == "batchtopk" else None
    ours = encode(trained.params, x, trained.buffers, threshold).acts
    recon = decode(trained.params, ours)
    for i, point in enumerate(trained.config.grid()):
        path = export_saelens(trained, i, tmp_path / f"sl{i}")
        cfg = json.loads((path / "cfg.json").read_text())
        assert cfg["d_sae"] == point.n_latents and cfg["d_in"] == 12
        back = import_saelens(path)
        acts = _encode(back, x)
        assert torch.allclose(acts[0], ours[i, :, : point.n_latents], atol=1e-6)
        assert torch.allclose(decode(back.params, acts)[0], recon[i], atol=1e-6)
    scores = evaluate_sae(back, build_source(trained.config))  # an imported SAE is scored like ours
    assert scores.n_true == 24 and len(scores.mmcs) == 1


def test_saelens_import_rejects_bad_directories(trained, tmp_path):
    path = export_saelens(trained, 0, tmp_path / "sl")
    cfg = json.loads((path / "cfg.json").read_text())
    for change, message in [({"architecture": "gated"}, "architecture = 'gated' is not supported"),
                            ({"d_sae": 0}, "d_sae = 0 is invalid"),
                            ({"normalize_activations": "layer_norm"}, "normalize_activations = 'layer_norm'"),
                            ({"d_in": 5}, "W_enc has shape")]:
        (path / "cfg.json").write_text(json.dumps(cfg | change))
        with pytest.raises(SAEDirError, match=message):
            import_saelens(path)
    (path / "cfg.json").write_text("[1, 2]")
    with pytest.raises(SAEDirError, match="must hold a JSON object"):
        import_saelens(path)


def test_saelens_loads_our_export_and_gives_the_same_encodings(trained, tmp_path):
    """Needs the real package: pip install 'superposition[saelens]'."""
    sae_lens = pytest.importorskip("sae_lens")
    x = build_source(trained.config).batch(5, 64)
    threshold = trained.threshold if trained.config.architecture == "batchtopk" else None
    ours = encode(trained.params, x, trained.buffers, threshold).acts
    recon = decode(trained.params, ours)
    for i, point in enumerate(trained.config.grid()):
        path = export_saelens(trained, i, tmp_path / f"sl{i}")
        theirs = sae_lens.SAE.load_from_disk(str(path))
        with torch.no_grad():
            acts = theirs.encode(x)
            assert torch.allclose(acts, ours[i, :, : point.n_latents], atol=1e-5)
            assert torch.allclose(theirs.decode(acts), recon[i], atol=1e-5)
        theirs.save_model(tmp_path / f"back{i}")  # and what SAELens writes, we read
        back = import_saelens(tmp_path / f"back{i}")
        assert torch.allclose(_encode(back, x)[0], ours[i, :, : point.n_latents], atol=1e-5)
