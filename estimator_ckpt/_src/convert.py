"""Converting checkpoints between TF1 (name-based) and TF2 (object-based).

Public: `convert` (re-exported by `estimator_ckpt`). `plan` is not public API;
the convert binary prints it for `--dry_run`.

A converted checkpoint holds the same tensor bytes under other keys, so
conversion rewrites only the `.index` and copies the data files byte for byte
(or hard-links them with `link=True`); tensors are never loaded into memory,
let alone into `tf.Variable`s as the guide's `convert_tf1_to_tf2` does.
Memory use does not grow with the checkpoint. Copies read the source once,
verify the checksums of the bytes they write, and write with O_DIRECT where
the file system allows (`file_copy.copy_file`).

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

Writes are atomic (`atomic.write_checkpoints`): a reader sees the old
checkpoints or the new ones, never a mix, also after a kill.
"""

import dataclasses
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src import atomic
from estimator_ckpt._src import file_copy
from estimator_ckpt._src import keras_checkpoints
from estimator_ckpt._src import progress
from estimator_ckpt._src import reader
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src.format import aliases
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import checksums
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import remote_files
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.format import values

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


def _sources(src: str, all_checkpoints: bool) -> List[str]:
  if not all_checkpoints:
    return [state_file.resolve(src)]
  if not checkpoint_files.isdir(src):
    raise errors.InvalidArgumentError(
      f"all_checkpoints=True converts every checkpoint of a model_dir, but "
      f"`{src}` is not a directory. Pass the model_dir, or convert this "
      "one checkpoint with all_checkpoints=False."
    )
  return state_file.all_checkpoints(src)


def _real(path: str) -> str:
  """A path with symlinks resolved; a URL as it is."""
  if checkpoint_files.is_url(path):
    return path.rstrip("/")
  return os.path.realpath(path)


def _unique_sources(src: str, all_checkpoints: bool) -> List[str]:
  """The source prefixes, each once; two with one file name are refused."""
  by_basename: Dict[str, str] = {}
  for prefix in _sources(src, all_checkpoints):
    basename = os.path.basename(prefix)
    seen = by_basename.setdefault(basename, prefix)
    if _real(seen) != _real(prefix):
      raise errors.InvalidArgumentError(
        f"`{src}` lists two different checkpoints named `{basename}` "
        f"(`{seen}` and `{prefix}`); a converted model dir can hold only "
        "one. Convert them into separate directories (pass each prefix), "
        "or fix the `checkpoint` state file."
      )
  return list(by_basename.values())


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
    One `Plan` per output checkpoint, the latest last.

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
  for prefix in _unique_sources(src, all_checkpoints):
    if not _is_utf8(os.path.basename(prefix)):
      raise errors.InvalidArgumentError(
        f"The checkpoint file name {_raw(os.path.basename(prefix))} of "
        f"`{src}` is not valid UTF-8, and the `checkpoint` state file that "
        "names it is UTF-8 text. Rename the checkpoint's files (a valid "
        "UTF-8 prefix), then convert."
      )
    plans.append(
      _plan_one(reader.read(prefix), to, renamer, tf1_names, adam_betas)
    )
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


# Destination checks -----------------------------------------------------------


def _is_within(path: str, directory: str) -> bool:
  return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _existing_outputs(dst_dir: str, plans: Sequence[Plan]) -> List[str]:
  names = set(checkpoint_files.listdir(dst_dir))
  existing = []
  if state_file.STATE_FILENAME in names:
    existing.append(state_file.STATE_FILENAME)
  for p in plans:
    # Data files without their index are no checkpoint (a killed writer's
    # objects on a store without rename); the commit replaces them.
    if p.basename + ".index" in names:
      existing += [
        n
        for n in names
        if n == p.basename + ".index" or n.startswith(p.basename + ".data-")
      ]
  return sorted(existing)


def _check_destination(
  src: str, dst_dir: str, plans: Sequence[Plan], overwrite: bool
) -> None:
  real_dst = _real(dst_dir)
  # The source model dir too: its state file may name checkpoints elsewhere.
  source_dirs = [_real(src)] if checkpoint_files.isdir(src) else []
  source_dirs += [os.path.dirname(_real(p.source.prefix)) for p in plans]
  for source_dir in source_dirs:
    if _is_within(real_dst, source_dir):
      raise errors.DestinationExistsError(
        f"dst_dir `{dst_dir}` is the source's directory `{source_dir}` or "
        "inside it. Converting in place would mix the formats in one model "
        "dir; pass a new directory outside the source."
      )
  if checkpoint_files.exists(dst_dir) and not checkpoint_files.isdir(dst_dir):
    raise errors.DestinationExistsError(
      f"dst_dir `{dst_dir}` exists and is not a directory."
    )
  existing = _existing_outputs(dst_dir, plans)
  if existing and not overwrite:
    raise errors.DestinationExistsError(
      f"dst_dir `{dst_dir}` already holds {errors.format_names(existing)}. "
      "Pass overwrite=True (--overwrite) to replace them, or a new "
      "directory."
    )


