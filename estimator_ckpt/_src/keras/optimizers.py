"""TF1 optimizer slots <-> the state of Keras 2.15 optimizers.

Not public API: `load_weights` asks `spec` which TF1 names hold a Keras
optimizer's state, builds it with `build`, finds each state variable with
`state_variable` and converts values with `to_keras`. The mapping comes from
the update rules in `tensorflow/python/training/{adam,adagrad,momentum,
rmsprop,ftrl}.py` (and their kernels, `training_ops.cc`) against
`keras/src/optimizers/*.py` and `keras/src/optimizers/legacy/*.py`:

| Keras          | state (new / legacy)        | TF1 slot of `<var>`           |
|----------------|-----------------------------|-------------------------------|
| Adam           | m, v                        | `Adam`, `Adam_1`              |
| Adagrad        | accumulator                 | `Adagrad`                     |
| SGD (momentum) | m / momentum = -lr * accum  | `Momentum`                    |
| RMSprop        | velocity / rms              | `RMSProp`                     |
|   centered     | average_gradient / mg       | `RMSProp_1`                   |
|   momentum > 0 | momentum                    | `RMSProp_1` (`_2` if centered)|
| Ftrl           | accumulator, linear         | `Ftrl`, `Ftrl_1`              |

TF1 slots take the optimizer's name (`AdamOptimizer(name="Adam")`, the
default) and are numbered in order of creation. Every optimizer takes
`iterations` from `global_step`; TF1 Adam's `beta1_power` and `beta2_power`
(beta ** (steps + 1), where Keras computes the same power from `iterations`)
check it.

Why SGD's momentum is rescaled: TF1's `MomentumOptimizer` accumulates
gradients (`a = momentum * a + g; var -= lr * a`), Keras's SGD accumulates
steps (`m = momentum * m - lr * g; var += m`), so `m = -lr * a` continues the
same trajectory for the Keras optimizer's learning rate.
"""

import dataclasses
import math
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from estimator_ckpt import errors

_KERAS = tf.keras.optimizers
_LEGACY = tf.keras.optimizers.legacy
_SCHEDULE = tf.keras.optimizers.schedules.LearningRateSchedule

GLOBAL_STEP = "global_step"
BETA1_POWER = "beta1_power"
BETA2_POWER = "beta2_power"

# TF1 defaults whose Keras counterpart differs.
_TF1_ADAM_EPSILON = 1e-8
_TF1_RMSPROP_EPSILON = 1e-10
_TF1_INITIAL_ACCUMULATOR = 0.1
# An epsilon added to a square root of at least TF1's smallest accumulator
# that changes no float32 result.
_NEGLIGIBLE_EPSILON = 1e-30


@dataclasses.dataclass(frozen=True)
class Slot:
  """One per-variable state of a Keras optimizer and its TF1 slot.

  Attributes:
    keras_name: The state's Keras name (`m`, `velocity`, `rms`, ...).
    attribute: Where a new (2.11+) Keras optimizer keeps the list of these
      (one per variable, by `_index_dict`); None for legacy optimizers, which
      `get_slot(var, keras_name)`.
    tf1_suffix: The TF1 slot is `<var>/<tf1_suffix>`.
    negative_learning_rate: The Keras value is `-lr` times TF1's (SGD).
  """

  keras_name: str
  attribute: Optional[str]
  tf1_suffix: str
  negative_learning_rate: bool = False


@dataclasses.dataclass(frozen=True)
class Spec:
  """What a Keras optimizer keeps, and where TF1 kept it.

  Attributes:
    family: `Adam`, `Adagrad`, `SGD`, `RMSprop` or `Ftrl`.
    legacy: A `tf.keras.optimizers.legacy` optimizer.
    tf1_optimizer: The TF1 optimizer whose checkpoints this one continues.
    slots: Per-variable states, in the optimizer's order.
    beta_powers: `(TF1 name, beta)` of Adam's `beta1_power`, `beta2_power`.
  """

  family: str
  legacy: bool
  tf1_optimizer: str
  slots: Tuple[Slot, ...]
  beta_powers: Tuple[Tuple[str, float], ...] = ()

  @property
  def description(self) -> str:
    prefix = "tf.keras.optimizers." + ("legacy." if self.legacy else "")
    return prefix + self.family


# TF1 slot suffixes by TF1 optimizer, to say which one trained a checkpoint.
TF1_SLOT_SUFFIXES: Mapping[str, str] = {
  "Adam": "AdamOptimizer (tf.keras.optimizers.Adam)",
  "Adagrad": "AdagradOptimizer (tf.keras.optimizers.Adagrad)",
  "Momentum": "MomentumOptimizer (tf.keras.optimizers.SGD with momentum)",
  "RMSProp": "RMSPropOptimizer (tf.keras.optimizers.RMSprop)",
  "Ftrl": "FtrlOptimizer (tf.keras.optimizers.Ftrl)",
}


