"""absl flags for checkpointing and warm start, and what they turn into.

Nothing here defines flags at import: a binary calls
`define_checkpoint_flags()` before `app.run`, then
`checkpoint_settings_from_flags()` in `main` and gets a `RunConfig`, the
warm-start settings and the Scaffold factory's options:

  from absl import app
  import estimator_ckpt

  estimator_ckpt.define_checkpoint_flags()

  def main(argv):
    settings = estimator_ckpt.checkpoint_settings_from_flags()
    model_fn = my_model_fn
    if settings.scaffold_options is not None:  # `tf2` or `both`.
      model_fn = estimator_ckpt.tf2_checkpoints(
          my_model_fn, **settings.scaffold_options)
    est = tf.estimator.Estimator(model_fn, config=settings.run_config,
                                 warm_start_from=settings.warm_start_from)

  app.run(main)

The flags (see `define_checkpoint_flags`): --model_dir, --warm_start_from,
--warm_start_vars, --warm_start_rename, --warm_start_vocab,
--warm_start_optimizer_slots, --warm_start_adam_betas, --warm_start_strict,
--checkpoint_format, --keep_checkpoint_max, --save_checkpoints_steps,
--async_save. Bad
combinations fail at flag parsing with a message that says what to do.
"""

import dataclasses
import os
import re
import types
from typing import Any, Mapping, Optional

from absl import flags
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src import vocab_remap
from estimator_ckpt._src import warm_start
from estimator_ckpt._src.keras import checkpoints as keras_checkpoints

FORMAT_TF2 = "tf2"
FORMAT_TF1 = "tf1"
FORMAT_BOTH = "both"
FORMATS = (FORMAT_TF2, FORMAT_TF1, FORMAT_BOTH)

# Flags that only mean something with --warm_start_from.
_WARM_START_OPTION_FLAGS = (
  "warm_start_vars",
  "warm_start_rename",
  "warm_start_vocab",
  "warm_start_optimizer_slots",
  "warm_start_strict",
)


