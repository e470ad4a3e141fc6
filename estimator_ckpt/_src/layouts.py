"""Which checkpoint keys hold the variable with a given TF1 name.

The one answer to "where is variable `dense/kernel` in this checkpoint?":
`reader` (inspection, conversion, verification), warm start and the Scaffold
factory's `Tf2Saver` all ask `resolve`, which maps every key of a checkpoint's
index (a `bundle.Bundle`, plus its object graph if it is object-based) to a
TF1 variable name and says which layout the key is in. Nothing here imports
TensorFlow or reads tensor bytes.

Layouts (`Layout`), by how a key names its variable:

* `TF1_NAME`: the key is the name. Every key of a name-based (TF1)
  checkpoint; in an object-based one, a key the object graph does not list,
  i.e. one saved by name next to the graph: the Scaffold factory's
  `global_step` alias and TF1-name aliases, the lookup-table saveables of
  its earlier versions.
* `VAR_LIST`: `var_list/<escaped name>/.ATTRIBUTES/VARIABLE_VALUE` and
  `step/.ATTRIBUTES/VARIABLE_VALUE` (`global_step`), as this package and the
  guide's `tf.train.Checkpoint(var_list={name: v}, step=step)` write them,
  and a lookup table's `var_list/<escaped table>/.ATTRIBUTES/table-keys`
  (named `<table>-keys`, as TF1 saves it) and `...-values`
  (`keys.variable_name` decodes them).
* `GUIDE_VARS`: `vars/<escaped name>/...`, the guide's `convert_tf1_to_tf2`.
* `FULL_NAME`: any other object-graph key, named by the `full_name` the graph
  records for it (e.g. `tf.train.Checkpoint(v=var)` of a graph-mode
  variable), if no other key of the graph carries the same `full_name`. A
  sliced key's `full_name` `ShardedVariable` names nothing: it is the default
  name of every `tf.distribute` ShardedVariable (ParameterServerStrategy
  gives its sharded tables no other), so a sharded table is named by its
  `var_list/` key, or listed under its key.
* `STOCK_PARTS`: one tensor per partition, `var_list/emb.Spart_<i>/...`, as
  stock `tf.train.Checkpoint(var_list={v.name: v for v in
  global_variables()})` writes a partitioned variable: a decoded
  `<name>/part_<i>` whose `full_name` is `<name>`; likewise its optimizer
  slots, `emb/part_<i>/Adagrad` whose `full_name` is `emb/Adagrad`. The
  parts are put back together along the one axis in which their shapes
  differ (`slice_geometry.concat_axis`).
* `KEY`: no name: an object-graph key with neither a decodable layout nor a
  unique `full_name` (eager variables all called `Variable`), or a key whose
  name other keys claim with another value. It is listed under its key.

Precedence. Each key claims exactly one name, the first of

  1. its decoded name (`VAR_LIST`, `GUIDE_VARS`, `STOCK_PARTS`),
  2. its object-graph `full_name`, if unique in the graph (`FULL_NAME`),
  3. the key itself (`TF1_NAME`, or `KEY` for an unnamed object path).

Why this order: a decoded name is what the writer stated the variable's TF1
name to be, exact by construction, and it is the only one of the three that
is right for the guide's layouts: `convert_tf1_to_tf2` names every variable
`Variable`, stock partitions all carry the whole variable's `full_name`, and
`Checkpoint(var_list={"new": v})` stores `v` for `new` whatever `v` was
called. A `full_name` is right only when one key carries it (eager variables
share default names), so a shared one names nothing. A raw key comes last
because in an object-based checkpoint it is either saved by name (and then it
is the name) or an object path, which is no TF1 name at all. A key never
answers to a second name (warm start used to let a `var_list/` key also
answer to its `full_name`).

When several keys claim one name:

* if they hold the same value (dtype, shape, size and checksum), they are one
  variable stored twice: the Scaffold factory's `global_step` alias next to
  `step/...` (the converter even shares the bytes). Its `keys` list the
  highest-precedence key first, and its value is read from that key, so
  restore and warm start read `step/...`, never the alias;
* if their values differ, no precedence decides: a stale `global_step` alias
  next to a newer `step/...` must not silently become the step, and letting
  the higher claim win would hide the other tensor. Each key is then listed
  under its own key (for a raw key such as `global_step` that is the name
  itself), layout `KEY`, with a logging warning. Stock parts that cannot be
  reassembled (gaps in the part numbers, different dtypes or ranks) are
  listed the same way.

Where this comes from. These are `reader.read`'s conflict rule and its
order, with warm start's requirement that a `full_name` be unique (the
reader used to merge keys sharing a `full_name` when their values happened
to be equal) and without the reader's exception that let a sliced key's
`full_name` beat its decoded name (no writer makes those two differ; this
package writes the TF1 name as both). Warm start used to let the first claim
win silently and read a name from several keys (a `var_list/` key also under
its `full_name`); `Tf2Saver` tried whole layouts in turn (TF2 keys, TF1
names, a last-wins `full_name` map). No test relied on those differences;
`tests/layouts_test.py` pins the rules above.
"""

