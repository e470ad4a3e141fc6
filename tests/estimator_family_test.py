"""Every kind of Estimator keeps its behaviour under TF2 checkpoints (issue 19).

Each test trains the same model stock (TF1 checkpoints) and migrated (TF2
checkpoints) with the same seed, then compares what users see: predictions,
both SavedModel loaders on an export, the estimator's class and methods.
"""

import functools
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

  def test_saver_retention_carries_over_unless_given(self):
    counts = []
    for migrate in (False, True, {"max_to_keep": 2}):
      model_dir = self.create_tempdir().full_path
      estimator = tf.estimator.Estimator(
        _retention_model_fn,
        model_dir=model_dir,
        config=tf.estimator.RunConfig(
          save_checkpoints_steps=1, keep_checkpoint_max=5
        ),
      )
      if migrate:
        options = migrate if isinstance(migrate, dict) else {}
        estimator = estimator_ckpt.migrate_estimator(estimator, **options)
      estimator.train(_input_fn, steps=3)
      counts.append(_checkpoints(model_dir))
    # Stock keeps the saver's 1 (not RunConfig's 5); so does the migrated
    # Estimator, unless migrate_estimator is given its own.
    self.assertEqual(counts, [1, 1, 2])
    latest = tf.train.latest_checkpoint(model_dir)
    self.assertIn(
      keys.variable_key("kernel"),
      {name for name, _ in tf.train.list_variables(latest)},
    )

  def test_savers_that_write_tf2_are_kept_and_others_refused(self):
    def model_fn(features, labels, mode, params):
      spec = _retention_model_fn(features, labels, mode)
      return spec._replace(scaffold=params["scaffold"]())

    def train(make_scaffold):
      estimator = tf.estimator.Estimator(
        estimator_ckpt.tf2_checkpoints(model_fn),
        model_dir=self.create_tempdir().full_path,
        config=tf.estimator.RunConfig(save_checkpoints_steps=1),
        params={"scaffold": make_scaffold},
      )
      estimator.train(_input_fn, steps=3)
      return estimator.model_dir

    # The model_fn's own Tf2Saver, with its retention (not RunConfig's 5).
    model_dir = train(lambda: estimator_ckpt.scaffold(max_to_keep=1))
    self.assertEqual(_checkpoints(model_dir), 1)
    self.assertEqual(estimator_ckpt.checkpoint_format(model_dir), "tf2")
    with self.assertRaisesRegex(
      estimator_ckpt.errors.ArgumentTypeError, "tf.compat.v1.train.Saver"
    ):
      train(lambda: tf1.train.Scaffold(saver=object()))


# migrate_estimator keeps the estimator's class (item 2).

_POINTS = np.array(
  [[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0], [9.0, 0.0], [9.0, 1.0]],
  np.float32,
)
_X_COLUMN = tf.feature_column.numeric_column("x", shape=[2])


def _points_input_fn():
  return tf1.train.limit_epochs(tf.constant(_POINTS), num_epochs=1)


def _examples() -> np.ndarray:
  """`_X` as serialized tf.Examples, for the canned estimators' exports."""
  return np.array(
    [
      tf.train.Example(
        features=tf.train.Features(
          feature={
            "x": tf.train.Feature(float_list=tf.train.FloatList(value=x))
          }
        )
      ).SerializeToString()
      for x in _X
    ],
    dtype=object,  # numpy's fixed-width bytes would drop trailing NULs.
  )


def _canned_export(estimator: tf.estimator.Estimator, method: str):
  """Every output of the export's `predict` signature, by the TF1 loader."""
  receiver = tf.estimator.export.build_parsing_serving_input_receiver_fn(
    tf.feature_column.make_parse_example_spec([_X_COLUMN])
  )
  export_dir = getattr(estimator, method)(
    os.path.join(estimator.model_dir, "export"), receiver
  ).decode()
  with tf.Graph().as_default(), tf1.Session() as sess:
    meta_graph = tf1.saved_model.loader.load(
      sess, [tf.saved_model.SERVING], export_dir
    )
    signature = meta_graph.signature_def["predict"]
    names = sorted(signature.outputs)
    values = sess.run(
      [signature.outputs[name].name for name in names],
      {signature.inputs["examples"].name: _examples()},
    )
  return dict(zip(names, values))


def _canned_predictions(estimator: tf.estimator.Estimator):
  return list(
    estimator.predict(lambda: tf.data.Dataset.from_tensors({"x": _X}))
  )


