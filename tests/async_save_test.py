"""Asynchronous saves (`scaffold(async_save=True)`): the guarantees of issue 20.

Real TensorFlow graphs, sessions and Estimators. The background writer is
held at a gate (a wrapper around `AsyncParts.write`, our code) where a test
needs training to run while a save is in flight, so no test depends on
timing; failures are injected at the same place or in the storage seam.
"""

import os
import threading
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import async_hook
from estimator_ckpt._src import async_save
from estimator_ckpt._src import migrate
from estimator_ckpt._src import scaffold
from estimator_ckpt._src.storage import local

from examples.guide import models as guide_models

tf1 = tf.compat.v1

_REAL_WRITE = async_save.AsyncParts.write


class _Gate:
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

  def write(self, sess, saver, prefix):
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
      _REAL_WRITE(sess, saver, prefix)
    finally:
      with self.lock:
        self.in_flight -= 1

  def patch(self):
    return mock.patch.object(
      async_save.AsyncParts, "write", staticmethod(self.write)
    )


def _model(partitions=2):
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


def _tensors(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {
    key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
  }


def _data_files(prefix):
  directory, base = os.path.split(prefix)
  return sorted(
    name[len(base) :]
    for name in os.listdir(directory)
    if name.startswith(base + ".")
  )


def _assert_same_tensors(test, expected, actual):
  test.assertEqual(sorted(expected), sorted(actual))
  for key, value in expected.items():
    np.testing.assert_array_equal(value, actual[key], err_msg=key)


class _TestCase(parameterized.TestCase, tf.test.TestCase):
  def model_dir(self, name="model"):
    return os.path.join(self.create_tempdir().full_path, name)


class SameCheckpointTest(_TestCase):
  @parameterized.parameters(False, True)
  def test_same_contents_as_synchronous_save(self, also_write_tf1):
    sync_dir, async_dir = self.model_dir("sync"), self.model_dir("async")
    os.makedirs(os.path.join(sync_dir, scaffold.TF1_SUBDIR))
    os.makedirs(async_dir)
    gate = _Gate()
    with tf.Graph().as_default(), gate.patch():
      step, train = _model()
      sync = scaffold.Tf2Saver(also_write_tf1=also_write_tf1)
      sync.build()
      saver = scaffold.Tf2Saver(async_save=True, also_write_tf1=also_write_tf1)
      saver.build()
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        for _ in range(3):
          sess.run(train)
        at = sess.run(step)
        sync.save(sess, os.path.join(sync_dir, "model.ckpt"), global_step=at)
        path = saver.save_async(
          sess, os.path.join(async_dir, "model.ckpt"), global_step=at
        )
        self.assertEqual(path, os.path.join(async_dir, f"model.ckpt-{at}"))
        # Training continues while the save is held at the gate.
        for _ in range(3):
          sess.run(train)
        self.assertIsNone(tf.train.latest_checkpoint(async_dir))
        gate.opened.set()
        saver.wait_until_finished()
        self.assertFalse(saver.save_in_flight())

    sync_path = tf.train.latest_checkpoint(sync_dir)
    self.assertEqual(tf.train.latest_checkpoint(async_dir), path)
    expected = _tensors(sync_path)
    _assert_same_tensors(self, expected, _tensors(path))
    self.assertEqual(expected[keys.STEP_KEY], at)
    self.assertIn("emb", expected)  # TF1-name aliases in both.
    self.assertIn("global_step", expected)
    self.assertEqual(_data_files(sync_path), _data_files(path))
    with open(os.path.join(sync_dir, "checkpoint")) as f:
      sync_state = f.read()
    with open(os.path.join(async_dir, "checkpoint")) as f:
      self.assertEqual(f.read(), sync_state)
    tf1_dir = os.path.join(async_dir, scaffold.TF1_SUBDIR)
    if also_write_tf1:
      _assert_same_tensors(
        self,
        _tensors(tf.train.latest_checkpoint(sync_dir + "/tf1")),
        _tensors(tf.train.latest_checkpoint(tf1_dir)),
      )
    else:
      self.assertFalse(os.path.exists(tf1_dir))

  def test_restores_into_a_new_session(self):
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    with tf.Graph().as_default():
      step, train = _model()
      saver = scaffold.Tf2Saver(async_save=True)
      saver.build()
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(train)
        saved = sess.run(tf1.global_variables())
        path = saver.save_async(
          sess, os.path.join(model_dir, "model.ckpt"), global_step=step
        )
        saver.wait_until_finished()
        sess.run(train)
      with tf1.Session() as sess:
        saver.restore(sess, path)
        for expected, value in zip(saved, sess.run(tf1.global_variables())):
          np.testing.assert_array_equal(expected, value)
    # The meta graph written in the background restores, as a stock one.
    with tf.Graph().as_default():
      imported = tf1.train.import_meta_graph(path + ".meta")
      with tf1.Session() as sess:
        imported.restore(sess, path)
        for expected, value in zip(saved, sess.run(tf1.global_variables())):
          np.testing.assert_array_equal(expected, value)


class OneInFlightTest(_TestCase):
  def test_a_save_requested_in_flight_waits_for_it(self):
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    gate = _Gate()
    with tf.Graph().as_default(), gate.patch():
      step, train = _model()
      saver = scaffold.Tf2Saver(async_save=True)
      saver.build()
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        prefix = os.path.join(model_dir, "model.ckpt")
        saver.save_async(sess, prefix, global_step=1)
        gate.entered.wait()
        second = threading.Thread(
          target=saver.save_async,
          args=(sess, prefix),
          kwargs={"global_step": 2},
        )
        second.start()
        # Held: the first save cannot finish, so the second cannot start.
        second.join(timeout=1.0)
        self.assertTrue(second.is_alive())
        self.assertEqual(gate.prefixes, [f"{prefix}-1"])
        gate.opened.set()
        second.join()
        saver.wait_until_finished()
    self.assertEqual(gate.max_in_flight, 1)
    self.assertEqual(gate.prefixes, [f"{prefix}-1", f"{prefix}-2"])
    state = tf.train.get_checkpoint_state(model_dir)
    self.assertEqual(
      [os.path.basename(p) for p in state.all_model_checkpoint_paths],
      ["model.ckpt-1", "model.ckpt-2"],
    )

  def test_snapshot_is_released_after_the_write(self):
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    with tf.Graph().as_default():
      step, train = _model()
      saver = scaffold.Tf2Saver(async_save=True)
      saver.build()
      handles = [
        op.outputs[0]
        for op in tf1.get_default_graph().get_operations()
        if op.type == "VarHandleOp" and "async_save_snapshot" in op.name
      ]
      self.assertNotEmpty(handles)
      is_initialized = [
        tf1.raw_ops.VarIsInitializedOp(resource=h) for h in handles
      ]
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(train)
        sess.run(saver._async.snapshot.take)  # pylint: disable=protected-access
        self.assertTrue(all(sess.run(is_initialized)))
        saver.save_async(
          sess, os.path.join(model_dir, "model.ckpt"), global_step=step
        )
        saver.wait_until_finished()
        self.assertFalse(any(sess.run(is_initialized)))


def _estimator(model_dir, save_steps=2, **options):
  return tf.estimator.Estimator(
    migrate.tf2_checkpoints(
      guide_models.model_fn_tf1_ckpt, async_save=True, **options
    ),
    model_dir,
    config=tf.estimator.RunConfig(
      save_checkpoints_steps=save_steps, keep_checkpoint_max=3
    ),
  )


def _repeat_input_fn():
  return guide_models.train_input_fn().repeat()


class _CommittedListener(tf1.train.CheckpointSaverListener):
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


class EstimatorTest(_TestCase):
  def test_installs_the_async_hook_on_the_runconfig_schedule(self):
    model_fn = migrate.tf2_checkpoints(
      guide_models.model_fn_tf1_ckpt, async_save=True
    )
    config = tf.estimator.RunConfig(
      model_dir=self.model_dir(), save_checkpoints_steps=7
    )
    with tf.Graph().as_default():
      features, labels = tf1.data.make_one_shot_iterator(
        guide_models.train_input_fn()
      ).get_next()
      spec = model_fn(features, labels, tf.estimator.ModeKeys.TRAIN, config)
    (hook,) = [
      h
      for h in spec.training_chief_hooks
      if isinstance(h, tf1.train.CheckpointSaverHook)
    ]
    self.assertIsInstance(hook, async_hook.AsyncCheckpointSaverHook)
    self.assertIs(estimator_ckpt.AsyncCheckpointSaverHook, type(hook))
    self.assertEqual(hook._timer._every_steps, 7)  # pylint: disable=protected-access
    self.assertTrue(spec.scaffold.saver.async_save)
    # Evaluation never saves: no snapshot, no hook.
    with tf.Graph().as_default():
      features, labels = tf1.data.make_one_shot_iterator(
        guide_models.train_input_fn()
      ).get_next()
      spec = model_fn(features, labels, tf.estimator.ModeKeys.EVAL, config)
    self.assertFalse(spec.scaffold.saver.async_save)
    self.assertEmpty(spec.training_chief_hooks)

  def test_train_returns_with_every_checkpoint_committed(self):
    model_dir = self.model_dir()
    # The last save is held well after training ends: train() must wait.
    gate = _Gate(hold_at="model.ckpt-7", open_after=1.0)
    with gate.patch():
      _estimator(model_dir).train(_repeat_input_fn, steps=7)
    self.assertFalse(
      [t for t in threading.enumerate() if "async-save" in t.name]
    )
    state = tf.train.get_checkpoint_state(model_dir)
    self.assertEqual(
      os.path.basename(state.model_checkpoint_path), "model.ckpt-7"
    )
    for path in state.all_model_checkpoint_paths:
      self.assertEqual(
        tf.train.load_checkpoint(path).get_tensor(keys.STEP_KEY),
        int(path.rsplit("-", 1)[1]),
      )
    # Every save went through the background writer: 0, 2, 4, 6 and 7.
    self.assertEqual(
      [os.path.basename(p) for p in gate.prefixes],
      [f"model.ckpt-{s}" for s in (0, 2, 4, 6, 7)],
    )
    # keep_checkpoint_max=3: retention applied in the background.
    self.assertEqual(
      [os.path.basename(p) for p in state.all_model_checkpoint_paths],
      ["model.ckpt-4", "model.ckpt-6", "model.ckpt-7"],
    )
    self.assertFalse(
      os.path.exists(os.path.join(model_dir, "model.ckpt-2.index"))
    )

  def test_listener_after_save_sees_the_committed_checkpoint(self):
    model_dir = self.model_dir()
    listener = _CommittedListener(self, model_dir)
    # Each write held a while: a listener run before the commit would see
    # the previous checkpoint.
    gate = _Gate(open_after=0.3)
    with gate.patch():
      _estimator(model_dir).train(
        _repeat_input_fn, steps=5, saving_listeners=[listener]
      )
    self.assertEqual(listener.steps, [0, 2, 4, 5])

  def test_resumes_and_max_steps(self):
    model_dir = self.model_dir()
    _estimator(model_dir).train(_repeat_input_fn, max_steps=3)
    est = _estimator(model_dir)
    est.train(_repeat_input_fn, max_steps=5)
    self.assertEqual(est.get_variable_value("global_step"), 5)
    est.train(_repeat_input_fn, max_steps=5)  # Already there: no step.
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-5"
    )

  def test_train_and_evaluate_evaluates_committed_checkpoints(self):
    model_dir = self.model_dir()
    est = _estimator(model_dir, save_steps=3)
    metrics, _ = tf.estimator.train_and_evaluate(
      est,
      tf.estimator.TrainSpec(_repeat_input_fn, max_steps=6),
      tf.estimator.EvalSpec(
        guide_models.train_input_fn, steps=1, throttle_secs=0
      ),
    )
    self.assertEqual(metrics["global_step"], 6)
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-6"
    )

  def test_migrate_estimator_takes_async_save(self):
    model_dir = self.model_dir()
    est = migrate.migrate_estimator(
      tf.estimator.Estimator(
        guide_models.model_fn_tf1_ckpt,
        model_dir,
        config=tf.estimator.RunConfig(save_checkpoints_steps=2),
      ),
      async_save=True,
    )
    gate = _Gate()
    gate.opened.set()
    with gate.patch():
      est.train(_repeat_input_fn, steps=3)
    self.assertNotEmpty(gate.prefixes)
    self.assertEqual(est.get_variable_value("global_step"), 3)


