"""Every kind of Estimator keeps its behaviour under TF2 checkpoints (issue 19).

Each test trains the same model stock (TF1 checkpoints) and migrated (TF2
checkpoints) with the same seed, then compares what users see: predictions,
both SavedModel loaders on an export, the estimator's class and methods.
"""

import os
from typing import Any, Callable, Dict

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import keys

tf1 = tf.compat.v1

_X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.5, 2.0]], np.float32)
_Y = np.array([[1.0], [-1.0], [0.5], [2.0]], np.float32)


def _input_fn():
  return tf.data.Dataset.from_tensor_slices(({"x": _X}, _Y)).repeat().batch(4)


def _predict_input_fn():
  return tf.data.Dataset.from_tensor_slices({"x": _X}).batch(4)


def _serving_input_fn():
  x = tf1.placeholder(tf.float32, [None, 2], name="x")
  return tf.estimator.export.ServingInputReceiver({"x": x}, {"x": x})


def _predictions(estimator: tf.estimator.Estimator) -> np.ndarray:
  return np.concatenate(
    [p["y"][None] for p in estimator.predict(_predict_input_fn)]
  )


def _export_outputs(estimator: tf.estimator.Estimator) -> Dict[str, Any]:
  """What both SavedModel loaders serve for `_X` from a fresh export."""
  export_dir = estimator.export_saved_model(
    os.path.join(estimator.model_dir, "export"), _serving_input_fn
  ).decode()
  loaded = tf.saved_model.load(export_dir)
  tf2_loader = loaded.signatures["serving_default"](x=tf.constant(_X))["y"]
  with tf.Graph().as_default(), tf1.Session() as sess:
    meta_graph = tf1.saved_model.loader.load(
      sess, [tf.saved_model.SERVING], export_dir
    )
    signature = meta_graph.signature_def["serving_default"]
    tf1_loader = sess.run(
      signature.outputs["y"].name, {signature.inputs["x"].name: _X}
    )
  return {"tf2_loader": tf2_loader.numpy(), "tf1_loader": tf1_loader}


def _ema_model_fn(features, labels, mode):
  """Trains raw weights; evaluates, predicts and exports their averages.

  The standard TF1 way to serve exponential moving averages: a Scaffold
  whose saver restores each shadow into its variable.
  """
  kernel = tf1.get_variable(
    "dense/kernel", [2, 1], initializer=tf1.glorot_uniform_initializer()
  )
  predictions = tf.matmul(features["x"], kernel)
  ema = tf1.train.ExponentialMovingAverage(0.5)
  if mode == tf.estimator.ModeKeys.TRAIN:
    loss = tf1.losses.mean_squared_error(labels, predictions)
    minimize = tf1.train.GradientDescentOptimizer(0.2).minimize(
      loss, global_step=tf1.train.get_global_step()
    )
    with tf.control_dependencies([minimize]):
      train_op = ema.apply([kernel])
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)
  loss = None
  if labels is not None:
    loss = tf1.losses.mean_squared_error(labels, predictions)
  return tf.estimator.EstimatorSpec(
    mode,
    loss=loss,
    predictions={"y": predictions},
    export_outputs={
      "serving_default": tf.estimator.export.PredictOutput({"y": predictions})
    },
    scaffold=tf1.train.Scaffold(
      saver=tf1.train.Saver(ema.variables_to_restore())
    ),
  )


def _retention_model_fn(features, labels, mode):
  """Sets its own saver, keeping one checkpoint, in training."""
  kernel = tf1.get_variable("kernel", [2, 1])
  loss = tf1.losses.mean_squared_error(labels, tf.matmul(features["x"], kernel))
  train_op = tf1.train.GradientDescentOptimizer(0.1).minimize(
    loss, global_step=tf1.train.get_global_step()
  )
  return tf.estimator.EstimatorSpec(
    mode,
    loss=loss,
    train_op=train_op,
    scaffold=tf1.train.Scaffold(saver=tf1.train.Saver(max_to_keep=1)),
  )


def _checkpoints(model_dir: str) -> int:
  state = tf.train.get_checkpoint_state(model_dir)
  return len(state.all_model_checkpoint_paths)


class UserSaverTest(parameterized.TestCase, tf.test.TestCase):
  """A saver set by the model_fn's Scaffold is honoured, as stock does."""

  def _estimator(
    self, model_fn: Callable[..., Any], model_dir: str, migrate: bool
  ) -> tf.estimator.Estimator:
    estimator = tf.estimator.Estimator(
      model_fn,
      model_dir=model_dir,
      config=tf.estimator.RunConfig(tf_random_seed=3),
    )
    return estimator_ckpt.migrate_estimator(estimator) if migrate else estimator

  def _trained(self, migrate: bool) -> tf.estimator.Estimator:
    estimator = self._estimator(
      _ema_model_fn, self.create_tempdir().full_path, migrate
    )
    estimator.train(_input_fn, steps=5)
    return estimator

  @parameterized.named_parameters(
    ("migrate_estimator", True), ("tf2_checkpoints", False)
  )
  def test_ema_saver_predictions_and_exports_equal_stock(self, migrate):
    stock = self._trained(migrate=False)
    if migrate:
      migrated = self._trained(migrate=True)
    else:
      migrated = tf.estimator.Estimator(
        estimator_ckpt.tf2_checkpoints(_ema_model_fn),
        model_dir=self.create_tempdir().full_path,
        config=tf.estimator.RunConfig(tf_random_seed=3),
      )
      migrated.train(_input_fn, steps=5)
    self.assertEqual(
      estimator_ckpt.checkpoint_format(migrated.model_dir), "tf2"
    )
    averages = _X @ stock.get_variable_value(
      "dense/kernel/ExponentialMovingAverage"
    )
    raw = _X @ stock.get_variable_value("dense/kernel")
    self.assertNotAllClose(averages, raw)  # Else nothing is tested.
    self.assertAllClose(_predictions(stock), averages)
    self.assertAllClose(_predictions(migrated), averages)
    self.assertAllClose(
      migrated.evaluate(_input_fn, steps=1), stock.evaluate(_input_fn, steps=1)
    )
    stock_exports = _export_outputs(stock)
    self.assertAllClose(stock_exports["tf2_loader"], averages)
    for loader, outputs in _export_outputs(migrated).items():
      self.assertAllClose(outputs, stock_exports[loader], msg=loader)

  def test_ema_saver_reads_a_tf1_model_dir_in_place(self):
    stock = self._trained(migrate=False)
    in_place = self._estimator(_ema_model_fn, stock.model_dir, migrate=True)
    self.assertAllClose(_predictions(in_place), _predictions(stock))
    for loader, outputs in _export_outputs(in_place).items():
      self.assertAllClose(outputs, _export_outputs(stock)[loader], msg=loader)

  def test_saver_retention_carries_over(self):
    counts = []
    for migrate in (False, True):
      model_dir = self.create_tempdir().full_path
      estimator = tf.estimator.Estimator(
        _retention_model_fn,
        model_dir=model_dir,
        config=tf.estimator.RunConfig(
          save_checkpoints_steps=1, keep_checkpoint_max=5
        ),
      )
      if migrate:
        estimator = estimator_ckpt.migrate_estimator(estimator)
      estimator.train(_input_fn, steps=3)
      counts.append(_checkpoints(model_dir))
    self.assertEqual(counts, [1, 1])
    latest = tf.train.latest_checkpoint(model_dir)
    self.assertIn(
      keys.variable_key("kernel"),
      {name for name, _ in tf.train.list_variables(latest)},
    )


if __name__ == "__main__":
  absltest.main()
