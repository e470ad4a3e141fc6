"""The benchmark's inputs are real checkpoints, and it runs (tiny, untimed)."""

import os
import re

from absl.testing import absltest
import tensorflow as tf

import estimator_ckpt

from benchmarks import convert_benchmark
from benchmarks import synthetic
from tests import tool_fixtures
from tests import tool_tf_fixtures


class BenchmarkTest(tf.test.TestCase):
  def test_synthetic_checkpoint_is_read_by_tensorflow(self):
    model_dir = os.path.join(self.get_temp_dir(), "synthetic")
    prefix = synthetic.write_estimator_checkpoint(
      model_dir, table_bytes=1 << 20, num_small=20, step=7
    )
    self.assertEqual(tf.train.latest_checkpoint(model_dir), prefix)
    reader = tf.train.load_checkpoint(prefix)
    self.assertLen(reader.get_variable_to_shape_map(), 22)
    self.assertEqual(reader.get_tensor("global_step"), 7)
    tool_tf_fixtures.assert_bit_equal(
      self,
      reader.get_tensor("embedding"),
      estimator_ckpt.load_variable(prefix, "embedding"),
    )
    estimator_ckpt.verify(prefix)

  def test_benchmark_runs(self):
    stdout, _ = tool_fixtures.run_main(
      convert_benchmark.main,
      ["convert_benchmark", "--size_mb=1", "--repeats=1", "--skip_guide"],
    )
    self.assertIn("convert CLI, beyond start-up", stdout)
    self.assertIn("peak RSS, large - tiny checkpoint < 64 MB", stdout)
    # Peak RSS is each command's own, not this (TensorFlow-sized) process's,
    # which a child started straight from it would report.
    cp_rss = re.search(r"^cp -r .* (\d+) MB$", stdout, re.MULTILINE)
    self.assertIsNotNone(cp_rss, stdout)
    self.assertLess(int(cp_rss.group(1)), 32, stdout)


if __name__ == "__main__":
  absltest.main()
