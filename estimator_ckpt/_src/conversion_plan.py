"""Planning a conversion: the output checkpoints' names, keys and entries.

Not public API. `plan` decides everything `convert` writes, without touching
a file (the convert binary prints it for `--dry_run`): which checkpoints of
the source (its state file's order, its latest), each variable's name and key
in the output, the output's index entries and which source data file each
output data file is.

TF2 output has the layout of the Scaffold factory (`keys.object_graph`):

  var_list/<escaped TF1 name>/.ATTRIBUTES/VARIABLE_VALUE   every variable
  var_list/<escaped table>/.ATTRIBUTES/table-keys          lookup tables
  step/.ATTRIBUTES/VARIABLE_VALUE                          the global step
  save_counter/.ATTRIBUTES/VARIABLE_VALUE                  alias of `step/...`
  global_step                                              alias of `step/...`
  <TF1 name>                                               alias (tf1_names)
  _CHECKPOINTABLE_OBJECT_GRAPH                             keys.object_graph

A partitioned variable stays one entry with its slices (slice keys re-encoded
for the new key), as TF1 stores it. Aliases are index entries sharing their
target's bytes (format/aliases.py): Estimator's `train(max_steps=N)` and
`tf.train.load_variable(dir, 'global_step')` keep working, TF1 readers find
every variable by name, and `tf.train.Checkpoint(...).restore(path)
.assert_consumed()` finds its save counter. The object graph goes into a new,
last data file, so the source's data files are reused unchanged. TF1 output
stores every variable under its name (sources: see `reader` for how TF2 keys
map to names). Converting to the source's own format is allowed (to rename,
or to normalize another TF2 layout).
"""

import dataclasses
import os
from typing import Dict, List, Optional, Tuple

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src import reader
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src.format import aliases
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.format import values
from estimator_ckpt._src.keras import checkpoints as keras_checkpoints
from estimator_ckpt._src.storage import registry

TF1 = reader.TF1
TF2 = reader.TF2

_OBJECT_GRAPH_KEY = keys.OBJECT_GRAPH_KEY.encode()
_ALIAS_KEY = keys.GLOBAL_STEP_NAME.encode()
_SAVE_COUNTER_KEY = keys.SAVE_COUNTER_KEY.encode()
_INT64 = 9  # tensorflow.DataType DT_INT64.
# numpy name -> enum; the first of the types sharing one (int8, not qint8).
_DTYPE_ENUMS = {
  d.numpy_name: d.enum for d in reversed(list(dtypes.DTYPES.values()))
}


@dataclasses.dataclass(frozen=True)
class VariableMapping:
  """Where one variable goes.

  Attributes:
    source_name: Its TF1 name in the source.
    source_keys: Its keys in the source.
    name: Its TF1 name in the destination (after `rename`).
    key: Its key in the destination.
  """

  source_name: str
  source_keys: Tuple[str, ...]
  name: str
  key: str


@dataclasses.dataclass
class Plan:
  """One output checkpoint, before anything is written.

  Attributes:
    source: The source checkpoint.
    to: `tf1` or `tf2`.
    basename: The output prefix's file name (the source's).
    mappings: One per variable, sorted by source name.
    header: The output's header (shard count updated).
    entries: The output's entries, shard ids renumbered.
    shards: Output data file i is source data file `shards[i]`; a new last
      file holds `extra_shard` if that is not None.
    extra_shard: Bytes of a new last data file (the TF2 object graph).
    checked_keys: Per source shard, the data-owning keys the output uses,
      whose checksums a copy verifies.
    latest: Whether the output's state file names this checkpoint as the
      latest (the source's latest).
  """

  source: reader.Contents
  to: str
  basename: str
  mappings: List[VariableMapping]
  header: protos.BundleHeaderProto
  entries: Dict[bytes, protos.BundleEntryProto]
  shards: List[int]
  extra_shard: Optional[bytes]
  checked_keys: Dict[int, List[bytes]]
  latest: bool = False

  @property
  def num_shards(self) -> int:
    return self.header.num_shards

  @property
  def copy_bytes(self) -> int:
    return sum(self.source.bundle.shard_sizes[s] for s in self.shards)


