"""Reading a checkpoint of either format by TF1 variable name.

Public: `checkpoint_format`, `list_variables`, `load_variable` (re-exported by
`estimator_ckpt`). The rest is not public API: `read` gives the variables of a
checkpoint for `conversion` and `verification`, and `describe`,
`format_description`, `to_json` serve the inspect binary. `read_rows`,
`format_table` and `latest_checkpoint` serve the guide-scenario binary.

Names are always TF1 variable names, for both formats:
- TF1 (name-based) checkpoints store variables under their names.
- TF2 (object-based) checkpoints store them under object paths. A key of this
  package's layout or the guide's (`var_list/<escaped name>/...`,
  `vars/<escaped name>/...`, `step/...` for the global step) decodes to its
  name (`keys.variable_name`); any other key takes the `full_name` the object
  graph records for it; a key with neither keeps the key as its name.
- The global step appears once as `global_step`, also when our layout stores
  it twice (`step/...` and the `global_step` alias, same bytes).
- A partitioned variable appears once with its full shape, whether stored as
  slices under one key (TF1 and our layout) or, as stock
  `tf.train.Checkpoint(var_list={v.name: v for v in global_variables()})`
  writes it, as separate `<name>/part_<i>` variables whose object-graph
  `full_name` is `<name>`. Those parts are reassembled along the one axis in
  which their shapes differ (axis 0, as every TF1 partitioner does, if they
  are all the same shape).

Nothing here imports TensorFlow; the files are read by `bundle`.
"""

import dataclasses
import difflib
import re
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import checksums
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.format import values

TF1 = "tf1"
TF2 = "tf2"
FORMATS = (TF1, TF2)

# Tensors with at most this many elements show their values.
_MAX_VALUE_ELEMENTS = 8
_OBJECT_GRAPH_KEY = keys.OBJECT_GRAPH_KEY.encode()
_PART_RE = re.compile(r"^(.*)/part_(\d+)$")
_ML_DTYPES = ("bfloat16", "float8_e5m2", "float8_e4m3fn", "int4", "uint4")


@dataclasses.dataclass(frozen=True)
class Part:
  """Where (part of) a variable's value is stored.

  Attributes:
    key: The data-owning key: a whole tensor's key or a slice key.
    slice: Which part of the variable; None for all of it.
    entry: The key's entry (dtype, shape, shard, offset, size, crc).
  """
  key: bytes
  slice: Optional[tensor_slice.TensorSlice]
  entry: protos.BundleEntryProto


@dataclasses.dataclass(frozen=True)
class Variable:
  """A variable of a checkpoint, by TF1 name.

  Attributes:
    name: Its TF1 name.
    keys: The checkpoint keys that hold it, sorted: one, or several for an
      alias (our layout's `global_step`) or stock TF2 partitions.
    dtype: Its data type.
    shape: Its full shape.
    parts: Whole (one part, `slice` None) or its slices.
  """
  name: str
  keys: Tuple[str, ...]
  dtype: dtypes.DType
  shape: Tuple[int, ...]
  parts: Tuple[Part, ...]

  @property
  def partitioned(self) -> bool:
    return self.parts[0].slice is not None

  @property
  def nbytes(self) -> int:
    return sum(part.entry.size for part in self.parts)


@dataclasses.dataclass(frozen=True)
class Contents:
  """What a checkpoint holds.

  Attributes:
    prefix: The checkpoint prefix.
    format: `tf1` or `tf2`.
    bundle: The checked index.
    variables: By TF1 name, sorted.
    object_graph: The TF2 object graph; None for TF1.
  """
  prefix: str
  format: str
  bundle: bundle.Bundle
  variables: Dict[str, Variable]
  object_graph: Optional[protos.TrackableObjectGraph]


def key_name(key: bytes) -> str:
  """A raw key as text; bytes that are not UTF-8 survive the round trip."""
  return key.decode("utf-8", "surrogateescape")


def _data_location(entry: protos.BundleEntryProto) -> Tuple[int, ...]:
  return (entry.dtype, entry.shard_id, entry.offset, entry.size, entry.crc32c,
          *bundle.shape_of(entry))


def _value_signature(entry: protos.BundleEntryProto) -> Tuple[int, ...]:
  """Equal for entries holding the same value (dtype, shape, bytes' crc)."""
  return (entry.dtype, entry.size, entry.crc32c, *bundle.shape_of(entry))


def _alias_last(key: bytes) -> Tuple[bool, bytes]:
  """Orders our layout's `global_step` alias after the key it aliases."""
  return key == keys.GLOBAL_STEP_NAME.encode(), key


