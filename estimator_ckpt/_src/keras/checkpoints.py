"""A Keras checkpoint's names as TF1 names, optimizer state as TF1 slots.

Not public API: `convert(..., to="tf1")` and warm start (with
`with_optimizer_slots=True`) ask `tf1_mapping` how a checkpoint written by
Keras (`model.save_weights` in TF format, `tf.train.Checkpoint(model=...,
optimizer=...)`) maps onto what a TF1 Estimator with the matching
`tf.compat.v1.train.*Optimizer` keeps. No TensorFlow is imported: the object
graph and the index say everything.

Model variables already carry their Keras names (`<layer>/<weight>`, the
`full_name` the object graph records, which `layouts` resolves); those are
the names `load_weights` looks up, so they stay. The optimizer is the root's
child `optimizer`:

* legacy optimizers (`tf.keras.optimizers.legacy.*`) record each slot in the
  object graph (`slot_variables`: model variable, slot name, slot variable),
  keep `iter` and their hyperparameters (`beta_1`, `beta_2`, ...) as
  variables;
* new (2.11+) optimizers keep their state under `optimizer/_variables/<i>`,
  named `<optimizer>/<state>/<model variable>`, and the step as
  `_iterations` (`iteration`); hyperparameters other than the learning rate
  are not saved.

Slots map back as in `keras_optimizers` (its table, read backwards), by the
same bytes. `iterations` becomes `global_step` (both int64 scalars: an alias
of the same bytes). TF1 Adam also keeps `beta1_power` and `beta2_power`,
which `AdamOptimizer` starts at beta and multiplies by beta after each step
(tensorflow/python/training/adam.py `_finish`): after `n` steps they are
beta ** (n + 1), the power the next step applies. Keras counts `iterations`
the same way and applies beta ** (iterations + 1)
(keras/src/optimizers/adam.py `update_step`, `local_step = iterations + 1`),
so they are synthesised as `beta ** (iterations + 1)` in float32.

SGD's momentum is the one state whose bytes differ: TF1's
`MomentumOptimizer` accumulates gradients (`a = momentum * a + g; var -= lr
* a`), Keras's SGD accumulates steps (`m = momentum * m - lr * g; var +=
m`), so TF1's slot is synthesised as `m / -lr`, with the learning rate the
checkpoint saves (a legacy optimizer's `decay` applied at `iterations`, as
Keras applies it). A learning-rate schedule is not saved; such a checkpoint
is refused, naming the fix.
"""

import dataclasses
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from estimator_ckpt import errors
from estimator_ckpt._src import reader

GLOBAL_STEP = "global_step"
BETA1_POWER = "beta1_power"
BETA2_POWER = "beta2_power"
# Keras's Adam defaults (keras/src/optimizers/adam.py), used when a new
# optimizer's checkpoint does not say and the caller passes none.
DEFAULT_ADAM_BETAS = (0.9, 0.999)


def parse_adam_betas(values: List[str]) -> Tuple[float, float]:
  """`["0.8", "0.99"]` (a flag's list) as `(beta_1, beta_2)`.

  Raises:
    ValueError: Not two numbers in [0, 1); the message names the flag's
      form.
  """
  try:
    beta_1, beta_2 = (float(v) for v in values)
  except ValueError:
    beta_1 = beta_2 = -1.0
  if not (0.0 <= beta_1 < 1.0 and 0.0 <= beta_2 < 1.0):
    raise ValueError(
      f"{','.join(values)} is not BETA_1,BETA_2: two numbers in [0, 1), "
      "e.g. 0.9,0.999 (Keras's defaults)."
    )
  return beta_1, beta_2


_OPTIMIZER = "optimizer"
_VARIABLES = "_variables"
_NEW_ITERATIONS = "_iterations"
_LEGACY_ITERATIONS = "iter"
_NEW_LEARNING_RATE = "_learning_rate"
_LEGACY_LEARNING_RATE = "learning_rate"
_LEGACY_DECAY = "decay"

# Keras state name -> TF1 slot suffix, by family; new and legacy names.
_SLOTS: Mapping[str, Mapping[str, str]] = {
  "Adam": {"m": "Adam", "v": "Adam_1"},
  "Adagrad": {"accumulator": "Adagrad"},
  "Ftrl": {"accumulator": "Ftrl", "linear": "Ftrl_1"},
  "SGD": {"m": "Momentum", "momentum": "Momentum"},
  "RMSprop": {"velocity": "RMSProp", "rms": "RMSProp"},
}