def _linear_model_fn(features, labels, mode, params):
  kernel = tf1.get_variable(
    "dense/kernel",
    [2, params["units"]],
    tf.float32,
    initializer=tf1.glorot_uniform_initializer(),
  )
  predictions = tf.matmul(features["x"], kernel)
  loss = train_op = None
  if labels is not None:
    loss = tf1.losses.mean_squared_error(labels, predictions)
    train_op = tf1.train.GradientDescentOptimizer(0.1).minimize(
      loss, global_step=tf1.train.get_global_step()
    )
  return tf.estimator.EstimatorSpec(
    mode, loss=loss, train_op=train_op, predictions={"y": predictions}
  )


class _Scorer(tf.estimator.Estimator):
  """A user's subclass: own constructor, attributes, methods, constant."""

  KIND = "scorer"

  def __init__(self, model_dir: str, config=None, scale: float = 2.0):
    self.scale = scale
    super().__init__(
      _linear_model_fn, model_dir=model_dir, config=config, params={"units": 1}
    )

  def kernel_norm(self) -> float:
    return float(np.linalg.norm(self.get_variable_value("dense/kernel")))

  def scaled(self, input_fn) -> np.ndarray:
    return np.stack([p["y"] * self.scale for p in self.predict(input_fn)])


def _kmeans(model_dir, config, use_mini_batch=False):
  return tf1.estimator.experimental.KMeans(
    num_clusters=3,
    initial_clusters=_POINTS[[0, 2, 4]] + 0.5,
    use_mini_batch=use_mini_batch,
    model_dir=model_dir,
    config=config,
  )


def _compare_kmeans_mini_batch(test, stock, migrated):
  # Stock's mini-batch update (clustering_ops.KMeans._mini_batch_training_op)
  # gathers the cluster counts and scatter-adds to them in one step with no
  # order between the two. The counts start at 1 and each center gets 2
  # points, so each point weighs 1/3 in the new center, or 1/5 when the add
  # runs first: on a loaded machine either estimator may give x = 0.3
  # instead of 0.1667 (a probe of stock alone: 95 of 3,000 steps under two
  # busy loops). So the exact comparison trains full batch (`_kmeans`); here
  # the centers are compared within that race's reach (0.1333), while the
  # counts (`Variable`) and the assignments do not depend on it.
  stock.train(_points_input_fn, steps=3)
  migrated.train(_points_input_fn, steps=3)
  test.assertAllEqual(migrated.get_variable_value("Variable"), [3, 3, 3])
  test.assertAllEqual(
    migrated.get_variable_value("Variable"),
    stock.get_variable_value("Variable"),
  )
  test.assertAllClose(
    migrated.cluster_centers(), stock.cluster_centers(), atol=0.14
  )
  test.assertAllEqual(
    list(migrated.predict_cluster_index(_points_input_fn)),
    list(stock.predict_cluster_index(_points_input_fn)),
  )


def _compare_kmeans(test, stock, migrated):
  stock.train(_points_input_fn, steps=3)
  migrated.train(_points_input_fn, steps=3)
  test.assertAllClose(migrated.cluster_centers(), stock.cluster_centers())
  test.assertNotAllClose(stock.cluster_centers(), _POINTS[[0, 2, 4]] + 0.5)
  test.assertAllClose(
    migrated.score(_points_input_fn), stock.score(_points_input_fn)
  )
  test.assertAllEqual(
    list(migrated.predict_cluster_index(_points_input_fn)),
    list(stock.predict_cluster_index(_points_input_fn)),
  )
  test.assertAllClose(
    list(migrated.transform(_points_input_fn)),
    list(stock.transform(_points_input_fn)),
  )
  test.assertEqual(migrated.CLUSTER_CENTERS_VAR_NAME, "clusters")


def _canned_input_fn():
  return tf.data.Dataset.from_tensors(({"x": _X}, _Y > 0)).repeat()


def _compare_canned(method):
  def compare(test, stock, migrated):
    for estimator in (stock, migrated):
      estimator.train(_canned_input_fn, steps=3)
    for got, expected in zip(
      _canned_predictions(migrated), _canned_predictions(stock)
    ):
      for name, value in expected.items():
        test.assertAllEqual(got[name], value, msg=name)
    expected = _canned_export(stock, method)
    for name, value in _canned_export(migrated, method).items():
      test.assertAllEqual(value, expected[name], msg=name)

  return compare


def _compare_subclass(test, stock, migrated):
  for estimator in (stock, migrated):
    estimator.train(_input_fn, steps=3)
  test.assertEqual(migrated.KIND, "scorer")
  test.assertEqual(migrated.scale, 2.0)
  test.assertEqual(migrated.kernel_norm(), stock.kernel_norm())
  test.assertAllEqual(
    migrated.scaled(_predict_input_fn), stock.scaled(_predict_input_fn)
  )


