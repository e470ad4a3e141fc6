"""Checkpoint files behind a URL (`gs://`, `s3://`, `hdfs://`, `ram://`, ...).

Every path with a scheme goes through `tf.io.gfile`, TensorFlow's own file
system layer, so the tools read and write wherever TensorFlow does. It is
imported only when such a path is used: the tools on local paths never load
TensorFlow. Reads are ranged (`seek` + `read`) and copies go in bounded
chunks, so memory stays flat for any checkpoint size.

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

import importlib
import os
import re
import types
from typing import Dict, List, Set

from absl import logging

from estimator_ckpt import errors

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
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# What to install for schemes TensorFlow 2.15 does not register by itself.
_INSTALL_HINTS = {
  "s3": "install tensorflow-io==0.36.0 (the release for TensorFlow 2.15)",
  "hdfs": "install tensorflow-io==0.36.0 and set up the Hadoop client "
  "(HADOOP_HDFS_HOME, CLASSPATH) as its HDFS support requires",
}


def scheme(path: str) -> str:
  """The URL scheme of `path` (`gs`, `s3`, ...), or "" for a local path."""
  match = _SCHEME.match(path)
  return match.group(1).lower() if match else ""


def gfile(path: str) -> types.ModuleType:
  """`tf.io.gfile`, for a URL whose scheme TensorFlow can open.

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
  name = scheme(path)
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


def io_error(
  error: Exception, path: str, action: str
) -> errors.CheckpointIOError:
  """A TensorFlow file-system error as a `CheckpointIOError` naming `path`."""
  message = getattr(error, "message", None) or str(error)
  return errors.CheckpointIOError(
    f"{action.capitalize()} `{path}` failed: {message}. Check the URL, the "
    "credentials and that the store is reachable.",
    filename=path,
  )


def stat(path: str):
  """`tf.io.gfile.stat(path)` (`.length`, `.is_directory`); None if absent.

  One request on object stores, where `exists` + `isdir` + `stat` are three.

  Raises:
    errors.CheckpointIOError: Another failure (credentials, network).
  """
  module = gfile(path)
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (gfile did)

  try:
    return module.stat(path)
  except tf.errors.NotFoundError:
    return None
  except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
    raise io_error(e, path, "reading") from None


def check_upload_size(path: str, size: int) -> None:
  """Refuses, before writing, an `s3://` object its upload cannot hold.

  Raises:
    errors.CheckpointIOError: `size` bytes need more than S3's 10,000
      parts of S3_MULTI_PART_UPLOAD_CHUNK_SIZE; the message says what to
      set.
  """
  if scheme(path) != "s3":
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


def listdir(path: str) -> List[str]:
  """Names in a directory (no trailing `/` on sub-directories)."""
  return [name.rstrip("/") for name in gfile(path).listdir(path)]
