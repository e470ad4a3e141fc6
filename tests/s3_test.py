"""End to end on S3: moto's server through tensorflow-io 0.36.0.

`setUpClass` starts moto's S3 server (benchmarks/s3_server.py) on 127.0.0.1
and a free port; every test gets its own bucket. The scenarios every store
passes are in tests/object_store_scenarios.py; here are S3's own: a `kill -9`
while tensorflow-io stages or uploads an object, and the binaries naming
tensorflow-io when it is missing. The library's API and Estimator run
in-process under `import tensorflow_io`, as a user's training program on S3
does (TensorFlow 2.15 has no `s3://` of its own, and Estimator touches the
model dir before any code of ours); the binaries and the killed conversions
run in child processes that do not import it: the tools import it at their
first `s3://` path.

A process that loaded tensorflow-io 0.36.0 aborts while exiting
(`pure virtual method called`, tensorflow/io#1912): this test leaves with
`os._exit` and the test's own status once its results are written, and the
binaries do the same with theirs (`cli/process.run_app`), which the tests
check.
"""

import os
import signal
import subprocess
import sys
import time
from typing import Dict
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf
import tensorflow_io  # noqa: F401  Registers s3://, as a user's program does.

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle

from benchmarks import s3_server
from benchmarks import synthetic
from tests import object_store_scenarios
from tests import tool_fixtures

tool = object_store_scenarios.tool
child_env = object_store_scenarios.child_env

# Big enough that staging and uploading its data object take seconds, so the
# kill lands where the test wants it; the test checks that it did.
_KILL_TEST_TABLE_BYTES = 160 << 20
# Where tensorflow-io 0.36.0 stages each object it writes before uploading it
# on close (hard-coded in its s3_filesystem.cc; not under the working dir).
_TFIO_STAGING_PREFIX = "/tmp/_s3_filesystem_"


def _staging_files(pid: int) -> Dict[str, int]:
  """tensorflow-io's staging files open in process `pid`, with their sizes."""
  found: Dict[str, int] = {}
  fd_dir = f"/proc/{pid}/fd"
  try:
    fds = os.listdir(fd_dir)
  except FileNotFoundError:
    return found
  for fd in fds:
    try:
      target = os.readlink(os.path.join(fd_dir, fd))
      if target.startswith(_TFIO_STAGING_PREFIX):
        found[target] = os.stat(os.path.join(fd_dir, fd)).st_size
    except FileNotFoundError:
      continue
  return found


