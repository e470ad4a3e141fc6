"""Which variables a vocabulary indexes, and whether it changed since.

A warm start copies a variable row for row. When the model indexes it by a
vocabulary that changed since the checkpoint was written (a reordered or
grown word list, a reordered label vocabulary), every moved entry reads
another word's row and nothing fails. This module finds such variables in
two graphs, the checkpoint's and the new model's, and `check` raises
`errors.VocabularyChangedError` before any step, naming the variable, both
vocabularies, the first difference and the `VocabInfo` to pass.

What it sees (both graphs are `GraphDef`s):

* Feature vocabularies: a lookup table initialised from a file
  (`InitializeTableFromTextFileV2`: `categorical_column_with_vocabulary_file`,
  `tf.lookup.index_table_from_file`) or from an in-graph list
  (`LookupTableImportV2`: `categorical_column_with_vocabulary_list`,
  `index_table_from_tensor`), and the variables gathered with its ids
  (`ResourceGather`/`GatherV2` whose indices come from the lookup, as
  `embedding_column` and linear models do, partitioned or not): axis 0.
* Label vocabularies of canned multi-class heads (`label_vocabulary`): the
  head's `class_id_lookup` table, and the output layer's variables with one
  column per class (`.../logits/kernel` and `bias`, linear models' weights
  and `bias_weights`): their last axis.

The checkpoint's graph is its `<prefix>.meta` (TF1 `Saver`), else the model
dir's `graph.pbtxt` (Estimator writes it), else a SavedModel's
`saved_model.pb` (its vocabulary files from `assets/`). What it cannot see
is listed in the README ("Warm-starting across formats").
"""

import collections
import dataclasses
import os
import re
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from google.protobuf import text_format
import numpy as np
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src.storage import registry

# Ops whose output is a variable's value, on the way from a gather to it.
_PASS_THROUGH = frozenset(["Identity", "ReadVariableOp", "Enter"])
_VARIABLE_OPS = frozenset(["VarHandleOp", "VariableV2", "Variable"])
_GATHER_OPS = frozenset(["ResourceGather", "GatherV2", "Gather"])
# How far ids travel from a lookup to their gather (feature columns: ~15).
_MAX_DEPTH = 40
_PARTITION = re.compile(r"/part_\d+$")
# The variables of a canned head's output layer, over the classes.
_LABEL_INDEXED = re.compile(
  r"(^|/)logits/(kernel|bias)$|^linear/linear_model/(.+/weights|bias_weights)$"
)
_LABEL_TABLE = re.compile(r"(^|/)class_id_lookup(/|$)")


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """One vocabulary: its entries and where they came from."""

  entries: Tuple[str, ...]
  path: Optional[str]  # A file's path; None for an in-graph list.

  def describe(self) -> str:
    where = f"file `{self.path}`" if self.path else "in-graph list"
    return f"{where} ({len(self.entries)} entries)"


@dataclasses.dataclass(frozen=True)
class Indexed:
  """A variable (TF1 name) indexed along `axis` by `vocabulary`."""

  variable: str
  axis: int
  vocabulary: Vocabulary
  label: bool


def _node_name(tensor: str) -> str:
  return tensor.lstrip("^").split(":")[0]


def _const_strings(node) -> Optional[Tuple[str, ...]]:
  if node is None or node.op != "Const":
    return None
  value = tf.make_ndarray(node.attr["value"].tensor)
  return tuple(
    v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else str(v)
    for v in np.ravel(value)
  )


def _read_bytes(path: str, what: str) -> Optional[bytes]:
  """The bytes of the file at `path` (any file system), or None.

  None also where the file cannot be read: what the check cannot see it does
  not report.
  """
  try:
    store = registry.for_path(path)
    if not store.exists(path):
      return None
    with store.open_regular(path, what) as f:
      return f.pread(f.size, 0)
  except (errors.Error, OSError):
    return None


def _read_file(path: str, attrs) -> Optional[Tuple[str, ...]]:
  """The keys `InitializeTableFromTextFileV2` would read, or None."""
  data = _read_bytes(path, "vocabulary file")
  if data is None:
    return None
  text = data.decode("utf-8", "backslashreplace")
  lines = text.split("\n")
  if lines and lines[-1] == "":
    lines.pop()
  key_index = attrs["key_index"].i
  if key_index >= 0:
    delimiter = attrs["delimiter"].s.decode() or "\t"
    lines = [line.split(delimiter)[key_index] for line in lines]
  elif key_index == -1:  # Line numbers: no vocabulary to compare.
    return None
  size = attrs["vocab_size"].i
  return tuple(lines[:size] if size > 0 else lines)


