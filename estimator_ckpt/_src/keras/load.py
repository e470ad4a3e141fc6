"""`load_weights`: an Estimator's checkpoint into a Keras model and optimizer.

Public: `load_weights` and `LoadReport` (re-exported by `estimator_ckpt`).

The way off Estimator: a TF1 name-based checkpoint (or any TF2 layout this
package reads) into a Keras model, layer, `tf.Module` or dict of variables,
with the TF1 optimizer's slots as the Keras optimizer's state, so that
`model.fit` continues where the Estimator stopped. Names go through the one
resolver (`reader.read`), partitioned variables come back whole (or in the
rows of each shard of a `ShardedVariable`), and the optimizer mapping lives
in `keras_optimizers`.

Everything is checked before anything is assigned: every name found (with
`strict=True`), every shape and dtype equal, the optimizer state present,
`global_step` consistent with Adam's beta powers, and every value read (its
checksum verified). Only then are the variables assigned, so a failed load
leaves the model and optimizer as they were.
"""

import dataclasses
import difflib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import layouts
from estimator_ckpt._src import reader
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src import restore_values
from estimator_ckpt._src.keras import optimizer_plan
from estimator_ckpt._src.keras import optimizers as keras_optimizers
from estimator_ckpt._src.keras import targets as keras_targets

# For how many missing names an error looks for near misses.
_NAMES_WITH_SUGGESTIONS = 10
# How many loaded pairs `LoadReport.summary` lists.
_LISTED_PAIRS = 40


@dataclasses.dataclass(frozen=True)
class LoadReport:
  """What `load_weights` loaded.

  Attributes:
    checkpoint: The checkpoint prefix read.
    format: Its format, `tf1` or `tf2`.
    loaded: Target variable name -> the checkpoint name it was loaded from.
    missing: Target variable names the checkpoint lacks (only with
      `strict=False`), sorted; they keep their values.
    unused: Checkpoint variable names nothing was loaded from, sorted.
    optimizer: The Keras optimizer class (`tf.keras.optimizers.Adam`), or
      None.
    optimizer_state: `<target name>/<Keras state>` (and `iterations`) ->
      the checkpoint name it was loaded from.
    missing_optimizer_state: TF1 names of optimizer state the checkpoint
      lacks (only with `strict=False`), sorted; that state keeps its
      initial value.
    iterations: The optimizer's `iterations` after loading, or None.
    advice: Optimizer settings that make Keras continue differently from
      TF1, each with the setting to pass instead.
  """

  checkpoint: str
  format: str
  loaded: Mapping[str, str]
  missing: Tuple[str, ...] = ()
  unused: Tuple[str, ...] = ()
  optimizer: Optional[str] = None
  optimizer_state: Mapping[str, str] = dataclasses.field(default_factory=dict)
  missing_optimizer_state: Tuple[str, ...] = ()
  iterations: Optional[int] = None
  advice: Tuple[str, ...] = ()

  def summary(self) -> str:
    """A readable multi-line account, for logs and binaries."""
    total = len(self.loaded) + len(self.missing)
    lines = [
      f"Loaded {len(self.loaded)} of {total} variables from "
      f"{self.checkpoint} ({self.format}):"
    ]
    width = max((len(name) for name in self.loaded), default=0)
    pairs = [
      f"{name:{width}s}  <- {source}" if name != source else name
      for name, source in sorted(self.loaded.items())
    ]
    if pairs:
      lines.append(
        "  " + errors.format_list(pairs, limit=_LISTED_PAIRS, separator="\n  ")
      )
    if self.missing:
      lines.append(
        f"Not in the checkpoint (kept their values): {len(self.missing)}: "
        + errors.format_names(self.missing)
      )
    if self.optimizer is not None:
      slots = len(self.optimizer_state) - (self.iterations is not None)
      lines.append(
        f"Optimizer {self.optimizer}: {slots} state variables"
        + (
          f", iterations = {self.iterations} (from `global_step`)"
          if self.iterations is not None
          else ""
        )
      )
      if self.missing_optimizer_state:
        lines.append(
          "  not in the checkpoint (kept their initial values): "
          + errors.format_names(self.missing_optimizer_state)
        )
    if self.unused:
      lines.append(
        f"Unused in the checkpoint: {len(self.unused)}: "
        + errors.format_names(self.unused)
      )
    if self.advice:
      lines.append("Advice:")
      lines.extend(f"  - {tip}" for tip in self.advice)
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Assignment:
  """A checkpoint variable going into a target (or an optimizer state)."""

  target: keras_targets.Target
  source: layouts.Variable


