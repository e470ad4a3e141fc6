"""Progress of long work (GB checkpoints), logged, and byte sizes as text.

Not public API.
"""

import threading
import time

from absl import logging

# Log at most this often.
_INTERVAL_SECONDS = 2.0


def size_text(size: float) -> str:
  """`512 B`, `52.3 KiB`, `2.1 GiB`."""
  for unit in ("B", "KiB", "MiB", "GiB"):
    if size < 1024 or unit == "GiB":
      return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
    size /= 1024
  return str(size)


class Progress:
  """Counts bytes done of a known total; logs every few seconds.

  Thread-safe.
  """

  def __init__(self, what: str, total: int):
    self._what = what
    self._total = total
    self._done = 0
    self._start = time.monotonic()
    self._last = self._start
    self._lock = threading.Lock()

  @property
  def done(self) -> int:
    return self._done

  def add(self, count: int) -> None:
    with self._lock:
      self._done += count
      now = time.monotonic()
      if now - self._last < _INTERVAL_SECONDS:
        return
      self._last = now
      done = self._done
    rate = done / max(now - self._start, 1e-9)
    logging.info(
      "%s: %s of %s (%d%%), %s/s",
      self._what,
      size_text(done),
      size_text(self._total),
      100 * done // max(self._total, 1),
      size_text(rate),
    )
