"""CRC32C and TensorFlow's masked form of it.

Tables and data files store masked crc32c checksums
(`tsl/lib/hash/crc32c.h: Mask`). The C implementation of google-crc32c does the
work at disk speed, on any buffer without copying where it can.
"""

import ctypes
from typing import Callable, Optional

import google_crc32c

_MASK_DELTA = 0xA282EAD8


def _native_crc32c_extend() -> Optional[Callable[..., int]]:
  """The C `crc32c_extend` that google_crc32c wraps, for any buffer.

  `google_crc32c.extend` takes only immutable bytes, so checksumming a reused
  buffer (an mmap, a bytearray) through it costs a copy of every chunk.
  ctypes finds the same C function among the extension module's
  dependencies. None where it cannot (the pure-Python google_crc32c, or a
  build that hides the symbol); `crc32c` then copies.
  """
  try:
    from google_crc32c import _crc32c  # pylint: disable=g-import-not-at-top

    function = ctypes.CDLL(_crc32c.__file__).crc32c_extend
  except (ImportError, OSError, AttributeError):
    return None
  function.restype = ctypes.c_uint32
  function.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
  return function


_NATIVE_CRC32C_EXTEND = _native_crc32c_extend()


def crc32c(data, crc: int = 0) -> int:
  """Extends a crc32c (not masked) over `data`, any bytes-like object."""
  if isinstance(data, bytes):
    return google_crc32c.extend(crc, data)
  view = memoryview(data).cast("B")
  if not view:
    return crc
  if _NATIVE_CRC32C_EXTEND is None or view.readonly:
    return google_crc32c.extend(crc, view.tobytes())
  # ctypes releases the GIL for the call, so other threads keep running.
  return _NATIVE_CRC32C_EXTEND(
    crc, (ctypes.c_char * len(view)).from_buffer(view), len(view)
  )


def mask(crc: int) -> int:
  """TensorFlow's masked crc (`tsl/lib/hash/crc32c.h: Mask`)."""
  return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask(masked: int) -> int:
  rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
  return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF
