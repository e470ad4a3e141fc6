"""Issue 4's "Sources that must work", end to end through tf.estimator.

One test (or parameterized family) per source, values compared exactly:

1. est-tf1 model dir -> model with a TF2 Scaffold (the guide's scenario).
2. est-tf2 dir written by the Scaffold factory (estimator_ckpt.scaffold via
   tf2_checkpoints), partitioned embedding, same and different partition
   counts (also the ranking model: Adam slots, batch norm); the same layout
   written directly; and the stock TF2 layout (one tensor per partition), on
   which stock warm start fails at both counts.
3. The guide's `convert_tf1_to_tf2` output (stock fails) and a checkpoint
   made by hand as in the guide (`var_list={...}`).
4. Renamed scopes, a regex subset, partitioned into unpartitioned and back.
5. Shape or dtype mismatch: an error naming the variable and both
   shapes/dtypes, before any training step.
6. Estimator's one-shot rule, logged.
"""

import os

from absl import logging
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import warm_start

from examples.guide import converter
from examples.guide import models as guide_models
from examples.ranking import data as ranking_data
from examples.ranking import model as ranking_model
from tests import checkpoint_layouts
from tests import fixtures

tf1 = tf.compat.v1

_EMB = checkpoint_layouts.distinct_values([8, 2], 100)
_TF2_VAR = "var_list/var/.ATTRIBUTES/VARIABLE_VALUE"
_TF2_STEP = "step/.ATTRIBUTES/VARIABLE_VALUE"


def _model_fn(values, partitions=None, scope="", tf2_checkpoint=False):
  """A model_fn holding `values`' variables (zeros); each step adds 1."""

  def model_fn(features, labels, mode):
    del features, labels
    step = tf1.train.get_or_create_global_step()
    with tf1.variable_scope(scope):
      checkpoint_layouts.create_variables(
        {name: np.zeros_like(v) for name, v in values.items()}, partitions
      )
    train_op = tf.group(
      [v.assign_add(tf.ones_like(v)) for v in tf1.trainable_variables()]
      + [step.assign_add(1)]
    )
    scaffold = None
    if tf2_checkpoint:  # The guide's "Save a TF2 checkpoint in TF1".
      scaffold = tf1.train.Scaffold(
        saver=tf.train.Checkpoint(
          var_list={v.name.split(":")[0]: v for v in tf1.global_variables()}
        )
      )
    return tf.estimator.EstimatorSpec(
      mode,
      predictions=tf.constant(1.0),
      loss=tf.constant(1.0),
      train_op=train_op,
      scaffold=scaffold,
    )

  return model_fn


class _StepCounter(tf.estimator.SessionRunHook):
  def __init__(self):
    self.steps = 0

  def before_run(self, run_context):
    self.steps += 1


