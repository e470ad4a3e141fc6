"""A snapshot written by this process: at disk speed, or by its uploader.

TensorFlow's `SaveV2` writes a checkpoint through the page cache. On a local
disk the background save of `async_save` writes the snapshot itself instead
(`write`): the `session.run` taking the snapshot hands every snapshot
variable to Python without a copy (`ArrayHandOver`: a `numpy_function`
receives its CPU inputs as arrays that alias the tensors' buffers), so the
background thread starts with no `session.run`; the bytes are laid out,
checksummed below training's priority (`writer_priority`), and
written O_DIRECT (`storage.direct_copy.write_segments`), then the index
(`format.bundle.encode_index`). The files are those the sharded `Saver`
writes for the same tensors, byte for byte: one data file per device, each
holding its tensors in the saver's order with no padding, as `SaveV2` lays
them out, and the same index. TensorFlow's readers, its restore and
`verify` read them as theirs. To an object store the same files go through
the uploader process (`upload`, `storage.uploader`), below training's
priority. Where the file system takes O_DIRECT the
data reaches the disk as it is written, without page cache (on a VM fresh
page cache costs as much CPU as the copy into it; see
docs/async_saves.md), and the commit's fsync has little left to flush.

Constants (the object graph) are encoded once, at build. Strings and
variants held in variables (a lookup table with string keys) have no fixed
size per element and would be copied into Python objects, so a snapshot
with one is written by `SaveV2` instead (`ArrayHandOver.writable` is False).
"""

import dataclasses
import os
import shutil
import sys
import types
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import device as pydev
from tensorflow.python.framework import ops
from tensorflow.python.framework import tensor_util

from estimator_ckpt._src import writer_priority
from estimator_ckpt._src.format import aliases as aliases_lib
from estimator_ckpt._src.format import bundle as bundle_lib
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.format import values
from estimator_ckpt._src.storage import direct_copy
from estimator_ckpt._src.storage import uploader

tf1 = tf.compat.v1

# Files are staged in `prefix + STAGING_SUFFIX/` (a directory of this writer
# alone: SaveV2 stages in `prefix_temp/`).
STAGING_SUFFIX = "_async_temp"
# No alias keys (`write`, `upload`).
NO_ALIASES: Mapping[bytes, bytes] = types.MappingProxyType({})
# Fixed-size types whose checkpoint bytes are their numpy bytes, each
# checked against SaveV2 (snapshot_bundle_test). Not int4 and uint4
# (TensorFlow packs them) nor the quantized types but qint8: SaveV2's.
_FIXED_SIZE = frozenset(
  d.enum
  for d in dtypes.DTYPES.values()
  if not d.variable_length
  and d.name not in ("int4", "uint4", "quint8", "qint16", "quint16", "qint32")
)


@dataclasses.dataclass(frozen=True)
class BundleTensor:
  """One saved tensor of the snapshot.

  Attributes:
    name: The key it is saved under (of the whole tensor, if a slice).
    slice_spec: `SaveSpec.slice_spec`: "" or TensorFlow's
      "full shape + slice" string (a partition).
    dtype: Its `tf.DType` enum.
    device: The canonical name of its `SaveSpec`'s device: the sharded
      `Saver` writes one data file per device, in their sorted order.
    position: A variable's place among `ArrayHandOver.arrays`.
    constant: A constant's encoded bytes and masked crc32c.
    constant_shape: A constant's shape.
  """

  name: str
  slice_spec: str
  dtype: int
  device: str
  position: Optional[int] = None
  constant: Optional[Tuple[bytes, int]] = None
  constant_shape: Tuple[int, ...] = ()

  def renamed(self, name: str) -> "BundleTensor":
    return dataclasses.replace(self, name=name)