def _copy_verified(
  source: bundle.Bundle,
  shard_id: int,
  checked_keys: Sequence[bytes],
  dst: str,
  on_bytes: Callable[[int], None],
) -> None:
  """Copies a source data file, verifying the bytes it writes.

  The checksums of `checked_keys`' entries are checked on the bytes as they
  are written: a damaged source is refused.
  """
  ranges = checksums.data_ranges(source, shard_id, checked_keys)
  checkers: List[checksums.StreamChecker] = []

  def new_checker() -> file_copy.Observer:
    checkers.append(checksums.StreamChecker(source, ranges))
    return checkers[-1].update

  file_copy.copy_file(source.data_path(shard_id), dst, on_bytes, new_checker)
  problems = checkers[-1].finish()
  if problems:
    raise errors.CorruptCheckpointError(
      f"Not converting `{source.prefix}`: {len(problems)} tensors fail "
      f"their checksums. First: {problems[0]}"
    )


def _write_plan(
  p: Plan,
  staging: str,
  link: bool,
  reporter: progress.Progress,
  link_state: Dict[str, bool],
) -> None:
  """Writes one output checkpoint into the staging directory."""
  source = p.source.bundle
  out_prefix = os.path.join(staging, p.basename)
  for out_id, source_id in enumerate(p.shards):
    src_path = source.data_path(source_id)
    dst_path = bundle.data_filename(out_prefix, out_id, p.num_shards)
    if link and file_copy.try_link(
      src_path, dst_path, reporter.add, link_state
    ):
      continue  # Linked: the source's own bytes; `verify` checks them.
    _copy_verified(
      source, source_id, p.checked_keys[source_id], dst_path, reporter.add
    )
  if p.extra_shard is not None:
    file_copy.write_file(
      bundle.data_filename(out_prefix, len(p.shards), p.num_shards),
      p.extra_shard,
    )
  file_copy.write_file(
    bundle.index_filename(out_prefix),
    bundle.encode_index(p.header, p.entries.items()),
  )


def _write(plans: Sequence[Plan], dst_dir: str, link: bool, total: int) -> bool:
  """Writes the planned checkpoints atomically; returns whether it linked.

  Args:
    plans: From `plan`.
    dst_dir: Absolute path of the destination (checked already).
    link: Try hard links for data files.
    total: Bytes of data files, for progress.
  """
  reporter = progress.Progress(
    f"{'Linking' if link else 'Copying'} data", total
  )
  link_state: Dict[str, bool] = {}
  # Before the destination changes: each data object fits its upload.
  for p in plans:
    sizes = [p.source.bundle.shard_sizes[i] for i in p.shards]
    for out_id, size in enumerate(sizes):
      remote_files.check_upload_size(
        bundle.data_filename(
          os.path.join(dst_dir, p.basename), out_id, p.num_shards
        ),
        size,
      )

  def write(staging: str) -> None:
    for p in plans:
      _write_plan(p, staging, link, reporter, link_state)

  atomic.write_checkpoints(
    dst_dir,
    [atomic.StagedCheckpoint(p.basename, p.num_shards) for p in plans],
    write,
  )
  return link and not link_state.get("no_links")


