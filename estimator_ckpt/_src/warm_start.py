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

import dataclasses
import re
import sys
import types
from typing import (
  Any,
  Dict,
  Iterator,
  List,
  Mapping,
  Optional,
  Sequence,
  Set,
  Tuple,
  Union,
)

from absl import logging
import tensorflow as tf

# `tf.compat.v1.get_variable` returns PartitionedVariable, which TF does not
# export; stock warm start accepts it in `vars_to_warm_start`.
from tensorflow.python.ops import variables as tf_variables

from estimator_ckpt import errors
from estimator_ckpt._src import layouts
from estimator_ckpt._src import reader
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src import staged_index
from estimator_ckpt._src import vocab_detect
from estimator_ckpt._src import vocab_remap
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.keras import checkpoints as keras_checkpoints
from estimator_ckpt._src.storage import registry

VarsToWarmStart = Union[None, str, Sequence[Any]]

# Checkpoint entries that are bookkeeping, never model state to report.
_BOOKKEEPING_NAMES = frozenset([keys.GLOBAL_STEP_NAME, "save_counter"])
# Shape/dtype problems listed in one error before "... and N more".
_MAX_LISTED_PROBLEMS = 10
# A SavedModel's variables live at `<export dir>/variables/variables`.
_SAVED_MODEL_VARIABLES = ("variables", "variables")


@dataclasses.dataclass(frozen=True)
class _Options:
  """Validated options of one warm start (not public)."""

  vars_to_warm_start: VarsToWarmStart
  renamer: rename_rules.Renamer
  with_optimizer_slots: bool
  strict: bool
  adam_betas: Optional[Tuple[float, float]] = None
  # (name, VocabInfo) pairs: immutable, and copied and pickled as settings
  # are (a mappingproxy cannot be).
  vocab_info: Tuple[Tuple[str, vocab_remap.VocabInfo], ...] = ()


@dataclasses.dataclass(frozen=True)
class WarmStartSummary:
  """What one warm start did, as logged.

  Attributes:
    checkpoint: The checkpoint prefix read.
    object_based: Whether it is a TF2 object-based checkpoint.
    warm_started: Current variable name -> the name it was read from in the
      checkpoint (after `rename`).
    not_found: Selected variables the checkpoint does not hold, sorted.
    unused_in_checkpoint: Checkpoint variables no variable of the model maps
      to (selected or not), sorted; the global step and `save_counter` are
      left out.
    excluded: Variables left out by default, sorted: the global step, and
      optimizer state unless `with_optimizer_slots`.
    not_selected: Variables that `vars_to_warm_start` does not match, sorted.
    remapped: Warm-started variables whose rows or columns were remapped
      to a new vocabulary (`vocab_info`), sorted.
  """

  checkpoint: str
  object_based: bool
  warm_started: Mapping[str, str]
  not_found: Tuple[str, ...]
  unused_in_checkpoint: Tuple[str, ...]
  excluded: Tuple[str, ...]
  not_selected: Tuple[str, ...]
  remapped: Tuple[str, ...] = ()

  def format(self) -> str:
    """A multi-line, human-readable account (what gets logged)."""
    kind = "TF2 object-based" if self.object_based else "TF1 name-based"
    lines = [
      f"Warm-started {len(self.warm_started)} of "
      f"{len(self.warm_started) + len(self.not_found)} selected variables "
      f"from `{self.checkpoint}` ({kind})."
    ]
    if self.warm_started:
      lines.append(
        "  warm-started: "
        + errors.format_names(
          name if source == name else f"{name} <- {source}"
          for name, source in self.warm_started.items()
        )
      )
    if self.remapped:
      lines.append(
        "  remapped to a new vocabulary: " + errors.format_names(self.remapped)
      )
    if self.not_found:
      lines.append(
        "  not found in checkpoint (keep their initializers): "
        + errors.format_names(self.not_found)
      )
    if self.unused_in_checkpoint:
      lines.append(
        "  unused in checkpoint (no variable maps to them): "
        + errors.format_names(self.unused_in_checkpoint)
      )
    if self.excluded:
      lines.append(
        "  start fresh (global step; optimizer state unless "
        "with_optimizer_slots=True): " + errors.format_names(self.excluded)
      )
    if self.not_selected:
      lines.append(
        "  not selected by vars_to_warm_start: "
        + errors.format_names(self.not_selected)
      )
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _GraphVariable:
  """One logical variable of the graph: a variable or all its partitions.

  Not public. `name` is its TF1 checkpoint name (a partitioned variable's
  `full_name`), the name stock `warm_start` groups partitions under.
  """

  name: str
  parts: Tuple[tf.Variable, ...]
  shape: Tuple[int, ...]
  dtype: tf.dtypes.DType
  trainable: bool


