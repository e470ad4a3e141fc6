"""migrate_estimator on canned Estimators: in-place, from TF1 to TF2."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from estimator_ckpt import keys
from estimator_ckpt._src import migrate

_FEATURES = [tf.feature_column.numeric_column("x", shape=[2])]


def _input_fn():
  x = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]], np.float32)
  y = np.array([[1], [0], [1], [0]], np.int64)
  return tf.data.Dataset.from_tensor_slices(({"x": x}, y)).repeat().batch(4)


def _eval_input_fn():
  return _input_fn().take(1)


_CANNED = {
  "dnn_classifier": lambda model_dir: tf.estimator.DNNClassifier(
    hidden_units=[4], feature_columns=_FEATURES, model_dir=model_dir
  ),
  "linear_regressor": lambda model_dir: tf.estimator.LinearRegressor(
    feature_columns=_FEATURES, model_dir=model_dir
  ),
  "dnn_linear_combined_classifier": lambda model_dir: (
    tf.estimator.DNNLinearCombinedClassifier(
      linear_feature_columns=_FEATURES,
      dnn_feature_columns=_FEATURES,
      dnn_hidden_units=[4],
      model_dir=model_dir,
    )
  ),
}


class MigrateEstimatorTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.named_parameters(*sorted(_CANNED.items()))
  def test_canned_estimator_resumes_tf1_dir_as_tf2(self, make):
    model_dir = os.path.join(self.create_tempdir().full_path, "model")
    tf1_est = make(model_dir)
    tf1_est.train(_input_fn, steps=3)
    tf1_names = set(tf1_est.get_variable_names())
    tf1_metrics = tf1_est.evaluate(_eval_input_fn)

    tf2_est = migrate.migrate_estimator(tf1_est)
    self.assertEqual(tf2_est.model_dir, model_dir)
    # Evaluation restores the TF1 checkpoint by name: identical metrics.
    self.assertAllClose(tf2_est.evaluate(_eval_input_fn), tf1_metrics)
    tf2_est.train(_input_fn, steps=2)
    stored = {name for name, _ in tf.train.list_variables(model_dir)}
    self.assertIn(keys.OBJECT_GRAPH_KEY, stored)
    # Every TF1 variable, optimizer slots included, now has its TF2 key.
    self.assertContainsSubset(
      {keys.variable_key(name) for name in tf1_names}, stored
    )
    # And the Estimator still answers by TF1 name, as before migration.
    self.assertEqual(set(tf2_est.get_variable_names()), tf1_names)
    self.assertEqual(tf2_est.get_variable_value("global_step"), 5)
    # And the TF2 dir resumes again.
    migrate.migrate_estimator(make(model_dir)).train(_input_fn, steps=1)
    self.assertEqual(
      tf.train.load_checkpoint(model_dir).get_tensor(keys.STEP_KEY), 6
    )


if __name__ == "__main__":
  absltest.main()
