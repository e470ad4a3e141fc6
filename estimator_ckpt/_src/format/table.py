"""TensorFlow's table files (LevelDB format), as `.index` files use them.

`tsl/lib/io/{table_builder,block_builder,format}.cc`: blocks of
prefix-compressed entries (varint32 shared, unshared, value length; key
suffix; value), then uint32 restart offsets and their count; every block is
followed by a type byte (0 = uncompressed) and the masked crc32c of
contents + type. The index block maps the shortest separator after each data
block to its handle (varint64 offset, size). The 48-byte footer holds the
metaindex and index handles, zero-padded to 40 bytes, and the magic number.
TensorFlow writes the index with no compression, 256 KiB blocks, restart
interval 16 (data) and 1 (index), and flushes before an entry of at least two
block sizes.

The encoder is byte-identical to TensorFlow's; the decoder checks everything
TensorFlow trusts and raises `errors.CorruptCheckpointError` naming the file.
"""

import struct
from typing import Iterable, List, Optional, Tuple

from estimator_ckpt import errors
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.format import varint

_FOOTER_SIZE = 48
_HANDLES_SIZE = 40  # 2 * BlockHandle::kMaxEncodedLength.
_MAGIC = 0xDB4775248B80FB57
_TRAILER_SIZE = 5
_NO_COMPRESSION = 0
_SNAPPY_COMPRESSION = 1
_BLOCK_SIZE = 262144
_DATA_RESTART_INTERVAL = 16
_INDEX_RESTART_INTERVAL = 1
_UINT32 = struct.Struct("<I")


class _BlockBuilder:
  """`tsl/lib/io/block_builder.cc`."""

  def __init__(self, restart_interval: int):
    self._restart_interval = restart_interval
    self.reset()

  def reset(self) -> None:
    self._buffer = bytearray()
    self._restarts = [0]
    self._counter = 0
    self._last_key = b""

  def empty(self) -> bool:
    return not self._buffer

  def size_estimate(self) -> int:
    return len(self._buffer) + 4 * len(self._restarts) + 4

  def add(self, key: bytes, value: bytes) -> None:
    shared = 0
    if self._counter < self._restart_interval:
      limit = min(len(self._last_key), len(key))
      while shared < limit and self._last_key[shared] == key[shared]:
        shared += 1
    else:
      self._restarts.append(len(self._buffer))
      self._counter = 0
    self._buffer += varint.encode_varint(shared)
    self._buffer += varint.encode_varint(len(key) - shared)
    self._buffer += varint.encode_varint(len(value))
    self._buffer += key[shared:]
    self._buffer += value
    self._last_key = key
    self._counter += 1

  def finish(self) -> bytes:
    out = self._buffer + b"".join(_UINT32.pack(r) for r in self._restarts)
    out += _UINT32.pack(len(self._restarts))
    return bytes(out)


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
  """`FindShortestSeparator` of tsl/lib/io/table_builder.cc (bytewise)."""
  common = 0
  shortest = min(len(start), len(limit))
  while common < shortest and start[common] == limit[common]:
    common += 1
  if common >= shortest:
    return start
  byte = start[common]
  if byte < 0xFF and byte + 1 < limit[common]:
    return start[:common] + bytes([byte + 1])
  return start


def _short_successor(key: bytes) -> bytes:
  """`FindShortSuccessor` of tsl/lib/io/table_builder.cc."""
  for i, byte in enumerate(key):
    if byte != 0xFF:
      return key[:i] + bytes([byte + 1])
  return key