import collections
import dataclasses
import enum
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src import slice_geometry
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import tensor_slice

_OBJECT_GRAPH_KEY = keys.OBJECT_GRAPH_KEY.encode()
# `tf.train.Checkpoint`'s save counter counts saves; it is no model variable.
_SAVE_COUNTER_KEY = keys.SAVE_COUNTER_KEY.encode()
# A partition's segment of a variable name: `emb/part_0`, and in the names of
# its optimizer slots, `emb/part_0/Adagrad` (slot_creator names a slot after
# its partition; its `full_name` is the whole slot's, `emb/Adagrad`).
_PART_SEGMENT = re.compile(r"/part_(\d+)(?=/|$)")
# The `full_name` of a ShardedVariable's slices unless it was given a name,
# which ParameterServerStrategy never does (tensorflow/python/distribute/
# sharded_variable.py, parameter_server_strategy_v2.py `_create_variable`).
_SHARDED_VARIABLE_FULL_NAME = "ShardedVariable"
_GUIDE_VARS_PREFIX = keys.GUIDE_CONVERTED_VAR_LIST + "/"


class Layout(enum.Enum):
  """How a checkpoint key names its variable (see the module docstring)."""

  TF1_NAME = "tf1_name"
  VAR_LIST = "var_list"
  GUIDE_VARS = "vars"
  FULL_NAME = "full_name"
  STOCK_PARTS = "stock_parts"
  KEY = "key"


# The precedence of each layout's claim: lower first.
_RANK = {
  Layout.VAR_LIST: 0,
  Layout.GUIDE_VARS: 0,
  Layout.STOCK_PARTS: 0,
  Layout.FULL_NAME: 1,
  Layout.TF1_NAME: 2,
  Layout.KEY: 2,
}


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
    name: Its TF1 name (its key if it has none, see `Layout.KEY`).
    keys: The checkpoint keys that hold it: one, several for an alias (the
      highest-precedence key first, e.g. `step/...` before the `global_step`
      alias), or the keys of stock partitions (sorted). Slice keys are not
      listed; `parts` has them.
    dtype: Its data type.
    shape: Its full shape.
    parts: Whole (one part, `slice` None) or its slices, in order of their
      position for stock partitions.
    layout: The layout of `keys[0]`.
  """

  name: str
  keys: Tuple[str, ...]
  dtype: dtypes.DType
  shape: Tuple[int, ...]
  parts: Tuple[Part, ...]
  layout: Layout

  @property
  def partitioned(self) -> bool:
    return self.parts[0].slice is not None

  @property
  def complete(self) -> bool:
    """Whether the parts hold every element (`slice_geometry.coverage_problem`).

    TF1 writes the optimizer slots of a partition of a partitioned variable
    as a variable of the full shape holding only that partition's slice
    (e.g. `w/part_0/Adagrad`), so a partitioned variable may be partial.
    """
    if not self.partitioned:
      return True
    covered = sum(
      bundle.num_elements(part.slice.shape(self.shape))
      for part in self.parts
      if part.slice is not None
    )
    return covered == bundle.num_elements(self.shape)

  @property
  def nbytes(self) -> int:
    return sum(part.entry.size for part in self.parts)


@dataclasses.dataclass(frozen=True)
class _Claim:
  """One key's claim to a name."""

  key: bytes
  entry: protos.BundleEntryProto
  layout: Layout
  part: Optional[int] = None  # The part number of a stock partition.

  def order(self) -> Tuple[int, bytes]:
    return _RANK[self.layout], self.key


