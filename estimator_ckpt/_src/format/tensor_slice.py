"""Tensor slices and the keys partitioned variables store them under.

A partitioned variable's entry lists its slices; each slice's bytes are stored
under `EncodeTensorNameSlice(key, slice)` (`saved_tensor_slice_util.cc`), an
OrderedCode string that starts with byte 0, so slice keys sort first.
"""

import dataclasses
import re
from typing import List, Sequence, Tuple


@dataclasses.dataclass(frozen=True)
class TensorSlice:
  """A hyper-rectangle of a tensor: `(start, length)` per dimension.

  A length of -1 means the whole dimension (TensorFlow's `kFullExtent`), which
  is how `TensorSliceProto` stores unsliced dimensions.
  """

  extents: Tuple[Tuple[int, int], ...]

  @classmethod
  def from_proto(cls, proto) -> "TensorSlice":
    return cls(
      tuple(
        (extent.start, extent.length if extent.HasField("length") else -1)
        for extent in proto.extent
      )
    )

  def to_proto(self, proto) -> None:
    """Fills a `TensorSliceProto` as `TensorSlice::AsProto` does."""
    for start, length in self.extents:
      extent = proto.extent.add()
      if length >= 0:
        extent.start = start
        extent.length = length

  def bounds(self, shape: Sequence[int]) -> List[Tuple[int, int]]:
    """`[start, end)` per dimension within a tensor of `shape`."""
    return [
      (0, dim) if length < 0 else (start, start + length)
      for (start, length), dim in zip(self.extents, shape)
    ]

  def shape(self, full_shape: Sequence[int]) -> Tuple[int, ...]:
    return tuple(end - start for start, end in self.bounds(full_shape))

  def is_full(self, full_shape: Sequence[int]) -> bool:
    return self.shape(full_shape) == tuple(full_shape)

  def __str__(self) -> str:
    """TensorFlow's `TensorSlice::DebugString` form, e.g. `0,2:-`."""
    return ":".join(
      "-" if length < 0 else f"{start},{length}"
      for start, length in self.extents
    )


def _write_signed_num_increasing(value: int) -> bytes:
  """`OrderedCode::WriteSignedNumIncreasing` (ordered_code.cc)."""
  x = ~value if value < 0 else value
  if x < 64:
    return bytes([(0x80 ^ value) & 0xFF])
  bits = x.bit_length() + 1  # Value bits plus the sign bit.
  length = (bits + 6) // 7  # n bytes hold values of 7n - 1 bits.
  raw = (value & ((1 << 80) - 1)).to_bytes(10, "big")[10 - length :]
  header = bytearray(raw)
  # The sign bit followed by (length - 1) copies of it, then its opposite.
  header_bits = {
    2: (0xC0, 0),
    3: (0xE0, 0),
    4: (0xF0, 0),
    5: (0xF8, 0),
    6: (0xFC, 0),
    7: (0xFE, 0),
    8: (0xFF, 0),
    9: (0xFF, 0x80),
    10: (0xFF, 0xC0),
  }[length]
  header[0] ^= header_bits[0]
  header[1] ^= header_bits[1]
  return bytes(header)


def _read_signed_num_increasing(data: bytes, pos: int) -> Tuple[int, int]:
  """Inverse of `_write_signed_num_increasing`; raises ValueError."""
  if pos >= len(data):
    raise ValueError("truncated number")
  negative = not data[pos] & 0x80
  xor = 0xFF if negative else 0
  first = data[pos] ^ xor
  if first != 0xFF:
    length = 8 - (first ^ 0xFF).bit_length()
  else:
    if pos + 2 > len(data):
      raise ValueError("truncated number")
    second = data[pos + 1] ^ xor
    if second < 0x80:
      length = 8
    elif second < 0xC0:
      length = 9
    elif second == 0xC0 and pos + 2 < len(data) and data[pos + 2] ^ xor < 0x80:
      length = 10
    else:
      raise ValueError("number too long")
  if pos + length > len(data):
    raise ValueError("truncated number")
  raw = int.from_bytes(data[pos : pos + length], "big")
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
  r"""`OrderedCode::WriteString`: escapes 0x00 and 0xff, then `\x00\x01`."""
  return (
    _ORDERED_SPECIAL.sub(lambda m: _ORDERED_ESCAPES[m.group()], value)
    + b"\x00\x01"
  )


def _read_ordered_string(data: bytes, pos: int) -> Tuple[bytes, int]:
  out = bytearray()
  while pos + 1 < len(data):
    byte = data[pos]
    if byte == 0x00:
      follower = data[pos + 1]
      if follower == 0x01:
        return bytes(out), pos + 2
      if follower != 0xFF:
        raise ValueError("bad escape")
      out.append(0x00)
      pos += 2
    elif byte == 0xFF:
      if data[pos + 1] != 0x00:
        raise ValueError("bad escape")
      out.append(0xFF)
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
  return int.from_bytes(data[pos + 1 : end], "big"), end


def slice_key(key: bytes, tensor_slice: TensorSlice) -> bytes:
  """The key of one slice of a partitioned tensor stored under `key`.

  `saved_tensor_slice_util.cc: EncodeTensorNameSlice`: OrderedCode of 0, the
  name, the rank, then start and length (-1 for a full dimension) per
  dimension.
  """
  parts = [
    _write_num_increasing(0),
    _write_ordered_string(key),
    _write_num_increasing(len(tensor_slice.extents)),
  ]
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
