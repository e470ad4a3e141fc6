"""Checkpoints every reader accepts (issue 11).

TF2 checkpoints written by the Scaffold factory and by `convert(to="tf2")`
also carry each variable's TF1 name as an index alias of the same bytes, and
the `save_counter` node `tf.train.Checkpoint` expects. Each reader here is
stock TensorFlow 2.15, reading them as its users do:

- a TF1 `Saver.restore` by name, `tf.train.load_variable` by TF1 name,
  stock `tf.compat.v1.train.warm_start`, `inspect_checkpoint`;
- `tf.train.Checkpoint(var_list=..., step=...).restore(path)
  .assert_consumed()`, the validation the guide "Reuse pre-existing TF1.x
  checkpoints" tells users to run;
- a stock TF1 Estimator resuming a migrated model dir.

Sources: the Scaffold factory with and without partitioned variables, saved
sharded across 1, 2 and 3 devices (the saver writes one shard per device and
merges them, as with parameter servers), and `convert`. Also: the aliases
cost no data bytes, and a `kill -9` at any step of the index rewrite leaves
the previous checkpoint named and every checkpoint whole.
"""

import os
import signal
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
from tensorflow.python.tools import inspect_checkpoint

import estimator_ckpt
from estimator_ckpt import keys
from estimator_ckpt._src import scaffold

from examples.ranking import data as ranking_data
from examples.ranking import model as ranking_model
from tests import tool_fixtures

tf1 = tf.compat.v1

_TABLE_ROWS = 12


def _build_model(devices: int, partitioned: bool):
  """A small model with Adam slots, its variables round-robin on devices."""
  placed = [0]

  def device_fn(op):
    if op.type in ("VarHandleOp", "VariableV2"):
      placed[0] += 1
      return f"/cpu:{(placed[0] - 1) % devices}"
    return op.device

  step = tf1.train.get_or_create_global_step()
  with tf1.device(device_fn):
    kernel = tf1.get_variable("dense/kernel", [4, 2])
    bias = tf1.get_variable("dense/bias", [2])
    table = tf1.get_variable(
      "emb",
      [_TABLE_ROWS, 4],
      partitioner=tf1.fixed_size_partitioner(3) if partitioned else None,
    )
  rows = tf1.nn.embedding_lookup(table, [0, 5, 11], partition_strategy="div")
  loss = tf.reduce_sum(tf.matmul(rows, kernel) + bias)
  with tf1.device(device_fn):
    train_op = tf1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
  return train_op


def _session_config(devices: int):
  return tf1.ConfigProto(device_count={"CPU": devices})


def _scaffold_model_dir(
  parent: str, devices: int, partitioned: bool, tf1_names: bool = True
) -> str:
  model_dir = os.path.join(parent, f"model-{devices}-{partitioned}")
  with tf.Graph().as_default():
    train_op = _build_model(devices, partitioned)
    with tf1.train.MonitoredTrainingSession(
      checkpoint_dir=model_dir,
      scaffold=scaffold.scaffold(tf1_names=tf1_names),
      config=_session_config(devices),
      save_checkpoint_steps=100,  # At the start and at the end.
    ) as sess:
      for _ in range(3):
        sess.run(train_op)
  return model_dir


def _tf1_names(prefix: str):
  return [name for name, _ in estimator_ckpt.list_variables(prefix)]


def _offset(variable):
  """Where a partition starts in its variable; [0] for a whole one."""
  info = getattr(variable, "_save_slice_info", None)
  return list(info.var_offset) if info is not None else [0]


