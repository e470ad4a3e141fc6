"""Large Estimator-style TF1 checkpoints, written fast and in constant memory.

Not public API: for the conversion benchmark and the kill test. The layout is
what a TF1 `Saver` writes for a ranking model: `global_step`, one embedding
table partitioned along axis 0 (stored as slices), and many small dense
variables, in one data file. Values are pseudo-random float32. The index is
written by `bundle.encode_index`, which is byte-identical to TensorFlow's
(tests/bundle_test.py), and TensorFlow reads these checkpoints
(tests/benchmark_test.py).
"""

import os
from typing import List, Tuple

import numpy as np

from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.format import tensor_slice

_FLOAT32 = dtypes.DTYPES[1]
_INT64 = dtypes.DTYPES[9]
_CHUNK_ELEMENTS = 4 << 20  # 16 MiB of float32.


def _entry(
  dtype: dtypes.DType, shape, offset: int, size: int, crc: int
) -> protos.BundleEntryProto:
  entry = protos.BundleEntryProto(
    dtype=dtype.enum, offset=offset, size=size, crc32c=crc32c.mask(crc)
  )
  for dim in shape:
    entry.shape.dim.add(size=dim)
  return entry


def write_estimator_checkpoint(
  model_dir: str,
  *,
  table_bytes: int,
  num_small: int = 1000,
  num_partitions: int = 4,
  embedding_dim: int = 64,
  step: int = 1000,
  seed: int = 0,
) -> str:
  """Writes `model_dir/model.ckpt-<step>` and a `checkpoint` state file.

  Args:
    model_dir: Created if missing.
    table_bytes: Size of the partitioned table (rounded to whole rows).
    num_small: Number of small [16, 16] float32 variables.
    num_partitions: Partitions of the table.
    embedding_dim: Width of the table.
    step: The global step (and checkpoint number).
    seed: Of the pseudo-random values.

  Returns:
    The checkpoint prefix.
  """
  os.makedirs(model_dir, exist_ok=True)
  prefix = os.path.join(model_dir, f"model.ckpt-{step}")
  rng = np.random.default_rng(seed)
  rows = max(num_partitions, table_bytes // (4 * embedding_dim))
  entries: List[Tuple[bytes, protos.BundleEntryProto]] = []
  offset = 0
  with open(bundle.data_filename(prefix, 0, 1), "wb") as data:

    def add(key: bytes, dtype: dtypes.DType, shape, values) -> None:
      nonlocal offset
      raw = np.ascontiguousarray(values).tobytes()
      data.write(raw)
      entries.append(
        (key, _entry(dtype, shape, offset, len(raw), crc32c.crc32c(raw)))
      )
      offset += len(raw)

    add(b"global_step", _INT64, [], np.array(step, np.int64))
    table = protos.BundleEntryProto(dtype=_FLOAT32.enum)
    table.shape.dim.add(size=rows)
    table.shape.dim.add(size=embedding_dim)
    start = 0
    for part in range(num_partitions):
      part_rows = rows // num_partitions + (part < rows % num_partitions)
      part_slice = tensor_slice.TensorSlice(
        ((start, part_rows), (0, embedding_dim))
      )
      part_slice.to_proto(table.slices.add())
      crc = 0
      size = 0
      remaining = part_rows * embedding_dim
      while remaining:
        count = min(remaining, _CHUNK_ELEMENTS)
        raw = rng.random(count, dtype=np.float32).tobytes()
        data.write(raw)
        crc = crc32c.crc32c(raw, crc)
        size += len(raw)
        remaining -= count
      entries.append(
        (
          tensor_slice.slice_key(b"embedding", part_slice),
          _entry(_FLOAT32, [part_rows, embedding_dim], offset, size, crc),
        )
      )
      offset += size
      start += part_rows
    entries.append((b"embedding", table))
    for i in range(num_small):
      add(
        f"dense_{i // 10}/layer_{i % 10}/kernel".encode(),
        _FLOAT32,
        [16, 16],
        rng.random((16, 16), dtype=np.float32),
      )
  header = protos.BundleHeaderProto(num_shards=1)
  header.version.producer = bundle.BUNDLE_VERSION
  with open(bundle.index_filename(prefix), "wb") as f:
    f.write(bundle.encode_index(header, entries))
  with open(os.path.join(model_dir, state_file.STATE_FILENAME), "wb") as f:
    f.write(state_file.encode([prefix]))
  return prefix
