"""LevelDB/protobuf varints, as tables and string tensors encode lengths."""

from typing import Tuple


def encode_varint(value: int) -> bytes:
  """LevelDB/protobuf varint encoding of a non-negative int."""
  out = bytearray()
  while value >= 0x80:
    out.append((value & 0x7f) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def decode_varint(data: bytes, pos: int, limit: int,
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
