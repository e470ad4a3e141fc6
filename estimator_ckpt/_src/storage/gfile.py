"""Storage behind a URL (`gs://`, `s3://`, `hdfs://`, `ram://`, ...).

Every path with a scheme goes through `tf.io.gfile`, TensorFlow's own file
system layer, so the tools read and write wherever TensorFlow does.
TensorFlow is imported only when such a path is used (`registry` imports this
module only then, and this module imports TensorFlow only in `load`): the
tools on local paths never load it. Reads are ranged (`seek` + `read`) and
copies go in bounded chunks, so memory stays flat for any checkpoint size.

What it can do: no durable fsync of objects or directories under the
library's control, no exclusive create, and on object stores no atomic rename
(on GCS and S3 a rename is a copy plus a delete), so the commit protocol
commits by order and the lock lists a prefix (`destination_lock`). A
`file://` URL names local files: `FileUrlStorage` creates exclusively there,
so its lock is the plain path's.

Schemes TensorFlow 2.15 leaves to tensorflow-io (`s3://`, `hdfs://`,
`az://`, `http(s)://`, ...) work once it is imported; if it is installed,
the first such path imports it, so the tools and binaries need nothing more.
For `s3://`, tensorflow-io's uploads otherwise hold a whole object's parts in
memory at once (its defaults: about 1 GB of RSS for a 1 GiB data file), so
unless set already, S3_MULTI_PART_UPLOAD_CHUNK_SIZE and S3_EXECUTOR_POOL_SIZE
are set to bounded values (`S3_UPLOAD_LIMITS`) before the first `s3://`
path is touched; tensorflow-io reads them at the process's first S3 read or
write, so values set by then stay as they are.
"""

import contextlib
import dataclasses
import importlib
import os
import re
import secrets
import stat
import types
from typing import Dict, Iterator, List, Optional, Set, Tuple

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import local

# Schemes whose file systems tensorflow-io registers (TensorFlow 2.15 has
# none of them built in).
_TENSORFLOW_IO_SCHEMES = frozenset(
  {"s3", "hdfs", "viewfs", "har", "az", "http", "https"}
)
# What a conversion's uploads to s3:// hold in memory: up to (pool + 1)
# parts, 40 MiB here. Measured by benchmarks/remote_benchmark.py: as fast as
# tensorflow-io's defaults against a loopback server.
S3_UPLOAD_LIMITS: Dict[str, str] = {
  "S3_MULTI_PART_UPLOAD_CHUNK_SIZE": str(8 << 20),
  "S3_EXECUTOR_POOL_SIZE": "4",
}
# S3 takes at most this many parts per multipart upload, and tensorflow-io's
# transfer manager does not grow its part size to fit (aws-sdk-cpp#1693).
_S3_MAX_PARTS = 10_000
_TENSORFLOW_IO_PART_SIZE = 50 << 20
# Schemes found registered (each costs a probe, on some stores a request).
_REGISTERED: Set[str] = set()
# `scheme://authority` and the path after it.
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/]*)(.*)$")
# What to install for schemes TensorFlow 2.15 does not register by itself.
_INSTALL_HINTS = {
  "s3": "install tensorflow-io==0.36.0 (the release for TensorFlow 2.15)",
  "hdfs": "install tensorflow-io==0.36.0 and set up the Hadoop client "
  "(HADOOP_HDFS_HOME, CLASSPATH) as its HDFS support requires",
}


def load(path: str, name: str) -> types.ModuleType:
  """`tf.io.gfile`, for a URL `path` whose scheme `name` TensorFlow opens.

  Raises:
    errors.FileSystemNotSupportedError: TensorFlow is not installed, or has
      no file system registered for the scheme; the message says what to
      install.
  """
  try:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise errors.FileSystemNotSupportedError(
      f"`{path}` is a URL; the tools read and write URLs through TensorFlow's "
      "tf.io.gfile, which is not installed here. Install tensorflow==2.15.1, "
      "or copy the checkpoint to a local path."
    ) from None
  if name == "s3":
    for variable, value in S3_UPLOAD_LIMITS.items():
      os.environ.setdefault(variable, value)
  if not _registered(tf, name) and not (
    name in _TENSORFLOW_IO_SCHEMES
    and _import_tensorflow_io()
    and _registered(tf, name)
  ):
    hint = _INSTALL_HINTS.get(
      name,
      "install tensorflow-io==0.36.0 (the release for TensorFlow 2.15)"
      if name in _TENSORFLOW_IO_SCHEMES
      else f"install the TensorFlow plugin that registers `{name}://`",
    )
    raise errors.FileSystemNotSupportedError(
      f"TensorFlow has no file system for `{name}://`, so `{path}` cannot be "
      f"read or written: {hint}."
    )
  return tf.io.gfile