@dataclasses.dataclass
class _Group:
  """The keys that map to one TF1 name, before they become a Variable."""
  whole: List[Tuple[bytes, protos.BundleEntryProto]] = dataclasses.field(
      default_factory=list)
  sliced: List[Tuple[bytes, protos.BundleEntryProto]] = dataclasses.field(
      default_factory=list)
  stock_parts: List[Tuple[int, bytes, protos.BundleEntryProto]] = (
      dataclasses.field(default_factory=list))


def _tf2_name(key: str, entry: protos.BundleEntryProto,
              full_names: Dict[str, str]) -> Tuple[str, Optional[int]]:
  """A TF2 key's TF1 name, and its part index if it is a stock partition."""
  full_name = full_names.get(key)
  try:
    layout_name = keys.variable_name(key)
  except errors.KeyEncodingError:
    layout_name = None
  if layout_name is not None and full_name and not entry.slices:
    match = _PART_RE.match(layout_name)
    if match and match.group(1) == full_name:
      return full_name, int(match.group(2))
  if entry.slices and full_name:
    return full_name, None
  return layout_name or full_name or key, None


def _stock_partition(name: str, parts: List[Tuple[int, bytes,
                                                   protos.BundleEntryProto]],
                     prefix: str) -> Tuple[Tuple[int, ...], List[Part]]:
  """Reassembles stock TF2 `<name>/part_<i>` variables as slices."""
  parts = sorted(parts, key=lambda p: p[0])
  shapes = [bundle.shape_of(entry) for _, _, entry in parts]
  indices = [index for index, _, _ in parts]

  def fail(why: str) -> errors.IncompatibleCheckpointError:
    return errors.IncompatibleCheckpointError(
        f"`{prefix}` stores variable `{name}` as parts "
        f"{errors.format_names(key_name(k) for _, k, _ in parts)}, but {why}, so "
        "they cannot be reassembled; they are listed under their keys.")

  if indices != list(range(len(parts))):
    raise fail(f"the part numbers are {indices}, not 0..{len(parts) - 1}")
  if len({entry.dtype for _, _, entry in parts}) != 1:
    raise fail("their dtypes differ")
  if len({len(shape) for shape in shapes}) != 1 or not shapes[0]:
    raise fail("their ranks differ or are 0")
  differing = [axis for axis in range(len(shapes[0]))
               if len({shape[axis] for shape in shapes}) > 1]
  if len(differing) > 1:
    raise fail(f"their shapes {shapes} differ in more than one axis")
  axis = differing[0] if differing else 0
  full_shape = list(shapes[0])
  full_shape[axis] = sum(shape[axis] for shape in shapes)
  slices = []
  start = 0
  for (_, key, entry), shape in zip(parts, shapes):
    extents = tuple((start, shape[d]) if d == axis else (0, shape[d])
                    for d in range(len(shape)))
    slices.append(Part(key, tensor_slice.TensorSlice(extents), entry))
    start += shape[axis]
  if len(slices) == 1:
    return tuple(full_shape), [dataclasses.replace(slices[0], slice=None)]
  return tuple(full_shape), slices


def _coverage_problem(shape: Sequence[int],
                      slices: Sequence[tensor_slice.TensorSlice]) -> Optional[str]:
  """Why slices do not tile a tensor exactly, or None."""
  boxes = [tensor_slice.bounds(shape) for tensor_slice in slices]
  volume = sum(bundle.num_elements([end - start for start, end in box])
               for box in boxes)
  for i, box in enumerate(boxes):
    for j in range(i):
      if all(start < other_end and other_start < end
             for (start, end), (other_start, other_end) in zip(box, boxes[j])):
        if bundle.num_elements([end - start for start, end in box]):
          return f"slices `{slices[j]}` and `{slices[i]}` overlap"
  if volume != bundle.num_elements(shape):
    return (f"its slices ({', '.join(f'`{s}`' for s in slices)}) cover "
            f"{volume} of its {bundle.num_elements(shape)} elements")
  return None


