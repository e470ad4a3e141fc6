"""Where this process mapped some shared libraries, found once for all.

The uploader looks for TensorFlow's libraries and plugins several times a
save, in the background save's thread at normal priority. `/proc/self/maps`
of a process with TensorFlow and tensorflow-io loaded has about 900 lines,
and the kernel alone takes about 1.1 ms of CPU to produce it (1.9 ms with
the parse). A library TensorFlow loads is never unloaded (nor is a Python
extension module), so once every name asked for is found the answer is
kept. While one is missing the file is read at every call, so a plugin
loaded later (tensorflow-io imported after the first save) is found then.

glibc counts the objects it loads (dl_iterate_phdr(3)'s `dlpi_adds`), but
only a callback reads the count: in Python that callback may hand the GIL
to a thread that then needs the loader's lock it holds (an extension
module's import, `ctypes.CDLL`), a deadlock.
"""

import os
import threading
from typing import Dict, Sequence, Tuple

_lock = threading.Lock()
# Names asked for -> where each is mapped; only sets found in full.
_found: Dict[Tuple[str, ...], Dict[str, str]] = {}


def find(names: Sequence[str]) -> Dict[str, str]:
  """Base name -> path, for those of `names` this process has mapped.

  Kept once all of `names` were found; read again at each call until then.
  A new dict: the caller may change it.
  """
  key = tuple(names)
  with _lock:
    found = _found.get(key)
  if found is None:
    mapped = _read_maps()
    found = {name: mapped[name] for name in key if name in mapped}
    if len(found) == len(set(key)):
      with _lock:
        _found[key] = found
  return dict(found)


def _read_maps() -> Dict[str, str]:
  """Base name -> path of every file this process has mapped."""
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
