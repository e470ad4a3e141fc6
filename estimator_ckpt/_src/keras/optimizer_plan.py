"""What `load_weights` does to a Keras optimizer: its state from TF1 slots.

Not public API. `plan` finds, for every loaded trainable variable, the TF1
slot of each Keras optimizer state (`optimizers` maps the names), the global
step for `iterations` and Adam's beta powers, before anything is assigned;
missing state is an error with `strict`, and the message says which TF1
optimizer the checkpoint's slots belong to.
"""

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

from estimator_ckpt import errors
from estimator_ckpt._src import layouts
from estimator_ckpt._src import reader
from estimator_ckpt._src.keras import optimizers as keras_optimizers
from estimator_ckpt._src.keras import targets as keras_targets


def which_tf1_optimizer(
  contents: reader.Contents, variable_names: Sequence[str]
) -> str:
  """Says which TF1 optimizer made the slots a checkpoint has, if any."""
  found = set()
  for name in variable_names[:50]:
    for suffix, optimizer in keras_optimizers.TF1_SLOT_SUFFIXES.items():
      if f"{name}/{suffix}" in contents.variables:
        found.add(optimizer)
  if not found:
    return (
      " It has no TF1 optimizer slots for these variables at all: load "
      "without the optimizer (optimizer=None)."
    )
  return (
    " It has the slots of "
    + " and ".join(sorted(found))
    + ": pass that optimizer, or optimizer=None to load the weights alone."
  )


@dataclasses.dataclass(frozen=True)
class StateAssignment:
  """A TF1 slot going into one Keras optimizer state of one target."""

  target: keras_targets.Target
  slot: keras_optimizers.Slot
  source: layouts.Variable

  @property
  def label(self) -> str:
    return f"{self.target.name}/{self.slot.keras_name}"


@dataclasses.dataclass
class OptimizerPlan:
  """What `load_weights` will do to the optimizer (built after checks)."""

  spec: keras_optimizers.Spec
  states: List[StateAssignment]
  missing: List[str]
  step: Optional[layouts.Variable]
  beta_powers: Dict[str, layouts.Variable]


def plan(
  optimizer: Any,
  contents: reader.Contents,
  matched: Sequence[Tuple[keras_targets.Target, str]],
  trainable: Sequence[keras_targets.Target],
  strict: bool,
) -> OptimizerPlan:
  """Finds every TF1 name of the optimizer's state; raises if one is missing.

  Args:
    optimizer: The Keras optimizer.
    contents: The checkpoint.
    matched: `(target, checkpoint name)` of every loaded variable.
    trainable: Every trainable target (the optimizer's variables).
    strict: Missing state raises (True) or is listed (False).
  """
  spec = keras_optimizers.spec(optimizer)
  if keras_optimizers.is_built(
    optimizer, keras_targets.physical_variables(trainable)
  ):
    raise errors.InvalidArgumentError(
      f"load_weights: {spec.description} already has state for other "
      "variables (it was used to train another model). Pass a fresh "
      "optimizer; load_weights builds its state for the target."
    )
  states: List[StateAssignment] = []
  missing: List[str] = []
  for target, name in matched:
    if not target.trainable:
      continue
    for slot in spec.slots:
      tf1_name = keras_optimizers.tf1_slot_name(name, slot)
      source = contents.variables.get(tf1_name)
      if source is None:
        missing.append(tf1_name)
      else:
        states.append(StateAssignment(target, slot, source))
  step = contents.variables.get(keras_optimizers.GLOBAL_STEP)
  if step is None:
    missing.append(keras_optimizers.GLOBAL_STEP)
  beta_powers = {}
  for power_name, _ in spec.beta_powers:
    power = contents.variables.get(power_name)
    if power is None:
      missing.append(power_name)
    else:
      beta_powers[power_name] = power
  if missing and strict:
    loaded_trainable = [n for t, n in matched if t.trainable]
    raise errors.IncompatibleCheckpointError(
      f"`{contents.prefix}` ({contents.format}) lacks {len(missing)} TF1 "
      f"names of the {spec.description} state: "
      f"{errors.format_names(missing)}. {spec.description} continues TF1's "
      f"{spec.tf1_optimizer}."
      + which_tf1_optimizer(contents, loaded_trainable)
      + " Or pass strict=False to start the missing state fresh."
    )
  return OptimizerPlan(spec, states, sorted(missing), step, beta_powers)
