"""Every entry point on a URL: TensorFlow's in-process `ram://` file system.

`ram://` is registered by TensorFlow itself and behaves like an object store
to `tf.io.gfile` (no local path, any prefix of an object may look like a
directory), so the tools' URL paths (storage/gfile.py, the ordered
commit order in atomic.py) run here without a server. Each test also checks
that nothing appeared under the working directory: no code path may turn a
URL into a local path (`os.path.normpath("gs://b/x")` is `gs:/b/x`).
"""

import os
import secrets
import sys
import threading
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import convert_main
from estimator_ckpt import errors
from estimator_ckpt import inspect_main
from estimator_ckpt import verify_main
from estimator_ckpt._src import destination_lock
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.storage import gfile as gfile_storage

from examples.guide import models as guide_models
from examples.ranking import keras_model
from tests import tool_fixtures

tf1 = tf.compat.v1


def _upload(local_dir: str, url: str) -> str:
  tf.io.gfile.makedirs(url)
  for name in os.listdir(local_dir):
    tf.io.gfile.copy(
      os.path.join(local_dir, name), f"{url}/{name}", overwrite=True
    )
  return url


class RemoteTest(parameterized.TestCase, tf.test.TestCase):
  def setUp(self):
    super().setUp()
    self.bucket = f"ram://bucket-{secrets.token_hex(4)}"
    self.cwd = self.create_tempdir().full_path
    self.enter_context(tool_fixtures.Chdir(self.cwd))

  def tearDown(self):
    # Nothing of a URL may land under the working directory.
    self.assertEqual(os.listdir(self.cwd), [])
    super().tearDown()

  def _remote_golden(self, name: str) -> str:
    local = tool_fixtures.golden_path(name)
    directory = local if os.path.isdir(local) else os.path.dirname(local)
    url = _upload(directory, f"{self.bucket}/{name}")
    return url if os.path.isdir(local) else f"{url}/{os.path.basename(local)}"

  @parameterized.parameters(*tool_fixtures.GOLDENS)
  def test_readers(self, golden):
    remote = self._remote_golden(golden)
    local = tool_fixtures.golden_path(golden)
    self.assertEqual(
      estimator_ckpt.checkpoint_format(remote),
      estimator_ckpt.checkpoint_format(local),
    )
    listed = estimator_ckpt.list_variables(remote)
    self.assertEqual(listed, estimator_ckpt.list_variables(local))
    for name, _ in listed:
      self.assertAllEqual(
        estimator_ckpt.load_variable(remote, name),
        estimator_ckpt.load_variable(local, name),
      )
    report = estimator_ckpt.verify(remote, against=local)
    self.assertTrue(report.prefix.startswith(self.bucket), report.prefix)

  def test_convert_local_to_remote_to_remote_to_local(self):
    source = tool_fixtures.golden_path("est-tf1-ranking")
    tf2 = estimator_ckpt.convert(source, f"{self.bucket}/tf2/", to="tf2")
    self.assertEqual(tf2, f"{self.bucket}/tf2/model.ckpt-20")
    self.assertEqual(
      sorted(tf.io.gfile.listdir(f"{self.bucket}/tf2")),
      [
        "checkpoint",
        "model.ckpt-20.data-00000-of-00002",
        "model.ckpt-20.data-00001-of-00002",
        "model.ckpt-20.index",
      ],
    )
    # TensorFlow itself reads it, by TF2 key and by TF1 name (from the model
    # dir: TF's load_checkpoint takes a ram:// prefix for a directory).
    self.assertEqual(tf.train.latest_checkpoint(f"{self.bucket}/tf2"), tf2)
    self.assertAllEqual(
      tf.train.load_variable(f"{self.bucket}/tf2", "hidden/bias"),
      estimator_ckpt.load_variable(source, "hidden/bias"),
    )
    tf1_url = estimator_ckpt.convert(tf2, f"{self.bucket}/tf1", to="tf1")
    local = estimator_ckpt.convert(
      tf1_url, os.path.join(self.create_tempdir().full_path, "back"), to="tf2"
    )
    for converted in (tf2, tf1_url, local):
      estimator_ckpt.verify(converted, against=source)

  def test_overwrite_and_refusals_on_a_remote_destination(self):
    source = tool_fixtures.golden_path("est-tf1")
    dst = f"{self.bucket}/out"
    estimator_ckpt.convert(source, dst, to="tf2")
    with self.assertRaisesRegex(errors.DestinationExistsError, "overwrite"):
      estimator_ckpt.convert(source, dst, to="tf1")
    estimator_ckpt.convert(source, dst, to="tf1", overwrite=True)
    self.assertEqual(estimator_ckpt.checkpoint_format(dst), "tf1")
    self.assertEqual([n for n in tf.io.gfile.listdir(dst) if ".tmp-" in n], [])
    with self.assertRaisesRegex(
      errors.DestinationExistsError, "source's directory"
    ):
      estimator_ckpt.convert(dst, f"{dst}/inner", to="tf2")

  def test_second_writer_on_a_remote_destination_fails_at_once(self):
    source = tool_fixtures.golden_path("est-tf1")
    dst = f"{self.bucket}/out"
    lock = destination_lock.lock_path(dst)
    self.assertEqual(lock, f"{self.bucket}/.out.convert-lock")
    with destination_lock.hold(dst):
      self.assertLen(tf.io.gfile.listdir(lock), 1)
      for overwrite in (False, True):
        with self.assertRaisesRegex(
          errors.DestinationLockedError,
          rf"process {os.getpid()} on .*lock `{lock}/[0-9a-f]+`.*delete that "
          "object",
        ):
          estimator_ckpt.convert(source, dst, to="tf2", overwrite=overwrite)
        self.assertLen(tf.io.gfile.listdir(lock), 1)  # The refused one's gone.
    self.assertFalse(tf.io.gfile.exists(dst))
    self.assertEqual(checkpoint_files.listdir(lock), [])
    estimator_ckpt.convert(source, dst, to="tf2")  # Released.
    self.assertEqual(checkpoint_files.listdir(lock), [])
    estimator_ckpt.verify(dst, against=source)

  def test_a_failed_lock_listing_is_an_error_not_a_free_lock(self):
    # tf.io.gfile.isdir answers False for any error; the lock must not take
    # a failed listing for an empty one.
    source = tool_fixtures.golden_path("est-tf1")
    dst = f"{self.bucket}/out"
    lock = destination_lock.lock_path(dst)
    listdir, isdir = tf.io.gfile.listdir, tf.io.gfile.isdir

    def failing_listdir(path):
      if path.startswith(lock):
        raise tf.errors.UnavailableError(None, None, "store unavailable")
      return listdir(path)

    def failing_isdir(path):  # What TensorFlow's isdir makes of any error.
      return False if path.startswith(lock) else isdir(path)

    with (
      mock.patch.object(tf.io.gfile, "listdir", failing_listdir),
      mock.patch.object(tf.io.gfile, "isdir", failing_isdir),
      self.assertRaisesRegex(
        errors.CheckpointIOError, "Listing the lock.*store unavailable"
      ),
    ):
      estimator_ckpt.convert(source, dst, to="tf2")
    self.assertEqual(checkpoint_files.listdir(lock), [])
    self.assertFalse(tf.io.gfile.exists(dst))

  def test_a_failed_lock_write_leaves_no_lock(self):
    source = tool_fixtures.golden_path("est-tf1")
    dst = f"{self.bucket}/out"
    lock = destination_lock.lock_path(dst)
    open_file = tf.io.gfile.GFile

    class FailingWrites(open_file):
      def write(self, data):
        super().write(data[:3])  # ram:// keeps what was written so far.
        raise tf.errors.ResourceExhaustedError(None, None, "quota")

    def failing_open(path, mode="r"):
      if path.startswith(lock) and "w" in mode:
        return FailingWrites(path, mode)
      return open_file(path, mode)

    with (
      mock.patch.object(tf.io.gfile, "GFile", failing_open),
      self.assertRaisesRegex(errors.CheckpointIOError, "quota"),
    ):
      estimator_ckpt.convert(source, dst, to="tf2")
    self.assertEqual(checkpoint_files.listdir(lock), [])
    estimator_ckpt.convert(source, dst, to="tf2")  # Nobody is locked out.

  def test_long_non_ascii_remote_names_can_be_locked(self):
    dst = f"{self.bucket}/a{'é' * 120}x"
    source = tool_fixtures.golden_path("est-tf1")
    estimator_ckpt.convert(source, dst, to="tf2")
    estimator_ckpt.verify(dst, against=source)

  def test_file_url_paths_are_taken_literally(self):
    parent = self.create_tempdir().full_path
    for url, path in (
      (f"file://{parent}/a#1", f"{parent}/a#1"),
      (f"file://{parent}/b?x/", f"{parent}/b?x"),
      (f"file://localhost{parent}/c", f"{parent}/c"),
    ):
      with destination_lock.hold(path):
        with self.assertRaises(errors.DestinationLockedError, msg=url):
          with destination_lock.hold(url):
            pass
    with destination_lock.hold(f"file://{parent}/d#1"):
      with destination_lock.hold(f"file://{parent}/d#2"):
        pass  # Two names, two locks.

  def test_file_url_under_a_file_is_an_io_error(self):
    parent = self.create_tempdir().full_path
    with open(os.path.join(parent, "file"), "w"):
      pass
    with self.assertRaisesRegex(errors.CheckpointIOError, "file://"):
      estimator_ckpt.convert(
        tool_fixtures.golden_path("est-tf1"),
        f"file://{parent}/file/out",
        to="tf2",
      )

  def test_file_urls_are_local_paths_with_the_local_lock(self):
    source = tool_fixtures.golden_path("est-tf1")
    parent = self.create_tempdir().full_path
    dst = os.path.join(parent, "out")
    with destination_lock.hold(dst):
      with self.assertRaises(errors.DestinationLockedError):
        estimator_ckpt.convert(source, f"file://{dst}", to="tf2")
    estimator_ckpt.convert(source, f"file://{dst}", to="tf2")
    estimator_ckpt.verify(dst, against=source)
    self.assertEqual(sorted(os.listdir(parent)), ["out"])

  def test_lock_of_a_bucket_root_is_inside_it(self):
    self.assertEqual(
      destination_lock.lock_path(f"{self.bucket}/"),
      f"{self.bucket}/.convert-lock",
    )
    source = tool_fixtures.golden_path("est-tf1")
    estimator_ckpt.convert(source, self.bucket, to="tf2")
    estimator_ckpt.verify(self.bucket, against=source)

  def test_stale_remote_lock_is_cleared_and_another_hosts_respected(self):
    source = tool_fixtures.golden_path("est-tf1")
    dst = f"{self.bucket}/out"
    lock = destination_lock.lock_path(dst)
    stale = f"{lock}/left-by-a-killed-writer"
    with tf.io.gfile.GFile(stale, "wb") as f:
      f.write(destination_lock.owner_record(tool_fixtures.dead_pid()))
    estimator_ckpt.convert(source, dst, to="tf2")
    self.assertFalse(tf.io.gfile.exists(stale))
    with tf.io.gfile.GFile(f"{lock}/elsewhere", "wb") as f:
      f.write(b"some-other-host 4242\n")
    with self.assertRaisesRegex(
      errors.DestinationLockedError, "process 4242 on some-other-host"
    ):
      estimator_ckpt.convert(source, dst, to="tf1", overwrite=True)
    self.assertEqual(estimator_ckpt.checkpoint_format(dst), "tf2")

  def test_racing_writers_never_both_hold_a_remote_lock(self):
    # Threads stand in for processes (ram:// lives in this process): each
    # round, four writers try at once, and holders keep the lock until every
    # attempt is over, so any two successes in a round would have overlapped.
    writers = 4
    for round_number in range(25):
      dst = f"{self.bucket}/race-{round_number}"
      start = threading.Barrier(writers)
      attempted = threading.Barrier(writers)
      held = []

      def writer(dst=dst, start=start, attempted=attempted, held=held):
        start.wait()
        try:
          with destination_lock.hold(dst):
            held.append(threading.get_ident())
            attempted.wait()
        except errors.DestinationLockedError:
          attempted.wait()

      threads = [threading.Thread(target=writer) for _ in range(writers)]
      for thread in threads:
        thread.start()
      for thread in threads:
        thread.join()
      self.assertLessEqual(len(held), 1, f"round {round_number}")
      self.assertEqual(
        checkpoint_files.listdir(destination_lock.lock_path(dst)), []
      )

  def test_file_system_calls_do_not_grow_with_the_number_of_tensors(self):
    # On an object store every exists/isdir/stat/open is a request: reading
    # and comparing checkpoints opens each file once, whatever it holds.
    calls = {}
    for num_variables in (5, 200):
      local = self.create_tempdir().full_path
      with tf.Graph().as_default():
        for i in range(num_variables):
          tf1.get_variable(f"v{i}", initializer=float(i))
        tf1.train.get_or_create_global_step()
        with tf1.Session() as sess:
          sess.run(tf1.global_variables_initializer())
          tf1.train.Saver().save(sess, os.path.join(local, "model.ckpt"), 1)
      source = _upload(local, f"{self.bucket}/tf1-{num_variables}")
      converted = f"{self.bucket}/tf2-{num_variables}"
      estimator_ckpt.convert(source, converted, to="tf2")
      counted = _GfileCalls()
      with counted:
        estimator_ckpt.verify(converted, against=source)
        estimator_ckpt.list_variables(source)
        estimator_ckpt.load_variable(converted, "v3")
      calls[num_variables] = counted.calls
    self.assertEqual(calls[200], calls[5])
    self.assertLess(sum(calls[200].values()), 50, calls[200])

  def test_s3_objects_beyond_10000_upload_parts_are_refused_before_writing(
    self,
  ):
    # S3 takes 10,000 parts per upload and tensorflow-io does not grow its
    # part size to fit (aws-sdk-cpp#1693): 8 MiB parts hold 78 GiB.
    with mock.patch.dict(
      os.environ, {"S3_MULTI_PART_UPLOAD_CHUNK_SIZE": str(8 << 20)}
    ):
      gfile_storage.check_upload_size("s3://b/x", 10_000 * (8 << 20))
      gfile_storage.check_upload_size("gs://b/x", 10**15)  # GCS: no parts.
      with self.assertRaisesRegex(
        errors.CheckpointIOError,
        r"`s3://b/x` would hold 83886080001 bytes.*"
        r"S3_MULTI_PART_UPLOAD_CHUNK_SIZE to at least 8388609 ",
      ):
        gfile_storage.check_upload_size("s3://b/x", 10_000 * (8 << 20) + 1)

  def test_unregistered_scheme_is_a_named_error(self):
    with self.assertRaisesRegex(
      errors.FileSystemNotSupportedError, r"`nosuchfs://b/x.*install"
    ):
      estimator_ckpt.list_variables("nosuchfs://b/x")
    # s3:// needs tensorflow-io; here it is not installed.
    with (
      mock.patch.dict(sys.modules, {"tensorflow_io": None}),
      mock.patch.dict(os.environ),
      self.assertRaisesRegex(
        errors.FileSystemNotSupportedError,
        r"`s3://bucket/x`.*install tensorflow-io==0.36.0",
      ),
    ):
      estimator_ckpt.convert(
        tool_fixtures.golden_path("est-tf1"), "s3://bucket/x", to="tf2"
      )

  def test_binaries(self):
    remote = self._remote_golden("est-tf1-ranking")
    stdout, _ = tool_fixtures.run_main(inspect_main.main, ["inspect", remote])
    self.assertIn(f"checkpoint  {remote}/model.ckpt-20", stdout)
    stdout, _ = tool_fixtures.run_main(
      convert_main.main,
      ["convert", "--to=tf2", remote, f"{self.bucket}/converted"],
    )
    self.assertEqual(stdout.strip(), f"{self.bucket}/converted/model.ckpt-20")
    stdout, _ = tool_fixtures.run_main(
      verify_main.main,
      ["verify", f"{self.bucket}/converted", f"--against={remote}"],
    )
    self.assertRegex(stdout, "^OK .* bit-identical")

  def test_estimator_trains_and_warm_starts_on_urls(self):
    # A fresh model dir: TF 2.15's ram:// appends when an existing file is
    # opened for writing (it does not truncate), so the checkpoint Estimator
    # saves again at the step it resumes from would be corrupt there (object
    # stores replace objects). Resuming a remote dir in place is covered
    # against a real object store in the emulator tests.
    model_dir = f"{self.bucket}/model"
    est = estimator_ckpt.migrate_estimator(
      tf.estimator.Estimator(guide_models.model_fn_tf1_ckpt, model_dir)
    )
    est.train(guide_models.train_input_fn, steps=2)
    self.assertEqual(estimator_ckpt.checkpoint_format(model_dir), "tf2")
    self.assertEqual(est.get_variable_value("global_step"), 2)
    self.assertEqual(est.get_variable_value("var"), 4.0)
    estimator_ckpt.verify(model_dir)
    # Warm start from the remote dir into another remote model dir.
    warm = tf.estimator.Estimator(
      guide_models.model_fn_tf1_ckpt,
      f"{self.bucket}/warm",
      warm_start_from=estimator_ckpt.warm_start_settings(model_dir),
    )
    warm.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(warm.get_variable_value("var"), 6.0)
    with tf.Graph().as_default():
      var = tf1.get_variable("var", shape=[])
      estimator_ckpt.warm_start(model_dir)
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        self.assertEqual(sess.run(var), 4.0)
    np.testing.assert_equal(
      estimator_ckpt.load_variable(f"{self.bucket}/warm", "var"), 6.0
    )