def _value(value: Any) -> Any:
  if callable(value) and not isinstance(value, (tf.Variable, _SCHEDULE)):
    value = value()
  if isinstance(value, (tf.Variable, tf.Tensor)):
    value = tf.keras.backend.get_value(value)
  return value


def hyper(optimizer: Any, name: str) -> Any:
  """A hyper-parameter's current value (legacy optimizers keep variables)."""
  if isinstance(optimizer, _LEGACY.Optimizer):
    hypers = getattr(optimizer, "_hyper", {})
    if name in hypers:
      return _value(optimizer._get_hyper(name))  # pylint: disable=protected-access
  return _value(getattr(optimizer, name))


def _family(optimizer: Any) -> Tuple[str, bool]:
  for family in ("Adam", "Adagrad", "SGD", "RMSprop", "Ftrl"):
    if isinstance(optimizer, getattr(_KERAS, family)):
      return family, False
    if isinstance(optimizer, getattr(_LEGACY, family)):
      return family, True
  raise errors.ArgumentTypeError(
    f"load_weights: optimizer {type(optimizer).__module__}."
    f"{type(optimizer).__name__} has no TF1 counterpart whose slots this "
    "package maps. Pass tf.keras.optimizers.Adam, Adagrad, SGD, RMSprop or "
    "Ftrl (or their tf.keras.optimizers.legacy versions), or optimizer=None "
    "to load the weights alone."
  )


def spec(optimizer: Any) -> Spec:
  """The state of a Keras optimizer and the TF1 slots that hold it.

  Args:
    optimizer: A Keras optimizer of TF 2.15.

  Returns:
    Its `Spec`; per-variable states depend on its settings (SGD without
    momentum has none; RMSprop has `momentum` only with momentum > 0 and the
    average gradient only if centered).

  Raises:
    errors.ArgumentTypeError: Not one of the supported optimizers.
  """
  family, legacy = _family(optimizer)

  def slot(new_name, attribute, legacy_name, suffix, negative=False):
    if legacy:
      return Slot(legacy_name, None, suffix, negative)
    return Slot(new_name, attribute, suffix, negative)

  if family == "Adam":
    return Spec(
      family,
      legacy,
      "AdamOptimizer",
      (
        slot("m", "_momentums", "m", "Adam"),
        slot("v", "_velocities", "v", "Adam_1"),
      ),
      (
        (BETA1_POWER, float(hyper(optimizer, "beta_1"))),
        (BETA2_POWER, float(hyper(optimizer, "beta_2"))),
      ),
    )
  if family == "Adagrad":
    return Spec(
      family,
      legacy,
      "AdagradOptimizer",
      (slot("accumulator", "_accumulators", "accumulator", "Adagrad"),),
    )
  if family == "SGD":
    slots: Tuple[Slot, ...] = ()
    if float(hyper(optimizer, "momentum")) != 0.0:
      slots = (slot("m", "momentums", "momentum", "Momentum", True),)
    return Spec(family, legacy, "MomentumOptimizer", slots)
  if family == "RMSprop":
    centered = bool(optimizer.centered)
    rms_slots = [slot("velocity", "_velocities", "rms", "RMSProp")]
    if centered:
      rms_slots.append(
        slot("average_gradient", "_average_gradients", "mg", "RMSProp_1")
      )
    if float(hyper(optimizer, "momentum")) > 0.0:
      rms_slots.append(
        slot(
          "momentum",
          "_momentums",
          "momentum",
          "RMSProp_2" if centered else "RMSProp_1",
        )
      )
    return Spec(family, legacy, "RMSPropOptimizer", tuple(rms_slots))
  return Spec(
    family,
    legacy,
    "FtrlOptimizer",
    (
      slot("accumulator", "_accumulators", "accumulator", "Ftrl"),
      slot("linear", "_linears", "linear", "Ftrl_1"),
    ),
  )


def tf1_slot_name(variable_name: str, slot: Slot) -> str:
  return f"{variable_name}/{slot.tf1_suffix}"


def learning_rate(optimizer: Any, step: int) -> float:
  """The learning rate the optimizer applies at its next step after `step`.

  Schedules are evaluated at `step` (Keras evaluates them at `iterations`),
  and a legacy optimizer's `decay` is applied.
  """
  if isinstance(optimizer, _LEGACY.Optimizer):
    rate = optimizer._get_hyper("learning_rate")  # pylint: disable=protected-access
    rate = rate(step) if isinstance(rate, _SCHEDULE) else rate
    decay = float(getattr(optimizer, "_initial_decay", 0.0))
    return float(_value(rate)) / (1.0 + decay * step)
  rate = optimizer._learning_rate  # pylint: disable=protected-access
  if isinstance(rate, _SCHEDULE):
    return float(_value(rate(step)))
  return float(_value(rate))


