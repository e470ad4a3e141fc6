"""Which storage holds a path: decided once, from its scheme.

`for_path(path)` is the one place the library asks whether a path is local
or behind a URL: a path without a scheme is `local.LocalStorage`; `file://`
is `gfile.FileUrlStorage`; `s3://` and `gs://` are
`gfile.ObjectStoreStorage`; any other scheme is `gfile.GfileStorage`, which
TensorFlow's `tf.io.gfile` serves (its `FileSystem` registry: one file
system per scheme). The `gfile` module, and with it TensorFlow, is imported
only when a URL is used, so the tools on local paths never load TensorFlow.

To add a storage for a scheme, `register(scheme, factory)`: the factory gets
the first path of that scheme and returns the `base.Storage` for all of them
(see CONTRIBUTING.md, "The storage seam").
"""

import importlib
import os
import re
import threading
from typing import Callable, Dict

from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import local

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_LOCAL = local.LocalStorage()
# Storages by scheme, made at the first path of each (only a storage that
# could be made is kept: an unregistered scheme is an error each time).
_STORAGES: Dict[str, base.Storage] = {}
_FACTORIES: Dict[str, Callable[[str], base.Storage]] = {}
_LOCK = threading.Lock()
# Object stores any process of this machine writes alike (tested so).
_OBJECT_STORES = frozenset({"s3", "gs"})


def scheme(path: str) -> str:
  """The URL scheme of `path` (`gs`, `s3`, ...), or "" for a local path."""
  match = _SCHEME.match(path)
  return match.group(1).lower() if match else ""


def register(name: str, factory: Callable[[str], base.Storage]) -> None:
  """Serves paths of scheme `name` by `factory(first_path)`'s storage."""
  with _LOCK:
    _FACTORIES[name.lower()] = factory
    _STORAGES.pop(name.lower(), None)


def for_path(path: str) -> base.Storage:
  """The storage that holds `path`.

  Raises:
    errors.FileSystemNotSupportedError: A URL whose scheme nothing serves
      (TensorFlow missing, or no file system registered for it); the
      message says what to install.
  """
  name = scheme(path)
  if not name:
    return _LOCAL
  storage = _STORAGES.get(name)
  if storage is None:
    storage = _FACTORIES.get(name, _gfile_storage)(path)
    with _LOCK:
      storage = _STORAGES.setdefault(name, storage)
  return storage


def is_absolute(path: str) -> bool:
  """Whether `path` names the same file from any directory (a URL does)."""
  return os.path.isabs(path) or bool(scheme(path))


def _gfile_storage(path: str) -> base.Storage:
  # Imported here, not above: it is the module that imports TensorFlow.
  gfile = importlib.import_module("estimator_ckpt._src.storage.gfile")
  module = gfile.load(path, scheme(path))
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (load did)

  if scheme(path) == "file":
    return gfile.FileUrlStorage(module, tf.errors)
  if scheme(path) in _OBJECT_STORES:
    return gfile.ObjectStoreStorage(module, tf.errors)
  return gfile.GfileStorage(module, tf.errors)
