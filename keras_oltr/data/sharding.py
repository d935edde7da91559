"""The layout of a `tf.distribute` input pipeline: replicas, pipelines, pipeline id.

A `tf.distribute.InputContext` says how many replicas a step has, how many input
pipelines feed them and which pipeline this one is; `input_layout` validates it
against the global batch size (no context: one replica, one pipeline).
"""

from __future__ import annotations


def input_layout(input_context, global_batch_size: int):
    """Returns (num_replicas, num_pipelines, pipeline_id) after validating them."""
    if input_context is None:
        return 1, 1, 0
    replicas = int(input_context.num_replicas_in_sync)
    pipelines = int(input_context.num_input_pipelines)
    pipeline_id = int(input_context.input_pipeline_id)
    if global_batch_size % replicas:
        raise ValueError(
            "`global_batch_size` must be divisible by the number of replicas in sync. "
            f"Received: global_batch_size={global_batch_size}, num_replicas={replicas}"
        )
    if replicas % pipelines:
        raise ValueError(
            "The number of replicas must be a multiple of the number of input pipelines. "
            f"Received: num_replicas={replicas}, num_input_pipelines={pipelines}"
        )
    return replicas, pipelines, pipeline_id
