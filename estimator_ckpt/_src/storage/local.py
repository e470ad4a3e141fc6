"""The local file system (and anything mounted there: NFS, FUSE, ...).

Checkpoint paths come from users and from `checkpoint` state files, so any
of them may be a directory, a FIFO (whose plain `open` blocks forever), a
device such as `/dev/zero` (endless), a symlink loop, or unreadable. Files
are opened without blocking (`O_NONBLOCK`, which regular files ignore),
anything but a regular file is refused with an `errors.Error` naming it, and
operating-system failures become `errors.CheckpointIOError`, naming the
user's path and keeping the errno. Renames are atomic and fsync durable, so
the commit protocol stages and renames; `O_EXCL` and hard links make the
one-writer lock; copies go through `direct_copy` (O_DIRECT). Never imports
TensorFlow.
"""

import contextlib
import errno
import os
import secrets
import shutil
import stat
from typing import Callable, Iterator, List, Optional, Tuple

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import direct_copy

# Hard links fail with these where the file system does not allow them.
_NO_LINK_ERRNOS = frozenset(
  (
    errno.EXDEV,
    errno.EPERM,
    errno.EMLINK,
    errno.ENOTSUP,
    errno.EOPNOTSUPP,
    errno.EACCES,
  )
)


class LocalFile(base.ReadableFile):
  """An open local regular file, read with `pread`."""

  fd: int

  def pread(self, size: int, offset: int) -> bytes:
    return pread_exact(self.fd, size, offset, self.path)


class _LocalWriter(base.Writer):
  def __init__(self, file):
    self._file = file

  def write(self, data: bytes) -> None:
    self._file.write(data)


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
      raise base.os_io_error(e, path) from None
    if not chunk:
      raise base.shrank_error(path, offset + done, size, offset)
    chunks.append(chunk)
    done += len(chunk)
  return b"".join(chunks)


class LocalStorage(base.Storage):
  """Local paths, through the operating system."""

  capabilities = base.Capabilities(
    atomic_rename=True,
    exclusive_create=True,
    durable_fsync=True,
    directories_are_prefixes=False,
    os_paths=True,
  )

  def split(self, path: str) -> Tuple[str, str]:
    return os.path.split(path)

  def join(self, parent: str, name: str) -> str:
    return os.path.join(parent, name)

  def normalize(self, path: str) -> str:
    return os.path.normpath(path)

  def absolute(self, path: str) -> str:
    return os.path.abspath(path)

  def real(self, path: str) -> str:
    return os.path.realpath(path)

  def stat(self, path: str) -> Optional[base.Info]:
    try:
      info = os.stat(path)
    except FileNotFoundError:
      return None
    except OSError as e:
      raise base.os_io_error(e, path) from None
    return base.Info(size=info.st_size, mode=info.st_mode)

  def exists(self, path: str) -> bool:
    return os.path.exists(path)

  def lexists(self, path: str) -> bool:
    return os.path.lexists(path)

  def isdir(self, path: str) -> bool:
    return os.path.isdir(path)

  def islink(self, path: str) -> bool:
    return os.path.islink(path)

  def listdir(self, path: str, *, strict: bool = False) -> List[str]:
    if strict:
      return os.listdir(path)
    try:
      return os.listdir(path)
    except (FileNotFoundError, NotADirectoryError):
      return []
    except OSError as e:
      raise base.os_io_error(e, path) from None

  @contextlib.contextmanager
  def open_regular(self, path: str, what: str) -> Iterator[LocalFile]:
    try:
      fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
      raise
    except IsADirectoryError:
      raise base.not_regular_error(path, stat.S_IFDIR, what) from None
    except OSError as e:
      raise base.os_io_error(e, path) from None
    try:
      info = os.fstat(fd)
      if not stat.S_ISREG(info.st_mode):
        raise base.not_regular_error(path, info.st_mode, what)
      yield LocalFile(path, info.st_size, fd=fd)
    finally:
      os.close(fd)

  def makedirs(self, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
      os.stat(path)  # Names a symlink loop (ELOOP) before makedirs hides it.
    os.makedirs(path, exist_ok=True)

  def mkdir(self, path: str) -> None:
    os.mkdir(path)  # Mode 0o777 minus the umask, as TensorFlow's dirs get.

  @contextlib.contextmanager
  def open_write(self, path: str, size: int) -> Iterator[base.Writer]:
    del size  # Any size fits, or the write says ENOSPC.
    with open(path, "xb") as f:
      yield _LocalWriter(f)
      f.flush()
      os.fsync(f.fileno())

  def write_file(self, path: str, data: bytes) -> None:
    """Writes a new file and fsyncs it (the caller renames it into place)."""
    with open(path, "xb", buffering=0) as f:
      view = memoryview(data)
      done = 0
      while done < len(view):
        done += os.pwrite(f.fileno(), view[done:], done)
      os.fsync(f.fileno())

  def put(self, path: str, data: bytes) -> None:
    with open(path, "wb") as f:
      f.write(data)

  def create_exclusive(self, path: str, data: bytes) -> bool:
    """Creates `path` holding `data` atomically; False if it exists.

    Written whole under a temporary name and hard-linked to `path`, so it
    never exists without its contents; with `O_EXCL` where hard links are
    refused. Works where advisory locks do not (NFS).
    """
    staged = f"{path}.{os.getpid()}-{secrets.token_hex(4)}"
    try:
      with open(staged, "xb") as f:
        f.write(data)
    except BaseException:
      self.remove(staged)
      raise
    try:
      os.link(staged, path)
      return True
    except FileExistsError:
      return False
    except OSError:
      pass  # No hard links here: O_EXCL, then write.
    finally:
      os.remove(staged)
    try:
      fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644
      )
    except FileExistsError:
      return False
    try:
      os.write(fd, data)
    except BaseException:
      self.remove(path)  # Ours, half-written: it would lock everyone out.
      raise
    finally:
      os.close(fd)
    return True

  def rename(self, src: str, dst: str) -> None:
    os.rename(src, dst)  # Atomic, also a directory onto an empty one.

  def remove(self, path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)

  def rmtree(self, path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)

  def fsync_dir(self, path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)

  def fsync_file(self, path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)

  def link(self, src: str, dst: str) -> bool:
    """Hard-links; False (logged) where the file system refuses links."""
    try:
      os.link(src, dst)
    except OSError as e:
      if e.errno not in _NO_LINK_ERRNOS:
        raise
      logging.warning(
        "Cannot hard-link %s into %s (%s); copying instead.",
        src,
        os.path.dirname(dst),
        os.strerror(e.errno),
      )
      return False
    return True

  def copy(
    self,
    src: str,
    dst: str,
    on_bytes: Callable[[int], None],
    new_observer: Callable[[], base.Observer],
  ) -> None:
    """O_DIRECT and pipelined where the file system takes it."""
    direct_copy.copy_file(src, dst, on_bytes, new_observer)

  def io_error(
    self, error: Exception, path: str, action: str = "reading"
  ) -> errors.CheckpointIOError:
    if isinstance(error, OSError):
      return base.os_io_error(error, path, action)
    return errors.CheckpointIOError(
      f"{action.capitalize()} `{path}` failed: {error}. Check the path and "
      "the file system.",
      filename=path,
    )
