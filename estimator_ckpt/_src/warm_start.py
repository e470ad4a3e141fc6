"""Warm start from any TF1 or TF2 checkpoint into any graph-mode model.

`warm_start_settings(path)` is what `tf.estimator.Estimator(...,
warm_start_from=...)` takes; `warm_start(path)` does the same for plain graph
code (MonitoredSession users), like `tf.compat.v1.train.warm_start`. The
checkpoint may be name-based (TF1 `Saver`, keys are variable names) or
object-based (TF2 `tf.train.Checkpoint`), in any of these layouts:

* `var_list/<escaped name>/.ATTRIBUTES/VARIABLE_VALUE`, as estimator_ckpt's
  Scaffold factory and the guide's `Checkpoint(var_list={name: v})` write it
  (a partitioned variable is one logical tensor stored as slices);
* `vars/<escaped name>/...`, the guide's `convert_tf1_to_tf2`, whose object
  graph names every variable `Variable`, so stock warm start cannot map it;
* any object graph whose `full_name`s are the variables' TF1 names (e.g.
  `tf.train.Checkpoint(v=var)` in graph mode, or eager variables created with
  `name=`);
* one tensor per partition, `var_list/emb.Spart_0/...`, as stock
  `tf.train.Checkpoint` writes a partitioned variable: every part carries the
  `full_name` `emb`, so stock warm start reads one part as if it were all of
  `emb` and fails (tests/guide_test.py records it). Here the parts are put
  back together, into any partitioning.

How it hooks into Estimator. Estimator calls
`tf.compat.v1.train.warm_start(*settings)` after model_fn has built the graph,
and only when model_dir holds no checkpoint (tensorflow_estimator
estimator.py, `_train_with_estimator_spec` and `_maybe_warm_start`). Only
then are the variables known, so `warm_start_settings` returns a
`tf.estimator.WarmStartSettings` subclass whose iteration (the `*settings`)
does the work lazily against the default graph: it selects the variables,
resolves each one's tensor in the checkpoint, checks shapes and dtypes and
raises before any session exists, logs a summary, and then yields explicit
arguments to stock `warm_start`: the selected variables and
`var_name_to_prev_var_name` mapping each to its checkpoint key. Stock code
then does the part it does well (`init_from_checkpoint`, which re-partitions
through RestoreV2 slice specs); it is never asked to guess keys. Parts stored
one tensor per partition are the one case stock code cannot initialise; their
initializers are built here from RestoreV2 slices of each part.

This was chosen over initialising everything ourselves because it keeps
Estimator's own code path (and its "Warm-started N variables" log) for every
variable stock TF can handle, and over precomputing stock arguments at call
time because stock `warm_start` raises for every checkpoint name it is given
that the graph lacks, and the graph is unknown until model_fn has run.

What is selected by default: every global variable of the graph, trainable or
not (batch-norm moving statistics included), except

* the global step, which always starts fresh (the guide: "The train step
  value doesn't carry over from the warm_start checkpoint."), and
* optimizer state, unless `with_optimizer_slots=True`: all of it, i.e. the
  non-trainable variables that are either

  - colocated with another variable: exactly what `slot_creator` makes
    (Adam's `m`/`v`, Momentum, Adagrad and Ftrl accumulators, also
    ExponentialMovingAverage shadows), what
    `Optimizer._create_non_slot_variable` makes (Adam's `beta1_power` and
    `beta2_power`, colocated with the first variable), and the slots of Keras
    optimizers (`OptimizerV2.add_slot`); all colocate with the primary
    variable (tensorflow/python/training/slot_creator.py, optimizer.py,
    keras/src/optimizers/legacy/optimizer_v2.py); or
  - aggregated `ONLY_FIRST_REPLICA`: the settings and step counters a Keras
    optimizer keeps as variables, which canned estimators create under
    `training/<Optimizer>/` (`learning_rate`, `momentum`, `decay`, `beta_1`,
    ..., `iter`, Nadam's `momentum_cache`). Keras creates exactly those with
    `aggregation=ONLY_FIRST_REPLICA` (`OptimizerV2._create_hypers`,
    `iterations`), as TensorFlow does the global step
    (training_util.create_global_step): values that advance once per step
    however many replicas run, never model state. They are colocated with
    nothing, so the first rule misses them, and warm-starting them would
    override the new model's settings (a model configured with learning
    rate 0.0 would train with the old rate).

  Model variables are colocated only with themselves and are aggregated
  `NONE` (Keras layers, `get_variable`) or `MEAN` (batch-norm moving
  statistics), so they are all warm-started.

Estimator's one-shot rule: warm start happens only into an empty model_dir;
once model_dir has a checkpoint, Estimator restores it and silently ignores
`warm_start_from`. The settings here log that plainly when Estimator skips
them.
"""

