"""A checkpoint's index with stock per-partition tensors listed as one tensor.

Stock `tf.train.Checkpoint` stores a partitioned variable one full tensor per
partition (`var_list/emb.Spart_0/...`, and its slots `emb.Spart_0.SAdagrad`),
so no key holds the whole variable, and TensorFlow's readers that take one
tensor name (`RestoreV2`, `LoadAndRemapMatrix`) cannot read it. A TF1
`Saver` stores the same variable under one key whose entry lists its slices,
each stored under a slice key; the bytes are the same.

`stage` writes, in a new temporary directory, an index that lists each such
variable under its TF1 name as slices, the slice entries pointing at the
parts' bytes where they are: the staged data files are symbolic links to
the checkpoint's own (nothing is copied or decoded). Optionally every other
entry of the checkpoint is kept too, so one prefix serves a whole restore.
For a checkpoint on a remote file system (no links) the parts' bytes are
copied into one local data file, streamed, and the other entries cannot be
kept. The directory is removed when the process exits: readers run in a
session after the graph is built.
"""

import atexit
import os
import shutil
import tempfile
from typing import Iterable, List, Mapping, Sequence, Tuple

from estimator_ckpt._src import layouts
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.storage import registry

# Bytes copied at once when staging parts from a remote file system.
_COPY_CHUNK = 64 << 20


def can_keep_entries(prefix: str) -> bool:
  """Whether `stage(..., keep=...)` can keep other entries (a local file)."""
  return registry.for_path(prefix).capabilities.os_paths


def _full_extents(
  piece: tensor_slice.TensorSlice, shape: Sequence[int]
) -> tensor_slice.TensorSlice:
  """Whole dimensions as TensorFlow's savers write them (length -1)."""
  return tensor_slice.TensorSlice(
    tuple(
      (0, -1) if (start, start + length) == (0, dim) else (start, length)
      for (start, length), dim in zip(piece.extents, shape)
    )
  )


def stage(
  checkpoint: bundle.Bundle,
  variables: Sequence[layouts.Variable],
  keep: Iterable[Tuple[bytes, protos.BundleEntryProto]] = (),
) -> str:
  """Writes the staged index; returns its prefix (see the module docstring).

  Args:
    checkpoint: The checked index of the source checkpoint.
    variables: Stock per-partition variables (`Layout.STOCK_PARTS`, with
      slices); each is listed under its `name`.
    keep: Other entries to list unchanged (slice keys included); only for a
      local checkpoint (`can_keep_entries`).

  Returns:
    The staged checkpoint prefix.
  """
  directory = tempfile.mkdtemp(prefix="estimator_ckpt_staged_")
  atexit.register(shutil.rmtree, directory, True)
  staged = os.path.join(directory, "staged")
  local = can_keep_entries(checkpoint.prefix)
  header = protos.BundleHeaderProto()
  header.CopyFrom(checkpoint.header)
  entries: List[Tuple[bytes, protos.BundleEntryProto]] = list(keep)
  assert local or not entries, "remote checkpoints keep no other entries"
  copied: List[protos.BundleEntryProto] = []
  offset = 0
  for variable in variables:
    full = protos.BundleEntryProto()
    full.dtype = variable.parts[0].entry.dtype
    for dim in variable.shape:
      full.shape.dim.add().size = dim
    key = variable.name.encode("utf-8", "surrogateescape")
    for part in variable.parts:
      assert part.slice is not None, variable.name
      piece = _full_extents(part.slice, variable.shape)
      piece.to_proto(full.slices.add())
      entry = protos.BundleEntryProto()
      entry.CopyFrom(part.entry)
      entry.ClearField("slices")
      if not local:
        entry.shard_id = 0
        entry.offset = offset
        copied.append(part.entry)
        offset += part.entry.size
      entries.append((tensor_slice.slice_key(key, piece), entry))
    entries.append((key, full))

  if local:
    for shard in range(header.num_shards):
      os.symlink(
        os.path.abspath(
          bundle.data_filename(checkpoint.prefix, shard, header.num_shards)
        ),
        bundle.data_filename(staged, shard, header.num_shards),
      )
  else:
    header.num_shards = 1
    _copy(checkpoint.prefix, checkpoint.header.num_shards, copied, staged)
  with open(bundle.index_filename(staged), "wb") as f:
    f.write(bundle.encode_index(header, entries))
  return staged


def entries_except(
  checkpoint: bundle.Bundle, names: Iterable[str]
) -> Mapping[bytes, protos.BundleEntryProto]:
  """The checkpoint's entries but the keys `names` would take."""
  taken = {name.encode("utf-8", "surrogateescape") for name in names}
  return {
    key: entry
    for key, entry in checkpoint.entries.items()
    if key != bundle.HEADER_KEY
    and key not in taken
    and not (
      tensor_slice.is_slice_key(key)
      and tensor_slice.parse_slice_key(key)[0] in taken
    )
  }


def _copy(
  prefix: str,
  num_shards: int,
  parts: Sequence[protos.BundleEntryProto],
  staged: str,
) -> None:
  """Streams the parts' bytes into the staged bundle's one data file."""
  with open(bundle.data_filename(staged, 0, 1), "wb") as out:
    for entry in parts:
      path = bundle.data_filename(prefix, entry.shard_id, num_shards)
      with checkpoint_files.open_regular(path, "data file") as source:
        done = 0
        while done < entry.size:
          size = min(_COPY_CHUNK, entry.size - done)
          out.write(source.pread(size, entry.offset + done))
          done += size