_KINDS = {
  "kmeans": (_kmeans, _compare_kmeans),
  "kmeans_mini_batch": (
    functools.partial(_kmeans, use_mini_batch=True),
    _compare_kmeans_mini_batch,
  ),
  "v1_dnn_classifier": (
    lambda model_dir, config: tf1.estimator.DNNClassifier(
      hidden_units=[3],
      feature_columns=[_X_COLUMN],
      model_dir=model_dir,
      config=config,
    ),
    _compare_canned("export_savedmodel"),
  ),
  "v2_linear_regressor": (
    lambda model_dir, config: tf.estimator.LinearRegressor(
      feature_columns=[_X_COLUMN], model_dir=model_dir, config=config
    ),
    _compare_canned("export_saved_model"),
  ),
  "user_subclass": (
    lambda model_dir, config: _Scorer(model_dir, config=config),
    _compare_subclass,
  ),
}


class EstimatorClassTest(parameterized.TestCase, tf.test.TestCase):
  """migrate_estimator returns the argument's class, working as stock."""

  @parameterized.named_parameters(
    (name, make, compare) for name, (make, compare) in sorted(_KINDS.items())
  )
  def test_same_class_same_results(self, make, compare):
    def build():
      return make(
        self.create_tempdir().full_path,
        tf.estimator.RunConfig(tf_random_seed=5),
      )

    stock = build()
    original = build()
    migrated = estimator_ckpt.migrate_estimator(original)
    self.assertIs(type(migrated), type(stock))
    self.assertIsNot(migrated, original)
    # `config` and `params` are deep copies of these (Estimator's properties).
    self.assertIs(migrated._config, original._config)  # pylint: disable=protected-access
    self.assertEqual(migrated.model_dir, original.model_dir)
    self.assertEqual(migrated.params, original.params)
    compare(self, stock, migrated)
    self.assertEqual(
      estimator_ckpt.checkpoint_format(migrated.model_dir), "tf2"
    )
    self.assertEqual(estimator_ckpt.checkpoint_format(stock.model_dir), "tf1")
    # Estimator's own methods answer by TF1 name, as stock.
    self.assertEqual(migrated.get_variable_names(), stock.get_variable_names())

  def test_warm_start_kept_and_migrating_twice_is_harmless(self):
    old = _Scorer(self.create_tempdir().full_path)
    old.train(_input_fn, steps=2)
    estimator = tf.estimator.Estimator(
      _linear_model_fn,
      model_dir=self.create_tempdir().full_path,
      params={"units": 1},
      warm_start_from=estimator_ckpt.warm_start_settings(old.model_dir),
    )
    migrated = estimator_ckpt.migrate_estimator(
      estimator_ckpt.migrate_estimator(estimator)
    )
    # pylint: disable=protected-access
    self.assertIs(migrated._warm_start_settings, estimator._warm_start_settings)
    # pylint: enable=protected-access
    migrated.train(_input_fn, steps=1)
    self.assertEqual(migrated.get_variable_value("global_step"), 1)
    # Trained one step from the warm-started kernel: close, not equal.
    self.assertAllClose(
      migrated.get_variable_value("dense/kernel"),
      old.get_variable_value("dense/kernel"),
      atol=0.5,
    )
    self.assertEqual(
      estimator_ckpt.checkpoint_format(migrated.model_dir), "tf2"
    )


# TPUEstimator with use_tpu=False, on CPU (item 3).

_INITIALIZED_BY_SCAFFOLD_FN = []


def _tpu_input_fn(params):
  return _input_fn().unbatch().batch(params["batch_size"], drop_remainder=True)


def _tpu_predict_input_fn(params):
  return _predict_input_fn().unbatch().batch(params["batch_size"])


