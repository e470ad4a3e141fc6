"""A checkpoint's `.index`, read and checked against its data files; written.

The tools (inspect, convert, verify) build on it. A checkpoint with prefix
`P` is

  P.index                      a table (`table.py`): key -> entry proto
  P.data-0000i-of-0000N        the tensors' bytes, concatenated

(`tensorflow/core/util/tensor_bundle/tensor_bundle.{h,cc}`). Key `""` holds a
`BundleHeaderProto`; every other key a `BundleEntryProto`. A partitioned
variable's key holds dtype, full shape and `slices` only; each slice is stored
under its slice key (`tensor_slice.py`).

This module checks everything TensorFlow trusts: TF 2.15 aborts the whole
process on an entry with a negative dimension or one that does not parse
(`F tensor_shape.cc`, `F checkpoint_reader.cc`), silently misses entries when
keys are unsorted, and notices a missing shard only when a tensor from it is
read. Every check here raises an `errors.Error` naming the file and the key
instead. Tensor bytes are read by `values.py` and checked by `checksums.py`;
TensorFlow is never imported (see `protos.py`).
"""

import dataclasses
import mmap
import os
from typing import (
  Dict,
  Iterable,
  Iterator,
  List,
  Mapping,
  Optional,
  Sequence,
  Tuple,
)

from estimator_ckpt import errors
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import table
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.storage import base

HEADER_KEY = b""
# kTensorBundleVersion and kTensorBundleMinProducer in tensor_bundle.cc.
BUNDLE_VERSION = 1
_MIN_PRODUCER = 0


def data_filename(prefix: str, shard_id: int, num_shards: int) -> str:
  """`tensor_bundle/naming.cc: DataFilename`."""
  return f"{prefix}.data-{shard_id:05d}-of-{num_shards:05d}"


def index_filename(prefix: str) -> str:
  return prefix + ".index"


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
    return [key for key in self.entries if not tensor_slice.is_slice_key(key)]

  def slices(self, key: bytes) -> List[Tuple[tensor_slice.TensorSlice, bytes]]:
    """`(slice, slice key)` of a partitioned tensor; [] for a whole one."""
    return [
      (s, tensor_slice.slice_key(key, s))
      for s in map(
        tensor_slice.TensorSlice.from_proto, self.entries[key].slices
      )
    ]

  def data_entries(self) -> Iterator[Tuple[bytes, protos.BundleEntryProto]]:
    """Entries that own bytes in a data file (whole tensors and slices)."""
    for key, entry in self.entries.items():
      if not entry.slices:
        yield key, entry


def shape_of(entry: protos.BundleEntryProto) -> Tuple[int, ...]:
  return tuple(dim.size for dim in entry.shape.dim)


def dtype_of(entry: protos.BundleEntryProto) -> dtypes.DType:
  return dtypes.DTYPES[entry.dtype]


def num_elements(shape: Sequence[int]) -> int:
  count = 1
  for dim in shape:
    count *= dim
  return count


def _check_version(path: str, header: protos.BundleHeaderProto) -> None:
  """`versions.cc: CheckVersions` as BundleReader calls it."""
  version = header.version
  if (
    version.producer < _MIN_PRODUCER
    or version.min_consumer > BUNDLE_VERSION
    or BUNDLE_VERSION in version.bad_consumers
  ):
    raise errors.IncompatibleCheckpointError(
      f"`{path}` has tensor-bundle version producer={version.producer} "
      f"min_consumer={version.min_consumer} bad_consumers="
      f"{list(version.bad_consumers)}, which version {BUNDLE_VERSION} "
      "readers (TensorFlow 2.15) cannot read. Use the TensorFlow that wrote "
      "it to re-save it."
    )


def _entry_problem(
  entry: protos.BundleEntryProto, num_shards: int
) -> Optional[str]:
  """What is wrong with an entry on its own, or None."""
  if entry.dtype not in dtypes.DTYPES:
    return f"has unknown or unstorable dtype enum {entry.dtype}"
  if entry.shape.unknown_rank:
    return "has a shape of unknown rank"
  shape = shape_of(entry)
  if any(dim < 0 for dim in shape):
    return (
      f"has a negative dimension in shape {list(shape)} (TensorFlow "
      "aborts the process on this)"
    )
  if num_elements(shape) >= 2**63:
    return f"has shape {list(shape)} with more than 2^63 elements"
  if entry.slices:
    return None
  if not 0 <= entry.shard_id < num_shards:
    return (
      f"points to data shard {entry.shard_id}, but the header says "
      f"there are {num_shards}"
    )
  if entry.offset < 0 or entry.size < 0:
    return f"has a negative offset {entry.offset} or size {entry.size}"
  dtype = dtypes.DTYPES[entry.dtype]
  count = num_elements(shape)
  if not dtype.variable_length and entry.size != count * dtype.itemsize:
    return (
      f"holds {entry.size} bytes, but a {dtype.name} tensor of shape "
      f"{list(shape)} has {count * dtype.itemsize}"
    )
  if dtype.variable_length and count and entry.size < count + 4:
    return (
      f"holds {entry.size} bytes, too few for {count} {dtype.name} elements"
    )
  return None


