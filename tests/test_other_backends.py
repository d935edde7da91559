"""The model numerics and a stock fit on JAX and PyTorch, compared with TensorFlow's.

Runs tests/test_any_backend.py in a subprocess with KERAS_BACKEND=<backend> (without
the TensorFlow conftest), then compares that backend's fit (per-step losses, final
centroids) with this process's TensorFlow run. JAX (CPU) is in the `jax` extra and
runs in CI; PyTorch is not (its wheels are GBs): its cases carry the `torch` marker
and are skipped where torch is not installed (run by hand, see BUILD_NOTES).

Also: one stage-2 step data-parallel over two XLA host devices on JAX against one
device (tests/data_parallel_step.py), and the trainer's smoke run on PyTorch (the
TensorFlow and JAX ones are in test_trainer.py).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_any_backend import fit_losses

TESTS = Path(__file__).parent
NEEDS_TORCH = [
    pytest.mark.torch,
    pytest.mark.skipif(
        importlib.util.find_spec("torch") is None,
        reason="PyTorch is not installed (optional; see BUILD_NOTES)",
    ),
]

BACKENDS = [
    pytest.param("jax", id="jax"),
    pytest.param("torch", id="torch", marks=NEEDS_TORCH),
]


@pytest.fixture(scope="module")
def tensorflow_fit():
    return fit_losses()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_numerics_and_fit_match_tensorflow(backend, tensorflow_fit, tmp_path):
    out = tmp_path / f"{backend}_fit.json"
    env = dict(os.environ, KERAS_BACKEND=backend, JAX_PLATFORMS="cpu", OLTR_FIT_LOSSES_OUT=str(out))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "--noconftest",
            "-p",
            "no:cacheprovider",
            str(TESTS / "test_any_backend.py"),
        ],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-500:]
    run = json.loads(out.read_text())
    # Same weights, data and optimizer; the backends differ in float32 reduction
    # order only (convolutions, batch statistics): ~6e-7 relative seen per step.
    np.testing.assert_allclose(run["losses"], tensorflow_fit["losses"], rtol=1e-4)
    np.testing.assert_allclose(run["centroids"], tensorflow_fit["centroids"], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.distributed
def test_jax_data_parallel_step_matches_one_device(tmp_path):
    # The same global batch of 16 in one step: on one device, and sharded 8 + 8 over
    # two host devices under the DataParallel that make_strategy("auto") sets. The
    # large-margin loss's class counts and repel term are the global batch's either
    # way, so the weights after the step (centroids, batch-norm statistics) agree.
    out = tmp_path / "step.npz"
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=2",
    )
    result = subprocess.run(
        [sys.executable, str(TESTS / "data_parallel_step.py"), str(out)],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = np.load(out)
    assert str(run["distribution"]) == "DataParallel" and int(run["replicas"]) == 2
    assert int(run["centroid_devices"]) == 2  # weights replicated on both devices
    np.testing.assert_allclose(run["parallel_logs"], run["single_logs"], rtol=1e-5)
    names = [str(n) for n in run["names"]]
    assert "meta_embedding/centroid_memory/centroids" in names
    assert run["moved"].all()  # the step changed every weight: nothing compared is inert
    for i, name in enumerate(names):
        np.testing.assert_allclose(
            run[f"parallel_{i}"], run[f"single_{i}"], rtol=1e-5, atol=1e-5, err_msg=name
        )


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("torch", marks=NEEDS_TORCH)])
def test_trainer_smoke_run_on_backend(backend, tmp_path):
    # Trains both stages, evaluates them (every model output turned into numpy at
    # the boundary to the evaluation) and exports through a TensorFlow child process.
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run(
        [sys.executable, str(TESTS.parent / "trainers" / "train.py"), "--smoke"]
        + [f"--workdir={tmp_path}", "--verbose=0"],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| plain" in result.stdout and "| oltr" in result.stdout
    for stage in (1, 2):
        metrics = json.loads((tmp_path / "eval" / f"stage{stage}" / "metrics.json").read_text())
        assert 0.0 <= metrics["metrics"]["closed"]["overall"] <= 1.0
        assert np.isfinite(metrics["metrics"]["open"]["f_measure"])
    assert list((tmp_path / "export").glob("*/1/saved_model.pb"))
