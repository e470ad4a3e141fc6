"""Opening a checkpoint's files: regular files only, never blocking, bounded.

Checkpoint paths come from users and from `checkpoint` state files, so any
of them may be a directory, a FIFO (whose plain `open` blocks forever), a
device such as `/dev/zero` (endless), a symlink loop, or unreadable. Every
reader of the format core opens files through here: the open never blocks
(`O_NONBLOCK`, which regular files ignore), anything but a regular file is
refused with an `errors.Error` naming it, and operating-system failures
become `errors.CheckpointIOError`, naming the user's path and keeping the
errno. Reads are bounded by the file's size and by what the caller expects.

A path with a URL scheme (`gs://`, `s3://`, `ram://`, ...) is opened through
`tf.io.gfile` instead (`remote_files`): objects are always regular files
there, reads are ranged, and TensorFlow is imported only then. No path
operation here turns a URL into a local path (`os.path.normpath` would eat
the `//`).
"""

import contextlib
import errno
import os
import stat
from typing import Iterator, List, Optional

from estimator_ckpt import errors
from estimator_ckpt._src.format import remote_files


def is_url(path: str) -> bool:
  """Whether `path` has a URL scheme (then `tf.io.gfile` opens it)."""
  return bool(remote_files.scheme(path))


def exists(path: str) -> bool:
  if is_url(path):
    return remote_files.gfile(path).exists(path)
  return os.path.exists(path)


def isdir(path: str) -> bool:
  if is_url(path):
    return remote_files.gfile(path).isdir(path)
  return os.path.isdir(path)


def listdir(path: str) -> List[str]:
  """Names in a directory; [] if it does not exist."""
  if is_url(path):
    if not remote_files.gfile(path).isdir(path):
      return []
    return remote_files.listdir(path)
  try:
    return os.listdir(path)
  except (FileNotFoundError, NotADirectoryError):
    return []
  except OSError as e:
    raise io_error(e, path) from None


class CheckpointFile:
  """An open regular file: its size and exact reads at any offset.

  Attributes:
    path: The user's path.
    size: Its size in bytes when opened.
    fd: The descriptor of a local file (for mmap and `preadv`); None for a
      URL.
  """

  def __init__(
    self, path: str, size: int, fd: Optional[int] = None, handle=None
  ):
    self.path = path
    self.size = size
    self.fd = fd
    self._handle = handle  # A tf.io.gfile.GFile for a URL.

  def pread(self, size: int, offset: int) -> bytes:
    """Exactly `size` bytes at `offset`.

    Raises:
      errors.CorruptCheckpointError: The file ends before `offset + size`.
      errors.CheckpointIOError: The read failed.
    """
    if self.fd is not None:
      return pread_exact(self.fd, size, offset, self.path)
    try:
      self._handle.seek(offset)
      data = self._handle.read(size) if size else b""
    except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
      raise remote_files.io_error(e, self.path, "reading") from None
    if len(data) != size:
      raise _shrank_error(self.path, offset + len(data), size, offset)
    return data


def _shrank_error(
  path: str, end: int, size: int, offset: int
) -> errors.CorruptCheckpointError:
  return errors.CorruptCheckpointError(
    f"`{path}` ends at byte {end}, before the {size} bytes at offset "
    f"{offset} its checkpoint needs. Is something else writing it? Copy the "
    "checkpoint again."
  )


def _kind(mode: int) -> str:
  if stat.S_ISDIR(mode):
    return "a directory"
  if stat.S_ISFIFO(mode):
    return "a FIFO (named pipe)"
  if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
    return "a device"
  if stat.S_ISSOCK(mode):
    return "a socket"
  return "not a regular file"