def _registered(tf: types.ModuleType, name: str) -> bool:
  if name in _REGISTERED:
    return True
  try:
    tf.io.gfile.exists(f"{name}://")
  except tf.errors.UnimplementedError:
    return False
  except tf.errors.OpError:
    pass  # Registered; the bare root may just not be a valid path.
  _REGISTERED.add(name)  # File systems are never unregistered.
  return True


def _import_tensorflow_io() -> bool:
  """Imports tensorflow-io if installed (it registers its file systems)."""
  try:
    importlib.import_module("tensorflow_io")
  except ImportError:
    return False
  logging.info("Imported tensorflow_io for its file systems.")
  return True


def check_upload_size(path: str, size: int) -> None:
  """Refuses, before writing, an `s3://` object its upload cannot hold.

  Raises:
    errors.CheckpointIOError: `size` bytes need more than S3's 10,000
      parts of S3_MULTI_PART_UPLOAD_CHUNK_SIZE; the message says what to
      set.
  """
  if not path.lower().startswith("s3://"):
    return
  try:
    part = int(
      os.environ.get(
        "S3_MULTI_PART_UPLOAD_CHUNK_SIZE", _TENSORFLOW_IO_PART_SIZE
      )
    )
  except ValueError:
    part = _TENSORFLOW_IO_PART_SIZE
  if part <= 0 or size <= _S3_MAX_PARTS * part:
    return
  needed = -(-size // _S3_MAX_PARTS)
  raise errors.CheckpointIOError(
    f"`{path}` would hold {size} bytes, more than S3's {_S3_MAX_PARTS} upload "
    f"parts of S3_MULTI_PART_UPLOAD_CHUNK_SIZE={part} bytes take "
    f"({_S3_MAX_PARTS * part}). Set S3_MULTI_PART_UPLOAD_CHUNK_SIZE to at "
    f"least {needed} before the process's first s3:// transfer (uploads then "
    "hold up to S3_EXECUTOR_POOL_SIZE + 1 parts in memory).",
    filename=path,
  )


class GfileObject(base.ReadableFile):
  """An open object, read with `seek` + `read` (ranged requests)."""

  def __init__(self, path: str, size: int, handle, io_error):
    super().__init__(path, size)
    self._handle = handle  # A tf.io.gfile.GFile.
    self._io_error = io_error

  def pread(self, size: int, offset: int) -> bytes:
    try:
      self._handle.seek(offset)
      data = self._handle.read(size) if size else b""
    except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
      raise self._io_error(e, self.path, "reading") from None
    if len(data) != size:
      raise base.shrank_error(self.path, offset + len(data), size, offset)
    return data


class _GfileWriter(base.Writer):
  def __init__(self, handle):
    self._handle = handle

  def write(self, data: bytes) -> None:
    self._handle.write(data)


class GfileStorage(base.Storage):
  """The URLs of one scheme, through `tf.io.gfile`."""

  capabilities = base.Capabilities(
    atomic_rename=False,
    exclusive_create=False,
    durable_fsync=False,
    directories_are_prefixes=True,
  )

  def __init__(self, gfile: types.ModuleType, errors_module: types.ModuleType):
    """A storage calling `gfile` (`tf.io.gfile`, looked up at each call).

    Args:
      gfile: `tf.io.gfile`.
      errors_module: `tf.errors`.
    """
    self._gfile = gfile
    self._tf_errors = errors_module

  def split(self, path: str) -> Tuple[str, str]:
    match = _URL.match(path.rstrip("/"))
    assert match, path  # The registry chose this storage by the scheme.
    root, rest = match.groups()
    parent, name = rest.rsplit("/", 1) if "/" in rest else ("", "")
    return root + parent, name

  def join(self, parent: str, name: str) -> str:
    return f"{parent}{'' if parent.endswith('/') else '/'}{name}"

  def normalize(self, path: str) -> str:
    # Not os.path.normpath: it would make `gs://b/x` the local path `gs:/b/x`.
    return path.rstrip("/")

  def absolute(self, path: str) -> str:
    return path

  def real(self, path: str) -> str:
    return path.rstrip("/")

  def stat(self, path: str) -> Optional[base.Info]:
    """One request (`tf.io.gfile.stat`), where exists + isdir + stat are 3."""
    try:
      info = self._gfile.stat(path)
    except self._tf_errors.NotFoundError:
      return None
    except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
      raise self.io_error(e, path, "reading") from None
    mode = stat.S_IFDIR if info.is_directory else stat.S_IFREG
    return base.Info(size=info.length, mode=mode)

  def exists(self, path: str) -> bool:
    return self._gfile.exists(path)

  def lexists(self, path: str) -> bool:
    return self._gfile.exists(path)  # No links on object stores.

  def isdir(self, path: str) -> bool:
    return self._gfile.isdir(path)

  def listdir(self, path: str, *, strict: bool = False) -> List[str]:
    # Strictly: tf.io.gfile.isdir reports any error as False, and a failed
    # listing must not pass for an empty one.
    if not strict and not self._gfile.isdir(path):
      return []
    return [name.rstrip("/") for name in self._gfile.listdir(path)]

  @contextlib.contextmanager
  def open_regular(self, path: str, what: str) -> Iterator[GfileObject]:
    info = self.stat(path)  # One request.
    if info is None:
      raise FileNotFoundError(2, "no such object", path)
    if info.is_dir:
      raise base.not_regular_error(path, stat.S_IFDIR, what)
    try:
      handle = self._gfile.GFile(path, "rb")
    except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
      raise self.io_error(e, path, "reading") from None
    with handle:
      yield GfileObject(path, info.size, handle, self.io_error)

  def makedirs(self, path: str) -> None:
    self._gfile.makedirs(path)

  def mkdir(self, path: str) -> None:
    self._gfile.mkdir(path)

  @contextlib.contextmanager
  def open_write(self, path: str, size: int) -> Iterator[base.Writer]:
    check_upload_size(path, size)
    with self._gfile.GFile(path, "wb") as handle:
      yield _GfileWriter(handle)

  def check_fits(self, path: str, size: int) -> None:
    check_upload_size(path, size)

  def write_file(self, path: str, data: bytes) -> None:
    """Under a temporary name, then renamed: readers never see half of it.

    On stores where an object appears only when complete, the rename is a
    server-side copy.
    """
    check_upload_size(path, len(data))
    staged = f"{path}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
      with self._gfile.GFile(staged, "wb") as f:
        f.write(data)
      self._gfile.rename(staged, path, overwrite=True)
    except errors.Error:
      raise
    except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
      if self._gfile.exists(staged):
        self._gfile.remove(staged)
      raise self.io_error(e, path, "writing") from None

  def put(self, path: str, data: bytes) -> None:
    with self._gfile.GFile(path, "wb") as f:
      f.write(data)

  def rename(self, src: str, dst: str) -> None:
    self._gfile.rename(src, dst, overwrite=True)

  def remove(self, path: str) -> None:
    with contextlib.suppress(self._tf_errors.NotFoundError):
      self._gfile.remove(path)

  def rmtree(self, path: str) -> None:
    with contextlib.suppress(Exception):
      self._gfile.rmtree(path)

  def fsync_dir(self, path: str) -> None:
    """Nothing: objects are durable once written (`durable_fsync` False)."""

  def link(self, src: str, dst: str) -> bool:
    return False  # No hard links on or across object stores: copy.

  def io_error(
    self, error: Exception, path: str, action: str = "reading"
  ) -> errors.CheckpointIOError:
    if isinstance(error, OSError):
      return base.os_io_error(error, path, action)
    message = getattr(error, "message", None) or str(error)
    return errors.CheckpointIOError(
      f"{action.capitalize()} `{path}` failed: {message}. Check the URL, the "
      "credentials and that the store is reachable.",
      filename=path,
    )


class ObjectStoreStorage(GfileStorage):
  """`s3://` and `gs://`: written alike by any process of this machine."""

  capabilities = dataclasses.replace(
    GfileStorage.capabilities, shared_across_processes=True
  )


def file_url_path(url: str) -> str:
  """The local path of a `file://` URL, as TensorFlow reads it.

  The text after the authority, literally (no query or fragment: `#` and
  `?` are parts of file names here), without a trailing `/`.
  """
  rest = url.split("://", 1)[1]
  if not rest.startswith("/"):
    rest = "/" + rest.partition("/")[2]  # Drops `localhost` or a host.
  return rest.rstrip("/") or "/"


class FileUrlStorage(GfileStorage):
  """`file://` URLs: local files, read and written through `tf.io.gfile`.

  They are the same files as the plain path's, so exclusive creation (the
  one-writer lock) and making directories go to the local file system, and
  a writer through `file://` and one through the plain path share one lock.
  Everything else goes through TensorFlow, as for any URL, and commits by
  order: `tf.io.gfile` offers no fsync.
  """

  capabilities = base.Capabilities(
    atomic_rename=True,
    exclusive_create=True,
    durable_fsync=False,
    directories_are_prefixes=False,
  )
  _local = local.LocalStorage()

  def lexists(self, path: str) -> bool:
    return self._local.lexists(file_url_path(path))

  def makedirs(self, path: str) -> None:
    self._local.makedirs(file_url_path(path))

  def create_exclusive(self, path: str, data: bytes) -> bool:
    return self._local.create_exclusive(file_url_path(path), data)
