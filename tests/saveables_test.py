"""Lookup tables as TF2 object-graph nodes (issue 19, item 4).

An Estimator whose model_fn fills a `MutableHashTable` and a `DenseHashTable`
trains stock (TF1) and migrated (TF2); the migrated checkpoint holds each
table as `tf.train.Checkpoint(var_list={name: table})` writes it, so a TF2
Checkpoint restores it, and answers as stock does to predictions, exports,
TF1 readers and the tools (list_variables, inspect, convert, verify).
"""

import os
from typing import Any, Dict, List, Tuple

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import inspect_main
from estimator_ckpt import keys

from tests import tool_fixtures

tf1 = tf.compat.v1

_WORDS = np.array([b"a", b"b", b"c"])
_IDS = np.array([1, 2, 3], np.int64)
_TABLE = "vocab/table"
_DENSE = "dense_table"
# What `tf.train.Checkpoint(var_list={_TABLE: table})` stores the table under.
_TABLE_KEYS = "var_list/vocab.Stable/.ATTRIBUTES/table-keys"


def _tables(
  graph_mode: bool = True,
) -> Tuple[tf.lookup.experimental.MutableHashTable, Any]:
  lookup = tf1.lookup.experimental if graph_mode else tf.lookup.experimental
  table = lookup.MutableHashTable(tf.string, tf.int64, 0, name=_TABLE)
  dense = lookup.DenseHashTable(
    tf.int64, tf.float32, 0.0, empty_key=-1, deleted_key=-2, name=_DENSE
  )
  return table, dense


def _model_fn(features, labels, mode):
  """Fills the tables while training; predicts through them."""
  table, dense = _tables()
  kernel = tf1.get_variable("w", [1], initializer=tf1.zeros_initializer())
  ids = table.lookup(features["word"])
  predictions = tf.cast(ids, tf.float32) * kernel + dense.lookup(ids)
  loss = train_op = None
  if mode != tf.estimator.ModeKeys.PREDICT:
    loss = tf1.losses.mean_squared_error(labels, predictions)
  if mode == tf.estimator.ModeKeys.TRAIN:
    minimize = tf1.train.GradientDescentOptimizer(0.01).minimize(
      loss, global_step=tf1.train.get_global_step()
    )
    # The inserts run after the step's lookups and update: grouped without
    # the dependency they raced them, and the first step's gradient (so the
    # trained kernel) depended on which ran first.
    with tf.control_dependencies([minimize]):
      train_op = tf.group(
        table.insert(features["word"], features["id"]),
        dense.insert(features["id"], tf.cast(features["id"], tf.float32) * 10),
      )
  return tf.estimator.EstimatorSpec(
    mode,
    loss=loss,
    train_op=train_op,
    predictions={"y": predictions},
    export_outputs={
      "serving_default": tf.estimator.export.PredictOutput({"y": predictions})
    },
  )


def _input_fn():
  features = {"word": _WORDS, "id": _IDS}
  labels = _IDS.astype(np.float32) * 11
  return tf.data.Dataset.from_tensors((features, labels)).repeat()


def _serving_input_fn():
  word = tf1.placeholder(tf.string, [None], name="word")
  return tf.estimator.export.ServingInputReceiver(
    {"word": word}, {"word": word}
  )


def _restore_tables_in_tf2(prefix: str) -> Dict[str, np.ndarray]:
  """Restores the tables with `tf.train.Checkpoint`, checking it matched."""
  table, dense = _tables(graph_mode=False)
  checkpoint = tf.train.Checkpoint(var_list={_TABLE: table, _DENSE: dense})
  checkpoint.restore(prefix).assert_existing_objects_matched()
  return {
    "table": table.lookup(tf.constant(_WORDS)).numpy(),
    "dense": dense.lookup(tf.constant(_IDS)).numpy(),
  }


def _names(listing: List[Tuple[str, List[int]]]) -> List[str]:
  return sorted(name for name, _ in listing)


