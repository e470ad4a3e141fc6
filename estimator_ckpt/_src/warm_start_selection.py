"""Which of the graph's variables a warm start takes (see `warm_start`).

Not public API. The graph's variables, a partitioned one once with its parts
(`variables_in_graph`); the default selection, which leaves out the global step
and optimizer state unless asked (`select`, `optimizer_state_names`: the
rules are in `warm_start`'s module docstring); unused rename rules.
"""

import dataclasses
import re
from typing import (
  Dict,
  List,
  Optional,
  Sequence,
  Set,
  Tuple,
)

import tensorflow as tf

# `tf.compat.v1.get_variable` returns PartitionedVariable, which TF does not
# export; stock warm start accepts it in `vars_to_warm_start`.
from tensorflow.python.ops import variables as tf_variables

from estimator_ckpt import errors
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src import warm_start_options
from estimator_ckpt._src.format import keys


@dataclasses.dataclass(frozen=True)
class GraphVariable:
  """One logical variable of the graph: a variable or all its partitions.

  Not public. `name` is its TF1 checkpoint name (a partitioned variable's
  `full_name`), the name stock `warm_start` groups partitions under.
  """

  name: str
  parts: Tuple[tf.Variable, ...]
  shape: Tuple[int, ...]
  dtype: tf.dtypes.DType
  trainable: bool


def variables_in_graph(graph: tf.Graph) -> List[GraphVariable]:
  """The graph's global variables, partitions grouped (TF1 save names)."""
  grouped: Dict[str, List[tf.Variable]] = {}
  for var in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES):
    grouped.setdefault(keys.save_name(var), []).append(var)
  result = []
  for name, parts in grouped.items():
    slice_info = save_slice_info(parts[0])
    if slice_info is not None:
      parts.sort(key=lambda part: tuple(save_slice_info(part).var_offset))
      shape = tuple(slice_info.full_shape)
    else:
      shape = tuple(parts[0].shape.as_list())
    result.append(
      GraphVariable(
        name=name,
        parts=tuple(parts),
        shape=shape,
        dtype=parts[0].dtype.base_dtype,
        trainable=all(p.trainable for p in parts),
      )
    )
  return sorted(result, key=lambda v: v.name)


def save_slice_info(var: tf.Variable):
  """A partition's `SaveSliceInfo` (full name, shape, offset), else None.

  Partitions carry the full variable's name and shape here; stock warm start
  and Saver group partitions by it (saveable_object_util.op_list_to_dict),
  and TF has no public accessor.
  """
  return getattr(var, "_save_slice_info", None)


def select(
  graph: tf.Graph,
  graph_variables: Sequence[GraphVariable],
  options: warm_start_options.Options,
) -> Tuple[List[GraphVariable], List[GraphVariable], List[GraphVariable]]:
  """Splits variables into (excluded by default, selected, not selected)."""
  step = tf.compat.v1.train.get_global_step(graph)
  step_name = step.op.name if step is not None else keys.GLOBAL_STEP_NAME
  optimizer_state = optimizer_state_names(graph_variables)
  selection = options.vars_to_warm_start
  chosen_ids: Optional[Set[int]] = None
  if (
    selection is not None
    and not isinstance(selection, str)
    and all(warm_start_options.is_variable_like(item) for item in selection)
  ):
    chosen_ids = set()
    for item in selection:
      members = (
        list(item)
        if isinstance(item, tf_variables.PartitionedVariable)
        else [item]
      )
      chosen_ids.update(id(member) for member in members)

  excluded, selected, not_selected = [], [], []
  for variable in graph_variables:
    if variable.name in (step_name, keys.GLOBAL_STEP_NAME) or (
      not options.with_optimizer_slots and variable.name in optimizer_state
    ):
      excluded.append(variable)
    elif chosen_ids is not None:
      if any(id(part) in chosen_ids for part in variable.parts):
        selected.append(variable)
      else:
        not_selected.append(variable)
    elif _matches(variable, selection):
      selected.append(variable)
    else:
      not_selected.append(variable)
  return excluded, selected, not_selected


def _matches(
  variable: GraphVariable, selection: warm_start_options.VarsToWarmStart
) -> bool:
  """Stock `vars_to_warm_start` semantics (tf.compat.v1.get_collection)."""
  if selection is None:
    return True
  if isinstance(selection, str):
    if not variable.trainable:
      return False
    patterns = [selection]
  else:
    patterns = list(selection)
  names = [variable.name] + [part.name for part in variable.parts]
  return any(re.match(pattern, name) for pattern in patterns for name in names)


def optimizer_state_names(
  graph_variables: Sequence[GraphVariable],
) -> frozenset:
  """Names of the optimizer's variables (see `warm_start`'s module docstring).

  Non-trainable variables that are colocated with another variable
  (`slot_creator.create_slot`, `Optimizer._create_non_slot_variable` and
  Keras' `OptimizerV2.add_slot` create theirs under `colocate_with(primary)`,
  so their op's `_class` attribute names another variable,
  `loc:@hidden/kernel`; a model variable's names only itself), or aggregated
  `ONLY_FIRST_REPLICA` (Keras' optimizer hyperparameters and `iterations`).
  """
  op_names = {part.op.name for v in graph_variables for part in v.parts}
  names = set()
  for variable in graph_variables:
    if variable.trainable:
      continue
    if any(_is_per_step_setting(part) for part in variable.parts):
      names.add(variable.name)
      continue
    for part in variable.parts:
      groups = {
        group.decode() if isinstance(group, bytes) else group
        for group in part.op.colocation_groups()
      }
      others = {
        group[len("loc:@") :] for group in groups if group.startswith("loc:@")
      } - {part.op.name}
      if others & op_names:
        names.add(variable.name)
        break
  return frozenset(names)


def _is_per_step_setting(part: tf.Variable) -> bool:
  """Whether a variable is aggregated `ONLY_FIRST_REPLICA`.

  `tf.VariableAggregation` and the `VariableAggregationV2` Keras passes are
  distinct enums with the same values (tensorflow/python/ops/variables.py),
  so compare values.
  """
  aggregation = getattr(part, "aggregation", None)
  return (
    aggregation is not None
    and aggregation.value == tf.VariableAggregation.ONLY_FIRST_REPLICA.value
  )


def check_unused_rules(
  renamer: rename_rules.Renamer, selected: Sequence[GraphVariable]
) -> None:
  used = {renamer.matching_rule(variable.name) for variable in selected}
  unused = [rule for rule in renamer.rules() if rule not in used]
  if unused:
    raise errors.InvalidRenameError(
      f"rename rules matched no selected variable: "
      f"{errors.format_names(unused)}. A misspelled rule would silently "
      "warm-start nothing, so this is an error (as with stock "
      "var_name_to_prev_var_name). Selected variables: "
      f"{errors.format_names(v.name for v in selected) or 'none'}."
    )
