"""Uploads to object stores from a process of their own, below training.

An upload through `tf.io.gfile` in the training process runs where the
store's client puts it: tensorflow-io's `s3://` uploads in its AWS SDK
executor threads, at normal priority (about 0.2 s of CPU for 64 MiB into
the S3 emulator, twice the saving thread's own). Those threads serve every
S3 access of the process, so they cannot be lowered from it; a thread
started from a lowered thread would keep `SCHED_IDLE` for good. A process
of their own can: `Uploader` runs `upload_worker` as a child process and
hands it each file's bytes through a pipe; the worker puts all its threads
at `SCHED_IDLE` for a file written below training (`lower`), and `hurry`
puts them back, as `writer_priority` does for a thread of this process.

The worker loads TensorFlow's shared libraries, not its Python package:
about 30 MiB of memory of its own (the libraries' pages are the parent's,
shared). It writes with the same file system code as the parent's
`tf.io.gfile`, in the parent's environment. It is started at the first
upload and kept; it exits when this process does (its stdin closes), and
after a failure (the next upload starts another).

Only where a file written by another process is the same file (object
stores, `_SCHEMES`; not `ram://`, each process's own memory), where the
worker can be put back at normal priority (`writer_priority.can_restore`),
and where the libraries are found: elsewhere callers write in process.
"""

import functools
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
from typing import Any, Dict, Iterable, List, Optional

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src import writer_priority
from estimator_ckpt._src.storage import registry
from estimator_ckpt._src.storage import upload_worker

# Object stores, each tested against its emulator (s3_test, gcs_test).
_SCHEMES = frozenset({"s3", "gs"})
# tensorflow-io's file systems (`s3://` among them), where it is loaded.
_TENSORFLOW_IO_PLUGIN = os.path.join(
  "python", "ops", "libtensorflow_io_plugins.so"
)
# The pipe's capacity (F_SETPIPE_SZ): fewer wake-ups of each side per file.
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ (Python 3.10+ on Linux).


def _libraries() -> Optional[List[str]]:
  """TensorFlow's shared libraries, the C API's last; None if not found."""
  spec = importlib.util.find_spec("tensorflow")
  if spec is None or not spec.submodule_search_locations:
    return None
  directory = list(spec.submodule_search_locations)[0]
  paths = [
    os.path.join(directory, name)
    for name in ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")
  ]
  return paths if all(os.path.exists(p) for p in paths) else None


def _plugins() -> List[str]:
  """Plugins the parent loaded: tensorflow-io's, if it is imported."""
  module = sys.modules.get("tensorflow_io")
  file: Optional[str] = getattr(module, "__file__", None)
  if not file:
    return []
  path = os.path.join(os.path.dirname(file), _TENSORFLOW_IO_PLUGIN)
  return [path] if os.path.exists(path) else []


def serves(path: str) -> bool:
  """Whether files under `path` are uploaded by an `Uploader`."""
  return (
    registry.scheme(path) in _SCHEMES
    and writer_priority.can_restore()
    and _libraries() is not None
  )