def define_checkpoint_flags(
  flag_values: flags.FlagValues = flags.FLAGS, *, require_model_dir: bool = True
) -> None:
  """Defines the checkpoint and warm-start flags and their validators.

  Call once, from a binary, before `app.run`.

  Args:
    flag_values: Where to define them (tests pass a fresh `FlagValues`).
    require_model_dir: Make --model_dir required (a binary with a default
      run of its own, like //examples/ranking:train, passes False).

  Raises:
    flags.DuplicateFlagError: Called twice on the same `flag_values`.
  """
  flags.DEFINE_string(
    "model_dir",
    None,
    "Estimator model_dir: checkpoints are written (and resumed) here.",
    flag_values=flag_values,
  )
  flags.DEFINE_string(
    "warm_start_from",
    None,
    "Warm-start a fresh --model_dir from this model_dir (its latest "
    "checkpoint), checkpoint prefix or SavedModel dir; TF1 name-based or "
    "TF2 object-based. Ignored (and logged) once --model_dir has a "
    "checkpoint: Estimator warm-starts only into an empty model_dir.",
    flag_values=flag_values,
  )
  flags.DEFINE_multi_string(
    "warm_start_vars",
    None,
    "Regex over current variable names (re.match); repeat for several. "
    "Default: every model variable, trainable or not, except the global "
    "step and optimizer state.",
    flag_values=flag_values,
  )
  flags.DEFINE_multi_string(
    "warm_start_rename",
    None,
    "`current=in_checkpoint`; repeatable. A name ending in `/` is a scope: "
    "`tower/=` reads `tower/dense/kernel` from `dense/kernel`.",
    flag_values=flag_values,
  )
  flags.DEFINE_multi_string(
    "warm_start_vocab",
    None,
    f"`{vocab_remap.FLAG_SYNTAX}`; repeatable, one per variable indexed by "
    "a vocabulary that changed (stock VocabInfo): its rows (axis 0) or "
    "columns (axis 1) are remapped from the old vocabulary file to the new "
    "one. new_size defaults to the new file's line count, oov to 0, "
    "old_size to the whole old file.",
    flag_values=flag_values,
  )
  flags.DEFINE_bool(
    "warm_start_optimizer_slots",
    False,
    "Also warm-start optimizer state (Adam's m/v, beta1_power, ...).",
    flag_values=flag_values,
  )
  flags.DEFINE_list(
    "warm_start_adam_betas",
    None,
    "BETA_1,BETA_2 of the Keras Adam whose checkpoint --warm_start_from is, "
    "with --warm_start_optimizer_slots: a new Keras Adam does not save them, "
    "and TF1's beta1_power and beta2_power are made from them. Default: "
    "Keras's 0.9,0.999 (a legacy Adam's saved ones).",
    flag_values=flag_values,
  )
  flags.DEFINE_bool(
    "warm_start_strict",
    False,
    "Fail if a selected variable is not in the checkpoint (default: log "
    "it and keep its initializer).",
    flag_values=flag_values,
  )
  flags.DEFINE_enum(
    "checkpoint_format",
    FORMAT_TF2,
    FORMATS,
    "What checkpoints to write: `tf2` (object-based, estimator_ckpt's "
    "Scaffold), `tf1` (name-based, Estimator's stock Saver) or `both` "
    "(TF2 plus a TF1 copy for TF1 readers such as serving).",
    flag_values=flag_values,
  )
  flags.DEFINE_bool(
    "tf1_names",
    True,
    "With --checkpoint_format tf2 or both: also store every variable of the "
    "TF2 checkpoints under its TF1 name, as an index alias of the same bytes "
    "(no tensor written twice), so TF1 readers find it by name.",
    flag_values=flag_values,
  )
  flags.DEFINE_bool(
    "async_save",
    False,
    "With --checkpoint_format tf2 or both: save checkpoints in the "
    "background; training blocks only for a snapshot of the variables on "
    "their devices, and each checkpoint is committed (durably on a local "
    'disk) behind training. See README, "Asynchronous saves".',
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    "keep_checkpoint_max",
    5,
    "How many recent checkpoints to keep (at least 1).",
    flag_values=flag_values,
  )
  flags.DEFINE_integer(
    "save_checkpoints_steps",
    None,
    "Save a checkpoint every this many steps (default: every 600 s, "
    "Estimator's default).",
    flag_values=flag_values,
  )

  if require_model_dir:
    flags.mark_flag_as_required("model_dir", flag_values=flag_values)
  flags.register_validator(
    "keep_checkpoint_max",
    lambda value: value is not None and value >= 1,
    message="--keep_checkpoint_max must be at least 1 (the number of "
    "recent checkpoints kept); pass e.g. --keep_checkpoint_max=5, "
    "Estimator's default.",
    flag_values=flag_values,
  )
  flags.register_validator(
    "save_checkpoints_steps",
    lambda value: value is None or value >= 1,
    message="--save_checkpoints_steps must be at least 1; leave it unset to "
    "save every 600 seconds.",
    flag_values=flag_values,
  )
  flags.register_validator(
    "warm_start_vars",
    _check_regexes,
    message="--warm_start_vars holds a regex that does not compile.",
    flag_values=flag_values,
  )
  flags.register_validator(
    "warm_start_adam_betas",
    _check_adam_betas,
    message="--warm_start_adam_betas is BETA_1,BETA_2: two numbers in "
    "[0, 1), e.g. 0.9,0.999 (Keras's defaults).",
    flag_values=flag_values,
  )
  flags.register_validator(
    "warm_start_rename",
    _check_renames,
    message="--warm_start_rename values are `current=in_checkpoint`.",
    flag_values=flag_values,
  )
  flags.register_validator(
    "warm_start_vocab",
    _check_vocab,
    message=f"--warm_start_vocab values are `{vocab_remap.FLAG_SYNTAX}`.",
    flag_values=flag_values,
  )
  flags.register_multi_flags_validator(
    ("warm_start_from",) + _WARM_START_OPTION_FLAGS,
    _check_options_need_source,
    message="--warm_start_* options need --warm_start_from.",
    flag_values=flag_values,
  )
  flags.register_multi_flags_validator(
    ("checkpoint_format", "async_save"),
    lambda values: (
      not values["async_save"] or values["checkpoint_format"] != FORMAT_TF1
    ),
    message="--async_save needs --checkpoint_format tf2 or both: the stock "
    "TF1 Saver (--checkpoint_format tf1) saves only synchronously.",
    flag_values=flag_values,
  )
  flags.register_multi_flags_validator(
    ("model_dir", "warm_start_from"),
    _check_not_same_dir,
    message="--warm_start_from must differ from --model_dir.",
    flag_values=flag_values,
  )


def _check_regexes(values) -> bool:
  for value in values or ():
    try:
      re.compile(value)
    except re.error as e:
      raise flags.ValidationError(
        f"--warm_start_vars={value} is not a regex: {e}. Escape special "
        "characters, e.g. `dense\\.v2/`."
      ) from None
  return True


def _check_adam_betas(values) -> bool:
  if values is None:
    return True
  try:
    keras_checkpoints.parse_adam_betas(values)
  except ValueError:
    return False
  return True


def _check_renames(values) -> bool:
  try:
    rename_rules.parse_flag_values(values or ())
  except errors.InvalidRenameError as e:
    raise flags.ValidationError(f"--warm_start_rename: {e}") from None
  return True


def _check_vocab(values) -> bool:
  try:
    vocab_remap.parse_flag_values(values or ())
  except errors.InvalidArgumentError as e:
    raise flags.ValidationError(f"--warm_start_vocab: {e}") from None
  return True


def _check_options_need_source(values: Mapping[str, Any]) -> bool:
  if values["warm_start_from"]:
    return True
  given = [name for name in _WARM_START_OPTION_FLAGS if values[name]]
  if given:
    raise flags.ValidationError(
      f"--{given[0]} needs --warm_start_from: it only configures a warm "
      "start. Pass --warm_start_from=<model_dir or checkpoint prefix>, or "
      f"drop --{given[0]}."
    )
  return True