def convert(
  src: str,
  dst_dir: str,
  *,
  to: str,
  rename: Optional[rename_rules.RenameArg] = None,
  link: bool = False,
  all_checkpoints: bool = False,
  overwrite: bool = False,
  dry_run: bool = False,
  tf1_names: bool = True,
  adam_betas: Optional[Tuple[float, float]] = None,
) -> str:
  """Converts a checkpoint to TF2 (object-based) or TF1 (name-based).

  Estimator resumes from `dst_dir`: it gets a `checkpoint` state file with
  relative paths. Tensor bytes are copied unchanged (bit-exact, every dtype,
  optimizer slots, partitioned variables as slices); see the module docstring
  for the layouts. The source is only read.

  Args:
    src: A model dir (its latest checkpoint, or all with `all_checkpoints`)
      or a checkpoint prefix such as `model_dir/model.ckpt-100`.
    dst_dir: The output directory, created if missing. It must not be the
      source's directory or inside it, and must not hold files this
      conversion writes (its `checkpoint` state file, or files of the same
      checkpoint names) unless `overwrite`.
    to: `"tf2"`: the Scaffold factory's layout (`var_list/...`, `step`).
      `"tf1"`: variables by TF1 name, from this package's layout, the guide's
      (`var_list/`, `vars/`), or any object-based checkpoint whose variables
      carry names. A Keras checkpoint (`model.save_weights`,
      `tf.train.Checkpoint(model=..., optimizer=...)`) keeps its Keras names
      (`<layer>/<weight>`); its optimizer state becomes TF1 slots
      (`<var>/Adam`, `<var>/Adam_1`, ...), `iterations` the `global_step`,
      and Adam's `beta1_power`/`beta2_power` are written as beta **
      (iterations + 1), so an Estimator resumes where Keras stopped (see
      `keras_checkpoints`). Keras SGD's momentum is refused.
    rename: A rename spec (`rename_rules.parse`: a dict `{from: to}` with
      `/`-scope prefixes, or `(regex, replacement)` pairs) from source TF1
      names to destination names. Default: keep names.
    link: Hard-link the data files instead of copying them (instant, no extra
      disk), falling back to copying where the file system does not allow it.
      Linked bytes are not re-read, so their checksums are not verified (run
      `verify`); copies always are. The files are shared with the source:
      TensorFlow never modifies a written checkpoint, but do not edit them in
      place.
    all_checkpoints: Convert every checkpoint the model dir `src` keeps, not
      only the latest.
    overwrite: Replace output files already in `dst_dir` (its `checkpoint`
      state file and files of the same checkpoint names); other files stay.
    dry_run: Check everything and log the plan, but write nothing.
    tf1_names: With `to="tf2"`, also store each variable under its TF1 name
      as an index alias of the same bytes (no data is written twice), so TF1
      readers (`Saver.restore`, `tf.train.load_variable`, stock warm start)
      find it by name. The object graph is the same either way.
    adam_betas: With `to="tf1"` from a checkpoint of a new Keras Adam
      (which saves no betas): its `(beta_1, beta_2)`, from which TF1's
      `beta1_power` and `beta2_power` are computed. Default: Keras's
      (0.9, 0.999), logged as a warning; a legacy Adam's saved betas win.

  Returns:
    The prefix of the (latest) converted checkpoint in `dst_dir`.

  Raises:
    errors.CheckpointNotFoundError: No checkpoint at `src`.
    errors.CorruptCheckpointError: The source is damaged (index, checksums,
      missing files); nothing is written.
    errors.DestinationExistsError: `dst_dir` holds outputs (and not
      `overwrite`), is not a directory, or is the source or inside it.
    errors.InvalidArgumentError: A bad `to` or empty `dst_dir`, `rename`
      maps two variables onto one name, or the source's state file lists two
      different checkpoints of one name.
    errors.InvalidRenameError: A malformed rename spec, or a rule that
      matches no variable.
    errors.DestinationLockedError: Another conversion is writing `dst_dir`.
    errors.CheckpointIOError: The file system failed (no space,
      permissions, ...); the message names the user's path.
  """
  start = time.monotonic()
  if not dst_dir:
    raise errors.InvalidArgumentError(
      "dst_dir is empty. Pass the directory to write the converted "
      "checkpoint to (`.` for the current directory)."
    )
  plans = plan(
    src,
    to=to,
    rename=rename,
    all_checkpoints=all_checkpoints,
    tf1_names=tf1_names,
    adam_betas=adam_betas,
  )
  # Not os.path.normpath on a URL: it would make `gs://b/x` the local path
  # `gs:/b/x`.
  dst_dir = (
    dst_dir.rstrip("/")
    if checkpoint_files.is_url(dst_dir)
    else os.path.normpath(dst_dir)
  )
  _check_destination(src, dst_dir, plans, overwrite)
  result = os.path.join(dst_dir, plans[-1].basename)
  for p in plans:
    logging.info(
      "%s %s (%s, %d variables) -> %s (%s, %d data file%s)",
      "Would convert" if dry_run else "Converting",
      p.source.prefix,
      p.source.format,
      len(p.mappings),
      os.path.join(dst_dir, p.basename),
      p.to,
      p.num_shards,
      "s" if p.num_shards > 1 else "",
    )
  if dry_run:
    return result

  total = sum(p.copy_bytes for p in plans)
  linked = _write(
    plans,
    dst_dir if checkpoint_files.is_url(dst_dir) else os.path.abspath(dst_dir),
    link,
    total,
  )
  logging.info(
    "Wrote %s (%d checkpoint%s, %s of data %s) in %.2f s.",
    result,
    len(plans),
    "s" if len(plans) > 1 else "",
    progress.size_text(total),
    "linked" if linked else "copied",
    time.monotonic() - start,
  )
  return result