class Uploader:
  """A worker process writing files for this one, one file at a time."""

  def __init__(self):
    self._lock = threading.Lock()  # One file at a time.
    self._state = threading.Lock()  # What `hurry` reads.
    self._process: Optional[subprocess.Popen] = None
    self._temporary: Optional[str] = None
    self._pid_writing: Optional[int] = None
    self._hurried = False
    self._worker_policy = 0  # SCHED_OTHER: the policy it started with.

  @property
  def pid(self) -> Optional[int]:
    """The worker's process id while it runs (started at the first write)."""
    process = self._process
    return process.pid if process is not None else None

  def write(
    self, path: str, size: int, pieces: Iterable[Any], *, lower: bool
  ) -> None:
    """Writes `pieces` (`size` bytes in all) as the file `path`.

    The file is complete (on an object store: uploaded, and visible) when
    this returns. Call it outside `writer_priority.below_training`: it
    lowers its own CPU work (the copies into the pipe) itself.

    Args:
      path: The file to write.
      size: Its size.
      pieces: Buffers of its bytes, in order.
      lower: Whether the worker writes it at SCHED_IDLE (until `hurry`).

    Raises:
      errors.CheckpointIOError: The write failed, or the worker ended;
        the message names `path` and the store's error.
    """
    registry.for_path(path).check_fits(path, size)
    with self._lock:
      process = self._process or self._start(path)
      with self._state:
        self._pid_writing = process.pid
        self._hurried = not lower
      try:
        answer = self._exchange(process, path, size, pieces)
      finally:
        with self._state:
          self._pid_writing = None
      if "error" not in answer:
        return
      self._stop()
      raise errors.CheckpointIOError(
        f"Writing `{path}` failed (in the uploader process, pid "
        f"{process.pid}): {answer['error']}. Check the URL, the credentials "
        "and that the store is reachable.",
        filename=path,
      )

  def hurry(self) -> None:
    """Puts the worker back at normal priority for the file it writes."""
    with self._state:
      self._hurried = True
      pid = self._pid_writing
    if pid is not None:
      _restore_every_thread(pid, self._worker_policy)

  def close(self) -> None:
    """Ends the worker (it exits at the end of its input)."""
    with self._lock:
      self._stop()

  def _exchange(self, process, path: str, size: int, pieces) -> Dict:
    assert process.stdin is not None and process.stdout is not None
    with self._state:
      lower = not self._hurried
    try:
      _send_line(process, {"path": path, "size": size, "lower": lower})
      answer = _receive_line(process, path)
      if "policy" not in answer:
        return answer
      with self._state:  # Hurried before the worker set its policy.
        if self._hurried and lower:
          _restore_every_thread(process.pid, self._worker_policy)
      descriptor = process.stdin.fileno()
      with writer_priority.below_training():
        for piece in pieces:
          view = memoryview(piece).cast("B")
          while view:
            view = view[os.write(descriptor, view) :]
    except BrokenPipeError:
      pass  # It answered (a failure) and exited: read why.
    return _receive_line(process, path)

  def _start(self, path: str) -> subprocess.Popen:
    libraries = _libraries()
    assert libraries is not None  # `serves` said so.
    self._temporary = tempfile.mkdtemp(prefix="estimator_ckpt-uploader-")
    environment = {
      **os.environ,
      "TMPDIR": self._temporary,
      upload_worker.TMPDIR_VARIABLE: self._temporary,
    }
    # Started outside any lowered block: it starts with this thread's policy.
    self._worker_policy = os.sched_getscheduler(0)
    process = subprocess.Popen(  # pylint: disable=consider-using-with
      [sys.executable, "-I", upload_worker.__file__],
      stdin=subprocess.PIPE,
      stdout=subprocess.PIPE,
      env=environment,
      close_fds=True,
    )
    self._process = process
    assert process.stdin is not None
    try:
      import fcntl  # pylint: disable=g-import-not-at-top

      fcntl.fcntl(process.stdin.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:
      pass  # The default capacity works, with more wake-ups.
    try:
      _send_line(process, {"libraries": libraries, "plugins": _plugins()})
      answer = _receive_line(process, path)
    except BrokenPipeError:
      answer = _receive_line(process, path)
    if "ready" not in answer:
      self._stop()
      raise errors.CheckpointIOError(
        f"Writing `{path}` failed: the uploader process could not load "
        f"TensorFlow's file systems: {answer.get('error')}.",
        filename=path,
      )
    logging.info("Started the uploader process (pid %d).", process.pid)
    return process

  def _stop(self) -> None:
    process, self._process = self._process, None
    if process is not None:
      assert process.stdin is not None and process.stdout is not None
      try:
        process.stdin.close()
      except BrokenPipeError:
        pass
      process.wait()
      process.stdout.close()
    if self._temporary is not None:
      import shutil  # pylint: disable=g-import-not-at-top

      shutil.rmtree(self._temporary, ignore_errors=True)
      self._temporary = None


def _send_line(process: subprocess.Popen, message: Dict) -> None:
  assert process.stdin is not None
  data = json.dumps(message).encode() + b"\n"
  descriptor = process.stdin.fileno()
  view = memoryview(data)
  while view:
    view = view[os.write(descriptor, view) :]


def _receive_line(process: subprocess.Popen, path: str) -> Dict:
  assert process.stdout is not None
  line = process.stdout.readline()
  if line:
    return json.loads(line)
  code = process.wait()
  return {
    "error": f"the uploader process (pid {process.pid}) ended, exit code "
    f"{code}, before it finished `{path}`"
  }


def _restore_every_thread(pid: int, policy: int) -> None:
  """The worker's threads back at `policy`; again for any they started."""
  for _ in range(3):
    restored = 0
    try:
      tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
      return  # Ended.
    for task in tasks:
      try:
        if os.sched_getscheduler(int(task)) == os.SCHED_IDLE:
          os.sched_setscheduler(int(task), policy, os.sched_param(0))
          restored += 1
      except OSError:
        pass  # Ended meanwhile.
    if not restored:
      return


@functools.lru_cache(maxsize=None)
def shared() -> Uploader:
  """This process's uploader (one worker serves every saver)."""
  return Uploader()