def is_built(optimizer: Any, variables: Sequence[Any]) -> bool:
  """Whether a new Keras optimizer already has state for other variables."""
  if isinstance(optimizer, _LEGACY.Optimizer):
    return False
  if not getattr(optimizer, "_built", False):
    return False
  index = optimizer._index_dict  # pylint: disable=protected-access
  return any(
    optimizer._var_key(v) not in index  # pylint: disable=protected-access
    for v in variables
  )


def build(optimizer: Any, variables: Sequence[Any]) -> None:
  """Creates the optimizer's state for `variables` (as its first step would).

  Under a `tf.distribute` strategy the state is created in the strategy's
  scope (the variables' strategy), as Keras's `apply_gradients` does, also
  when the caller is outside the scope.
  """
  strategy = getattr(variables[0], "_distribute_strategy", None)
  if strategy is not None and not tf.distribute.has_strategy():
    with strategy.scope():
      _build(optimizer, variables)
  else:
    _build(optimizer, variables)


def _build(optimizer: Any, variables: Sequence[Any]) -> None:
  with tf.init_scope():
    if isinstance(optimizer, _LEGACY.Optimizer):
      # What `apply_gradients` runs first (optimizer_v2.py); no public call
      # creates the slots without taking a step.
      optimizer._create_all_weights(list(variables))  # pylint: disable=protected-access
    else:
      optimizer.build(list(variables))


def state_variable(optimizer: Any, slot: Slot, variable: Any) -> Any:
  """The optimizer's `slot` state variable for a model variable.

  Raises:
    errors.IncompatibleCheckpointError: The optimizer has no such state for
      the variable (it was built for other variables).
  """
  if slot.attribute is None:
    state = optimizer.get_slot(variable, slot.keras_name)
  else:
    index = optimizer._index_dict.get(optimizer._var_key(variable))  # pylint: disable=protected-access
    states = getattr(optimizer, slot.attribute, None)
    state = None if index is None or states is None else states[index]
  if state is None:
    raise errors.InvalidArgumentError(
      f"load_weights: the optimizer has no `{slot.keras_name}` state for "
      f"`{variable.name}`: it was built for other variables. Pass a fresh "
      "optimizer."
    )
  return state


def to_keras(slot: Slot, value: tf.Tensor, rate: float) -> tf.Tensor:
  """A TF1 slot value as the Keras state's value."""
  if slot.negative_learning_rate:
    return value * tf.constant(-rate, dtype=value.dtype)
  return value


def implied_steps(power: float, beta: float) -> Optional[float]:
  """The steps `n` with `beta ** (n + 1) == power`; None if not measurable.

  TF1 Adam starts `beta1_power` at beta1 and multiplies it by beta1 after
  each step. Once it underflows (beta1 = 0.9: after ~900 steps in float32) it
  says nothing.
  """
  if not (0.0 < beta < 1.0) or not (1e-30 < power < 1.0):
    return None
  return math.log(power) / math.log(beta) - 1.0


def check_beta_powers(
  spec_: Spec, step: int, powers: Mapping[str, float]
) -> List[str]:
  """Problems of the beta powers against the global step (empty: agree).

  The float32 product TF1 keeps drifts by about 6e-8 relative per step, so
  the implied step count may be off by `step * 6e-8 / -log(beta)`; a
  difference of more than half a step plus that is a real disagreement.
  """
  problems = []
  for name, beta in spec_.beta_powers:
    if name not in powers:
      continue
    steps = implied_steps(powers[name], beta)
    if steps is None:
      continue
    tolerance = 0.5 + step * 6e-8 / -math.log(beta) * 2
    if abs(steps - step) > tolerance:
      problems.append(
        f"`{name}` = {powers[name]:.9g} is beta ** (n + 1) for n = "
        f"{steps:.2f} steps with the optimizer's beta = {beta:g}, but "
        f"`{GLOBAL_STEP}` is {step}"
      )
  return problems