class ArrayHandOver:
  """The op handing the snapshot variables to this process, uncopied.

  Built with the snapshot: `variable` and `constant` for each saved tensor,
  then `finish`. The snapshot is handed over in the run that takes it
  (`take_and_hand_over`, in the caller's thread, so the background save's
  first CPU work is no `session.run`) and kept until `drop`; or by a run of
  its own in `arrays`.

  Attributes:
    writable: Whether `write` can write the snapshot.
    take_and_hand_over: The op taking the snapshot and handing it over in
      one run (None where nothing is handed over). The arrays are kept
      until `drop()`.
  """

  def __init__(self):
    self.writable = sys.byteorder == "little"
    self.take_and_hand_over: Optional[tf.Tensor] = None
    self._reads: List[Tuple] = []  # (read callable, device)
    self._op: Optional[tf.Tensor] = None
    self._arrays: Optional[Tuple[np.ndarray, ...]] = None

  def variable(
    self, name: str, slice_spec: str, dtype: tf.DType, read, device: str
  ) -> BundleTensor:
    """A snapshot variable's tensor; `read()` reads it on `device`."""
    enum = dtype.as_datatype_enum
    canonical = pydev.canonical_name(device)
    if enum not in _FIXED_SIZE:
      self.writable = False
      return BundleTensor(name, slice_spec, enum, canonical)
    self._reads.append((read, device))
    return BundleTensor(name, slice_spec, enum, canonical, len(self._reads) - 1)

  def constant(
    self, name: str, slice_spec: str, tensor: tf.Tensor, device: str
  ) -> BundleTensor:
    """A constant's tensor (the object graph): encoded once, here."""
    enum = tensor.dtype.as_datatype_enum
    canonical = pydev.canonical_name(device)
    value = tensor_util.constant_value(tensor)
    if value is None or (
      enum not in _FIXED_SIZE and enum != dtypes.STRING.enum
    ):
      self.writable = False
      return BundleTensor(name, slice_spec, enum, canonical)
    value = np.asarray(value)
    if enum == dtypes.STRING.enum:
      data, masked = values.encode_strings(list(value.reshape(-1)))
    else:
      data = np.ascontiguousarray(value).tobytes()
      masked = crc32c.mask(crc32c.crc32c(data))
    return BundleTensor(
      name,
      slice_spec,
      enum,
      canonical,
      constant=(data, masked),
      constant_shape=tuple(value.shape),
    )

  def finish(self, in_process: bool, take: tf.Operation) -> None:
    """Builds the ops, where `write` may run: snapshot in this process's CPU.

    On a cluster (`in_process` False) nothing is built: the snapshot stays
    on each ps, which writes its own shards with `SaveV2`.

    Args:
      in_process: Whether every snapshot variable is on this process's CPU.
      take: The op taking the snapshot (`take_and_hand_over` runs it).
    """
    if not (in_process and self.writable):
      self.writable = False
      return
    if not self._reads:
      return
    self._op = self._hand_over_op("arrays")
    with ops.control_dependencies([take]):
      self.take_and_hand_over = self._hand_over_op("take_and_arrays")

  def _hand_over_op(self, name: str) -> tf.Tensor:
    inputs = []
    for read, device in self._reads:
      with ops.device(device):
        inputs.append(read())
    with ops.device(None):  # PyFunc has a CPU kernel only.
      return tf1.numpy_function(
        self._hand_over, inputs, tf.int64, stateful=True, name=name
      )

  def _hand_over(self, *arrays: np.ndarray) -> np.int64:
    self._arrays = arrays
    return np.int64(len(arrays))

  def arrays(self, sess, options) -> Tuple[np.ndarray, ...]:
    """The snapshot variables' values: arrays over their buffers.

    Those `take_and_hand_over` handed over, if kept; else handed over by a
    run of their own (with `options`) and not kept.
    """
    if self._op is None:
      return ()
    arrays = self._arrays
    if arrays is not None:
      return arrays
    try:
      sess.run(self._op, options=options)
      arrays = self._arrays
    finally:
      self._arrays = None  # Never pins a snapshot past its save.
    assert arrays is not None
    return arrays

  def drop(self) -> None:
    """Lets go of the arrays `take_and_hand_over` handed over, if any.

    They hold the snapshot's memory: a save drops them as it ends, whether
    it succeeded or not.
    """
    self._arrays = None


@dataclasses.dataclass
class _Placed:
  """A tensor's place in the data file."""

  key: bytes
  tensor: BundleTensor
  size: int
  entry: protos.BundleEntryProto


@dataclasses.dataclass
class _Bundle:
  """A snapshot laid out as a checkpoint: data files' contents and index."""

  data: List[List[Tuple[int, object]]]  # Per shard: (offset, bytes).
  sizes: List[int]  # Per shard.
  index: bytes


