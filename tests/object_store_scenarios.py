"""End-to-end scenarios every object store must pass, run against real servers.

Not a test by itself: `S3Test` (tests/s3_test.py: moto through tensorflow-io)
and `GcsTest` (tests/gcs_test.py: fake-gcs-server through TensorFlow's own
GCS client) subclass `Scenarios` and provide `start_server()`, a server with
`environ()`, `create_bucket(name)`, `keys(bucket, prefix)` and
`upload_file(path, bucket, key)` (uploads by the server's own API, not the
code under test). The library's API and Estimator run in-process; the
binaries and the killed conversions run as users run them, in child
processes. Each test also checks that nothing appeared under the working
directory (no code path may turn `s3://b/x` into the local path `s3:/b/x`).
"""

import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import threading
from typing import Any, Dict, List, Set
from unittest import mock

from absl import logging
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt._src import destination_lock
from estimator_ckpt._src import writer_priority
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.storage import uploader

from benchmarks import synthetic
from examples.guide import models as guide_models
from tests import tool_fixtures

tf1 = tf.compat.v1

CHILD_TIMEOUT_SECONDS = 300
# Runs convert(SRC, DST, to="tf2", overwrite=True) and SIGKILLs itself
# right before its KILL_AT-th change under DST (an object opened for writing,
# renamed onto, or removed), so a real kill -9 lands at each step of the
# remote commit in turn. Prints "done" when the conversion finishes first.
_KILL_AT_STEP = """
import os, signal, sys
import tensorflow as tf
import estimator_ckpt
src, dst, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
changes = 0
def change(path):
  global changes
  if path.startswith(dst + "/"):
    if changes == kill_at:
      os.kill(os.getpid(), signal.SIGKILL)
    changes += 1
gfile = tf.io.gfile
rename, remove, open_file = gfile.rename, gfile.remove, gfile.GFile
def killing_rename(old, new, overwrite=False):
  change(new)
  return rename(old, new, overwrite)
def killing_remove(path):
  change(path)
  return remove(path)
def killing_open(path, mode="r"):
  if "w" in mode or "a" in mode:
    change(path)
  return open_file(path, mode)
gfile.rename, gfile.remove, gfile.GFile = (
  killing_rename, killing_remove, killing_open)
estimator_ckpt.convert(src, dst, to="tf2", overwrite=True)
print("done")
sys.stdout.flush()
os._exit(0)
"""

# Starts an upload through the uploader process, and after its first MiB
# prints the worker's pid and SIGKILLs itself mid-file.
_KILLED_MID_UPLOAD = """
import os, signal, sys
import tensorflow as tf
from estimator_ckpt._src.storage import registry, uploader
path = sys.argv[1]
registry.for_path(path)  # Loads the scheme's file system, as a save does.
worker = uploader.Uploader()
def pieces():
  yield b"a" * (1 << 20)
  print(worker.pid, flush=True)
  os.kill(os.getpid(), signal.SIGKILL)
  yield b"b" * (1 << 20)
worker.write(path, 2 << 20, pieces(), lowered=lambda: True)
"""


def tool(name: str) -> List[str]:
  """The `name` binary as a user runs it."""
  return [sys.executable, "-m", f"estimator_ckpt.{name}_main"]


def child_env() -> Dict[str, str]:
  return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