class FailureTest(_TestCase):
  def test_failure_is_raised_naming_it_and_previous_stays_whole(self):
    model_dir = self.model_dir()
    gate = _Gate(fail_at="model.ckpt-4")
    gate.opened.set()
    with gate.patch():
      with self.assertRaisesRegex(
        errors.AsyncSaveError, r"model\.ckpt-4` \(step 4\).*No space left"
      ) as raised:
        _estimator(model_dir).train(_repeat_input_fn, steps=8)
    self.assertEqual(raised.exception.checkpoint, f"{model_dir}/model.ckpt-4")
    self.assertEqual(raised.exception.step, 4)
    self.assertIn("model.ckpt-2", str(raised.exception))
    # Raised at the next save: nothing after step 4 was saved.
    self.assertEqual(
      [os.path.basename(p) for p in gate.prefixes],
      ["model.ckpt-0", "model.ckpt-2", "model.ckpt-4"],
    )
    latest = tf.train.latest_checkpoint(model_dir)
    self.assertEqual(os.path.basename(latest), "model.ckpt-2")
    self.assertEqual(
      tf.train.load_checkpoint(latest).get_tensor(keys.STEP_KEY), 2
    )
    # The next run resumes from it.
    est = _estimator(model_dir)
    est.train(_repeat_input_fn, steps=1)
    self.assertEqual(est.get_variable_value("global_step"), 3)

  def test_failure_of_the_last_save_is_raised_at_the_end(self):
    model_dir = self.model_dir()
    gate = _Gate(fail_at="model.ckpt-3")
    gate.opened.set()
    with gate.patch():
      with self.assertRaisesRegex(errors.AsyncSaveError, r"model\.ckpt-3"):
        _estimator(model_dir).train(_repeat_input_fn, steps=3)
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-2"
    )

  def test_storage_failure_in_commit_keeps_previous(self):
    model_dir = self.model_dir()
    real = local.LocalStorage.fsync_file
    calls = []

    def failing(store, path):
      calls.append(path)
      if "model.ckpt-2." in path:
        raise OSError(28, "No space left on device", path)
      real(store, path)

    with mock.patch.object(local.LocalStorage, "fsync_file", failing):
      with self.assertRaisesRegex(errors.AsyncSaveError, r"model\.ckpt-2"):
        _estimator(model_dir).train(_repeat_input_fn, steps=2)
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-0"
    )


