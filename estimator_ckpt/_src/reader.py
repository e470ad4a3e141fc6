"""Reading a checkpoint of either format by TF1 variable name.

Public: `checkpoint_format`, `list_variables`, `load_variable` (re-exported by
`estimator_ckpt`). The rest is not public API: `read` gives the variables of a
checkpoint for `conversion` and `verification`, and `describe`,
`format_description`, `to_json` serve the inspect binary. `read_rows`,
`format_table` and `latest_checkpoint` serve the guide-scenario binary.

Names are always TF1 variable names, for both formats (`layouts` decides
which keys hold which name, for this module, warm start and the Scaffold
factory alike):
- TF1 (name-based) checkpoints store variables under their names.
- TF2 (object-based) checkpoints store them under object paths. A key of this
  package's layout or the guide's (`var_list/<escaped name>/...`,
  `vars/<escaped name>/...`, `step/...` for the global step) decodes to its
  name (`keys.variable_name`); any other key takes the `full_name` the object
  graph records for it if no other key has the same one; a key with neither
  keeps the key as its name.
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
from typing import Dict, List, Optional, Tuple

import numpy as np

from estimator_ckpt import errors
from estimator_ckpt._src import layouts
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import checksums
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.format import values

TF1 = "tf1"
TF2 = "tf2"
FORMATS = (TF1, TF2)

# Tensors with at most this many elements show their values.
_MAX_VALUE_ELEMENTS = 8
_OBJECT_GRAPH_KEY = keys.OBJECT_GRAPH_KEY.encode()
_ML_DTYPES = ("bfloat16", "float8_e5m2", "float8_e4m3fn", "int4", "uint4")

# Where a variable is; `layouts` decides, for every module.
Part = layouts.Part
Variable = layouts.Variable
key_name = layouts.key_name


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


def _read_object_graph(
  checkpoint: bundle.Bundle,
) -> protos.TrackableObjectGraph:
  entry = checkpoint.entries[_OBJECT_GRAPH_KEY]
  if entry.dtype != dtypes.STRING.enum or bundle.shape_of(entry):
    raise checksums.data_error(
      checkpoint, _OBJECT_GRAPH_KEY, entry, "it is not a scalar string"
    )
  value = values.decode_value(
    entry, values.read_entry_bytes(checkpoint, _OBJECT_GRAPH_KEY, entry)
  )
  graph = protos.TrackableObjectGraph()
  try:
    graph.ParseFromString(value.item())
  except Exception:  # pylint: disable=broad-except  (DecodeError and kin)
    raise checksums.data_error(
      checkpoint,
      _OBJECT_GRAPH_KEY,
      entry,
      "it does not parse as a TrackableObjectGraph",
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
  if _OBJECT_GRAPH_KEY in checkpoint.entries:
    graph = _read_object_graph(checkpoint)
  return Contents(
    prefix,
    TF2 if graph is not None else TF1,
    checkpoint,
    layouts.resolve(checkpoint, graph),
    graph,
  )


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
  return [
    (name, list(variable.shape))
    for name, variable in read(path).variables.items()
  ]


def variable_value(contents: Contents, variable: Variable) -> np.ndarray:
  """A variable's value, partitions assembled, checksums verified."""
  checkpoint = contents.bundle
  where = f"`{variable.name}` of `{contents.prefix}`"
  if not variable.partitioned:
    part = variable.parts[0]
    return values.decode_value(
      part.entry,
      values.read_entry_bytes(checkpoint, part.key, part.entry),
      where,
    )
  values.check_numpy_shape(variable.shape, variable.dtype, where)
  if not variable.complete:
    slices = [str(part.slice) for part in variable.parts]
    raise errors.IncompatibleCheckpointError(
      f"{where} stores only some slices of its shape "
      f"{list(variable.shape)} ({errors.format_names(slices)}): TensorFlow "
      "1 writes the optimizer slots of one partition of a partitioned "
      "variable this way (e.g. `w/part_0/Adagrad`). It has no whole value; "
      "restore it into that partition (a TF1 Saver does), or read a slice "
      "by its key."
    )
  value = np.empty(variable.shape, dtype=variable.dtype.numpy_dtype())
  for part in variable.parts:
    assert part.slice is not None  # Partitioned: every part is a slice.
    index = tuple(
      slice(start, end) for start, end in part.slice.bounds(variable.shape)
    )
    value[index] = values.decode_value(
      part.entry,
      values.read_entry_bytes(checkpoint, part.key, part.entry),
      where,
    )
  return value


def _not_found(contents: Contents, name: str) -> errors.VariableNotFoundError:
  names = list(contents.variables)
  close = difflib.get_close_matches(name, names, n=3)
  hint = f" Did you mean {errors.format_names(close)}?" if close else ""
  layout = ""
  if contents.format == TF1 and keys.variable_name(name) is not None:
    layout = (
      f" `{contents.prefix}` is a name-based (TF1) checkpoint, but "
      f"`{name}` is a TF2 key: pass the TF1 name "
      f"`{keys.variable_name(name)}`."
    )
  return errors.VariableNotFoundError(
    f"`{contents.prefix}` ({contents.format}) has no variable or key "
    f"`{name}`.{layout}{hint} It has {len(names)} variables: "
    f"{errors.format_names(names)}."
  )


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
  variable = layouts.find(contents.bundle, contents.variables, name)
  if variable is None:
    raise _not_found(contents, name)
  return variable_value(contents, variable)


def key_variable(contents: Contents, key: bytes) -> Variable:
  """The tensor under one raw key (whole or sliced), named by the key."""
  return layouts.key_variable(contents.bundle, key)