def key_name(key: bytes) -> str:
  """A raw key as text; bytes that are not UTF-8 survive the round trip."""
  return key.decode("utf-8", "surrogateescape")


def _decoded_name(key: str) -> Optional[str]:
  try:
    return keys.variable_name(key)
  except errors.KeyEncodingError:
    return None  # Looks like our layout but is not: an ordinary key.


def _object_graph_claim(
  key: bytes,
  entry: protos.BundleEntryProto,
  full_names: Mapping[str, str],
  full_name_counts: Mapping[str, int],
  graph_keys: frozenset,
) -> Tuple[str, _Claim]:
  """The name an object-based checkpoint's key claims, in precedence order."""
  text = key_name(key)
  full_name = full_names.get(text)
  if entry.slices and full_name == _SHARDED_VARIABLE_FULL_NAME:
    full_name = None  # Every ShardedVariable's; no variable's name.
  decoded = _decoded_name(text)
  if decoded is not None:
    part = _stock_part(decoded, full_name)
    if part is not None and not entry.slices:
      assert full_name is not None
      return full_name, _Claim(key, entry, Layout.STOCK_PARTS, part)
    layout = (
      Layout.GUIDE_VARS
      if text.startswith(_GUIDE_VARS_PREFIX)
      else Layout.VAR_LIST
    )
    return decoded, _Claim(key, entry, layout)
  if full_name and full_name_counts[full_name] == 1:
    return full_name, _Claim(key, entry, Layout.FULL_NAME)
  layout = Layout.KEY if text in graph_keys else Layout.TF1_NAME
  return text, _Claim(key, entry, layout)


def _stock_part(decoded: str, full_name: Optional[str]) -> Optional[int]:
  """The part number if `decoded` is a partition of `full_name`, else None.

  `emb/part_1` of `emb`, and `emb/part_1/Adagrad` of `emb/Adagrad`: the
  optimizer slots of stock partitions are partitions of the whole slot.
  """
  if not full_name:
    return None
  for match in _PART_SEGMENT.finditer(decoded):
    if decoded[: match.start()] + decoded[match.end() :] == full_name:
      return int(match.group(1))
  return None


def _claims(
  checkpoint: bundle.Bundle, graph: Optional[protos.TrackableObjectGraph]
) -> Dict[str, List[_Claim]]:
  """Every tensor key's claim, grouped by the name claimed."""
  claims: Dict[str, List[_Claim]] = {}
  if graph is None:
    for key in checkpoint.tensor_keys():
      claims.setdefault(key_name(key), []).append(
        _Claim(key, checkpoint.entries[key], Layout.TF1_NAME)
      )
    return claims
  full_names = keys.full_names_by_key(graph)
  full_name_counts = collections.Counter(full_names.values())
  graph_keys = frozenset(
    attribute.checkpoint_key
    for node in graph.nodes
    for attribute in node.attributes
  )
  for key in checkpoint.tensor_keys():
    if key in (_OBJECT_GRAPH_KEY, _SAVE_COUNTER_KEY):
      continue  # Not model variables.
    name, claim = _object_graph_claim(
      key, checkpoint.entries[key], full_names, full_name_counts, graph_keys
    )
    claims.setdefault(name, []).append(claim)
  return claims