def _parse_entry(
  path: str, key: bytes, value: bytes
) -> protos.BundleEntryProto:
  entry = protos.BundleEntryProto()
  try:
    entry.ParseFromString(value)
  except Exception:  # pylint: disable=broad-except  (DecodeError and kin)
    raise errors.CorruptCheckpointError(
      f"The entry for `{tensor_slice.key_text(key)}` in `{path}` does not "
      "parse as a BundleEntryProto (TensorFlow aborts the process on "
      "this). The index is damaged; restore it from a backup or use an "
      "earlier checkpoint."
    ) from None
  return entry


def _entry_error(
  path: str, key: bytes, problem: str
) -> errors.CorruptCheckpointError:
  return errors.CorruptCheckpointError(
    f"The entry for `{tensor_slice.key_text(key)}` in `{path}` {problem}. "
    "The checkpoint is damaged or was assembled from different saves; "
    "restore it from a backup or use an earlier checkpoint."
  )


def _check_slices(
  path: str,
  key: bytes,
  entry: protos.BundleEntryProto,
  entries: Mapping[bytes, protos.BundleEntryProto],
) -> List[bytes]:
  """Checks a partitioned tensor's slices; returns their keys."""
  shape = shape_of(entry)
  keys: List[bytes] = []
  seen = set()
  for proto in entry.slices:
    part = tensor_slice.TensorSlice.from_proto(proto)
    if len(part.extents) != len(shape):
      raise _entry_error(
        path,
        key,
        f"has slice `{part}` of rank "
        f"{len(part.extents)} for shape "
        f"{list(shape)}",
      )
    for (start, length), dim in zip(part.extents, shape):
      if length >= 0 and (start < 0 or start + length > dim):
        raise _entry_error(
          path, key, f"has slice `{part}` outside shape {list(shape)}"
        )
    if part.is_full(shape):
      raise _entry_error(
        path,
        key,
        f"lists slice `{part}`, which "
        "is the whole tensor, but holds no data itself",
      )
    child_key = tensor_slice.slice_key(key, part)
    child = entries.get(child_key)
    if child is None:
      raise _entry_error(
        path, key, f"lists slice `{part}`, whose entry is missing"
      )
    if (
      child.slices
      or child.dtype != entry.dtype
      or shape_of(child) != part.shape(shape)
    ):
      raise _entry_error(
        path,
        child_key,
        f"does not match slice "
        f"`{part}` of its {dtypes.DTYPES[entry.dtype].name} "
        f"tensor of shape {list(shape)}",
      )
    if child_key in seen:
      raise _entry_error(path, key, f"lists slice `{part}` twice")
    seen.add(child_key)
    keys.append(child_key)
  return keys