class ReadersTest(parameterized.TestCase, tf.test.TestCase):
  _SOURCES = (
    ("scaffold_1_device", 1, False),
    ("scaffold_partitioned_1_device", 1, True),
    ("scaffold_partitioned_2_devices", 2, True),
    ("scaffold_partitioned_3_devices", 3, True),
    ("convert", 0, True),
  )

  def _prefix(self, devices: int, partitioned: bool) -> str:
    parent = self.create_tempdir().full_path
    if not devices:  # convert of the shipped TF1 ranking model dir.
      return estimator_ckpt.convert(
        tool_fixtures.golden_path("est-tf1-ranking"),
        os.path.join(parent, "converted"),
        to="tf2",
      )
    model_dir = _scaffold_model_dir(parent, devices, partitioned)
    prefix = tf.train.latest_checkpoint(model_dir)
    if devices > 1:  # Sharded: a data file per device (at least), merged.
      self.assertGreaterEqual(
        len(tf.io.gfile.glob(prefix + ".data-*")), devices
      )
    return prefix

  @parameterized.named_parameters(*_SOURCES)
  def test_load_variable_and_inspect_checkpoint_by_tf1_name(
    self, devices, partitioned
  ):
    prefix = self._prefix(devices, partitioned)
    self.assertEqual(estimator_ckpt.checkpoint_format(prefix), "tf2")
    names = _tf1_names(prefix)
    self.assertIn("global_step", names)
    self.assertNotIn(keys.SAVE_COUNTER, names)
    stock_names = {name for name, _ in tf.train.list_variables(prefix)}
    for name in names:
      self.assertIn(name, stock_names)
      self.assertAllEqual(
        tf.train.load_variable(prefix, name),
        estimator_ckpt.load_variable(prefix, name),
        msg=name,
      )
      inspect_checkpoint.print_tensors_in_checkpoint_file(
        prefix, tensor_name=name, all_tensors=False
      )
    inspect_checkpoint.print_tensors_in_checkpoint_file(
      prefix, tensor_name="", all_tensors=True
    )

  @parameterized.named_parameters(*_SOURCES[:4])
  def test_tf1_saver_restores_by_name(self, devices, partitioned):
    prefix = self._prefix(devices, partitioned)
    with tf.Graph().as_default():
      _build_model(devices, partitioned)
      saver = tf1.train.Saver()  # Stock, by TF1 name.
      with tf1.Session(config=_session_config(devices)) as sess:
        saver.restore(sess, prefix)
        self._assert_graph_holds(sess, prefix, with_step=True)

  @parameterized.named_parameters(*_SOURCES[:4])
  def test_stock_warm_start_by_name(self, devices, partitioned):
    prefix = self._prefix(devices, partitioned)
    with tf.Graph().as_default():
      _build_model(devices, partitioned)
      # A list of regexes: every global variable (a string: trainable ones).
      tf1.train.warm_start(prefix, vars_to_warm_start=[".*"])
      with tf1.Session(config=_session_config(devices)) as sess:
        sess.run(tf1.global_variables_initializer())
        self._assert_graph_holds(sess, prefix, with_step=False)

  def _assert_graph_holds(self, sess, prefix, with_step):
    """Every graph variable (partitions joined) equals the checkpoint's."""
    parts = {}
    for variable in tf1.global_variables():
      parts.setdefault(keys.save_name(variable), []).append(variable)
    self.assertCountEqual(parts, _tf1_names(prefix))
    for name, variables in parts.items():
      if name == "global_step" and not with_step:
        continue  # Warm start never carries the step over.
      variables.sort(key=_offset)
      values = sess.run(variables)
      value = values[0] if len(values) == 1 else np.concatenate(values)
      self.assertAllEqual(
        value, estimator_ckpt.load_variable(prefix, name), msg=name
      )

  @parameterized.named_parameters(*_SOURCES)
  def test_tf2_checkpoint_restore_assert_consumed(self, devices, partitioned):
    prefix = self._prefix(devices, partitioned)
    values = {
      name: estimator_ckpt.load_variable(prefix, name)
      for name in _tf1_names(prefix)
    }
    step_value = values.pop("global_step")
    var_list = {
      name: tf.Variable(tf.zeros_like(v)) for name, v in values.items()
    }
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(var_list=var_list, step=step)
    status = checkpoint.restore(prefix)
    status.assert_consumed()
    status.assert_existing_objects_matched()
    self.assertEqual(int(step.numpy()), int(step_value))
    self.assertEqual(int(checkpoint.save_counter.numpy()), int(step_value))
    for name, variable in var_list.items():
      self.assertAllEqual(variable.numpy(), values[name], msg=name)

  @parameterized.parameters(True, False)
  def test_aliases_cost_no_data_bytes(self, partitioned):
    parent = self.create_tempdir().full_path
    sizes = {}
    for tf1_names in (True, False):
      model_dir = _scaffold_model_dir(
        os.path.join(parent, str(tf1_names)), 2, partitioned, tf1_names
      )
      prefix = tf.train.latest_checkpoint(model_dir)
      sizes[tf1_names] = {
        os.path.basename(path)[len(os.path.basename(prefix)) :]: (
          os.path.getsize(path)
        )
        for path in tf.io.gfile.glob(prefix + ".*")
        if not path.endswith(".meta")
      }
    index_with, index_without = (
      sizes[True].pop(".index"),
      sizes[False].pop(".index"),
    )
    self.assertEqual(sizes[True], sizes[False])  # Data files: same bytes.
    self.assertGreater(index_with, index_without)

  def test_stock_tf1_estimator_resumes_a_migrated_model_dir(self):
    model_dir = os.path.join(self.create_tempdir().full_path, "ranker")
    params = ranking_model.RankingParams()
    examples = ranking_data.synthesize(64, params, seed=3)

    input_fn = ranking_data.input_fn(examples, batch_size=16, shuffle=False)

    migrated = estimator_ckpt.migrate_estimator(
      ranking_model.estimator(model_dir, params)
    )
    migrated.train(input_fn, steps=2)
    trained = estimator_ckpt.load_variable(model_dir, "hidden/kernel")
    stock = ranking_model.estimator(model_dir, params)  # TF1 Saver.
    # Restores by TF1 name: no step runs when max_steps is reached.
    stock.train(input_fn, max_steps=2)
    self.assertEqual(stock.get_variable_value("global_step"), 2)
    self.assertAllEqual(stock.get_variable_value("hidden/kernel"), trained)
    stock.train(input_fn, steps=1)
    self.assertEqual(stock.get_variable_value("global_step"), 3)