def _check_name(name: str, source_name: str, to: str, prefix: str) -> None:
  problem = None
  if not name:
    problem = "is empty"
  elif name.startswith("\x00"):
    problem = "starts with a NUL byte, which marks slice keys"
  elif to == TF1 and name == keys.OBJECT_GRAPH_KEY:
    problem = "would make the TF1 output look object-based (TF2)"
  elif to == TF2 and not _is_utf8(name):
    raise errors.KeyEncodingError(
      f"`{prefix}` has a variable named {_raw(name)} (from "
      f"{_raw(source_name)}), which is not valid UTF-8; a TF2 checkpoint's "
      "object graph holds names as UTF-8 text. Convert to tf1, or rename "
      "the variable (a `rename` regex such as `(regex, replacement)`)."
    )
  if problem:
    raise errors.InvalidArgumentError(
      f"Renaming `{source_name}` of `{prefix}` gives `{name}`, which "
      f"{problem}. Fix the rename spec."
    )


def _is_utf8(text: str) -> bool:
  try:
    text.encode("utf-8")
  except UnicodeEncodeError:  # Names carry raw bytes as surrogate escapes.
    return False
  return True


def _raw(name: str) -> str:
  return repr(name.encode("utf-8", "surrogateescape"))


def _copied_entry(entry: protos.BundleEntryProto) -> protos.BundleEntryProto:
  copy = protos.BundleEntryProto()
  copy.CopyFrom(entry)
  return copy


