"""Checksums of tensor bytes, checked as the bytes stream past.

Follows `tensor_bundle.cc`: an entry's `crc32c` is the masked crc32c of its
bytes; for strings it covers each length as uint32 (uint64 above 4 GiB), the
4-byte masked crc of those lengths, then the bytes, although the file stores
the lengths as varint64 (`WriteStringTensor`). Variants store per element
varint64 length, bytes, and a running masked crc (`WriteVariantTensor`).
`StreamChecker` checks a data file's ranges from the same buffers a copy
writes, so the checksummed bytes are the written bytes.
"""

import collections
import dataclasses
import os
import struct
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle as bundle_lib
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.format import varint
from estimator_ckpt._src.storage import base

_UINT32 = struct.Struct("<I")

# Reads of tensor data go through buffers of this size, so memory does not grow
# with the checkpoint.
CHUNK_SIZE = 4 << 20


class Checksummer:
  """Computes an entry's checksum from its bytes, fed in order.

  Follows `tensor_bundle.cc`: plain crc32c for fixed-size types; for strings
  the lengths as uint32/uint64, the stored length checksum (checked too), then
  the bytes; for variants per element the uint64 length, the bytes and the
  stored running checksum (checked too).
  """

  def __init__(self, entry: protos.BundleEntryProto):
    self._entry = entry
    self._dtype = bundle_lib.dtype_of(entry)
    self._count = bundle_lib.num_elements(bundle_lib.shape_of(entry))
    self._crc = 0
    self._seen = 0
    self._buffer: Optional[bytearray] = (
      bytearray() if self._dtype.variable_length else None
    )
    self._string_body = False

  def update(self, chunk: "bytes | bytearray | memoryview") -> None:
    self._seen += len(chunk)
    if self._buffer is None or self._string_body:
      self._crc = crc32c.crc32c(chunk, self._crc)
    else:
      self._buffer += chunk
      if self._dtype is dtypes.STRING:
        self._try_string_header()

  def _try_string_header(self) -> None:
    """Once the lengths and their checksum are buffered, checksum them."""
    buffer = self._buffer
    assert buffer is not None  # Strings buffer until their lengths parse.
    pos = 0
    lengths = bytearray()
    try:
      for _ in range(self._count):
        length, pos = varint.decode_varint(buffer, pos, len(buffer))
        lengths += (
          _UINT32.pack(length)
          if length <= 0xFFFFFFFF
          else struct.pack("<Q", length)
        )
    except ValueError:
      if len(buffer) >= 10 * self._count + 4:
        raise ValueError("string lengths do not parse") from None
      return  # Need more bytes.
    if pos + 4 > len(buffer):
      return
    crc = crc32c.crc32c(lengths)
    (stored,) = _UINT32.unpack_from(buffer, pos)
    if crc32c.unmask(stored) != crc:
      raise ValueError("the string length checksum does not match")
    # The checksum covers the stored length checksum and the string bytes.
    self._crc = crc32c.crc32c(buffer[pos:], crc)
    self._string_body = True
    self._buffer = None

  def problem(self) -> Optional[str]:
    """After all bytes: None if the checksum matches, else what is wrong."""
    try:
      if self._dtype is dtypes.VARIANT:
        self._crc = _variant_crc(bytes(self._buffer or b""), self._count)
      elif (
        self._dtype is dtypes.STRING and not self._string_body and self._count
      ):
        raise ValueError("the string lengths are truncated")
    except ValueError as e:
      return str(e)
    if (
      self._dtype is dtypes.STRING and not self._count and self._entry.size == 0
    ):
      return None
    if self._seen != self._entry.size:
      return f"read {self._seen} of {self._entry.size} bytes"
    if crc32c.mask(self._crc) != self._entry.crc32c:
      return (
        f"checksum mismatch: stored {crc32c.unmask(self._entry.crc32c):08x}, "
        f"computed {self._crc:08x}"
      )
    return None


def _variant_crc(data: bytes, count: int) -> int:
  crc = 0
  pos = 0
  for _ in range(count):
    length, after = varint.decode_varint(data, pos, len(data))
    crc = crc32c.crc32c(struct.pack("<Q", length), crc)
    if after + length + 4 > len(data):
      raise ValueError("a variant element runs past the entry")
    crc = crc32c.crc32c(data[after : after + length], crc)
    (stored,) = _UINT32.unpack_from(data, after + length)
    if crc32c.unmask(stored) != crc:
      raise ValueError("a variant element's checksum does not match")
    crc = crc32c.crc32c(data[after + length : after + length + 4], crc)
    pos = after + length + 4
  return crc


def data_error(
  bundle: bundle_lib.Bundle,
  key: bytes,
  entry: protos.BundleEntryProto,
  problem: str,
) -> errors.CorruptCheckpointError:
  path = bundle.data_path(entry.shard_id)
  return errors.CorruptCheckpointError(
    f"`{tensor_slice.key_text(key)}` in `{path}` (bytes [{entry.offset}, "
    f"{entry.offset + entry.size})) is damaged: {problem}. The data file "
    "is corrupt or from a different save than the index; restore the "
    "checkpoint from a backup or use an earlier one."
  )


@dataclasses.dataclass(frozen=True)
class DataRange:
  """Bytes of one data file that one or more entries own."""

  offset: int
  size: int
  key: bytes
  entry: protos.BundleEntryProto


