"""What a file system offers the library: the interface of the storage seam.

Every file-system operation of the library goes through a `Storage`, chosen
once per path from its scheme (`registry.for_path`): `local.LocalStorage` for
local paths, `gfile.GfileStorage` (TensorFlow's `tf.io.gfile`) for URLs. A
storage declares what it can do in its `Capabilities`, and callers ask those
instead of whether a path is a URL: the commit protocol (`atomic`) stages and
renames where renames are atomic and fsync is durable, and commits by order
elsewhere; the one-writer lock (`destination_lock`) creates its lock
exclusively where the storage can, and lists a prefix elsewhere. The anchors:
TensorFlow's `FileSystem` (one interface per scheme, `HasAtomicMove()`),
Orbax's `epath.Path`, fsspec's `AbstractFileSystem`.

Failures of the file system become `errors.CheckpointIOError` naming the
user's path (`Storage.io_error`), with what to do.
"""

import abc
import dataclasses
import errno
import stat
from typing import Callable, ContextManager, List, Optional, Tuple

from estimator_ckpt import errors

# Called with each piece of a file as it is copied: (offset, bytes).
Observer = Callable[[int, memoryview], None]


@dataclasses.dataclass(frozen=True)
class Capabilities:
  """What a storage can do; the commit protocol and the lock ask these.

  Attributes:
    atomic_rename: `rename` replaces its target in one step, a directory too
      (POSIX `rename(2)`; TensorFlow's `FileSystem::HasAtomicMove()`). On
      GCS and S3 a rename is a copy plus a delete.
    exclusive_create: `create_exclusive` fails if the file exists, for any
      number of concurrent writers (`O_EXCL`, hard links).
    durable_fsync: Written files and directory entries can be forced to
      stable storage (`fsync`, `fsync_dir`); elsewhere an object is durable
      once its write returns, or never under the library's control.
    directories_are_prefixes: Any prefix of a file's name may be listed as a
      directory (object stores, TensorFlow's `ram://`), so `prefix.index`
      existing decides before `isdir(prefix)`.
    os_paths: Its paths are the operating system's own, so other readers
      (TensorFlow's kernels, a symlink to the file) reach a file by the same
      path; a URL is not one.
    shared_across_processes: An object store that another process of this
      machine, in this environment, writes as this one does, so
      asynchronous saves upload through the uploader process
      (`uploader`); declared for the stores tested so (S3, GCS), not for
      `ram://` (each process's own memory).
  """

  atomic_rename: bool
  exclusive_create: bool
  durable_fsync: bool
  directories_are_prefixes: bool
  os_paths: bool = False
  shared_across_processes: bool = False


@dataclasses.dataclass(frozen=True)
class Info:
  """What `Storage.stat` knows of a path.

  Attributes:
    size: Its size in bytes.
    mode: Its `st_mode` (file type bits; a storage without them says
      `S_IFDIR` or `S_IFREG`).
  """

  size: int
  mode: int

  @property
  def is_dir(self) -> bool:
    return stat.S_ISDIR(self.mode)

  @property
  def is_regular(self) -> bool:
    return stat.S_ISREG(self.mode)


class ReadableFile(abc.ABC):
  """An open regular file: its size and exact reads at any offset.

  Attributes:
    path: The user's path.
    size: Its size in bytes when opened.
    fd: The descriptor of a local file (for mmap and `preadv`); None
      elsewhere.
  """

  def __init__(self, path: str, size: int, fd: Optional[int] = None):
    self.path = path
    self.size = size
    self.fd = fd

  @abc.abstractmethod
  def pread(self, size: int, offset: int) -> bytes:
    """Exactly `size` bytes at `offset`.

    Raises:
      errors.CorruptCheckpointError: The file ends before `offset + size`.
      errors.CheckpointIOError: The read failed.
    """


class Writer(abc.ABC):
  """A file being written from its start, in order (`Storage.open_write`)."""

  @abc.abstractmethod
  def write(self, data: bytes) -> None:
    """Appends `data`."""