@dataclasses.dataclass(frozen=True)
class KerasMapping:
  """How a Keras checkpoint reads as a TF1 checkpoint.

  Attributes:
    prefix: The checkpoint prefix.
    family: `Adam`, `Adagrad`, `SGD`, `RMSprop`, `Ftrl`; None: no optimizer
      state in the checkpoint (weights only).
    legacy: A `tf.keras.optimizers.legacy` optimizer wrote it.
    renames: Checkpoint variable name (as `reader.read` resolves it) -> TF1
      name, for the optimizer state and the step (model variables keep
      their names and are not listed).
    synthesized: TF1 name -> value the checkpoint does not hold: Adam's beta
      powers (float32 scalars), SGD's momentum slots (`m / -lr`), the
      momentum slots TF1 RMSProp keeps also without momentum (zeros).
    iterations: The optimizer's step, or None.
    notes: What the caller should know (defaults assumed), one sentence
      each.
  """

  prefix: str
  family: Optional[str]
  legacy: bool
  renames: Mapping[str, str]
  synthesized: Mapping[str, np.ndarray]
  iterations: Optional[int]
  notes: Tuple[str, ...] = ()


def _key_of(node) -> Optional[str]:
  for attribute in node.attributes:
    if attribute.name == "VARIABLE_VALUE":
      return attribute.checkpoint_key
  return None


def _child(graph, node_id: int, name: str) -> Optional[int]:
  for child in graph.nodes[node_id].children:
    if child.local_name == name:
      return child.node_id
  return None


def _family(states: List[str], legacy: bool) -> str:
  """The optimizer family from its per-variable state names."""
  found = set(states)
  if found & {"v", "vhat"} and "m" in found:
    return "Adam"
  if found == {"accumulator"}:
    return "Adagrad"
  if found == {"accumulator", "linear"}:
    return "Ftrl"
  if found & {"velocity", "rms"}:
    return "RMSprop"
  if found == ({"momentum"} if legacy else {"m"}):
    return "SGD"
  raise errors.IncompatibleCheckpointError(
    "The Keras optimizer state of this checkpoint has states "
    f"{errors.format_names(sorted(found))}, which match no optimizer with a "
    "TF1 counterpart (Adam, Adagrad, SGD with momentum, RMSprop, Ftrl). "
    "Convert or warm-start the weights alone (with_optimizer_slots=False)."
  )


def _tf1_suffix(family: str, state: str, states: List[str]) -> str:
  if family == "RMSprop":
    centered = bool({"average_gradient", "mg"} & set(states))
    if state in ("average_gradient", "mg"):
      return "RMSProp_1"
    if state == "momentum":
      return "RMSProp_2" if centered else "RMSProp_1"
  suffix = _SLOTS[family].get(state)
  if suffix is None:
    raise errors.IncompatibleCheckpointError(
      f"Keras {family} state `{state}` has no TF1 slot (amsgrad's `vhat` "
      "has none: TF1 Adam keeps no maximum). Convert or warm-start the "
      "weights alone (with_optimizer_slots=False)."
    )
  return suffix


def _scalar(contents: reader.Contents, name: str) -> float:
  return float(reader.variable_value(contents, contents.variables[name]))


def _sgd_learning_rate(
  contents: reader.Contents,
  graph,
  optimizer: int,
  legacy: bool,
  iterations: int,
) -> float:
  """The learning rate Keras's SGD applied, to undo its momentum's scale."""
  name_of = {
    key: name
    for name, variable in contents.variables.items()
    for key in variable.keys
  }

  def saved(child_name: str) -> Optional[float]:
    node = _child(graph, optimizer, child_name)
    key = None if node is None else _key_of(graph.nodes[node])
    name = name_of.get(key or "")
    return None if name is None else _scalar(contents, name)

  rate = saved(_LEGACY_LEARNING_RATE if legacy else _NEW_LEARNING_RATE)
  if rate is None or rate == 0.0:
    raise errors.IncompatibleCheckpointError(
      f"`{contents.prefix}` holds the momentum of a Keras SGD, which is "
      "-learning_rate times TF1 MomentumOptimizer's accumulator, but saves "
      f"no (non-zero) learning rate ({rate}; a LearningRateSchedule is not "
      "saved) to convert it back by. Convert or warm-start the weights "
      "alone (warm start with_optimizer_slots=False; for convert, load the "
      "checkpoint into the Keras model and save "
      "tf.train.Checkpoint(model=model)), or train with a constant "
      "learning rate."
    )
  if legacy:
    rate /= 1.0 + (saved(_LEGACY_DECAY) or 0.0) * iterations
  return rate