def _stock_partition(
  name: str, claims: Sequence[_Claim], prefix: str
) -> Tuple[Tuple[int, ...], List[Part]]:
  """Reassembles stock TF2 `<name>/part_<i>` variables as slices.

  Raises:
    errors.IncompatibleCheckpointError: They do not make one tensor.
  """
  claims = sorted(claims, key=lambda claim: claim.part or 0)
  shapes = [bundle.shape_of(claim.entry) for claim in claims]
  indices = [claim.part for claim in claims]

  def fail(why: str) -> errors.IncompatibleCheckpointError:
    return errors.IncompatibleCheckpointError(
      f"`{prefix}` stores variable `{name}` as parts "
      f"{errors.format_names(key_name(c.key) for c in claims)}, but {why}, "
      "so they cannot be reassembled; they are listed under their keys."
    )

  if indices != list(range(len(claims))):
    raise fail(f"the part numbers are {indices}, not 0..{len(claims) - 1}")
  if len({claim.entry.dtype for claim in claims}) != 1:
    raise fail("their dtypes differ")
  if len({len(shape) for shape in shapes}) != 1 or not shapes[0]:
    raise fail("their ranks differ or are 0")
  axis = slice_geometry.concat_axis(shapes)
  if axis is None:
    raise fail(f"their shapes {shapes} differ in more than one axis")
  full_shape = list(shapes[0])
  full_shape[axis] = sum(shape[axis] for shape in shapes)
  slices = []
  start = 0
  for claim, shape in zip(claims, shapes):
    extents = tuple(
      (start, shape[d]) if d == axis else (0, shape[d])
      for d in range(len(shape))
    )
    slices.append(
      Part(claim.key, tensor_slice.TensorSlice(extents), claim.entry)
    )
    start += shape[axis]
  if len(slices) == 1:
    return tuple(full_shape), [dataclasses.replace(slices[0], slice=None)]
  return tuple(full_shape), slices


def _data_location(entry: protos.BundleEntryProto) -> Tuple[int, ...]:
  return (
    entry.dtype,
    entry.shard_id,
    entry.offset,
    entry.size,
    entry.crc32c,
    *bundle.shape_of(entry),
  )


def _value_signature(entry: protos.BundleEntryProto) -> Tuple[int, ...]:
  """Equal for entries holding the same value (dtype, shape, bytes' crc)."""
  return (entry.dtype, entry.size, entry.crc32c, *bundle.shape_of(entry))


def _variable(
  name: str, claims: Sequence[_Claim], checkpoint: bundle.Bundle
) -> Optional[Variable]:
  """Builds one Variable; None if its keys hold different values.

  Raises:
    errors.CorruptCheckpointError: Its slices do not tile it.
    errors.IncompatibleCheckpointError: Stock parts that do not reassemble.
  """
  ordered = sorted(claims, key=_Claim.order)
  primary = ordered[0]
  stock = [claim for claim in claims if claim.layout is Layout.STOCK_PARTS]
  if stock:
    if len(stock) != len(claims):
      return None
    shape, stock_slices = _stock_partition(name, stock, checkpoint.prefix)
    return Variable(
      name,
      tuple(sorted(key_name(c.key) for c in stock)),
      bundle.dtype_of(primary.entry),
      shape,
      tuple(stock_slices),
      Layout.STOCK_PARTS,
    )
  whole = [claim for claim in ordered if not claim.entry.slices]
  if whole and len(whole) != len(ordered):
    return None
  keys_held = tuple(key_name(claim.key) for claim in ordered)
  if whole:
    # Several keys for one name are aliases if they hold the same value: the
    # `global_step` alias next to `step/...` (the converter shares the bytes;
    # the Scaffold factory saves a second copy).
    if len({_value_signature(claim.entry) for claim in ordered}) != 1:
      return None
    return Variable(
      name,
      keys_held,
      bundle.dtype_of(primary.entry),
      bundle.shape_of(primary.entry),
      (Part(primary.key, None, primary.entry),),
      primary.layout,
    )
  shape = bundle.shape_of(primary.entry)
  parts: Dict[tensor_slice.TensorSlice, Part] = {}
  for claim in ordered:
    if (
      claim.entry.dtype != primary.entry.dtype
      or bundle.shape_of(claim.entry) != shape
    ):
      return None
    for part_slice, child_key in checkpoint.slices(claim.key):
      child = checkpoint.entries[child_key]
      previous = parts.get(part_slice)
      if previous and _data_location(previous.entry) != _data_location(child):
        return None
      parts.setdefault(part_slice, Part(child_key, part_slice, child))
  problem = slice_geometry.coverage_problem(shape, list(parts))
  if problem:
    raise errors.CorruptCheckpointError(
      f"Partitioned variable `{name}` in "
      f"`{bundle.index_filename(checkpoint.prefix)}` (key "
      f"{errors.format_names(keys_held)}) is inconsistent: {problem}. The "
      "checkpoint is damaged or was assembled from different saves; "
      "restore it from a backup or use an earlier checkpoint."
    )
  return Variable(
    name,
    keys_held,
    bundle.dtype_of(primary.entry),
    shape,
    tuple(parts.values()),
    primary.layout,
  )


