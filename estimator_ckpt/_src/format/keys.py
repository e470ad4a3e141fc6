"""The TF1 variable name <-> TF2 object-based checkpoint key mapping.

estimator_ckpt writes TF2 checkpoints in the layout of the TensorFlow guide
"Migrating model checkpoints" (section "TF2 checkpoints in Estimator"), i.e.
what `tf.train.Checkpoint(var_list={name: variable}, step=global_step)` writes:

  var_list/<escaped TF1 name>/.ATTRIBUTES/VARIABLE_VALUE   every variable
  step/.ATTRIBUTES/VARIABLE_VALUE                          the global step
  _CHECKPOINTABLE_OBJECT_GRAPH                             the object graph

Escaping is TensorFlow's own (`trackable_utils.escape_local_name`): `.` becomes
`..` first, then `/` becomes `.S`. Decoding must therefore read left to right;
the guide's `name.replace('.S', '/')` is wrong for names with dots: the name
`a.Sb` is stored as `a..Sb`, which the guide decodes as `a./b`.
"""

import re
from typing import Collection, FrozenSet, Iterable, Mapping, Optional, Tuple

from google.protobuf import message

from estimator_ckpt import errors
from estimator_ckpt._src.format import protos

OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
VARIABLE_VALUE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
VAR_LIST = "var_list"
STEP = "step"
STEP_KEY = STEP + VARIABLE_VALUE_SUFFIX
GLOBAL_STEP_NAME = "global_step"
# `tf.train.Checkpoint`'s own save counter (its `save_counter` attribute).
SAVE_COUNTER = "save_counter"
SAVE_COUNTER_KEY = SAVE_COUNTER + VARIABLE_VALUE_SUFFIX
# The guide's `convert_tf1_to_tf2` stores variables under `vars/`.
GUIDE_CONVERTED_VAR_LIST = "vars"

# Lookup tables (`MutableHashTable`, `DenseHashTable`) are object-graph
# nodes with one attribute, `table` (their `legacy_saveable_name`,
# tensorflow/python/ops/lookup_ops.py), whose tensors are stored under the
# attribute's key plus the suffix of their TF1 save spec: what
# `tf.train.Checkpoint(var_list={name: table})` writes,
#   var_list/<escaped table name>/.ATTRIBUTES/table-keys
#   var_list/<escaped table name>/.ATTRIBUTES/table-values
# and, by TF1 name, `<table name>-keys` and `<table name>-values`.
TABLE_ATTRIBUTE = "table"
TABLE_SUFFIXES = ("-keys", "-values")

_ESCAPE = "."
# `<root>/<escaped local name>/.ATTRIBUTES/VARIABLE_VALUE`; the escaped name
# never contains an unescaped `/`, so this split is unambiguous.
_VAR_KEY_RE = re.compile(r"^([^/]+)/([^/]+)/\.ATTRIBUTES/VARIABLE_VALUE$")
_TABLE_KEY_RE = re.compile(
  r"^"
  + VAR_LIST
  + r"/([^/]+)/\.ATTRIBUTES/"
  + TABLE_ATTRIBUTE
  + r"(-keys|-values)$"
)


def escape(name: str) -> str:
  """Escapes one object-graph local name as TensorFlow does in keys."""
  return name.replace(_ESCAPE, _ESCAPE * 2).replace("/", _ESCAPE + "S")


def unescape(escaped: str) -> str:
  """Inverts `escape`, reading left to right.

  Args:
    escaped: An escaped local name, e.g. `dense.Skernel` or `a..b`.

  Returns:
    The original name, e.g. `dense/kernel` or `a.b`.

  Raises:
    errors.KeyEncodingError: `escaped` holds a `.` not followed by `.` or `S`,
      which `escape` never produces.
  """
  out = []
  i = 0
  while i < len(escaped):
    char = escaped[i]
    if char != _ESCAPE:
      out.append(char)
      i += 1
      continue
    follower = escaped[i + 1 : i + 2]
    if follower == _ESCAPE:
      out.append(_ESCAPE)
    elif follower == "S":
      out.append("/")
    else:
      raise errors.KeyEncodingError(
        f"`{escaped}` is not an escaped TF2 checkpoint name: `.` at offset "
        f"{i} is followed by `{follower}`, but TensorFlow only writes `..` "
        "(for `.`) and `.S` (for `/`). Pass the raw key instead."
      )
    i += 2
  return "".join(out)


