"""Shared pytest setup: quiet TensorFlow, and two logical CPUs for distribution tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
import tensorflow as tf

# Logical devices must be configured before TensorFlow initialises its runtime, so do it
# once here for the whole session: tests that need MirroredStrategy over two replicas
# use "/cpu:0" and "/cpu:1"; every other test is unaffected.
_cpus = tf.config.list_physical_devices("CPU")
try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
    )
except RuntimeError:  # runtime already initialised by another plugin
    pass


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One MirroredStrategy over the two logical CPUs for the whole session.

    Several MirroredStrategy objects in one process reuse collective instance keys,
    and a later one can fail with "Shape mismatch in the collective instance"; tests
    therefore share this one.
    """
    if len(tf.config.list_logical_devices("CPU")) < 2:
        pytest.skip("needs the two logical CPUs configured in conftest.py")
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