def _variable(name: str, group: _Group, checkpoint: bundle.Bundle
              ) -> Optional[Variable]:
  """Builds one Variable; None if its keys conflict (listed by key then).

  Raises:
    errors.CorruptCheckpointError: Its slices do not tile it.
  """
  prefix = checkpoint.prefix
  if group.stock_parts:
    if group.whole or group.sliced:
      return None
    try:
      shape, parts = _stock_partition(name, group.stock_parts, prefix)
    except errors.IncompatibleCheckpointError as e:
      logging.warning("%s", e)
      return None
    entry = group.stock_parts[0][2]
    return Variable(name, tuple(sorted(key_name(k) for _, k, _ in
                                       group.stock_parts)),
                    bundle.dtype_of(entry), shape, tuple(parts))
  if group.whole and group.sliced:
    return None
  if group.whole:
    # Several keys for one name are aliases if they hold the same value: our
    # layout's `global_step` next to `step/...` (the converter shares the
    # bytes; the Scaffold factory saves a second copy).
    if len({_value_signature(entry) for _, entry in group.whole}) != 1:
      return None
    ordered = sorted(group.whole, key=lambda item: _alias_last(item[0]))
    key, entry = ordered[0]
    return Variable(name, tuple(key_name(k) for k, _ in ordered),
                    bundle.dtype_of(entry), bundle.shape_of(entry),
                    (Part(key, None, entry),))
  first_entry = group.sliced[0][1]
  shape = bundle.shape_of(first_entry)
  parts = {}
  for key, entry in group.sliced:
    if entry.dtype != first_entry.dtype or bundle.shape_of(entry) != shape:
      return None
    for part_slice, child_key in checkpoint.slices(key):
      child = checkpoint.entries[child_key]
      previous = parts.get(part_slice)
      if previous and _data_location(previous.entry) != _data_location(child):
        return None
      parts.setdefault(part_slice, Part(child_key, part_slice, child))
  problem = _coverage_problem(shape, list(parts))
  if problem:
    raise errors.CorruptCheckpointError(
        f"Partitioned variable `{name}` in `{bundle.index_filename(prefix)}` "
        f"(key {errors.format_names(key_name(k) for k, _ in group.sliced)}) is "
        f"incomplete: {problem}. The checkpoint is damaged or was assembled "
        "from different saves; restore it from a backup or use an earlier "
        "checkpoint.")
  return Variable(name, tuple(sorted(key_name(k) for k, _ in group.sliced)),
                  bundle.dtype_of(first_entry), shape, tuple(parts.values()))


def _read_object_graph(checkpoint: bundle.Bundle
                       ) -> protos.TrackableObjectGraph:
  entry = checkpoint.entries[_OBJECT_GRAPH_KEY]
  if entry.dtype != dtypes.STRING.enum or bundle.shape_of(entry):
    raise checksums.data_error(checkpoint, _OBJECT_GRAPH_KEY, entry,
                            "it is not a scalar string")
  value = values.decode_value(
      entry, values.read_entry_bytes(checkpoint, _OBJECT_GRAPH_KEY, entry))
  graph = protos.TrackableObjectGraph()
  try:
    graph.ParseFromString(value.item())
  except Exception:  # pylint: disable=broad-except  (DecodeError and kin)
    raise checksums.data_error(checkpoint, _OBJECT_GRAPH_KEY, entry,
                            "it does not parse as a TrackableObjectGraph"
                            ) from None
  return graph


def read(path: str) -> Contents:
  """Reads and checks a checkpoint's index; maps its keys to TF1 names.

  Reads the `.index`, the TF2 object graph and the sizes of the data files;
  not the tensors.

  Args:
    path: A model dir (its latest checkpoint) or a checkpoint prefix.

  Returns:
    The checkpoint's `Contents`.

  Raises:
    errors.Error: See `bundle.read` and `state_file.resolve`.
  """
  prefix = state_file.resolve(path)
  checkpoint = bundle.read(prefix)
  graph = None
  groups: Dict[str, _Group] = {}
  if _OBJECT_GRAPH_KEY in checkpoint.entries:
    graph = _read_object_graph(checkpoint)
    full_names = dict(keys.full_names_by_key(graph))
    for key in checkpoint.tensor_keys():
      if key == _OBJECT_GRAPH_KEY:
        continue
      entry = checkpoint.entries[key]
      name, part = _tf2_name(key_name(key), entry, full_names)
      group = groups.setdefault(name, _Group())
      if part is not None:
        group.stock_parts.append((part, key, entry))
      else:
        (group.sliced if entry.slices else group.whole).append((key, entry))
  else:
    for key in checkpoint.tensor_keys():
      entry = checkpoint.entries[key]
      group = groups.setdefault(key_name(key), _Group())
      (group.sliced if entry.slices else group.whole).append((key, entry))

  variables = {}
  for name, group in groups.items():
    variable = _variable(name, group, checkpoint)
    if variable is not None:
      variables[name] = variable
      continue
    # Keys that claim the same name with different values: keep each under
    # its own key rather than guess.
    conflicting = sorted(
        [k for k, _ in group.whole + group.sliced] +
        [k for _, k, _ in group.stock_parts])
    logging.warning(
        "%s: keys %s all claim variable name %s with different values; "
        "listing each under its key.", prefix,
        errors.format_names(map(key_name, conflicting)), name)
    for key in conflicting:
      entry = checkpoint.entries[key]
      variables[key_name(key)] = _solo_variable(checkpoint, key)
  return Contents(prefix, TF2 if graph is not None else TF1, checkpoint,
                  dict(sorted(variables.items())), graph)


