"""`load_weights`: Estimator checkpoints into Keras models and optimizers.

Real TensorFlow, eager. The Estimator (graph) side of each comparison runs
before the Keras models of the same test are built: Keras swaps its layer
classes' bases when TF1 layers are built in a graph
(keras/src/utils/version_utils.py `swap_class`).
"""

import os
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Mapping

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt._src.keras import load as keras_load
from estimator_ckpt._src.keras import optimizers as keras_optimizers

from examples.ranking import data as ranking_data
from examples.ranking import keras_migration
from examples.ranking import keras_model
from examples.ranking import model as ranking_model
from examples.ranking import trainer
from tests import tool_fixtures

tf1 = tf.compat.v1
ShardedVariable = tf.__internal__.distribute.ShardedVariable

_RANKING = "est-tf1-ranking"
_BATCH = 64
# The bound for "the same next step".
_STEP_TOLERANCE = 1e-6

# A small TF1 model, trained by MonitoredTrainingSession, and its Keras twin.
_FEATURES = 4
_HIDDEN = 8
_IDS = 10


def _batches(count: int, seed: int = 0) -> List[Dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  return [
    {
      "x": rng.normal(size=(8, _FEATURES)).astype(np.float32),
      "id": rng.integers(0, _IDS, 8).astype(np.int64),
      "y": (rng.random(8) < 0.5).astype(np.float32),
    }
    for _ in range(count)
  ]


def _train_tf1(
  model_dir: str,
  make_optimizer: Callable[[], Any],
  batches: List[Dict[str, np.ndarray]],
  embedding: bool,
) -> None:
  """Trains (or resumes) the TF1 model in `model_dir`, one step per batch."""
  with tf.Graph().as_default():
    tf1.set_random_seed(1)
    x = tf1.placeholder(tf.float32, [None, _FEATURES])
    ids = tf1.placeholder(tf.int64, [None])
    labels = tf1.placeholder(tf.float32, [None])
    net = x
    if embedding:
      table = tf1.get_variable(
        "embedding",
        [_IDS, _FEATURES],
        partitioner=tf1.fixed_size_partitioner(2),
      )
      net += tf1.nn.embedding_lookup(table, ids, partition_strategy="div")
    kernel = tf1.get_variable("hidden/kernel", [_FEATURES, _HIDDEN])
    bias = tf1.get_variable(
      "hidden/bias", [_HIDDEN], initializer=tf1.constant_initializer(0.1)
    )
    net = tf.nn.relu(tf.matmul(net, kernel) + bias)
    kernel = tf1.get_variable("logits/kernel", [_HIDDEN, 1])
    bias = tf1.get_variable("logits/bias", [1])
    logits = tf.squeeze(tf.matmul(net, kernel) + bias, 1)
    loss = tf1.losses.sigmoid_cross_entropy(labels, logits)
    train_op = make_optimizer().minimize(
      loss, global_step=tf1.train.get_or_create_global_step()
    )
    with tf1.train.MonitoredTrainingSession(
      checkpoint_dir=model_dir,
      save_checkpoint_steps=1000,  # Saves once, at the end.
      save_summaries_steps=None,
      save_summaries_secs=None,
      log_step_count_steps=None,
    ) as session:
      for batch in batches:
        session.run(
          train_op, {x: batch["x"], ids: batch["id"], labels: batch["y"]}
        )


def _keras_twin(embedding: bool) -> tf.keras.Model:
  x = tf.keras.Input([_FEATURES], name="x")
  ids = tf.keras.Input([], dtype=tf.int64, name="id")
  net = x
  if embedding:
    looked_up = tf.keras.layers.Embedding(_IDS, _FEATURES, name="embedding")(
      ids
    )
    net = tf.keras.layers.Add()([net, looked_up])
  net = tf.keras.layers.Dense(_HIDDEN, activation="relu", name="hidden")(net)
  logits = tf.keras.layers.Dense(1, name="logits")(net)
  logits = tf.keras.layers.Reshape(())(logits)
  return tf.keras.Model({"x": x, "id": ids}, logits)


_TWIN_RENAME = {"embedding/embeddings": "embedding"}


def _keras_step(
  model: tf.keras.Model, optimizer: Any, batch: Mapping[str, np.ndarray]
) -> None:
  with tf.GradientTape() as tape:
    logits = model({"x": batch["x"], "id": batch["id"]}, training=True)
    loss = tf.reduce_mean(
      tf.nn.sigmoid_cross_entropy_with_logits(labels=batch["y"], logits=logits)
    )
  variables = model.trainable_variables
  optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


def _keras_state(model: tf.keras.Model, optimizer: Any) -> Dict[str, Any]:
  """Weights and optimizer state by TF1 name, in TF1's terms."""
  spec = keras_optimizers.spec(optimizer)
  step = int(optimizer.iterations.numpy())
  rate = keras_optimizers.learning_rate(optimizer, step)
  values: Dict[str, Any] = {"global_step": step}
  for weight in model.trainable_variables:
    name = weight.name.split(":")[0]
    name = _TWIN_RENAME.get(name, name)
    values[name] = weight.numpy()
    for slot in spec.slots:
      state = keras_optimizers.state_variable(optimizer, slot, weight).numpy()
      if slot.negative_learning_rate:
        state = state / np.float32(-rate)
      values[keras_optimizers.tf1_slot_name(name, slot)] = state
  return values


def _checkpoint_values(path: str) -> Dict[str, np.ndarray]:
  return {
    name: estimator_ckpt.load_variable(path, name)
    for name, _ in estimator_ckpt.list_variables(path)
  }


_K = tf.keras.optimizers
# (TF1 optimizer, the Keras optimizer with the settings the report advises).
_OPTIMIZERS = {
  "adam": (
    lambda: tf1.train.AdamOptimizer(0.01),
    lambda: _K.Adam(0.01, epsilon=1e-8),
  ),
  "adagrad": (
    lambda: tf1.train.AdagradOptimizer(0.1),
    lambda: _K.Adagrad(0.1, epsilon=0.0),
  ),
  "momentum": (
    lambda: tf1.train.MomentumOptimizer(0.1, 0.9),
    lambda: _K.SGD(0.1, momentum=0.9),
  ),
  "nesterov": (
    lambda: tf1.train.MomentumOptimizer(0.1, 0.9, use_nesterov=True),
    lambda: _K.SGD(0.1, momentum=0.9, nesterov=True),
  ),
  "rmsprop": (
    lambda: tf1.train.RMSPropOptimizer(0.01),
    lambda: _K.RMSprop(0.01, epsilon=1e-10),
  ),
  "rmsprop_centered_momentum": (
    lambda: tf1.train.RMSPropOptimizer(0.01, momentum=0.5, centered=True),
    lambda: _K.RMSprop(0.01, momentum=0.5, centered=True, epsilon=1e-10),
  ),
  "ftrl": (
    lambda: tf1.train.FtrlOptimizer(0.1, l1_regularization_strength=0.01),
    lambda: _K.Ftrl(0.1, l1_regularization_strength=0.01),
  ),
  "legacy_adam": (
    lambda: tf1.train.AdamOptimizer(0.01),
    lambda: _K.legacy.Adam(0.01, epsilon=1e-8),
  ),
  "legacy_adagrad": (
    lambda: tf1.train.AdagradOptimizer(0.1),
    lambda: _K.legacy.Adagrad(0.1, epsilon=1e-38),
  ),
  "legacy_momentum": (
    lambda: tf1.train.MomentumOptimizer(0.1, 0.9),
    lambda: _K.legacy.SGD(0.1, momentum=0.9),
  ),
  "legacy_rmsprop": (
    lambda: tf1.train.RMSPropOptimizer(0.01, momentum=0.5),
    lambda: _K.legacy.RMSprop(0.01, momentum=0.5, epsilon=1e-10),
  ),
  "legacy_ftrl": (
    lambda: tf1.train.FtrlOptimizer(0.1),
    lambda: _K.legacy.Ftrl(0.1),
  ),
}
# With embedding tables (sparse gradients) the report advises the legacy
# versions of SGD, RMSprop and Ftrl, which run TF1's sparse kernels.
_EMBEDDING_OPTIMIZERS = (
  "adam",
  "adagrad",
  "legacy_momentum",
  "legacy_rmsprop",
  "legacy_ftrl",
)


class OptimizerContinuationTest(parameterized.TestCase, tf.test.TestCase):
  """One step after loading equals TF1's next step, for every optimizer."""

  def _continue_both(self, name: str, embedding: bool):
    make_tf1, make_keras = _OPTIMIZERS[name]
    root = self.create_tempdir().full_path
    model_dir = os.path.join(root, "tf1")
    next_dir = os.path.join(root, "tf1-next")
    batches = _batches(4)
    _train_tf1(model_dir, make_tf1, batches[:3], embedding)
    shutil.copytree(model_dir, next_dir)
    _train_tf1(next_dir, make_tf1, batches[3:], embedding)
    expected = _checkpoint_values(next_dir)

    model = _keras_twin(embedding)
    optimizer = make_keras()
    report = estimator_ckpt.load_weights(
      model, model_dir, optimizer=optimizer, rename=_TWIN_RENAME
    )
    _keras_step(model, optimizer, batches[3])
    return report, expected, _keras_state(model, optimizer)

  @parameterized.named_parameters(
    *[(f"dense_{name}", name, False) for name in _OPTIMIZERS],
    *[(f"embedding_{name}", name, True) for name in _EMBEDDING_OPTIMIZERS],
  )
  def test_next_step_equals_tf1(self, name, embedding):
    report, expected, actual = self._continue_both(name, embedding)
    self.assertEqual(report.advice, ())
    self.assertEqual(report.iterations, 3)
    self.assertEqual(actual.pop("global_step"), expected["global_step"])
    spec = keras_optimizers.spec(_OPTIMIZERS[name][1]())
    self.assertLen(
      actual, (1 + len(spec.slots)) * (4 + embedding), sorted(actual)
    )
    for key, value in actual.items():
      self.assertAllClose(
        value, expected[key], atol=_STEP_TOLERANCE, rtol=0, msg=key
      )

  @parameterized.named_parameters(
    ("adam", "adam", False, lambda: _K.Adam(0.01), "epsilon=1e-8"),
    ("adagrad", "adagrad", False, lambda: _K.Adagrad(0.1), "epsilon=0"),
    (
      "legacy_adagrad",
      "adagrad",
      False,
      lambda: _K.legacy.Adagrad(0.1),
      "epsilon=1e-38",
    ),
    ("rmsprop", "rmsprop", False, lambda: _K.RMSprop(0.01), "epsilon=1e-10"),
    (
      "rmsprop_embedding",
      "rmsprop",
      True,
      lambda: _K.RMSprop(0.01, epsilon=1e-10),
      "tf.keras.optimizers.legacy.RMSprop",
    ),
    (
      "momentum_embedding",
      "momentum",
      True,
      lambda: _K.SGD(0.1, momentum=0.9),
      "tf.keras.optimizers.legacy.SGD",
    ),
    (
      "ftrl_embedding",
      "ftrl",
      True,
      lambda: _K.Ftrl(0.1),
      "tf.keras.optimizers.legacy.Ftrl",
    ),
    (
      "sgd_without_momentum",
      "momentum",
      False,
      lambda: _K.SGD(0.1),
      "Pass momentum=<its momentum>",
    ),
  )
  def test_report_advises_settings(self, name, embedding, make_keras, fix):
    model_dir = os.path.join(self.create_tempdir().full_path, "tf1")
    _train_tf1(model_dir, _OPTIMIZERS[name][0], _batches(2), embedding)
    report = estimator_ckpt.load_weights(
      _keras_twin(embedding),
      model_dir,
      optimizer=make_keras(),
      rename=_TWIN_RENAME,
      strict=False,
    )
    self.assertLen(report.advice, 1, report.advice)
    self.assertIn(fix, report.advice[0])
    self.assertIn(fix, report.summary())


class RankingTest(parameterized.TestCase, tf.test.TestCase):
  """The shipped TF1 ranking model dir into its Keras twin."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    cls.tf1_dir = tool_fixtures.copy_golden(
      _RANKING, os.path.join(root, "ranking-tf1")
    )
    cls.tf2_prefix = estimator_ckpt.convert(
      cls.tf1_dir, os.path.join(root, "ranking-tf2"), to="tf2"
    )
    params = ranking_model.RankingParams()
    cls.eval_examples = ranking_data.read_csv(trainer.DEFAULT_EVAL_DATA, params)
    train = ranking_data.read_csv(trainer.DEFAULT_TRAIN_DATA, params)
    cls.batch = keras_migration.head(train, _BATCH)
    # The Estimator's side, before any Keras model exists (module docstring).
    estimator_dir = tool_fixtures.copy_golden(
      _RANKING, os.path.join(root, "ranking-estimator")
    )
    cls.estimator_logits = keras_migration.estimator_logits(
      ranking_model.estimator(estimator_dir), cls.eval_examples, _BATCH
    )
    next_dir = tool_fixtures.copy_golden(
      _RANKING, os.path.join(root, "ranking-next")
    )
    cls.estimator_next = keras_migration.estimator_next_step(
      next_dir, cls.batch
    )

  def _load(self, source: str, **kwargs):
    model = keras_model.build()
    optimizer = keras_model.optimizer()
    report = estimator_ckpt.load_weights(
      model,
      source,
      optimizer=optimizer,
      rename=keras_model.RENAME,
      **kwargs,
    )
    return model, optimizer, report

  @parameterized.named_parameters(("tf1", "tf1_dir"), ("tf2", "tf2_prefix"))
  def test_predictions_are_bit_identical(self, source):
    model, _, report = self._load(getattr(self, source))
    self.assertEqual(report.format, source[:3])
    logits = keras_migration.keras_logits(model, self.eval_examples, _BATCH)
    self.assertTrue(np.array_equal(logits, self.estimator_logits))

  @parameterized.named_parameters(("tf1", "tf1_dir"), ("tf2", "tf2_prefix"))
  def test_next_step_equals_estimators(self, source):
    model, optimizer, _ = self._load(getattr(self, source))
    keras_model.compile_model(model, optimizer)
    model.train_on_batch(keras_model.features(self.batch), self.batch.label)
    actual = keras_migration.keras_values(model, optimizer)
    # 10 weights, 8 trainable with 2 Adam slots each, the step.
    self.assertLen(actual, 10 + 16 + 1)
    self.assertEqual(int(actual["global_step"]), 21)
    self.assertLessEqual(
      keras_migration.max_difference(self.estimator_next, actual),
      _STEP_TOLERANCE,
    )

  def test_report(self):
    _, optimizer, report = self._load(self.tf1_dir)
    self.assertEqual(report.iterations, 20)
    self.assertEqual(int(optimizer.iterations.numpy()), 20)
    self.assertEqual(
      report.loaded["user_embedding/embeddings"], "user_embedding"
    )
    self.assertEqual(report.loaded["hidden/kernel"], "hidden/kernel")
    self.assertLen(report.loaded, 10)
    self.assertEqual(report.missing, ())
    self.assertEqual(report.unused, ())
    self.assertEqual(report.advice, ())
    self.assertEqual(report.optimizer, "tf.keras.optimizers.Adam")
    self.assertEqual(
      report.optimizer_state["user_embedding/embeddings/v"],
      "user_embedding/Adam_1",
    )
    self.assertEqual(report.optimizer_state["iterations"], "global_step")
    self.assertLen(report.optimizer_state, 17)
    summary = report.summary()
    self.assertIn("Loaded 10 of 10 variables from", summary)
    self.assertIn("user_embedding/embeddings   <- user_embedding", summary)
    self.assertIn("16 state variables, iterations = 20", summary)

  def test_weights_alone_leave_optimizer_state_unused(self):
    model = keras_model.build()
    report = estimator_ckpt.load_weights(
      model, self.tf1_dir, rename=keras_model.RENAME
    )
    self.assertIsNone(report.optimizer)
    self.assertIn("beta1_power", report.unused)
    self.assertIn("global_step", report.unused)
    self.assertIn("hidden/kernel/Adam", report.unused)
    self.assertLen(report.unused, 3 + 16)
    self.assertIn("Unused in the checkpoint: 19:", report.summary())

  def test_shape_mismatch_names_both_and_assigns_nothing(self):
    model = keras_model.build(ranking_model.RankingParams(hidden_units=8))
    before = [w.numpy() for w in model.weights]
    with self.assertRaisesRegex(
      errors.ShapeMismatchError,
      r"`hidden/kernel` is \[24, 8\] float32 but `hidden/kernel` is "
      r"\[24, 16\] float32.*Nothing was assigned",
    ):
      estimator_ckpt.load_weights(
        model, self.tf1_dir, rename=keras_model.RENAME
      )
    for weight, value in zip(model.weights, before):
      self.assertAllEqual(weight.numpy(), value)

  def test_missing_names_suggest_a_rename(self):
    model = keras_model.build()
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError,
      r"has no variable for 2 of the target's 10 variables: "
      r"`item_embedding/embeddings` \(did you mean `item_embedding.*"
      r"rename=\{'item_embedding/embeddings': 'item_embedding', "
      r"'user_embedding/embeddings': 'user_embedding'\}",
    ):
      estimator_ckpt.load_weights(model, self.tf1_dir)

  def test_subclassed_model_scope_is_suggested(self):
    class Ranking(tf.keras.Model):
      def __init__(self):
        super().__init__(name="tower")
        self.hidden = tf.keras.layers.Dense(16, name="hidden")

      def call(self, inputs):
        return self.hidden(inputs)

    model = Ranking()
    model(tf.zeros([1, 24]))
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError,
      r"`tower/hidden/bias` \(did you mean `hidden/bias`\?\).*"
      r"rename=\{'tower/': ''\}",
    ):
      estimator_ckpt.load_weights(model, self.tf1_dir)
    report = estimator_ckpt.load_weights(
      model, self.tf1_dir, rename={"tower/": ""}
    )
    self.assertEqual(report.loaded["tower/hidden/kernel"], "hidden/kernel")

  def test_not_strict_loads_the_others(self):
    model = keras_model.build()
    table = model.get_layer("user_embedding").embeddings
    before = table.numpy()
    report = estimator_ckpt.load_weights(
      model,
      self.tf1_dir,
      optimizer=keras_model.optimizer(),
      rename={"item_embedding/embeddings": "item_embedding"},
      strict=False,
    )
    self.assertEqual(report.missing, ("user_embedding/embeddings",))
    self.assertIn("user_embedding", report.unused)
    self.assertIn("user_embedding/Adam", report.unused)
    self.assertLen(report.loaded, 9)
    self.assertAllEqual(table.numpy(), before)
    self.assertIn(
      "Not in the checkpoint (kept their values): 1:", report.summary()
    )

  def test_optimizer_of_another_kind_is_refused(self):
    model = keras_model.build()
    before = [w.numpy() for w in model.weights]
    optimizer = tf.keras.optimizers.Adagrad()
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError,
      r"lacks 8 TF1 names of the tf.keras.optimizers.Adagrad state: "
      r"`batch_norm/beta/Adagrad`.*AdamOptimizer \(tf.keras.optimizers.Adam\)",
    ):
      estimator_ckpt.load_weights(
        model, self.tf1_dir, optimizer=optimizer, rename=keras_model.RENAME
      )
    for weight, value in zip(model.weights, before):
      self.assertAllEqual(weight.numpy(), value)
    self.assertLen(optimizer.variables, 1)  # Not built: iterations alone.

  def test_step_disagreeing_with_beta_powers_is_refused(self):
    model = keras_model.build()
    before = [w.numpy() for w in model.weights]
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError,
      r"`beta1_power` = .* with the optimizer's beta = 0.8, but "
      r"`global_step` is 20.*pass TF1's",
    ):
      estimator_ckpt.load_weights(
        model,
        self.tf1_dir,
        optimizer=tf.keras.optimizers.Adam(beta_1=0.8, epsilon=1e-8),
        rename=keras_model.RENAME,
      )
    for weight, value in zip(model.weights, before):
      self.assertAllEqual(weight.numpy(), value)

  def test_corrupt_data_assigns_nothing(self):
    tf1_dir = tool_fixtures.copy_golden(
      _RANKING, self.create_tempdir().full_path
    )
    tool_fixtures.flip_byte(
      os.path.join(tf1_dir, "model.ckpt-20.data-00000-of-00001"), -100
    )
    model = keras_model.build()
    before = [w.numpy() for w in model.weights]
    with self.assertRaisesRegex(
      errors.CorruptCheckpointError,
      r"`user_embedding/Adam_1.*Nothing was assigned",
    ):
      estimator_ckpt.load_weights(
        model,
        tf1_dir,
        optimizer=keras_model.optimizer(),
        rename=keras_model.RENAME,
      )
    for weight, value in zip(model.weights, before):
      self.assertAllEqual(weight.numpy(), value)


class Tf1RenameTest(tf.test.TestCase):
  """The way back: a Keras checkpoint's names as TF1 names."""

  def test_keras_checkpoint_converts_back_to_tf1_names(self):
    model = keras_model.build()
    optimizer = keras_model.optimizer()
    tf1_dir = tool_fixtures.golden_path(_RANKING)
    estimator_ckpt.load_weights(
      model, tf1_dir, optimizer=optimizer, rename=keras_model.RENAME
    )
    root = self.create_tempdir().full_path
    saved = tf.train.Checkpoint(model=model, optimizer=optimizer).save(
      os.path.join(root, "keras", "ckpt")
    )
    rename = keras_load.tf1_rename(model, optimizer, keras_model.RENAME)
    self.assertEqual(rename["m/hidden/kernel"], "hidden/kernel/Adam")
    self.assertEqual(
      rename["v/user_embedding/embeddings"], "user_embedding/Adam_1"
    )
    self.assertEqual(rename["iteration"], "global_step")
    back = estimator_ckpt.convert(
      saved, os.path.join(root, "tf1"), to="tf1", rename=rename
    )
    self.assertEqual(estimator_ckpt.checkpoint_format(back), "tf1")
    for name, _ in estimator_ckpt.list_variables(tf1_dir):
      if name.endswith("_power"):
        continue  # Adam's beta powers have no Keras variable (yet).
      self.assertAllEqual(
        estimator_ckpt.load_variable(back, name),
        estimator_ckpt.load_variable(tf1_dir, name),
        msg=name,
      )

  def test_legacy_names_and_momentum(self):
    model = _keras_twin(embedding=False)
    rename = keras_load.tf1_rename(model, _K.legacy.Adagrad())
    self.assertEqual(
      rename["hidden/kernel/accumulator"], "hidden/kernel/Adagrad"
    )
    self.assertEqual(rename["iter"], "global_step")
    with self.assertRaisesRegex(
      errors.InvalidArgumentError, "cannot convert back.*without the optimizer"
    ):
      keras_load.tf1_rename(model, _K.SGD(momentum=0.9))


class TargetsTest(parameterized.TestCase, tf.test.TestCase):
  """Dicts, modules, layers and ShardedVariables as targets."""

  def setUp(self):
    super().setUp()
    self.tf1_dir = tool_fixtures.golden_path(_RANKING)
    self.table = estimator_ckpt.load_variable(self.tf1_dir, "user_embedding")

  def test_dict_target_by_key(self):
    kernel = tf.Variable(tf.zeros([24, 16]), name="anything")
    report = estimator_ckpt.load_weights(
      {"hidden/kernel": kernel}, self.tf1_dir
    )
    self.assertAllEqual(
      kernel.numpy(),
      estimator_ckpt.load_variable(self.tf1_dir, "hidden/kernel"),
    )
    self.assertEqual(dict(report.loaded), {"hidden/kernel": "hidden/kernel"})

  @parameterized.parameters(1, 3, 4, 7)
  def test_sharded_variable_gets_its_rows(self, shards):
    rows = np.array_split(np.zeros([200, 8], np.float32), shards)
    sharded = ShardedVariable(
      [
        tf.Variable(part, name=f"user_embedding/part_{i}")
        for i, part in enumerate(rows)
      ]
    )
    module = tf.Module()
    module.table = sharded
    optimizer = tf.keras.optimizers.Adam(epsilon=1e-8)
    report = estimator_ckpt.load_weights(
      module, self.tf1_dir, optimizer=optimizer
    )
    self.assertEqual(report.loaded, {"user_embedding": "user_embedding"})
    self.assertAllEqual(
      tf.concat([v for v in sharded.variables], 0).numpy(), self.table
    )
    slot = keras_optimizers.spec(optimizer).slots[1]
    velocity = np.concatenate(
      [
        keras_optimizers.state_variable(optimizer, slot, shard).numpy()
        for shard in sharded.variables
      ]
    )
    self.assertAllEqual(
      velocity,
      estimator_ckpt.load_variable(self.tf1_dir, "user_embedding/Adam_1"),
    )

  def test_sharded_variable_in_a_dict(self):
    sharded = ShardedVariable(
      [tf.Variable(tf.zeros([100, 8])), tf.Variable(tf.zeros([100, 8]))]
    )
    estimator_ckpt.load_weights({"user_embedding": sharded}, self.tf1_dir)
    self.assertAllEqual(sharded.variables[1].numpy(), self.table[100:])

  def test_stock_partitions_are_assembled(self):
    # Stock tf.train.Checkpoint(var_list={v.op.name: v}) of a partitioned
    # variable: one tensor per partition (`var_list/emb.Spart_<i>`).
    prefix = os.path.join(self.create_tempdir().full_path, "ckpt")
    with tf.Graph().as_default():
      table = tf1.get_variable(
        "emb",
        [10, 4],
        initializer=tf1.random_normal_initializer(),
        partitioner=tf1.fixed_size_partitioner(3),
      )
      checkpoint = tf.train.Checkpoint(
        var_list={v.op.name: v for v in tf1.global_variables()}
      )
      with tf1.Session() as session:
        session.run(tf1.global_variables_initializer())
        expected = session.run(table.as_tensor())
        checkpoint.write(prefix)
    sharded = ShardedVariable(
      [tf.Variable(tf.zeros([5, 4])), tf.Variable(tf.zeros([5, 4]))]
    )
    whole = tf.Variable(tf.zeros([10, 4]))
    estimator_ckpt.load_weights({"emb": sharded}, prefix)
    estimator_ckpt.load_weights({"emb": whole}, prefix)
    self.assertAllEqual(tf.concat(sharded.variables, 0).numpy(), expected)
    self.assertAllEqual(whole.numpy(), expected)

  def test_module_and_layer_targets(self):
    module = tf.Module()
    with tf.name_scope("hidden"):
      module.bias = tf.Variable(tf.zeros([16]), name="bias")
    estimator_ckpt.load_weights(module, self.tf1_dir)
    expected = estimator_ckpt.load_variable(self.tf1_dir, "hidden/bias")
    self.assertAllEqual(module.bias.numpy(), expected)

    layer = tf.keras.layers.Dense(16, name="hidden")
    layer(tf.zeros([1, 24]))
    report = estimator_ckpt.load_weights(layer, self.tf1_dir)
    self.assertAllEqual(layer.bias.numpy(), expected)
    self.assertLen(report.loaded, 2)

  def test_dtype_mismatch(self):
    kernel = tf.Variable(tf.zeros([24, 16], tf.float64))
    with self.assertRaisesRegex(
      errors.ShapeMismatchError,
      r"`hidden/kernel` is \[24, 16\] float64 but `hidden/kernel` is "
      r"\[24, 16\] float32",
    ):
      estimator_ckpt.load_weights({"hidden/kernel": kernel}, self.tf1_dir)

  def test_unbuilt_keras_model_is_refused(self):
    model = tf.keras.Sequential([tf.keras.layers.Dense(2)])
    with self.assertRaisesRegex(
      errors.InvalidArgumentError, "is not built.*Call it on a batch"
    ):
      estimator_ckpt.load_weights(model, self.tf1_dir)

  def test_duplicate_names_are_refused(self):
    first = tf.keras.layers.Dense(2)
    first.build([None, 2])
    second = tf.keras.layers.Dense(2)
    second.build([None, 2])
    model = tf.Module()
    model.layers = [first, second]
    with self.assertRaisesRegex(
      errors.InvalidArgumentError, "same name `bias`, `kernel`.*unique names"
    ):
      estimator_ckpt.load_weights(model, self.tf1_dir)

  def test_bad_target_type(self):
    with self.assertRaisesRegex(
      errors.ArgumentTypeError, "target is a list. Pass a built Keras model"
    ):
      estimator_ckpt.load_weights([tf.Variable(1.0)], self.tf1_dir)
    with self.assertRaisesRegex(
      errors.ArgumentTypeError, "entry `x` is a int, not a variable"
    ):
      estimator_ckpt.load_weights({"x": 1}, self.tf1_dir)

  def test_unsupported_optimizer(self):
    with self.assertRaisesRegex(
      errors.ArgumentTypeError,
      r"Nadam has no TF1 counterpart.*Adam, Adagrad, SGD, RMSprop or Ftrl",
    ):
      estimator_ckpt.load_weights(
        {"hidden/bias": tf.Variable(tf.zeros([16]))},
        self.tf1_dir,
        optimizer=tf.keras.optimizers.Nadam(),
      )

  def test_optimizer_built_for_other_variables(self):
    optimizer = tf.keras.optimizers.Adam()
    optimizer.build([tf.Variable(1.0)])
    with self.assertRaisesRegex(
      errors.InvalidArgumentError, "already has state.*Pass a fresh optimizer"
    ):
      estimator_ckpt.load_weights(
        {"hidden/bias": tf.Variable(tf.zeros([16]))},
        self.tf1_dir,
        optimizer=optimizer,
      )

  def test_graph_mode_is_refused(self):
    with tf.Graph().as_default():
      variable = tf1.Variable(tf.zeros([16]))
      with self.assertRaisesRegex(
        errors.InvalidArgumentError, "runs eagerly.*warm_start"
      ):
        estimator_ckpt.load_weights({"hidden/bias": variable}, self.tf1_dir)

  def test_no_checkpoint(self):
    with self.assertRaises(errors.CheckpointNotFoundError):
      estimator_ckpt.load_weights(
        {"hidden/bias": tf.Variable(tf.zeros([16]))},
        self.create_tempdir().full_path,
      )

  def test_invalid_rename(self):
    with self.assertRaisesRegex(errors.InvalidRenameError, "must be one too"):
      estimator_ckpt.load_weights(
        {"hidden/bias": tf.Variable(tf.zeros([16]))},
        self.tf1_dir,
        rename={"tower/": "x"},
      )

  def test_many_missing_names_are_truncated_with_a_count(self):
    target = {f"var_{i:02d}": tf.Variable(0.0) for i in range(12)}
    target["hidden/bias"] = tf.Variable(tf.zeros([16]))
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError,
      r"no variable for 12 of the target's 13 variables: `var_00`.*"
      r"`var_09`, \.\.\. and 2 more\.",
    ):
      estimator_ckpt.load_weights(target, self.tf1_dir)


if __name__ == "__main__":
  absltest.main()
