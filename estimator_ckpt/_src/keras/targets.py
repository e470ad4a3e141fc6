"""The variables `load_weights` fills: a model's, a module's or a dict's.

Not public API. A target is a built Keras model or layer, a `tf.Module` or a
dict `{tf1_name: variable}`; `collect` lists its variables as `Target`s, each
named as `load_weights` looks it up (before the rename spec applies):

* a variable by its name without the `:0` suffix (Keras: `<layer>/<weight>`,
  with the scopes of enclosing subclassed models: `my_model/dense/kernel`);
* a `ShardedVariable` (`tf.distribute` ParameterServerStrategy, or built by
  hand) once, by the name of its shards without `/part_<i>`, as one logical
  variable whose rows its shards hold in order (`tf.Module.variables` lists
  the shards alone, which would lose which table they belong to);
* a dict entry by its key, whatever the variable's own name.

`rows_request` says which rows of the logical value each shard takes.
"""

import dataclasses
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from estimator_ckpt import errors

# Checkpoint variables and tensors; `ShardedVariable` is TensorFlow's class for
# a variable split in rows (tensorflow/python/distribute/sharded_variable.py),
# public as tf.__internal__ for Keras.
ShardedVariable = tf.__internal__.distribute.ShardedVariable
_SUFFIX_RE = re.compile(r":\d+$")
_PART_RE = re.compile(r"/part_\d+$")


@dataclasses.dataclass(frozen=True)
class Target:
  """One logical variable of a target.

  Attributes:
    name: Its name as `load_weights` looks it up, before renaming.
    variables: The variable, or a ShardedVariable's shards in row order.
    offsets: The first row of each of `variables` in the logical value (0
      for an unsharded variable).
    shape: The logical shape.
    dtype: Its dtype.
    trainable: Whether the optimizer trains it.
  """

  name: str
  variables: Tuple[Any, ...]
  offsets: Tuple[int, ...]
  shape: Tuple[int, ...]
  dtype: tf.dtypes.DType
  trainable: bool

  @property
  def sharded(self) -> bool:
    return len(self.variables) > 1 or self.offsets != (0,)

  def rows(self, index: int) -> Tuple[int, int]:
    """The rows `[start, end)` of the logical value that shard `index` holds."""
    start = self.offsets[index]
    return start, start + int(self.variables[index].shape[0])


def variable_name(variable: Any) -> str:
  """A variable's name without the `:0` output suffix."""
  return _SUFFIX_RE.sub("", variable.name)


def _shape(variable: Any) -> Tuple[int, ...]:
  return tuple(int(d) for d in variable.shape)


def _whole(name: str, variable: Any) -> Target:
  return Target(
    name=name,
    variables=(variable,),
    offsets=(0,),
    shape=_shape(variable),
    dtype=variable.dtype.base_dtype,
    trainable=bool(variable.trainable),
  )


def _sharded(name: str, sharded: Any) -> Target:
  shards = tuple(sharded.variables)
  offsets, start = [], 0
  for shard in shards:
    offsets.append(start)
    start += int(shard.shape[0])
  return Target(
    name=name,
    variables=shards,
    offsets=tuple(offsets),
    shape=_shape(sharded),
    dtype=shards[0].dtype.base_dtype,
    trainable=bool(shards[0].trainable),
  )


def _sharded_name(sharded: Any) -> str:
  # ParameterServerStrategy names the shards `<name>/part_<i>` and the
  # ShardedVariable itself `ShardedVariable` (parameter_server_strategy_v2.py
  # `_create_variable`), so the shards carry the table's name.
  return _PART_RE.sub("", variable_name(sharded.variables[0]))


def _is_variable(value: Any) -> bool:
  return isinstance(value, tf.Variable) or (
    # Distributed variables (MirroredVariable, ...) are not tf.Variables in
    # every TensorFlow version; they all have these.
    hasattr(value, "assign")
    and hasattr(value, "name")
    and hasattr(value, "dtype")
  )


