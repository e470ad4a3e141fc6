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

from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import async_save
from estimator_ckpt._src import scaffold
from estimator_ckpt._src import snapshot_bundle
from estimator_ckpt._src.storage import local

from tests import async_fixtures
from tests import tool_fixtures

tf1 = tf.compat.v1


class SameCheckpointTest(async_fixtures.TestCase):
  @parameterized.parameters(False, True)
  def test_same_contents_as_synchronous_save(self, also_write_tf1):
    sync_dir, async_dir = self.model_dir("sync"), self.model_dir("async")
    os.makedirs(os.path.join(sync_dir, scaffold.TF1_SUBDIR))
    os.makedirs(async_dir)
    gate = async_fixtures.Gate()
    with tf.Graph().as_default(), gate.patch():
      step, train = async_fixtures.model()
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
    expected = async_fixtures.tensors(sync_path)
    async_fixtures.assert_same_tensors(
      self, expected, async_fixtures.tensors(path)
    )
    self.assertEqual(expected[keys.STEP_KEY], at)
    self.assertIn("emb", expected)  # TF1-name aliases in both.
    self.assertIn("global_step", expected)
    self.assertEqual(
      async_fixtures.data_files(sync_path), async_fixtures.data_files(path)
    )
    # Byte for byte what SaveV2 and the aliases wrote.
    async_fixtures.assert_same_bytes(self, sync_path, path)
    with open(os.path.join(sync_dir, "checkpoint")) as f:
      sync_state = f.read()
    with open(os.path.join(async_dir, "checkpoint")) as f:
      self.assertEqual(f.read(), sync_state)
    tf1_dir = os.path.join(async_dir, scaffold.TF1_SUBDIR)
    if also_write_tf1:
      async_fixtures.assert_same_tensors(
        self,
        async_fixtures.tensors(tf.train.latest_checkpoint(sync_dir + "/tf1")),
        async_fixtures.tensors(tf.train.latest_checkpoint(tf1_dir)),
      )
    else:
      self.assertFalse(os.path.exists(tf1_dir))

  def test_restores_into_a_new_session(self):
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    with tf.Graph().as_default():
      step, train = async_fixtures.model()
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


class OneInFlightTest(async_fixtures.TestCase):
  def test_a_save_requested_in_flight_waits_for_it(self):
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    gate = async_fixtures.Gate()
    with tf.Graph().as_default(), gate.patch():
      step, train = async_fixtures.model()
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
      step, train = async_fixtures.model()
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

  def test_the_snapshot_handed_over_at_the_take_is_let_go_at_the_end(self):
    # The take hands the snapshot over in the caller's run; the write finds
    # it kept, and the save lets it go (its memory) whether it failed or not.
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    held_while_writing = []

    def write_segments(path, size, segments):
      del path, size, segments
      held_while_writing.append(hand_over._arrays is not None)
      raise OSError(28, "No space left on device")

    with async_fixtures.trained_session() as (sess, saver, step, train):
      hand_over = saver._async.snapshot.hand_over
      prefix = os.path.join(model_dir, "model.ckpt")
      saver.save_async(sess, prefix, global_step=step)
      saver.wait_until_finished()
      self.assertIsNone(hand_over._arrays)
      sess.run(train)
      with mock.patch.object(
        snapshot_bundle.direct_copy, "write_segments", write_segments
      ):
        saver.save_async(sess, prefix, global_step=step)
        with self.assertRaisesRegex(
          errors.AsyncSaveError, r"model\.ckpt-2.*No space left"
        ):
          saver.wait_until_finished()
      self.assertEqual(held_while_writing, [True])
      self.assertIsNone(hand_over._arrays)