class Storage(abc.ABC):
  """The file-system operations of the library, for the paths of one scheme.

  Paths are the user's own spellings; a storage never turns a URL into a
  local path (`os.path.normpath` would eat the `//`). Methods raise
  `errors.CheckpointIOError` (via `io_error`) for failures of the file
  system unless they say otherwise.
  """

  capabilities: Capabilities

  # Paths.
  @abc.abstractmethod
  def split(self, path: str) -> Tuple[str, str]:
    """(parent, name) of `path`; name "" for a root (`/`, `gs://bucket`)."""

  @abc.abstractmethod
  def join(self, parent: str, name: str) -> str:
    """`parent/name`."""

  @abc.abstractmethod
  def normalize(self, path: str) -> str:
    """`path` without redundant separators (a URL keeps its `//`)."""

  @abc.abstractmethod
  def absolute(self, path: str) -> str:
    """`path` independent of the working directory."""

  @abc.abstractmethod
  def real(self, path: str) -> str:
    """`path` with symbolic links resolved where there are any."""

  # Queries.
  @abc.abstractmethod
  def stat(self, path: str) -> Optional[Info]:
    """What `path` is (links followed), in one request; None if absent."""

  @abc.abstractmethod
  def exists(self, path: str) -> bool:
    """Whether `path` exists (links followed)."""

  @abc.abstractmethod
  def lexists(self, path: str) -> bool:
    """Whether the name `path` exists, even as a dangling link."""

  @abc.abstractmethod
  def isdir(self, path: str) -> bool:
    """Whether `path` is a directory."""

  def islink(self, path: str) -> bool:
    """Whether `path` is a symbolic link (never, on object stores)."""
    del path
    return False

  @abc.abstractmethod
  def listdir(self, path: str, *, strict: bool = False) -> List[str]:
    """Names in a directory, without a trailing `/`.

    Args:
      path: The directory.
      strict: Raise the storage's own error (`OSError`, TensorFlow's) if it
        cannot be listed, absent included, for the caller to name (the lock
        must never take a failed listing for an empty one); otherwise [] if
        it is absent.
    """

  # Reading.
  @abc.abstractmethod
  def open_regular(self, path: str, what: str) -> ContextManager[ReadableFile]:
    """Opens a regular file for reading, never blocking.

    Args:
      path: The file.
      what: What the file is, for messages ("checkpoint index").

    Raises:
      FileNotFoundError: `path` does not exist (callers say what is missing).
      errors.CorruptCheckpointError: It is a directory, FIFO, device, ...
      errors.CheckpointIOError: Another failure.
    """

  # Writing.
  @abc.abstractmethod
  def makedirs(self, path: str) -> None:
    """Creates `path` and its parents; nothing if it exists."""

  @abc.abstractmethod
  def mkdir(self, path: str) -> None:
    """Creates the directory `path` (its parent exists)."""

  @abc.abstractmethod
  def open_write(self, path: str, size: int) -> ContextManager[Writer]:
    """A new file `path` of `size` bytes, written in order, durable on exit.

    Raises:
      errors.CheckpointIOError: `size` bytes cannot be written there (say,
        more than an S3 upload's parts hold), before anything is written.
    """

  def check_fits(self, path: str, size: int) -> None:
    """Refuses, before anything is written, a file `path` cannot hold.

    Raises:
      errors.CheckpointIOError: `size` bytes do not fit (say, more than an
        S3 upload's parts hold); the message says what to set.
    """
    del path, size  # Most storages take any size, or say ENOSPC when full.

  @abc.abstractmethod
  def write_file(self, path: str, data: bytes) -> None:
    """Writes `path` whole and durably; readers never see part of it.

    Where fsync is durable (`capabilities.durable_fsync`) `path` must be new
    and is fsynced (the staged commit renames it into place); elsewhere it
    is written under a temporary name and renamed over `path`.
    """

  @abc.abstractmethod
  def put(self, path: str, data: bytes) -> None:
    """Writes `path` with `data` directly (no temporary name, no fsync)."""

  def create_exclusive(self, path: str, data: bytes) -> bool:
    """Creates `path` holding `data` in one step; False if it exists.

    Only where `capabilities.exclusive_create`.
    """
    raise NotImplementedError(f"{type(self).__name__} has no exclusive create")

  @abc.abstractmethod
  def rename(self, src: str, dst: str) -> None:
    """Moves `src` to `dst`, replacing it (atomic per `capabilities`)."""

  @abc.abstractmethod
  def remove(self, path: str) -> None:
    """Removes the file `path`; nothing if it is already gone."""

  @abc.abstractmethod
  def rmtree(self, path: str) -> None:
    """Removes the directory `path` and what it holds, ignoring failures."""

  @abc.abstractmethod
  def fsync_dir(self, path: str) -> None:
    """Makes the entries of directory `path` durable (`durable_fsync`)."""

  def fsync_file(self, path: str) -> None:
    """Makes the contents of the existing file `path` durable.

    Only where `capabilities.durable_fsync`; elsewhere nothing (an object is
    durable once its write returns). For files another writer produced
    (TensorFlow's `SaveV2`, which never fsyncs).
    """
    del path

  @abc.abstractmethod
  def link(self, src: str, dst: str) -> bool:
    """Hard-links `src` to `dst`; False where the storage cannot."""

  def copy(
    self,
    src: str,
    dst: str,
    on_bytes: Callable[[int], None],
    new_observer: Callable[[], Observer],
  ) -> None:
    """Copies the file `src` to a new file `dst` of this storage, durably.

    `new_observer()` sees every byte read (the checksum check). The default
    streams bounded chunks (`stream_copy`); a storage may do better.
    """
    stream_copy(self, src, self, dst, on_bytes, new_observer())

  @abc.abstractmethod
  def io_error(
    self, error: Exception, path: str, action: str = "reading"
  ) -> errors.CheckpointIOError:
    """A failure of this storage as a `CheckpointIOError` naming `path`."""


# Copies across storages and on storages without a faster copy go through
# buffers of this size, so memory stays flat for any file size.
STREAM_CHUNK = 8 << 20


def stream_copy(
  source_storage: Storage,
  src: str,
  target_storage: Storage,
  dst: str,
  on_bytes: Callable[[int], None],
  observe: Observer,
) -> None:
  """Copies `src` to a new `dst` through `STREAM_CHUNK` buffers."""
  with source_storage.open_regular(src, "data file") as source:
    try:
      with target_storage.open_write(dst, source.size) as target:
        offset = 0
        while offset < source.size:
          chunk = source.pread(min(STREAM_CHUNK, source.size - offset), offset)
          observe(offset, memoryview(chunk))
          target.write(chunk)
          offset += len(chunk)
          on_bytes(len(chunk))
    except errors.Error:
      raise
    except Exception as e:  # pylint: disable=broad-except  (OSError, tf's)
      raise target_storage.io_error(e, dst, "writing") from None


def shrank_error(
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


def not_regular_error(
  path: str, mode: int, what: str
) -> errors.CorruptCheckpointError:
  return errors.CorruptCheckpointError(
    f"`{path}` is {_kind(mode)}, not a regular file, so it cannot be the "
    f"{what}. Replace it with the checkpoint's own file (copy the whole "
    "checkpoint again)."
  )


def os_io_error(
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
