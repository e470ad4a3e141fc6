"""The load benchmark's checkpoint is a real one, and the benchmark runs."""

import os
import re

from absl.testing import absltest
import tensorflow as tf

import estimator_ckpt

from benchmarks import keras_load_benchmark
from tests import tool_fixtures


class KerasLoadBenchmarkTest(tf.test.TestCase):
  def test_checkpoint_is_read_by_tensorflow(self):
    model_dir = os.path.join(self.get_temp_dir(), "estimator")
    prefix = keras_load_benchmark.write_tf1_checkpoint(
      model_dir, table_mib=1, num_small=3
    )
    self.assertEqual(tf.train.latest_checkpoint(model_dir), prefix)
    reader = tf.train.load_checkpoint(prefix)
    rows = keras_load_benchmark.table_rows(1)
    self.assertEqual(
      reader.get_variable_to_shape_map(),
      {
        "global_step": [],
        "embedding": [rows, 64],
        "embedding/Adagrad": [rows, 64],
        **{f"small/kernel_{i}": [16, 16] for i in range(3)},
        **{f"small/kernel_{i}/Adagrad": [16, 16] for i in range(3)},
      },
    )
    self.assertAllEqual(
      reader.get_tensor("embedding/Adagrad"),
      estimator_ckpt.load_variable(prefix, "embedding/Adagrad"),
    )
    estimator_ckpt.verify(prefix)

  def test_benchmark_runs(self):
    stdout, _ = tool_fixtures.run_main(
      keras_load_benchmark.main,
      [
        "keras_load_benchmark",
        "--table_mib=1",
        "--num_small=5",
        "--repeats=1",
        f"--work_dir={self.create_tempdir().full_path}",
      ],
    )
    self.assertIn("model.load_weights (native)", stdout)
    self.assertRegex(stdout, r"ratio \(target <= 1.2x\) +\d+\.\d+x +\d+\.\d+x")
    self.assertLen(re.findall(r"run 1 (ours|native)", stdout), 2)


if __name__ == "__main__":
  absltest.main()
