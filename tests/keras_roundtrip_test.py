"""Keras -> Estimator: an Estimator resumes where Keras stopped (issue 13).

A TF1 Estimator trains with AdamOptimizer; its checkpoint is loaded into the
Keras twin and its Adam (`load_weights`), `model.fit` trains on, and the
Keras checkpoint comes back: through `convert(to="tf1")` (the Estimator
resumes from it) and through warm start with `with_optimizer_slots=True`.
Either way the Estimator's next step equals Keras's next step.
"""

import os
from typing import Any, Dict

from absl import app
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import convert_main
from estimator_ckpt import errors

from tests import tool_fixtures

_LR = 0.01
_BETAS = (0.8, 0.99)  # Not Keras's defaults, to see that they are used.
_TF1_STEPS = 3
_KERAS_STEPS = 2
_VARIABLES = ("hidden/kernel", "hidden/bias", "logits/kernel", "logits/bias")
_TOLERANCE = 1e-6
_MOMENTUM = 0.9
# Other optimizers: (TF1 optimizer, the Keras one with the settings that
# continue it, as `load_weights` advises).
_OTHERS = {
  "adagrad": (
    lambda: tf.compat.v1.train.AdagradOptimizer(_LR),
    lambda: tf.keras.optimizers.Adagrad(_LR, epsilon=0.0),
  ),
  "rmsprop": (
    lambda: tf.compat.v1.train.RMSPropOptimizer(_LR),
    lambda: tf.keras.optimizers.RMSprop(_LR, epsilon=1e-10),
  ),
  "rmsprop_legacy": (
    lambda: tf.compat.v1.train.RMSPropOptimizer(_LR),
    lambda: tf.keras.optimizers.legacy.RMSprop(_LR, epsilon=1e-10),
  ),
  "ftrl": (
    lambda: tf.compat.v1.train.FtrlOptimizer(_LR),
    lambda: tf.keras.optimizers.Ftrl(_LR),
  ),
  "ftrl_legacy": (
    lambda: tf.compat.v1.train.FtrlOptimizer(_LR),
    lambda: tf.keras.optimizers.legacy.Ftrl(_LR),
  ),
}


def _data():
  rng = np.random.RandomState(0)
  x = rng.normal(size=(16, 3)).astype(np.float32)
  y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
  return x, y


def _input_fn():
  x, y = _data()
  return tf.data.Dataset.from_tensors(({"x": x}, y)).repeat()


def _model_fn(features, labels, mode, params=None):
  hidden = tf.compat.v1.layers.dense(
    features["x"], 4, activation=tf.nn.relu, name="hidden"
  )
  logits = tf.compat.v1.layers.dense(hidden, 1, name="logits")
  loss = tf.compat.v1.losses.mean_squared_error(labels, logits)
  other = (params or {}).get("other")
  if other:
    optimizer = _OTHERS[other][0]()
  elif (params or {}).get("momentum"):
    optimizer = tf.compat.v1.train.MomentumOptimizer(_LR, _MOMENTUM)
  else:
    optimizer = tf.compat.v1.train.AdamOptimizer(
      _LR, beta1=_BETAS[0], beta2=_BETAS[1]
    )
  train_op = optimizer.minimize(
    loss, global_step=tf.compat.v1.train.get_global_step()
  )
  return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def _estimator(
  model_dir: str, momentum: bool = False, other: str = "", **kwargs
) -> tf.estimator.Estimator:
  config = tf.estimator.RunConfig(
    model_dir=model_dir, tf_random_seed=1, save_checkpoints_steps=100
  )
  return tf.estimator.Estimator(
    _model_fn,
    config=config,
    params={"momentum": momentum, "other": other},
    **kwargs,
  )