class MonitoredSessionTest(_TestCase):
  def _graph(self, checkpoint_dir, **options):
    step, train = _model()
    sc = estimator_ckpt.scaffold(async_save=True, **options)
    hook = estimator_ckpt.AsyncCheckpointSaverHook(
      checkpoint_dir, save_steps=2, scaffold=sc
    )
    return step, train, sc, hook

  def test_close_by_exception_waits_for_the_save_in_flight(self):
    model_dir = self.model_dir()
    gate = _Gate(hold_at="model.ckpt-2")
    with tf.Graph().as_default(), gate.patch():
      _, train, sc, hook = self._graph(model_dir)
      with self.assertRaisesRegex(ValueError, "user error"):
        with tf1.train.MonitoredTrainingSession(
          scaffold=sc, chief_only_hooks=[hook], save_checkpoint_secs=None
        ) as sess:
          sess.run(train)
          sess.run(train)  # Step 2: a save, held at the gate.
          gate.entered.wait()
          threading.Timer(0.2, gate.opened.set).start()
          raise ValueError("user error")
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-2"
    )

  def test_resumes_from_its_checkpoints(self):
    model_dir = self.model_dir()
    for last_step in (3, 5):
      with tf.Graph().as_default():
        step, train, sc, hook = self._graph(model_dir)
        with tf1.train.MonitoredTrainingSession(
          scaffold=sc,
          checkpoint_dir=model_dir,
          chief_only_hooks=[hook],
          save_checkpoint_secs=None,
          hooks=[tf1.train.StopAtStepHook(last_step=last_step)],
        ) as sess:
          while not sess.should_stop():
            sess.run(train)
      self.assertEqual(
        os.path.basename(tf.train.latest_checkpoint(model_dir)),
        f"model.ckpt-{last_step}",
      )

  def test_stock_hook_saves_synchronously(self):
    model_dir = self.model_dir()
    gate = _Gate()
    with tf.Graph().as_default(), gate.patch():
      step, train = _model()
      sc = estimator_ckpt.scaffold(async_save=True)
      with tf1.train.MonitoredTrainingSession(
        scaffold=sc,
        checkpoint_dir=model_dir,
        save_checkpoint_steps=2,
        hooks=[tf1.train.StopAtStepHook(last_step=3)],
      ) as sess:
        while not sess.should_stop():
          sess.run(train)
    self.assertEqual(gate.prefixes, [])  # No background write.
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-3"
    )


