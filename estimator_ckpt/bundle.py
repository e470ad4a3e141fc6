"""Reading and writing TensorFlow's tensor-bundle checkpoint files in Python.

Not public API: `inspection`, `conversion` and `verification` build on it. A
checkpoint with prefix `P` is

  P.index                      a LevelDB-format table: key -> entry proto
  P.data-0000i-of-0000N        the tensors' bytes, concatenated

(`tensorflow/core/util/tensor_bundle/tensor_bundle.{h,cc}`). This module
parses the `.index` itself, checking everything TensorFlow trusts: TF 2.15
aborts the whole process on an entry with a negative dimension or one that does
not parse (`F tensor_shape.cc`, `F checkpoint_reader.cc`), silently misses
entries when keys are unsorted, and notices a missing shard only when a tensor
from it is read. Every check here raises an `errors.Error` naming the file and
the key instead. Data bytes are never interpreted except to verify checksums
and to decode values on request, and TensorFlow is never imported (see
`protos`).

Format facts used here, with their sources:
- Table (`tsl/lib/io/{table_builder,block_builder,format}.cc`): blocks of
  prefix-compressed entries (varint32 shared, unshared, value length; key
  suffix; value), then uint32 restart offsets and their count; every block is
  followed by a type byte (0 = uncompressed) and the masked crc32c of
  contents + type. The index block maps the shortest separator after each data
  block to its handle (varint64 offset, size). The 48-byte footer holds the
  metaindex and index handles, zero-padded to 40 bytes, and the magic number.
  TensorFlow writes the index with no compression, 256 KiB blocks, restart
  interval 16 (data) and 1 (index), and flushes before an entry of at least
  two block sizes.
- Bundle (`tensor_bundle.cc`): key `""` holds a `BundleHeaderProto`; every
  other key a `BundleEntryProto`. A partitioned variable's key holds dtype,
  full shape and `slices` only; each slice is stored under
  `EncodeTensorNameSlice(key, slice)` (`saved_tensor_slice_util.cc`, an
  OrderedCode string starting with byte 0, so slice keys sort first).
- Checksums: an entry's `crc32c` is the masked crc32c of its bytes; for
  strings it covers each length as uint32 (uint64 above 4 GiB), the 4-byte
  masked crc of those lengths, then the bytes, although the file stores the
  lengths as varint64 (`WriteStringTensor`). Variants store per element
  varint64 length, bytes, and a running masked crc (`WriteVariantTensor`).
"""

import collections
import ctypes
import dataclasses
import os
import re
import struct
from typing import (Callable, Dict, Iterable, Iterator, List, Mapping,
                    Optional, Sequence, Tuple)

import google_crc32c
import numpy as np

from estimator_ckpt import errors
from estimator_ckpt import protos

HEADER_KEY = b""
# kTensorBundleVersion and kTensorBundleMinProducer in tensor_bundle.cc.
BUNDLE_VERSION = 1
_MIN_PRODUCER = 0

_FOOTER_SIZE = 48
_HANDLES_SIZE = 40  # 2 * BlockHandle::kMaxEncodedLength.
_MAGIC = 0xdb4775248b80fb57
_TRAILER_SIZE = 5
_NO_COMPRESSION = 0
_SNAPPY_COMPRESSION = 1
_BLOCK_SIZE = 262144
_DATA_RESTART_INTERVAL = 16
_INDEX_RESTART_INTERVAL = 1
_MASK_DELTA = 0xa282ead8
_UINT32 = struct.Struct("<I")

# Reads of tensor data go through buffers of this size, so memory does not grow
# with the checkpoint.
CHUNK_SIZE = 4 << 20


# Data types -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DType:
  """A `tensorflow.DataType` as stored in entries.

  Attributes:
    enum: The `DataType` enum value stored in `BundleEntryProto.dtype`.
    name: TensorFlow's name (`tf.dtypes.as_dtype(enum).name`).
    itemsize: Bytes per element; 0 for variable-length (string, variant).
    numpy_name: The numpy (or ml_dtypes) type `load_variable` returns.
  """
  enum: int
  name: str
  itemsize: int
  numpy_name: str

  @property
  def variable_length(self) -> bool:
    return self.itemsize == 0

  def numpy_dtype(self) -> np.dtype:
    if self.numpy_name in ("bfloat16", "float8_e5m2", "float8_e4m3fn", "int4",
                           "uint4"):
      import ml_dtypes  # pylint: disable=g-import-not-at-top
      return np.dtype(getattr(ml_dtypes, self.numpy_name))
    return np.dtype(self.numpy_name)


# tensorflow/core/framework/types.proto; quantized types read as their storage
# type, as `tf.train.load_checkpoint(...).get_tensor` returns them.
DTYPES: Mapping[int, DType] = {
    d.enum: d for d in (
        DType(1, "float32", 4, "float32"),
        DType(2, "float64", 8, "float64"),
        DType(3, "int32", 4, "int32"),
        DType(4, "uint8", 1, "uint8"),
        DType(5, "int16", 2, "int16"),
        DType(6, "int8", 1, "int8"),
        DType(7, "string", 0, "object"),
        DType(8, "complex64", 8, "complex64"),
        DType(9, "int64", 8, "int64"),
        DType(10, "bool", 1, "bool"),
        DType(11, "qint8", 1, "int8"),
        DType(12, "quint8", 1, "uint8"),
        DType(13, "qint32", 4, "int32"),
        DType(14, "bfloat16", 2, "bfloat16"),
        DType(15, "qint16", 2, "int16"),
        DType(16, "quint16", 2, "uint16"),
        DType(17, "uint16", 2, "uint16"),
        DType(18, "complex128", 16, "complex128"),
        DType(19, "float16", 2, "float16"),
        DType(21, "variant", 0, "object"),
        DType(22, "uint32", 4, "uint32"),
        DType(23, "uint64", 8, "uint64"),
        DType(24, "float8_e5m2", 1, "float8_e5m2"),
        DType(25, "float8_e4m3fn", 1, "float8_e4m3fn"),
        DType(29, "int4", 1, "int4"),
        DType(30, "uint4", 1, "uint4"),
    )
}
STRING = DTYPES[7]
VARIANT = DTYPES[21]


