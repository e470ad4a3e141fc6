"""Uploads to object stores from a process of their own, below training.

An upload through `tf.io.gfile` in the training process runs where the
store's client puts it: tensorflow-io's `s3://` uploads in its AWS SDK
executor threads, at normal priority. Those threads serve every S3 access
of the process, so they cannot be lowered from it; a thread started from a
lowered thread would keep `SCHED_IDLE` for good. A process of their own
can: `Uploader` runs `upload_worker` as a child process and hands it each
file's bytes through a pipe; the worker puts all its threads at
`SCHED_IDLE` for a file written below training, and `hurry` puts them back,
as `writer_priority` does for a thread of this process.

The worker loads TensorFlow's shared libraries (the files this process
mapped), not its Python package: about 30 MiB of memory of its own (the
libraries' pages are this process's, shared). It writes with the same file
system code as `tf.io.gfile` here, in this process's environment as it was
when the worker started (it is restarted when the environment or the
loaded plugins change). It is started at the first upload and kept; it
exits when this process does, and after a failure (the next upload starts
another). Any error while a file is handed over ends the worker, so a file
is never closed (published) with other bytes than its own.

Only for storages whose files another process writes as well
(`Capabilities.shared_across_processes`: object stores, not `ram://`),
where the worker can be put back at normal priority
(`writer_priority.can_restore`) and where it starts: if it cannot, a
warning says why and this process's saves write in process, as before.
"""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src import writer_priority
from estimator_ckpt._src.storage import loaded_libraries
from estimator_ckpt._src.storage import registry
from estimator_ckpt._src.storage import upload_worker

# TensorFlow's libraries, the C API's last, and tensorflow-io's file
# systems (`s3://` among them), as this process mapped them.
_LIBRARIES = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2")
_PLUGINS = ("libtensorflow_io_plugins.so",)
# The pipe's capacity: fewer wake-ups of each side per file.
_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = 1031  # linux/fcntl.h; `fcntl.F_SETPIPE_SZ` from Python 3.10.


class _WorkerUnavailableError(Exception):
  """The worker could not start here (a library or plugin it cannot load)."""


class _ProtocolError(Exception):
  """The worker answered out of turn, or the bytes handed over were wrong."""


class _EndedBetweenFilesError(Exception):
  """The worker had ended (killed while idle) before it took the file."""


def _libraries_and_plugins() -> Optional[Tuple[List[str], List[str]]]:
  """What the worker loads; None where TensorFlow's libraries are not."""
  mapped = loaded_libraries.find(_LIBRARIES + _PLUGINS)
  if not all(name in mapped for name in _LIBRARIES):
    return None
  return (
    [mapped[name] for name in _LIBRARIES],
    [mapped[name] for name in _PLUGINS if name in mapped],
  )


_unavailable = threading.Event()  # Set once the worker failed to start.


def serves(path: str) -> bool:
  """Whether files under `path` are uploaded by an `Uploader`."""
  return (
    registry.for_path(path).capabilities.shared_across_processes
    and not _unavailable.is_set()
    and writer_priority.can_restore()
    and _libraries_and_plugins() is not None
  )


