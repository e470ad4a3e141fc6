"""What the TF2 saver saves under which key, and the aliases it adds.

Not public API. `build` turns what a model checkpoints (`scaffold(var_list=,
step=)`, by default what a TF1 `Saver()` saves) into the `Saver` var_list of
`tf2_saver.Tf2Saver`: every variable at `var_list/<escaped TF1 name>/...`
(`keys.variable_key`), a lookup table as an object-graph node
(`saveables`), the step at `step/...`, the object graph, and the save
counter; and the index aliases each save gets (`global_step`, and with
`tf1_names` every TF1 name). A distributed variable (a `MirroredVariable`
of `RunConfig(train_distribute=...)`, the step included) is saved through
the saveable its strategy gives it, made under its key
(`distributed_saveables`). See `tf2_saver` for why these keys.
"""

import dataclasses
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf
from tensorflow.python.framework import constant_op
from tensorflow.python.ops import control_flow_ops
from tensorflow.python.ops import variables as variables_lib
from tensorflow.python.training.saving import saveable_object
from tensorflow.python.training.saving import saveable_object_util

from estimator_ckpt import errors
from estimator_ckpt._src import distributed_saveables
from estimator_ckpt._src import saveables
from estimator_ckpt._src.format import aliases
from estimator_ckpt._src.format import keys

tf1 = tf.compat.v1

VarList = Union[Mapping[str, Any], Sequence[Any]]


@dataclasses.dataclass
class SaverKeys:
  """What `build` decided.

  Attributes:
    by_key: The `Saver` var_list: TF2 key -> what is saved under it.
    tf1_name_by_key: TF2 key -> the TF1 name of what it holds.
    values_by_key: TF2 key -> the model's value (shape checks on restore).
    aliases: Alias key -> the key whose bytes it names, added to each index.
    tf1_values: TF1 name -> value, what a TF1 `Saver` of the same model
      saves (the `also_write_tf1` copy).
  """

  by_key: Dict[str, Any]
  tf1_name_by_key: Dict[str, str]
  values_by_key: Dict[str, Any]
  aliases: Dict[bytes, bytes]
  tf1_values: Dict[str, Any]


class SaveOnlySaveable(saveable_object.SaveableObject):
  """Saves a tensor under a key but restores nothing.

  Used for the object graph proto and the save counter: both are written on
  every save and ignored on restore, so a checkpoint without them (TF1)
  still restores.
  """

  def __init__(self, tensor: tf.Tensor, name: str):
    spec = saveable_object.SaveSpec(
      tensor, "", name, dtype=tensor.dtype, device=tensor.device
    )
    super().__init__(tensor, [spec], name)

  def restore(self, restored_tensors, restored_shapes):
    del restored_tensors, restored_shapes  # Nothing to restore.
    return control_flow_ops.no_op()


def _partitioned_shape_and_dtype(value) -> Optional[Tuple[List[int], str]]:
  """Full shape and dtype name of a partitioned variable, else None."""
  parts = (
    list(value)
    if isinstance(value, (list, tuple, variables_lib.PartitionedVariable))
    else None
  )
  if not parts:
    return None
  info = parts[0]._get_save_slice_info()  # pylint: disable=protected-access
  return list(info.full_shape), parts[0].dtype.base_dtype.name


def shape_and_dtype(value) -> Optional[Tuple[List[int], str]]:
  """The full shape and dtype a variable (or its partitions) restores."""
  partitioned = _partitioned_shape_and_dtype(value)
  if partitioned is not None:
    return partitioned
  if isinstance(value, saveable_object.SaveableObject):
    return None
  shape = value.shape
  if not shape.is_fully_defined():
    return None
  return shape.as_list(), value.dtype.base_dtype.name


def names_to_values(requested: Optional[VarList]) -> Dict[str, Any]:
  """TF1 name -> variable (or partitions, or saveable) to checkpoint."""
  if requested is None:
    # What a TF1 Saver() saves: global variables and SAVEABLE_OBJECTS.
    requested = variables_lib._all_saveable_objects()  # pylint: disable=protected-access
  if isinstance(requested, Mapping):
    return dict(requested)
  # A distributed variable (of a `tf.distribute` strategy) stays itself,
  # under the name a TF1 Saver gives its saveable (`_common_name`): the
  # saveable is made under its key at the end of `build`.
  flat: List[Any] = tf.nest.flatten(list(requested))
  distributed = [v for v in flat if distributed_saveables.is_distributed(v)]
  # As a TF1 Saver does: single variables become their existing read
  # tensors, so the save op adds no read op per variable (5,000 variables
  # build ~10% faster than with Variable objects; scaffold_benchmark).
  by_name = saveable_object_util.op_list_to_dict(
    [v for v in flat if not distributed_saveables.is_distributed(v)]
  )
  # By name, as op_list_to_dict orders the others: the graph is built in
  # the same order whatever the order of var_list.
  for variable in sorted(distributed, key=lambda v: v.name):
    name = variable.name.split(":")[0]
    if by_name.get(name, variable) is not variable:
      raise errors.InvalidArgumentError(
        f"At least two variables have the same name: {name} (a distributed "
        "variable and another, such as one of its own components). Leave "
        "one out of var_list."
      )
    by_name[name] = variable
  return by_name