def _suggest_rename(
  lookups: Sequence[str], names: Mapping[str, Any]
) -> Dict[str, str]:
  """Rename rules that would find missing names, where one is evident."""
  rules: Dict[str, str] = {}
  for lookup in lookups:
    # A Keras Embedding's weight is `<layer>/embeddings`, a TF1 table just
    # `<name>`.
    base, _, leaf = lookup.rpartition("/")
    if base and leaf == "embeddings" and base in names:
      rules[lookup] = base
      continue
    # A subclassed model's scope in front of every layer name.
    scope, _, rest = lookup.partition("/")
    if rest and rest in names:
      rules.setdefault(scope + "/", "")
  return rules


def _describe_missing(name: str, lookup: str, available: Sequence[str]) -> str:
  text = f"`{name}`"
  if lookup != name:
    text += f" (renamed `{lookup}`)"
  close = difflib.get_close_matches(lookup, available, n=1)
  if close:
    text += f" (did you mean `{close[0]}`?)"
  return text


def _missing_error(
  contents: reader.Contents,
  missing: Sequence[Tuple[str, str]],
  total: int,
  available: Sequence[str],
  strict: bool,
) -> errors.IncompatibleCheckpointError:
  """The error for target variables the checkpoint lacks."""
  missing = sorted(missing)
  shown = _NAMES_WITH_SUGGESTIONS
  # Near misses only for the names the message shows (difflib is linear in
  # the checkpoint's size per name).
  described = [
    _describe_missing(name, lookup, available)
    for name, lookup in missing[:shown]
  ]
  described += [f"`{name}`" for name, _ in missing[shown:]]
  listed = errors.format_list(described, limit=shown)
  rules = _suggest_rename([lookup for _, lookup in missing], contents.variables)
  fix = f"Pass rename={rules!r}" if rules else "Pass a rename spec"
  if strict:
    fix += ", or strict=False to load the others and keep these as they are"
  return errors.IncompatibleCheckpointError(
    f"`{contents.prefix}` ({contents.format}) has no variable for "
    f"{len(missing)} of the target's {total} variables: {listed}. Target "
    "variables are looked up by their name without `:0` (Keras: "
    f"`<layer>/<weight>`). {fix}. Nothing was assigned."
  )


def _shape_text(shape: Sequence[int], dtype: str) -> str:
  return f"[{', '.join(str(d) for d in shape)}] {dtype}"


def _check_compatible(
  contents: reader.Contents, assignments: Sequence[_Assignment], what: str
) -> None:
  """Raises ShapeMismatchError naming every pair that differs."""
  problems = []
  for a in assignments:
    target_dtype = a.target.dtype.name
    if tuple(a.source.shape) != a.target.shape or (
      a.source.dtype.name != target_dtype
    ):
      problems.append(
        f"`{a.target.name}` is "
        f"{_shape_text(a.target.shape, target_dtype)} but `{a.source.name}` "
        f"is {_shape_text(a.source.shape, a.source.dtype.name)}"
      )
  if problems:
    raise errors.ShapeMismatchError(
      f"{len(problems)} {what} of the target differ from `{contents.prefix}` "
      f"in shape or dtype: {errors.format_list(sorted(problems))}. Build the "
      "model with the checkpoint's shapes and dtypes, or leave these "
      "variables out (a dict target without them, or a rename to a name the "
      "checkpoint lacks with strict=False). Nothing was assigned."
    )