def variable_key(name: str, var_list: str = VAR_LIST) -> str:
  """Returns the TF2 checkpoint key of the variable with TF1 name `name`."""
  if name == GLOBAL_STEP_NAME:
    return STEP_KEY
  return f"{var_list}/{escape(name)}{VARIABLE_VALUE_SUFFIX}"


def table_attribute_key(table: str) -> str:
  """The object-graph attribute key of the lookup table named `table`."""
  return f"{VAR_LIST}/{escape(table)}/.ATTRIBUTES/{TABLE_ATTRIBUTE}"


def table_parts(
  name: str, tables: Collection[str]
) -> Optional[Tuple[str, str]]:
  """`(table, suffix)` if `name` is a tensor of one of `tables`, else None."""
  for suffix in TABLE_SUFFIXES:
    if name.endswith(suffix) and name[: -len(suffix)] in tables:
      return name[: -len(suffix)], suffix
  return None


def tables_among(names: Iterable[str]) -> FrozenSet[str]:
  """The lookup tables whose tensors `names` lists, by their TF1 names.

  A name-based checkpoint does not say what a key holds; a table's saveable
  stores exactly `<table>-keys` and `<table>-values`, so names that come as
  such a pair are taken for a table's.
  """
  names = set(names)
  suffix = TABLE_SUFFIXES[0]
  return frozenset(
    name[: -len(suffix)]
    for name in names
    if name.endswith(suffix)
    and all(name[: -len(suffix)] + other in names for other in TABLE_SUFFIXES)
  )


def tensor_key(name: str, tables: Collection[str] = ()) -> str:
  """The TF2 key of TF1 name `name`: a variable's, or a table's tensor's."""
  parts = table_parts(name, tables)
  if parts is None:
    return variable_key(name)
  return table_attribute_key(parts[0]) + parts[1]


def variable_name(key: str) -> Optional[str]:
  """Returns the TF1 variable name stored under a TF2 key, or None.

  Understands this package's layout (`var_list/`, `step`, a lookup table's
  `var_list/<table>/.ATTRIBUTES/table-keys`, named `<table>-keys` as TF1
  saves it) and the guide's `convert_tf1_to_tf2` layout (`vars/`). Other keys
  (optimizer slots of Keras models, `save_counter`, ...) return None: use the
  object graph's `full_name`s for those (see `full_names_by_key`).

  Args:
    key: A checkpoint key.

  Raises:
    errors.KeyEncodingError: The key has our layout but a malformed name.
  """
  if key == STEP_KEY:
    return GLOBAL_STEP_NAME
  match = _TABLE_KEY_RE.match(key)
  if match:
    return unescape(match.group(1)) + match.group(2)
  match = _VAR_KEY_RE.match(key)
  if not match or match.group(1) not in (VAR_LIST, GUIDE_CONVERTED_VAR_LIST):
    return None
  return unescape(match.group(2))


def tensor_name(var) -> str:
  """Returns the TF1 checkpoint name of a variable (its op name, no `:0`)."""
  return var.name[:-2] if var.name.endswith(":0") else var.name


def save_name(var) -> str:
  """The TF1 name a graph variable is saved under; one partition's too.

  A partition of a partitioned variable saves as a slice of the whole
  variable's name (`emb`, not `emb/part_0`): TensorFlow records it in the
  partition's `_save_slice_info`, which stock warm start and `Saver` read
  the same way (`saveable_object_util.op_list_to_dict`); TensorFlow has no
  public accessor.

  Args:
    var: A graph-mode `tf.Variable` (or anything with `op.name`).
  """
  slice_info = getattr(var, "_save_slice_info", None)
  return slice_info.full_name if slice_info is not None else var.op.name


