"""The Ray executor on a real local Ray cluster: same chunks, same weights as the local executor."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch

from superposition.backends.ray import RayExecutor
from superposition.run import load_run
from superposition.sweep import load_sweep, run_sweep

from .test_sweep import small_spec

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster():
    """A local two-CPU Ray cluster, started here and stopped (only it) afterwards."""
    if ray.is_initialized():
        pytest.skip("a Ray instance is already running in this process")
    info = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield info.address_info["address"]
    ray.shutdown()


@pytest.mark.slow
def test_ray_chunks_equal_local_chunks_bit_for_bit(tmp_path, cluster):
    spec = small_spec()
    local = run_sweep(spec, tmp_path / "local", workers=1, compile=False, progress=False)
    remote = run_sweep(spec, tmp_path / "ray", executor=RayExecutor(), compile=False, progress=False)
    assert remote.trained == remote.chunks == 4
    pd.testing.assert_frame_equal(remote.index, local.index)
    for chunk in sorted(set(local.index["chunk"])):
        a, b = load_run(tmp_path / "local" / chunk), load_run(tmp_path / "ray" / chunk)
        assert a.config == b.config
        assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


@pytest.mark.slow
def test_cli_joins_an_existing_cluster_with_ray_address(tmp_path, cluster):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(small_spec().to_dict()))
    out = tmp_path / "s"
    cmd = [sys.executable, "-m", "superposition.cli", "sweep", str(spec_file), "--out", str(out),
           "--ray-address", cluster, "--compile", "off", "--quiet"]
    result = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "12 models in 4 chunks (4 trained now, 0 done before)" in result.stdout
    reference = run_sweep(small_spec(), tmp_path / "local", workers=1, compile=False, progress=False)
    pd.testing.assert_frame_equal(load_sweep(out), reference.index)