def advice(
  optimizer: Any,
  spec_: Spec,
  *,
  checkpoint_names: Sequence[str],
  partitioned: bool,
  missing_state: bool,
) -> List[str]:
  """Settings of `optimizer` that make it continue differently from TF1.

  Args:
    optimizer: The Keras optimizer.
    spec_: Its `spec`.
    checkpoint_names: Every variable name of the checkpoint (to see which TF1
      optimizer made its slots).
    partitioned: Some loaded trainable variable is partitioned in the
      checkpoint (an embedding table, typically updated sparsely).
    missing_state: Some trainable variable gets no TF1 state (strict=False),
      so it starts from the optimizer's initial values.

  Returns:
    One sentence per setting: what differs and what to pass instead.
  """
  tips = []
  kind = spec_.description
  if spec_.family == "Adam":
    epsilon = float(hyper(optimizer, "epsilon"))
    if epsilon != _TF1_ADAM_EPSILON:
      tips.append(
        f"{kind}(epsilon={epsilon:g}): TF1's AdamOptimizer defaults to "
        "epsilon=1e-8 (Keras to 1e-7), which changes every step. Pass "
        "epsilon=1e-8 (or your TF1 optimizer's epsilon) to continue TF1's "
        "training exactly."
      )
    if bool(getattr(optimizer, "amsgrad", False)):
      tips.append(
        f"{kind}(amsgrad=True): TF1 Adam keeps no maximum of past `v`; it "
        "starts from the loaded `v`. Pass amsgrad=False to continue TF1's "
        "training exactly."
      )
  if spec_.family == "Adagrad":
    epsilon = float(hyper(optimizer, "epsilon"))
    if spec_.legacy and epsilon > _NEGLIGIBLE_EPSILON:
      # optimizer_v2 turns epsilon=0 into 1e-7 (`epsilon or
      # backend_config.epsilon()`), so 0 cannot be passed.
      tips.append(
        f"{kind}(epsilon={epsilon:g}) adds epsilon after the square root of "
        "the accumulator; TF1's AdagradOptimizer adds none. Pass "
        "epsilon=1e-38 (it replaces 0 by 1e-7), or use "
        "tf.keras.optimizers.Adagrad(epsilon=0), to continue TF1's training "
        "exactly."
      )
    if not spec_.legacy and epsilon != 0.0:
      tips.append(
        f"{kind}(epsilon={epsilon:g}) adds epsilon inside the square root of "
        "the accumulator; TF1's AdagradOptimizer adds none. Pass epsilon=0 to "
        "continue TF1's training exactly."
      )
  if spec_.family in ("Adagrad", "Ftrl") and missing_state:
    initial = float(
      getattr(
        optimizer,
        "initial_accumulator_value",
        getattr(optimizer, "_initial_accumulator_value", 0.1),
      )
    )
    if initial != _TF1_INITIAL_ACCUMULATOR:
      tips.append(
        f"{kind}(initial_accumulator_value={initial:g}): the variables the "
        "checkpoint has no accumulator for start there; TF1 starts at 0.1. "
        "Pass initial_accumulator_value=0.1 to match TF1."
      )
  if spec_.family == "RMSprop":
    epsilon = float(hyper(optimizer, "epsilon"))
    if epsilon != _TF1_RMSPROP_EPSILON:
      tips.append(
        f"{kind}(epsilon={epsilon:g}): TF1's RMSPropOptimizer defaults to "
        "epsilon=1e-10 (Keras to 1e-7). Pass epsilon=1e-10 (or your TF1 "
        "optimizer's epsilon) to continue TF1's training exactly."
      )
    if partitioned and not spec_.legacy:
      tips.append(
        f"{kind} decays the velocity (and momentum) of every row of an "
        "embedding on sparse gradients; TF1 only those of the rows looked "
        "up. Pass tf.keras.optimizers.legacy.RMSprop, which runs TF1's "
        "kernels, to continue embedding tables exactly."
      )
  if spec_.family == "Ftrl" and partitioned and not spec_.legacy:
    tips.append(
      f"{kind} recomputes every row of an embedding from its linear state on "
      "sparse gradients; TF1 only the rows looked up. Pass "
      "tf.keras.optimizers.legacy.Ftrl, which runs TF1's kernels, to continue "
      "embedding tables exactly."
    )
  if spec_.family == "SGD" and spec_.slots and partitioned and not spec_.legacy:
    tips.append(
      f"{kind} decays the momentum of every row of an embedding on sparse "
      "gradients and moves every row by it; TF1 only the rows looked up. "
      "Pass tf.keras.optimizers.legacy.SGD, which runs TF1's kernels, to "
      "continue embedding tables exactly."
    )
  if spec_.family == "SGD":
    has_momentum = any(name.endswith("/Momentum") for name in checkpoint_names)
    if not spec_.slots and has_momentum:
      tips.append(
        f"{kind}(momentum=0): the checkpoint has `<var>/Momentum` slots, so "
        "TF1 trained with MomentumOptimizer. Pass momentum=<its momentum> "
        "(and nesterov=<its use_nesterov>) to continue with them."
      )
  return tips


def keras_state_name(spec_: Spec, variable_name: str, slot: Slot) -> str:
  """The name a Keras checkpoint gives a variable's optimizer state.

  New optimizers name it `<state>/<variable>` (`add_variable_from_reference`),
  legacy ones `<variable>/<state>` (`add_slot`); `tf.train.Checkpoint` and
  `model.save_weights` record these names in the object graph, which is
  how the resolver names them.
  """
  if spec_.legacy:
    return f"{variable_name}/{slot.keras_name}"
  return f"{slot.keras_name}/{variable_name}"
