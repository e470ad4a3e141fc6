"""Shared test fixtures: golden checkpoints and their manifest.

Not public API (a `testonly` library). Golden checkpoints live in `testdata/`;
`testdata/MANIFEST.json` records every tensor's shape, dtype and SHA-256 so a
test can prove a restore returned exactly the stored values.
"""

import hashlib
import json
import os
import shutil
from typing import Any, Dict

import numpy as np
import tensorflow as tf

from tests import tool_fixtures

# Defined once, in the TensorFlow-free fixtures of the checkpoint tools.
TESTDATA_DIR = tool_fixtures.TESTDATA_DIR
GOLDENS = tool_fixtures.GOLDENS
MANIFEST = "MANIFEST.json"


def testdata_path(*parts: str) -> str:
  """Path of a file under testdata/ (in the source tree or runfiles)."""
  return os.path.join(TESTDATA_DIR, *parts)


def array_digest(value: Any) -> str:
  """SHA-256 of an array's dtype, shape and bytes (strings by content)."""
  array = np.asarray(value)
  digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
  if array.dtype.kind in "OSU":
    for item in array.reshape(-1):
      data = item if isinstance(item, bytes) else str(item).encode()
      digest.update(len(data).to_bytes(8, "little") + data)
  else:
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


def checkpoint_manifest(path: str) -> Dict[str, Dict[str, Any]]:
  """Shape, dtype and digest of every tensor (TensorFlow's own reader).

  Args:
    path: A model dir (its latest checkpoint) or a checkpoint prefix.
  """
  reader = tf.train.load_checkpoint(path)
  dtypes = reader.get_variable_to_dtype_map()
  return {
    key: {
      "shape": list(shape),
      "dtype": dtypes[key].name,
      "sha256": array_digest(reader.get_tensor(key)),
    }
    for key, shape in sorted(reader.get_variable_to_shape_map().items())
  }


def load_manifest(testdata_dir: str = TESTDATA_DIR) -> Dict[str, Any]:
  with open(os.path.join(testdata_dir, MANIFEST)) as f:
    return json.load(f)


def copy_golden(name: str, dst: str) -> str:
  """Copies a golden model dir to `dst` (tests never write to testdata/)."""
  shutil.copytree(testdata_path(GOLDENS[name]), dst, dirs_exist_ok=True)
  return dst


def one_example_input_fn() -> tf.data.Dataset:
  """An input_fn of one (feature, label) pair, repeated forever."""
  return tf.data.Dataset.from_tensor_slices(([1.0], [1.0])).repeat()


def partitioned_model_fn(
  num_partitions: int, *, tf2_checkpoint: bool, vocab_size: int = 8
):
  """A model_fn with a partitioned table `emb` that adds 1 per step.

  Args:
    num_partitions: Partitions of `emb` ([vocab_size, 2], initialized to the
      row index so slices are told apart).
    tf2_checkpoint: Hand the guide's `Checkpoint(var_list={name: v})` over
      `tf1.global_variables()` to the Scaffold (stock TF2 checkpoints), as the
      guide's "Save a TF2 checkpoint in TF1" does; else a TF1 Saver.
    vocab_size: Rows of `emb`.
  """

  def model_fn(features, labels, mode):
    del features, labels
    step = tf.compat.v1.train.get_or_create_global_step()

    def row_index_initializer(shape, dtype=tf.float32, partition_info=None):
      offset = partition_info.single_offset(shape) if partition_info else 0
      rows = tf.range(offset, offset + shape[0], dtype=dtype)[:, None]
      return tf.tile(rows, [1, shape[1]])

    emb = tf.compat.v1.get_variable(
      "emb",
      shape=[vocab_size, 2],
      initializer=row_index_initializer,
      partitioner=tf.compat.v1.fixed_size_partitioner(num_partitions),
    )
    train_op = tf.group(
      [p.assign_add(tf.ones_like(p)) for p in emb] + [step.assign_add(1)]
    )
    scaffold = None
    if tf2_checkpoint:
      ckpt = tf.train.Checkpoint(
        var_list={
          v.name.split(":")[0]: v for v in tf.compat.v1.global_variables()
        }
      )
      scaffold = tf.compat.v1.train.Scaffold(saver=ckpt)
    return tf.estimator.EstimatorSpec(
      mode,
      predictions=tf.constant(1.0),
      loss=tf.constant(1.0),
      train_op=train_op,
      scaffold=scaffold,
    )

  return model_fn


class CallCounter:
  """Wraps a model_fn and counts how often Estimator builds the model."""

  def __init__(self, model_fn):
    self._model_fn = model_fn
    self.calls = 0

  def __call__(self, features, labels, mode):
    self.calls += 1
    return self._model_fn(features, labels, mode)