@dataclasses.dataclass(frozen=True)
class _Source:
  """Where a variable's value is in the checkpoint (not public).

  Either one key holding the whole logical tensor (possibly stored as
  slices), or the keys of its partitions stored one full tensor each,
  concatenated along `axis`.
  """

  name: str
  keys: Tuple[str, ...]
  shapes: Tuple[Tuple[int, ...], ...]
  dtype: tf.dtypes.DType
  axis: Optional[int] = None

  @property
  def assembled(self) -> bool:
    return len(self.keys) > 1 or self.axis is not None


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

  def __new__(cls, ckpt_to_initialize_from: str, options: _Options):
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
    arguments, _ = _prepare(self.ckpt_to_initialize_from, self._options)
    return iter(arguments)


def warm_start_settings(
  ckpt_to_initialize_from: str,
  *,
  vars_to_warm_start: VarsToWarmStart = None,
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
  path = _checkpoint_location(ckpt_to_initialize_from)
  state_file.resolve(path)  # Fails now, naming the path.
  options = _Options(
    vars_to_warm_start=_validate_selection(vars_to_warm_start),
    renamer=rename_rules.parse(rename),
    with_optimizer_slots=bool(with_optimizer_slots),
    strict=bool(strict),
    adam_betas=_validate_betas(adam_betas),
    vocab_info=tuple(vocab_remap.validate(vocab_info).items()),
  )
  return WarmStartSettings(path, options)


def warm_start(
  ckpt_to_initialize_from: str,
  *,
  vars_to_warm_start: VarsToWarmStart = None,
  rename: Optional[rename_rules.RenameArg] = None,
  with_optimizer_slots: bool = False,
  strict: bool = False,
  adam_betas: Optional[Tuple[float, float]] = None,
  vocab_info: vocab_remap.VocabInfoArg = None,
) -> WarmStartSummary:
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
  arguments, summary = _prepare(settings.ckpt_to_initialize_from, options)
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


def _checkpoint_location(path: str) -> str:
  """A SavedModel export dir's variables prefix; other paths unchanged."""
  if not isinstance(path, str) or not path:
    raise errors.CheckpointNotFoundError(
      f"ckpt_to_initialize_from must be a model_dir or checkpoint prefix, "
      f"got {path!r}."
    )
  # A scheme no file system is registered for raises the tools'
  # FileSystemNotSupportedError here, not TensorFlow's UnimplementedError
  # from the probe below.
  registry.for_path(path)
  variables = "/".join((path.rstrip("/"),) + _SAVED_MODEL_VARIABLES)
  if registry.for_path(variables).exists(variables + ".index"):
    return variables
  return path


def _validate_selection(selection: VarsToWarmStart) -> VarsToWarmStart:
  """Checks `vars_to_warm_start` early (types, regexes)."""
  if selection is None:
    return None
  if isinstance(selection, str):
    patterns = [selection]
  elif isinstance(selection, (list, tuple)):
    if all(isinstance(item, str) for item in selection):
      patterns = list(selection)
    elif all(_is_variable_like(item) for item in selection):
      return tuple(selection)
    else:
      kinds = sorted({type(item).__name__ for item in selection})
      raise errors.ArgumentTypeError(
        "vars_to_warm_start must be a regex, a list of regexes or a list of "
        f"variables, got a list of {kinds}."
      )
  else:
    raise errors.ArgumentTypeError(
      "vars_to_warm_start must be None, a regex, a list of regexes or a "
      f"list of variables, got {type(selection).__name__}."
    )
  for pattern in patterns:
    try:
      re.compile(pattern)
    except re.error as e:
      raise errors.InvalidArgumentError(
        f"vars_to_warm_start regex `{pattern}` does not compile: {e}."
      ) from None
  return selection if isinstance(selection, str) else tuple(selection)


def _is_variable_like(item: Any) -> bool:
  return isinstance(item, (tf.Variable, tf_variables.PartitionedVariable))


def _prepare(
  path: str, options: _Options
) -> Tuple[Tuple[Any, ...], WarmStartSummary]:
  """Resolves against the default graph; sets up what stock code cannot.

  Returns:
    The arguments for `tf.compat.v1.train.warm_start`, and the summary.
  """
  checkpoint = state_file.resolve(path)
  index = _CheckpointIndex(
    checkpoint,
    keras_slots=options.with_optimizer_slots,
    adam_betas=options.adam_betas,
  )
  graph = tf.compat.v1.get_default_graph()
  graph_variables = _graph_variables(graph)
  excluded, selected, not_selected = _select(graph, graph_variables, options)

  vocab = _vocab_for(options, selected, graph_variables)
  sources: Dict[str, _Source] = {}
  not_found = []
  synthesized: Dict[str, Any] = {}
  for variable in selected:
    value = index.synthesized.get(options.renamer(variable.name))
    if value is not None:
      synthesized[variable.name] = value
      continue
    # A remapped variable's shape is the new vocabulary's, not the source's.
    source = index.find(
      options.renamer(variable.name),
      None if variable.name in vocab else variable.shape,
    )
    if source is None:
      not_found.append(variable.name)
    else:
      sources[variable.name] = source

  _check_unused_rules(options.renamer, selected)
  _check_compatible(
    checkpoint,
    [v for v in selected if v.name not in vocab],
    {n: s for n, s in sources.items() if n not in vocab},
  )
  _check_vocab(checkpoint, selected, sources, vocab)
  vocab_detect.check(
    checkpoint,
    graph,
    {name: source.name for name, source in sources.items()},
    {variable.name: variable.shape for variable in selected},
    exempt=vocab,
  )
  consumed = set()
  for variable in graph_variables:
    consumed.update(index.names_read_for(options.renamer(variable.name)))
  unused = tuple(sorted(set(index.names) - consumed - _BOOKKEEPING_NAMES))
  if options.strict and not_found:
    raise errors.IncompatibleCheckpointError(
      f"{len(not_found)} of {len(selected)} selected variables are not in "
      f"`{checkpoint}`: {errors.format_names(not_found)}. Checkpoint "
      "variables no model variable maps to: "
      f"{errors.format_names(unused) or 'none'}. Map names with "
      "rename={current: in_checkpoint} (e.g. {'tower/': ''}), narrow "
      "vars_to_warm_start, or pass strict=False to warm-start what "
      "matches."
    )

  summary = WarmStartSummary(
    checkpoint=checkpoint,
    object_based=index.object_based,
    warm_started=types.MappingProxyType(
      dict(
        sorted(
          [(name, source.name) for name, source in sources.items()]
          + [
            (name, f"{options.renamer(name)} (from the Keras iterations)")
            for name in synthesized
          ]
        )
      )
    ),
    not_found=tuple(sorted(not_found)),
    unused_in_checkpoint=unused,
    excluded=tuple(sorted(v.name for v in excluded)),
    not_selected=tuple(sorted(v.name for v in not_selected)),
    remapped=tuple(sorted(set(vocab) & set(sources))),
  )
  if not_found or not sources:
    logging.warning("%s", summary.format())
  else:
    logging.info("%s", summary.format())

  for note in index.notes:
    logging.warning("%s", note)
  by_name = {variable.name: variable for variable in selected}
  for name, value in sorted(synthesized.items()):
    _init_from_value(by_name[name], value)
  stock_vars: List[Any] = []
  prev_names = {}
  stock_vocab: Dict[str, vocab_remap.VocabInfo] = {}
  for name, source in sorted(sources.items()):
    info = vocab.get(name)
    if source.assembled and info is not None:
      # No key holds the whole tensor; stock code reads it from a staged
      # index that lists the parts as slices (see vocab_remap).
      staged = staged_index.stage(index.bundle, [index.variable(source.name)])
      vocab_remap.initialise(by_name[name].parts, staged, source.name, info)
    elif source.assembled:
      _init_from_parts(checkpoint, by_name[name], source)
    else:
      stock_vars.extend(by_name[name].parts)
      prev_names[name] = source.keys[0]
      if info is not None:
        stock_vocab[name] = info
  # Stock code gets the model dir when that is what the user gave (it
  # resolves the same latest checkpoint): TensorFlow's own ram:// file system
  # calls any prefix of a file a directory, so a prefix would not load.
  stock_source = path if checkpoint != path else checkpoint
  return (stock_source, stock_vars, stock_vocab, prev_names), summary


def _vocab_for(
  options: _Options,
  selected: Sequence[_GraphVariable],
  graph_variables: Sequence[_GraphVariable],
) -> Mapping[str, vocab_remap.VocabInfo]:
  """The VocabInfo of each selected variable that has one (slots too)."""
  return vocab_remap.for_selected(
    dict(options.vocab_info),
    {variable.name: variable.shape for variable in selected},
    _optimizer_state_names(graph_variables)
    if options.with_optimizer_slots
    else None,
  )


def _check_vocab(
  checkpoint: str,
  selected: Sequence[_GraphVariable],
  sources: Mapping[str, _Source],
  vocab: Mapping[str, vocab_remap.VocabInfo],
) -> None:
  """Raises one error listing what stock's remapping would fail on."""
  remapped = []
  for variable in selected:
    source = sources.get(variable.name)
    if variable.name not in vocab or source is None:
      continue
    stored = list(source.shapes[0])
    if source.axis is not None:
      stored[source.axis] = sum(s[source.axis] for s in source.shapes)
    remapped.append(
      vocab_remap.Remapped(
        variable.name,
        variable.shape,
        variable.dtype,
        source.name,
        tuple(stored),
        source.dtype,
        vocab[variable.name],
      )
    )
  vocab_remap.check(checkpoint, remapped)


def _graph_variables(graph: tf.Graph) -> List[_GraphVariable]:
  """The graph's global variables, partitions grouped (TF1 save names)."""
  grouped: Dict[str, List[tf.Variable]] = {}
  for var in graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES):
    grouped.setdefault(keys.save_name(var), []).append(var)
  result = []
  for name, parts in grouped.items():
    slice_info = _slice_info(parts[0])
    if slice_info is not None:
      parts.sort(key=lambda part: tuple(_slice_info(part).var_offset))
      shape = tuple(slice_info.full_shape)
    else:
      shape = tuple(parts[0].shape.as_list())
    result.append(
      _GraphVariable(
        name=name,
        parts=tuple(parts),
        shape=shape,
        dtype=parts[0].dtype.base_dtype,
        trainable=all(p.trainable for p in parts),
      )
    )
  return sorted(result, key=lambda v: v.name)