def _scalar(value: tf.Tensor) -> float:
  return float(np.asarray(value.numpy()).reshape(()))


def load_weights(
  target: Any,
  checkpoint: str,
  *,
  optimizer: Any = None,
  rename: Optional[rename_rules.RenameArg] = None,
  strict: bool = True,
) -> LoadReport:
  """Loads an Estimator checkpoint into a Keras model and its optimizer.

  A target variable's name without `:0` (Keras: `<layer>/<weight>`), after
  `rename`, is looked up as a TF1 variable name in the checkpoint. A
  partitioned TF1 variable comes back whole (into a Keras `Embedding`) or in
  the rows of each shard of a `ShardedVariable` (any shard count). With an
  optimizer, its state is built for the target's trainable variables and set
  from the TF1 optimizer's slots, and `iterations` from `global_step`
  (checked against Adam's `beta1_power`/`beta2_power`).

  Everything is checked and every value read before anything is assigned:
  on an error, the target and optimizer are unchanged.

  Args:
    target: A built Keras model or layer, a `tf.Module`, or a dict
      `{tf1_name: variable or ShardedVariable}`; eager, inside or outside a
      `tf.distribute` strategy scope.
    checkpoint: A model dir (its latest checkpoint) or a checkpoint prefix,
      TF1 name-based or any TF2 layout this package reads (`convert`'s,
      `tf.train.Checkpoint(var_list=...)`, the guide's).
    optimizer: A Keras optimizer of TF 2.15 (`tf.keras.optimizers.Adam`,
      `Adagrad`, `SGD`, `RMSprop`, `Ftrl` or their `legacy` versions) to set
      from the TF1 optimizer's state; None (default) loads the weights alone.
      Settings under which Keras continues differently from TF1 (Adam's
      epsilon, Adagrad's epsilon, ...) are listed in `LoadReport.advice`.
    rename: Current name -> name in the checkpoint, as for warm start: a
      dict (keys ending in `/` are scopes: `{"my_model/": ""}`) or a list of
      `(regex, replacement)` pairs.
    strict: If True (default), every target variable and its optimizer
      state must be in the checkpoint. If False, missing ones keep their
      values and are listed in the report.

  Returns:
    A `LoadReport`.

  Raises:
    errors.IncompatibleCheckpointError: A target variable (strict) or
      optimizer state (strict) is not in the checkpoint; the message lists
      them with near misses. Or `global_step` disagrees with Adam's beta
      powers.
    errors.ShapeMismatchError: A variable's shape or dtype differs from the
      checkpoint's (both named, with both shapes).
    errors.InvalidRenameError: A malformed rename spec.
    errors.ArgumentTypeError: The target or optimizer is of a type this
      function does not take.
    errors.InvalidArgumentError: Not executing eagerly, an unbuilt Keras
      target, or an optimizer already built for other variables.
    errors.Error: No checkpoint at `checkpoint`, or it is damaged.
  """
  if not tf.executing_eagerly():
    raise errors.InvalidArgumentError(
      "load_weights runs eagerly (TF2 code). In graph code (model_fn, "
      "MonitoredSession) use estimator_ckpt.warm_start or "
      "warm_start_settings."
    )
  renamer = rename_rules.parse(rename)
  targets = keras_targets.collect(target)
  spec = None if optimizer is None else keras_optimizers.spec(optimizer)
  contents = reader.read(checkpoint)

  # Names.
  matched: List[Tuple[keras_targets.Target, str]] = []
  missing: List[Tuple[str, str]] = []
  assignments: List[_Assignment] = []
  for t in targets:
    lookup = renamer(t.name)
    source = layouts.find(contents.bundle, contents.variables, lookup)
    if source is None:
      missing.append((t.name, lookup))
      continue
    matched.append((t, source.name))
    assignments.append(_Assignment(t, source))
  if missing and strict:
    used = {source for _, source in matched}
    available = [n for n in contents.variables if n not in used]
    raise _missing_error(contents, missing, len(targets), available, strict)
  if not assignments:
    raise _missing_error(
      contents, missing, len(targets), list(contents.variables), strict
    )
  _check_compatible(contents, assignments, "variables")

  # The optimizer's state, by name, before anything is built.
  plan = None
  if optimizer is not None:
    trainable = [t for t in targets if t.trainable]
    plan = optimizer_plan.plan(optimizer, contents, matched, trainable, strict)
    _check_compatible(
      contents,
      [_Assignment(s.target, s.source) for s in plan.states],
      "optimizer states",
    )

  # Every value, read (checksums verified) before the first assignment: all
  # in one TensorFlow read, as Keras's own restore does.
  def requests_of(
    target_: keras_targets.Target, source: layouts.Variable
  ) -> List[restore_values.Request]:
    return [
      restore_values.Request(source, keras_targets.rows_request(target_, index))
      for index in range(len(target_.variables))
    ]

  requests = [r for a in assignments for r in requests_of(a.target, a.source)]
  if plan is not None:
    requests += [
      r for s in plan.states for r in requests_of(s.target, s.source)
    ]
    requests += [
      restore_values.Request(v)
      for v in (plan.step, *plan.beta_powers.values())
      if v is not None
    ]
  tensors = restore_values.read(contents, requests)
  step: Optional[int] = None
  rate = 0.0
  if plan is not None:
    if plan.step is not None:
      step = int(_scalar(tensors[restore_values.Request(plan.step)]))
      powers = {
        name: _scalar(tensors[restore_values.Request(power)])
        for name, power in plan.beta_powers.items()
      }
      problems = keras_optimizers.check_beta_powers(plan.spec, step, powers)
      if problems:
        raise errors.IncompatibleCheckpointError(
          f"`{contents.prefix}`: {'; '.join(problems)}. Either the "
          f"{plan.spec.description}'s beta_1/beta_2 differ from the TF1 "
          "AdamOptimizer's beta1/beta2 (pass TF1's), or the TF1 optimizer "
          "did not step once per global step (then pass optimizer=None and "
          "set the optimizer's state yourself). Nothing was assigned."
        )
    rate = keras_optimizers.learning_rate(optimizer, step or 0)

  # All checks passed: build the optimizer's state, find each state
  # variable, then assign.
  states: List[
    Tuple[Any, restore_values.Request, optimizer_plan.StateAssignment]
  ] = []
  if plan is not None:
    trainable_variables = _trainable_variables(target, targets)
    if trainable_variables:
      keras_optimizers.build(optimizer, trainable_variables)
    for s in plan.states:
      for variable, request in zip(
        s.target.variables, requests_of(s.target, s.source)
      ):
        state = keras_optimizers.state_variable(optimizer, s.slot, variable)
        states.append((state, request, s))
  for a in assignments:
    for variable, request in zip(
      a.target.variables, requests_of(a.target, a.source)
    ):
      variable.assign(tensors.pop(request))
  optimizer_state: Dict[str, str] = {}
  for state, request, s in states:
    state.assign(keras_optimizers.to_keras(s.slot, tensors.pop(request), rate))
    optimizer_state[s.label] = s.source.name
  if plan is not None:
    if step is not None:
      optimizer.iterations.assign(step)
      optimizer_state["iterations"] = keras_optimizers.GLOBAL_STEP
    _reset_moving_averages(optimizer, targets)
  del tensors

  used = {a.source.name for a in assignments}
  used.update(optimizer_state.values())
  if plan is not None:
    used.update(plan.beta_powers)
  partitioned = any(
    a.source.partitioned for a in assignments if a.target.trainable
  )
  advice: Tuple[str, ...] = ()
  if plan is not None:
    advice = tuple(
      keras_optimizers.advice(
        optimizer,
        plan.spec,
        checkpoint_names=list(contents.variables),
        partitioned=partitioned,
        missing_state=bool(plan.missing) or bool(missing),
      )
    )
  report = LoadReport(
    checkpoint=contents.prefix,
    format=contents.format,
    loaded={a.target.name: a.source.name for a in assignments},
    missing=tuple(sorted(name for name, _ in missing)),
    unused=tuple(sorted(n for n in contents.variables if n not in used)),
    optimizer=None if spec is None else spec.description,
    optimizer_state=optimizer_state,
    missing_optimizer_state=tuple(plan.missing) if plan else (),
    iterations=step,
    advice=advice,
  )
  logging.info("%s", report.summary())
  return report