def _bundle(
  sess,
  hand_over: "ArrayHandOver",
  tensors: Sequence[BundleTensor],
  options,
  aliases: Mapping[bytes, bytes],
  index_path: str,
) -> _Bundle:
  """Hands the snapshot over, lays it out and checksums it (below training).

  The index also holds `aliases` (alias key -> saved key), each a second
  key of its target's value (`aliases.alias_entries`): written once, where
  a synchronous save rewrites the index it wrote (`tf2_saver.add_aliases`).
  """
  arrays = hand_over.arrays(sess, options)
  placed, full_entries, num_shards = _layout(tensors, arrays)
  # CPU work of this thread alone (no thread starts, no TensorFlow call),
  # in C calls that release the GIL: the Python of the layout and index
  # stays at normal priority, where it cannot hold the GIL while starved.
  with writer_priority.below_training():
    for p in placed:
      p.entry.crc32c = _masked_crc(p, arrays)
  data: List[List[Tuple[int, object]]] = []
  sizes = []
  for shard in range(num_shards):
    in_shard = [p for p in placed if p.entry.shard_id == shard]
    data.append([(p.entry.offset, _bytes_of(p, arrays)) for p in in_shard])
    sizes.append(max((p.entry.offset + p.size for p in in_shard), default=0))
  header = protos.BundleHeaderProto()
  header.num_shards = num_shards
  header.endianness = protos.LITTLE_ENDIAN
  header.version.producer = bundle_lib.BUNDLE_VERSION
  entries = {p.key: p.entry for p in placed}
  entries.update(full_entries)
  entries.update(aliases_lib.alias_entries(entries, aliases, index_path))
  index = bundle_lib.encode_index(header, entries.items())
  return _Bundle(data, sizes, index)


def write(
  sess,
  hand_over: ArrayHandOver,
  tensors: Sequence[BundleTensor],
  prefix: str,
  options=None,
  aliases: Mapping[bytes, bytes] = NO_ALIASES,
) -> None:
  """Writes `tensors` as checkpoint `prefix` (one data file, then the index).

  All are written under `prefix + STAGING_SUFFIX/` (left by a killed save,
  it is cleared first) and renamed into place, data first, so a reader
  never finds an index whose data is incomplete.

  Args:
    sess: The session holding the snapshot.
    hand_over: The snapshot's `ArrayHandOver`.
    tensors: What to write (`hand_over.writable` was True).
    prefix: The checkpoint prefix, on a local disk.
    options: `RunOptions` of every run.
    aliases: Alias key -> saved key, added to the index (`_bundle`).
  """
  staging = prefix + STAGING_SUFFIX
  shutil.rmtree(staging, ignore_errors=True)  # Of a save killed here.
  os.mkdir(staging)  # The model dir must exist, as for SaveV2.
  try:
    index = bundle_lib.index_filename(prefix)
    bundle = _bundle(sess, hand_over, tensors, options, aliases, index)
    data = _data_files(prefix, len(bundle.data))
    staged = {
      path: os.path.join(staging, os.path.basename(path))
      for path in data + [index]
    }
    for shard, path in enumerate(data):
      direct_copy.write_segments(
        staged[path], bundle.sizes[shard], bundle.data[shard]
      )
    with open(staged[index], "xb") as f:
      f.write(bundle.index)
      f.flush()
      os.fsync(f.fileno())
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  for path in data + [index]:
    os.replace(staged[path], path)
  shutil.rmtree(staging, ignore_errors=True)  # Empty by now.


def upload(
  sess,
  hand_over: ArrayHandOver,
  tensors: Sequence[BundleTensor],
  prefix: str,
  worker: uploader.Uploader,
  options=None,
  aliases: Mapping[bytes, bytes] = NO_ALIASES,
) -> None:
  """Writes `tensors` as checkpoint `prefix` on an object store, via `worker`.

  The data files first, then the index, each complete once written (an
  object appears whole when its upload ends): a reader never finds an
  index whose data is incomplete. The uploader process writes them below
  training's priority, until the save is hurried.

  Args:
    sess: The session holding the snapshot.
    hand_over: The snapshot's `ArrayHandOver`.
    tensors: What to write (`hand_over.writable` was True).
    prefix: The checkpoint prefix (`uploader.serves(prefix)`).
    worker: The uploader.
    options: `RunOptions` of every run.
    aliases: Alias key -> saved key, added to the index (`_bundle`).
  """
  index = bundle_lib.index_filename(prefix)
  bundle = _bundle(sess, hand_over, tensors, options, aliases, index)
  data = _data_files(prefix, len(bundle.data))
  with writer_priority.delegated(worker.hurry) as lowered:
    for shard, path in enumerate(data):
      pieces = [piece for _, piece in bundle.data[shard]]  # Offset order.
      worker.write(path, bundle.sizes[shard], pieces, lowered=lowered)
    worker.write(index, len(bundle.index), [bundle.index], lowered=lowered)