class DurabilityTest(_TestCase):
  def test_checkpoint_fsynced_before_the_state_file_names_it(self):
    model_dir = self.model_dir()
    events = []
    real_file = local.LocalStorage.fsync_file
    real_dir = local.LocalStorage.fsync_dir

    def named():
      state = tf.train.get_checkpoint_state(model_dir)
      return os.path.basename(state.model_checkpoint_path) if state else None

    def fsync_file(store, path):
      events.append(("file", os.path.relpath(path, model_dir), named()))
      real_file(store, path)

    def fsync_dir(store, path):
      events.append(("dir", os.path.relpath(path, model_dir), named()))
      real_dir(store, path)

    with (
      mock.patch.object(local.LocalStorage, "fsync_file", fsync_file),
      mock.patch.object(local.LocalStorage, "fsync_dir", fsync_dir),
    ):
      _estimator(model_dir).train(_repeat_input_fn, steps=2)
    for step, previous in ((0, None), (2, "model.ckpt-0")):
      prefix = f"model.ckpt-{step}"
      files = sorted(_data_files(os.path.join(model_dir, prefix)))
      before = [e for e in events if e[1].startswith(prefix + ".")]
      # Every file of the checkpoint (index, data, meta) was fsynced while
      # the state file still named the previous checkpoint.
      self.assertEqual(sorted(e[1][len(prefix) :] for e in before), files)
      self.assertTrue(all(e[2] == previous for e in before), before)
      self.assertIn(".index", files)
      self.assertIn(".meta", files)
      # Then the directory, then (once named) the state file and directory.
      after_files = events[events.index(before[-1]) + 1 :]
      self.assertEqual(after_files[0], ("dir", ".", previous))
      self.assertEqual(after_files[1], ("file", "checkpoint", prefix))
      self.assertEqual(after_files[2], ("dir", ".", prefix))