# Small codecs -----------------------------------------------------------------


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
      crc, (ctypes.c_char * len(view)).from_buffer(view), len(view))


def mask(crc: int) -> int:
  """TensorFlow's masked crc (`tsl/lib/hash/crc32c.h: Mask`)."""
  return ((((crc >> 15) | (crc << 17)) & 0xffffffff) + _MASK_DELTA) & 0xffffffff


def unmask(masked: int) -> int:
  rot = (masked - _MASK_DELTA) & 0xffffffff
  return ((rot >> 17) | (rot << 15)) & 0xffffffff


def encode_varint(value: int) -> bytes:
  """LevelDB/protobuf varint encoding of a non-negative int."""
  out = bytearray()
  while value >= 0x80:
    out.append((value & 0x7f) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _get_varint(data: bytes, pos: int, limit: int,
                max_bits: int = 64) -> Tuple[int, int]:
  """Decodes a varint at `pos`; raises ValueError past `limit` or `max_bits`."""
  result = 0
  shift = 0
  while pos < limit and shift < max_bits:
    byte = data[pos]
    pos += 1
    result |= (byte & 0x7f) << shift
    if byte < 0x80:
      return result, pos
    shift += 7
  raise ValueError("bad varint")


def data_filename(prefix: str, shard_id: int, num_shards: int) -> str:
  """`tensor_bundle/naming.cc: DataFilename`."""
  return f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}"


def index_filename(prefix: str) -> str:
  return prefix + ".index"


# Tensor slices and their keys (OrderedCode) ---------------------------------


@dataclasses.dataclass(frozen=True)
class TensorSlice:
  """A hyper-rectangle of a tensor: `(start, length)` per dimension.

  A length of -1 means the whole dimension (TensorFlow's `kFullExtent`), which
  is how `TensorSliceProto` stores unsliced dimensions.
  """
  extents: Tuple[Tuple[int, int], ...]

  @classmethod
  def from_proto(cls, proto) -> "TensorSlice":
    return cls(tuple(
        (extent.start, extent.length if extent.HasField("length") else -1)
        for extent in proto.extent))

  def to_proto(self, proto) -> None:
    """Fills a `TensorSliceProto` as `TensorSlice::AsProto` does."""
    for start, length in self.extents:
      extent = proto.extent.add()
      if length >= 0:
        extent.start = start
        extent.length = length

  def bounds(self, shape: Sequence[int]) -> List[Tuple[int, int]]:
    """`[start, end)` per dimension within a tensor of `shape`."""
    return [(0, dim) if length < 0 else (start, start + length)
            for (start, length), dim in zip(self.extents, shape)]

  def shape(self, full_shape: Sequence[int]) -> Tuple[int, ...]:
    return tuple(end - start for start, end in self.bounds(full_shape))

  def is_full(self, full_shape: Sequence[int]) -> bool:
    return self.shape(full_shape) == tuple(full_shape)

  def __str__(self) -> str:
    """TensorFlow's `TensorSlice::DebugString` form, e.g. `0,2:-`."""
    return ":".join("-" if length < 0 else f"{start},{length}"
                    for start, length in self.extents)


def _write_signed_num_increasing(value: int) -> bytes:
  """`OrderedCode::WriteSignedNumIncreasing` (ordered_code.cc)."""
  x = ~value if value < 0 else value
  if x < 64:
    return bytes([(0x80 ^ value) & 0xff])
  bits = x.bit_length() + 1  # Value bits plus the sign bit.
  length = (bits + 6) // 7  # n bytes hold values of 7n - 1 bits.
  raw = (value & ((1 << 80) - 1)).to_bytes(10, "big")[10 - length:]
  header = bytearray(raw)
  # The sign bit followed by (length - 1) copies of it, then its opposite.
  header_bits = {
      2: (0xc0, 0), 3: (0xe0, 0), 4: (0xf0, 0), 5: (0xf8, 0), 6: (0xfc, 0),
      7: (0xfe, 0), 8: (0xff, 0), 9: (0xff, 0x80), 10: (0xff, 0xc0)
  }[length]
  header[0] ^= header_bits[0]
  header[1] ^= header_bits[1]
  return bytes(header)