def _keras(legacy: bool, momentum: bool = False):
  inputs = tf.keras.Input((3,), name="x")
  hidden = tf.keras.layers.Dense(4, activation="relu", name="hidden")(inputs)
  logits = tf.keras.layers.Dense(1, name="logits")(hidden)
  model = tf.keras.Model(inputs, logits)
  optimizers = tf.keras.optimizers.legacy if legacy else tf.keras.optimizers
  if momentum:
    optimizer = optimizers.SGD(_LR, momentum=_MOMENTUM)
  else:
    optimizer = optimizers.Adam(
      _LR, beta_1=_BETAS[0], beta_2=_BETAS[1], epsilon=1e-8
    )
  return model, optimizer


def _fit(model, steps: int) -> None:
  x, y = _data()
  model.fit(x, y, batch_size=len(x), epochs=steps, shuffle=False, verbose=0)


def _keras_values(
  model, optimizer, legacy: bool, momentum: bool = False
) -> Dict[str, Any]:
  """Weights and TF1-named slots of the Keras model, as numpy."""
  # (legacy slot, new attribute, TF1 slot, TF1 value / Keras value).
  slots = [
    ("m", "_momentums", "Adam", 1.0),
    ("v", "_velocities", "Adam_1", 1.0),
  ]
  if momentum:
    slots = [("momentum", "momentums", "Momentum", -1.0 / _LR)]
  values = {}
  for variable in model.weights:
    name = variable.name[: -len(":0")]
    values[name] = variable.numpy()
    for legacy_slot, attribute, tf1_slot, scale in slots:
      if legacy:
        state = optimizer.get_slot(variable, legacy_slot)
      else:
        index = optimizer._index_dict[optimizer._var_key(variable)]  # pylint: disable=protected-access
        state = getattr(optimizer, attribute)[index]
      values[f"{name}/{tf1_slot}"] = state.numpy() * np.float32(scale)
  values["global_step"] = int(optimizer.iterations.numpy())
  return values