class _Graph:
  """A GraphDef's nodes, consumers and lookup tables."""

  def __init__(self, graph_def, assets_dir: Optional[str] = None):
    self.nodes = {node.name: node for node in graph_def.node}
    self.consumers: Dict[str, List[str]] = collections.defaultdict(list)
    for node in graph_def.node:
      for tensor in node.input:
        if not tensor.startswith("^"):
          self.consumers[_node_name(tensor)].append(node.name)
    self.tables: Dict[str, Vocabulary] = {}
    for node in graph_def.node:
      vocabulary = None
      if node.op == "InitializeTableFromTextFileV2" and len(node.input) > 1:
        path_node = self._through(_node_name(node.input[1]))
        paths = _const_strings(path_node)
        if paths:
          path = paths[0]
          if assets_dir is not None:
            asset = os.path.join(assets_dir, os.path.basename(path))
            if registry.for_path(asset).exists(asset):
              path = asset
          entries = _read_file(path, node.attr)
          if entries is not None:
            vocabulary = Vocabulary(entries, path)
      elif node.op == "LookupTableImportV2" and len(node.input) > 1:
        entries = _const_strings(self._through(_node_name(node.input[1])))
        if entries is not None:
          vocabulary = Vocabulary(entries, None)
      if vocabulary is not None:
        table = self._through(_node_name(node.input[0]))
        if table is not None:
          self.tables[table.name] = vocabulary

  def _through(self, name: str):
    node = self.nodes.get(name)
    while node is not None and node.op in _PASS_THROUGH and node.input:
      node = self.nodes.get(_node_name(node.input[0]))
    return node

  def variable_shape(self, name: str) -> Optional[Tuple[int, ...]]:
    node = self.nodes.get(name)
    if node is None or "shape" not in node.attr:
      return None
    return tuple(d.size for d in node.attr["shape"].shape.dim)

  def gathered_by(self, lookup: str) -> List[str]:
    """Variables gathered with ids that flow from the node `lookup`."""
    found = []
    seen = {lookup}
    frontier = [lookup]
    for _ in range(_MAX_DEPTH):
      following = []
      for name in frontier:
        for consumer in self.consumers.get(name, ()):
          node = self.nodes[consumer]
          if node.op in _GATHER_OPS and len(node.input) > 1:
            if _node_name(node.input[1]) == name:
              params = self._through(_node_name(node.input[0]))
              if params is not None and params.op in _VARIABLE_OPS:
                found.append(params.name)
                continue
          if consumer not in seen:
            seen.add(consumer)
            following.append(consumer)
      frontier = following
      if not frontier:
        break
    return found


def indexed_variables(
  graph_def, assets_dir: Optional[str] = None
) -> Dict[str, List[Indexed]]:
  """Variables (TF1 names, partitions merged) and the vocabularies on them."""
  graph = _Graph(graph_def, assets_dir)
  result: Dict[str, List[Indexed]] = collections.defaultdict(list)
  labels = [
    vocabulary
    for table, vocabulary in graph.tables.items()
    if _LABEL_TABLE.search(table)
  ]
  for node in graph.nodes.values():
    if node.op == "LookupTableFindV2" and node.input:
      table = graph._through(_node_name(node.input[0]))  # pylint: disable=protected-access
      vocabulary = graph.tables.get(table.name) if table is not None else None
      if vocabulary is None or _LABEL_TABLE.search(table.name):
        continue
      for variable in graph.gathered_by(node.name):
        name = _PARTITION.sub("", variable)
        entry = Indexed(name, 0, vocabulary, label=False)
        if entry not in result[name]:
          result[name].append(entry)
    elif node.op in _VARIABLE_OPS and len(labels) == 1:
      name = _PARTITION.sub("", node.name)
      shape = graph.variable_shape(node.name)
      # One column per class (a binary head's single logit is no vocabulary
      # axis: reordering its two labels negates it, which VocabInfo cannot).
      if (
        _LABEL_INDEXED.search(name)
        and shape
        and shape[-1] == len(labels[0].entries)
      ):
        entry = Indexed(name, len(shape) - 1, labels[0], label=True)
        if entry not in result[name]:
          result[name].append(entry)
  return dict(result)


