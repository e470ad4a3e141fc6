"""The `keras` binary as users run it, and the logic behind it."""

import os
import re
import subprocess

from absl.testing import absltest
import numpy as np
import tensorflow as tf

from estimator_ckpt import errors

from examples.ranking import keras_migration
from examples.ranking import keras_model

_BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "keras")
_TIMEOUT_SECS = 300


def _run(*args):
  return subprocess.run(
    [_BINARY, *args],
    capture_output=True,
    text=True,
    timeout=_TIMEOUT_SECS,
    check=False,
  )


class KerasMainTest(tf.test.TestCase):
  def test_default_run_leaves_estimator_with_identical_results(self):
    output_dir = os.path.join(self.create_tempdir().full_path, "out")
    result = _run(f"--output_dir={output_dir}", "--fit_epochs=1")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn("predictions (1000 examples): IDENTICAL", result.stdout)
    self.assertIn("metrics Estimator/Keras: IDENTICAL", result.stdout)
    self.assertRegex(
      result.stdout, r"back in the Estimator: .*, metrics IDENTICAL to Keras"
    )
    self.assertIn("auc           0.48611951    0.48611951", result.stdout)
    self.assertIn(
      "user_embedding/embeddings   <- user_embedding", result.stdout
    )
    difference = re.search(r"max abs difference (\S+)", result.stdout)
    self.assertIsNotNone(difference, result.stdout)
    assert difference is not None
    self.assertLessEqual(float(difference.group(1)), 1e-6)

    # The Keras checkpoint restores into a fresh twin and its Adam, whole.
    prefix = tf.train.latest_checkpoint(os.path.join(output_dir, "keras"))
    self.assertIsNotNone(prefix, result.stdout)
    self.assertIn(f"Keras checkpoint: {prefix}", result.stdout)
    model = keras_model.build()
    optimizer = keras_model.optimizer()
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    checkpoint.restore(prefix).assert_consumed()
    self.assertGreater(int(optimizer.iterations.numpy()), 21)

  def test_non_empty_output_dir_is_a_usage_error(self):
    output_dir = self.create_tempdir()
    output_dir.create_file("keep")
    result = _run(f"--output_dir={output_dir.full_path}")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("is not empty. Pass a new or empty directory", result.stderr)
    self.assertNotIn("Traceback", result.stderr)

  def test_not_a_model_dir_is_a_usage_error(self):
    result = _run(f"--model_dir={self.create_tempdir().full_path}")
    self.assertNotEqual(result.returncode, 0)
    self.assertNotIn("Traceback", result.stderr)
    self.assertIn("checkpoint", result.stderr)


class KerasMigrationTest(tf.test.TestCase):
  def test_options_are_validated(self):
    with self.assertRaisesRegex(errors.InvalidArgumentError, "batch_size"):
      keras_migration.LeavingOptions(batch_size=0)
    with self.assertRaisesRegex(errors.InvalidArgumentError, "fit_epochs"):
      keras_migration.LeavingOptions(fit_epochs=-1)

  def test_tf1_metrics_are_the_model_fns(self):
    labels = np.array([1, 0, 1, 1, 0], np.float32)
    logits = np.array([2.0, -1.0, -0.5, 0.5, 0.25], np.float32)
    metrics = keras_migration.tf1_metrics(logits, labels, batch_size=2)
    self.assertAllClose(metrics["accuracy"], 3 / 5)
    # The loss is the mean of the batch means (2, 2 and 1 examples), as
    # Estimator.evaluate averages its batch losses.
    losses = tf.nn.sigmoid_cross_entropy_with_logits(labels, logits).numpy()
    expected = np.mean([losses[:2].mean(), losses[2:4].mean(), losses[4]])
    self.assertAllClose(metrics["loss"], expected)

  def test_max_difference_needs_every_keras_name(self):
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError, "lacks `b`"
    ):
      keras_migration.max_difference({"a": np.zeros(2)}, {"b": np.zeros(2)})
    self.assertEqual(
      keras_migration.max_difference(
        {"a": np.array([1.0, 2.0])}, {"a": np.array([1.0, 2.5])}
      ),
      0.5,
    )


if __name__ == "__main__":
  absltest.main()