def _read_signed_num_increasing(data: bytes, pos: int) -> Tuple[int, int]:
  """Inverse of `_write_signed_num_increasing`; raises ValueError."""
  if pos >= len(data):
    raise ValueError("truncated number")
  negative = not data[pos] & 0x80
  xor = 0xff if negative else 0
  first = data[pos] ^ xor
  if first != 0xff:
    length = 8 - (first ^ 0xff).bit_length()
  else:
    if pos + 2 > len(data):
      raise ValueError("truncated number")
    second = data[pos + 1] ^ xor
    if second < 0x80:
      length = 8
    elif second < 0xc0:
      length = 9
    elif second == 0xc0 and pos + 2 < len(data) and data[pos + 2] ^ xor < 0x80:
      length = 10
    else:
      raise ValueError("number too long")
  if pos + length > len(data):
    raise ValueError("truncated number")
  raw = int.from_bytes(data[pos:pos + length], "big")
  bits = 8 * length
  # Clear the header: sign bit, length bits and the delimiter bit.
  value_bits = 7 * length - 1
  if negative:
    raw ^= (1 << bits) - 1
    value = -(raw & ((1 << value_bits) - 1)) - 1
  else:
    value = raw & ((1 << value_bits) - 1)
  return value, pos + length


_ORDERED_ESCAPES = {b"\x00": b"\x00\xff", b"\xff": b"\xff\x00"}
_ORDERED_SPECIAL = re.compile(b"[\x00\xff]")


def _write_ordered_string(value: bytes) -> bytes:
  """`OrderedCode::WriteString`: escapes 0x00 and 0xff, then `\\x00\\x01`."""
  return _ORDERED_SPECIAL.sub(lambda m: _ORDERED_ESCAPES[m.group()],
                              value) + b"\x00\x01"


def _read_ordered_string(data: bytes, pos: int) -> Tuple[bytes, int]:
  out = bytearray()
  while pos + 1 < len(data):
    byte = data[pos]
    if byte == 0x00:
      follower = data[pos + 1]
      if follower == 0x01:
        return bytes(out), pos + 2
      if follower != 0xff:
        raise ValueError("bad escape")
      out.append(0x00)
      pos += 2
    elif byte == 0xff:
      if data[pos + 1] != 0x00:
        raise ValueError("bad escape")
      out.append(0xff)
      pos += 2
    else:
      out.append(byte)
      pos += 1
  raise ValueError("unterminated string")


