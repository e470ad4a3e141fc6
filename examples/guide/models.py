"""The Estimator models of the TensorFlow guide "Migrating model checkpoints".

Not public API: these are the guide's exact `model_fn_tf1_ckpt` and
`model_fn_tf2_ckpt` (section "TF2 checkpoints in Estimator"), kept verbatim so
that golden checkpoints, tests and the guide-scenario binary run what the guide
runs. Only the docstrings and the input function's name are ours.
"""

import tensorflow as tf

tf1 = tf.compat.v1


def model_fn_tf1_ckpt(features, labels, mode):
  """The guide's model_fn that saves a TF1 (name-based) checkpoint."""
  del features, labels  # Unused, as in the guide.
  # This model adds 2 to the variable `v` in every train step.
  train_step = tf1.train.get_or_create_global_step()
  v = tf1.get_variable(
    "var", shape=[], dtype=tf.float32, initializer=tf1.constant_initializer(0)
  )
  return tf.estimator.EstimatorSpec(
    mode,
    predictions=v,
    train_op=tf.group(v.assign_add(2), train_step.assign_add(1)),
    loss=tf.constant(1.0),
    scaffold=None,
  )


def model_fn_tf2_ckpt(features, labels, mode):
  """The guide's model_fn that hands `tf.train.Checkpoint` to the Scaffold."""
  del features, labels  # Unused, as in the guide.
  # This model adds 2 to the variable `v` in every train step.
  train_step = tf1.train.get_or_create_global_step()
  v = tf1.get_variable(
    "var", shape=[], dtype=tf.float32, initializer=tf1.constant_initializer(0)
  )
  ckpt = tf.train.Checkpoint(var_list={"var": v}, step=train_step)
  return tf.estimator.EstimatorSpec(
    mode,
    predictions=v,
    train_op=tf.group(v.assign_add(2), train_step.assign_add(1)),
    loss=tf.constant(1.0),
    scaffold=tf1.train.Scaffold(saver=ckpt),
  )


def train_input_fn():
  """The guide's `train_fn`: three examples."""
  return tf.data.Dataset.from_tensor_slices(([1, 2, 3], [4, 5, 6]))