_U = "foo://x/y"  # No file system is registered for `foo://`.


def _linear_regressor(model_dir: str) -> tf.estimator.Estimator:
  return tf.estimator.LinearRegressor(
    [tf.feature_column.numeric_column("x")], model_dir=model_dir
  )


class UnregisteredSchemeTest(parameterized.TestCase):
  """A scheme no file system is registered for, at every entry point."""

  @parameterized.named_parameters(
    ("checkpoint_format", lambda: estimator_ckpt.checkpoint_format(_U)),
    ("list_variables", lambda: estimator_ckpt.list_variables(_U)),
    ("load_variable", lambda: estimator_ckpt.load_variable(_U, "w")),
    ("convert_from", lambda: estimator_ckpt.convert(_U, _U + "2", to="tf2")),
    (
      "convert_to",
      lambda: estimator_ckpt.convert(
        tool_fixtures.golden_path("est-tf1"), _U, to="tf2"
      ),
    ),
    ("verify", lambda: estimator_ckpt.verify(_U)),
    ("warm_start_settings", lambda: estimator_ckpt.warm_start_settings(_U)),
    ("warm_start", lambda: estimator_ckpt.warm_start(_U)),
    (
      "migrate_estimator",
      lambda: estimator_ckpt.migrate_estimator(_linear_regressor(_U)),
    ),
  )
  def test_file_system_not_supported(self, entry_point):
    with self.assertRaisesRegex(
      errors.FileSystemNotSupportedError,
      r"no file system for `foo://`.*install the TensorFlow plugin",
    ):
      entry_point()