def _write_num_increasing(value: int) -> bytes:
  payload = value.to_bytes((value.bit_length() + 7) // 8, "big")
  return bytes([len(payload)]) + payload


def _read_num_increasing(data: bytes, pos: int) -> Tuple[int, int]:
  if pos >= len(data) or data[pos] > 8 or pos + 1 + data[pos] > len(data):
    raise ValueError("bad number")
  end = pos + 1 + data[pos]
  return int.from_bytes(data[pos + 1:end], "big"), end


def slice_key(key: bytes, tensor_slice: TensorSlice) -> bytes:
  """The key of one slice of a partitioned tensor stored under `key`.

  `saved_tensor_slice_util.cc: EncodeTensorNameSlice`: OrderedCode of 0, the
  name, the rank, then start and length (-1 for a full dimension) per
  dimension.
  """
  parts = [_write_num_increasing(0), _write_ordered_string(key),
           _write_num_increasing(len(tensor_slice.extents))]
  for start, length in tensor_slice.extents:
    parts.append(_write_signed_num_increasing(start))
    parts.append(_write_signed_num_increasing(length))
  return b"".join(parts)


def parse_slice_key(key: bytes) -> Tuple[bytes, TensorSlice]:
  """Inverse of `slice_key`; raises ValueError on a malformed key."""
  number, pos = _read_num_increasing(key, 0)
  if number != 0:
    raise ValueError("slice keys start with 0")
  name, pos = _read_ordered_string(key, pos)
  rank, pos = _read_num_increasing(key, pos)
  if not 0 < rank < 2**31:
    raise ValueError("bad rank")
  extents = []
  for _ in range(rank):
    start, pos = _read_signed_num_increasing(key, pos)
    length, pos = _read_signed_num_increasing(key, pos)
    extents.append((start, length) if length >= 0 else (0, -1))
  if pos != len(key):
    raise ValueError("trailing bytes")
  return name, TensorSlice(tuple(extents))


def is_slice_key(key: bytes) -> bool:
  return key[:1] == b"\x00"


def key_text(key: bytes) -> str:
  """A key for messages: the name, or `name[slice]` for a slice key."""
  if is_slice_key(key):
    try:
      name, tensor_slice = parse_slice_key(key)
      return f"{name.decode('utf-8', 'backslashreplace')}[{tensor_slice}]"
    except ValueError:
      return repr(key)
  return key.decode("utf-8", "backslashreplace")


# The index table --------------------------------------------------------------


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
    self._buffer += encode_varint(shared)
    self._buffer += encode_varint(len(key) - shared)
    self._buffer += encode_varint(len(value))
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
  if byte < 0xff and byte + 1 < limit[common]:
    return start[:common] + bytes([byte + 1])
  return start


def _short_successor(key: bytes) -> bytes:
  """`FindShortSuccessor` of tsl/lib/io/table_builder.cc."""
  for i, byte in enumerate(key):
    if byte != 0xff:
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
    handle = encode_varint(len(out)) + encode_varint(len(raw))
    out.extend(raw)
    out.append(_NO_COMPRESSION)
    out.extend(_UINT32.pack(mask(crc32c(raw + bytes([_NO_COMPRESSION])))))
    block.reset()
    return handle

  def flush() -> Optional[bytes]:
    return None if data_block.empty() else write_block(data_block)

  for key, value in items:
    if last_key is not None:
      if key <= last_key:
        raise ValueError(f"table keys out of order: {key_text(key)!r} after "
                         f"{key_text(last_key)!r}")
      if len(key) + len(value) >= 2 * _BLOCK_SIZE and not data_block.empty():
        pending_handle = flush()
    if pending_handle is not None:
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
    index_block.add(_short_successor(last_key), pending_handle)
  index_handle = write_block(index_block)
  footer = (metaindex_handle + index_handle).ljust(_HANDLES_SIZE, b"\x00")
  footer += _UINT32.pack(_MAGIC & 0xffffffff) + _UINT32.pack(_MAGIC >> 32)
  out.extend(footer)
  return bytes(out)


def _corrupt(path: str, detail: str) -> errors.CorruptCheckpointError:
  return errors.CorruptCheckpointError(
      f"`{path}` is not a valid checkpoint index: {detail}. The file is "
      "damaged or incomplete (a crash during save?); restore it from a backup "
      "or use an earlier checkpoint.")


def _read_block(path: str, data: bytes, handle: Tuple[int, int],
                what: str) -> bytes:
  offset, size = handle
  if offset + size + _TRAILER_SIZE > len(data) - _FOOTER_SIZE:
    raise _corrupt(path, f"the {what} at offset {offset} ({size} bytes) runs "
                   f"past the end of the {len(data)}-byte file")
  contents = data[offset:offset + size]
  block_type = data[offset + size]
  (stored,) = _UINT32.unpack_from(data, offset + size + 1)
  if unmask(stored) != crc32c(data[offset:offset + size + 1]):
    raise _corrupt(path, f"the {what} at offset {offset} fails its checksum")
  if block_type == _SNAPPY_COMPRESSION:
    raise errors.IncompatibleCheckpointError(
        f"`{path}` uses Snappy-compressed blocks (written by TensorFlow 1.1 "
        "or older), which this tool does not read. Re-save it with a newer "
        "TensorFlow.")
  if block_type != _NO_COMPRESSION:
    raise _corrupt(path, f"the {what} at offset {offset} has unknown block "
                   f"type {block_type}")
  return contents


def _block_entries(path: str, block: bytes,
                   what: str) -> List[Tuple[bytes, bytes]]:
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
      shared, pos = _get_varint(block, pos, limit, 32)
      unshared, pos = _get_varint(block, pos, limit, 32)
      value_length, pos = _get_varint(block, pos, limit, 32)
      if shared > len(key) or pos + unshared + value_length > limit:
        raise ValueError("entry out of bounds")
      if shared == 0:
        restart_points.add(start)
      key = key[:shared] + block[pos:pos + unshared]
      pos += unshared
      entries.append((key, block[pos:pos + value_length]))
      pos += value_length
  except ValueError:
    raise _corrupt(path, f"the {what} has a malformed entry at byte {pos}"
                   ) from None
  if entries and (restarts[0] != 0 or
                  any(r not in restart_points for r in restarts) or
                  list(restarts) != sorted(set(restarts))):
    raise _corrupt(path, f"the {what} has restart points that do not start "
                   "entries")
  return entries


def _decode_handle(path: str, value: bytes, what: str) -> Tuple[int, int]:
  try:
    offset, pos = _get_varint(value, 0, len(value))
    size, pos = _get_varint(value, pos, len(value))
  except ValueError:
    raise _corrupt(path, f"the {what} has a malformed block handle") from None
  if pos != len(value):
    raise _corrupt(path, f"the {what} has a malformed block handle")
  return offset, size


def decode_table(path: str, data: bytes) -> List[Tuple[bytes, bytes]]:
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
    raise _corrupt(path, f"it is {len(data)} bytes long, shorter than the "
                   f"{_FOOTER_SIZE}-byte table footer (empty or truncated)")
  footer = data[-_FOOTER_SIZE:]
  magic_lo, magic_hi = struct.unpack_from("<II", footer, _HANDLES_SIZE)
  if (magic_hi << 32) | magic_lo != _MAGIC:
    raise _corrupt(path, "its footer lacks the table magic number (truncated, "
                   "or not an index file)")
  try:
    meta_offset, pos = _get_varint(footer, 0, _HANDLES_SIZE)
    meta_size, pos = _get_varint(footer, pos, _HANDLES_SIZE)
    index_offset, pos = _get_varint(footer, pos, _HANDLES_SIZE)
    index_size, pos = _get_varint(footer, pos, _HANDLES_SIZE)
  except ValueError:
    raise _corrupt(path, "its footer has malformed block handles") from None
  # TensorFlow never reads the (empty) metaindex block; check it still fits.
  if meta_offset + meta_size + _TRAILER_SIZE > len(data) - _FOOTER_SIZE:
    raise _corrupt(path, "its metaindex handle points past the end")
  index = _block_entries(
      path, _read_block(path, data, (index_offset, index_size),
                        "index block"), "index block")
  items: List[Tuple[bytes, bytes]] = []
  previous_separator = None
  for block_number, (separator, handle_bytes) in enumerate(index):
    what = f"data block {block_number}"
    handle = _decode_handle(path, handle_bytes, what)
    block_items = _block_entries(path, _read_block(path, data, handle, what),
                                 what)
    if not block_items:
      raise _corrupt(path, f"{what} is empty")
    for key, value in block_items:
      if items and key == items[-1][0]:
        raise _corrupt(path, f"key `{key_text(key)}` appears twice "
                       "(TensorFlow would silently use one of them)")
      if items and key < items[-1][0]:
        raise _corrupt(path, f"key `{key_text(key)}` comes after "
                       f"`{key_text(items[-1][0])}`, out of order "
                       "(TensorFlow would silently miss entries)")
      items.append((key, value))
    if (block_items[-1][0] > separator or
        (previous_separator is not None and
         block_items[0][0] <= previous_separator)):
      raise _corrupt(path, f"the index entry of {what} does not bracket its "
                     "keys (TensorFlow would miss entries)")
    previous_separator = separator
  return items


# Bundles ----------------------------------------------------------------------


@dataclasses.dataclass
class Bundle:
  """A checkpoint's index, checked against its data files.

  Attributes:
    prefix: The checkpoint prefix (no `.index`).
    header: Its `BundleHeaderProto`.
    entries: Every entry but the header, in key order (slice keys first).
    shard_sizes: Size in bytes of each data file.
  """
  prefix: str
  header: protos.BundleHeaderProto
  entries: Dict[bytes, protos.BundleEntryProto]
  shard_sizes: Tuple[int, ...]

  @property
  def index_path(self) -> str:
    return index_filename(self.prefix)

  @property
  def num_shards(self) -> int:
    return self.header.num_shards

  def data_path(self, shard_id: int) -> str:
    return data_filename(self.prefix, shard_id, self.header.num_shards)

  def data_paths(self) -> List[str]:
    return [self.data_path(i) for i in range(self.header.num_shards)]

  def tensor_keys(self) -> List[bytes]:
    """Keys of whole tensors and of partitioned ones (not their slices)."""
    return [key for key in self.entries if not is_slice_key(key)]

  def slices(self, key: bytes) -> List[Tuple[TensorSlice, bytes]]:
    """`(slice, slice key)` of a partitioned tensor; [] for a whole one."""
    return [(s, slice_key(key, s)) for s in map(TensorSlice.from_proto,
                                                self.entries[key].slices)]

  def data_entries(self) -> Iterator[Tuple[bytes, protos.BundleEntryProto]]:
    """Entries that own bytes in a data file (whole tensors and slices)."""
    for key, entry in self.entries.items():
      if not entry.slices:
        yield key, entry


def shape_of(entry: protos.BundleEntryProto) -> Tuple[int, ...]:
  return tuple(dim.size for dim in entry.shape.dim)


def dtype_of(entry: protos.BundleEntryProto) -> DType:
  return DTYPES[entry.dtype]


def num_elements(shape: Sequence[int]) -> int:
  count = 1
  for dim in shape:
    count *= dim
  return count


def _check_version(path: str, header: protos.BundleHeaderProto) -> None:
  """`versions.cc: CheckVersions` as BundleReader calls it."""
  version = header.version
  if (version.producer < _MIN_PRODUCER or
      version.min_consumer > BUNDLE_VERSION or
      BUNDLE_VERSION in version.bad_consumers):
    raise errors.IncompatibleCheckpointError(
        f"`{path}` has tensor-bundle version producer={version.producer} "
        f"min_consumer={version.min_consumer} bad_consumers="
        f"{list(version.bad_consumers)}, which version {BUNDLE_VERSION} "
        "readers (TensorFlow 2.15) cannot read. Use the TensorFlow that wrote "
        "it to re-save it.")


def _entry_problem(entry: protos.BundleEntryProto,
                   num_shards: int) -> Optional[str]:
  """What is wrong with an entry on its own, or None."""
  if entry.dtype not in DTYPES:
    return f"has unknown or unstorable dtype enum {entry.dtype}"
  if entry.shape.unknown_rank:
    return "has a shape of unknown rank"
  shape = shape_of(entry)
  if any(dim < 0 for dim in shape):
    return (f"has a negative dimension in shape {list(shape)} (TensorFlow "
            "aborts the process on this)")
  if num_elements(shape) >= 2**63:
    return f"has shape {list(shape)} with more than 2^63 elements"
  if entry.slices:
    return None
  if not 0 <= entry.shard_id < num_shards:
    return (f"points to data shard {entry.shard_id}, but the header says "
            f"there are {num_shards}")
  if entry.offset < 0 or entry.size < 0:
    return f"has a negative offset {entry.offset} or size {entry.size}"
  dtype = DTYPES[entry.dtype]
  count = num_elements(shape)
  if not dtype.variable_length and entry.size != count * dtype.itemsize:
    return (f"holds {entry.size} bytes, but a {dtype.name} tensor of shape "
            f"{list(shape)} has {count * dtype.itemsize}")
  if dtype.variable_length and count and entry.size < count + 4:
    return (f"holds {entry.size} bytes, too few for {count} {dtype.name} "
            "elements")
  return None


def _parse_entry(path: str, key: bytes,
                 value: bytes) -> protos.BundleEntryProto:
  entry = protos.BundleEntryProto()
  try:
    entry.ParseFromString(value)
  except Exception:  # pylint: disable=broad-except  (DecodeError and kin)
    raise errors.CorruptCheckpointError(
        f"The entry for `{key_text(key)}` in `{path}` does not parse as a "
        "BundleEntryProto (TensorFlow aborts the process on this). The index "
        "is damaged; restore it from a backup or use an earlier checkpoint."
    ) from None
  return entry


def _entry_error(path: str, key: bytes,
                 problem: str) -> errors.CorruptCheckpointError:
  return errors.CorruptCheckpointError(
      f"The entry for `{key_text(key)}` in `{path}` {problem}. The checkpoint "
      "is damaged or was assembled from different saves; restore it from a "
      "backup or use an earlier checkpoint.")


def _check_slices(path: str, key: bytes, entry: protos.BundleEntryProto,
                  entries: Mapping[bytes, protos.BundleEntryProto]
                  ) -> List[bytes]:
  """Checks a partitioned tensor's slices; returns their keys."""
  shape = shape_of(entry)
  keys = []
  for proto in entry.slices:
    tensor_slice = TensorSlice.from_proto(proto)
    if len(tensor_slice.extents) != len(shape):
      raise _entry_error(path, key, f"has slice `{tensor_slice}` of rank "
                         f"{len(tensor_slice.extents)} for shape "
                         f"{list(shape)}")
    for (start, length), dim in zip(tensor_slice.extents, shape):
      if length >= 0 and (start < 0 or start + length > dim):
        raise _entry_error(path, key, f"has slice `{tensor_slice}` outside "
                           f"shape {list(shape)}")
    if tensor_slice.is_full(shape):
      raise _entry_error(path, key, f"lists slice `{tensor_slice}`, which "
                         "is the whole tensor, but holds no data itself")
    child_key = slice_key(key, tensor_slice)
    child = entries.get(child_key)
    if child is None:
      raise _entry_error(path, key, f"lists slice `{tensor_slice}`, whose "
                         "entry is missing")
    if child.slices or child.dtype != entry.dtype or shape_of(
        child) != tensor_slice.shape(shape):
      raise _entry_error(path, child_key, f"does not match slice "
                         f"`{tensor_slice}` of its {DTYPES[entry.dtype].name} "
                         f"tensor of shape {list(shape)}")
    if child_key in keys:
      raise _entry_error(path, key, f"lists slice `{tensor_slice}` twice")
    keys.append(child_key)
  return keys


def read(prefix: str) -> Bundle:
  """Reads and checks a checkpoint's `.index` and the sizes of its data files.

  Reads only the index (small) and stats the data files; tensor bytes are
  checked by `check_data`.

  Args:
    prefix: A checkpoint prefix such as `model_dir/model.ckpt-100`.

  Returns:
    The `Bundle`.

  Raises:
    errors.CheckpointNotFoundError: There is no `prefix.index`.
    errors.CorruptCheckpointError: The index is damaged or inconsistent, or a
      data file is missing or shorter than its entries say.
    errors.IncompatibleCheckpointError: A format this reader does not
      support (big-endian, Snappy-compressed, newer version).
  """
  path = index_filename(prefix)
  try:
    with open(path, "rb") as f:
      data = f.read()
  except FileNotFoundError:
    raise errors.CheckpointNotFoundError(
        f"There is no checkpoint index `{path}`. Pass a model_dir or a "
        "checkpoint prefix such as `model_dir/model.ckpt-100` (without "
        "`.index` or `.data-*`).") from None
  except IsADirectoryError:
    raise errors.CheckpointNotFoundError(
        f"`{path}` is a directory, not a checkpoint index.") from None
  items = decode_table(path, data)
  if not items or items[0][0] != HEADER_KEY:
    raise errors.CorruptCheckpointError(
        f"`{path}` has no header entry (the empty key), so its shard count "
        "is unknown (TensorFlow would parse the first tensor's entry as the "
        "header). Restore it from a backup or use an earlier checkpoint.")
  header = protos.BundleHeaderProto()
  try:
    header.ParseFromString(items[0][1])
  except Exception:  # pylint: disable=broad-except
    raise errors.CorruptCheckpointError(
        f"The header entry of `{path}` does not parse as a "
        "BundleHeaderProto. Restore it from a backup or use an earlier "
        "checkpoint.") from None
  if header.num_shards < 1:
    raise errors.CorruptCheckpointError(
        f"The header of `{path}` says it has {header.num_shards} data shards; "
        "every checkpoint has at least 1. Restore it from a backup or use an "
        "earlier checkpoint.")
  if header.endianness != protos.LITTLE_ENDIAN:
    raise errors.IncompatibleCheckpointError(
        f"`{path}` was written on a big-endian machine; this tool reads only "
        "little-endian checkpoints. Convert it with TensorFlow on that "
        "machine.")
  _check_version(path, header)

  entries = {}
  for key, value in items[1:]:
    entry = _parse_entry(path, key, value)
    problem = _entry_problem(entry, header.num_shards)
    if problem:
      raise _entry_error(path, key, problem)
    if is_slice_key(key) and entry.slices:
      raise _entry_error(path, key, "is a slice but lists slices itself")
    entries[key] = entry

  listed = set()
  for key, entry in entries.items():
    if is_slice_key(key):
      try:
        parse_slice_key(key)
      except ValueError:
        raise _entry_error(path, key, "has a malformed slice key") from None
    elif entry.slices:
      listed.update(_check_slices(path, key, entry, entries))
  orphans = [key for key in entries if is_slice_key(key) and key not in listed]
  if orphans:
    raise _entry_error(path, orphans[0], "is a slice that no tensor lists")

  shard_sizes = _shard_sizes(prefix, header.num_shards, entries)
  return Bundle(prefix, header, entries, shard_sizes)


def _shard_sizes(prefix: str, num_shards: int,
                 entries: Mapping[bytes, protos.BundleEntryProto]
                 ) -> Tuple[int, ...]:
  """Stats every data file and checks each entry fits in its file."""
  sizes = []
  for shard_id in range(num_shards):
    path = data_filename(prefix, shard_id, num_shards)
    try:
      sizes.append(os.stat(path).st_size)
    except FileNotFoundError:
      owners = [key_text(k) for k, e in entries.items()
                if not e.slices and e.shard_id == shard_id]
      present = sorted(
          name for name in os.listdir(os.path.dirname(prefix) or ".")
          if name.startswith(os.path.basename(prefix) + ".data-"))
      found = (f" The directory has {errors.format_names(present)}: the "
               f"header's shard count ({num_shards}) may be wrong."
               if present else "")
      raise errors.CorruptCheckpointError(
          f"Data file `{path}` of checkpoint `{prefix}` is missing; it holds "
          f"{errors.format_names(owners) if owners else 'no tensors'}.{found}"
          " Copy the complete checkpoint (its `.index` and every "
          "`.data-*-of-*` file).") from None
  for key, entry in entries.items():
    if entry.slices:
      continue
    end = entry.offset + entry.size
    if end > sizes[entry.shard_id]:
      path = data_filename(prefix, entry.shard_id, num_shards)
      raise errors.CorruptCheckpointError(
          f"`{key_text(key)}` needs bytes [{entry.offset}, {end}) of "
          f"`{path}`, which has only {sizes[entry.shard_id]} bytes: the data "
          "file is truncated or from a different save than the index. "
          "Restore the checkpoint from a backup or use an earlier one.")
  return tuple(sizes)


def encode_index(header: protos.BundleHeaderProto,
                 entries: Iterable[Tuple[bytes, protos.BundleEntryProto]]
                 ) -> bytes:
  """The `.index` bytes for a header and entries (sorted here).

  Raises:
    ValueError: Duplicate keys, or the empty (header) key among entries.
  """
  items = sorted((key, entry.SerializeToString()) for key, entry in entries)
  for (key, _), (next_key, _) in zip(items, items[1:]):
    if key == next_key:
      raise ValueError(f"duplicate checkpoint key {key_text(key)!r}")
  if items and items[0][0] == HEADER_KEY:
    raise ValueError("the empty key is reserved for the header")
  return encode_table([(HEADER_KEY, header.SerializeToString())] + items)


# Tensor bytes -----------------------------------------------------------------


class Checksummer:
  """Computes an entry's checksum from its bytes, fed in order.

  Follows `tensor_bundle.cc`: plain crc32c for fixed-size types; for strings
  the lengths as uint32/uint64, the stored length checksum (checked too), then
  the bytes; for variants per element the uint64 length, the bytes and the
  stored running checksum (checked too).
  """

  def __init__(self, entry: protos.BundleEntryProto):
    self._entry = entry
    self._dtype = dtype_of(entry)
    self._count = num_elements(shape_of(entry))
    self._crc = 0
    self._seen = 0
    self._buffer = bytearray() if self._dtype.variable_length else None
    self._string_body = False

  def update(self, chunk: bytes) -> None:
    self._seen += len(chunk)
    if self._buffer is None or self._string_body:
      self._crc = crc32c(chunk, self._crc)
    else:
      self._buffer += chunk
      if self._dtype is STRING:
        self._try_string_header()

  def _try_string_header(self) -> None:
    """Once the lengths and their checksum are buffered, checksum them."""
    pos = 0
    lengths = bytearray()
    try:
      for _ in range(self._count):
        length, pos = _get_varint(self._buffer, pos, len(self._buffer))
        lengths += (_UINT32.pack(length) if length <= 0xffffffff else
                    struct.pack("<Q", length))
    except ValueError:
      if len(self._buffer) >= 10 * self._count + 4:
        raise ValueError("string lengths do not parse") from None
      return  # Need more bytes.
    if pos + 4 > len(self._buffer):
      return
    crc = crc32c(lengths)
    (stored,) = _UINT32.unpack_from(self._buffer, pos)
    if unmask(stored) != crc:
      raise ValueError("the string length checksum does not match")
    # The checksum covers the stored length checksum and the string bytes.
    self._crc = crc32c(self._buffer[pos:], crc)
    self._string_body = True
    self._buffer = None

  def problem(self) -> Optional[str]:
    """After all bytes: None if the checksum matches, else what is wrong."""
    try:
      if self._dtype is VARIANT:
        self._crc = _variant_crc(bytes(self._buffer), self._count)
      elif self._dtype is STRING and not self._string_body and self._count:
        raise ValueError("the string lengths are truncated")
    except ValueError as e:
      return str(e)
    if self._dtype is STRING and not self._count and self._entry.size == 0:
      return None
    if self._seen != self._entry.size:
      return f"read {self._seen} of {self._entry.size} bytes"
    if mask(self._crc) != self._entry.crc32c:
      return (f"checksum mismatch: stored {unmask(self._entry.crc32c):08x}, "
              f"computed {self._crc:08x}")
    return None


def _variant_crc(data: bytes, count: int) -> int:
  crc = 0
  pos = 0
  for _ in range(count):
    length, after = _get_varint(data, pos, len(data))
    crc = crc32c(struct.pack("<Q", length), crc)
    if after + length + 4 > len(data):
      raise ValueError("a variant element runs past the entry")
    crc = crc32c(data[after:after + length], crc)
    (stored,) = _UINT32.unpack_from(data, after + length)
    if unmask(stored) != crc:
      raise ValueError("a variant element's checksum does not match")
    crc = crc32c(data[after + length:after + length + 4], crc)
    pos = after + length + 4
  return crc


def data_error(bundle: Bundle, key: bytes, entry: protos.BundleEntryProto,
               problem: str) -> errors.CorruptCheckpointError:
  path = bundle.data_path(entry.shard_id)
  return errors.CorruptCheckpointError(
      f"`{key_text(key)}` in `{path}` (bytes [{entry.offset}, "
      f"{entry.offset + entry.size})) is damaged: {problem}. The data file "
      "is corrupt or from a different save than the index; restore the "
      "checkpoint from a backup or use an earlier one.")


def read_entry_bytes(bundle: Bundle, key: bytes,
                     entry: protos.BundleEntryProto) -> bytes:
  """An entry's bytes, checksum verified.

  Raises:
    errors.CorruptCheckpointError: The bytes fail their checksum.
  """
  with open(bundle.data_path(entry.shard_id), "rb") as f:
    f.seek(entry.offset)
    data = f.read(entry.size)
  checksummer = Checksummer(entry)
  try:
    checksummer.update(data)
    problem = checksummer.problem()
  except ValueError as e:
    problem = str(e)
  if problem:
    raise data_error(bundle, key, entry, problem)
  return data


def decode_value(entry: protos.BundleEntryProto, data: bytes) -> np.ndarray:
  """An entry's value from its (checked) bytes.

  Strings come back as an object array of `bytes`, as TensorFlow's
  `CheckpointReader.get_tensor` returns them; variants as an object array of
  serialized `VariantTensorDataProto`s (decoding them needs TensorFlow).
  """
  dtype = dtype_of(entry)
  shape = shape_of(entry)
  count = num_elements(shape)
  if not dtype.variable_length:
    return np.frombuffer(bytearray(data), dtype=dtype.numpy_dtype()).reshape(
        shape)
  values = np.empty(count, dtype=object)
  pos = 0
  if dtype is STRING:
    if count == 0:
      return values.reshape(shape)
    lengths = []
    for _ in range(count):
      length, pos = _get_varint(data, pos, len(data))
      lengths.append(length)
    pos += 4
    for i, length in enumerate(lengths):
      values[i] = bytes(data[pos:pos + length])
      pos += length
  else:
    for i in range(count):
      length, pos = _get_varint(data, pos, len(data))
      values[i] = bytes(data[pos:pos + length])
      pos += length + 4
  return values.reshape(shape)


def encode_strings(values: Sequence[bytes]) -> Tuple[bytes, int]:
  """Encodes a string tensor as `WriteStringTensor` does.

  Returns:
    The bytes to store and the entry's (masked) `crc32c`.
  """
  lengths = b"".join(encode_varint(len(v)) for v in values)
  crc = crc32c(b"".join(
      _UINT32.pack(len(v)) if len(v) <= 0xffffffff else
      struct.pack("<Q", len(v)) for v in values))
  length_checksum = _UINT32.pack(mask(crc))
  crc = crc32c(length_checksum, crc)
  for value in values:
    crc = crc32c(value, crc)
  return lengths + length_checksum + b"".join(values), mask(crc)


@dataclasses.dataclass(frozen=True)
class DataRange:
  """Bytes of one data file that one or more entries own."""
  offset: int
  size: int
  key: bytes
  entry: protos.BundleEntryProto


def data_ranges(bundle: Bundle, shard_id: int,
                keys: Optional[Iterable[bytes]] = None) -> List[DataRange]:
  """The distinct byte ranges of a shard's entries, by offset.

  Args:
    bundle: The checkpoint.
    shard_id: Which data file.
    keys: Data-owning keys to include (default: all). Entries sharing the
      same bytes (an alias) are checked once.
  """
  selected = bundle.data_entries() if keys is None else (
      (key, bundle.entries[key]) for key in keys)
  ranges = {}
  for key, entry in selected:
    if entry.shard_id == shard_id:
      ranges.setdefault((entry.offset, entry.size, entry.crc32c),
                        DataRange(entry.offset, entry.size, key, entry))
  return sorted(ranges.values(), key=lambda r: (r.offset, r.size))


class StreamChecker:
  """Verifies byte ranges of one data file from its bytes, fed in file order.

  `update` takes consecutive pieces of the file (increasing offsets; gaps
  only where no range lies), `finish` lists what is damaged. Ranges may
  overlap. A copy uses this to verify the very bytes it writes, reading the
  source once.
  """

  def __init__(self, bundle: Bundle, ranges: Sequence[DataRange]):
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
          checksummer.update(view[start - offset:stop - offset])
      except ValueError as e:
        self._fail(data_range, str(e))
        continue
      if range_end <= end:
        self._close(data_range, checksummer)
      else:
        active.append((data_range, checksummer))
    self._active = active

  def finish(self) -> List[str]:
    """After the last bytes (or the file's end): one message per damaged
    entry, naming file and key, by offset; ranges not fed in full count as
    truncated."""
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
        (data_range.offset, data_range.size,
         str(data_error(self._bundle, data_range.key, data_range.entry,
                        problem))))


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


def check_ranges(bundle: Bundle, shard_id: int, ranges: Sequence[DataRange],
                 on_bytes: Optional[Callable[[int], None]] = None,
                 path: Optional[str] = None) -> List[str]:
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
  # One reused, writable buffer: `crc32c` checksums it without a copy.
  buffer = memoryview(bytearray(CHUNK_SIZE))
  with open(path or bundle.data_path(shard_id), "rb", buffering=0) as f:
    for start, end in _spans(ranges):
      offset = start
      while offset < end:
        count = os.preadv(f.fileno(), [buffer[:min(end - offset, CHUNK_SIZE)]],
                          offset)
        if not count:
          break  # Truncated: `finish` reports the ranges not fed in full.
        checker.update(offset, buffer[:count])
        offset += count
        if on_bytes:
          on_bytes(count)
  return checker.finish()
