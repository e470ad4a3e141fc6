"""Tests of the TF1 name <-> TF2 key mapping against real TensorFlow saves."""

import os

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src.format import keys as format_keys

tf1 = tf.compat.v1

# Names whose escaping is easy to get wrong.
_TRICKY_NAMES = (
  "a",
  "dense/kernel",
  "a.b",
  "a/b.c",
  "a..b",
  "a.Sb",
  "a./b",
  "x.S.S/y",
  "tower-1/w>0",
  "..",
  ".S",
  "/lead",
  "trail.",
)


class KeysTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.parameters(*_TRICKY_NAMES)
  def test_round_trip(self, name):
    self.assertEqual(keys.unescape(keys.escape(name)), name)
    self.assertEqual(keys.variable_name(keys.variable_key(name)), name)

  @parameterized.parameters(*_TRICKY_NAMES)
  def test_escape_matches_tensorflow(self, name):
    """Our key is the key TensorFlow writes for `var_list={name: v}`."""
    prefix = os.path.join(self.create_tempdir().full_path, "ckpt")
    with tf.Graph().as_default():
      v = tf1.get_variable("v", shape=[], initializer=tf1.ones_initializer())
      ckpt = tf.train.Checkpoint(var_list={name: v})
      with tf1.Session() as sess:
        sess.run(v.initializer)
        path = ckpt.write(prefix)
    stored = tf.train.load_checkpoint(path).get_variable_to_shape_map()
    self.assertIn(keys.variable_key(name), stored)

  def test_guide_decoding_is_wrong_for_dots(self):
    """The guide decodes with replace('.S', '/'); real escaping differs."""
    escaped = keys.escape("a.Sb")
    self.assertEqual(escaped, "a..Sb")
    self.assertEqual(escaped.replace(".S", "/"), "a./b")  # The guide's answer.
    self.assertEqual(keys.unescape(escaped), "a.Sb")

  @parameterized.parameters("a.b", "a.", "x.Y")
  def test_unescape_rejects_what_escape_never_writes(self, escaped):
    with self.assertRaisesRegex(errors.KeyEncodingError, "Pass the raw key"):
      keys.unescape(escaped)

  def test_step_key(self):
    self.assertEqual(
      keys.variable_key("global_step"), "step/.ATTRIBUTES/VARIABLE_VALUE"
    )
    self.assertEqual(
      keys.variable_name("step/.ATTRIBUTES/VARIABLE_VALUE"), "global_step"
    )

  @parameterized.parameters(
    ("vars/scoped.Sc/.ATTRIBUTES/VARIABLE_VALUE", "scoped/c"),
    ("var_list/a..b/.ATTRIBUTES/VARIABLE_VALUE", "a.b"),
    ("save_counter/.ATTRIBUTES/VARIABLE_VALUE", None),
    ("variables/0/.ATTRIBUTES/VARIABLE_VALUE", None),
    ("model/layer/kernel/.ATTRIBUTES/VARIABLE_VALUE", None),
    ("_CHECKPOINTABLE_OBJECT_GRAPH", None),
    ("dense/kernel", None),
  )
  def test_variable_name_of_other_layouts(self, key, name):
    self.assertEqual(keys.variable_name(key), name)

  def test_object_graph_matches_tensorflow(self):
    """Same graph as Checkpoint(var_list=..., step=...), save_counter aside."""
    names = ["b/x", "a.y"]
    prefix = os.path.join(self.create_tempdir().full_path, "ckpt")
    with tf.Graph().as_default():
      step = tf1.train.get_or_create_global_step()
      variables = {n: tf1.get_variable(n, shape=[]) for n in names}
      ckpt = tf.train.Checkpoint(var_list=variables, step=step)
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        path = ckpt.write(prefix)
    real = trackable_object_graph_pb2.TrackableObjectGraph()
    real.ParseFromString(
      tf.train.load_checkpoint(path).get_tensor(keys.OBJECT_GRAPH_KEY)
    )
    ours = keys.object_graph(names)
    self.assertEqual(keys.full_names_by_key(ours), keys.full_names_by_key(real))

    def edges(graph):
      return sorted(
        (node_id, child.local_name)
        for node_id, node in enumerate(graph.nodes)
        for child in node.children
      )

    self.assertEqual(
      {name for _, name in edges(ours)}, {name for _, name in edges(real)}
    )

  def test_table_nodes_match_tensorflow(self):
    """A table's node, attribute and keys as Checkpoint writes them."""
    prefix = os.path.join(self.create_tempdir().full_path, "ckpt")
    table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, 0)
    path = tf.train.Checkpoint(
      var_list={"vocab/t.x": table, "w": tf.Variable(1.0)}
    ).write(prefix)
    real = trackable_object_graph_pb2.TrackableObjectGraph()
    real.ParseFromString(
      tf.train.load_checkpoint(path).get_tensor(keys.OBJECT_GRAPH_KEY)
    )
    ours = keys.object_graph(["w"], step_name=None, tables=["vocab/t.x"])

    def attributes(graph):
      return sorted(
        (attribute.name, attribute.checkpoint_key)
        for node in graph.nodes
        for attribute in node.attributes
      )

    self.assertEqual(attributes(ours), attributes(real))
    stored = {name for name, _ in tf.train.list_variables(path)}
    for suffix in keys.TABLE_SUFFIXES:
      key = keys.tensor_key("vocab/t.x" + suffix, tables={"vocab/t.x"})
      self.assertIn(key, stored)
      self.assertEqual(keys.variable_name(key), "vocab/t.x" + suffix)
    self.assertEqual(
      format_keys.tables_among(["a-keys", "a-values", "b-keys", "c-values"]),
      {"a"},
    )


if __name__ == "__main__":
  absltest.main()
