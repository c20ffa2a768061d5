"""Sharding and batching shared by every tf.data pipeline (pairs and detection).

Both :mod:`isp_tf.data.pipeline` and :mod:`isp_tf.data.rawnod` finish their
datasets here, so neither imports the other for it.
"""
from __future__ import annotations

import numpy as np

from isp_tf._keras import tf
from isp_tf.errors import DatasetError

__all__ = ["AUTOTUNE", "batch_and_prefetch", "shard_indices"]

AUTOTUNE = tf.data.AUTOTUNE


def shard_indices(num_examples: int, batch_size: int, input_context=None):
    """The example indices this input pipeline reads, and its per-replica batch size.

    Without an ``input_context`` every example and the global batch; under
    tf.distribute, pipeline ``i`` of ``n`` takes every n-th example from ``i``.
    """
    shard_id, num_shards = 0, 1
    if input_context is not None:
        shard_id, num_shards = input_context.input_pipeline_id, input_context.num_input_pipelines
        batch_size = input_context.get_per_replica_batch_size(batch_size)
    indices = np.arange(num_examples, dtype=np.int64)[shard_id::num_shards]
    if len(indices) == 0:
        raise DatasetError(f"{num_examples} examples cannot feed {num_shards} input pipelines")
    return indices, batch_size


def batch_and_prefetch(ds, batch_size: int, repeat: bool, input_context=None):
    """Batch, make the order deterministic, set tf.distribute's sharding, prefetch.

    A pipeline built for one ``input_context`` is already sharded (auto-sharding
    off); otherwise tf.distribute shards by element (``DATA``), so workers never
    see the same pair.
    """
    ds = ds.batch(batch_size, drop_remainder=repeat)
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF if input_context is not None
        else tf.data.experimental.AutoShardPolicy.DATA)
    return ds.with_options(options).prefetch(AUTOTUNE)
