"""What the distribution-strategy tests share: a model, its data, saved steps.

A linear model trained with Adagrad (a slot per variable) on two fixed
examples, and the steps of a model dir's checkpoints, oldest first.
"""

from typing import Any, List

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


def model_fn(
  features: tf.Tensor, labels: tf.Tensor, mode: str
) -> tf.estimator.EstimatorSpec:
  """A linear model `w` (two weights, from zero), Adagrad, the global step."""
  w = tf1.get_variable("w", [2], initializer=tf1.zeros_initializer())
  loss = tf.reduce_mean(tf.square(tf.reduce_sum(features * w, 1) - labels))
  train = tf1.train.AdagradOptimizer(0.1).minimize(
    loss, global_step=tf1.train.get_global_step()
  )
  return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train)


def input_fn() -> Any:
  """Two examples of two features and their labels, repeated."""
  features = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
  labels = np.array([1.0, 2.0], np.float32)
  return tf.data.Dataset.from_tensors((features, labels)).repeat()


def saved_steps(model_dir: str) -> List[int]:
  """The steps of the checkpoints the state file lists (none: [])."""
  state = tf.train.get_checkpoint_state(model_dir)
  if state is None:
    return []
  return [
    int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths
  ]