def data_ranges(
  bundle: bundle_lib.Bundle,
  shard_id: int,
  keys: Optional[Iterable[bytes]] = None,
) -> List[DataRange]:
  """The distinct byte ranges of a shard's entries, by offset.

  Args:
    bundle: The checkpoint.
    shard_id: Which data file.
    keys: Data-owning keys to include (default: all). Entries sharing the
      same bytes (an alias) are checked once.
  """
  selected = (
    bundle.data_entries()
    if keys is None
    else ((key, bundle.entries[key]) for key in keys)
  )
  ranges: Dict[Tuple[int, int, int], DataRange] = {}
  for key, entry in selected:
    if entry.shard_id == shard_id:
      ranges.setdefault(
        (entry.offset, entry.size, entry.crc32c),
        DataRange(entry.offset, entry.size, key, entry),
      )
  return sorted(ranges.values(), key=lambda r: (r.offset, r.size))


class StreamChecker:
  """Verifies byte ranges of one data file from its bytes, fed in file order.

  `update` takes consecutive pieces of the file (increasing offsets; gaps
  only where no range lies), `finish` lists what is damaged. Ranges may
  overlap. A copy uses this to verify the very bytes it writes, reading the
  source once.
  """

  def __init__(self, bundle: bundle_lib.Bundle, ranges: Sequence[DataRange]):
    """`ranges`: from `data_ranges`, sorted by offset."""
    self._bundle = bundle
    self._pending = collections.deque(ranges)
    self._active: List[Tuple[DataRange, Checksummer]] = []
    self._problems: List[Tuple[int, int, str]] = []

  def update(self, offset: int, data) -> None:
    """Feeds the file's bytes `[offset, offset + len(data))`."""
    end = offset + len(data)
    while self._pending and self._pending[0].offset < end:
      data_range = self._pending.popleft()
      self._active.append((data_range, Checksummer(data_range.entry)))
    if not self._active:
      return
    view = memoryview(data)
    active = []
    for data_range, checksummer in self._active:
      range_end = data_range.offset + data_range.size
      start, stop = max(data_range.offset, offset), min(range_end, end)
      try:
        if stop > start:
          checksummer.update(view[start - offset : stop - offset])
      except ValueError as e:
        self._fail(data_range, str(e))
        continue
      if range_end <= end:
        self._close(data_range, checksummer)
      else:
        active.append((data_range, checksummer))
    self._active = active

  def finish(self) -> List[str]:
    """One message per damaged entry, after the last bytes (or file end).

    Messages name file and key, by offset; ranges not fed in full count as
    truncated.
    """
    self._active += [(r, Checksummer(r.entry)) for r in self._pending]
    self._pending.clear()
    for data_range, checksummer in self._active:
      self._close(data_range, checksummer)
    self._active = []
    return [message for _, _, message in sorted(self._problems)]

  def _close(self, data_range: DataRange, checksummer: Checksummer) -> None:
    problem = checksummer.problem()
    if problem:
      self._fail(data_range, problem)

  def _fail(self, data_range: DataRange, problem: str) -> None:
    self._problems.append(
      (
        data_range.offset,
        data_range.size,
        str(
          data_error(self._bundle, data_range.key, data_range.entry, problem)
        ),
      )
    )


def _spans(ranges: Sequence[DataRange]) -> List[Tuple[int, int]]:
  """The `[start, end)` spans that sorted `ranges` cover, merged."""
  spans: List[List[int]] = []
  for data_range in ranges:
    end = data_range.offset + data_range.size
    if spans and data_range.offset <= spans[-1][1]:
      spans[-1][1] = max(spans[-1][1], end)
    else:
      spans.append([data_range.offset, end])
  return [(start, end) for start, end in spans]


def check_ranges(
  bundle: bundle_lib.Bundle,
  shard_id: int,
  ranges: Sequence[DataRange],
  on_bytes: Optional[Callable[[int], None]] = None,
  path: Optional[str] = None,
) -> List[str]:
  """Verifies the checksums of byte ranges of one data file, streaming.

  Args:
    bundle: The checkpoint (for messages and the file path).
    shard_id: The data file.
    ranges: From `data_ranges`.
    on_bytes: Called with the number of bytes checked, for progress.
    path: Read this file instead of the shard's own path (same bytes).

  Returns:
    One message per damaged entry (empty if all match), naming file and key.
  """
  checker = StreamChecker(bundle, ranges)
  # One reused, writable buffer: `crc32c.crc32c` checksums it without a copy.
  buffer = memoryview(bytearray(CHUNK_SIZE))
  path = path or bundle.data_path(shard_id)
  try:
    with checkpoint_files.open_regular(path, "data file") as file:
      for start, end in _spans(ranges):
        offset = start
        while offset < end:
          wanted = min(end - offset, CHUNK_SIZE)
          if file.fd is not None:
            try:
              count = os.preadv(file.fd, [buffer[:wanted]], offset)
            except OSError as e:
              raise base.os_io_error(e, path) from None
            chunk = buffer[:count]
          else:  # A URL: bounded ranged reads.
            chunk = (
              memoryview(file.pread(min(wanted, file.size - offset), offset))
              if offset < file.size
              else memoryview(b"")
            )
            count = len(chunk)
          if not count:
            break  # Truncated: `finish` reports the ranges not fed in full.
          checker.update(offset, chunk)
          offset += count
          if on_bytes:
            on_bytes(count)
  except FileNotFoundError:
    raise errors.CorruptCheckpointError(
      f"Data file `{path}` of `{bundle.prefix}` disappeared while it was "
      "read. Is something else deleting the checkpoint?"
    ) from None
  return checker.finish()