def _slice_info(var: tf.Variable):
  """A partition's `SaveSliceInfo` (full name, shape, offset), else None.

  Partitions carry the full variable's name and shape here; stock warm start
  and Saver group partitions by it (saveable_object_util.op_list_to_dict),
  and TF has no public accessor.
  """
  return getattr(var, "_save_slice_info", None)


def _select(
  graph: tf.Graph, graph_variables: Sequence[_GraphVariable], options: _Options
) -> Tuple[List[_GraphVariable], List[_GraphVariable], List[_GraphVariable]]:
  """Splits variables into (excluded by default, selected, not selected)."""
  step = tf.compat.v1.train.get_global_step(graph)
  step_name = step.op.name if step is not None else keys.GLOBAL_STEP_NAME
  optimizer_state = _optimizer_state_names(graph_variables)
  selection = options.vars_to_warm_start
  chosen_ids: Optional[Set[int]] = None
  if (
    selection is not None
    and not isinstance(selection, str)
    and all(_is_variable_like(item) for item in selection)
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


def _matches(variable: _GraphVariable, selection: VarsToWarmStart) -> bool:
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


def _optimizer_state_names(
  graph_variables: Sequence[_GraphVariable],
) -> frozenset:
  """Names of the optimizer's variables (see the module docstring).

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


def _check_unused_rules(
  renamer: rename_rules.Renamer, selected: Sequence[_GraphVariable]
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


def _check_compatible(
  checkpoint: str,
  selected: Sequence[_GraphVariable],
  sources: Mapping[str, _Source],
) -> None:
  """Raises one error listing every shape or dtype mismatch."""
  by_name = {variable.name: variable for variable in selected}
  problems = []
  for name, source in sorted(sources.items()):
    variable = by_name[name]
    shape_ok = source.axis is not None or (
      len(source.shapes) == 1 and source.shapes[0] == variable.shape
    )
    if shape_ok and source.dtype == variable.dtype:
      continue
    stored = " + ".join(_format_shape(s) for s in source.shapes)
    if len(source.shapes) > 1:
      stored = f"{len(source.shapes)} partitions {stored}"
    problems.append(
      f"`{name}`: the model's variable has shape "
      f"{_format_shape(variable.shape)} and dtype {variable.dtype.name}; "
      f"the checkpoint's `{source.name}` has shape {stored} and dtype "
      f"{source.dtype.name}"
    )
  if problems:
    listed = ";\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
    more = ""
    if len(problems) > _MAX_LISTED_PROBLEMS:
      more = f"\n  ... and {len(problems) - _MAX_LISTED_PROBLEMS} more"
    raise errors.ShapeMismatchError(
      f"Cannot warm-start from `{checkpoint}`: {len(problems)} variable(s) "
      f"differ from their checkpoint tensors:\n  {listed}{more}.\nWarm "
      "start copies values exactly, so shapes and dtypes must match. Leave "
      "such a variable out with vars_to_warm_start, map it to another "
      "tensor with rename, or change the model."
    )


def _format_shape(shape: Sequence[int]) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


class _CheckpointIndex:
  """The variables of one checkpoint by TF1 name, in any layout (not public).

  `layouts` resolves the names (the precedence and conflict rules are in its
  docstring), as for inspection and the Scaffold factory's restore. The index
  is read by `reader` (no tensor bytes); a model dir, a checkpoint prefix or
  a SavedModel's `variables/variables` prefix.
  """

  def __init__(
    self,
    checkpoint: str,
    *,
    keras_slots: bool = False,
    adam_betas: Optional[Tuple[float, float]] = None,
  ):
    contents = reader.read(checkpoint)
    self.bundle = contents.bundle
    self.object_based = contents.format == reader.TF2
    self._variables = contents.variables
    # Values a Keras checkpoint lacks, by TF1 name (Adam's beta powers).
    self.synthesized: Mapping[str, Any] = {}
    self.notes: Tuple[str, ...] = ()
    keras = None
    if keras_slots:
      keras = keras_checkpoints.tf1_mapping(contents, adam_betas=adam_betas)
    if keras is not None:
      # Keras optimizer state answers to its TF1 slot names only.
      self._variables = {
        keras.renames.get(name, name): variable
        for name, variable in contents.variables.items()
      }
      self.synthesized = keras.synthesized
      self.notes = keras.notes
    # Every variable, by the name it is reported under.
    self.names = tuple(self._variables)

  def variable(self, name: str) -> layouts.Variable:
    """The checkpoint variable `find` found under `name`."""
    return self._variables[name]

  def names_read_for(self, name: str) -> List[str]:
    """The checkpoint names a variable with checkpoint name `name` reads."""
    return [name] if name in self._variables else []

  def find(
    self, name: str, shape: Optional[Sequence[int]]
  ) -> Optional[_Source]:
    """Where the variable with checkpoint name `name` is, or None.

    Args:
      name: The variable's name in the checkpoint (after renaming).
      shape: The model's full shape of it, used to find the axis along
        which per-partition tensors are concatenated; None when it may
        differ (a remapped vocabulary): the one axis the parts differ in.
    """
    variable = self._variables.get(name)
    if variable is None:
      return None
    dtype = tf.dtypes.as_dtype(variable.dtype.enum)
    if variable.layout is not layouts.Layout.STOCK_PARTS or (
      not variable.partitioned
    ):
      # One key holds the whole logical tensor (maybe as slices); an alias's
      # first key is the one it aliases.
      return _Source(
        name=name,
        keys=(variable.keys[0],),
        shapes=(variable.shape,),
        dtype=dtype,
      )
    shapes = tuple(bundle.shape_of(part.entry) for part in variable.parts)
    return _Source(
      name=name,
      keys=tuple(reader.key_name(p.key) for p in variable.parts),
      shapes=shapes,
      dtype=dtype,
      axis=layouts.concat_axis(shapes, None if shape is None else tuple(shape)),
    )


def _init_from_value(variable: _GraphVariable, value: Any) -> None:
  """Initialises an unpartitioned variable to a constant (see below)."""
  for part in variable.parts:
    constant = tf.constant(value, dtype=part.dtype.base_dtype)
    constant.set_shape(part.shape)
    # pylint: disable=protected-access
    part._initializer_op = part.assign(constant, read_value=False)
    part._initial_value = constant
    # pylint: enable=protected-access


def _validate_betas(
  betas: Optional[Tuple[float, float]],
) -> Optional[Tuple[float, float]]:
  if betas is None:
    return None
  try:
    beta_1, beta_2 = (float(b) for b in betas)
  except (TypeError, ValueError):
    raise errors.ArgumentTypeError(
      f"adam_betas must be a pair (beta_1, beta_2) of floats, got {betas!r}."
    ) from None
  return beta_1, beta_2


def _init_from_parts(
  checkpoint: str, variable: _GraphVariable, source: _Source
) -> None:
  """Initialises `variable` from per-partition tensors, re-slicing them.

  Each of the variable's partitions (or the whole variable) reads, from every
  stored part it overlaps, just the overlapping slice (RestoreV2 slice
  specs), and concatenates them. This is what `init_from_checkpoint` does
  for one stored tensor (checkpoint_utils._set_checkpoint_initializer),
  including replacing the variable's private initializer op, which is how
  TensorFlow itself warm-starts.
  """
  axis = source.axis
  assert axis is not None  # Stock parts reassemble along one axis.
  bounds = []
  start = 0
  for shape in source.shapes:
    bounds.append((start, start + shape[axis]))
    start += shape[axis]
  for part in variable.parts:
    slice_info = _slice_info(part)
    if slice_info is not None:
      offset, extent = list(slice_info.var_offset), list(slice_info.var_shape)
    else:
      offset, extent = [0] * len(variable.shape), list(variable.shape)
    low, high = offset[axis], offset[axis] + extent[axis]
    dtype = part.dtype.base_dtype
    with tf.compat.v1.device(part.device), tf.compat.v1.device("/cpu:0"):
      pieces = []
      for key, shape, (part_low, part_high) in zip(
        source.keys, source.shapes, bounds
      ):
        overlap_low, overlap_high = max(low, part_low), min(high, part_high)
        if overlap_low >= overlap_high:
          continue
        piece_offset = list(offset)
        piece_extent = list(extent)
        piece_offset[axis] = overlap_low - part_low
        piece_extent[axis] = overlap_high - overlap_low
        spec = tf.compat.v1.Variable.SaveSliceInfo(
          key, list(shape), piece_offset, piece_extent
        ).spec
        pieces.append(
          tf.raw_ops.RestoreV2(
            prefix=checkpoint,
            tensor_names=[key],
            shape_and_slices=[spec],
            dtypes=[dtype],
            name="warm_start_restore",
          )[0]
        )
      value = pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis)
      value.set_shape(part.shape)
    # pylint: disable=protected-access
    part._initializer_op = part.assign(value, read_value=False)
    part._initial_value = value
    # pylint: enable=protected-access
  logging.debug(
    "Warm-started %s from %d per-partition tensors %s.",
    variable.name,
    len(source.keys),
    ", ".join(source.keys),
  )
