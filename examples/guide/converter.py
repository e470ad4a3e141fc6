"""The guide's `convert_tf1_to_tf2`, verbatim: the one copy in this repository.

"Migrating model checkpoints" converts a TF1 checkpoint by loading every
tensor into a `tf.Variable` and saving `tf.train.Checkpoint(vars=...)`. Tests
read its output (the `vars/` layout) and the convert benchmark times it
against `estimator_ckpt.convert`:

  python -m examples.guide.converter TF1_CHECKPOINT OUTPUT_PREFIX
"""

import sys

import tensorflow as tf


def convert_tf1_to_tf2(checkpoint_path, output_prefix):
  """The guide's function, unchanged (run eagerly)."""
  vars = {}  # pylint: disable=redefined-builtin
  reader = tf.train.load_checkpoint(checkpoint_path)
  dtypes = reader.get_variable_to_dtype_map()
  for key in dtypes.keys():
    vars[key] = tf.Variable(reader.get_tensor(key))
  return tf.train.Checkpoint(vars=vars).save(output_prefix)


if __name__ == "__main__":
  convert_tf1_to_tf2(sys.argv[1], sys.argv[2])
