"""The shared objects this process has mapped, read again only on a change.

`/proc/self/maps` of a process with TensorFlow and tensorflow-io loaded
has about 900 lines: reading and parsing it costs about 2 ms of CPU, and
the uploader asks for TensorFlow's libraries and plugins several times a
save, in the background save's thread at normal priority. glibc counts
every object it loads and unloads (`dlpi_adds`, `dlpi_subs` of
dl_iterate_phdr(3), there for such caches), so the file is read again only
when those counts changed: a plugin loaded later (tensorflow-io imported
after the first save) is still seen. Where the counts are not available
(another C library), it is read at every call.
"""

import ctypes
import os
import threading
from typing import Dict, Optional, Tuple


class _DlPhdrInfo(ctypes.Structure):
  """`struct dl_phdr_info` (link.h), up to the counters."""

  _fields_ = [
    ("dlpi_addr", ctypes.c_size_t),
    ("dlpi_name", ctypes.c_char_p),
    ("dlpi_phdr", ctypes.c_void_p),
    ("dlpi_phnum", ctypes.c_uint16),
    ("dlpi_adds", ctypes.c_ulonglong),
    ("dlpi_subs", ctypes.c_ulonglong),
  ]


_CALLBACK = ctypes.CFUNCTYPE(
  ctypes.c_int, ctypes.POINTER(_DlPhdrInfo), ctypes.c_size_t, ctypes.c_void_p
)


def _dl_iterate_phdr():
  # Called holding the GIL (PyDLL): the loader holds its lock while it calls
  # back, and a callback waiting there for the GIL would deadlock with a
  # thread importing an extension module (dlopen, holding the GIL).
  try:
    function = ctypes.PyDLL(None).dl_iterate_phdr
  except (OSError, AttributeError):
    return None
  function.restype = ctypes.c_int
  function.argtypes = (_CALLBACK, ctypes.c_void_p)
  return function


_DL_ITERATE_PHDR = _dl_iterate_phdr()


def load_counts() -> Optional[Tuple[int, int]]:
  """(objects loaded, objects unloaded) so far; None where not counted."""
  if _DL_ITERATE_PHDR is None:
    return None
  counts = []

  def first(info, size, data):
    del data
    if size >= _DlPhdrInfo.dlpi_subs.offset + ctypes.sizeof(ctypes.c_ulonglong):
      counts.append((info.contents.dlpi_adds, info.contents.dlpi_subs))
    return 1  # The counters are the same in every object's info: stop.

  _DL_ITERATE_PHDR(_CALLBACK(first), None)
  return counts[0] if counts else None


class _MapsCache:
  """The last read of `/proc/self/maps` and the load counts before it."""

  def __init__(self):
    self._lock = threading.Lock()
    self._counts: Optional[Tuple[int, int]] = None
    self._mapped: Dict[str, str] = {}

  def mapped_files(self) -> Dict[str, str]:
    counts = load_counts()  # Before the read: a load after it reads again.
    with self._lock:
      if counts is not None and counts == self._counts:
        return dict(self._mapped)
    mapped = _read_maps()
    with self._lock:
      self._counts, self._mapped = counts, mapped
    return dict(mapped)


_cache = _MapsCache()


def mapped_files() -> Dict[str, str]:
  """Base name -> path of the shared objects this process has mapped.

  A copy: the caller may change it.
  """
  return _cache.mapped_files()


def _read_maps() -> Dict[str, str]:
  mapped: Dict[str, str] = {}
  try:
    with open("/proc/self/maps") as maps:
      for line in maps:
        path = line.split(maxsplit=5)[-1].strip()
        if path.startswith("/"):
          mapped.setdefault(os.path.basename(path), path)
  except OSError:
    pass
  return mapped