class EstimatorSourcesTest(parameterized.TestCase, tf.test.TestCase):
  def _dir(self, name):
    return os.path.join(self.create_tempdir().full_path, name)

  # Source 1.
  @parameterized.named_parameters(
    ("guide_tf2_scaffold", guide_models.model_fn_tf2_ckpt, _TF2_VAR, _TF2_STEP),
    (
      "estimator_ckpt_scaffold",
      estimator_ckpt.tf2_checkpoints(guide_models.model_fn_tf1_ckpt),
      _TF2_VAR,
      _TF2_STEP,
    ),
    ("tf1_saver", guide_models.model_fn_tf1_ckpt, "var", "global_step"),
  )
  def test_source1_est_tf1_dir(self, model_fn, var_key, step_key):
    source = fixtures.copy_golden("est-tf1", self._dir("est-tf1"))
    est = tf.estimator.Estimator(
      model_fn,
      self._dir("est-tf2"),
      warm_start_from=warm_start.warm_start_settings(source),
    )
    est.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(est.get_variable_value(var_key), 4.0)  # 2 + 2.
    self.assertEqual(est.get_variable_value(step_key), 1)  # Fresh step.

  # Source 2.
  @parameterized.named_parameters(
    ("scaffold_same_count", "scaffold", 2, False),
    ("scaffold_different_count", "scaffold", 3, False),
    ("scaffold_into_tf2_scaffold", "scaffold", 4, True),
    ("stock_tf2_same_count", "stock_tf2", 2, False),
    ("stock_tf2_different_count", "stock_tf2", 3, False),
    ("stock_tf2_into_tf2_scaffold", "stock_tf2", 1, True),
  )
  def test_source2_partitioned_est_tf2(
    self, layout, partitions, tf2_checkpoint
  ):
    source = self._dir("est-tf2")
    checkpoint_layouts.write(layout, source, {"emb": _EMB}, {"emb": 2})
    model_dir = self._dir("target")
    est = tf.estimator.Estimator(
      fixtures.partitioned_model_fn(partitions, tf2_checkpoint=tf2_checkpoint),
      model_dir,
      warm_start_from=warm_start.warm_start_settings(source, strict=True),
    )
    # partitioned_model_fn initialises `emb` to row indices: warm start must
    # replace that.
    est.train(fixtures.one_example_input_fn, steps=1)
    reader = tf.train.load_checkpoint(model_dir)
    if tf2_checkpoint:
      emb = np.concatenate(
        [
          reader.get_tensor(
            f"var_list/emb.Spart_{i}/.ATTRIBUTES/VARIABLE_VALUE"
          )
          for i in range(partitions)
        ]
      )
    else:
      emb = reader.get_tensor("emb")
    self.assertAllEqual(emb, _EMB + 1)

  @parameterized.named_parameters(
    ("same_count", 2, False),
    ("different_count", 3, False),
    ("unpartitioned", 1, False),
    ("into_the_scaffold_factory", 4, True),
  )
  def test_source2_est_tf2_dir_of_the_scaffold_factory(
    self, partitions, tf2_target
  ):
    """The real estimator_ckpt.scaffold() writes the source model_dir."""
    source = self._dir("est-tf2")
    tf.estimator.Estimator(
      estimator_ckpt.tf2_checkpoints(
        fixtures.partitioned_model_fn(2, tf2_checkpoint=False)
      ),
      source,
    ).train(fixtures.one_example_input_fn, steps=3)
    rows = np.tile(np.arange(8, dtype=np.float32)[:, None], [1, 2])
    stored = tf.train.load_checkpoint(source).get_tensor(
      keys.variable_key("emb")
    )
    self.assertAllEqual(stored, rows + 3)  # Initialised to rows, 3 steps.

    model_fn = fixtures.partitioned_model_fn(partitions, tf2_checkpoint=False)
    if tf2_target:
      model_fn = estimator_ckpt.tf2_checkpoints(model_fn)
    est = tf.estimator.Estimator(
      model_fn,
      self._dir("target"),
      warm_start_from=warm_start.warm_start_settings(source, strict=True),
    )
    est.train(fixtures.one_example_input_fn, steps=1)
    name = keys.variable_key("emb") if tf2_target else "emb"
    self.assertAllEqual(est.get_variable_value(name), rows + 4)
    step = keys.STEP_KEY if tf2_target else "global_step"
    self.assertEqual(est.get_variable_value(step), 1)

  def test_source2_ranking_model_dir_of_the_scaffold_factory(self):
    """Adam slots, batch norm, 4 partitions re-partitioned into 3."""
    source = fixtures.copy_golden("est-tf1-ranking", self._dir("source"))
    params = ranking_model.RankingParams()
    examples = ranking_data.read_csv(
      fixtures.testdata_path("ranking", "train.csv"), params
    )
    # Resumes the TF1 dir in place; the next save is TF2 (scaffolding.py).
    tf.estimator.Estimator(
      estimator_ckpt.tf2_checkpoints(ranking_model.model_fn),
      source,
      params=params.as_dict(),
    ).train(
      ranking_data.input_fn(examples, batch_size=32, shuffle=False), steps=1
    )
    reader = tf.train.load_checkpoint(source)
    self.assertTrue(reader.has_tensor(keys.OBJECT_GRAPH_KEY))

    with tf.Graph().as_default():
      ranking_model.build_training_graph(
        ranking_model.RankingParams(num_partitions=3)
      )
      summary = warm_start.warm_start(source, strict=True)
      values = checkpoint_layouts.read_values(summary.warm_started)
    self.assertIn("batch_norm/moving_variance", summary.warm_started)
    self.assertIn("user_embedding/Adam", summary.excluded)
    self.assertLen(summary.warm_started, 10)
    for name, value in values.items():
      self.assertAllEqual(
        value, reader.get_tensor(keys.variable_key(name)), msg=name
      )

  @parameterized.named_parameters(("same_count", 2), ("different_count", 3))
  def test_source2_stock_fails_on_stock_tf2_layout(self, partitions):
    """Recorded: stock warm start cannot read per-partition TF2 tensors."""
    source = self._dir("est-tf2")
    checkpoint_layouts.write("stock_tf2", source, {"emb": _EMB}, {"emb": 2})
    est = tf.estimator.Estimator(
      fixtures.partitioned_model_fn(partitions, tf2_checkpoint=False),
      self._dir("target"),
      warm_start_from=source,
    )
    with self.assertRaises(tf.errors.InvalidArgumentError):
      est.train(fixtures.one_example_input_fn, steps=1)

  # Source 3.
  def test_source3_guide_convert_tf1_to_tf2(self):
    converted = converter.convert_tf1_to_tf2(
      fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"]),
      os.path.join(self._dir("converted"), "converted-tf1-to-tf2"),
    )
    values = {"a": np.float32(0), "b": np.float32(0), "scoped/c": np.float32(0)}
    # Stock: every object-graph full_name is `Variable`, so it cannot map.
    stock = tf.estimator.Estimator(
      _model_fn(values), self._dir("stock"), warm_start_from=converted
    )
    with self.assertRaisesRegex(ValueError, "did not contain values for all"):
      stock.train(fixtures.one_example_input_fn, steps=1)

    est = tf.estimator.Estimator(
      _model_fn(values, tf2_checkpoint=True),
      self._dir("target"),
      warm_start_from=warm_start.warm_start_settings(converted, strict=True),
    )
    est.train(fixtures.one_example_input_fn, steps=1)
    for name, value in (("a", 2.0), ("b", 3.0), ("scoped.Sc", 4.0)):
      self.assertEqual(
        est.get_variable_value(f"var_list/{name}/.ATTRIBUTES/VARIABLE_VALUE"),
        value,
      )

  def test_source3_guide_var_list_by_hand(self):
    values = {"a": np.float32(1), "b": np.float32(2), "scoped/c": np.float32(3)}
    prefix = os.path.join(self._dir("by-hand"), "tf2-ckpt-saved-in-session")
    # The guide's "Save a TF2 checkpoint in TF1", verbatim but the values.
    with tf.Graph().as_default():
      checkpoint_layouts.create_variables(values)
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        ckpt = tf.train.Checkpoint(
          var_list={v.name.split(":")[0]: v for v in tf1.global_variables()}
        )
        path = ckpt.save(prefix)
    est = tf.estimator.Estimator(
      _model_fn({name: np.float32(0) for name in values}),
      self._dir("target"),
      warm_start_from=warm_start.warm_start_settings(path, strict=True),
    )
    est.train(fixtures.one_example_input_fn, steps=1)
    for name, value in values.items():
      self.assertEqual(est.get_variable_value(name), value + 1)

  # Source 4.
  @parameterized.named_parameters(
    ("partitioned_into_unpartitioned", 3, 0),
    ("unpartitioned_into_partitioned", 0, 3),
  )
  def test_source4_rename_regex_and_partitioning(
    self, source_parts, target_parts
  ):
    values = {
      "emb": _EMB,
      "dense/kernel": checkpoint_layouts.distinct_values([2, 2]),
      "other": np.float32(9),
    }
    source = self._dir("source")
    checkpoint_layouts.write("tf1", source, values, {"emb": source_parts})
    est = tf.estimator.Estimator(
      _model_fn(values, {"emb": target_parts}, scope="tower"),
      self._dir("target"),
      warm_start_from=warm_start.warm_start_settings(
        source,
        vars_to_warm_start=["tower/emb", "tower/dense/"],
        rename={"tower/": ""},
        strict=True,
      ),
    )
    est.train(fixtures.one_example_input_fn, steps=1)
    self.assertAllEqual(est.get_variable_value("tower/emb"), _EMB + 1)
    self.assertAllEqual(
      est.get_variable_value("tower/dense/kernel"), values["dense/kernel"] + 1
    )
    # Not selected: its initial 0, trained one step.
    self.assertEqual(est.get_variable_value("tower/other"), 1.0)

  # Source 5.
  @parameterized.named_parameters(
    (
      "shape",
      np.zeros([3], np.float32),
      r"`var`: the model's variable has shape \[3\] and dtype float32; the "
      r"checkpoint's `var` has shape \[\] and dtype float32",
    ),
    (
      "dtype",
      np.int64(0),
      r"`var`: the model's variable has shape \[\] and dtype int64; the "
      r"checkpoint's `var` has shape \[\] and dtype float32",
    ),
  )
  def test_source5_mismatch_raises_before_any_step(self, value, pattern):
    source = fixtures.copy_golden("est-tf1", self._dir("est-tf1"))
    model_dir = self._dir("target")
    model_fn = fixtures.CallCounter(_model_fn({"var": value}))
    est = tf.estimator.Estimator(
      model_fn,
      model_dir,
      warm_start_from=warm_start.warm_start_settings(source),
    )
    counter = _StepCounter()
    with self.assertRaisesRegex(errors.ShapeMismatchError, pattern):
      est.train(fixtures.one_example_input_fn, steps=1, hooks=[counter])
    self.assertEqual(model_fn.calls, 1)  # The graph was built ...
    self.assertEqual(counter.steps, 0)  # ... but no step ran ...
    self.assertIsNone(tf.train.latest_checkpoint(model_dir))  # ... or saved.

  # Source 6.
  @parameterized.named_parameters(
    ("v2", tf.estimator.Estimator),
    ("v1", tf.compat.v1.estimator.Estimator),
  )
  def test_source6_one_shot_rule_is_logged(self, estimator_class):
    source = fixtures.copy_golden("est-tf1", self._dir("est-tf1"))
    model_dir = self._dir("est-tf2")
    est = estimator_class(
      guide_models.model_fn_tf2_ckpt,
      model_dir,
      warm_start_from=warm_start.warm_start_settings(source),
    )
    with self.assertLogs(logging.get_absl_logger(), "INFO") as first:
      est.train(guide_models.train_input_fn, steps=1)
    self.assertTrue(
      any(
        "Warm-started 1 of 1 selected variables" in line
        for line in first.output
      )
    )
    self.assertFalse(any("Not warm-starting" in line for line in first.output))
    self.assertEqual(est.get_variable_value(_TF2_VAR), 4.0)

    with self.assertLogs(logging.get_absl_logger(), "WARNING") as second:
      est.train(guide_models.train_input_fn, steps=1)
    self.assertLen(second.records, 1)
    message = second.output[0]
    self.assertIn(
      f"Not warm-starting from `{source}`: model_dir "
      f"`{model_dir}` already has checkpoint",
      message,
    )
    self.assertIn("Estimator warm-starts only into an empty model_dir", message)
    # Restored from model_dir (4 + 2), not warm-started again (2 + 2).
    self.assertEqual(est.get_variable_value(_TF2_VAR), 6.0)
    self.assertEqual(est.get_variable_value(_TF2_STEP), 2)

  def test_ranking_model_predicts_like_its_source(self):
    """A warm-started model is the source model: same predictions, exactly.

    Predict in an empty model_dir warm-starts too (estimator.py
    `_maybe_warm_start`), so batch-norm moving statistics are in use.
    """
    source = fixtures.testdata_path(fixtures.GOLDENS["est-tf1-ranking"])
    params = ranking_model.RankingParams()
    examples = ranking_data.read_csv(
      fixtures.testdata_path("ranking", "eval.csv"), params
    )
    input_fn = ranking_data.input_fn(
      examples, batch_size=100, shuffle=False, num_epochs=1
    )

    def predict(est):
      return np.array([p["probability"] for p in est.predict(input_fn)])

    expected = predict(
      ranking_model.estimator(
        fixtures.copy_golden("est-tf1-ranking", self._dir("source"))
      )
    )
    warm = ranking_model.estimator(
      self._dir("warm"),
      params,
      warm_start_from=warm_start.warm_start_settings(source, strict=True),
    )
    self.assertLen(expected, len(examples))
    self.assertAllEqual(predict(warm), expected)


if __name__ == "__main__":
  absltest.main()
