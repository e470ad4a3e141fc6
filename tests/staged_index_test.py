"""staged_index.py: stock per-partition tensors read as one by TensorFlow."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

from estimator_ckpt._src import reader
from estimator_ckpt._src import staged_index

from tests import checkpoint_layouts

_EMB = checkpoint_layouts.distinct_values([7, 3])
_DENSE = checkpoint_layouts.distinct_values([2, 2], 100)


class StagedIndexTest(parameterized.TestCase, tf.test.TestCase):
  def _stock_checkpoint(self, partitions):
    model_dir = os.path.join(self.create_tempdir().full_path, "stock")
    return checkpoint_layouts.write(
      "stock_tf2",
      model_dir,
      {"emb": _EMB, "dense": _DENSE},
      {"emb": partitions},
    )

  @parameterized.named_parameters(("2_parts", 2), ("3_parts", 3))
  def test_parts_read_as_one_tensor_by_tensorflow(self, partitions):
    contents = reader.read(self._stock_checkpoint(partitions))
    emb = contents.variables["emb"]
    staged = staged_index.stage(contents.bundle, [emb])
    # TensorFlow's own reader, whole and by slice (RestoreV2).
    self.assertAllEqual(tf.train.load_variable(staged, "emb"), _EMB)
    rows = tf.raw_ops.RestoreV2(
      prefix=staged,
      tensor_names=["emb"],
      shape_and_slices=["7 3 2,4:-"],
      dtypes=[tf.float32],
    )[0]
    self.assertAllEqual(rows, _EMB[2:6])
    # Links, not copies: the staged data files are the checkpoint's.
    data = [
      name for name in os.listdir(os.path.dirname(staged)) if ".data-" in name
    ]
    self.assertNotEmpty(data)
    for name in data:
      self.assertTrue(
        os.path.islink(os.path.join(os.path.dirname(staged), name))
      )

  def test_keeps_the_other_entries(self):
    contents = reader.read(self._stock_checkpoint(3))
    emb = contents.variables["emb"]
    keep = staged_index.entries_except(contents.bundle, ["emb"])
    staged = staged_index.stage(contents.bundle, [emb], keep=keep.items())
    dense_key = contents.variables["dense"].keys[0]
    self.assertAllEqual(tf.train.load_variable(staged, dense_key), _DENSE)
    self.assertAllEqual(tf.train.load_variable(staged, "emb"), _EMB)
    self.assertIn(
      "var_list/emb.Spart_1/.ATTRIBUTES/VARIABLE_VALUE",
      dict(tf.train.list_variables(staged)),
    )


if __name__ == "__main__":
  absltest.main()
