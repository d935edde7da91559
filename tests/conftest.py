"""Shared pytest setup: quiet TensorFlow, and two logical CPUs for distribution tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
