"""Index aliases: a second key for a tensor's bytes, at no data cost.

A `.index` maps keys to (shard, offset, size, crc32c), so two keys may point
at the same bytes; TensorFlow 2.15's readers accept it (TF1 `Saver.restore`,
`tf.train.load_variable`, `WarmStartSettings`, `tf.train.Checkpoint`,
`inspect_checkpoint`). TF2 checkpoints written here carry, beside their
object-based keys, aliases that TF2 readers never look at (they are not in
the object graph):

- each variable's TF1 name (`tf1_names=True`), so TF1 readers find it by
  name; a partitioned variable's alias lists its slices, each stored under
  the alias's own slice key, pointing at the same slice bytes;
- `global_step`, the step by the name Estimator reads;
- in converted checkpoints, `save_counter/.ATTRIBUTES/VARIABLE_VALUE`, the
  step again, for the object graph's `save_counter` node that
  `tf.train.Checkpoint.restore(...).assert_consumed()` expects (the Scaffold
  factory saves it instead: its object graph must be whole before the
  rewrite).

`add_to_index` rewrites a finished `.index` (the Scaffold factory's saves);
`alias_entries` gives the entries to add to an index being built (convert).
"""

from typing import Dict, Mapping

from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import table
from estimator_ckpt._src.format import tensor_slice


def can_alias(name: str) -> bool:
  """Whether a TF1 name can be an alias key that readers take as that name.

  Not a name that starts with NUL (a slice key), nor one that reads as a
  TF2 key of this or the guide's layout (`var_list/x/.ATTRIBUTES/...`,
  `step/...`: a reader would decode it to another name), nor the object
  graph's or save counter's key. Such names (raw keys a source listed as
  names) keep only their TF2 key.
  """
  if not name or name.startswith("\x00"):
    return False
  if name in (keys.OBJECT_GRAPH_KEY, keys.SAVE_COUNTER_KEY):
    return False
  try:
    return keys.variable_name(name) is None
  except errors.KeyEncodingError:
    return False


def _copy(entry: protos.BundleEntryProto) -> protos.BundleEntryProto:
  copy = protos.BundleEntryProto()
  copy.CopyFrom(entry)
  return copy


def _same_data(a: protos.BundleEntryProto, b: protos.BundleEntryProto) -> bool:
  return a.SerializeToString(deterministic=True) == b.SerializeToString(
    deterministic=True
  )


def alias_entries(
  entries: Mapping[bytes, protos.BundleEntryProto],
  aliases: Mapping[bytes, bytes],
  path: str = "the index",
) -> Dict[bytes, protos.BundleEntryProto]:
  """The entries that make each alias a second key of its target's value.

  Args:
    entries: The index's entries (slice entries included), by key.
    aliases: Alias key -> existing key. An alias that already exists with
      the same value is skipped.
    path: The index, for messages.

  Returns:
    New entries by key: a whole tensor's copy, or a partitioned tensor's
    full entry plus one copy per slice under the alias's slice keys.

  Raises:
    errors.CorruptCheckpointError: A target is missing, or an alias key
      already holds another value.
  """
  added: Dict[bytes, protos.BundleEntryProto] = {}

  def put(key: bytes, entry: protos.BundleEntryProto) -> None:
    existing = entries.get(key, added.get(key))
    if existing is not None:
      if _same_data(existing, entry):
        return
      raise errors.CorruptCheckpointError(
        f"Cannot alias `{tensor_slice.key_text(key)}` in `{path}`: the key "
        "already holds another tensor. Rename the variable so its TF1 name "
        "does not collide with another key, or save with tf1_names=False."
      )
    added[key] = _copy(entry)

  for alias, target in aliases.items():
    entry = entries.get(target)
    if entry is None:
      raise errors.CorruptCheckpointError(
        f"`{path}` has no key `{tensor_slice.key_text(target)}` to alias as "
        f"`{tensor_slice.key_text(alias)}`; the checkpoint is incomplete."
      )
    for proto in entry.slices:
      part = tensor_slice.TensorSlice.from_proto(proto)
      put(
        tensor_slice.slice_key(alias, part),
        entries[tensor_slice.slice_key(target, part)],
      )
    put(alias, entry)
  return added


def add_to_index(
  path: str, data: bytes, aliases: Mapping[bytes, bytes]
) -> bytes:
  """An index's bytes with aliases added (see `alias_entries`).

  Args:
    path: The index file, for messages.
    data: Its bytes, as TensorFlow wrote them.
    aliases: Alias key -> existing key.

  Raises:
    errors.CorruptCheckpointError: The index does not parse, or see
      `alias_entries`.
  """
  items = table.decode_table(path, data)
  if not items or items[0][0] != bundle.HEADER_KEY:
    raise errors.CorruptCheckpointError(f"`{path}` has no header entry.")
  header = protos.BundleHeaderProto()
  header.ParseFromString(items[0][1])
  entries = {}
  for key, value in items[1:]:
    entry = protos.BundleEntryProto()
    entry.ParseFromString(value)
    entries[key] = entry
  entries.update(alias_entries(entries, aliases, path))
  return bundle.encode_index(header, entries.items())