import sys
import types
from typing import (
  Any,
  Dict,
  Iterator,
  Optional,
  Tuple,
)

from absl import logging
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src import vocab_remap
from estimator_ckpt._src import warm_start_options
from estimator_ckpt._src import warm_start_plan
from estimator_ckpt._src.format import state_file


class WarmStartSettings(tf.estimator.WarmStartSettings):
  """`tf.estimator.WarmStartSettings` resolved against the graph when used.

  Make one with `warm_start_settings`. Estimator accepts it as
  `warm_start_from` (it is a `tf.estimator.WarmStartSettings`) and unpacks
  it as `tf.compat.v1.train.warm_start(*settings)` once model_fn has built
  the graph: iterating does the resolution described in the module
  docstring against the default graph and yields the explicit stock
  arguments. Iterate only where the model's graph is the default graph.

  The namedtuple fields keep what the user asked for
  (`ckpt_to_initialize_from` as given; `vars_to_warm_start`), so Estimator's
  other reads of them (e.g. export falls back to `ckpt_to_initialize_from`)
  behave as with stock settings.
  """

  def __new__(
    cls, ckpt_to_initialize_from: str, options: warm_start_options.Options
  ):
    vars_field = options.vars_to_warm_start
    if isinstance(vars_field, (list, tuple)):
      vars_field = list(vars_field)
    self = super().__new__(
      cls, ckpt_to_initialize_from, vars_to_warm_start=vars_field
    )
    self._options = options
    return self

  # Plain namedtuple helpers iterate `self`; they must not warm-start.
  def __getnewargs__(self):
    return (tuple.__getitem__(self, 0), self._options)

  def _asdict(self) -> Dict[str, Any]:
    return {
      "ckpt_to_initialize_from": self.ckpt_to_initialize_from,
      "vars_to_warm_start": self._options.vars_to_warm_start,
      "rename": self._options.renamer.rules(),
      "with_optimizer_slots": self._options.with_optimizer_slots,
      "strict": self._options.strict,
      "adam_betas": self._options.adam_betas,
      "vocab_info": dict(self._options.vocab_info),
    }

  def _replace(self, **kwargs):
    raise errors.ArgumentTypeError(
      "estimator_ckpt warm-start settings are immutable; call "
      "estimator_ckpt.warm_start_settings(...) again with new options."
    )

  def __repr__(self) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in self._asdict().items())
    return f"estimator_ckpt.WarmStartSettings({fields})"

  def __bool__(self) -> bool:
    """Always true; logs when Estimator is about to skip warm start.

    Estimator's train() tests `self._warm_start_settings and not
    tf.train.latest_checkpoint(self._model_dir)` (estimator.py,
    `_train_with_estimator_spec`) and silently skips warm start when
    model_dir has a checkpoint. That test calls this method from a frame
    whose `self` is the Estimator, which is the only place the model_dir is
    visible to us. Looking at it changes nothing; it only makes the skip
    visible in the log.
    """
    estimator = _calling_estimator()
    if estimator is not None:
      _log_if_skipped(estimator.model_dir, self.ckpt_to_initialize_from)
    return True

  def __iter__(self) -> Iterator[Any]:
    """Resolves against the default graph; yields stock `warm_start` args.

    Raises:
      errors.CheckpointNotFoundError: The checkpoint is gone.
      errors.ShapeMismatchError: A selected variable differs from its
        checkpoint tensor in shape or dtype.
      errors.IncompatibleCheckpointError: `strict` and a selected variable
        is not in the checkpoint.
      errors.InvalidRenameError: A rename rule matches no selected
        variable.
      errors.VocabularyChangedError: A variable would be copied row for row
        although its vocabulary changed (pass `vocab_info` for it).
    """
    arguments, _ = warm_start_plan.prepare(
      self.ckpt_to_initialize_from, self._options
    )
    return iter(arguments)


