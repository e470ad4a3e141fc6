"""Checkpoints in every layout warm start must read (testonly, not public).

Each writer builds a graph of `tf.compat.v1.get_variable`s holding the given
values (optionally partitioned along axis 0 with `fixed_size_partitioner`),
and saves them the way one real-world writer does:

* `tf1`: a stock TF1 `Saver` (names as keys; partitions as slices of one
  tensor), as Estimator's default Scaffold does.
* `scaffold`: the layout of estimator_ckpt's Scaffold factory
  (estimator_ckpt.keys): `var_list/<escaped name>/.ATTRIBUTES/VARIABLE_VALUE`
  with a partitioned variable as ONE logical tensor stored as slices,
  `step/...`, a `global_step` alias and the object graph of
  `keys.object_graph`. Written with a plain TF1 Saver, so tests control the
  partitioning and values directly; tests/warm_starting_estimator_test.py
  also reads model dirs written by the real `estimator_ckpt.scaffold()`.
* `stock_tf2`: the guide's "Save a TF2 checkpoint in TF1",
  `tf.train.Checkpoint(var_list={v.name.split(':')[0]: v ...})` over
  `tf1.global_variables()`: one full tensor per partition
  (`var_list/emb.Spart_0/...`).
* `guide_converted`: the guide's `convert_tf1_to_tf2`, verbatim (keys
  `vars/<name>`, every object-graph `full_name` is `Variable`).
"""

import os
from typing import Mapping, Optional

import numpy as np
import tensorflow as tf

from estimator_ckpt import keys

tf1 = tf.compat.v1

LAYOUTS = ("tf1", "scaffold", "stock_tf2")


def distinct_values(shape, start: float = 0.0, dtype=np.float32) -> np.ndarray:
  """Values that tell every element apart: start, start + 1, ..."""
  size = int(np.prod(shape)) if shape else 1
  return (
    (np.arange(size, dtype=np.float64) + start).astype(dtype).reshape(shape)
  )


def slice_initializer(value: np.ndarray):
  """An initializer giving each partition its slice of `value`."""

  def initializer(shape, dtype=None, partition_info=None):
    if partition_info is None:
      return tf.constant(value, dtype=dtype)
    region = tuple(
      slice(offset, offset + size)
      for offset, size in zip(partition_info.var_offset, shape)
    )
    return tf.constant(value[region], dtype=dtype)

  return initializer


def create_variables(
  values: Mapping[str, np.ndarray],
  partitions: Optional[Mapping[str, int]] = None,
):
  """Creates `get_variable`s for `values` in the default graph.

  Returns:
    name -> Variable or PartitionedVariable.
  """
  partitions = partitions or {}
  created = {}
  for name, given in values.items():
    value = np.asarray(given)
    count = partitions.get(name, 0)
    created[name] = tf1.get_variable(
      name,
      shape=value.shape,
      dtype=tf.as_dtype(value.dtype),
      initializer=slice_initializer(value),
      partitioner=(tf1.fixed_size_partitioner(count) if count else None),
    )
  return created


def write(
  layout: str,
  model_dir: str,
  values: Mapping[str, np.ndarray],
  partitions: Optional[Mapping[str, int]] = None,
  step: int = 3,
) -> str:
  """Writes `values` in `layout` as a model dir; returns the prefix."""
  tf.io.gfile.makedirs(model_dir)
  with tf.Graph().as_default():
    created = create_variables(values, partitions)
    global_step = tf1.train.get_or_create_global_step()
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      sess.run(global_step.assign(step))
      prefix = os.path.join(model_dir, "model.ckpt")
      if layout == "tf1":
        return tf1.train.Saver().save(sess, prefix, global_step=step)
      if layout == "scaffold":
        return _write_scaffold(sess, prefix, created, global_step, step)
      if layout == "stock_tf2":
        ckpt = tf.train.Checkpoint(
          var_list={v.name.split(":")[0]: v for v in tf1.global_variables()}
        )
        return ckpt.save(prefix)  # Uses the default session.
  raise ValueError(f"unknown layout {layout!r}")


def _write_scaffold(sess, prefix, created, global_step, step):
  graph = keys.object_graph(created)
  object_graph = tf1.get_variable(
    "object_graph",
    initializer=tf.constant(graph.SerializeToString()),
    trainable=False,
  )
  # The same variable cannot be saved under two names: the alias is a copy.
  alias = tf1.get_variable(
    "step_alias", initializer=tf.constant(step, tf.int64), trainable=False
  )
  sess.run([object_graph.initializer, alias.initializer])
  var_list = {keys.variable_key(name): var for name, var in created.items()}
  var_list[keys.STEP_KEY] = global_step
  var_list[keys.GLOBAL_STEP_NAME] = alias
  var_list[keys.OBJECT_GRAPH_KEY] = object_graph
  return tf1.train.Saver(var_list=var_list).save(sess, prefix, global_step=step)


def read_values(names) -> Mapping[str, np.ndarray]:
  """Initialises the default graph and reads variables by TF1 name."""
  store = {}
  for var in tf1.global_variables():
    store.setdefault(keys.save_name(var), []).append(var)
  tensors = {}
  for name in names:
    parts = store[name]
    if getattr(parts[0], "_save_slice_info", None) is None:
      tensors[name] = parts[0]
    else:  # Partitions, along axis 0 as fixed_size_partitioner makes them.
      parts.sort(key=lambda v: v._save_slice_info.var_offset[0])  # pylint: disable=protected-access
      tensors[name] = tf.concat(parts, axis=0)
  with tf1.Session() as sess:
    sess.run(tf1.global_variables_initializer())
    return sess.run(tensors)