def _check_not_same_dir(values: Mapping[str, Any]) -> bool:
  model_dir, source = values["model_dir"], values["warm_start_from"]
  if (
    model_dir
    and source
    and (
      os.path.abspath(model_dir.rstrip("/"))
      == os.path.abspath(source.rstrip("/"))
    )
  ):
    raise flags.ValidationError(
      f"--warm_start_from={source} is --model_dir itself. To resume "
      "training, drop --warm_start_from (Estimator restores model_dir); to "
      "warm-start, pass a new --model_dir."
    )
  return True


@dataclasses.dataclass(frozen=True)
class CheckpointSettings:
  """What a binary needs from the checkpoint flags.

  Attributes:
    run_config: A `tf.estimator.RunConfig` with model_dir,
      keep_checkpoint_max and the checkpoint schedule.
    warm_start_from: Settings for `Estimator(warm_start_from=...)`, or None.
    checkpoint_format: `tf2`, `tf1` or `both`.
    scaffold_options: Keyword arguments for `estimator_ckpt.scaffold(...)`
      and `estimator_ckpt.tf2_checkpoints(model_fn, ...)`, read-only; None
      for `tf1` (keep Estimator's stock TF1 Saver).
  """

  run_config: tf.estimator.RunConfig
  warm_start_from: Optional[warm_start.WarmStartSettings]
  checkpoint_format: str
  scaffold_options: Optional[Mapping[str, Any]]

  def __post_init__(self):
    if self.checkpoint_format not in FORMATS:
      raise errors.InvalidArgumentError(
        f"checkpoint_format must be one of {FORMATS}, got "
        f"{self.checkpoint_format!r}."
      )
    if (self.scaffold_options is None) != (
      self.checkpoint_format == FORMAT_TF1
    ):
      raise errors.InvalidArgumentError(
        "scaffold_options must be None exactly for checkpoint_format "
        f"`{FORMAT_TF1}` (stock Saver), got {self.scaffold_options!r} for "
        f"`{self.checkpoint_format}`."
      )
    if self.scaffold_options is not None:
      object.__setattr__(
        self,
        "scaffold_options",
        types.MappingProxyType(dict(self.scaffold_options)),
      )

  @property
  def model_dir(self) -> str:
    return self.run_config.model_dir


def checkpoint_settings_from_flags(
  flag_values: flags.FlagValues = flags.FLAGS,
) -> CheckpointSettings:
  """Turns parsed checkpoint flags into a `CheckpointSettings`.

  Also logs plainly when --warm_start_from will be ignored because
  --model_dir already holds a checkpoint (Estimator's one-shot rule).

  Args:
    flag_values: Parsed flags defined by `define_checkpoint_flags`.

  Returns:
    The settings.

  Raises:
    estimator_ckpt.errors.CheckpointNotFoundError: --warm_start_from holds
      no checkpoint (binaries turn this into `app.UsageError`).
  """
  fv = flag_values
  config_args = dict(
    model_dir=fv.model_dir, keep_checkpoint_max=fv.keep_checkpoint_max
  )
  if fv.save_checkpoints_steps is not None:
    config_args["save_checkpoints_steps"] = fv.save_checkpoints_steps
  run_config = tf.estimator.RunConfig(**config_args)

  warm_start_from = None
  if fv.warm_start_from:
    warm_start_from = warm_start.warm_start_settings(
      fv.warm_start_from,
      vars_to_warm_start=list(fv.warm_start_vars or ()) or None,
      rename=rename_rules.parse_flag_values(fv.warm_start_rename or ()),
      with_optimizer_slots=fv.warm_start_optimizer_slots,
      strict=fv.warm_start_strict,
      vocab_info=vocab_remap.parse_flag_values(fv.warm_start_vocab or ()),
      adam_betas=(
        keras_checkpoints.parse_adam_betas(fv.warm_start_adam_betas)
        if fv.warm_start_adam_betas is not None
        else None
      ),
    )
    warm_start.log_if_warm_start_skipped(fv.model_dir, fv.warm_start_from)

  scaffold_options = None
  if fv.checkpoint_format != FORMAT_TF1:
    scaffold_options = {"max_to_keep": fv.keep_checkpoint_max}
    if fv.checkpoint_format == FORMAT_BOTH:
      scaffold_options["also_write_tf1"] = True
    if not fv.tf1_names:  # The default (True) is scaffold()'s own.
      scaffold_options["tf1_names"] = False
    if fv.async_save:  # The default (False) is scaffold()'s own.
      scaffold_options["async_save"] = True
  return CheckpointSettings(
    run_config=run_config,
    warm_start_from=warm_start_from,
    checkpoint_format=fv.checkpoint_format,
    scaffold_options=scaffold_options,
  )
