"""Checkpoint files behind a URL (`gs://`, `s3://`, `hdfs://`, `ram://`, ...).

Every path with a scheme goes through `tf.io.gfile`, TensorFlow's own file
system layer, so the tools read and write wherever TensorFlow does. It is
imported only when such a path is used: the tools on local paths never load
TensorFlow. Reads are ranged (`seek` + `read`) and copies go in bounded
chunks, so memory stays flat for any checkpoint size.
"""

import re
import types
from typing import List

from estimator_ckpt import errors

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# What to install for schemes TensorFlow 2.15 does not register by itself.
_INSTALL_HINTS = {
  "s3": "install tensorflow-io==0.36.0 (the release for TensorFlow 2.15) and "
  "`import tensorflow_io` before using s3:// paths",
  "hdfs": "set up the Hadoop client (HADOOP_HDFS_HOME, CLASSPATH) as "
  "TensorFlow's HDFS support requires, or install tensorflow-io==0.36.0",
  "az": "install tensorflow-io==0.36.0 and `import tensorflow_io`",
  "http": "install tensorflow-io==0.36.0 and `import tensorflow_io`",
  "https": "install tensorflow-io==0.36.0 and `import tensorflow_io`",
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
  try:
    tf.io.gfile.exists(f"{name}://")
  except tf.errors.UnimplementedError:
    hint = _INSTALL_HINTS.get(
      name, f"install the TensorFlow plugin that registers `{name}://`"
    )
    raise errors.FileSystemNotSupportedError(
      f"TensorFlow has no file system for `{name}://`, so `{path}` cannot be "
      f"read or written: {hint}."
    ) from None
  except tf.errors.OpError:
    pass  # Registered; the bare root may just not be a valid path.
  return tf.io.gfile


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


def listdir(path: str) -> List[str]:
  """Names in a directory (no trailing `/` on sub-directories)."""
  return [name.rstrip("/") for name in gfile(path).listdir(path)]
