"""reader.py: variables by TF1 name for both formats, against TF."""

import json
import os

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import describe
from estimator_ckpt._src import reader
from estimator_ckpt._src.cli import render

from examples.guide import converter
from tests import tool_fixtures
from tests import tool_tf_fixtures


def _tf1_name(key: str, full_names) -> str:
  return keys.variable_name(key) or full_names.get(key) or key


class InspectionTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.parameters(
    ("tf1-ckpt", "tf1"),
    ("est-tf1", "tf1"),
    ("est-tf1-ranking", "tf1"),
    ("tf2-ckpt", "tf2"),
    ("est-tf2", "tf2"),
  )
  def test_checkpoint_format(self, name, expected):
    self.assertEqual(
      estimator_ckpt.checkpoint_format(tool_fixtures.golden_path(name)),
      expected,
    )

  @parameterized.parameters(*tool_fixtures.TF1_GOLDENS)
  def test_tf1_list_variables_matches_tensorflow(self, name):
    path = tool_fixtures.golden_path(name)
    self.assertEqual(
      estimator_ckpt.list_variables(path), tf.train.list_variables(path)
    )

  @parameterized.parameters(
    ("est-tf2", [("global_step", []), ("var", [])]),
    (
      "tf2-ckpt",
      # Not `save_counter`: the Checkpoint's own counter, no model variable.
      [("a", []), ("b", []), ("scoped/c", [])],
    ),
  )
  def test_tf2_list_variables_by_tf1_name(self, name, expected):
    self.assertEqual(
      estimator_ckpt.list_variables(tool_fixtures.golden_path(name)), expected
    )

  @parameterized.parameters(*tool_fixtures.GOLDENS)
  def test_load_variable_matches_tensorflow_bit_exactly(self, name):
    path = tool_fixtures.golden_path(name)
    reader = tf.train.load_checkpoint(path)
    full_names = {}
    if reader.has_tensor(keys.OBJECT_GRAPH_KEY):
      from tensorflow.core.protobuf import trackable_object_graph_pb2  # pylint: disable=g-import-not-at-top

      full_names = keys.full_names_by_key(
        trackable_object_graph_pb2.TrackableObjectGraph.FromString(
          reader.get_tensor(keys.OBJECT_GRAPH_KEY)
        )
      )
    for key, dtype in reader.get_variable_to_dtype_map().items():
      expected = np.asarray(
        reader.get_tensor(key), dtype=object if dtype == tf.string else None
      )
      # By raw key, and by TF1 name.
      tool_tf_fixtures.assert_bit_equal(
        self, expected, estimator_ckpt.load_variable(path, key), key
      )
      # The save counter is no variable: only its raw key reads it.
      if key not in (keys.OBJECT_GRAPH_KEY, keys.SAVE_COUNTER_KEY):
        tool_tf_fixtures.assert_bit_equal(
          self,
          expected,
          estimator_ckpt.load_variable(path, _tf1_name(key, full_names)),
          key,
        )

  def test_every_dtype(self):
    prefix = tool_tf_fixtures.save_v2(
      os.path.join(self.get_temp_dir(), "dtypes"),
      tool_tf_fixtures.every_dtype_tensors(),
    )
    expected = tool_tf_fixtures.tensorflow_values(prefix)
    self.assertEqual(
      [n for n, _ in estimator_ckpt.list_variables(prefix)], sorted(expected)
    )
    for key, value in expected.items():
      tool_tf_fixtures.assert_bit_equal(
        self, value, estimator_ckpt.load_variable(prefix, key), key
      )

  def test_partitioned_variables_whole_in_both_stock_layouts(self):
    tf1_prefix, tf2_prefix, value = tool_tf_fixtures.partitioned_checkpoints(
      self.get_temp_dir()
    )
    for prefix in (tf1_prefix, tf2_prefix):
      listed = dict(estimator_ckpt.list_variables(prefix))
      self.assertEqual(
        listed, {"emb": [10, 3], "dense/kernel": [3, 2], "global_step": []}
      )
      tool_tf_fixtures.assert_bit_equal(
        self, value, estimator_ckpt.load_variable(prefix, "emb")
      )
    # TensorFlow reads the TF1 layout whole too.
    tool_tf_fixtures.assert_bit_equal(
      self, value, tf.train.load_variable(tf1_prefix, "emb")
    )
    contents = reader.read(tf2_prefix)
    self.assertLen(contents.variables["emb"].keys, 4)
    self.assertLen(contents.variables["emb"].parts, 4)

  def test_scaffold_layout_by_name(self):
    prefix = tool_tf_fixtures.scaffold_layout_checkpoint(
      os.path.join(self.get_temp_dir(), "scaffold")
    )
    self.assertEqual(
      estimator_ckpt.list_variables(prefix),
      [
        ("dense/kernel", [2, 3]),
        ("emb", [6, 2]),
        ("emb/Adam", [6, 2]),
        ("global_step", []),
      ],
    )
    contents = reader.read(prefix)
    self.assertEqual(
      contents.variables["global_step"].keys,
      (keys.STEP_KEY, keys.GLOBAL_STEP_NAME),
    )
    self.assertEqual(estimator_ckpt.load_variable(prefix, "global_step"), 42)
    tool_tf_fixtures.assert_bit_equal(
      self,
      np.arange(12.0, dtype=np.float32).reshape([6, 2]),
      estimator_ckpt.load_variable(prefix, "emb"),
    )

  def test_alias_with_another_value_is_listed_by_key(self):
    prefix = tool_tf_fixtures.save_v2(
      os.path.join(self.get_temp_dir(), "stale_alias"),
      {
        keys.OBJECT_GRAPH_KEY: tf.constant(
          keys.object_graph([]).SerializeToString()
        ),
        keys.STEP_KEY: tf.constant(2, tf.int64),
        keys.GLOBAL_STEP_NAME: tf.constant(1, tf.int64),
      },
    )
    with self.assertLogs("absl", "WARNING"):
      names = [n for n, _ in estimator_ckpt.list_variables(prefix)]
    self.assertEqual(names, [keys.GLOBAL_STEP_NAME, keys.STEP_KEY])

  def test_guide_vars_layout_by_name(self):
    prefix = converter.convert_tf1_to_tf2(
      tool_fixtures.golden_path("tf1-ckpt"),
      os.path.join(self.get_temp_dir(), "converted"),
    )
    self.assertEqual(
      [n for n, _ in estimator_ckpt.list_variables(prefix)],
      ["a", "b", "scoped/c"],
    )
    self.assertEqual(estimator_ckpt.load_variable(prefix, "scoped/c"), 3.0)

  def test_conflicting_full_names_listed_by_key(self):
    # Eager variables may share a name; each stays visible under its key.
    prefix = tf.train.Checkpoint(v=[tf.Variable(1.0), tf.Variable(2.0)]).write(
      os.path.join(self.get_temp_dir(), "same_names")
    )
    names = [n for n, _ in estimator_ckpt.list_variables(prefix)]
    self.assertIn("v/0/.ATTRIBUTES/VARIABLE_VALUE", names)
    self.assertIn("v/1/.ATTRIBUTES/VARIABLE_VALUE", names)
    self.assertEqual(
      estimator_ckpt.load_variable(prefix, "v/1/.ATTRIBUTES/VARIABLE_VALUE"),
      2.0,
    )

  def test_unknown_name_suggests(self):
    path = tool_fixtures.golden_path("est-tf1-ranking")
    with self.assertRaisesRegex(
      errors.VariableNotFoundError, "Did you mean `hidden/kernel`"
    ):
      estimator_ckpt.load_variable(path, "hidden/kernal")
    with self.assertRaisesRegex(
      errors.VariableNotFoundError,
      "name-based \\(TF1\\) checkpoint.*pass the TF1 name `hidden/bias`",
    ):
      estimator_ckpt.load_variable(
        path, "var_list/hidden.Sbias/.ATTRIBUTES/VARIABLE_VALUE"
      )
    with self.assertRaises(KeyError):  # Also the builtin it refines.
      estimator_ckpt.load_variable(path, "nope")

  def test_describe_table_and_json(self):
    description = describe.describe(
      tool_fixtures.golden_path("est-tf2"), with_values=True
    )
    table = render.format_description(description)
    self.assertIn("format      tf2 (object-based)", table)
    self.assertRegex(
      table,
      r"\nglobal_step +\[\] +int64 +step/\.ATTRIBUTES/VARIABLE_VALUE"
      r" +1\n",
    )
    document = json.loads(render.to_json(description))
    self.assertEqual(document["format"], "tf2")
    self.assertEqual(
      [(v["name"], v["value"]) for v in document["variables"]],
      [("global_step", 1), ("var", 4.0)],
    )

  def test_raw_rows_for_the_guide_scenario(self):
    rows = describe.read_rows(tool_fixtures.golden_path("est-tf2"))
    self.assertEqual(
      [row.key for row in rows],
      [
        keys.OBJECT_GRAPH_KEY,
        "step/.ATTRIBUTES/VARIABLE_VALUE",
        "var_list/var/.ATTRIBUTES/VARIABLE_VALUE",
      ],
    )
    self.assertRegex(
      render.format_table(rows),
      r"var_list/var/\.ATTRIBUTES/VARIABLE_VALUE +\[\] +"
      r"float32 +4\.",
    )