class Uploader:
  """A worker process writing files for this one, one file at a time."""

  def __init__(self):
    self._lock = threading.Lock()  # One file at a time; the worker's state.
    self._writing_lock = threading.Lock()  # What `hurry` reads.
    self._process: Optional[subprocess.Popen] = None
    self._started_with: Any = None  # (environment, libraries, plugins)
    self._temporary: Optional[str] = None
    self._pid_writing: Optional[int] = None
    self._worker_policy = 0  # SCHED_OTHER: the policy it started with.

  @property
  def pid(self) -> Optional[int]:
    """The worker's process id while it runs (started at the first write)."""
    process = self._process
    return process.pid if process is not None else None

  def start(self) -> bool:
    """Starts the worker if it is not running; False if it cannot start.

    The first failure is logged as a warning, and `serves` is False from
    then on: callers write in this process.
    """
    with self._lock:
      try:
        self._ensure_started()
      except _WorkerUnavailableError as e:
        logging.warning(
          "Uploads of asynchronous saves run in this process: the uploader "
          "process could not start (%s).",
          e,
        )
        _unavailable.set()
        return False
    return True

  def write(
    self,
    path: str,
    size: int,
    pieces: Iterable[Any],
    *,
    lowered: Callable[[], bool],
  ) -> None:
    """Writes `pieces` (`size` bytes in all) as the file `path`.

    The file is complete (on an object store: uploaded, and visible) when
    this returns. Call it outside `writer_priority.below_training`: it
    lowers its own CPU work (the copies into the pipe) itself.

    Args:
      path: The file to write.
      size: Its size.
      pieces: Buffers of its bytes, in order.
      lowered: Whether the save is below training now; asked when the file
        starts (its worker at SCHED_IDLE if so) and after its worker set
        that policy (a hurry in between is not lost).

    Raises:
      errors.CheckpointIOError: The write failed, or the worker ended;
        the message names `path` and the store's error.
    """
    registry.for_path(path).check_fits(path, size)
    with self._lock:
      try:
        try:
          process, error = self._write_once(path, size, pieces, lowered)
        except _EndedBetweenFilesError:
          # Nothing of the file was taken: once more, by a new worker.
          self._stop(kill=False)
          process, error = self._write_once(path, size, pieces, lowered)
      except BaseException as e:
        # Mid-file the pipe holds part of this file: end the worker (a file
        # it never closed is never published) rather than write the next
        # file's request into this one.
        self._stop(kill=True)
        if isinstance(e, _WorkerUnavailableError):
          raise errors.CheckpointIOError(
            f"Writing `{path}` failed: the uploader process could not "
            f"start: {e}.",
            filename=path,
          ) from None
        if isinstance(e, _ProtocolError):
          raise errors.CheckpointIOError(
            f"Writing `{path}` failed: {e}; the uploader process was ended "
            "and nothing of the file was published.",
            filename=path,
          ) from None
        raise
      if error is not None:
        self._stop(kill=False)
        raise errors.CheckpointIOError(
          f"Writing `{path}` failed (in the uploader process, pid "
          f"{process.pid}): {error}",
          filename=path,
        )

  def _write_once(
    self,
    path: str,
    size: int,
    pieces: Iterable[Any],
    lowered: Callable[[], bool],
  ) -> Tuple[subprocess.Popen, Optional[str]]:
    """The worker, and its error writing the file (None if written)."""
    process = self._ensure_started()
    with self._writing_lock:
      self._pid_writing = process.pid
    try:
      return process, self._exchange(process, path, size, pieces, lowered)
    finally:
      with self._writing_lock:
        self._pid_writing = None

  def hurry(self) -> None:
    """Puts the worker back at its own priority for the file it writes."""
    with self._writing_lock:
      if self._pid_writing is not None:
        _restore_every_thread(self._pid_writing, self._worker_policy)

  def close(self) -> None:
    """Ends the worker (it exits at the end of its input)."""
    with self._lock:
      self._stop(kill=False)

  def _exchange(
    self,
    process: subprocess.Popen,
    path: str,
    size: int,
    pieces: Iterable[Any],
    lowered: Callable[[], bool],
  ) -> Optional[str]:
    """Hands one file to the worker; returns its error, None if written."""
    assert process.stdin is not None
    # Asked after `_pid_writing` is set: a hurry from here on restores it.
    lower = lowered()
    try:
      _send_line(process, {"path": path, "size": size, "lower": lower})
    except BrokenPipeError:
      raise _EndedBetweenFilesError() from None
    try:
      answer = _receive_line(process)
      if not answer:
        raise _EndedBetweenFilesError()
      if answer != {"policy": True}:
        return _error_of(answer, path, process)
      if lower and not lowered():  # Hurried before the worker lowered.
        self.hurry()
      sent = 0
      with writer_priority.below_training():
        for piece in pieces:
          view = memoryview(piece).cast("B")
          sent += len(view)
          if sent > size:
            break
          _write_all(process, view)
      if sent != size:
        raise _ProtocolError(
          f"{sent if sent <= size else 'more'} bytes were handed over "
          f"for {size}"
        )
    except BrokenPipeError:
      pass  # It answered (a failure) and exited: read why.
    answer = _receive_line(process)
    if lower:  # Whether or not the worker could restore itself.
      self.hurry()
    return None if answer == {"ok": True} else _error_of(answer, path, process)

  def _ensure_started(self) -> subprocess.Popen:
    """The worker, (re)started if not running in this environment."""
    found = _libraries_and_plugins()
    if found is None:
      raise _WorkerUnavailableError("TensorFlow's shared libraries not found")
    libraries, plugins = found
    wanted = (dict(os.environ), libraries, plugins)
    running = self._process is not None and self._process.poll() is None
    if running and self._started_with == wanted:
      assert self._process is not None
      return self._process
    self._stop(kill=False)  # Of another environment, or none.
    self._temporary = tempfile.mkdtemp(prefix="estimator_ckpt-uploader-")
    environment = {
      **os.environ,
      "TMPDIR": self._temporary,
      upload_worker.TMPDIR_VARIABLE: self._temporary,
    }
    # Started outside any lowered block: it starts with this thread's policy.
    self._worker_policy = os.sched_getscheduler(0)
    try:
      process = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-I", upload_worker.__file__],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=environment,
        close_fds=True,
      )
    except OSError as e:
      shutil.rmtree(self._temporary, ignore_errors=True)
      self._temporary = None
      raise _WorkerUnavailableError(f"{sys.executable}: {e}") from None
    self._process = process
    assert process.stdin is not None
    try:
      import fcntl  # pylint: disable=g-import-not-at-top  (POSIX only)

      fcntl.fcntl(process.stdin.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
    except OSError:
      pass  # The default capacity works, with more wake-ups.
    try:
      _send_line(process, {"libraries": libraries, "plugins": plugins})
    except BrokenPipeError:
      pass  # It ended: read why.
    answer = _receive_line(process)
    if answer != {"ready": True}:
      self._stop(kill=True)
      raise _WorkerUnavailableError(
        answer.get("error") or f"it answered {answer}"
      )
    self._started_with = wanted
    logging.info("Started the uploader process (pid %d).", process.pid)
    return process

  def _stop(self, *, kill: bool) -> None:
    """Ends the worker: at the end of its input, or killed mid-file."""
    process, self._process = self._process, None
    self._started_with = None
    if process is not None:
      assert process.stdin is not None and process.stdout is not None
      if kill:
        process.kill()
      try:
        process.stdin.close()
      except BrokenPipeError:
        pass
      process.wait()
      process.stdout.close()
    if self._temporary is not None:
      shutil.rmtree(self._temporary, ignore_errors=True)
      self._temporary = None

  def _forget_in_fork_child(self) -> None:
    """In a forked child: the worker is the parent's, and so is its pipe."""
    process, self._process = self._process, None
    self._started_with = None
    self._temporary = None
    self._lock = threading.Lock()
    self._writing_lock = threading.Lock()
    if process is not None:
      for pipe in (process.stdin, process.stdout):
        try:
          if pipe is not None:
            pipe.close()  # This process's copy of the descriptor only.
        except OSError:
          pass


def _send_line(process: subprocess.Popen, message: Dict[str, Any]) -> None:
  """Writes one JSON line to the worker."""
  _write_all(process, memoryview(json.dumps(message).encode() + b"\n"))


def _write_all(process: subprocess.Popen, view: memoryview) -> None:
  """Writes all of `view` to the worker's input (unbuffered, no copy)."""
  assert process.stdin is not None
  descriptor = process.stdin.fileno()
  while view:
    view = view[os.write(descriptor, view) :]


def _receive_line(process: subprocess.Popen) -> Dict[str, Any]:
  """Reads one JSON line from the worker; `{}` once it ended."""
  assert process.stdout is not None
  line = process.stdout.readline()
  if not line:
    return {}
  try:
    return json.loads(line)
  except ValueError:
    raise _ProtocolError(f"the uploader process answered {line!r}") from None


def _error_of(
  answer: Dict[str, Any], path: str, process: subprocess.Popen
) -> str:
  """What to tell the user about `answer`, which is not the expected one."""
  if "error" in answer:
    return (
      f"{answer['error']}. Check the URL, the credentials and that the "
      "store is reachable."
    )
  if answer:
    raise _ProtocolError(f"the uploader process answered {answer}")
  code = process.wait()
  ended = (
    f"killed by signal {-code}"
    if code < 0 and -code in signal.valid_signals()
    else f"exit code {code}"
  )
  return (
    f"the uploader process ended ({ended}) before it finished `{path}`; "
    "nothing of the file was published."
  )


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
        if os.sched_getscheduler(int(task)) != os.SCHED_IDLE:
          continue
        if policy != os.SCHED_IDLE:
          os.sched_setscheduler(int(task), policy, os.sched_param(0))
          restored += 1
      except OSError:
        pass  # Ended meanwhile.
    if not restored:
      return


_shared_lock = threading.Lock()


@functools.lru_cache(maxsize=None)
def _create_shared() -> Uploader:
  uploader = Uploader()
  if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=uploader._forget_in_fork_child)  # pylint: disable=protected-access
  return uploader


def shared() -> Uploader:
  """This process's uploader (one worker serves every saver)."""
  with _shared_lock:
    return _create_shared()