def _plan_one(
  contents: reader.Contents,
  to: str,
  renamer: rename_rules.Renamer,
  tf1_names: bool,
  adam_betas: Optional[Tuple[float, float]] = None,
) -> Plan:
  """Plans one output checkpoint: names, keys, entries, shards."""
  prefix = contents.prefix
  keras = None
  if to == TF1:
    keras = keras_checkpoints.tf1_mapping(contents, adam_betas=adam_betas)
  keras_names = dict(keras.renames) if keras is not None else {}
  renamed: Dict[str, reader.Variable] = {}
  sources_of: Dict[str, List[str]] = {}
  for name, variable in contents.variables.items():
    # The user's rules first (`keras_load.tf1_rename` names Keras state
    # itself); what they leave, a Keras checkpoint names as TF1 would.
    if renamer.matching_rule(name) is None:
      name_in_tf1 = keras_names.get(name, name)
    else:
      name_in_tf1 = name
    new_name = renamer(name_in_tf1)
    _check_name(new_name, name, to, prefix)
    sources_of.setdefault(new_name, []).append(name)
    renamed[new_name] = variable
  clashes = {new: old for new, old in sources_of.items() if len(old) > 1}
  if clashes:
    raise errors.InvalidArgumentError(
      f"Renaming the variables of `{prefix}` maps several onto one name: "
      + "; ".join(
        f"{errors.format_names(old)} -> `{new}`"
        for new, old in sorted(clashes.items())
      )
      + ". Fix the rename spec so that every name stays unique."
    )

  has_step = to == TF2 and keys.GLOBAL_STEP_NAME in renamed
  # Lookup tables (`<table>-keys` and `-values`) become object-graph nodes.
  tables = keys.tables_among(renamed) if to == TF2 else frozenset()
  key_of = {
    name: (keys.tensor_key(name, tables) if to == TF2 else name)
    for name in renamed
  }
  entries: Dict[bytes, protos.BundleEntryProto] = {}
  for name, variable in renamed.items():
    key = key_of[name].encode("utf-8", "surrogateescape")
    if not variable.partitioned:
      entries[key] = _copied_entry(variable.parts[0].entry)
      continue
    full = protos.BundleEntryProto(dtype=variable.dtype.enum)
    for dim in variable.shape:
      full.shape.dim.add(size=dim)
    for part in variable.parts:
      assert part.slice is not None  # Partitioned: every part is a slice.
      part.slice.to_proto(full.slices.add())
      entries[tensor_slice.slice_key(key, part.slice)] = _copied_entry(
        part.entry
      )
    entries[key] = full
  step = renamed.get(keys.GLOBAL_STEP_NAME)
  # Index aliases (no data written): `global_step` and the object graph's
  # `save_counter` are the step; with `tf1_names`, each TF1 name is its
  # variable (see format/aliases.py).
  alias_targets: Dict[bytes, bytes] = {}
  with_save_counter = False
  if has_step and step is not None and not step.partitioned:
    step_key = keys.STEP_KEY.encode()
    alias_targets[_ALIAS_KEY] = step_key
    if step.dtype is dtypes.DTYPES[_INT64] and not step.shape:
      alias_targets[_SAVE_COUNTER_KEY] = step_key
      with_save_counter = True
  if to == TF2 and tf1_names:
    for name in renamed:
      if name != keys.GLOBAL_STEP_NAME and aliases.can_alias(name):
        alias_targets[name.encode("utf-8", "surrogateescape")] = key_of[
          name
        ].encode("utf-8", "surrogateescape")
  entries.update(aliases.alias_entries(entries, alias_targets, prefix))

  checked_keys: Dict[int, List[bytes]] = {}
  for variable in renamed.values():
    for part in variable.parts:
      checked_keys.setdefault(part.entry.shard_id, []).append(part.key)
  shards = sorted(checked_keys)
  new_shard_id = {old: new for new, old in enumerate(shards)}
  for entry in entries.values():
    if not entry.slices:
      entry.shard_id = new_shard_id[entry.shard_id]

  extra_shard = None
  if to == TF2:
    graph = keys.object_graph(
      [
        n
        for n in renamed
        if n != keys.GLOBAL_STEP_NAME and keys.table_parts(n, tables) is None
      ],
      step_name=keys.GLOBAL_STEP_NAME if has_step else None,
      graph=protos.TrackableObjectGraph(),
      save_counter=with_save_counter,
      tables=tables,
    )
    extra_shard, crc = values.encode_strings([graph.SerializeToString()])
    entries[_OBJECT_GRAPH_KEY] = protos.BundleEntryProto(
      dtype=dtypes.STRING.enum,
      shard_id=len(shards),
      offset=0,
      size=len(extra_shard),
      crc32c=crc,
    )
  else:
    # Values a Keras checkpoint lacks (Adam's beta powers; SGD's momentum,
    # rescaled), as new entries; every checkpoint has at least one data
    # file.
    extra_shard = _synthesized_entries(
      keras, renamer, entries, len(shards), prefix
    )
    if extra_shard is None and not shards:
      extra_shard = b""
  header = protos.BundleHeaderProto()
  header.CopyFrom(contents.bundle.header)
  header.num_shards = len(shards) + (extra_shard is not None)

  mappings = sorted(
    (
      VariableMapping(old, variable.keys, new, key_of[new])
      for new, variable in renamed.items()
      for old in sources_of[new]
    ),
    key=lambda m: m.source_name,
  )
  return Plan(
    contents,
    to,
    os.path.basename(prefix),
    mappings,
    header,
    entries,
    shards,
    extra_shard,
    checked_keys,
  )


def _synthesized_entries(
  keras: Optional[keras_checkpoints.KerasMapping],
  renamer: rename_rules.Renamer,
  entries: Dict[bytes, protos.BundleEntryProto],
  shard_id: int,
  prefix: str,
) -> Optional[bytes]:
  """Adds a Keras checkpoint's synthesised values; returns their bytes."""
  if keras is None or not keras.synthesized:
    return None
  for note in keras.notes:
    logging.warning("%s: %s", prefix, note)
  data = b""
  for name, value in sorted(keras.synthesized.items()):
    key = renamer(name).encode("utf-8", "surrogateescape")
    if key in entries:
      raise errors.InvalidArgumentError(
        f"`{prefix}` already has a variable `{renamer(name)}`, which the "
        "Keras optimizer's state would be written as. Rename it (rename=)."
      )
    raw = value.astype(value.dtype.newbyteorder("<")).tobytes()
    entry = protos.BundleEntryProto(
      dtype=_DTYPE_ENUMS[value.dtype.name],
      shard_id=shard_id,
      offset=len(data),
      size=len(raw),
      crc32c=crc32c.mask(crc32c.crc32c(raw)),
    )
    for dim in value.shape:
      entry.shape.dim.add(size=dim)
    entries[key] = entry
    data += raw
  return data