class HandOverTest(async_fixtures.TestCase, parameterized.TestCase):
  """The take hands the snapshot over only where this process writes it."""

  @parameterized.named_parameters(
    ("local_disk", False, True),
    # ram:// is not a local disk and no uploader serves it: SaveV2 writes.
    ("savev2", True, False),
  )
  def test_handed_over_at_the_take_only_where_written_here(
    self, in_memory, handed_over
  ):
    if in_memory:
      model_dir = f"ram://{self.id()}/model"
      tf.io.gfile.makedirs(model_dir)
    else:
      model_dir = self.model_dir()
      os.makedirs(model_dir)
    gate = async_fixtures.Gate()
    with (
      gate.patch(),
      async_fixtures.trained_session() as (sess, saver, step, _),
    ):
      hand_over = saver._async.snapshot.hand_over
      path = saver.save_async(sess, f"{model_dir}/model.ckpt", global_step=step)
      gate.entered.wait()  # Taken; its write held.
      self.assertEqual(hand_over._arrays is not None, handed_over)
      gate.opened.set()
      saver.wait_until_finished()
      self.assertIsNone(hand_over._arrays)
    self.assertEqual(tf.train.latest_checkpoint(model_dir), path)
    reader = tf.train.load_checkpoint(model_dir)
    self.assertEqual(reader.get_tensor(keys.STEP_KEY), 1)

  def test_let_go_when_the_background_save_cannot_start(self):
    model_dir = self.model_dir()
    os.makedirs(model_dir)

    def cannot_start(*args, **kwargs):
      del args, kwargs
      raise RuntimeError("can't start new thread")

    with async_fixtures.trained_session() as (sess, saver, step, _):
      hand_over = saver._async.snapshot.hand_over
      with (
        mock.patch.object(saver._async.committer, "start", cannot_start),
        self.assertRaisesRegex(RuntimeError, "new thread"),
      ):
        saver.save_async(
          sess, os.path.join(model_dir, "model.ckpt"), global_step=step
        )
      self.assertIsNone(hand_over._arrays)


class DuplicateSaveTest(async_fixtures.TestCase):
  """`save` after `_expect_duplicate_save` (the hook under a cluster).

  Each case saves step 0 in the background, changes the kernel without
  advancing the step, and saves step 0 again with `save`: a write holds the
  new kernel, the announced duplicate returns the checkpoint unwritten.
  """

  @parameterized.named_parameters(
    ("announced", {}, False),
    ("not_announced", {"announce": False}, True),
    ("announced_once_saved_twice", {"save_twice": True}, True),
    ("restored_in_between", {"restore": True}, True),
    ("other_state_file", {"latest_filename": "other"}, True),
    ("other_session", {"other_session": True}, True),
  )
  def test_only_the_announced_save_returns_unwritten(self, case, written):
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    path = os.path.join(model_dir, "model.ckpt")
    with tf.Graph().as_default():
      step, _ = async_fixtures.model()
      kernel = [v for v in tf1.global_variables() if v.name == "dense/kernel:0"]
      change = kernel[0].assign_add(tf.ones([3, 2]))
      saver = scaffold.Tf2Saver(async_save=True)
      saver.build()
      with tf1.Session() as sess, tf1.Session() as other:
        for session in (sess, other):
          session.run(tf1.global_variables_initializer())
        at = sess.run(step)
        prefix = saver.save_async(sess, path, global_step=at)
        saver.wait_until_finished()
        if case.get("announce", True):
          saver._expect_duplicate_save(sess, prefix)  # pylint: disable=protected-access
        if case.get("restore"):
          saver.restore(sess, prefix)
        sess.run(change)
        other.run(change)
        kwargs = {"latest_filename": case.get("latest_filename")}
        session = other if case.get("other_session") else sess
        for _ in range(2 if case.get("save_twice") else 1):
          self.assertEqual(saver.save(session, path, at, **kwargs), prefix)
    self.assertAllEqual(
      tf.train.load_variable(prefix, keys.variable_key("dense/kernel")),
      np.full([3, 2], 2.0 if written else 1.0),
    )

  def test_without_a_step_it_writes(self):
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    path = os.path.join(model_dir, "model.ckpt")
    with tf.Graph().as_default():
      async_fixtures.model()
      kernel = [v for v in tf1.global_variables() if v.name == "dense/kernel:0"]
      change = kernel[0].assign_add(tf.ones([3, 2]))
      saver = scaffold.Tf2Saver(async_save=True)
      saver.build()
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        prefix = saver.save_async(sess, path)
        saver.wait_until_finished()
        saver._expect_duplicate_save(sess, prefix)  # pylint: disable=protected-access
        sess.run(change)
        self.assertEqual(saver.save(sess, path), path)
    self.assertAllEqual(
      tf.train.load_variable(path, keys.variable_key("dense/kernel")),
      np.full([3, 2], 2.0),
    )