def checkpoint_format(path: str) -> str:
  """Whether a checkpoint is name-based (`"tf1"`) or object-based (`"tf2"`).

  A checkpoint is TF2 iff it holds the `_CHECKPOINTABLE_OBJECT_GRAPH` key.
  The index is checked as in `verify` (not the tensor bytes).

  Args:
    path: A model dir (its latest checkpoint) or a checkpoint prefix.

  Returns:
    `"tf1"` or `"tf2"`.

  Raises:
    errors.CheckpointNotFoundError: No checkpoint at `path`.
    errors.CorruptCheckpointError: The index or state file is damaged.
  """
  prefix = state_file.resolve(path)
  return TF2 if _OBJECT_GRAPH_KEY in bundle.read(prefix).entries else TF1


def list_variables(path: str) -> List[Tuple[str, List[int]]]:
  """Sorted `(name, shape)` of every variable, by TF1 name, for both formats.

  Like `tf.train.list_variables`, but TF2 keys are decoded to TF1 names, the
  global step appears once as `global_step`, and a partitioned variable
  appears once with its full shape (see the module docstring).

  Args:
    path: A model dir (its latest checkpoint) or a checkpoint prefix.

  Raises:
    errors.Error: No checkpoint at `path`, or it is damaged.
  """
  return [(name, list(variable.shape))
          for name, variable in read(path).variables.items()]


def variable_value(contents: Contents, variable: Variable) -> np.ndarray:
  """A variable's value, partitions assembled, checksums verified."""
  checkpoint = contents.bundle
  if not variable.partitioned:
    part = variable.parts[0]
    return values.decode_value(
        part.entry, values.read_entry_bytes(checkpoint, part.key, part.entry))
  value = np.empty(variable.shape, dtype=variable.dtype.numpy_dtype())
  for part in variable.parts:
    index = tuple(slice(start, end)
                  for start, end in part.slice.bounds(variable.shape))
    value[index] = values.decode_value(
        part.entry, values.read_entry_bytes(checkpoint, part.key, part.entry))
  return value


def _not_found(contents: Contents, name: str) -> errors.VariableNotFoundError:
  names = list(contents.variables)
  close = difflib.get_close_matches(name, names, n=3)
  hint = f" Did you mean {errors.format_names(close)}?" if close else ""
  layout = ""
  if contents.format == TF1 and keys.variable_name(name) is not None:
    layout = (f" `{contents.prefix}` is a name-based (TF1) checkpoint, but "
              f"`{name}` is a TF2 key: pass the TF1 name "
              f"`{keys.variable_name(name)}`.")
  return errors.VariableNotFoundError(
      f"`{contents.prefix}` ({contents.format}) has no variable or key "
      f"`{name}`.{layout}{hint} It has {len(names)} variables: "
      f"{errors.format_names(names)}.")


def load_variable(path: str, name: str) -> np.ndarray:
  """A variable's value by TF1 name (or raw key), for both formats.

  Partitioned variables come back whole. Checksums are verified. Strings come
  back as an object array of `bytes` (as `tf.train.load_variable` returns
  them).

  Args:
    path: A model dir (its latest checkpoint) or a checkpoint prefix.
    name: A TF1 variable name such as `dense/kernel` or `global_step`, or a
      raw checkpoint key such as `var_list/dense.Skernel/.ATTRIBUTES/
      VARIABLE_VALUE`.

  Returns:
    The value as a numpy array.

  Raises:
    errors.VariableNotFoundError: No such variable or key; the message lists
      close matches.
    errors.Error: No checkpoint at `path`, or it is damaged.
  """
  contents = read(path)
  variable = contents.variables.get(name)
  if variable is None:
    key = name.encode("utf-8", "surrogateescape")
    entry = contents.bundle.entries.get(key)
    if entry is None or tensor_slice.is_slice_key(key):
      for candidate in contents.variables.values():
        if name in candidate.keys:
          variable = candidate
          break
      else:
        raise _not_found(contents, name)
    else:
      variable = key_variable(contents, key)
  return variable_value(contents, variable)


def key_variable(contents: Contents, key: bytes) -> Variable:
  """The tensor under one raw key (whole or sliced), named by the key."""
  return _solo_variable(contents.bundle, key)


def _solo_variable(checkpoint: bundle.Bundle, key: bytes) -> Variable:
  entry = checkpoint.entries[key]
  solo = _Group()
  (solo.sliced if entry.slices else solo.whole).append((key, entry))
  return _variable(key_name(key), solo, checkpoint)