def tf1_mapping(
  contents: reader.Contents,
  *,
  adam_betas: Optional[Tuple[float, float]] = None,
) -> Optional[KerasMapping]:
  """How a Keras checkpoint's optimizer state reads under TF1 names.

  Args:
    contents: The checkpoint, from `reader.read`.
    adam_betas: `(beta_1, beta_2)` of a new Keras Adam, which does not save
      them. Default: a legacy Adam's saved values, else Keras's defaults
      (0.9, 0.999), noted in `notes`.

  Returns:
    The mapping, or None if the checkpoint was not written by Keras with an
    optimizer (no `optimizer` object with an iteration counter).

  Raises:
    errors.IncompatibleCheckpointError: Optimizer state with no TF1
      counterpart: an unknown optimizer, amsgrad's `vhat`, SGD's momentum
      without a saved learning rate.
  """
  graph = contents.object_graph
  if graph is None or not graph.nodes:
    return None
  optimizer = _child(graph, 0, _OPTIMIZER)
  if optimizer is None:
    return None
  legacy = _child(graph, optimizer, _NEW_ITERATIONS) is None
  step_node = _child(
    graph, optimizer, _LEGACY_ITERATIONS if legacy else _NEW_ITERATIONS
  )
  if step_node is None:
    return None
  name_of = {
    key: name
    for name, variable in contents.variables.items()
    for key in variable.keys
  }
  step_key = _key_of(graph.nodes[step_node])
  step_name = name_of.get(step_key or "")
  if step_name is None:
    return None
  # (model variable name, Keras state, checkpoint name of the state).
  states: List[Tuple[str, str, str]] = []
  if legacy:
    for slot in graph.nodes[optimizer].slot_variables:
      original = name_of.get(
        _key_of(graph.nodes[slot.original_variable_node_id]) or ""
      )
      state = name_of.get(
        _key_of(graph.nodes[slot.slot_variable_node_id]) or ""
      )
      if original is not None and state is not None:
        states.append((original, slot.slot_name, state))
  else:
    holder = _child(graph, optimizer, _VARIABLES)
    optimizer_keys = set()
    if holder is not None:
      for child in graph.nodes[holder].children:
        key = _key_of(graph.nodes[child.node_id])
        if key is not None:
          optimizer_keys.add(key)
    model_names = sorted(
      (
        name
        for name, variable in contents.variables.items()
        if not variable.keys[0].startswith(_OPTIMIZER + "/")
      ),
      key=len,
      reverse=True,
    )
    for key in sorted(optimizer_keys):
      name = name_of.get(key)
      if name is None:
        continue
      for model_name in model_names:
        if name.endswith("/" + model_name):
          head = name[: -len(model_name) - 1]
          states.append((model_name, head.rsplit("/", 1)[-1], name))
          break
  iterations = int(_scalar(contents, step_name))
  renames = {step_name: GLOBAL_STEP}
  synthesized: Dict[str, np.ndarray] = {}
  notes: List[str] = []
  if not states:
    return KerasMapping(contents.prefix, None, legacy, renames, {}, iterations)
  state_names = sorted({state for _, state, _ in states})
  family = _family(state_names, legacy)
  if family == "SGD":
    rate = _sgd_learning_rate(contents, graph, optimizer, legacy, iterations)
    for variable, state, name in states:
      momentum = reader.variable_value(contents, contents.variables[name])
      tf1_name = f"{variable}/{_tf1_suffix(family, state, state_names)}"
      synthesized[tf1_name] = (momentum / momentum.dtype.type(-rate)).astype(
        momentum.dtype
      )
    return KerasMapping(
      contents.prefix, family, legacy, renames, synthesized, iterations
    )
  for variable, state, name in states:
    renames[name] = f"{variable}/{_tf1_suffix(family, state, state_names)}"
  if family == "RMSprop" and "momentum" not in state_names:
    # TF1's RMSPropOptimizer always has a momentum slot (rmsprop.py
    # `_create_slots`); with momentum 0 its value never matters.
    centered = bool({"average_gradient", "mg"} & set(state_names))
    suffix = "RMSProp_2" if centered else "RMSProp_1"
    for variable, state, _ in states:
      if state in ("velocity", "rms"):
        stored = contents.variables[variable]
        synthesized[f"{variable}/{suffix}"] = np.zeros(
          stored.shape, stored.dtype.numpy_dtype()
        )
  if family == "Adam":
    betas = adam_betas
    prefix = step_name.rsplit("/", 1)[0] + "/" if "/" in step_name else ""
    saved = [prefix + "beta_1", prefix + "beta_2"]
    if betas is None and legacy and all(n in contents.variables for n in saved):
      betas = (_scalar(contents, saved[0]), _scalar(contents, saved[1]))
    if betas is None:
      betas = DEFAULT_ADAM_BETAS
      notes.append(
        "The Keras Adam of this checkpoint does not save beta_1 and beta_2; "
        f"beta1_power and beta2_power assume Keras's defaults {betas}. Pass "
        "adam_betas=(beta_1, beta_2) (--adam_betas=BETA_1,BETA_2 to the "
        "convert binary, --warm_start_adam_betas to a trainer) if the model "
        "trained with others."
      )
    for name, beta in zip((BETA1_POWER, BETA2_POWER), betas):
      synthesized[name] = np.power(
        np.float32(beta), np.float32(iterations + 1), dtype=np.float32
      )
  return KerasMapping(
    contents.prefix,
    family,
    legacy,
    renames,
    synthesized,
    iterations,
    tuple(notes),
  )