def _data_files(prefix: str, num_shards: int) -> List[str]:
  return [
    bundle_lib.data_filename(prefix, i, num_shards) for i in range(num_shards)
  ]


def _layout(
  tensors: Sequence[BundleTensor], arrays: Sequence[np.ndarray]
) -> Tuple[List[_Placed], Dict[bytes, protos.BundleEntryProto], int]:
  """Data entries with shards and offsets; whole-tensor entries; shards.

  As `BundleWriter::Add`/`AddSlice`: a slice's bytes are stored under its
  slice key and the whole tensor's entry lists its slices; a slice covering
  the whole tensor is stored as the tensor. Shard i holds the tensors of
  the i-th device in sorted order (`Saver._GroupByDevices`).
  """
  placed: List[_Placed] = []
  full_entries: Dict[bytes, protos.BundleEntryProto] = {}
  for tensor in tensors:
    name = tensor.name.encode("utf-8")
    if tensor.constant is not None:
      shape = tensor.constant_shape
      size = len(tensor.constant[0])
    else:
      assert tensor.position is not None
      shape = tuple(arrays[tensor.position].shape)
      size = arrays[tensor.position].nbytes
    key = name
    if tensor.slice_spec:
      full_shape, piece = _parse_slice_spec(tensor.slice_spec)
      if not piece.is_full(full_shape):
        key = tensor_slice.slice_key(name, piece)
        full = full_entries.setdefault(name, protos.BundleEntryProto())
        if not full.HasField("shape"):
          full.dtype = tensor.dtype
          for dim in full_shape:
            full.shape.dim.add().size = dim
        piece.to_proto(full.slices.add())
    entry = protos.BundleEntryProto()
    entry.dtype = tensor.dtype
    entry.shape.SetInParent()  # Present for a scalar too, as TensorFlow's.
    for dim in shape:
      entry.shape.dim.add().size = dim
    placed.append(_Placed(key, tensor, size, entry))
  devices = sorted({p.tensor.device for p in placed})
  shard_of = {device: i for i, device in enumerate(devices)}
  offsets = [0] * len(devices)
  for p in placed:  # In the saver's order, as `SaveV2` writes them.
    shard = shard_of[p.tensor.device]
    p.entry.shard_id = shard
    p.entry.offset = offsets[shard]
    p.entry.size = p.size
    offsets[shard] += p.size
  return placed, full_entries, max(len(devices), 1)


def _bytes_of(p: _Placed, arrays: Sequence[np.ndarray]):
  """A tensor's bytes: a constant's encoding, a variable's own memory."""
  if p.tensor.constant is not None:
    return p.tensor.constant[0]
  assert p.tensor.position is not None
  array = arrays[p.tensor.position]
  assert array.flags.c_contiguous, p.key
  return array.reshape(-1).view(np.uint8)


def _masked_crc(p: _Placed, arrays: Sequence[np.ndarray]) -> int:
  """The entry's crc32c, masked, as `BundleWriter` stores it."""
  if p.tensor.constant is not None:
    return p.tensor.constant[1]
  # One call over the whole tensor: the C crc32c releases the GIL.
  return crc32c.mask(crc32c.crc32c(_bytes_of(p, arrays)))


def _parse_slice_spec(
  spec: str,
) -> Tuple[Tuple[int, ...], tensor_slice.TensorSlice]:
  """TensorFlow's "d0 d1 ... slice" spec (`Variable.SaveSliceInfo.spec`)."""
  *dims, extents = spec.split(" ")
  parsed = []
  for extent in extents.split(":"):
    if extent == "-":
      parsed.append((0, -1))
    else:
      start, length = extent.split(",")
      parsed.append((int(start), int(length)))
  return tuple(int(d) for d in dims), tensor_slice.TensorSlice(tuple(parsed))