def _tpu_model_fn(features, labels, mode, params):
  """Returns TPUEstimatorSpecs whose scaffold_fn sets an init_fn."""
  del params  # TPUEstimator requires the argument.
  kernel = tf1.get_variable(
    "dense/kernel", [2, 1], initializer=tf1.glorot_uniform_initializer()
  )
  predictions = tf.matmul(features["x"], kernel)

  def scaffold_fn():
    return tf1.train.Scaffold(
      init_fn=lambda scaffold, sess: _INITIALIZED_BY_SCAFFOLD_FN.append(1)
    )

  if mode == tf.estimator.ModeKeys.PREDICT:
    return tf1.estimator.tpu.TPUEstimatorSpec(
      mode,
      predictions={"y": predictions},
      export_outputs={
        "serving_default": tf.estimator.export.PredictOutput({"y": predictions})
      },
      scaffold_fn=scaffold_fn,
    )
  loss = tf1.losses.mean_squared_error(labels, predictions)
  train_op = tf1.train.GradientDescentOptimizer(0.2).minimize(
    loss, global_step=tf1.train.get_global_step()
  )

  def metric_fn(labels, predictions):
    return {"mae": tf1.metrics.mean_absolute_error(labels, predictions)}

  return tf1.estimator.tpu.TPUEstimatorSpec(
    mode,
    loss=loss,
    train_op=train_op,
    eval_metrics=(metric_fn, [labels, predictions]),
    scaffold_fn=scaffold_fn,
  )


def _tpu_estimator(model_fn, model_dir: str) -> tf.estimator.Estimator:
  return tf1.estimator.tpu.TPUEstimator(
    model_fn=model_fn,
    config=tf1.estimator.tpu.RunConfig(
      model_dir=model_dir,
      tf_random_seed=3,
      save_checkpoints_steps=1,
      keep_checkpoint_max=2,
      tpu_config=tf1.estimator.tpu.TPUConfig(iterations_per_loop=1),
    ),
    use_tpu=False,
    train_batch_size=4,
    eval_batch_size=4,
    predict_batch_size=4,
    export_to_tpu=False,
  )


def _tpu_results(estimator: tf.estimator.Estimator) -> Dict[str, Any]:
  """Evaluation, predictions and both loaders on an export."""
  results = {
    "evaluate": estimator.evaluate(_tpu_input_fn, steps=1),
    "predict": np.stack(
      [p["y"] for p in estimator.predict(_tpu_predict_input_fn)]
    ),
  }
  results.update(_export_outputs(estimator))
  return results


class TPUEstimatorTest(parameterized.TestCase, tf.test.TestCase):
  """TPUEstimator(use_tpu=False) on CPU, stock against migrated."""

  def _stock(self) -> tf.estimator.Estimator:
    stock = _tpu_estimator(_tpu_model_fn, self.create_tempdir().full_path)
    stock.train(_tpu_input_fn, steps=3)
    return stock

  def assert_same_results(self, got, expected):
    self.assertCountEqual(got, expected)
    for name, value in expected.items():
      self.assertAllClose(got[name], value, msg=name)

  @parameterized.named_parameters(
    ("migrate_estimator", True), ("tf2_checkpoints", False)
  )
  def test_train_evaluate_predict_export_as_stock(self, migrate):
    stock = self._stock()
    model_dir = self.create_tempdir().full_path
    if migrate:
      migrated = estimator_ckpt.migrate_estimator(
        _tpu_estimator(_tpu_model_fn, model_dir)
      )
      self.assertIsInstance(migrated, tf1.estimator.tpu.TPUEstimator)
    else:
      migrated = _tpu_estimator(
        estimator_ckpt.tf2_checkpoints(_tpu_model_fn), model_dir
      )
    del _INITIALIZED_BY_SCAFFOLD_FN[:]
    migrated.train(_tpu_input_fn, steps=3)
    # The user's scaffold_fn ran: its init_fn initialized the fresh model.
    self.assertEqual(_INITIALIZED_BY_SCAFFOLD_FN, [1])
    self.assertEqual(estimator_ckpt.checkpoint_format(model_dir), "tf2")
    # Retention from the TPU RunConfig (keep_checkpoint_max=2), as stock.
    self.assertEqual(_checkpoints(model_dir), 2)
    self.assertEqual(_checkpoints(stock.model_dir), 2)
    self.assert_same_results(_tpu_results(migrated), _tpu_results(stock))

  def test_resumes_a_tf1_dir_in_place(self):
    stock = self._stock()
    expected = _tpu_results(stock)
    in_place = estimator_ckpt.migrate_estimator(
      _tpu_estimator(_tpu_model_fn, stock.model_dir)
    )
    self.assert_same_results(_tpu_results(in_place), expected)
    kernel = stock.get_variable_value("dense/kernel")
    in_place.train(_tpu_input_fn, steps=1)
    self.assertEqual(estimator_ckpt.checkpoint_format(stock.model_dir), "tf2")
    self.assertEqual(in_place.get_variable_value("global_step"), 4)
    self.assertNotAllClose(in_place.get_variable_value("dense/kernel"), kernel)


if __name__ == "__main__":
  absltest.main()
