"""Shared pieces of async_save_test and async_estimator_test.

A gate that holds background writes, a small model, an Estimator with async
saves, a listener that checks each checkpoint is committed, and readers.
"""

import contextlib
import os
import threading
from unittest import mock

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from estimator_ckpt import keys
from estimator_ckpt._src import async_save
from estimator_ckpt._src import migrate
from estimator_ckpt._src import scaffold

from examples.guide import models as guide_models

tf1 = tf.compat.v1

_REAL_WRITE = async_save.AsyncParts.write


class Gate:
  """Holds background writes until opened; counts writes in flight.

  Attributes:
    hold_at: Hold only the write of the prefix ending so (None: all).
    fail_at: The write of the prefix ending so fails (no space).
    open_after: Open the gate this many seconds after a held write arrives
      (None: the test opens it).
  """

  def __init__(self, hold_at=None, fail_at=None, open_after=None):
    self.hold_at = hold_at
    self.open_after = open_after
    self.opened = threading.Event()
    self.entered = threading.Event()
    self.lock = threading.Lock()
    self.in_flight = 0
    self.max_in_flight = 0
    self.prefixes = []
    self.fail_at = fail_at  # Prefix suffix whose write fails.

  def write(self, parts, sess, saver, prefix, *args):
    with self.lock:
      self.in_flight += 1
      self.max_in_flight = max(self.max_in_flight, self.in_flight)
      self.prefixes.append(prefix)
    held = self.hold_at is None or prefix.endswith(self.hold_at)
    try:
      if held:
        self.entered.set()
        if self.open_after is not None:
          threading.Timer(self.open_after, self.opened.set).start()
        self.opened.wait()
      if self.fail_at is not None and prefix.endswith(self.fail_at):
        raise tf.errors.ResourceExhaustedError(
          None, None, f"{prefix}: No space left on device (injected)"
        )
      return _REAL_WRITE(parts, sess, saver, prefix, *args)
    finally:
      with self.lock:
        self.in_flight -= 1

  def patch(self):
    gate = self

    def write(parts, sess, saver, prefix, *args):
      return gate.write(parts, sess, saver, prefix, *args)

    return mock.patch.object(async_save.AsyncParts, "write", write)


def model(partitions=2):
  """Global step, a partitioned embedding, a dense layer, Adam, a table."""
  step = tf1.train.get_or_create_global_step()
  emb = tf1.get_variable(
    "emb",
    shape=[8, 3],
    initializer=tf1.initializers.random_normal(seed=1),
    partitioner=tf1.fixed_size_partitioner(partitions),
  )
  kernel = tf1.get_variable(
    "dense/kernel", shape=[3, 2], initializer=tf1.initializers.ones()
  )
  table = tf.lookup.experimental.MutableHashTable(
    key_dtype=tf.int64, value_dtype=tf.float32, default_value=-1.0
  )
  looked_up = tf1.nn.embedding_lookup(emb, [1, 5])
  loss = tf.reduce_sum(tf.matmul(looked_up, kernel) ** 2)
  train = tf1.train.AdamOptimizer(0.1).minimize(loss, global_step=step)
  with tf.control_dependencies([train]):
    train = table.insert(
      tf.reshape(step, [1]), tf.reshape(tf.cast(step, tf.float32), [1])
    )
  return step, train


@contextlib.contextmanager
def trained_session():
  """`model()` trained one step, with an async `Tf2Saver` built.

  Yields:
    (session, saver, step, train op), in a graph of its own.
  """
  with tf.Graph().as_default():
    step, train = model()
    saver = scaffold.Tf2Saver(async_save=True)
    saver.build()
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      sess.run(train)
      yield sess, saver, step, train


def tensors(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {
    key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
  }


def data_files(prefix):
  directory, base = os.path.split(prefix)
  return sorted(
    name[len(base) :]
    for name in os.listdir(directory)
    if name.startswith(base + ".")
  )


def assert_same_bytes(test, expected_prefix, actual_prefix):
  """The index and data files of two checkpoints are byte for byte equal."""
  for suffix in data_files(actual_prefix):
    if suffix != ".meta":
      with open(expected_prefix + suffix, "rb") as f:
        expected = f.read()
      with open(actual_prefix + suffix, "rb") as f:
        test.assertEqual(f.read(), expected, suffix)


def assert_same_tensors(test, expected, actual):
  test.assertEqual(sorted(expected), sorted(actual))
  for key, value in expected.items():
    np.testing.assert_array_equal(value, actual[key], err_msg=key)


class TestCase(parameterized.TestCase, tf.test.TestCase):
  def model_dir(self, name="model"):
    return os.path.join(self.create_tempdir().full_path, name)


def estimator(model_dir, save_steps=2, **options):
  return tf.estimator.Estimator(
    migrate.tf2_checkpoints(
      guide_models.model_fn_tf1_ckpt, async_save=True, **options
    ),
    model_dir,
    config=tf.estimator.RunConfig(
      save_checkpoints_steps=save_steps, keep_checkpoint_max=3
    ),
  )


def repeat_input_fn():
  return guide_models.train_input_fn().repeat()


class CommittedListener(tf1.train.CheckpointSaverListener):
  """Records, at each after_save, what the model dir names and holds."""

  def __init__(self, test, model_dir):
    self.test = test
    self.model_dir = model_dir
    self.steps = []

  def after_save(self, session, global_step_value):
    latest = tf.train.latest_checkpoint(self.model_dir)
    self.test.assertIsNotNone(latest)
    self.test.assertEqual(
      os.path.basename(latest), f"model.ckpt-{global_step_value}"
    )
    stored = tf.train.load_checkpoint(latest).get_tensor(keys.STEP_KEY)
    self.test.assertEqual(stored, global_step_value)
    self.steps.append(int(global_step_value))