def warm_start_settings(
  ckpt_to_initialize_from: str,
  *,
  vars_to_warm_start: warm_start_options.VarsToWarmStart = None,
  rename: Optional[rename_rules.RenameArg] = None,
  with_optimizer_slots: bool = False,
  strict: bool = False,
  adam_betas: Optional[Tuple[float, float]] = None,
  vocab_info: vocab_remap.VocabInfoArg = None,
) -> WarmStartSettings:
  """Warm-start settings for `tf.estimator.Estimator(warm_start_from=...)`.

  Args:
    ckpt_to_initialize_from: A model_dir (its latest checkpoint is read when
      the warm start runs), a checkpoint prefix, or a SavedModel export dir;
      TF1 name-based or TF2 object-based.
    vars_to_warm_start: Which variables, by their current names. None (the
      default): every global variable, trainable or not, except the global
      step and optimizer state (see the module docstring). Otherwise stock
      semantics, each regex `re.match`ed against the names: a regex string
      selects among trainable variables only, a list of regexes among all
      global variables; a list of variables selects those. A partitioned
      variable is selected whole when its name or a partition's name
      matches. The global step is never warm-started, and optimizer state
      only with `with_optimizer_slots`.
    rename: How current names map to checkpoint names: a dict
      `{current: in_checkpoint}` where keys ending in `/` are scopes
      (`{"tower/": ""}` reads `tower/dense/kernel` from `dense/kernel`), or a
      list of `(regex, replacement)` pairs; see `renaming`. Like stock
      `var_name_to_prev_var_name`, a rule that matches no selected variable
      is an error when the warm start runs.
    with_optimizer_slots: Also warm-start optimizer state (slots such as
      Adam's `m`/`v`, `beta1_power`/`beta2_power`, and the settings and
      counters of Keras optimizers such as `training/SGD/learning_rate`),
      e.g. to continue training a model in a new model_dir with the old
      optimizer settings.
    strict: Raise if any selected variable is not in the checkpoint. Default:
      warm-start what is there and log what is not.
    adam_betas: With `with_optimizer_slots` from a checkpoint of a new Keras
      Adam (which saves no betas): its `(beta_1, beta_2)`, from which TF1's
      `beta1_power` and `beta2_power` are computed. Default: Keras's (0.9,
      0.999), logged; a legacy Adam's saved betas win.
    vocab_info: `{current variable name: tf.estimator.VocabInfo}` for
      variables indexed by a vocabulary that changed (stock
      `var_name_to_vocab_info`): their rows (axis 0: embeddings, linear
      weights) or columns (axis 1: an output layer over a label vocabulary)
      are remapped from the old vocabulary to the new one with stock
      semantics for every field, from any layout and partitioning. Key a
      partitioned variable by its name. With `with_optimizer_slots`, the
      variable's slots are remapped the same way. A name that is not a
      selected variable is an error when the warm start runs.

  Keras checkpoints (`model.save_weights`, `tf.train.Checkpoint(model=...,
  optimizer=...)`) name variables by their Keras names (`<layer>/<weight>`).
  With `with_optimizer_slots`, their optimizer state answers to TF1 slot
  names (`<var>/Adam`, `<var>/Adam_1`, `<var>/Adagrad`, ...) and TF1 Adam's
  `beta1_power`/`beta2_power` are initialised to beta ** (iterations + 1),
  so training continues where Keras stopped (see `keras_checkpoints`; Keras
  SGD's momentum is refused).

  Returns:
    A `tf.estimator.WarmStartSettings` that resolves names, layouts and
    partitioning when Estimator runs it.

  Raises:
    errors.CheckpointNotFoundError: `ckpt_to_initialize_from` does not exist
      or holds no checkpoint.
    errors.InvalidRenameError: `rename` is malformed.
    TypeError: `vars_to_warm_start` has an unsupported type.
    ValueError: A `vars_to_warm_start` regex does not compile, or a
      `vocab_info` size is out of range.
  """
  path = warm_start_options.checkpoint_location(ckpt_to_initialize_from)
  state_file.resolve(path)  # Fails now, naming the path.
  options = warm_start_options.Options(
    vars_to_warm_start=warm_start_options.validate_selection(
      vars_to_warm_start
    ),
    renamer=rename_rules.parse(rename),
    with_optimizer_slots=bool(with_optimizer_slots),
    strict=bool(strict),
    adam_betas=warm_start_options.validate_betas(adam_betas),
    vocab_info=tuple(vocab_remap.validate(vocab_info).items()),
  )
  return WarmStartSettings(path, options)