def _sources(src: str, all_checkpoints: bool) -> Tuple[List[str], str]:
  """The source prefixes in the state file's order, and the latest."""
  if not all_checkpoints:
    prefix = state_file.resolve(src)
    return [prefix], prefix
  if not checkpoint_files.isdir(src):
    raise errors.InvalidArgumentError(
      f"all_checkpoints=True converts every checkpoint of a model_dir, but "
      f"`{src}` is not a directory. Pass the model_dir, or convert this "
      "one checkpoint with all_checkpoints=False."
    )
  return state_file.listed_checkpoints(src)


def real_path(path: str) -> str:
  """A path with symlinks resolved; a URL as it is."""
  return registry.for_path(path).real(path)


def _unique_sources(src: str, all_checkpoints: bool) -> Tuple[List[str], str]:
  """As `_sources`; two different checkpoints with one file name are refused."""
  prefixes, latest = _sources(src, all_checkpoints)
  by_basename: Dict[str, str] = {}
  for prefix in prefixes:
    basename = os.path.basename(prefix)
    seen = by_basename.setdefault(basename, prefix)
    if real_path(seen) != real_path(prefix):
      raise errors.InvalidArgumentError(
        f"`{src}` lists two different checkpoints named `{basename}` "
        f"(`{seen}` and `{prefix}`); a converted model dir can hold only "
        "one. Convert them into separate directories (pass each prefix), "
        "or fix the `checkpoint` state file."
      )
  return prefixes, latest


def plan(
  src: str,
  *,
  to: str,
  rename: Optional[rename_rules.RenameArg] = None,
  all_checkpoints: bool = False,
  tf1_names: bool = True,
  adam_betas: Optional[Tuple[float, float]] = None,
) -> List[Plan]:
  """Plans a conversion without touching any file (see `convert`).

  Returns:
    One `Plan` per output checkpoint, in the order of the source's state
    file; the source's latest has `latest` set.

  Raises:
    errors.Error: As `convert`, except for destination checks.
  """
  if to not in reader.FORMATS:
    raise errors.InvalidArgumentError(
      f"to={to!r} is not a checkpoint format; pass to='tf2' (object-based) "
      "or to='tf1' (name-based)."
    )
  renamer = rename_rules.parse(rename)
  plans = []
  prefixes, latest = _unique_sources(src, all_checkpoints)
  for prefix in prefixes:
    if not _is_utf8(os.path.basename(prefix)):
      raise errors.InvalidArgumentError(
        f"The checkpoint file name {_raw(os.path.basename(prefix))} of "
        f"`{src}` is not valid UTF-8, and the `checkpoint` state file that "
        "names it is UTF-8 text. Rename the checkpoint's files (a valid "
        "UTF-8 prefix), then convert."
      )
    planned = _plan_one(reader.read(prefix), to, renamer, tf1_names, adam_betas)
    planned.latest = prefix == latest
    plans.append(planned)
  used = {
    renamer.matching_rule(m.source_name) for p in plans for m in p.mappings
  }
  unused = [rule for rule in renamer.rules() if rule not in used]
  if unused:
    names = sorted({m.source_name for p in plans for m in p.mappings})
    raise errors.InvalidRenameError(
      f"rename rules matched no variable of `{src}`: "
      f"{errors.format_names(unused)}. A misspelled rule would silently "
      f"rename nothing, so this is an error. Its variables: "
      f"{errors.format_names(names) or 'none'}."
    )
  return plans