class RemoteKerasTest(tf.test.TestCase):
  def test_load_weights_from_a_url_equals_local(self):
    bucket = f"ram://keras-{secrets.token_hex(4)}"
    local = tool_fixtures.golden_path("est-tf1-ranking")
    remote = _upload(local, f"{bucket}/est-tf1-ranking")
    loaded = []
    for source in (local, remote):
      model = keras_model.build()
      optimizer = keras_model.optimizer()
      report = estimator_ckpt.load_weights(
        model,
        source,
        optimizer=optimizer,
        rename={
          "item_embedding/embeddings": "item_embedding",
          "user_embedding/embeddings": "user_embedding",
        },
      )
      self.assertEqual(report.iterations, 20)
      loaded.append(
        [v.numpy() for v in model.variables + optimizer.variables()]
      )
    for from_local, from_remote in zip(*loaded):
      self.assertAllEqual(from_local, from_remote)


class _GfileCalls:
  """Counts calls of tf.io.gfile's functions that reach the file system."""

  _NAMES = ("exists", "isdir", "stat", "listdir", "glob", "GFile")

  def __init__(self):
    self.calls = {name: 0 for name in self._NAMES}
    self._patches = []

  def __enter__(self):
    for name in self._NAMES:
      original = getattr(tf.io.gfile, name)

      def counted(*args, _original=original, _name=name, **kwargs):
        self.calls[_name] += 1
        return _original(*args, **kwargs)

      patch = mock.patch.object(tf.io.gfile, name, counted)
      patch.start()
      self._patches.append(patch)
    return self

  def __exit__(self, *exc_info):
    for patch in reversed(self._patches):
      patch.stop()


if __name__ == "__main__":
  absltest.main()