class PartialSlicesTest(tf.test.TestCase):
  def test_partition_slots_as_tensorflow_writes_them(self):
    # A canned TF1 estimator with a partitioner: each partition's Ftrl slots
    # are saved as a variable of the full shape holding one slice
    # (`.../weights/part_0/Ftrl`). Real TF1 checkpoints, not damage.
    model_dir = self.create_tempdir().full_path
    column = tf.compat.v1.feature_column.numeric_column("x", shape=[4])
    estimator = tf.compat.v1.estimator.LinearClassifier(
      [column],
      model_dir=model_dir,
      partitioner=tf.compat.v1.fixed_size_partitioner(2),
    )

    def input_fn():
      return tf.data.Dataset.from_tensors(
        ({"x": np.ones([8, 4], np.float32)}, np.ones([8, 1], np.int64))
      ).repeat()

    estimator.train(input_fn, steps=2)
    slot = "linear/linear_model/x/weights/part_0/Ftrl"
    self.assertIn((slot, [4, 1]), estimator_ckpt.list_variables(model_dir))
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError, rf"`{slot}`.*only some slices"
    ):
      estimator_ckpt.load_variable(model_dir, slot)
    estimator_ckpt.verify(model_dir)
    converted = estimator_ckpt.convert(
      model_dir, os.path.join(self.create_tempdir().full_path, "tf2"), to="tf2"
    )
    estimator_ckpt.verify(converted, against=model_dir)
    # The model dir resumes in place under the TF2 saver.
    migrated = estimator_ckpt.migrate_estimator(
      tf.compat.v1.estimator.LinearClassifier(
        [column],
        model_dir=model_dir,
        partitioner=tf.compat.v1.fixed_size_partitioner(2),
      )
    )
    migrated.train(input_fn, steps=1)
    self.assertEqual(estimator_ckpt.checkpoint_format(model_dir), "tf2")
    self.assertEqual(migrated.get_variable_value("global_step"), 3)


if __name__ == "__main__":
  absltest.main()