class DurabilityTest(async_fixtures.TestCase):
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
      async_fixtures.estimator(model_dir).train(
        async_fixtures.repeat_input_fn, steps=2
      )
    for step, previous in ((0, None), (2, "model.ckpt-0")):
      prefix = f"model.ckpt-{step}"
      files = sorted(async_fixtures.data_files(os.path.join(model_dir, prefix)))
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


def _background_run_options(sess):
  """A spy on `sess.run`: the options of runs made off the main thread."""
  seen = []
  run = sess.run

  def spy(*args, **kwargs):
    if threading.current_thread() is not threading.main_thread():
      seen.append(kwargs.get("options"))
    return run(*args, **kwargs)

  return seen, mock.patch.object(sess, "run", spy)


class BackgroundThreadTest(async_fixtures.TestCase):
  """Background steps run in their own thread where TensorFlow can.

  In the session's inter-op pool a save holds a thread for its whole write
  (an upload, on an object store), and training steps wait for one.
  """

  def test_local_session_runs_background_steps_in_the_saving_thread(self):
    model_dir = self.model_dir()
    os.makedirs(model_dir)
    with tf.Graph().as_default():
      step, train = async_fixtures.model()
      saver = scaffold.Tf2Saver(async_save=True)
      saver.build()
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        sess.run(train)
        seen, spy = _background_run_options(sess)
        with spy:
          path = saver.save_async(
            sess, os.path.join(model_dir, "model.ckpt"), global_step=step
          )
          saver.wait_until_finished()
    # The release. The write ran none: the take handed the snapshot over.
    self.assertLen(seen, 1)
    for options in seen:
      self.assertEqual(options.inter_op_thread_pool, -1)
    self.assertEqual(async_fixtures.tensors(path)[keys.STEP_KEY], 1)

  @parameterized.parameters(
    ("", True),
    ("/cpu:0", True),
    ("/device:CPU:0", True),
    ("/job:localhost/replica:0/task:0/device:CPU:0", True),
    ("/device:CPU:1", False),
    ("/device:GPU:0", False),
    ("/job:ps/task:1", False),
    ("/job:localhost/task:1/device:CPU:0", False),
  )
  def test_one_local_cpu(self, device, expected):
    self.assertEqual(async_save._one_local_cpu([device]), expected)

  def test_devices_on_two_cpus_are_not_one_executor(self):
    self.assertFalse(async_save._one_local_cpu(["/cpu:0", "/device:CPU:1"]))


class DistributedDevicesTest(async_fixtures.TestCase):
  def test_snapshot_and_shards_stay_on_each_ps(self):
    worker, ps0, ps1 = tool_fixtures.free_ports(3)
    cluster = tf.train.ClusterSpec(
      {
        "worker": [f"127.0.0.1:{worker}"],
        "ps": [f"127.0.0.1:{ps0}", f"127.0.0.1:{ps1}"],
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
        seen, spy = _background_run_options(sess)
        with spy:
          path = saver.save_async(
            sess, os.path.join(model_dir, "model.ckpt"), global_step=step
          )
          sess.run(train)
          saver.wait_until_finished()
    # A cluster session keeps its pools: each ps runs its part itself.
    self.assertEqual(seen, [None, None])
    stored = async_fixtures.tensors(path)
    async_fixtures.assert_same_tensors(
      self, async_fixtures.tensors(sync_path), stored
    )
    np.testing.assert_array_equal(stored["emb"], np.full([6, 2], 2.0))
    self.assertEqual(stored[keys.STEP_KEY], 1)
    # One data shard per device, as the synchronous sharded save writes.
    self.assertEqual(
      async_fixtures.data_files(sync_path), async_fixtures.data_files(path)
    )
    # Each ps's SaveV2 of the snapshot: byte for byte the synchronous save.
    async_fixtures.assert_same_bytes(self, sync_path, path)
    self.assertLen(
      [f for f in async_fixtures.data_files(path) if ".data-" in f], 3
    )


if __name__ == "__main__":
  absltest.main()