def io_error(
  error: OSError, path: str, action: str = "reading"
) -> errors.CheckpointIOError:
  """An `OSError` as a `CheckpointIOError` naming `path` and what to do."""
  reason = error.strerror or str(error)
  hint = {
    errno.ENOSPC: "Free space on that file system or write elsewhere.",
    errno.EDQUOT: "Free space (quota) or write elsewhere.",
    errno.EACCES: "Check the permissions of the path and its directories.",
    errno.EPERM: "Check the permissions of the path and its directories.",
    errno.EROFS: "The file system is read-only; write elsewhere.",
    errno.ELOOP: "A symbolic link on the path points to itself; fix it.",
    errno.ENAMETOOLONG: "Use a shorter path.",
  }.get(error.errno or 0, "Check the path and the file system.")
  return errors.CheckpointIOError(
    f"{action.capitalize()} `{path}` failed: {reason}. {hint}",
    errno=error.errno,
    filename=path,
  )


def not_regular_error(
  path: str, mode: int, what: str
) -> errors.CorruptCheckpointError:
  return errors.CorruptCheckpointError(
    f"`{path}` is {_kind(mode)}, not a regular file, so it cannot be the "
    f"{what}. Replace it with the checkpoint's own file (copy the whole "
    "checkpoint again)."
  )


def regular_size(path: str, what: str) -> int:
  """The size of a regular file.

  Raises:
    FileNotFoundError: `path` does not exist (callers say what is missing).
    errors.CorruptCheckpointError: It is not a regular file.
    errors.CheckpointIOError: Another OS error.
  """
  if is_url(path):
    info = remote_files.stat(path)  # One request.
    if info is None:
      raise FileNotFoundError(errno.ENOENT, "no such object", path)
    if info.is_directory:
      raise not_regular_error(path, stat.S_IFDIR, what)
    return info.length
  try:
    info = os.stat(path)
  except FileNotFoundError:
    raise
  except OSError as e:
    raise io_error(e, path) from None
  if not stat.S_ISREG(info.st_mode):
    raise not_regular_error(path, info.st_mode, what)
  return info.st_size


@contextlib.contextmanager
def open_regular(path: str, what: str) -> Iterator[CheckpointFile]:
  """Opens a regular file for reading, without blocking.

  Args:
    path: The file.
    what: What the file is, for messages ("checkpoint index").

  Raises:
    FileNotFoundError: `path` does not exist (callers say what is missing).
    errors.CorruptCheckpointError: It is a directory, FIFO, device, ...
    errors.CheckpointIOError: Another OS error (permissions, ELOOP, ...).
  """
  if is_url(path):
    size = regular_size(path, what)
    gfile = remote_files.gfile(path)
    try:
      handle = gfile.GFile(path, "rb")
    except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
      raise remote_files.io_error(e, path, "reading") from None
    with handle:
      yield CheckpointFile(path, size, handle=handle)
    return
  try:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
  except FileNotFoundError:
    raise
  except IsADirectoryError:
    raise not_regular_error(path, stat.S_IFDIR, what) from None
  except OSError as e:
    raise io_error(e, path) from None
  try:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
      raise not_regular_error(path, info.st_mode, what)
    yield CheckpointFile(path, info.st_size, fd=fd)
  finally:
    os.close(fd)


def pread_exact(fd: int, size: int, offset: int, path: str) -> bytes:
  """Exactly `size` bytes at `offset`; fewer means the file shrank.

  Raises:
    errors.CorruptCheckpointError: The file ends before `offset + size`.
    errors.CheckpointIOError: An OS error.
  """
  chunks = []
  done = 0
  while done < size:
    try:
      chunk = os.pread(fd, size - done, offset + done)
    except OSError as e:
      raise io_error(e, path) from None
    if not chunk:
      raise _shrank_error(path, offset + done, size, offset)
    chunks.append(chunk)
    done += len(chunk)
  return b"".join(chunks)


def read_small(path: str, what: str, max_size: int) -> bytes:
  """A whole small file, refused if it is larger than `max_size`.

  Raises:
    FileNotFoundError: `path` does not exist.
    errors.CorruptCheckpointError: Not a regular file, or too large.
    errors.CheckpointIOError: An OS error.
  """
  with open_regular(path, what) as file:
    size = file.size
    if size > max_size:
      raise errors.CorruptCheckpointError(
        f"`{path}` has {size} bytes, more than any {what} holds "
        f"({max_size} at most here). It is not a {what}; replace or "
        "delete it."
      )
    return file.pread(size, 0)
