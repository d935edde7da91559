"""The model numerics and a stock fit on JAX, compared with TensorFlow's.

Runs tests/test_any_backend.py in a subprocess with KERAS_BACKEND=jax (JAX on CPU is
part of requirements.txt) and without the TensorFlow conftest, then compares the
JAX fit's per-step losses and final centroids with this process's TensorFlow run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("jax")

from test_any_backend import fit_losses

TESTS = Path(__file__).parent


@pytest.mark.slow
def test_numerics_and_fit_on_jax_match_tensorflow(tmp_path):
    out = tmp_path / "jax_fit.json"
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu", OLTR_FIT_LOSSES_OUT=str(out))
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
    jax_run = json.loads(out.read_text())
    tf_run = fit_losses()
    # Same weights, data and optimizer; the backends differ in float32 reduction
    # order only (convolutions, batch statistics), ~1e-6 relative per step.
    np.testing.assert_allclose(jax_run["losses"], tf_run["losses"], rtol=1e-4)
    np.testing.assert_allclose(jax_run["centroids"], tf_run["centroids"], rtol=1e-4, atol=1e-5)
