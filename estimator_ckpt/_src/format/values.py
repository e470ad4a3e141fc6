"""Tensor values: an entry's bytes read and checked, decoded, encoded."""

import struct
from typing import Sequence, Tuple

import numpy as np

from estimator_ckpt._src.format import bundle as bundle_lib
from estimator_ckpt._src.format import checksums
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import varint

_UINT32 = struct.Struct("<I")


def read_entry_bytes(bundle: bundle_lib.Bundle, key: bytes,
                     entry: protos.BundleEntryProto) -> bytes:
  """An entry's bytes, checksum verified.

  Raises:
    errors.CorruptCheckpointError: The bytes fail their checksum.
  """
  with open(bundle.data_path(entry.shard_id), "rb") as f:
    f.seek(entry.offset)
    data = f.read(entry.size)
  checksummer = checksums.Checksummer(entry)
  try:
    checksummer.update(data)
    problem = checksummer.problem()
  except ValueError as e:
    problem = str(e)
  if problem:
    raise checksums.data_error(bundle, key, entry, problem)
  return data


def decode_value(entry: protos.BundleEntryProto, data: bytes) -> np.ndarray:
  """An entry's value from its (checked) bytes.

  Strings come back as an object array of `bytes`, as TensorFlow's
  `CheckpointReader.get_tensor` returns them; variants as an object array of
  serialized `VariantTensorDataProto`s (decoding them needs TensorFlow).
  """
  dtype = bundle_lib.dtype_of(entry)
  shape = bundle_lib.shape_of(entry)
  count = bundle_lib.num_elements(shape)
  if not dtype.variable_length:
    return np.frombuffer(bytearray(data), dtype=dtype.numpy_dtype()).reshape(
        shape)
  values = np.empty(count, dtype=object)
  pos = 0
  if dtype is dtypes.STRING:
    if count == 0:
      return values.reshape(shape)
    lengths = []
    for _ in range(count):
      length, pos = varint.decode_varint(data, pos, len(data))
      lengths.append(length)
    pos += 4
    for i, length in enumerate(lengths):
      values[i] = bytes(data[pos:pos + length])
      pos += length
  else:
    for i in range(count):
      length, pos = varint.decode_varint(data, pos, len(data))
      values[i] = bytes(data[pos:pos + length])
      pos += length + 4
  return values.reshape(shape)


def encode_strings(values: Sequence[bytes]) -> Tuple[bytes, int]:
  """Encodes a string tensor as `WriteStringTensor` does.

  Returns:
    The bytes to store and the entry's (masked) `crc32c`.
  """
  lengths = b"".join(varint.encode_varint(len(v)) for v in values)
  crc = crc32c.crc32c(b"".join(
      _UINT32.pack(len(v)) if len(v) <= 0xffffffff else
      struct.pack("<Q", len(v)) for v in values))
  length_checksum = _UINT32.pack(crc32c.mask(crc))
  crc = crc32c.crc32c(length_checksum, crc)
  for value in values:
    crc = crc32c.crc32c(value, crc)
  return lengths + length_checksum + b"".join(values), crc32c.mask(crc)
