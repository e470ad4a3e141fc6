"""Opening a checkpoint's files: regular files only, never blocking, bounded.

Checkpoint paths come from users and from `checkpoint` state files, so any
of them may be a directory, a FIFO, a device such as `/dev/zero` (endless),
a symlink loop, or unreadable. Every reader of the format core opens files
through here, and the storage that holds the path (`storage.registry`) opens
them: anything but a regular file is refused with an `errors.Error` naming
it, failures become `errors.CheckpointIOError` naming the user's path, and
reads are bounded by the file's size and by what the caller expects.
"""

import contextlib
from typing import Iterator, List

from estimator_ckpt import errors
from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import registry


def exists(path: str) -> bool:
  return registry.for_path(path).exists(path)


def isdir(path: str) -> bool:
  return registry.for_path(path).isdir(path)


def listdir(path: str) -> List[str]:
  """Names in a directory; [] if it does not exist."""
  return registry.for_path(path).listdir(path)


def regular_size(path: str, what: str) -> int:
  """The size of a regular file.

  Raises:
    FileNotFoundError: `path` does not exist (callers say what is missing).
    errors.CorruptCheckpointError: It is not a regular file.
    errors.CheckpointIOError: Another failure.
  """
  info = registry.for_path(path).stat(path)
  if info is None:
    raise FileNotFoundError(2, "no such file", path)
  if not info.is_regular:
    raise base.not_regular_error(path, info.mode, what)
  return info.size


@contextlib.contextmanager
def open_regular(path: str, what: str) -> Iterator[base.ReadableFile]:
  """Opens a regular file for reading, without blocking.

  Args:
    path: The file.
    what: What the file is, for messages ("checkpoint index").

  Raises:
    FileNotFoundError: `path` does not exist (callers say what is missing).
    errors.CorruptCheckpointError: It is a directory, FIFO, device, ...
    errors.CheckpointIOError: Another failure (permissions, ELOOP, ...).
  """
  with registry.for_path(path).open_regular(path, what) as file:
    yield file


def read_small(path: str, what: str, max_size: int) -> bytes:
  """A whole small file, refused if it is larger than `max_size`.

  Raises:
    FileNotFoundError: `path` does not exist.
    errors.CorruptCheckpointError: Not a regular file, or too large.
    errors.CheckpointIOError: A failure of the file system.
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