class _RangedBytes:
  """A file behind a URL as the table reader indexes bytes: by range."""

  def __init__(self, file: base.ReadableFile):
    self._file = file

  def __len__(self) -> int:
    return self._file.size

  def __getitem__(self, index):
    if isinstance(index, slice):
      start, stop, _ = index.indices(self._file.size)
      return self._file.pread(max(0, stop - start), start)
    if index < 0:
      index += self._file.size
    return self._file.pread(1, index)[0]


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
    with checkpoint_files.open_regular(path, "checkpoint index") as file:
      # Mapped (local) or read by range (URL), never read whole: the table
      # reader touches only the footer and the blocks its handles promise,
      # so a huge or sparse file costs nothing until its blocks check out.
      if not file.size:
        items = table.decode_table(path, b"")
      elif file.fd is not None:
        with mmap.mmap(file.fd, file.size, access=mmap.ACCESS_READ) as data:
          items = table.decode_table(path, data)
      else:
        items = table.decode_table(path, _RangedBytes(file))
  except FileNotFoundError:
    raise errors.CheckpointNotFoundError(
      f"There is no checkpoint index `{path}`. Pass a model_dir or a "
      "checkpoint prefix such as `model_dir/model.ckpt-100` (without "
      "`.index` or `.data-*`)."
    ) from None
  if not items or items[0][0] != HEADER_KEY:
    raise errors.CorruptCheckpointError(
      f"`{path}` has no header entry (the empty key), so its shard count "
      "is unknown (TensorFlow would parse the first tensor's entry as the "
      "header). Restore it from a backup or use an earlier checkpoint."
    )
  header = protos.BundleHeaderProto()
  try:
    header.ParseFromString(items[0][1])
  except Exception:  # pylint: disable=broad-except
    raise errors.CorruptCheckpointError(
      f"The header entry of `{path}` does not parse as a "
      "BundleHeaderProto. Restore it from a backup or use an earlier "
      "checkpoint."
    ) from None
  if header.num_shards < 1:
    raise errors.CorruptCheckpointError(
      f"The header of `{path}` says it has {header.num_shards} data shards; "
      "every checkpoint has at least 1. Restore it from a backup or use an "
      "earlier checkpoint."
    )
  if header.endianness != protos.LITTLE_ENDIAN:
    raise errors.IncompatibleCheckpointError(
      f"`{path}` was written on a big-endian machine; this tool reads only "
      "little-endian checkpoints. Convert it with TensorFlow on that "
      "machine."
    )
  _check_version(path, header)

  entries = {}
  for key, value in items[1:]:
    entry = _parse_entry(path, key, value)
    problem = _entry_problem(entry, header.num_shards)
    if problem:
      raise _entry_error(path, key, problem)
    if tensor_slice.is_slice_key(key) and entry.slices:
      raise _entry_error(path, key, "is a slice but lists slices itself")
    entries[key] = entry

  listed = set()
  for key, entry in entries.items():
    if tensor_slice.is_slice_key(key):
      try:
        tensor_slice.parse_slice_key(key)
      except ValueError:
        raise _entry_error(path, key, "has a malformed slice key") from None
    elif entry.slices:
      listed.update(_check_slices(path, key, entry, entries))
  orphans = [
    key
    for key in entries
    if tensor_slice.is_slice_key(key) and key not in listed
  ]
  if orphans:
    raise _entry_error(path, orphans[0], "is a slice that no tensor lists")

  shard_sizes = _shard_sizes(prefix, header.num_shards, entries)
  return Bundle(prefix, header, entries, shard_sizes)


def _shard_sizes(
  prefix: str, num_shards: int, entries: Mapping[bytes, protos.BundleEntryProto]
) -> Tuple[int, ...]:
  """Stats every data file and checks each entry fits in its file."""
  sizes = []
  for shard_id in range(num_shards):
    path = data_filename(prefix, shard_id, num_shards)
    try:
      sizes.append(checkpoint_files.regular_size(path, "data file"))
    except FileNotFoundError:
      owners = [
        tensor_slice.key_text(k)
        for k, e in entries.items()
        if not e.slices and e.shard_id == shard_id
      ]
      present = sorted(
        name
        for name in checkpoint_files.listdir(os.path.dirname(prefix) or ".")
        if name.startswith(os.path.basename(prefix) + ".data-")
      )
      found = (
        f" The directory has {errors.format_names(present)}: the "
        f"header's shard count ({num_shards}) may be wrong."
        if present
        else ""
      )
      raise errors.CorruptCheckpointError(
        f"Data file `{path}` of checkpoint `{prefix}` is missing; it holds "
        f"{errors.format_names(owners) if owners else 'no tensors'}.{found}"
        " Copy the complete checkpoint (its `.index` and every "
        "`.data-*-of-*` file)."
      ) from None
  for key, entry in entries.items():
    if entry.slices:
      continue
    end = entry.offset + entry.size
    if end > sizes[entry.shard_id]:
      path = data_filename(prefix, entry.shard_id, num_shards)
      raise errors.CorruptCheckpointError(
        f"`{tensor_slice.key_text(key)}` needs bytes [{entry.offset}, "
        f"{end}) of `{path}`, which has only {sizes[entry.shard_id]} bytes: "
        "the data file is truncated or from a different save than the index. "
        "Restore the checkpoint from a backup or use an earlier one."
      )
  return tuple(sizes)


def encode_index(
  header: protos.BundleHeaderProto,
  entries: Iterable[Tuple[bytes, protos.BundleEntryProto]],
) -> bytes:
  """The `.index` bytes for a header and entries (sorted here).

  Raises:
    ValueError: Duplicate keys, or the empty (header) key among entries.
  """
  items = sorted((key, entry.SerializeToString()) for key, entry in entries)
  for (key, _), (next_key, _) in zip(items, items[1:]):
    if key == next_key:
      raise ValueError(
        f"duplicate checkpoint key {tensor_slice.key_text(key)!r}"
      )
  if items and items[0][0] == HEADER_KEY:
    raise ValueError("the empty key is reserved for the header")
  return table.encode_table([(HEADER_KEY, header.SerializeToString())] + items)