class TablesTest(parameterized.TestCase, tf.test.TestCase):
  def _train(self, migrate: bool) -> tf.estimator.Estimator:
    estimator = tf.estimator.Estimator(
      _model_fn,
      model_dir=self.create_tempdir().full_path,
      config=tf.estimator.RunConfig(tf_random_seed=1),
    )
    if migrate:
      estimator = estimator_ckpt.migrate_estimator(estimator)
    estimator.train(_input_fn, steps=3)
    return estimator

  def _predictions(self, estimator: tf.estimator.Estimator) -> np.ndarray:
    return np.array(
      [
        p["y"]
        for p in estimator.predict(
          lambda: tf.data.Dataset.from_tensors({"word": _WORDS})
        )
      ]
    )

  def _export(self, estimator: tf.estimator.Estimator) -> np.ndarray:
    export_dir = estimator.export_saved_model(
      os.path.join(estimator.model_dir, "export"), _serving_input_fn
    ).decode()
    loaded = tf.saved_model.load(export_dir)
    return loaded.signatures["serving_default"](word=tf.constant(_WORDS))[
      "y"
    ].numpy()

  def test_tables_are_object_graph_nodes_restored_by_tf2(self):
    stock = self._train(migrate=False)
    migrated = self._train(migrate=True)
    prefix = tf.train.latest_checkpoint(migrated.model_dir)
    stored = dict(tf.train.list_variables(prefix))
    self.assertIn(_TABLE_KEYS, stored)
    self.assertIn("var_list/dense_table/.ATTRIBUTES/table-values", stored)
    expected = {"table": _IDS, "dense": _IDS.astype(np.float32) * 10}
    restored = _restore_tables_in_tf2(prefix)
    for name, value in expected.items():
      self.assertAllEqual(restored[name], value, msg=name)
    # Predictions and exports equal stock's, through the restored tables.
    predictions = self._predictions(stock)
    self.assertAllClose(self._predictions(migrated), predictions)
    self.assertNotAllClose(predictions, np.zeros_like(predictions))
    self.assertAllClose(self._export(migrated), self._export(stock))
    # TF1 readers still find the tables by their TF1 names.
    self.assertAllEqual(
      tf.train.load_variable(prefix, _TABLE + "-values"),
      tf.train.load_variable(stock.model_dir, _TABLE + "-values"),
    )

  def test_tools_show_and_carry_tables(self):
    stock = self._train(migrate=False)
    migrated = self._train(migrate=True)
    names = _names(tf.train.list_variables(stock.model_dir))
    self.assertIn(_TABLE + "-keys", names)
    self.assertEqual(
      _names(estimator_ckpt.list_variables(migrated.model_dir)), names
    )
    stdout, _ = tool_fixtures.run_main(
      inspect_main.main, ["inspect", migrated.model_dir]
    )
    for suffix in keys.TABLE_SUFFIXES:
      self.assertIn(_TABLE + suffix, stdout)
    # TF1 -> TF2: the converted tables are graph nodes too.
    converted = estimator_ckpt.convert(
      stock.model_dir, self.create_tempdir().full_path, to="tf2"
    )
    self.assertIn(_TABLE_KEYS, dict(tf.train.list_variables(converted)))
    self.assertAllEqual(
      _restore_tables_in_tf2(converted)["table"],
      _restore_tables_in_tf2(tf.train.latest_checkpoint(migrated.model_dir))[
        "table"
      ],
    )
    estimator_ckpt.verify(converted, against=stock.model_dir)
    # TF2 -> TF1: the tables under their TF1 names, read by a TF1 Saver.
    back = estimator_ckpt.convert(
      converted, self.create_tempdir().full_path, to="tf1"
    )
    self.assertEqual(_names(tf.train.list_variables(back)), names)
    estimator_ckpt.verify(back, against=stock.model_dir)
    with tf.Graph().as_default():
      table, _ = _tables()
      tf1.train.get_or_create_global_step()
      tf1.get_variable("w", [1])
      with tf1.Session() as sess:
        tf1.train.Saver().restore(sess, back)
        self.assertAllEqual(sess.run(table.lookup(tf.constant(_WORDS))), _IDS)

  def test_tf1_dir_resumes_in_place_with_its_tables(self):
    stock = self._train(migrate=False)
    expected = self._predictions(stock)
    in_place = estimator_ckpt.migrate_estimator(
      tf.estimator.Estimator(
        _model_fn,
        model_dir=stock.model_dir,
        config=tf.estimator.RunConfig(tf_random_seed=1),
      )
    )
    # Restored by TF1 name from the TF1 checkpoint.
    self.assertAllClose(self._predictions(in_place), expected)
    in_place.train(lambda: _input_fn().take(1), steps=1)
    prefix = tf.train.latest_checkpoint(in_place.model_dir)
    self.assertEqual(estimator_ckpt.checkpoint_format(prefix), "tf2")
    self.assertAllEqual(_restore_tables_in_tf2(prefix)["table"], _IDS)

  def test_earlier_layout_with_tables_under_tf1_names_restores(self):
    # Earlier versions saved a table's tensors under its TF1 names next to
    # the object graph, which did not list the table.
    prefix = os.path.join(self.create_tempdir().full_path, "model.ckpt")
    with tf.Graph().as_default():
      table, dense = _tables()
      inserts = [
        table.insert(tf.constant(_WORDS), tf.constant(_IDS)),
        dense.insert(tf.constant(_IDS), tf.constant([7.0, 8.0, 9.0])),
      ]
      step = tf1.train.get_or_create_global_step()
      kernel = tf1.get_variable("w", initializer=[3.0])
      graph = tf1.Variable(keys.object_graph(["w"]).SerializeToString())
      var_list = {
        keys.variable_key("w"): kernel,
        keys.STEP_KEY: step,
        keys.OBJECT_GRAPH_KEY: graph,
      }
      for saveable in tf1.get_collection(tf1.GraphKeys.SAVEABLE_OBJECTS):
        var_list[saveable.name] = saveable
      saver = tf1.train.Saver(var_list)
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(inserts)
        saver.save(sess, prefix)
    stored = {name for name, _ in tf.train.list_variables(prefix)}
    self.assertContainsSubset({_TABLE + "-keys", _DENSE + "-values"}, stored)
    self.assertNotIn(_TABLE_KEYS, stored)
    with tf.Graph().as_default():
      table, dense = _tables()
      tf1.train.get_or_create_global_step()
      kernel = tf1.get_variable("w", [1])
      saver = estimator_ckpt.Tf2Saver()
      with tf1.Session() as sess:
        saver.restore(sess, prefix)
        self.assertAllEqual(sess.run(table.lookup(tf.constant(_WORDS))), _IDS)
        self.assertAllEqual(
          sess.run(dense.lookup(tf.constant(_IDS))), [7.0, 8.0, 9.0]
        )
        self.assertAllEqual(sess.run(kernel), [3.0])


if __name__ == "__main__":
  absltest.main()
