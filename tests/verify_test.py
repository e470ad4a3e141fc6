"""verify(): checksums of every tensor; comparison by TF1 name."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt._src import verify

from tests import tool_fixtures
from tests import tool_tf_fixtures


class VerificationTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.parameters(*tool_fixtures.GOLDENS)
  def test_goldens_verify(self, name):
    report = estimator_ckpt.verify(tool_fixtures.golden_path(name))
    self.assertIsInstance(report, verify.Report)
    self.assertGreater(report.num_tensors, 0)
    self.assertStartsWith(report.summary(), "OK ")

  @parameterized.parameters("tf1", "tf2")
  def test_against_its_conversion(self, to):
    source = tool_fixtures.golden_path("est-tf1-ranking")
    prefix = estimator_ckpt.convert(
      source, os.path.join(self.create_tempdir().full_path, "dst"), to=to
    )
    report = estimator_ckpt.verify(prefix, against=source)
    self.assertEqual(report.num_variables, 29)
    self.assertIn("bit-identical", report.summary())

  def test_against_stock_tf2_partitions(self):
    tf1_prefix, tf2_prefix, _ = tool_tf_fixtures.partitioned_checkpoints(
      self.create_tempdir().full_path
    )
    estimator_ckpt.verify(tf2_prefix, against=tf1_prefix)

  def test_reports_every_difference(self):
    directory = self.create_tempdir().full_path
    a = tool_tf_fixtures.save_v2(
      os.path.join(directory, "a"),
      {
        "same": tf.constant([1.0, 2.0]),
        "value": tf.constant([1.0, 2.0]),
        "nan_bits": tf.constant(float("nan")),
        "dtype": tf.constant(1, tf.int32),
        "shape": tf.zeros([2]),
        "only_a": tf.zeros([1]),
      },
    )
    b = tool_tf_fixtures.save_v2(
      os.path.join(directory, "b"),
      {
        "same": tf.constant([1.0, 2.0]),
        "value": tf.constant([1.0, 2.5]),
        "nan_bits": tf.bitcast(tf.constant(0x7FC00001, tf.int32), tf.float32),
        "dtype": tf.constant(1, tf.int64),
        "shape": tf.zeros([3]),
        "only_b": tf.zeros([1]),
      },
    )
    with self.assertRaises(errors.CheckpointsDifferError) as raised:
      estimator_ckpt.verify(a, against=b)
    self.assertEqual(
      raised.exception.differences,
      [
        "`dtype`: dtype int32 vs int64",
        "`nan_bits`: values differ",
        f"`only_a`: only in {a}",
        f"`only_b`: only in {b}",
        "`shape`: shape [2] vs [3]",
        "`value`: values differ",
      ],
    )
    self.assertIn("differ in 6 variables", str(raised.exception))

  def test_compares_across_different_partitionings(self):
    directory = self.create_tempdir().full_path
    whole = tool_tf_fixtures.save_v2(
      os.path.join(directory, "whole"),
      {"t": tf.reshape(tf.range(12.0), [4, 3])},
    )
    sliced = tool_tf_fixtures.save_v2(
      os.path.join(directory, "sliced"),
      {},
      {
        "t": (
          [4, 3],
          [
            ("0,1:-", tf.reshape(tf.range(3.0), [1, 3])),
            ("1,3:-", tf.reshape(tf.range(3.0, 12.0), [3, 3])),
          ],
        )
      },
    )
    estimator_ckpt.verify(whole, against=sliced)

  def test_object_graph_naming_a_missing_key(self):
    prefix = estimator_ckpt.convert(
      tool_fixtures.golden_path("est-tf1"),
      os.path.join(self.create_tempdir().full_path, "dst"),
      to="tf2",
    )
    tool_fixtures.rewrite_index(
      prefix,
      lambda entries: entries.pop(b"var_list/var/.ATTRIBUTES/VARIABLE_VALUE"),
    )
    with self.assertRaisesRegex(
      errors.CorruptCheckpointError,
      "object graph of .* names key `var_list/var/.ATTRIBUTES/"
      "VARIABLE_VALUE`, which the index lacks",
    ):
      estimator_ckpt.verify(prefix)


if __name__ == "__main__":
  absltest.main()