class Scenarios(parameterized.TestCase, tf.test.TestCase):
  """The scenarios; subclasses say which server (module docstring)."""

  server: Any
  # The kill -9 test kills a conversion at every KILL_STEP_STRIDE-th change
  # under the destination (1: at each one). Each kill is a child process
  # that imports TensorFlow; a store whose client shares the commit protocol
  # with one tested at every step may sample it.
  KILL_STEP_STRIDE = 1

  @classmethod
  def start_server(cls) -> Any:
    raise NotImplementedError("a subclass starts its store's server")

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.server = cls.start_server()
    # The store's clients read these at their first transfer.
    cls._saved_environ = dict(os.environ)
    os.environ.update(cls.server.environ())

  @classmethod
  def tearDownClass(cls):
    cls.server.stop()
    os.environ.clear()
    os.environ.update(cls._saved_environ)
    super().tearDownClass()

  def setUp(self):
    super().setUp()
    self.bucket = f"storetest-{secrets.token_hex(6)}"
    self.url = self.server.create_bucket(self.bucket)
    self.cwd = self.create_tempdir().full_path
    self.enter_context(tool_fixtures.Chdir(self.cwd))

  def tearDown(self):
    # Estimator's event writers stay open until exit, which os._exit skips;
    # closed here, the store's client uploads their objects (and
    # tensorflow-io removes its staging files).
    tf1.summary.FileWriterCache.clear()
    # Nothing of a URL may land under the working directory.
    self.assertEqual(os.listdir(self.cwd), [])
    super().tearDown()

  def _keys(self, prefix: str) -> List[str]:
    """Object names under `prefix/` of the test's bucket, as listed."""
    # TensorFlow's GCS client makes a directory (makedirs) by writing an
    # empty `<dir>/` object; no reader takes it for a file.
    return [
      key[len(prefix) + 1 :]
      for key in self.server.keys(self.bucket, prefix + "/")
      if not key.endswith("/")
    ]

  def _upload(self, local_dir: str, prefix: str) -> str:
    """Uploads a directory's files by the server's API (not our code)."""
    for name in sorted(os.listdir(local_dir)):
      self.server.upload_file(
        os.path.join(local_dir, name), self.bucket, f"{prefix}/{name}"
      )
    return f"{self.url}/{prefix}"

  def _upload_golden(self, name: str) -> str:
    """A golden on the store: the same kind of path (dir or prefix)."""
    local = tool_fixtures.golden_path(name)
    if os.path.isdir(local):
      return self._upload(local, name)
    url = self._upload(os.path.dirname(local), name)
    return f"{url}/{os.path.basename(local)}"

  def _run(self, command: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
      command,
      cwd=self.cwd,
      env=child_env(),
      capture_output=True,
      text=True,
      check=False,
      timeout=CHILD_TIMEOUT_SECONDS,
    )

  @parameterized.parameters(*tool_fixtures.GOLDENS)
  def test_readers(self, golden):
    remote = self._upload_golden(golden)
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
    self.assertTrue(report.prefix.startswith(f"{self.url}/"), report.prefix)

  def test_convert_local_to_remote_to_remote_to_local(self):
    source = tool_fixtures.golden_path("est-tf1-ranking")
    tf2 = estimator_ckpt.convert(source, f"{self.url}/tf2/", to="tf2")
    self.assertEqual(tf2, f"{self.url}/tf2/model.ckpt-20")
    # Exactly the checkpoint's objects: no staging or temporary object left.
    self.assertEqual(
      self._keys("tf2"),
      [
        "checkpoint",
        "model.ckpt-20.data-00000-of-00002",
        "model.ckpt-20.data-00001-of-00002",
        "model.ckpt-20.index",
      ],
    )
    tf1_url = estimator_ckpt.convert(tf2, f"{self.url}/tf1", to="tf1")
    self.assertEqual(tf1_url, f"{self.url}/tf1/model.ckpt-20")
    self.assertEqual(
      self._keys("tf1"),
      [
        "checkpoint",
        "model.ckpt-20.data-00000-of-00001",
        "model.ckpt-20.index",
      ],
    )
    local_dir = os.path.join(self.create_tempdir().full_path, "back")
    local = estimator_ckpt.convert(tf1_url, local_dir, to="tf2")
    self.assertEqual(local, os.path.join(local_dir, "model.ckpt-20"))
    for converted in (tf2, tf1_url, local):
      estimator_ckpt.verify(converted, against=source)
    # TensorFlow itself finds and reads the remote results, by TF1 name.
    for model_dir, prefix in (
      (f"{self.url}/tf2", tf2),
      (f"{self.url}/tf1", tf1_url),
    ):
      self.assertEqual(tf.train.latest_checkpoint(model_dir), prefix)
      for name in ("hidden/bias", "user_embedding", "batch_norm/moving_mean"):
        self.assertAllEqual(
          tf.train.load_variable(model_dir, name),
          estimator_ckpt.load_variable(source, name),
          msg=f"{model_dir} {name}",
        )
    self.assertEqual(estimator_ckpt.checkpoint_format(f"{self.url}/tf2"), "tf2")
    self.assertEqual(estimator_ckpt.checkpoint_format(f"{self.url}/tf1"), "tf1")

  def test_overwrite_and_refusals(self):
    source = tool_fixtures.golden_path("est-tf1")
    dst = f"{self.url}/out"
    estimator_ckpt.convert(source, dst, to="tf2")
    with self.assertRaisesRegex(errors.DestinationExistsError, "overwrite"):
      estimator_ckpt.convert(source, dst, to="tf1")
    self.assertEqual(estimator_ckpt.checkpoint_format(dst), "tf2")
    estimator_ckpt.convert(source, dst, to="tf1", overwrite=True)
    self.assertEqual(estimator_ckpt.checkpoint_format(dst), "tf1")
    self.assertEqual(
      self._keys("out"),
      ["checkpoint", "model.ckpt-1.data-00000-of-00001", "model.ckpt-1.index"],
    )
    estimator_ckpt.verify(dst, against=source)
    with self.assertRaisesRegex(
      errors.DestinationExistsError, "source's directory"
    ):
      estimator_ckpt.convert(dst, f"{dst}/inner", to="tf2")

  def test_second_writer_fails_at_once(self):
    # A conversion holding the lock in this process; the binary, another
    # process, is refused at once and writes nothing.
    source = tool_fixtures.golden_path("est-tf1")
    dst = f"{self.url}/out"
    with destination_lock.hold(dst):
      self.assertLen(self.server.keys(self.bucket, ".out.convert-lock/"), 1)
      refused = self._run(tool("convert") + ["--to=tf2", source, dst])
      self.assertNotEqual(refused.returncode, 0)
      self.assertRegex(
        refused.stderr,
        rf"being written by process {os.getpid()} on .*\.out\.convert-lock/",
      )
      self.assertNotIn("Traceback", refused.stderr)
      self.assertEqual(self._keys("out"), [])
      self.assertLen(self.server.keys(self.bucket, ".out.convert-lock/"), 1)
    self.assertEqual(self.server.keys(self.bucket, ""), [])
    converted = self._run(tool("convert") + ["--to=tf2", source, dst])
    self.assertEqual(converted.returncode, 0, converted.stderr)
    self.assertEqual(self.server.keys(self.bucket, ".out.convert-lock/"), [])

  def test_trainer_binary_with_a_remote_output_dir(self):
    # The "silently wrong" run: the files must land in the bucket,
    # the trained model be evaluated from there, and the exit be clean.
    output_dir = f"{self.url}/demo"
    result = self._run(
      [
        sys.executable,
        "-m",
        "examples.ranking.train_main",
        f"--output_dir={output_dir}",
        "--train_steps=3",
      ]
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn("metrics before/after migration: IDENTICAL", result.stdout)
    self.assertIn(f"{output_dir}/est-tf2", result.stdout)
    keys = self._keys("demo")
    self.assertContainsSubset(
      ["est-tf1/checkpoint", "est-tf2/checkpoint"], keys, keys
    )
    self.assertEqual(
      estimator_ckpt.checkpoint_format(f"{output_dir}/est-tf2"), "tf2"
    )
    self.assertGreater(
      estimator_ckpt.load_variable(f"{output_dir}/est-tf2", "global_step"),
      estimator_ckpt.load_variable(f"{output_dir}/est-tf1", "global_step"),
    )

  def test_binaries(self):
    source = tool_fixtures.golden_path("est-tf1-ranking")
    remote = self._upload_golden("est-tf1-ranking")
    inspected = self._run(tool("inspect") + [remote])
    self.assertEqual(inspected.returncode, 0, inspected.stderr)
    self.assertIn(f"checkpoint  {remote}/model.ckpt-20", inspected.stdout)
    self.assertIn("user_embedding", inspected.stdout)

    converted = f"{self.url}/converted"
    for src, dst in ((source, f"{converted}/tf2"), (remote, f"{converted}/re")):
      result = self._run(tool("convert") + ["--to=tf2", src, dst])
      self.assertEqual(result.returncode, 0, result.stderr)
      self.assertEqual(result.stdout.strip(), f"{dst}/model.ckpt-20")
    verified = self._run(
      tool("verify") + [f"{converted}/re", f"--against={source}"]
    )
    self.assertEqual(verified.returncode, 0, verified.stderr)
    self.assertRegex(verified.stdout, "^OK .* bit-identical")

    # Bad usage: a clean message and a non-zero exit, not a traceback.
    refused = self._run(
      tool("convert") + ["--to=tf1", source, converted + "/tf2"]
    )
    self.assertNotEqual(refused.returncode, 0)
    self.assertIn("--overwrite", refused.stderr)
    self.assertNotIn("Traceback", refused.stderr)

  def test_warm_start_from_the_store(self):
    tf1_dir = self._upload_golden("est-tf1")
    tf2_dir = f"{self.url}/est-tf2"
    estimator_ckpt.convert(tf1_dir, tf2_dir, to="tf2")
    for source in (tf1_dir, tf2_dir):
      # Into a local model dir and into one on the store.
      for model_dir in (
        os.path.join(self.create_tempdir().full_path, "model"),
        f"{self.url}/warm-{secrets.token_hex(2)}",
      ):
        est = tf.estimator.Estimator(
          guide_models.model_fn_tf1_ckpt,
          model_dir,
          warm_start_from=estimator_ckpt.warm_start_settings(source),
        )
        est.train(guide_models.train_input_fn, steps=1)
        # var was 2.0 in the source; one step adds 2; the step is not
        # warm-started.
        self.assertEqual(
          estimator_ckpt.load_variable(model_dir, "var"), 4.0, model_dir
        )
        self.assertEqual(
          estimator_ckpt.load_variable(model_dir, "global_step"), 1
        )
    with tf.Graph().as_default():
      var = tf1.get_variable("var", shape=[])
      summary = estimator_ckpt.warm_start(tf2_dir)
      self.assertEqual(list(summary.warm_started), ["var"])
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        self.assertEqual(sess.run(var), 2.0)

  def test_in_place_resume_of_a_tf1_model_dir(self):
    model_dir = self._upload_golden("est-tf1")
    est = estimator_ckpt.migrate_estimator(
      tf.estimator.Estimator(guide_models.model_fn_tf1_ckpt, model_dir)
    )
    # Resumes TF1's model.ckpt-1 by name; the next save is TF2.
    est.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(
      tf.train.latest_checkpoint(model_dir), f"{model_dir}/model.ckpt-2"
    )
    self.assertEqual(estimator_ckpt.checkpoint_format(model_dir), "tf2")
    self.assertEqual(estimator_ckpt.load_variable(model_dir, "var"), 4.0)
    self.assertEqual(estimator_ckpt.load_variable(model_dir, "global_step"), 2)
    estimator_ckpt.verify(model_dir)
    keys = self._keys("est-tf1")
    self.assertContainsSubset(
      ["model.ckpt-1.index", "model.ckpt-2.index", "checkpoint"], keys
    )
    # And again from its own TF2 checkpoint, now a plain resume.
    est.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(estimator_ckpt.load_variable(model_dir, "var"), 6.0)
    self.assertEqual(tf.train.load_variable(model_dir, "var"), np.float32(6.0))

  def test_async_saves_commit_on_the_store(self):
    """async_save=True: same checkpoints as a synchronous run, committed."""
    runs = {}
    uploaded: List[str] = []
    real_write = uploader.Uploader.write

    def write(worker, path, *args, **kwargs):
      uploaded.append(path)
      real_write(worker, path, *args, **kwargs)

    self.enter_context(mock.patch.object(uploader.Uploader, "write", write))
    started_in: List[str] = []  # The threads that asked for the worker.
    real_start = uploader.Uploader.start

    def start(worker):
      started_in.append(threading.current_thread().name)
      return real_start(worker)

    self.enter_context(mock.patch.object(uploader.Uploader, "start", start))
    for async_save in (False, True):
      model_dir = f"{self.url}/async-{async_save}"
      steps = []

      class Listener(tf1.train.CheckpointSaverListener):
        def __init__(self, model_dir, steps):
          self.model_dir = model_dir
          self.steps = steps

        def after_save(self, session, global_step_value):
          del session
          latest = tf.train.latest_checkpoint(self.model_dir)
          self.steps.append((global_step_value, latest))

      est = tf.estimator.Estimator(
        estimator_ckpt.tf2_checkpoints(
          guide_models.model_fn_tf1_ckpt, async_save=async_save
        ),
        model_dir,
        config=tf.estimator.RunConfig(
          save_checkpoints_steps=2, keep_checkpoint_max=2
        ),
      )
      uploaded.clear()
      started_in.clear()
      est.train(
        lambda: guide_models.train_input_fn().repeat(),
        steps=5,
        saving_listeners=[Listener(model_dir, steps)],
      )
      latest = tf.train.latest_checkpoint(model_dir)
      self.assertEqual(latest, f"{model_dir}/model.ckpt-5")
      # Each listener saw its own step's checkpoint committed.
      self.assertEqual(
        steps, [(s, f"{model_dir}/model.ckpt-{s}") for s in (0, 2, 4, 5)]
      )
      reader = tf.train.load_checkpoint(latest)
      runs[async_save] = {
        key: reader.get_tensor(key)
        for key in reader.get_variable_to_shape_map()
      }
      keys = self._keys(f"async-{async_save}")
      if async_save and uploader.serves(model_dir):
        # Started by the first save in training's thread, before the first
        # step, not by its background write.
        self.assertEqual(started_in[0], threading.current_thread().name)
        # Written by the uploader process: each checkpoint's data files,
        # then its index.
        self.assertEqual(
          [p for p in uploaded if not p.endswith(".index")],
          [p for p in uploaded if ".data-" in p],
        )
        self.assertEqual(
          [p for p in uploaded if p.endswith(".index")],
          [f"{model_dir}/model.ckpt-{s}.index" for s in (0, 2, 4, 5)],
        )
        self.assertContainsSubset(
          [f"{model_dir}/{k}" for k in keys if ".data-" in k], uploaded
        )
        self.assertLess(
          uploaded.index(f"{model_dir}/model.ckpt-5.data-00000-of-00002"),
          uploaded.index(f"{model_dir}/model.ckpt-5.index"),
        )
      else:
        self.assertEqual(uploaded, [])
      self.assertIn("model.ckpt-4.index", keys)
      self.assertNotIn("model.ckpt-2.index", keys)  # Retention.
    self.assertEqual(sorted(runs[False]), sorted(runs[True]))
    for key, value in runs[False].items():
      np.testing.assert_array_equal(value, runs[True][key], err_msg=key)

  def _policies(self, pid: int) -> Set[int]:
    """The scheduling policies of a process's threads."""
    policies = set()
    for task in os.listdir(f"/proc/{pid}/task"):
      try:
        policies.add(os.sched_getscheduler(int(task)))
      except OSError:
        pass  # Ended meanwhile.
    return policies

  def _uploader(self) -> uploader.Uploader:
    """An uploader of its own (its worker ends with the test)."""
    worker = uploader.Uploader()
    self.addCleanup(worker.close)
    self.assertTrue(worker.start())
    return worker

  def _read(self, name: str) -> bytes:
    with tf.io.gfile.GFile(f"{self.url}/{name}", "rb") as f:
      return f.read()

  def test_uploader_writes_below_training_until_hurried(self):
    if not writer_priority.can_restore():
      self.skipTest(
        "this process may not put a thread back from SCHED_IDLE (no "
        "CAP_SYS_NICE, RLIMIT_NICE below 20): saves upload in process"
      )
    worker = self._uploader()
    seen = {}
    hurried = [False]

    def pieces(name: str, hurry: bool):
      yield b"a" * (1 << 20)
      assert worker.pid is not None
      seen[name] = self._policies(worker.pid)
      if hurry:
        hurried[0] = True
        worker.hurry()
        seen[name + ", hurried"] = self._policies(worker.pid)
      yield memoryview(np.arange(1 << 18, dtype=np.int32))

    expected = b"a" * (1 << 20) + np.arange(1 << 18, dtype=np.int32).tobytes()
    for name, lower, hurry in [
      ("lowered", True, False),
      ("not lowered", False, False),
      ("lowered then hurried", True, True),
    ]:
      hurried[0] = False
      worker.write(
        f"{self.url}/up/{name}",
        len(expected),
        pieces(name, hurry),
        lowered=lambda lower=lower: lower and not hurried[0],
      )
      # Between files the worker is back at its own policy.
      self.assertEqual(self._policies(worker.pid), {os.SCHED_OTHER})
    self.assertEqual(
      seen,
      {
        "lowered": {os.SCHED_IDLE},
        "not lowered": {os.SCHED_OTHER},
        "lowered then hurried": {os.SCHED_IDLE},
        "lowered then hurried, hurried": {os.SCHED_OTHER},
      },
    )
    for name in ("lowered", "not lowered", "lowered then hurried"):
      self.assertEqual(self._read(f"up/{name}"), expected)

  def test_uploader_failure_names_the_file_and_the_next_write_works(self):
    worker = self._uploader()
    missing = f"{self.url}-missing-{secrets.token_hex(4)}/file"
    with self.assertRaisesRegex(errors.CheckpointIOError, re.escape(missing)):
      worker.write(missing, 3, [b"abc"], lowered=lambda: True)
    self.assertIsNone(worker.pid)  # The worker ended after the failure.
    worker.write(f"{self.url}/after/file", 3, [b"abc"], lowered=lambda: True)
    self.assertEqual(self._read("after/file"), b"abc")

  def test_uploader_bad_pieces_publish_nothing_and_the_next_write_works(self):
    worker = self._uploader()

    def failing():
      yield b"a" * (1 << 20)
      raise MemoryError("from the test")

    path = f"{self.url}/bad/file"
    with self.assertRaisesRegex(MemoryError, "from the test"):
      worker.write(path, 2 << 20, failing(), lowered=lambda: True)
    for pieces in ([b"abc"], [b"abcde"]):  # Fewer, then more, than 4 bytes.
      with self.assertRaisesRegex(
        errors.CheckpointIOError,
        re.escape(path) + ".* bytes were handed over for 4.*nothing",
      ):
        worker.write(path, 4, pieces, lowered=lambda: True)
    self.assertEqual(self._keys("bad"), [])
    worker.write(path, 4, [b"ab", b"cd"], lowered=lambda: True)
    self.assertEqual(self._read("bad/file"), b"abcd")

  def test_uploader_killed_mid_file_publishes_nothing(self):
    worker = self._uploader()

    def pieces():
      yield b"a" * (1 << 20)
      assert worker.pid is not None
      os.kill(worker.pid, signal.SIGKILL)
      yield b"b" * (1 << 20)

    path = f"{self.url}/killed/file"
    with self.assertRaisesRegex(
      errors.CheckpointIOError,
      re.escape(path) + ".*killed by signal 9.*nothing of the file",
    ):
      worker.write(path, 2 << 20, pieces(), lowered=lambda: True)
    self.assertEqual(self._keys("killed"), [])
    # Killed between files, it is started again for the next.
    worker.write(path, 3, [b"abc"], lowered=lambda: True)
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    worker.write(f"{path}2", 3, [b"def"], lowered=lambda: True)
    self.assertEqual(self._keys("killed"), ["file", "file2"])

  def test_trainer_killed_mid_upload_publishes_nothing(self):
    temporary = self.create_tempdir().full_path
    path = f"{self.url}/orphan/file"
    child = subprocess.run(
      [sys.executable, "-c", _KILLED_MID_UPLOAD, path],
      cwd=self.cwd,
      env={**child_env(), "TMPDIR": temporary},
      capture_output=True,
      text=True,
      check=False,
      timeout=CHILD_TIMEOUT_SECONDS,
    )
    self.assertEqual(child.returncode, -signal.SIGKILL, child.stderr)
    self.assertRegex(child.stdout, r"^\d+\n$", child.stderr)
    worker = int(child.stdout)
    try:
      exited = os.pidfd_open(worker)
    except ProcessLookupError:
      pass  # Gone already.
    else:
      with os.fdopen(exited) as pidfd:
        ready, _, _ = select.select([pidfd], [], [], CHILD_TIMEOUT_SECONDS)
      self.assertTrue(ready, "the worker outlived its parent")
    self.assertEqual(self._keys("orphan"), [])
    self.assertEqual(os.listdir(temporary), [])  # Its staging is gone too.

  def test_kill_9_at_each_step_of_an_overwrite_never_mixes_checkpoints(self):
    work = self.create_tempdir().full_path
    old_source = os.path.join(work, "old")
    new_source = os.path.join(work, "new")
    for source, seed in ((old_source, 0), (new_source, 1)):
      synthetic.write_estimator_checkpoint(
        source, table_bytes=64 << 10, num_small=10, seed=seed
      )
    # The destination: an earlier conversion of model.ckpt-1000 (which the
    # overwrite replaces) plus an older model.ckpt-500 it keeps.
    initial = os.path.join(work, "initial")
    estimator_ckpt.convert(old_source, initial, to="tf2")
    older = estimator_ckpt.convert(
      synthetic.write_estimator_checkpoint(
        os.path.join(work, "older"),
        table_bytes=64 << 10,
        num_small=10,
        step=500,
      ),
      os.path.join(work, "older_tf2"),
      to="tf2",
    )
    for name in os.listdir(os.path.dirname(older)):
      if name.startswith("model.ckpt-500."):
        shutil.copy(os.path.join(os.path.dirname(older), name), initial)
    with open(os.path.join(initial, "checkpoint"), "wb") as f:
      f.write(state_file.encode(["model.ckpt-500", "model.ckpt-1000"]))

    kills = 0
    step = 0
    litter_seen = False
    while True:
      dst = self._upload(initial, f"dst{kills}")
      process = self._run(
        [sys.executable, "-c", _KILL_AT_STEP, new_source, dst, str(step)]
      )
      if process.returncode == 0:
        self.assertEqual(process.stdout, "done\n")
        break
      self.assertEqual(process.returncode, -signal.SIGKILL, process.stderr)
      kills += 1
      logging.info("killed at step %d", step)
      step += self.KILL_STEP_STRIDE
      # Whatever TensorFlow can see is whole: each checkpoint the state file
      # names, and each index present, verifies and is entirely old or new.
      state = tf.train.get_checkpoint_state(dst)
      listed = list(state.all_model_checkpoint_paths) if state else []
      keys = self._keys(f"dst{kills - 1}")
      indexed = [
        f"{dst}/{k[: -len('.index')]}" for k in keys if k.endswith(".index")
      ]
      self.assertContainsSubset(listed, indexed, keys)
      for prefix in indexed:
        estimator_ckpt.verify(prefix)
        if prefix.endswith("-1000"):
          self._assert_same_as_either(prefix, old_source, new_source)
      # Converting again finishes the job and removes the temporary objects
      # the kill left (`<name>.tmp-<pid>-<hex>`, which no reader opens), the
      # checkpoint's and the state file's.
      litter_seen |= any(".tmp-" in k for k in keys)
      estimator_ckpt.convert(new_source, dst, to="tf2", overwrite=True)
      estimator_ckpt.verify(dst, against=new_source)
      keys = self._keys(f"dst{kills - 1}")
      self.assertEqual([k for k in keys if ".tmp-" in k], [], keys)
      self.assertEqual(
        tf.train.latest_checkpoint(dst), f"{dst}/model.ckpt-1000"
      )
    estimator_ckpt.verify(dst, against=new_source)
    self.assertEqual(
      self._keys(f"dst{kills}"),
      [
        "checkpoint",
        "model.ckpt-1000.data-00000-of-00002",
        "model.ckpt-1000.data-00001-of-00002",
        "model.ckpt-1000.index",
        "model.ckpt-500.data-00000-of-00002",
        "model.ckpt-500.data-00001-of-00002",
        "model.ckpt-500.index",
      ],
    )
    # Withdrawal from the state file, removals of the old objects, data
    # objects, index, state file: at least.
    self.assertGreaterEqual(step, 6)
    # Some kill landed between a temporary object and its rename.
    self.assertTrue(litter_seen)

  def _assert_same_as_either(self, prefix, *sources):
    for source in sources:
      try:
        estimator_ckpt.verify(prefix, against=source)
        return
      except errors.Error:
        pass
    self.fail(f"{prefix} matches none of {sources}")