def object_graph(
  names: Iterable[str],
  step_name: Optional[str] = GLOBAL_STEP_NAME,
  *,
  graph: Optional[message.Message] = None,
  save_counter: bool = False,
  tables: Iterable[str] = (),
) -> message.Message:
  """Builds the object graph of `Checkpoint(var_list={...}, step=...)`.

  The graph is what TensorFlow itself writes for that Checkpoint (checked in
  tests/keys_test.py against a real save), with one difference: a partitioned
  variable is one node whose `full_name` is the variable's TF1 name, so that
  `tf.compat.v1.train.warm_start` and `saver.object_graph_key_mapping` find it
  by that name (stock TF has no node for a whole partitioned variable).

  Args:
    names: TF1 names of the variables under `var_list`.
    step_name: TF1 name of the global step, stored under `step`; None for
      none.
    graph: An empty `TrackableObjectGraph` message to fill, of TensorFlow's
      class (`trackable_object_graph_pb2`) or any other with its fields.
      Default: a new one of this package's own descriptor
      (`protos.TrackableObjectGraph`), which serializes to the same bytes
      without importing TensorFlow.
    save_counter: Also a `save_counter` node (key `SAVE_COUNTER_KEY`), as
      `tf.train.Checkpoint.save` writes: without it,
      `Checkpoint(...).restore(path).assert_consumed()` fails on the
      Checkpoint's own unbound save counter. The checkpoint must then hold
      an int64 scalar under `SAVE_COUNTER_KEY`.
    tables: TF1 names of lookup tables under `var_list`, each a node with a
      `table` attribute as `tf.train.Checkpoint` writes it (its `full_name`
      the table's TF1 name), so that a TF2 Checkpoint tracking the table
      restores it. The checkpoint must hold their `-keys` and `-values`.

  Returns:
    The `TrackableObjectGraph` proto to store under `OBJECT_GRAPH_KEY`.
  """
  if graph is None:
    graph = protos.TrackableObjectGraph()
  root = graph.nodes.add()
  root.has_checkpoint_values.value = True

  def add_variable_node(full_name: str, key: str) -> int:
    node_id = len(graph.nodes)
    node = graph.nodes.add()
    node.attributes.add(
      name="VARIABLE_VALUE", full_name=full_name, checkpoint_key=key
    )
    node.has_checkpoint_values.value = True
    return node_id

  def add_table_node(full_name: str, key: str) -> int:
    node_id = len(graph.nodes)
    node = graph.nodes.add()
    node.attributes.add(
      name=TABLE_ATTRIBUTE, full_name=full_name, checkpoint_key=key
    )
    node.has_checkpoint_values.value = True
    return node_id

  if step_name is not None:
    root.children.add(
      node_id=add_variable_node(step_name, STEP_KEY), local_name=STEP
    )
  if save_counter:
    root.children.add(
      node_id=add_variable_node(SAVE_COUNTER, SAVE_COUNTER_KEY),
      local_name=SAVE_COUNTER,
    )
  var_list_id = len(graph.nodes)
  var_list = graph.nodes.add()
  var_list.has_checkpoint_values.value = True
  root.children.add(node_id=var_list_id, local_name=VAR_LIST)
  tables = set(tables)
  children = {name: (add_variable_node, variable_key(name)) for name in names}
  for table in tables:
    children[table] = (add_table_node, table_attribute_key(table))
  for name in sorted(children):
    add_node, key = children[name]
    var_list.children.add(node_id=add_node(name, key), local_name=name)
  return graph


def full_names_by_key(graph: message.Message) -> Mapping[str, str]:
  """Maps each checkpoint key of an object graph to its variable's full name."""
  return {
    attribute.checkpoint_key: attribute.full_name
    for node in graph.nodes
    for attribute in node.attributes
    if attribute.name == "VARIABLE_VALUE" and attribute.full_name
  }
