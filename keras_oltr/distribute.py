"""Cross-replica helpers, the one place that knows about tf.distribute.

The OLTR loss needs a few global quantities (the global batch size, per-class counts
and the repel sum over the whole batch) while Keras runs it once per replica. Under
TensorFlow's `tf.distribute` they are all-reduced (SUM) across the replicas in
sync; on the JAX and PyTorch backends one step computes over the whole global batch
(on one device, or sharded by JAX over several), so the helpers are the identity.
TensorFlow is imported lazily and only on the TensorFlow backend: `keras_oltr.layers`,
`losses` and `models` import this module and must load without TensorFlow under
`KERAS_BACKEND=jax` or `torch`.

`make_strategy` is the one place that decides a run's parallelism, per backend:
TensorFlow trains on a tf.distribute strategy (MirroredStrategy on one host,
MultiWorkerMirroredStrategy across hosts); JAX trains data-parallel over its local
devices through Keras' own distribution API (`keras.distribution.DataParallel`),
where one jit-compiled step sees the whole global batch sharded over the devices,
so the global quantities above need no all-reduce either; PyTorch trains on one
device. `worker_info` and `sum_over_workers` serve the multi-worker trainer.
"""

import json
import os

import keras

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def _tf():
    """The tensorflow module when Keras runs on it, else None (nothing to reduce)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    return tf


def _replica_context(tf):
    """The replica context of a step running on several replicas, else None."""
    if tf.distribute.in_cross_replica_context():
        return None
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return None
    return ctx


def replica_sum(value):
    """Sum of `value` over the replicas in sync (identity outside tf.distribute).

    Works in the replica context of any strategy, including the default one, and in a
    cross-replica context (where there is a single logical copy of the value).
    """
    tf = _tf()
    ctx = None if tf is None else _replica_context(tf)
    if ctx is None:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas():
    """Replicas in sync as a float (1 outside tf.distribute or in cross-replica context)."""
    tf = _tf()
    ctx = None if tf is None else _replica_context(tf)
    return 1.0 if ctx is None else float(ctx.num_replicas_in_sync)


def make_strategy(name="auto"):
    """Decides the run's parallelism for the Keras backend; returns its tf.distribute strategy.

    Call it before any Keras model exists. TensorFlow: auto is
    MultiWorkerMirroredStrategy when TF_CONFIG names several tasks, MirroredStrategy
    when there are several GPUs, else the default strategy (one device). JAX: auto
    with more than one local device sets `keras.distribution.DataParallel` over them
    (`keras.distribution.set_distribution`; Keras' fit then shards every global
    batch over the devices, and the weights are replicated) and one_device trains on
    one; the returned strategy is the default one, whose single "replica" is the
    whole global batch. PyTorch: one device. mirrored and multi_worker are
    tf.distribute strategies: on JAX or PyTorch they are a ValueError.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    import tensorflow as tf

    backend = keras.backend.backend()
    if backend != "tensorflow":
        if name not in ("auto", "one_device"):
            raise ValueError(
                f"`strategy` {name!r} is a tf.distribute strategy and needs "
                f"KERAS_BACKEND=tensorflow; on {backend} use 'auto' (JAX: data-parallel "
                f"over the local devices) or 'one_device'. Received: KERAS_BACKEND={backend}"
            )
        devices = keras.distribution.list_devices() if backend == "jax" else []
        if name == "auto" and len(devices) > 1:
            keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return tf.distribute.get_strategy()

    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    num_tasks = sum(len(v) for v in cluster.values())
    if name == "multi_worker" or (name == "auto" and num_tasks > 1):
        if not cluster:
            raise ValueError(
                "--strategy=multi_worker needs TF_CONFIG with a cluster spec. "
                "Received: TF_CONFIG unset"
            )
        return _nest_reducing_multi_worker_strategy(tf)
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


def num_data_replicas(strategy):
    """Into how many parts a step splits the global batch (the batch must divide).

    The devices of Keras' DataParallel distribution when `make_strategy` set one
    (JAX), else the replicas in sync of `strategy`.
    """
    distribution = keras.distribution.distribution()
    if distribution is not None:
        return int(distribution.device_mesh.devices.size)
    return int(strategy.num_replicas_in_sync)


def describe_parallelism(strategy):
    """One line for the log: what trains the run's steps, on how many replicas."""
    distribution = keras.distribution.distribution()
    if distribution is not None:
        return (
            f"{type(distribution).__name__} over {num_data_replicas(strategy)} devices "
            f"({', '.join(str(d) for d in distribution.device_mesh.devices.flat)})"
        )
    return f"strategy {type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s)"


def _nest_reducing_multi_worker_strategy(tf):
    """A MultiWorkerMirroredStrategy whose `reduce` also takes a nested structure.

    `Strategy.reduce` documents nested values, and MirroredStrategy reduces them, but
    MultiWorkerMirroredStrategy (TF 2.21) passes the whole nest to its cross-device op
    and fails ("Attempt to convert a value (PerReplica...) to a Tensor"). Keras 3.15's
    `fit` reduces one (x, y) batch that way before training (keras-team/keras#20585),
    so stock `fit` cannot run under it. Reducing each tensor on its own is what the
    nested call means; only the public `reduce` method is overridden.
    """

    class NestReducingMultiWorkerMirroredStrategy(tf.distribute.MultiWorkerMirroredStrategy):
        def reduce(self, reduce_op, value, axis):
            parent = super()
            return tf.nest.map_structure(
                lambda v: None if v is None else parent.reduce(reduce_op, v, axis), value
            )

    return NestReducingMultiWorkerMirroredStrategy()


def worker_info(strategy):
    """(is_chief, worker_index, num_workers) of this process."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True, 0, 1
    spec = resolver.cluster_spec().as_dict()
    task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
    workers = len(spec.get("worker", [])) + len(spec.get("chief", []))
    index = task_id if "chief" not in spec else (0 if task_type == "chief" else task_id + 1)
    is_chief = task_type == "chief" or ("chief" not in spec and task_id == 0)
    return is_chief, index, workers


def sum_over_workers(strategy, value):
    """Sums a host-local tensor over the workers of `strategy` (identity for one worker).

    Every replica contributes value / local_replicas inside an all-reduce, so each
    worker's value counts once whatever its number of devices.
    """
    import tensorflow as tf

    _, _, num_workers = worker_info(strategy)
    if num_workers == 1:
        return tf.convert_to_tensor(value)
    local_replicas = strategy.num_replicas_in_sync // num_workers
    value = tf.convert_to_tensor(value) / local_replicas

    def fn():
        ctx = tf.distribute.get_replica_context()
        return ctx.all_reduce(tf.distribute.ReduceOp.SUM, value)

    result = strategy.run(fn)
    return strategy.experimental_local_results(result)[0]


def reducible_logs(logs):
    """Shapes a step's scalar logs so that Keras can reduce them across workers.

    Under MultiWorkerMirroredStrategy Keras 3 (3.15) reduces per-replica logs with
    `axis=0`, which rejects scalars; shape [1] reduces to the same value. Elsewhere
    the logs are returned unchanged.
    """
    tf = _tf()
    if tf is None or not isinstance(
        tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy
    ):
        return logs
    return {key: tf.reshape(value, (1,)) for key, value in logs.items()}