def build(
  requested_var_list: Optional[VarList],
  requested_step: Optional[Any],
  tf1_names: bool,
) -> SaverKeys:
  """What the saver saves under which key (see the module docstring).

  Args:
    requested_var_list: `scaffold(var_list=...)`; None for what a TF1
      `Saver()` saves.
    requested_step: `scaffold(step=...)`; None for the global step, if any.
    tf1_names: Alias every variable's TF1 name to its TF2 key.
  """
  tf1_name_by_key: Dict[str, str] = {}
  aliases_by_name: Dict[bytes, bytes] = {}
  by_name = names_to_values(requested_var_list)
  step = requested_step
  if step is None:
    step = tf1.train.get_global_step()
  if step is not None:
    step_name = keys.tensor_name(step)
    by_name = {
      name: value
      for name, value in by_name.items()
      if value is not step and name != step_name
    }
  by_key = {}
  tables = []
  # TF1 name -> what a TF1 Saver saves under it (for `also_write_tf1`).
  tf1_values = dict(by_name)
  for name, value in by_name.items():
    if isinstance(value, saveable_object.SaveableObject):
      keyed = saveables.tf2_keyed(value)
      if keyed is not None:
        # A lookup table: a node of the object graph (`saveables`).
        tables.append(value.name)
        tf1_name_by_key.update(keyed.tf1_names)
        by_key[keys.table_attribute_key(value.name)] = keyed
        continue
      # Other saveables name their own tensors; they keep their TF1
      # names in both layouts.
      key = name
    else:
      key = keys.variable_key(name)
    tf1_name_by_key[key] = name
    by_key[key] = value
  names = [
    tf1_name_by_key[k]
    for k in by_key
    if not isinstance(by_key[k], saveable_object.SaveableObject)
  ]
  if step is not None:
    by_key[keys.STEP_KEY] = step
    tf1_name_by_key[keys.STEP_KEY] = keys.GLOBAL_STEP_NAME
    tf1_values[keys.GLOBAL_STEP_NAME] = step
  values_by_key = dict(by_key)

  # The step is an int64 scalar variable in practice; then it doubles as
  # the Checkpoint's save counter (an index alias, see format/aliases.py).
  with_save_counter = (
    step is not None
    and step.dtype.base_dtype == tf.int64
    and step.shape.rank == 0
  )
  graph = keys.object_graph(
    names,
    step_name=keys.GLOBAL_STEP_NAME if step is not None else None,
    save_counter=with_save_counter,
    tables=tables,
  )
  with tf.device("cpu:0"):
    graph_tensor = constant_op.constant(
      graph.SerializeToString(), name="object_graph"
    )
  by_key[keys.OBJECT_GRAPH_KEY] = SaveOnlySaveable(
    graph_tensor, keys.OBJECT_GRAPH_KEY
  )
  if step is not None:
    aliases_by_name[keys.GLOBAL_STEP_NAME.encode()] = keys.STEP_KEY.encode()
  if with_save_counter:
    # Saved, not aliased (8 bytes): the object graph names this key, so
    # the index TensorFlow writes must hold it before any rewrite.
    with tf.device(step.device):
      counter = tf.identity(
        step.read_value() if hasattr(step, "read_value") else step,
        name="save_counter",
      )
    by_key[keys.SAVE_COUNTER_KEY] = SaveOnlySaveable(
      counter, keys.SAVE_COUNTER_KEY
    )
  if tf1_names:
    for key, name in tf1_name_by_key.items():
      if key not in (name, keys.STEP_KEY) and aliases.can_alias(name):
        aliases_by_name[name.encode()] = key.encode()
  reads = distributed_saveables.Reads()
  return SaverKeys(
    by_key=reads.saveables(by_key),
    tf1_name_by_key=tf1_name_by_key,
    values_by_key=values_by_key,
    aliases=aliases_by_name,
    tf1_values=reads.saveables(tf1_values),
  )