class DistributedDevicesTest(_TestCase):
  def test_snapshot_and_shards_stay_on_each_ps(self):
    cluster = tf.train.ClusterSpec(
      {
        "worker": [f"localhost:{_free_port()}"],
        "ps": [f"localhost:{_free_port()}", f"localhost:{_free_port()}"],
      }
    )
    servers = [
      tf.distribute.Server(cluster, job_name=job, task_index=i, start=True)
      for job, i in (("worker", 0), ("ps", 0), ("ps", 1))
    ]
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    with tf.Graph().as_default():
      with tf1.device(
        tf1.train.replica_device_setter(ps_tasks=2, cluster=cluster)
      ):
        step = tf1.train.get_or_create_global_step()
        emb = tf1.get_variable(
          "emb",
          shape=[6, 2],
          initializer=tf1.initializers.ones(),
          partitioner=tf1.fixed_size_partitioner(2),
        )
        train = tf.group(
          step.assign_add(1), *[p.assign_add(tf.ones_like(p)) for p in emb]
        )
      saver = scaffold.Tf2Saver(async_save=True)
      saver.build()
      sync = scaffold.Tf2Saver()
      sync.build()
      snapshot_devices = {
        op.device
        for op in tf1.get_default_graph().get_operations()
        if op.type == "AssignVariableOp" and "async_save_snapshot" in op.name
      }
      self.assertEqual(
        {d.split("/device")[0] for d in snapshot_devices},
        {"/job:ps/task:0", "/job:ps/task:1"},
      )
      with tf1.Session(servers[0].target) as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(train)
        sync_path = sync.save(
          sess, os.path.join(model_dir, "sync.ckpt"), global_step=step
        )
        path = saver.save_async(
          sess, os.path.join(model_dir, "model.ckpt"), global_step=step
        )
        sess.run(train)
        saver.wait_until_finished()
    stored = _tensors(path)
    _assert_same_tensors(self, _tensors(sync_path), stored)
    np.testing.assert_array_equal(stored["emb"], np.full([6, 2], 2.0))
    self.assertEqual(stored[keys.STEP_KEY], 1)
    # One data shard per device, as the synchronous sharded save writes.
    self.assertEqual(_data_files(sync_path), _data_files(path))
    self.assertLen([f for f in _data_files(path) if ".data-" in f], 3)


def _free_port():
  import socket  # pylint: disable=g-import-not-at-top

  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


if __name__ == "__main__":
  absltest.main()