class S3Test(object_store_scenarios.Scenarios):
  @classmethod
  def start_server(cls) -> s3_server.S3Server:
    server = s3_server.S3Server()
    server.start()
    return server

  def test_binaries_name_tensorflow_io_when_it_is_missing(self):
    remote = self._upload_golden("est-tf1")
    # Without tensorflow-io the binary names the fix.
    missing = self._run(
      [
        sys.executable,
        "-c",
        "import sys; sys.modules['tensorflow_io'] = None  # Not installed.\n"
        "from estimator_ckpt import inspect_main\n"
        f"sys.argv = ['inspect', {remote!r}]\n"
        "inspect_main.run()",
      ]
    )
    self.assertNotEqual(missing.returncode, 0)
    self.assertIn("tensorflow-io==0.36.0", missing.stderr)
    self.assertNotIn("Traceback", missing.stderr)

  def test_object_beyond_the_upload_part_limit_is_refused_before_writing(
    self,
  ):
    source = tool_fixtures.golden_path("est-tf1-ranking")
    dst = f"{self.url}/out"
    estimator_ckpt.convert(source, dst, to="tf2")
    before = self._keys("out")
    # 10,000 parts of 1 byte: too few for the ranking model's data files.
    with (
      mock.patch.dict(os.environ, {"S3_MULTI_PART_UPLOAD_CHUNK_SIZE": "1"}),
      self.assertRaisesRegex(
        errors.CheckpointIOError, r"model\.ckpt-20\.data-.*10000 upload parts"
      ),
    ):
      estimator_ckpt.convert(source, dst, to="tf1", overwrite=True)
    self.assertEqual(self._keys("out"), before)  # Untouched.
    self.assertEqual(estimator_ckpt.checkpoint_format(dst), "tf2")

  @parameterized.named_parameters(
    ("while_staging_the_data_object", "staging"),
    ("while_uploading_the_data_object", "uploading"),
    ("once_the_data_object_exists", "data_object"),
  )
  def test_kill_9_mid_conversion_leaves_nothing_a_reader_picks_up(self, moment):
    source = os.path.join(self.create_tempdir().full_path, "source")
    prefix = synthetic.write_estimator_checkpoint(
      source, table_bytes=_KILL_TEST_TABLE_BYTES, num_small=100
    )
    data_size = os.path.getsize(bundle.data_filename(prefix, 0, 1))
    dst = f"{self.url}/killed"
    log_path = os.path.join(self.create_tempdir().full_path, "convert.log")
    with open(log_path, "wb") as log:
      process = subprocess.Popen(
        tool("convert") + ["--to=tf2", source, dst],
        cwd=self.cwd,
        env=child_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
      )
    try:
      seen = self._wait_for(moment, process, data_size)
    finally:
      # Stopped first, so the staging files it holds can be listed.
      process.send_signal(signal.SIGSTOP)
      leaked = _staging_files(process.pid)
      process.kill()
      process.wait()
    with open(log_path, encoding="utf-8", errors="replace") as f:
      log_text = f.read()
    self.assertEqual(process.returncode, -signal.SIGKILL, log_text[-2000:])
    # tensorflow-io's own staging file of the object being written outlives
    # the kill (it is in /tmp, not in the working directory); remove it.
    for path in leaked:
      self.assertTrue(path.startswith(_TFIO_STAGING_PREFIX), path)
      os.remove(path)
    keys = self._keys("killed")
    if moment != "data_object":
      self.assertFalse([k for k in keys if ".data-" in k], (seen, keys))

    # What a reader picks up is whole: the checkpoint the state file names,
    # if any, and every checkpoint whose index exists, verify.
    latest = tf.train.latest_checkpoint(dst)
    indexed = [
      f"{dst}/{k[: -len('.index')]}" for k in keys if k.endswith(".index")
    ]
    if latest is not None:
      self.assertIn(latest, indexed)
    for checkpoint in indexed:
      estimator_ckpt.verify(checkpoint, against=source)
    if not indexed:
      with self.assertRaises(errors.CheckpointNotFoundError):
        estimator_ckpt.checkpoint_format(dst)

    # Converting again succeeds, without overwrite (data objects without an
    # index are no checkpoint; the commit replaces them, and removes stale
    # temporary objects), and leaves exactly the checkpoint.
    converted = estimator_ckpt.convert(source, dst, to="tf2")
    self.assertEqual(tf.train.latest_checkpoint(dst), converted)
    estimator_ckpt.verify(dst, against=source)
    self.assertEqual(
      self._keys("killed"),
      [
        "checkpoint",
        "model.ckpt-1000.data-00000-of-00002",
        "model.ckpt-1000.data-00001-of-00002",
        "model.ckpt-1000.index",
      ],
    )

  def _wait_for(
    self, moment: str, process: subprocess.Popen, data_size: int
  ) -> str:
    """Waits until the conversion into `killed/` reaches `moment`.

    Returns:
      What was seen then, for failure messages.
    """
    deadline = time.monotonic() + object_store_scenarios.CHILD_TIMEOUT_SECONDS
    full_since = None
    while True:
      self.assertIsNone(
        process.poll(),
        "the conversion finished before the kill; make "
        "_KILL_TEST_TABLE_BYTES larger",
      )
      self.assertLess(time.monotonic(), deadline, moment)
      sizes = list(_staging_files(process.pid).values())
      data_objects = [k for k in self._keys("killed") if ".data-" in k]
      if moment == "staging" and any(
        data_size // 4 < s < data_size * 9 // 10 for s in sizes
      ):
        return f"staging {sizes}"
      if moment == "uploading" and not data_objects:
        # Staged in full; its upload (seconds at these sizes) is under way.
        if any(s >= data_size * 9 // 10 for s in sizes):
          full_since = full_since or time.monotonic()
          if time.monotonic() - full_since > 1.0:
            return f"uploading {sizes}"
      if moment == "data_object" and data_objects:
        return f"data objects {data_objects}"
      time.sleep(0.02)


if __name__ == "__main__":
  # Results are written by now; skip the exit-time abort (module docstring).
  try:
    absltest.main()
  except SystemExit as exit_:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_.code if isinstance(exit_.code, int) else 1)