# Runs one save of the Scaffold factory in a child and SIGKILLs it at the
# named step of the index rewrite (a real kill -9, at an exact point).
_KILL_CHILD = r"""
import os, signal, sys
import tensorflow as tf
from estimator_ckpt._src import scaffold
from estimator_ckpt._src.format import aliases
from estimator_ckpt._src.storage import local
from tensorflow.python.checkpoint import checkpoint_management
from tests import readers_test

model_dir, point = sys.argv[1], sys.argv[2]
os.makedirs(model_dir)
tf1 = tf.compat.v1

def die(*args, **kwargs):
  os.kill(os.getpid(), signal.SIGKILL)

with tf.Graph().as_default():
  train_op = readers_test._build_model(1, True)
  saver_scaffold = scaffold.scaffold()
  saver_scaffold.finalize()
  saver = saver_scaffold.saver
  prefix = os.path.join(model_dir, "model.ckpt")
  with tf1.Session() as sess:
    sess.run(saver_scaffold.init_op)
    sess.run(train_op)
    saver.save(sess, prefix, global_step=1)
    if point == "before_rewrite":
      aliases.add_to_index = die
    elif point == "before_rename":
      local.LocalStorage.rename = die  # The index rewrite's rename.
    elif point == "before_state":
      checkpoint_management.update_checkpoint_state_internal = die
    sess.run(train_op)
    saver.save(sess, prefix, global_step=2)
    print("not killed", flush=True)
"""


class KillDuringIndexRewriteTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.parameters("before_rewrite", "before_rename", "before_state")
  def test_kill_leaves_the_previous_checkpoint_named_and_whole(self, point):
    model_dir = os.path.join(self.create_tempdir().full_path, "model")
    result = subprocess.run(
      [sys.executable, "-c", _KILL_CHILD, model_dir, point],
      capture_output=True,
      text=True,
      timeout=300,
      check=False,
      env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
    )
    self.assertEqual(result.returncode, -signal.SIGKILL, result.stderr[-2000:])
    # The state file still names the previous checkpoint...
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-1"
    )
    # ... which, like every checkpoint whose index exists, is whole: TF
    # reads it by TF2 key and our verify checks every byte.
    named = tf.train.latest_checkpoint(model_dir)
    for index in tf.io.gfile.glob(os.path.join(model_dir, "*.index")):
      prefix = index[: -len(".index")]
      estimator_ckpt.verify(prefix)
      step = tf.train.load_variable(prefix, keys.STEP_KEY)
      self.assertIn(int(step), (1, 2))
      stored = {name for name, _ in tf.train.list_variables(prefix)}
      # The named checkpoint has its aliases; the next, unnamed one has them
      # all or none (killed before its index was replaced).
      if prefix == named or "global_step" in stored:
        self.assertEqual(tf.train.load_variable(prefix, "global_step"), step)
        self.assertIn("dense/kernel", stored)
      else:
        self.assertNotIn("dense/kernel", stored)
    # Training resumes from it.
    with tf.Graph().as_default():
      train_op = _build_model(1, True)
      with tf1.train.MonitoredTrainingSession(
        checkpoint_dir=model_dir,
        scaffold=scaffold.scaffold(),
        save_checkpoint_steps=1,
      ) as sess:
        self.assertEqual(sess.run(tf1.train.get_global_step()), 1)
        sess.run(train_op)
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-2"
    )
    estimator_ckpt.verify(model_dir)


if __name__ == "__main__":
  absltest.main()