def tf1_rename(
  target: Any,
  optimizer: Any = None,
  rename: Optional[rename_rules.RenameArg] = None,
) -> Dict[str, str]:
  """A rename spec from a Keras checkpoint's names to the TF1 names.

  `convert(keras_checkpoint, model_dir, to="tf1")` needs no rename when the
  Keras names are the TF1 names: it maps optimizer state to TF1 slots and
  synthesises Adam's beta powers itself (`keras_checkpoints`). This spec is
  for models whose names differ (`load_weights` took a `rename`):
  `convert(..., rename=tf1_rename(model, optimizer, rename))` writes the
  weights under their TF1 names, each optimizer state under its TF1 slot
  name and `iterations` as `global_step`; the beta powers are synthesised
  all the same, so an Estimator resumes Adam training from it.

  Args:
    target: The Keras model (or module, or dict) the checkpoint holds, as
      for `load_weights`.
    optimizer: The Keras optimizer saved with it, or None for the weights.
    rename: The spec `load_weights` took (Keras name -> TF1 name).

  Returns:
    `{name in the Keras checkpoint: TF1 name}`, for `convert`'s `rename`.

  Raises:
    errors.InvalidArgumentError: SGD with momentum, whose Keras state is
      TF1's times -learning_rate (no rename converts that back).
  """
  renamer = rename_rules.parse(rename)
  spec = None if optimizer is None else keras_optimizers.spec(optimizer)
  if spec is not None and any(s.negative_learning_rate for s in spec.slots):
    raise errors.InvalidArgumentError(
      f"{spec.description} with momentum keeps -learning_rate times TF1's "
      "momentum accumulator, which a rename cannot convert back. Convert the "
      "weights alone (tf1_rename without the optimizer)."
    )
  names: Dict[str, str] = {}
  for t in keras_targets.collect(target):
    tf1_name = renamer(t.name)
    names[t.name] = tf1_name
    if spec is None or not t.trainable:
      continue
    for slot in spec.slots:
      keras_name = keras_optimizers.keras_state_name(spec, t.name, slot)
      names[keras_name] = keras_optimizers.tf1_slot_name(tf1_name, slot)
  if spec is not None:
    names["iter" if spec.legacy else "iteration"] = keras_optimizers.GLOBAL_STEP
  return names


def _trainable_variables(
  target: Any, targets: Sequence[keras_targets.Target]
) -> List[Any]:
  """The variables the optimizer trains, as `fit` will pass them."""
  if isinstance(target, tf.Module) and not isinstance(target, Mapping):
    variables = list(target.trainable_variables)
    if variables:
      return variables
  return keras_targets.physical_variables([t for t in targets if t.trainable])


def _reset_moving_averages(
  optimizer: Any, targets: Sequence[keras_targets.Target]
) -> None:
  """Sets a `use_ema` optimizer's averages to the loaded weights.

  Keras starts them at the weights when it builds its state; the state was
  built before the weights were assigned.
  """
  averages = getattr(optimizer, "_model_variables_moving_average", None)
  if not getattr(optimizer, "use_ema", False) or not averages:
    return
  index = optimizer._index_dict  # pylint: disable=protected-access
  for t in targets:
    for variable in t.variables:
      position = index.get(optimizer._var_key(variable))  # pylint: disable=protected-access
      if position is not None:
        averages[position].assign(variable)