def warm_start(
  ckpt_to_initialize_from: str,
  *,
  vars_to_warm_start: warm_start_options.VarsToWarmStart = None,
  rename: Optional[rename_rules.RenameArg] = None,
  with_optimizer_slots: bool = False,
  strict: bool = False,
  adam_betas: Optional[Tuple[float, float]] = None,
  vocab_info: vocab_remap.VocabInfoArg = None,
) -> warm_start_plan.WarmStartSummary:
  """Warm-starts the default graph's variables now, for plain graph code.

  Like `tf.compat.v1.train.warm_start`: it replaces the selected variables'
  initializers, so call it after building the model and before the
  session's initialisation (before `Scaffold.finalize` or
  `MonitoredSession`); `global_variables_initializer` then loads the values.
  Arguments are those of `warm_start_settings`.

  Returns:
    The summary that was logged.

  Raises:
    The errors of `warm_start_settings`, and errors.ShapeMismatchError,
    errors.IncompatibleCheckpointError (`strict`) and
    errors.InvalidRenameError (unused rule) and
    errors.VocabularyChangedError (a changed vocabulary without
    `vocab_info`) of the resolution.
  """
  settings = warm_start_settings(
    ckpt_to_initialize_from,
    vars_to_warm_start=vars_to_warm_start,
    rename=rename,
    with_optimizer_slots=with_optimizer_slots,
    strict=strict,
    adam_betas=adam_betas,
    vocab_info=vocab_info,
  )
  options = settings._options  # pylint: disable=protected-access
  arguments, summary = warm_start_plan.prepare(
    settings.ckpt_to_initialize_from, options
  )
  tf.compat.v1.train.warm_start(*arguments)
  return summary


def log_if_warm_start_skipped(
  model_dir: Optional[str], ckpt_to_initialize_from: Optional[str]
) -> bool:
  """Logs plainly if Estimator will skip warm start into `model_dir`.

  Args:
    model_dir: The Estimator's model_dir.
    ckpt_to_initialize_from: Where warm start would read from (None: no warm
      start configured, nothing to log).

  Returns:
    Whether warm start will be skipped (model_dir already has a checkpoint).
  """
  if not model_dir or not ckpt_to_initialize_from:
    return False
  return _log_if_skipped(model_dir, ckpt_to_initialize_from)


def _log_if_skipped(model_dir: str, source: str) -> bool:
  latest = tf.train.latest_checkpoint(model_dir)
  if latest is None:
    return False
  logging.warning(
    "Not warm-starting from `%s`: model_dir `%s` already has checkpoint "
    "`%s`, and Estimator restores that instead. Estimator warm-starts only "
    "into an empty model_dir (its first run); to warm-start again, use a "
    "new model_dir or delete this one.",
    source,
    model_dir,
    latest,
  )
  return True


def _calling_estimator() -> Optional[tf.compat.v1.estimator.Estimator]:
  """The Estimator whose method tests the settings' truth, if any.

  `tf.compat.v1.estimator.Estimator` is the base of `tf.estimator.Estimator`
  and of canned estimators, so both API versions are found.
  """
  frame: Optional[types.FrameType]
  try:
    frame = sys._getframe(2)  # pylint: disable=protected-access
  except ValueError:  # Called from the top of the stack.
    return None
  for _ in range(3):
    if frame is None:
      return None
    candidate = frame.f_locals.get("self")
    if isinstance(candidate, tf.compat.v1.estimator.Estimator):
      return candidate
    frame = frame.f_back
  return None
