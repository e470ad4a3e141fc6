"""Tensor values: an entry's bytes read and checked, decoded, encoded."""

import struct
from typing import Sequence, Tuple

import numpy as np

from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle as bundle_lib
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import checksums
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import varint

_UINT32 = struct.Struct("<I")


def read_entry_bytes(
  bundle: bundle_lib.Bundle, key: bytes, entry: protos.BundleEntryProto
) -> bytes:
  """An entry's bytes, checksum verified.

  Raises:
    errors.CorruptCheckpointError: The bytes fail their checksum.
  """
  path = bundle.data_path(entry.shard_id)
  try:
    with checkpoint_files.open_regular(path, "data file") as file:
      data = file.pread(entry.size, entry.offset)
  except FileNotFoundError:
    raise errors.CorruptCheckpointError(
      f"Data file `{path}` of `{bundle.prefix}` disappeared while it was "
      "read. Is something else deleting the checkpoint?"
    ) from None
  checksummer = checksums.Checksummer(entry)
  try:
    checksummer.update(data)
    problem = checksummer.problem()
  except ValueError as e:
    problem = str(e)
  if problem:
    raise checksums.data_error(bundle, key, entry, problem)
  return data


def check_numpy_shape(
  shape: Sequence[int], dtype: dtypes.DType, where: str
) -> None:
  """Raises unless numpy can hold an array of `shape` (even with 0 elements).

  numpy refuses any shape whose non-zero dimensions multiply past its index
  range, so `[0, 2**40, 2**40]`, a valid empty tensor for TensorFlow, has no
  numpy form.

  Raises:
    errors.IncompatibleCheckpointError: It cannot.
  """
  extent = max(dtype.itemsize, 1)
  for dim in shape:
    extent *= max(dim, 1)
  if extent > np.iinfo(np.intp).max:
    raise errors.IncompatibleCheckpointError(
      f"{where} has shape {list(shape)}, which numpy cannot represent (its "
      "non-zero dimensions multiply past 2^63 bytes), so it cannot be "
      "returned as an array. Read it with TensorFlow, or check how the "
      "checkpoint was written."
    )


def decode_value(
  entry: protos.BundleEntryProto, data: bytes, where: str = "The tensor"
) -> np.ndarray:
  """An entry's value from its (checked) bytes.

  Strings come back as an object array of `bytes`, as TensorFlow's
  `CheckpointReader.get_tensor` returns them; variants as an object array of
  serialized `VariantTensorDataProto`s (decoding them needs TensorFlow).

  Args:
    entry: The tensor's entry.
    data: Its bytes, checked (`read_entry_bytes`).
    where: Names the tensor (file and key) in errors.

  Raises:
    errors.IncompatibleCheckpointError: numpy cannot hold its shape.
  """
  dtype = bundle_lib.dtype_of(entry)
  shape = bundle_lib.shape_of(entry)
  check_numpy_shape(shape, dtype, where)
  count = bundle_lib.num_elements(shape)
  if not dtype.variable_length:
    return np.frombuffer(bytearray(data), dtype=dtype.numpy_dtype()).reshape(
      shape
    )
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
      values[i] = bytes(data[pos : pos + length])
      pos += length
  else:
    for i in range(count):
      length, pos = varint.decode_varint(data, pos, len(data))
      values[i] = bytes(data[pos : pos + length])
      pos += length + 4
  return values.reshape(shape)


def encode_strings(values: Sequence[bytes]) -> Tuple[bytes, int]:
  """Encodes a string tensor as `WriteStringTensor` does.

  Returns:
    The bytes to store and the entry's (masked) `crc32c`.
  """
  lengths = b"".join(varint.encode_varint(len(v)) for v in values)
  crc = crc32c.crc32c(
    b"".join(
      _UINT32.pack(len(v))
      if len(v) <= 0xFFFFFFFF
      else struct.pack("<Q", len(v))
      for v in values
    )
  )
  length_checksum = _UINT32.pack(crc32c.mask(crc))
  crc = crc32c.crc32c(length_checksum, crc)
  for value in values:
    crc = crc32c.crc32c(value, crc)
  return lengths + length_checksum + b"".join(values), crc32c.mask(crc)