def _from_dict(target: Mapping[Any, Any]) -> List[Target]:
  targets = []
  for name, value in target.items():
    if not isinstance(name, str):
      raise errors.ArgumentTypeError(
        f"load_weights: target dict key {name!r} is not a string. Key the "
        "dict by the variables' TF1 names, e.g. {'dense/kernel': variable}."
      )
    if isinstance(value, ShardedVariable):
      targets.append(_sharded(name, value))
    elif _is_variable(value):
      targets.append(_whole(name, value))
    else:
      raise errors.ArgumentTypeError(
        f"load_weights: target dict entry `{name}` is a "
        f"{type(value).__name__}, not a variable. Map TF1 names to "
        "tf.Variables (or ShardedVariables)."
      )
  return targets


def _module_variables(target: tf.Module) -> List[Any]:
  if isinstance(target, tf.keras.layers.Layer):
    if not target.built:
      raise errors.InvalidArgumentError(
        f"load_weights: Keras {type(target).__name__} `{target.name}` is not "
        "built, so it has no variables yet. Call it on a batch of inputs (or "
        "`build` it) before loading."
      )
    return list(target.weights)
  return list(target.variables)


def _from_module(target: tf.Module) -> List[Target]:
  # `Module.variables` flattens a ShardedVariable into its shards; find the
  # ShardedVariables themselves to keep each table whole.
  shardeds = list(
    target._flatten(  # pylint: disable=protected-access  (tf.Module's walker)
      predicate=lambda value: isinstance(value, ShardedVariable)
    )
  )
  targets: List[Target] = []
  seen = set()
  for sharded in shardeds:
    if id(sharded) in seen:
      continue
    seen.add(id(sharded))
    seen.update(id(shard) for shard in sharded.variables)
    targets.append(_sharded(_sharded_name(sharded), sharded))
  for variable in _module_variables(target):
    if isinstance(variable, ShardedVariable):
      if id(variable) not in seen:
        seen.add(id(variable))
        seen.update(id(shard) for shard in variable.variables)
        targets.append(_sharded(_sharded_name(variable), variable))
      continue
    if id(variable) in seen:
      continue
    seen.add(id(variable))
    targets.append(_whole(variable_name(variable), variable))
  return targets


def collect(target: Any) -> List[Target]:
  """The logical variables of a target, named as `load_weights` looks up.

  Args:
    target: A built Keras model or layer, a `tf.Module`, or a dict
      `{tf1_name: variable or ShardedVariable}`.

  Returns:
    One `Target` per variable or ShardedVariable, in the target's order.

  Raises:
    errors.ArgumentTypeError: `target` is none of these, or a dict entry is
      no variable.
    errors.InvalidArgumentError: A Keras target is not built, has no
      variables, or two of its variables have the same name.
  """
  if isinstance(target, Mapping):
    targets = _from_dict(target)
  elif isinstance(target, tf.Module):
    targets = _from_module(target)
  else:
    raise errors.ArgumentTypeError(
      f"load_weights: target is a {type(target).__name__}. Pass a built "
      "Keras model or layer, a tf.Module, or a dict {tf1_name: variable}."
    )
  if not targets:
    raise errors.InvalidArgumentError(
      "load_weights: the target has no variables. Build the model (call it "
      "on a batch) before loading."
    )
  by_name: Dict[str, int] = {}
  for t in targets:
    by_name[t.name] = by_name.get(t.name, 0) + 1
  duplicates = [name for name, count in by_name.items() if count > 1]
  if duplicates:
    raise errors.InvalidArgumentError(
      "load_weights: several variables of the target have the same name "
      f"{errors.format_names(duplicates)}, so a name cannot say which one a "
      "checkpoint variable is for (a Keras layer built by `build()` outside "
      "a model has unscoped names such as `kernel`). Give the layers unique "
      "names and call them on inputs, or pass a dict {tf1_name: variable}."
    )
  return targets


def rows_request(target: Target, index: int) -> Optional[Tuple[int, int]]:
  """The rows `target.variables[index]` holds; None for the whole value."""
  return target.rows(index) if target.sharded else None


def physical_variables(targets: Sequence[Target]) -> List[Any]:
  """Every variable (each shard of a sharded one) of `targets`."""
  return [variable for t in targets for variable in t.variables]
