"""Tests of the warm-start bridge on small graphs (plain graph code).

End-to-end runs through tf.estimator are in warm_starting_estimator_test.py.
`StockSuitePortTest` ports TensorFlow's own warm_starting_util_test.py.
"""

import copy
import os

from absl import logging
from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import checkpoint_flags
from estimator_ckpt._src import warm_start

from examples.ranking import model as ranking_model
from tests import checkpoint_layouts
from tests import fixtures

tf1 = tf.compat.v1

_EMB = checkpoint_layouts.distinct_values([12, 3])


def _partition_matrix():
  """(layout, source partitions, target partitions); 0 is unpartitioned."""
  cases = []
  for layout in checkpoint_layouts.LAYOUTS:
    for source in (0, 2, 3):
      for target in (0, 2, 4):
        if layout == "stock_tf2" and source == 0 and target == 0:
          continue  # Not partitioned at all: covered by the other layouts.
        cases.append(
          (f"{layout}_{source}_into_{target}", layout, source, target)
        )
  return cases


class WarmStartTest(parameterized.TestCase, tf.test.TestCase):
  def _dir(self, name="source"):
    return os.path.join(self.create_tempdir().full_path, name)

  @parameterized.named_parameters(*_partition_matrix())
  def test_partitioning_matrix(self, layout, source, target):
    """Any partitioning into any other, values compared exactly."""
    model_dir = self._dir()
    checkpoint_layouts.write(layout, model_dir, {"emb": _EMB}, {"emb": source})
    with tf.Graph().as_default():
      checkpoint_layouts.create_variables(
        {"emb": np.zeros_like(_EMB)}, {"emb": target}
      )
      tf1.train.get_or_create_global_step()
      summary = warm_start.warm_start(model_dir, strict=True)
      values = checkpoint_layouts.read_values(["emb", "global_step"])
    self.assertAllEqual(values["emb"], _EMB)
    self.assertEqual(values["global_step"], 0)  # Always starts fresh.
    self.assertEqual(dict(summary.warm_started), {"emb": "emb"})
    self.assertEqual(summary.excluded, ("global_step",))
    self.assertEqual(summary.unused_in_checkpoint, ())

  def test_repartitioning_keeps_rows_but_not_mod_lookups(self):
    """What re-partitioning means for embedding lookups (README caveat).

    Warm start restores the logical tensor exactly, as a TF1 Saver does.
    `tf.nn.embedding_lookup`'s default partition_strategy="mod" maps id i
    to partition i % n, so with a new partition count the same id reads
    another row; "div" (contiguous) lookups are unchanged.
    """
    model_dir = self._dir()
    checkpoint_layouts.write("tf1", model_dir, {"emb": _EMB}, {"emb": 2})

    def lookups(num_partitions):
      with tf.Graph().as_default():
        emb = checkpoint_layouts.create_variables(
          {"emb": np.zeros_like(_EMB)}, {"emb": num_partitions}
        )["emb"]
        warm_start.warm_start(model_dir)
        ids = tf.range(12)
        mod = tf1.nn.embedding_lookup(emb, ids, partition_strategy="mod")
        div = tf1.nn.embedding_lookup(emb, ids, partition_strategy="div")
        with tf1.Session() as sess:
          sess.run(tf1.global_variables_initializer())
          return sess.run([mod, div])

    mod_2, div_2 = lookups(2)
    mod_3, div_3 = lookups(3)
    self.assertAllEqual(div_2, _EMB)
    self.assertAllEqual(div_3, _EMB)
    self.assertNotAllEqual(mod_3, mod_2)

  @parameterized.parameters(*checkpoint_layouts.LAYOUTS)
  def test_each_layout_with_several_variables(self, layout):
    values = {
      "dense/kernel": checkpoint_layouts.distinct_values([3, 2]),
      "dense/bias": checkpoint_layouts.distinct_values([2], 10),
      "a.b": np.array(7.0, np.float32),
      "count": np.array(5, np.int64),
    }
    model_dir = self._dir()
    checkpoint_layouts.write(layout, model_dir, values)
    with tf.Graph().as_default():
      checkpoint_layouts.create_variables(
        {name: np.zeros_like(v) for name, v in values.items()}
      )
      summary = warm_start.warm_start(model_dir, strict=True)
      restored = checkpoint_layouts.read_values(values)
    for name, value in values.items():
      self.assertAllEqual(restored[name], value, msg=name)
    self.assertEqual(summary.object_based, layout != "tf1")

  def test_public_api(self):
    self.assertIs(
      estimator_ckpt.warm_start_settings, warm_start.warm_start_settings
    )
    self.assertIs(estimator_ckpt.warm_start, warm_start.warm_start)
    self.assertIs(
      estimator_ckpt.define_checkpoint_flags,
      checkpoint_flags.define_checkpoint_flags,
    )
    self.assertIs(
      estimator_ckpt.checkpoint_settings_from_flags,
      checkpoint_flags.checkpoint_settings_from_flags,
    )
    for name in estimator_ckpt.__all__:
      self.assertTrue(hasattr(estimator_ckpt, name), name)

  def test_settings_are_estimator_warm_start_settings(self):
    model_dir = fixtures.testdata_path(fixtures.GOLDENS["est-tf1"])
    settings = warm_start.warm_start_settings(
      model_dir, vars_to_warm_start=["var"], rename={"x": "var"}, strict=True
    )
    self.assertIsInstance(settings, tf.estimator.WarmStartSettings)
    self.assertEqual(settings.ckpt_to_initialize_from, model_dir)
    self.assertEqual(settings.vars_to_warm_start, ["var"])
    self.assertIn("strict=True", repr(settings))
    self.assertIn("rename=('x',)", repr(settings))
    self.assertTrue(settings)
    with self.assertRaisesRegex(TypeError, "immutable"):
      settings._replace(vars_to_warm_start=".*")

  def test_copying_settings_does_not_warm_start(self):
    """Namedtuple's copy/pickle protocol iterates; ours must not act."""
    model_dir = fixtures.testdata_path(fixtures.GOLDENS["est-tf1"])
    settings = warm_start.warm_start_settings(model_dir)
    with tf.Graph().as_default() as graph:
      # No `var` in this graph: a warm start here would raise nothing but
      # would log; a strict one would raise. Copies must do neither.
      strict = warm_start.warm_start_settings(model_dir, strict=True)
      tf1.get_variable("other", shape=[])
      ops_before = len(graph.get_operations())
      for original in (settings, strict):
        clone = copy.deepcopy(original)
        self.assertEqual(repr(clone), repr(original))
        self.assertEqual(clone._asdict(), original._asdict())
      self.assertLen(graph.get_operations(), ops_before)

  @parameterized.named_parameters(
    ("missing", "does/not/exist", "neither a model_dir nor"),
    ("empty_dir", None, "without a `checkpoint` state file"),
  )
  def test_bad_path_fails_at_call_time(self, path, fragment):
    if path is None:
      path = self.create_tempdir().full_path
    else:
      path = os.path.join(self.create_tempdir().full_path, path)
    for function in (warm_start.warm_start_settings, warm_start.warm_start):
      with self.assertRaisesRegex(
        errors.CheckpointNotFoundError, fragment
      ) as raised:
        function(path)
      self.assertIn(path, str(raised.exception))
      self.assertIsInstance(raised.exception, errors.Error)

  def test_checkpoint_prefix_and_saved_model_dir(self):
    prefix = fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
    export_dir = os.path.join(self.create_tempdir().full_path, "export")
    with tf.Graph().as_default():
      a = tf1.get_variable("a", initializer=11.0)
      with tf1.Session() as sess:
        sess.run(a.initializer)
        tf1.saved_model.simple_save(sess, export_dir, {"x": a}, {"y": a})
    for path, expected in ((prefix, 1.0), (export_dir, 11.0)):
      with tf.Graph().as_default():
        tf1.get_variable("a", initializer=0.0)
        warm_start.warm_start(path, vars_to_warm_start=["a"])
        self.assertEqual(checkpoint_layouts.read_values(["a"])["a"], expected)

  @parameterized.named_parameters(
    ("same_partitions", 4),
    ("different_partitions", 3),
  )
  def test_ranking_model_default_selection(self, num_partitions):
    """Every model variable (batch-norm statistics too); no slots, no step."""
    model_dir = fixtures.testdata_path(fixtures.GOLDENS["est-tf1-ranking"])
    reader = tf.train.load_checkpoint(model_dir)
    with tf.Graph().as_default():
      self._build_ranking_model(num_partitions)
      summary = warm_start.warm_start(model_dir, strict=True)
      names = sorted({keys.save_name(v) for v in tf1.global_variables()})
      values = checkpoint_layouts.read_values(names)
    model_vars = [
      n
      for n in names
      if not n.endswith(("/Adam", "/Adam_1"))
      and n not in ("beta1_power", "beta2_power", "global_step")
    ]
    self.assertIn("batch_norm/moving_mean", model_vars)
    self.assertIn("batch_norm/moving_variance", model_vars)
    self.assertEqual(sorted(summary.warm_started), model_vars)
    for name in model_vars:
      self.assertAllEqual(values[name], reader.get_tensor(name), msg=name)
    # Optimizer state and the step start fresh.
    for name in names:
      if name.endswith(("/Adam", "/Adam_1")):
        self.assertAllEqual(values[name], np.zeros_like(values[name]), msg=name)
    self.assertAllClose(values["beta1_power"], 0.9)
    self.assertEqual(values["global_step"], 0)
    self.assertEqual(
      summary.excluded, tuple(sorted(set(names) - set(model_vars)))
    )

  def test_ranking_model_with_optimizer_slots(self):
    model_dir = fixtures.testdata_path(fixtures.GOLDENS["est-tf1-ranking"])
    reader = tf.train.load_checkpoint(model_dir)
    with tf.Graph().as_default():
      self._build_ranking_model(2)
      summary = warm_start.warm_start(
        model_dir, with_optimizer_slots=True, strict=True
      )
      names = sorted({keys.save_name(v) for v in tf1.global_variables()})
      values = checkpoint_layouts.read_values(names)
    self.assertEqual(summary.excluded, ("global_step",))
    self.assertIn("user_embedding/Adam_1", summary.warm_started)
    for name in names:
      if name != "global_step":
        self.assertAllEqual(values[name], reader.get_tensor(name), msg=name)

  def _build_ranking_model(self, num_partitions):
    ranking_model.build_training_graph(
      ranking_model.RankingParams(num_partitions=num_partitions)
    )

  @parameterized.named_parameters(
    ("scope_dict", {"tower/": ""}),
    ("regex_list", [(r"^tower/", "")]),
  )
  def test_rename_scope(self, rename):
    prefix = fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
    with tf.Graph().as_default():
      with tf1.variable_scope("tower"):
        for name in ("a", "b", "scoped/c"):
          tf1.get_variable(name, initializer=0.0)
      summary = warm_start.warm_start(prefix, rename=rename, strict=True)
      values = checkpoint_layouts.read_values(
        ["tower/a", "tower/b", "tower/scoped/c"]
      )
    self.assertEqual(
      values, {"tower/a": 1.0, "tower/b": 2.0, "tower/scoped/c": 3.0}
    )
    self.assertEqual(summary.warm_started["tower/scoped/c"], "scoped/c")
    self.assertIn("tower/a <- a", summary.format())

  def test_regex_subset(self):
    prefix = fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
    with tf.Graph().as_default():
      for name in ("a", "b", "scoped/c"):
        tf1.get_variable(name, initializer=0.0)
      summary = warm_start.warm_start(
        prefix, vars_to_warm_start=["a", "scoped/"]
      )
      values = checkpoint_layouts.read_values(["a", "b", "scoped/c"])
    self.assertEqual(values, {"a": 1.0, "b": 0.0, "scoped/c": 3.0})
    self.assertEqual(summary.not_selected, ("b",))

  def test_single_regex_selects_trainable_only(self):
    """Stock semantics: a regex string searches TRAINABLE_VARIABLES."""
    prefix = fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
    with tf.Graph().as_default():
      tf1.get_variable("a", initializer=0.0)
      tf1.get_variable("b", initializer=0.0, trainable=False)
      warm_start.warm_start(prefix, vars_to_warm_start=".*")
      self.assertEqual(
        checkpoint_layouts.read_values(["a", "b"]), {"a": 1.0, "b": 0.0}
      )
    with tf.Graph().as_default():
      tf1.get_variable("a", initializer=0.0)
      tf1.get_variable("b", initializer=0.0, trainable=False)
      warm_start.warm_start(prefix)  # Default: trainable or not.
      self.assertEqual(
        checkpoint_layouts.read_values(["a", "b"]), {"a": 1.0, "b": 2.0}
      )

  @parameterized.named_parameters(
    (
      "shape",
      [3],
      tf.float32,
      r"shape \[3\] and dtype float32.*"
      r"`var` has shape \[\] and dtype float32",
    ),
    (
      "dtype",
      [],
      tf.int32,
      r"shape \[\] and dtype int32.*"
      r"`var` has shape \[\] and dtype float32",
    ),
  )
  def test_mismatch_names_variable_shapes_and_dtypes(
    self, shape, dtype, pattern
  ):
    model_dir = fixtures.testdata_path(fixtures.GOLDENS["est-tf2"])
    with tf.Graph().as_default():
      tf1.get_variable("var", shape=shape, dtype=dtype)
      with self.assertRaisesRegex(
        errors.ShapeMismatchError, r"`var`: the model's variable has " + pattern
      ) as raised:
        warm_start.warm_start(model_dir)
    self.assertIn(
      "Leave such a variable out with vars_to_warm_start", str(raised.exception)
    )
    self.assertIsInstance(raised.exception, ValueError)

  def test_mismatch_of_partitioned_parts(self):
    model_dir = self._dir()
    checkpoint_layouts.write("stock_tf2", model_dir, {"emb": _EMB}, {"emb": 2})
    with tf.Graph().as_default():
      checkpoint_layouts.create_variables(
        {"emb": np.zeros([10, 3])}, {"emb": 2}
      )
      with self.assertRaisesRegex(
        errors.ShapeMismatchError,
        r"`emb`: the model's variable has shape \[10, 3\] and dtype "
        r"float64; the checkpoint's `emb` has shape 2 partitions "
        r"\[6, 3\] \+ \[6, 3\] and dtype float32",
      ):
        warm_start.warm_start(model_dir)

  def test_strict_lists_what_is_missing(self):
    prefix = fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
    with tf.Graph().as_default():
      tf1.get_variable("a", initializer=0.0)
      tf1.get_variable("z", initializer=0.0)
      with self.assertRaisesRegex(
        errors.IncompatibleCheckpointError,
        r"1 of 2 selected variables are not in .*: `z`\. Checkpoint "
        r"variables no model variable maps to: `b`, `scoped/c`\. Map "
        r"names with rename",
      ):
        warm_start.warm_start(prefix, strict=True)

  def test_summary_is_logged_sorted_and_truncated(self):
    values = {f"v{i:02d}": np.array(i, np.float32) for i in range(13)}
    model_dir = self._dir()
    checkpoint_layouts.write("scaffold", model_dir, values)
    with tf.Graph().as_default():
      checkpoint_layouts.create_variables(
        {f"v{i:02d}": np.array(0, np.float32) for i in range(12)}
      )
      checkpoint_layouts.create_variables(
        {f"new{i:02d}": np.array(0, np.float32) for i in range(2)}
      )
      with self.assertLogs(logging.get_absl_logger(), "WARNING") as logs:
        summary = warm_start.warm_start(model_dir)
    self.assertEqual(summary.not_found, ("new00", "new01"))
    self.assertEqual(summary.unused_in_checkpoint, ("v12",))
    text = "\n".join(logs.output)
    self.assertIn("Warm-started 12 of 14 selected variables", text)
    self.assertIn("(TF2 object-based)", text)
    self.assertIn("warm-started: `v00`, `v01`", text)
    self.assertIn("`v09`, ... and 2 more", text)
    self.assertIn(
      "not found in checkpoint (keep their initializers): `new00`, `new01`",
      text,
    )
    self.assertIn(
      "unused in checkpoint (no variable maps to them): `v12`", text
    )

  def test_full_success_logs_at_info(self):
    prefix = fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
    with tf.Graph().as_default():
      tf1.get_variable("a", initializer=0.0)
      with self.assertLogs(logging.get_absl_logger(), "INFO") as logs:
        warm_start.warm_start(prefix, vars_to_warm_start=["a"])
    self.assertEqual([r.levelname for r in logs.records], ["INFO"])
    self.assertIn("Warm-started 1 of 1 selected variables", logs.output[0])

  def test_unused_rename_rule_is_an_error(self):
    prefix = fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
    with tf.Graph().as_default():
      tf1.get_variable("a", initializer=0.0)
      with self.assertRaisesRegex(
        errors.InvalidRenameError,
        r"rename rules matched no selected variable: `towr/`",
      ):
        warm_start.warm_start(prefix, rename={"towr/": ""})

  @parameterized.named_parameters(
    ("bad_type", 3, TypeError, "must be None, a regex"),
    ("mixed_list", ["a", 1], TypeError, "a list of"),
    ("bad_regex", ["("], ValueError, "does not compile"),
    ("bad_rename", None, errors.InvalidRenameError, "must be one too"),
  )
  def test_bad_options_fail_at_call_time(self, selection, error, fragment):
    prefix = fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
    rename = {"a/": "b"} if selection is None else None
    with self.assertRaisesRegex(error, fragment):
      warm_start.warm_start_settings(
        prefix, vars_to_warm_start=selection, rename=rename
      )

  def test_optimizer_state_is_what_optimizers_colocate(self):
    prefix = self._dir()
    values = {
      "w": checkpoint_layouts.distinct_values([3]),
      "w/Momentum": checkpoint_layouts.distinct_values([3], 10),
      "moving_mean": checkpoint_layouts.distinct_values([3], 20),
    }
    checkpoint_layouts.write("tf1", prefix, values)
    with tf.Graph().as_default():
      w = tf1.get_variable("w", initializer=np.zeros(3, np.float32))
      tf1.get_variable(
        "moving_mean", initializer=np.zeros(3, np.float32), trainable=False
      )
      tf1.train.MomentumOptimizer(0.1, 0.9).minimize(
        tf.reduce_sum(w), var_list=[w]
      )
      summary = warm_start.warm_start(prefix)
      restored = checkpoint_layouts.read_values(values)
    self.assertEqual(summary.excluded, ("w/Momentum",))
    self.assertAllEqual(restored["w"], values["w"])
    self.assertAllEqual(restored["moving_mean"], values["moving_mean"])
    self.assertAllEqual(restored["w/Momentum"], np.zeros(3))


