"""LevelDB/protobuf varints, as tables and string tensors encode lengths."""

from typing import Any, overload, Protocol, Tuple


class BytesLike(Protocol):
  """Bytes by position: `bytes`, a mapped file, a file read by range."""

  def __len__(self) -> int: ...

  @overload
  def __getitem__(self, index: int) -> int: ...

  @overload
  def __getitem__(self, index: slice) -> Any: ...


def encode_varint(value: int) -> bytes:
  """LevelDB/protobuf varint encoding of a non-negative int."""
  out = bytearray()
  while value >= 0x80:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def decode_varint(
  data: BytesLike, pos: int, limit: int, max_bits: int = 64
) -> Tuple[int, int]:
  """Decodes a varint at `pos`; raises ValueError past `limit` or `max_bits`."""
  result = 0
  shift = 0
  while pos < limit and shift < max_bits:
    byte = data[pos]
    pos += 1
    result |= (byte & 0x7F) << shift
    if byte < 0x80:
      return result, pos
    shift += 7
  raise ValueError("bad varint")