class KerasRoundTripTest(parameterized.TestCase, tf.test.TestCase):
  """TF1 -> Keras -> fit -> TF1, for new and legacy Keras Adam."""

  def _train_in_keras(
    self, legacy: bool, momentum: bool = False, save_weights: bool = False
  ):
    """Estimator steps, then Keras steps; returns what the test needs."""
    root = self.create_tempdir().full_path
    tf1_dir = os.path.join(root, "tf1")
    _estimator(tf1_dir, momentum).train(_input_fn, steps=_TF1_STEPS)
    model, optimizer = _keras(legacy, momentum)
    report = estimator_ckpt.load_weights(model, tf1_dir, optimizer=optimizer)
    self.assertEqual(report.iterations, _TF1_STEPS)
    model.compile(optimizer, "mse")
    _fit(model, _KERAS_STEPS)
    keras_prefix = os.path.join(root, "keras", "ckpt")
    if save_weights:  # The compiled model's optimizer is saved with it.
      model.save_weights(keras_prefix)
    else:
      tf.train.Checkpoint(model=model, optimizer=optimizer).write(keras_prefix)
    saved = _keras_values(model, optimizer, legacy, momentum)
    _fit(model, 1)
    following = _keras_values(model, optimizer, legacy, momentum)
    return root, keras_prefix, saved, following

  def _assert_close(self, expected: Dict[str, Any], path: str) -> None:
    for name, value in expected.items():
      actual = tf.train.load_variable(path, name)
      self.assertAllClose(
        actual, value, atol=_TOLERANCE, rtol=0, msg=f"{name} of {path}"
      )

  @parameterized.named_parameters(
    ("new", False, False),
    ("legacy", True, False),
    ("new_save_weights", False, True),
    ("legacy_save_weights", True, True),
  )
  def test_converted_checkpoint_resumes_the_estimator(
    self, legacy, save_weights
  ):
    root, keras_prefix, saved, following = self._train_in_keras(
      legacy, save_weights=save_weights
    )
    betas = None if legacy else _BETAS  # A legacy Adam saves its betas.
    tf1_dir = os.path.join(root, "back")
    estimator_ckpt.convert(keras_prefix, tf1_dir, to="tf1", adam_betas=betas)
    self.assertEqual(estimator_ckpt.checkpoint_format(tf1_dir), "tf1")
    steps = _TF1_STEPS + _KERAS_STEPS
    self._assert_close(saved, tf1_dir)
    for name, beta in zip(("beta1_power", "beta2_power"), _BETAS):
      self.assertAllClose(
        tf.train.load_variable(tf1_dir, name),
        np.float32(beta) ** (steps + 1),
        rtol=1e-6,
      )
    _estimator(tf1_dir).train(_input_fn, steps=1)
    self._assert_close(following, tf1_dir)

  @parameterized.named_parameters(("new", False), ("legacy", True))
  def test_warm_start_with_slots_continues_keras(self, legacy):
    root, keras_prefix, saved, following = self._train_in_keras(legacy)
    settings = estimator_ckpt.warm_start_settings(
      keras_prefix,
      with_optimizer_slots=True,
      strict=True,
      adam_betas=None if legacy else _BETAS,
    )
    model_dir = os.path.join(root, "warm")
    _estimator(model_dir, warm_start_from=settings).train(_input_fn, steps=1)
    # The global step starts fresh in warm start; all else continues.
    following = dict(following, global_step=1)
    self._assert_close(following, model_dir)

  def test_warm_start_values_equal_the_keras_checkpoint(self):
    _, keras_prefix, saved, _ = self._train_in_keras(legacy=False)
    with tf.Graph().as_default():
      _model_fn(
        *tf.compat.v1.data.make_one_shot_iterator(_input_fn()).get_next(),
        "train",
      )
      summary = estimator_ckpt.warm_start(
        keras_prefix, with_optimizer_slots=True, adam_betas=_BETAS
      )
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        graph_values = {
          v.op.name: session.run(v) for v in tf.compat.v1.global_variables()
        }
    self.assertEqual(summary.not_found, ())
    self.assertEqual(
      summary.warm_started["hidden/kernel/Adam"], "hidden/kernel/Adam"
    )
    self.assertIn("beta1_power", summary.warm_started)
    steps = _TF1_STEPS + _KERAS_STEPS
    for name, value in saved.items():
      if name != "global_step":
        self.assertAllEqual(graph_values[name], value, msg=name)
    self.assertAllClose(
      graph_values["beta1_power"], _BETAS[0] ** (steps + 1), rtol=1e-6
    )
    self.assertAllClose(
      graph_values["beta2_power"], _BETAS[1] ** (steps + 1), rtol=1e-6
    )

  def test_convert_binary_takes_adam_betas(self):
    _, keras_prefix, _, _ = self._train_in_keras(legacy=False)
    dst = os.path.join(self.create_tempdir().full_path, "back")
    stdout, _ = tool_fixtures.run_main(
      convert_main.main,
      [
        "convert",
        "--to=tf1",
        f"--adam_betas={_BETAS[0]},{_BETAS[1]}",
        keras_prefix,
        dst,
      ],
    )
    self.assertTrue(stdout.strip().startswith(dst), stdout)
    steps = _TF1_STEPS + _KERAS_STEPS
    for name, beta in zip(("beta1_power", "beta2_power"), _BETAS):
      self.assertAllClose(
        tf.train.load_variable(dst, name),
        np.float32(beta) ** (steps + 1),
        rtol=1e-6,
      )
    with self.assertRaisesRegex(app.UsageError, "--adam_betas=0.9 is not"):
      tool_fixtures.run_main(
        convert_main.main,
        ["convert", "--to=tf1", "--adam_betas=0.9", keras_prefix, dst + "2"],
      )

  def test_new_adam_without_betas_assumes_keras_defaults(self):
    _, keras_prefix, _, _ = self._train_in_keras(legacy=False)
    dst = os.path.join(self.create_tempdir().full_path, "back")
    with self.assertLogs(level="WARNING") as logs:
      estimator_ckpt.convert(keras_prefix, dst, to="tf1")
    self.assertIn("adam_betas=(beta_1, beta_2)", "\n".join(logs.output))
    self.assertAllClose(
      tf.train.load_variable(dst, "beta1_power"),
      0.9 ** (_TF1_STEPS + _KERAS_STEPS + 1),
      rtol=1e-6,
    )

  def test_save_weights_warm_starts_by_keras_names(self):
    model, _ = _keras(legacy=False)
    prefix = os.path.join(self.create_tempdir().full_path, "weights")
    model.save_weights(prefix)
    expected = {v.name[: -len(":0")]: v.numpy() for v in model.weights}
    with tf.Graph().as_default():
      _model_fn(
        *tf.compat.v1.data.make_one_shot_iterator(_input_fn()).get_next(),
        "train",
      )
      settings = estimator_ckpt.warm_start_settings(prefix, strict=True)
      tf.compat.v1.train.warm_start(*settings)
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        for name in _VARIABLES:
          variable = tf.compat.v1.global_variables(name)[0]
          self.assertAllEqual(session.run(variable), expected[name], msg=name)

  @parameterized.named_parameters(("new", False), ("legacy", True))
  def test_sgd_momentum_is_rescaled_for_tf1(self, legacy):
    root, keras_prefix, saved, following = self._train_in_keras(
      legacy, momentum=True
    )
    tf1_dir = os.path.join(root, "back")
    estimator_ckpt.convert(keras_prefix, tf1_dir, to="tf1")
    self._assert_close(saved, tf1_dir)
    _estimator(tf1_dir, momentum=True).train(_input_fn, steps=1)
    self._assert_close(following, tf1_dir)

    settings = estimator_ckpt.warm_start_settings(
      keras_prefix, with_optimizer_slots=True, strict=True
    )
    model_dir = os.path.join(root, "warm")
    _estimator(model_dir, momentum=True, warm_start_from=settings).train(
      _input_fn, steps=1
    )
    self._assert_close(dict(following, global_step=1), model_dir)

  @parameterized.named_parameters(*((name, name) for name in sorted(_OTHERS)))
  def test_other_optimizers_resume_the_estimator(self, other):
    root = self.create_tempdir().full_path
    tf1_dir = os.path.join(root, "tf1")
    _estimator(tf1_dir, other=other).train(_input_fn, steps=_TF1_STEPS)
    model, _ = _keras(legacy=False)
    optimizer = _OTHERS[other][1]()
    estimator_ckpt.load_weights(model, tf1_dir, optimizer=optimizer)
    model.compile(optimizer, "mse")
    _fit(model, _KERAS_STEPS)
    keras_prefix = tf.train.Checkpoint(model=model, optimizer=optimizer).write(
      os.path.join(root, "keras", "ckpt")
    )
    _fit(model, 1)
    back = os.path.join(root, "back")
    estimator_ckpt.convert(keras_prefix, back, to="tf1")
    _estimator(back, other=other).train(_input_fn, steps=1)
    expected = {v.name[: -len(":0")]: v.numpy() for v in model.weights}
    expected["global_step"] = _TF1_STEPS + _KERAS_STEPS + 1
    self._assert_close(expected, back)

  def test_sgd_momentum_without_learning_rate_is_refused(self):
    model, _ = _keras(legacy=False)
    schedule = tf.keras.optimizers.schedules.ExponentialDecay(_LR, 10, 0.5)
    optimizer = tf.keras.optimizers.SGD(schedule, momentum=0.9)
    model.compile(optimizer, "mse")
    _fit(model, 1)
    root = self.create_tempdir().full_path
    prefix = tf.train.Checkpoint(model=model, optimizer=optimizer).write(
      os.path.join(root, "keras", "ckpt")
    )
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError, "with_optimizer_slots=False"
    ):
      estimator_ckpt.convert(prefix, os.path.join(root, "back"), to="tf1")


if __name__ == "__main__":
  absltest.main()