class StockSuitePortTest(tf.test.TestCase):
  """Cases of TensorFlow's warm_starting_util_test.py, through our API.

  Source: tensorflow/tensorflow, tensorflow/python/training/
  warm_starting_util_test.py (`WarmStartingUtilTest`). Covered here (stock
  name -> ours):

    testWarmStartVar                       -> test_warm_start_var
    testWarmStartVarPrevVarPartitioned     -> test_prev_var_partitioned
    testWarmStartVarCurrentVarPartitioned  -> test_current_var_partitioned
    testWarmStartVarBothVarsPartitioned    -> test_both_vars_partitioned
    testWarmStart_ListOfVariables          -> test_list_of_variables
    testWarmStart_ListOfStrings            -> test_list_of_strings
    testWarmStart_TwoVarsFromTheSamePrevVar -> test_two_vars_from_same_var
    testWarmStart_ListOfRegexes            -> test_list_of_regexes
    testWarmStart_SparseColumnIntegerized,
    testWarmStart_SparseColumnHashed,
    testWarmStart_BucketizedColumn,
    testWarmStart_MultipleCols (minus its vocab column)
                                           -> test_linear_model_columns
    testWarmStart_ExplicitCheckpointFile   -> test_explicit_checkpoint_file
    testWarmStartMoreSettings (minus vocab) -> test_more_settings
    testErrorConditions (unused prev names) -> test_unused_rename_raises
    testWarmStartFromObjectBasedCheckpoint -> test_object_based_checkpoint

  Not covered: every VocabInfo case (testWarmStartVarWithVocab*,
  *ColumnVocab*, testWarmStart_SparseColumnVocabulary*,
  testWarmStartEmbeddingColumn*): our API has no vocabulary remapping; use
  stock `tf.estimator.WarmStartSettings` for those. Also
  testWarmStartVarsToWarmstartIsNone: stock None means "only variables with
  a VocabInfo", ours means every model variable.
  """

  def _prev_run(self, values, partitions=None):
    model_dir = self.create_tempdir().full_path
    checkpoint_layouts.write("tf1", model_dir, values, partitions)
    return model_dir

  def test_warm_start_var(self):
    prev = np.array([[0.5], [1.0], [1.5], [2.0]], np.float32)
    model_dir = self._prev_run({"fruit_weights": prev})
    with tf.Graph().as_default():
      tf1.get_variable("fruit_weights", initializer=np.zeros_like(prev))
      warm_start.warm_start(model_dir)
      self.assertAllEqual(
        checkpoint_layouts.read_values(["fruit_weights"])["fruit_weights"], prev
      )

  def _partitioned_case(
    self,
    prev_parts,
    current_parts,
    prev_name="fruit",
    current_name="fruit",
    rename=None,
  ):
    prev = np.array([[0.5], [1.0], [1.5], [2.0]], np.float32)
    model_dir = self._prev_run({prev_name: prev}, {prev_name: prev_parts})
    with tf.Graph().as_default():
      checkpoint_layouts.create_variables(
        {current_name: np.zeros_like(prev)}, {current_name: current_parts}
      )
      warm_start.warm_start(model_dir, rename=rename, strict=True)
      self.assertAllEqual(
        checkpoint_layouts.read_values([current_name])[current_name], prev
      )

  def test_prev_var_partitioned(self):
    self._partitioned_case(prev_parts=2, current_parts=0)

  def test_current_var_partitioned(self):
    self._partitioned_case(prev_parts=0, current_parts=2)

  def test_both_vars_partitioned(self):
    self._partitioned_case(
      2,
      2,
      prev_name="old_scope/fruit_weights",
      current_name="new_scope/fruit_weights",
      rename={"new_scope/": "old_scope/"},
    )

  def test_list_of_variables(self):
    model_dir = self._prev_run({"v1": np.ones([10, 1], np.float32)})
    with tf.Graph().as_default():
      var = tf1.get_variable(
        "v1", shape=[10, 1], initializer=tf1.zeros_initializer()
      )
      tf1.get_variable("v2", shape=[10, 1], initializer=tf1.zeros_initializer())
      warm_start.warm_start(model_dir, vars_to_warm_start=[var])
      values = checkpoint_layouts.read_values(["v1", "v2"])
    self.assertAllEqual(values["v1"], np.ones([10, 1]))
    self.assertAllEqual(values["v2"], np.zeros([10, 1]))

  def test_list_of_strings(self):
    model_dir = self._prev_run({"v1": np.ones([10, 1], np.float32)})
    with tf.Graph().as_default():
      tf1.get_variable("v1", shape=[10, 1], initializer=tf1.zeros_initializer())
      warm_start.warm_start(model_dir, vars_to_warm_start=["v1"])
      self.assertAllEqual(
        checkpoint_layouts.read_values(["v1"])["v1"], np.ones([10, 1])
      )

  def test_two_vars_from_same_var(self):
    model_dir = self._prev_run({"v1": np.ones([10, 1], np.float32)})
    with tf.Graph().as_default():
      for name in ("v1", "v2"):
        tf1.get_variable(
          name, shape=[10, 1], initializer=tf1.zeros_initializer()
        )
      warm_start.warm_start(
        model_dir, vars_to_warm_start=["v1", "v2"], rename={"v2": "v1"}
      )
      values = checkpoint_layouts.read_values(["v1", "v2"])
    self.assertAllEqual(values["v1"], np.ones([10, 1]))
    self.assertAllEqual(values["v2"], np.ones([10, 1]))

  def test_list_of_regexes(self):
    names = ["v1", "v1/Momentum", "v2", "v2/Momentum"]
    model_dir = self._prev_run(
      {name: np.ones([10, 1], np.float32) for name in names}
    )
    with tf.Graph().as_default():
      # Trainable variables named like slots are model variables.
      for name in names:
        tf1.get_variable(
          name, shape=[10, 1], initializer=tf1.zeros_initializer()
        )
      # Warm-starts v1 and v1/Momentum, but only v2 (not v2/Momentum).
      warm_start.warm_start(model_dir, vars_to_warm_start=["v1", "v2[^/]"])
      values = checkpoint_layouts.read_values(names)
    self.assertAllEqual(values["v1"], np.ones([10, 1]))
    self.assertAllEqual(values["v1/Momentum"], np.ones([10, 1]))
    self.assertAllEqual(values["v2"], np.ones([10, 1]))
    self.assertAllEqual(values["v2/Momentum"], np.zeros([10, 1]))

  def _linear_model(self, columns, partitioner):
    features = {
      "sc_int": tf1.sparse_placeholder(tf.int64),
      "sc_hash": tf1.sparse_placeholder(tf.string),
      "sc_keys": tf1.sparse_placeholder(tf.string),
      "real": tf1.placeholder(tf.float32),
    }
    cols_to_vars = {}
    with tf1.variable_scope("", partitioner=partitioner):
      tf1.feature_column.linear_model(
        features=features,
        feature_columns=columns,
        units=1,
        cols_to_vars=cols_to_vars,
      )
    return cols_to_vars

  def test_linear_model_columns(self):
    fc = tf1.feature_column
    sc_int = fc.categorical_column_with_identity("sc_int", num_buckets=10)
    sc_hash = fc.categorical_column_with_hash_bucket(
      "sc_hash", hash_bucket_size=15
    )
    real_bucket = fc.bucketized_column(
      fc.numeric_column("real"), boundaries=[0.0, 1.0, 2.0, 3.0]
    )
    prev = {
      "linear_model/sc_int/weights": checkpoint_layouts.distinct_values(
        [10, 1]
      ),
      "linear_model/sc_hash/weights": checkpoint_layouts.distinct_values(
        [15, 1], 100
      ),
      "linear_model/real_bucketized/weights": (
        checkpoint_layouts.distinct_values([5, 1], 200)
      ),
      "linear_model/bias_weights": np.array([7.0], np.float32),
    }
    model_dir = self._prev_run(prev)

    def partitioner(shape, dtype):
      del dtype  # One partition per axis: partitioned, but whole.
      return [1] * len(shape)

    with tf.Graph().as_default():
      self._linear_model([sc_int, sc_hash, real_bucket], partitioner)
      warm_start.warm_start(model_dir, vars_to_warm_start=".*sc_int.*")
      values = checkpoint_layouts.read_values(prev)
    self.assertAllEqual(
      values["linear_model/sc_int/weights"], prev["linear_model/sc_int/weights"]
    )
    self.assertAllEqual(
      values["linear_model/sc_hash/weights"], np.zeros([15, 1])
    )
    with tf.Graph().as_default():
      self._linear_model([sc_int, sc_hash, real_bucket], partitioner)
      warm_start.warm_start(model_dir, strict=True)
      values = checkpoint_layouts.read_values(prev)
    for name, value in prev.items():
      self.assertAllEqual(values[name], value, msg=name)

  def test_explicit_checkpoint_file(self):
    model_dir = self._prev_run({"v1": np.ones([10, 1], np.float32)})
    with tf.Graph().as_default():
      tf1.get_variable("v1", shape=[10, 1], initializer=tf1.zeros_initializer())
      summary = warm_start.warm_start(os.path.join(model_dir, "model.ckpt-3"))
      self.assertAllEqual(
        checkpoint_layouts.read_values(["v1"])["v1"], np.ones([10, 1])
      )
    self.assertEqual(
      summary.checkpoint, os.path.join(model_dir, "model.ckpt-3")
    )

  def test_more_settings(self):
    fc = tf1.feature_column
    sc_hash = fc.categorical_column_with_hash_bucket(
      "sc_hash", hash_bucket_size=15
    )
    sc_keys = fc.categorical_column_with_vocabulary_list(
      "sc_keys", vocabulary_list=["a", "b", "c", "e"]
    )
    prev_keys = checkpoint_layouts.distinct_values([4, 1], 1)
    model_dir = self._prev_run(
      {
        "linear_model/sc_hash/weights": np.ones([15, 1], np.float32),
        "some_other_name": prev_keys,
      }
    )

    def partitioner(shape, dtype):
      del dtype
      partitions = [1] * len(shape)
      partitions[0] = min(2, shape.dims[0].value)
      return partitions

    with tf.Graph().as_default():
      cols_to_vars = self._linear_model([sc_hash, sc_keys], partitioner)
      warm_start.warm_start(
        model_dir,
        vars_to_warm_start=".*(sc_keys).*",
        rename={"linear_model/sc_keys/weights": "some_other_name"},
      )
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        keys_parts = sess.run(cols_to_vars[sc_keys])
        hash_parts = sess.run(cols_to_vars[sc_hash])
    for part, expected in zip(keys_parts, np.split(prev_keys, 2)):
      self.assertAllEqual(part, expected)
    for part, rows in zip(hash_parts, (8, 7)):
      self.assertAllEqual(part, np.zeros([rows, 1]))

  def test_unused_rename_raises(self):
    model_dir = self._prev_run({"x": np.ones([4, 1], np.float32)}, {"x": 2})
    with tf.Graph().as_default():
      checkpoint_layouts.create_variables(
        {"x": np.ones([4, 1], np.float32)}, {"x": 2}
      )
      with self.assertRaisesRegex(ValueError, "`y`"):
        warm_start.warm_start(model_dir, rename={"y": "y2"})

  def test_object_based_checkpoint(self):
    prev = np.array([[0.5], [1.0], [1.5], [2.0]], np.float32)
    model_dir = self.create_tempdir().full_path
    with tf.Graph().as_default():
      prev_var = tf1.get_variable("fruit_weights", initializer=prev)
      with tf1.Session() as sess:
        sess.run(prev_var.initializer)
        tf.train.Checkpoint(v=prev_var).save(
          os.path.join(model_dir, "checkpoint")
        )
    with tf.Graph().as_default():
      tf1.get_variable("fruit_weights", initializer=np.zeros_like(prev))
      summary = warm_start.warm_start(model_dir, strict=True)
      self.assertAllEqual(
        checkpoint_layouts.read_values(["fruit_weights"])["fruit_weights"], prev
      )
    self.assertTrue(summary.object_based)


if __name__ == "__main__":
  absltest.main()