def encode_table(items: Iterable[Tuple[bytes, bytes]]) -> bytes:
  """Encodes sorted `(key, value)` pairs as TensorFlow's TableBuilder does.

  Args:
    items: Keys strictly increasing (bytewise).

  Returns:
    The bytes of the table file, identical to TensorFlow's for the same
    items.

  Raises:
    ValueError: Keys are not strictly increasing (a bug in the caller).
  """
  out = bytearray()
  data_block = _BlockBuilder(_DATA_RESTART_INTERVAL)
  index_block = _BlockBuilder(_INDEX_RESTART_INTERVAL)
  pending_handle: Optional[bytes] = None
  last_key: Optional[bytes] = None

  def write_block(block: _BlockBuilder) -> bytes:
    raw = block.finish()
    handle = varint.encode_varint(len(out)) + varint.encode_varint(len(raw))
    out.extend(raw)
    out.append(_NO_COMPRESSION)
    out.extend(
      _UINT32.pack(crc32c.mask(crc32c.crc32c(raw + bytes([_NO_COMPRESSION]))))
    )
    block.reset()
    return handle

  def flush() -> Optional[bytes]:
    return None if data_block.empty() else write_block(data_block)

  for key, value in items:
    if last_key is not None:
      if key <= last_key:
        raise ValueError(
          f"table keys out of order: {tensor_slice.key_text(key)!r} after "
          f"{tensor_slice.key_text(last_key)!r}"
        )
      if len(key) + len(value) >= 2 * _BLOCK_SIZE and not data_block.empty():
        pending_handle = flush()
    if pending_handle is not None:
      assert last_key is not None  # A block was flushed: it had keys.
      index_block.add(_shortest_separator(last_key, key), pending_handle)
      pending_handle = None
    last_key = key
    data_block.add(key, value)
    if data_block.size_estimate() >= _BLOCK_SIZE:
      pending_handle = flush()
  handle = flush()
  if handle is not None:
    pending_handle = handle
  metaindex_handle = write_block(_BlockBuilder(_DATA_RESTART_INTERVAL))
  if pending_handle is not None:
    assert last_key is not None
    index_block.add(_short_successor(last_key), pending_handle)
  index_handle = write_block(index_block)
  footer = (metaindex_handle + index_handle).ljust(_HANDLES_SIZE, b"\x00")
  footer += _UINT32.pack(_MAGIC & 0xFFFFFFFF) + _UINT32.pack(_MAGIC >> 32)
  out.extend(footer)
  return bytes(out)


def _corrupt(path: str, detail: str) -> errors.CorruptCheckpointError:
  return errors.CorruptCheckpointError(
    f"`{path}` is not a valid checkpoint index: {detail}. The file is "
    "damaged or incomplete (a crash during save?); restore it from a backup "
    "or use an earlier checkpoint."
  )


def _read_block(
  path: str, data: varint.BytesLike, handle: Tuple[int, int], what: str
) -> bytes:
  offset, size = handle
  if offset + size + _TRAILER_SIZE > len(data) - _FOOTER_SIZE:
    raise _corrupt(
      path,
      f"the {what} at offset {offset} ({size} bytes) runs "
      f"past the end of the {len(data)}-byte file",
    )
  contents = data[offset : offset + size]
  block_type = data[offset + size]
  (stored,) = _UINT32.unpack(data[offset + size + 1 : offset + size + 5])
  if crc32c.unmask(stored) != crc32c.crc32c(data[offset : offset + size + 1]):
    raise _corrupt(path, f"the {what} at offset {offset} fails its checksum")
  if block_type == _SNAPPY_COMPRESSION:
    raise errors.IncompatibleCheckpointError(
      f"`{path}` uses Snappy-compressed blocks (written by TensorFlow 1.1 "
      "or older), which this tool does not read. Re-save it with a newer "
      "TensorFlow."
    )
  if block_type != _NO_COMPRESSION:
    raise _corrupt(
      path, f"the {what} at offset {offset} has unknown block type {block_type}"
    )
  return bytes(contents)


def _block_entries(
  path: str, block: bytes, what: str
) -> List[Tuple[bytes, bytes]]:
  """Decodes a block, checking its restart points."""
  if len(block) < 4:
    raise _corrupt(path, f"the {what} is {len(block)} bytes, too short")
  (num_restarts,) = _UINT32.unpack_from(block, len(block) - 4)
  limit = len(block) - 4 - 4 * num_restarts
  if num_restarts == 0 or limit < 0:
    raise _corrupt(path, f"the {what} has a bad restart count {num_restarts}")
  restarts = struct.unpack_from(f"<{num_restarts}I", block, limit)
  entries = []
  restart_points = set()
  key = b""
  pos = 0
  try:
    while pos < limit:
      start = pos
      shared, pos = varint.decode_varint(block, pos, limit, 32)
      unshared, pos = varint.decode_varint(block, pos, limit, 32)
      value_length, pos = varint.decode_varint(block, pos, limit, 32)
      if shared > len(key) or pos + unshared + value_length > limit:
        raise ValueError("entry out of bounds")
      if shared == 0:
        restart_points.add(start)
      key = key[:shared] + block[pos : pos + unshared]
      pos += unshared
      entries.append((key, block[pos : pos + value_length]))
      pos += value_length
  except ValueError:
    raise _corrupt(
      path, f"the {what} has a malformed entry at byte {pos}"
    ) from None
  if entries and (
    restarts[0] != 0
    or any(r not in restart_points for r in restarts)
    or list(restarts) != sorted(set(restarts))
  ):
    raise _corrupt(
      path, f"the {what} has restart points that do not start entries"
    )
  return entries