def checkpoint_graph(checkpoint: str):
  """The checkpoint's graph (see the module docstring) and assets, or None.

  Args:
    checkpoint: The checkpoint prefix (a SavedModel's `variables/variables`).

  Returns:
    `(graph_def, assets_dir)`, or None when no graph is found.
  """
  data = _read_bytes(checkpoint + ".meta", "meta graph")
  if data is not None:
    proto = tf.compat.v1.MetaGraphDef()
    proto.ParseFromString(data)
    return proto.graph_def, None
  directory = os.path.dirname(checkpoint)
  data = _read_bytes(os.path.join(directory, "graph.pbtxt"), "graph.pbtxt")
  if data is not None:
    graph_def = tf.compat.v1.GraphDef()
    text_format.Parse(data.decode("utf-8"), graph_def)
    return graph_def, None
  export_dir = os.path.dirname(directory)
  data = None
  if os.path.basename(directory) == "variables":
    data = _read_bytes(
      os.path.join(export_dir, "saved_model.pb"), "saved_model.pb"
    )
  if data is not None:
    # pylint: disable=g-import-not-at-top
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString(data)
    if proto.meta_graphs:
      return proto.meta_graphs[0].graph_def, os.path.join(export_dir, "assets")
  return None


def _first_difference(old: Sequence[str], new: Sequence[str]) -> str:
  for i, (a, b) in enumerate(zip(old, new)):
    if a != b:
      return f"entry {i} was {a!r} and is {b!r}"
  if len(old) != len(new):
    i = min(len(old), len(new))
    more = new if len(new) > len(old) else old
    which = "new" if len(new) > len(old) else "old"
    return (
      f"the {which} one has {len(more) - i} more from entry {i} ({more[i]!r})"
    )
  return "none"


def _suggestion(name: str, shape: Sequence[int], old: Indexed, new: Indexed):
  new_path = new.vocabulary.path or "<file of the new list>"
  old_path = old.vocabulary.path or "<file of the old list>"
  size = len(new.vocabulary.entries)
  oov = max(0, shape[new.axis] - size) if len(shape) > new.axis else 0
  return (
    f"vocab_info={{{name!r}: tf.estimator.VocabInfo(new_vocab={new_path!r}, "
    f"new_vocab_size={size}, num_oov_buckets={oov}, "
    f"old_vocab={old_path!r}, axis={new.axis})}}"
  )


def check(
  checkpoint: str,
  graph: tf.Graph,
  warm_started: Mapping[str, str],
  shapes: Mapping[str, Sequence[int]],
  exempt: Iterable[str],
) -> None:
  """Raises if a warm-started variable's vocabulary changed.

  Args:
    checkpoint: The checkpoint prefix read.
    graph: The new model's graph.
    warm_started: Current variable name -> its name in the checkpoint, for
      the variables copied as they are.
    shapes: Current variable name -> its full shape.
    exempt: Variables with a `vocab_info` (remapped, not copied).

  Raises:
    errors.VocabularyChangedError: See the module docstring.
  """
  exempt = set(exempt)
  if not any(name not in exempt for name in warm_started):
    return
  found = checkpoint_graph(checkpoint)
  if found is None:
    return
  old = indexed_variables(found[0], found[1])
  if not old:
    return
  new = indexed_variables(graph.as_graph_def())
  problems = []
  for name, source in sorted(warm_started.items()):
    if name in exempt:
      continue
    for now in new.get(name, ()):
      for before in old.get(source, ()):
        if before.axis != now.axis or before.label != now.label:
          continue
        if before.vocabulary.entries == now.vocabulary.entries:
          continue
        kind = "label vocabulary" if now.label else "vocabulary"
        difference = _first_difference(
          before.vocabulary.entries, now.vocabulary.entries
        )
        shape = list(shapes.get(name, ()))
        fix = (
          f"Pass {_suggestion(name, shape, before, now)}"
          if len(shape) == 2
          else "VocabInfo remaps matrices only: leave it out of "
          "vars_to_warm_start"
        )
        problems.append(
          f"`{name}` (axis {now.axis}) is indexed by a {kind} that changed: "
          f"the checkpoint's model used {before.vocabulary.describe()}, "
          f"this model uses {now.vocabulary.describe()}; first difference: "
          f"{difference}. {fix}."
        )
  if problems:
    raise errors.VocabularyChangedError(
      f"Refusing to warm-start from `{checkpoint}` row for row: "
      f"{len(problems)} variable(s) would be silently misaligned:\n  "
      + "\n  ".join(problems)
      + "\nIn-graph lists need files for VocabInfo: write each list one "
      "entry per line. Or leave such variables out with vars_to_warm_start."
    )
