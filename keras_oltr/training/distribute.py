"""tf.distribute helpers: choosing a strategy, chief detection, per-worker sums."""

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker")


def make_strategy(name="auto"):
    """Builds the tf.distribute strategy named `name`.

    auto: MultiWorkerMirroredStrategy when TF_CONFIG names several tasks,
    MirroredStrategy when there are several GPUs, else the default strategy.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    num_tasks = sum(len(v) for v in cluster.values())
    if name == "multi_worker" or (name == "auto" and num_tasks > 1):
        if not cluster:
            raise ValueError(
                "--strategy=multi_worker needs TF_CONFIG with a cluster spec. "
                "Received: TF_CONFIG unset"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        return tf.distribute.MirroredStrategy()
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    return tf.distribute.get_strategy()


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