def _decode_handle(path: str, value: bytes, what: str) -> Tuple[int, int]:
  try:
    offset, pos = varint.decode_varint(value, 0, len(value))
    size, pos = varint.decode_varint(value, pos, len(value))
  except ValueError:
    raise _corrupt(path, f"the {what} has a malformed block handle") from None
  if pos != len(value):
    raise _corrupt(path, f"the {what} has a malformed block handle")
  return offset, size


def decode_table(
  path: str, data: varint.BytesLike
) -> List[Tuple[bytes, bytes]]:
  """Decodes a table file, checking checksums, bounds and key order.

  Args:
    path: The file's path, for messages.
    data: Its bytes.

  Returns:
    `(key, value)` pairs in file order.

  Raises:
    errors.CorruptCheckpointError: Anything is off, including keys that are
      not strictly increasing (TensorFlow would silently miss entries) and
      index separators that do not bracket their blocks.
  """
  if len(data) < _FOOTER_SIZE:
    raise _corrupt(
      path,
      f"it is {len(data)} bytes long, shorter than the "
      f"{_FOOTER_SIZE}-byte table footer (empty or truncated)",
    )
  footer = data[-_FOOTER_SIZE:]
  magic_lo, magic_hi = struct.unpack_from("<II", footer, _HANDLES_SIZE)
  if (magic_hi << 32) | magic_lo != _MAGIC:
    raise _corrupt(
      path,
      "its footer lacks the table magic number (truncated, "
      "or not an index file)",
    )
  try:
    meta_offset, pos = varint.decode_varint(footer, 0, _HANDLES_SIZE)
    meta_size, pos = varint.decode_varint(footer, pos, _HANDLES_SIZE)
    index_offset, pos = varint.decode_varint(footer, pos, _HANDLES_SIZE)
    index_size, pos = varint.decode_varint(footer, pos, _HANDLES_SIZE)
  except ValueError:
    raise _corrupt(path, "its footer has malformed block handles") from None
  # TensorFlow never reads the (empty) metaindex block; check it still fits.
  if meta_offset + meta_size + _TRAILER_SIZE > len(data) - _FOOTER_SIZE:
    raise _corrupt(path, "its metaindex handle points past the end")
  index = _block_entries(
    path,
    _read_block(path, data, (index_offset, index_size), "index block"),
    "index block",
  )
  items: List[Tuple[bytes, bytes]] = []
  previous_separator = None
  for block_number, (separator, handle_bytes) in enumerate(index):
    what = f"data block {block_number}"
    handle = _decode_handle(path, handle_bytes, what)
    block_items = _block_entries(
      path, _read_block(path, data, handle, what), what
    )
    if not block_items:
      raise _corrupt(path, f"{what} is empty")
    for key, value in block_items:
      if items and key == items[-1][0]:
        raise _corrupt(
          path,
          f"key `{tensor_slice.key_text(key)}` appears twice "
          "(TensorFlow would silently use one of them)",
        )
      if items and key < items[-1][0]:
        raise _corrupt(
          path,
          f"key `{tensor_slice.key_text(key)}` comes after "
          f"`{tensor_slice.key_text(items[-1][0])}`, out of order "
          "(TensorFlow would silently miss entries)",
        )
      items.append((key, value))
    if block_items[-1][0] > separator or (
      previous_separator is not None and block_items[0][0] <= previous_separator
    ):
      raise _corrupt(
        path,
        f"the index entry of {what} does not bracket its "
        "keys (TensorFlow would miss entries)",
      )
    previous_separator = separator
  return items