def key_variable(checkpoint: bundle.Bundle, key: bytes) -> Variable:
  """The tensor under one raw key (whole or sliced), named by the key.

  Its layout is `KEY`, whatever name the key claims in `resolve`.

  Raises:
    errors.CorruptCheckpointError: Its slices do not tile it.
  """
  variable = _variable(
    key_name(key),
    [_Claim(key, checkpoint.entries[key], Layout.KEY)],
    checkpoint,
  )
  assert variable is not None  # One claim never conflicts.
  return variable


def resolve(
  checkpoint: bundle.Bundle, graph: Optional[protos.TrackableObjectGraph]
) -> Dict[str, Variable]:
  """Every variable of a checkpoint, by TF1 name, in the precedence above.

  Args:
    checkpoint: The checked index (`bundle.read`).
    graph: Its parsed object graph (the `_CHECKPOINTABLE_OBJECT_GRAPH`
      tensor); None for a name-based (TF1) checkpoint.

  Returns:
    Name -> Variable, sorted by name. Every tensor key belongs to exactly
    one variable (slice keys through their tensor's key); the object graph
    key to none.

  Raises:
    errors.CorruptCheckpointError: A partitioned variable's slices do not
      tile it.
  """
  variables: Dict[str, Variable] = {}
  for name, claims in _claims(checkpoint, graph).items():
    try:
      variable = _variable(name, claims, checkpoint)
    except errors.IncompatibleCheckpointError as e:
      logging.warning("%s", e)  # Stock parts that do not reassemble.
    else:
      if variable is not None:
        variables[name] = variable
        continue
      logging.warning(
        "%s: keys %s all claim variable name %s with different values; "
        "listing each under its key.",
        checkpoint.prefix,
        errors.format_names(sorted(key_name(c.key) for c in claims)),
        name,
      )
    for claim in claims:
      variables[key_name(claim.key)] = key_variable(checkpoint, claim.key)
  return dict(sorted(variables.items()))


def find(
  checkpoint: bundle.Bundle, variables: Mapping[str, Variable], name: str
) -> Optional[Variable]:
  """The variable with a TF1 name, or the tensor under a raw key.

  Args:
    checkpoint: The checked index.
    variables: What `resolve` returned for it.
    name: A TF1 name such as `dense/kernel`, or a raw key such as
      `var_list/dense.Skernel/.ATTRIBUTES/VARIABLE_VALUE` (its own tensor,
      also if it is one stock partition or an alias).

  Returns:
    By name first, then the tensor under that key (`key_variable`), then the
    variable that lists `name` among its keys; None if none.
  """
  variable = variables.get(name)
  if variable is not None:
    return variable
  key = name.encode("utf-8", "surrogateescape")
  if key in checkpoint.entries and not tensor_slice.is_slice_key(key):
    return key_variable(checkpoint, key)
  for candidate in variables.values():
    if name in candidate.keys:
      return candidate
  return None
