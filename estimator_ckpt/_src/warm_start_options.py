"""The validated options of one warm start, and where its checkpoint is.

Not public API. `warm_start_settings` validates its arguments here once, when
the settings are made (`Options`); a SavedModel export dir is read at its
`variables/variables` prefix (`checkpoint_location`).
"""

import dataclasses
import re
from typing import (
  Any,
  Optional,
  Sequence,
  Tuple,
  Union,
)

import tensorflow as tf

# `tf.compat.v1.get_variable` returns PartitionedVariable, which TF does not
# export; stock warm start accepts it in `vars_to_warm_start`.
from tensorflow.python.ops import variables as tf_variables

from estimator_ckpt import errors
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src import vocab_remap
from estimator_ckpt._src.storage import registry

VarsToWarmStart = Union[None, str, Sequence[Any]]


# A SavedModel's variables live at `<export dir>/variables/variables`.
_SAVED_MODEL_VARIABLES = ("variables", "variables")


@dataclasses.dataclass(frozen=True)
class Options:
  """Validated options of one warm start (not public)."""

  vars_to_warm_start: VarsToWarmStart
  renamer: rename_rules.Renamer
  with_optimizer_slots: bool
  strict: bool
  adam_betas: Optional[Tuple[float, float]] = None
  # (name, VocabInfo) pairs: immutable, and copied and pickled as settings
  # are (a mappingproxy cannot be).
  vocab_info: Tuple[Tuple[str, vocab_remap.VocabInfo], ...] = ()


def checkpoint_location(path: str) -> str:
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


def validate_selection(selection: VarsToWarmStart) -> VarsToWarmStart:
  """Checks `vars_to_warm_start` early (types, regexes)."""
  if selection is None:
    return None
  if isinstance(selection, str):
    patterns = [selection]
  elif isinstance(selection, (list, tuple)):
    if all(isinstance(item, str) for item in selection):
      patterns = list(selection)
    elif all(is_variable_like(item) for item in selection):
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


def is_variable_like(item: Any) -> bool:
  return isinstance(item, (tf.Variable, tf_variables.PartitionedVariable))


def validate_betas(
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
