"""The uploader process: writes files to an object store for its parent.

Run by `uploader.Uploader` as `python -I upload_worker.py`, with pipes for
stdin and stdout. It imports nothing but the standard library: TensorFlow's
file systems come from its shared libraries through their C API
(`tensorflow/c/env.h`, `TF_RegisterFilesystemPlugin` of
`c_api_experimental.h`), loaded with `ctypes`, so the process holds about
30 MiB of its own memory where importing `tensorflow` would hold about 200.
Files are written by the same file system code as `tf.io.gfile` in the
parent (tensorflow-io's `s3://`, TensorFlow's `gs://`), in the parent's
environment (endpoints, credentials, upload limits).

The protocol, each message a JSON line:
  parent: {"libraries": [...], "plugins": [...]}
  worker: {"ready": true} | {"error": ...}
  then for each file:
  parent: {"path": ..., "size": N, "lower": bool}
  worker: {"policy": true}  (its threads are at SCHED_IDLE if `lower`)
  parent: N bytes
  worker: {"ok": true} | {"error": ...}
After each file its threads are back at the policy it started with.

A file is closed (on an object store: uploaded, and only then visible)
after its last byte arrived. If the parent goes away (killed), the worker
exits without closing the file it writes, so nothing of it is ever
visible: it sees the end of its input, or its parent's exit (a pidfd: a
process the parent forked may hold the pipe open). After a failure it
answers, then exits; the parent starts another for the next file. It
always exits with `os._exit`: TensorFlow's static destructors abort a
process that loaded it with `ctypes` and exits normally. Ctrl-C (SIGINT to
the process group) is left to the parent, which ends the worker.
"""

import ctypes
import json
import os
import select
import shutil
import signal
import sys
import threading
from typing import Any, BinaryIO, Dict, List, NoReturn

# Bytes taken from the pipe per append (tensorflow-io buffers its parts).
_BUFFER_BYTES = 1 << 20
# Set by the parent: a directory of this worker's own, removed at its exit.
TMPDIR_VARIABLE = "ESTIMATOR_CKPT_UPLOADER_TMPDIR"


class _FileSystemError(Exception):
  """A failed TensorFlow file system call, with its message."""


class _FileSystems:
  """TensorFlow's file systems through the C API."""

  def __init__(self, libraries: List[str], plugins: List[str]):
    """Loads `libraries` (the C API's last) and registers `plugins`."""
    library = None
    for path in libraries:
      library = ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
    assert library is not None
    self._tf = tf = library
    tf.TF_NewStatus.restype = ctypes.c_void_p
    tf.TF_GetCode.argtypes = [ctypes.c_void_p]
    tf.TF_Message.argtypes = [ctypes.c_void_p]
    tf.TF_Message.restype = ctypes.c_char_p
    tf.TF_RegisterFilesystemPlugin.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    tf.TF_NewWritableFile.argtypes = [
      ctypes.c_char_p,
      ctypes.POINTER(ctypes.c_void_p),
      ctypes.c_void_p,
    ]
    tf.TF_AppendWritableFile.argtypes = [
      ctypes.c_void_p,
      ctypes.c_void_p,
      ctypes.c_size_t,
      ctypes.c_void_p,
    ]
    tf.TF_CloseWritableFile.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    self._status = ctypes.c_void_p(tf.TF_NewStatus())
    for plugin in plugins:
      tf.TF_RegisterFilesystemPlugin(plugin.encode(), self._status)
      self._check(f"registering the file system plugin {plugin}")

  def _check(self, what: str) -> None:
    if self._tf.TF_GetCode(self._status):
      message = self._tf.TF_Message(self._status).decode(errors="replace")
      raise _FileSystemError(f"{what}: {message}")

  def write(self, path: str, size: int, source: BinaryIO) -> None:
    """Writes `size` bytes read from `source` as `path`, then closes it."""
    handle = ctypes.c_void_p()
    self._tf.TF_NewWritableFile(
      path.encode(), ctypes.byref(handle), self._status
    )
    self._check(f"opening {path}")
    buffer = bytearray(min(size, _BUFFER_BYTES) or 1)
    view = memoryview(buffer)
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    left = size
    while left:
      count = source.readinto(view[: min(left, len(buffer))])  # type: ignore[attr-defined]
      if not count:
        _exit(1)  # The parent is gone: never close (publish) half a file.
      self._tf.TF_AppendWritableFile(handle, address, count, self._status)
      self._check(f"writing {path}")
      left -= count
    self._tf.TF_CloseWritableFile(handle, self._status)
    self._check(f"closing {path}")


def _set_policy_of_every_thread(policy: int) -> None:
  """This process's threads at `policy` (SCHED_IDLE, or back at its own)."""
  for task in os.listdir("/proc/self/task"):
    try:
      os.sched_setscheduler(int(task), policy, os.sched_param(0))
    except OSError:
      pass  # Ended; or not allowed back: the parent restores them then.


def _answer(sink: BinaryIO, message: Dict[str, Any]) -> None:
  try:
    sink.write(json.dumps(message).encode() + b"\n")
    sink.flush()
  except OSError:
    _exit(1)  # The parent is gone.


def _exit(code: int) -> NoReturn:
  directory = os.environ.get(TMPDIR_VARIABLE)
  if directory:
    shutil.rmtree(directory, ignore_errors=True)
  os._exit(code)  # pylint: disable=protected-access


def _exit_with_parent() -> None:
  """Exits when the parent does, even if another process holds the pipe."""
  try:
    parent = os.pidfd_open(os.getppid())
  except (AttributeError, OSError):
    return  # Old kernel: the end of the input still ends the worker.
  select.select([parent], [], [])
  _exit(1)


def _serve(source: BinaryIO, sink: BinaryIO) -> None:
  line = source.readline()
  if not line:
    _exit(0)
  config = json.loads(line)
  try:
    file_systems = _FileSystems(config["libraries"], config["plugins"])
  except (OSError, AttributeError, _FileSystemError) as e:
    _answer(sink, {"error": f"{type(e).__name__}: {e}"})
    _exit(1)
  _answer(sink, {"ready": True})
  can_lower = hasattr(os, "SCHED_IDLE")
  # Inherited from the thread that started it (a user's SCHED_BATCH stays).
  own_policy = os.sched_getscheduler(0) if can_lower else 0
  while True:
    line = source.readline()
    if not line:
      _exit(0)
    request = json.loads(line)
    if can_lower and request["lower"]:
      _set_policy_of_every_thread(os.SCHED_IDLE)
    _answer(sink, {"policy": True})
    if can_lower and request["lower"]:
      os.sched_yield()  # Else it runs to the next tick (`writer_priority`).
    try:
      file_systems.write(request["path"], request["size"], source)
    except _FileSystemError as e:
      _answer(sink, {"error": str(e)})
      _exit(1)
    if can_lower and request["lower"]:
      _set_policy_of_every_thread(own_policy)
    _answer(sink, {"ok": True})


def main() -> None:
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  # The protocol owns stdout: whatever a library prints goes to stderr.
  sink = os.fdopen(os.dup(1), "wb")
  os.dup2(2, 1)
  threading.Thread(target=_exit_with_parent, daemon=True).start()
  try:
    _serve(sys.stdin.buffer, sink)
  except BaseException:  # pylint: disable=broad-except
    import traceback  # pylint: disable=g-import-not-at-top

    traceback.print_exc()
    _exit(1)


if __name__ == "__main__":
  main()
