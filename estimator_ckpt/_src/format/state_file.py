"""The `checkpoint` state file of a model dir, and resolving checkpoint paths.

Not public API. The state file is a text `CheckpointState` proto
(`tensorflow/python/training/checkpoint_state.proto`) naming the latest
checkpoint and the ones kept. TensorFlow ignores a state file that does not
parse (`checkpoint_management.get_checkpoint_state` logs a warning and returns
None), after which a fresh `CheckpointManager` overwrites `ckpt-1`; here it is
an error instead. Stock `tf.train.Checkpoint` writes absolute paths, which
break when a model dir moves; a path that does not exist is looked up next to
the state file as well. This module writes relative paths only.
"""

import os
from typing import List, Optional, Sequence, Tuple

from absl import logging
from google.protobuf import text_format

from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.storage import registry

STATE_FILENAME = "checkpoint"
# TensorFlow writes one line per kept checkpoint; 10,000 kept checkpoints
# take about 600 KB.
_MAX_STATE_FILE_BYTES = 16 << 20


def read(model_dir: str) -> Optional[protos.CheckpointState]:
  """Parses `model_dir/checkpoint`; None if there is none.

  Raises:
    errors.CorruptCheckpointError: The file does not parse or names no
      checkpoint.
  """
  path = os.path.join(model_dir, STATE_FILENAME)
  try:
    text = checkpoint_files.read_small(
      path, "checkpoint state file", _MAX_STATE_FILE_BYTES
    )
  except FileNotFoundError:
    return None
  state = protos.CheckpointState()
  try:
    text_format.Parse(text.decode("utf-8"), state)
  except (text_format.ParseError, UnicodeDecodeError) as e:
    raise errors.CorruptCheckpointError(
      f"The checkpoint state file `{path}` does not parse ({e}). "
      "TensorFlow would ignore it and start over from step 0, overwriting "
      "checkpoints. Fix or delete it; it should read like "
      '`model_checkpoint_path: "model.ckpt-100"`.'
    ) from None
  if not state.model_checkpoint_path:
    raise errors.CorruptCheckpointError(
      f"The checkpoint state file `{path}` names no "
      "`model_checkpoint_path`. Fix or delete it."
    )
  return state


def _locate(model_dir: str, recorded: str) -> str:
  """A prefix recorded in the state file, as a path that exists if possible."""
  path = (
    recorded
    if registry.is_absolute(recorded)
    else os.path.join(model_dir, recorded)
  )
  if checkpoint_files.exists(bundle.index_filename(path)):
    return path
  moved = os.path.join(model_dir, os.path.basename(recorded))
  if checkpoint_files.exists(bundle.index_filename(moved)):
    logging.warning(
      "%s/%s names %s, which does not exist; using %s (the model dir was "
      "moved?).",
      model_dir,
      STATE_FILENAME,
      recorded,
      moved,
    )
    return moved
  return path


def _require_index(prefix: str, model_dir: str) -> str:
  if not checkpoint_files.exists(bundle.index_filename(prefix)):
    raise errors.CheckpointNotFoundError(
      f"`{os.path.join(model_dir, STATE_FILENAME)}` names checkpoint "
      f"`{prefix}`, but `{bundle.index_filename(prefix)}` does not exist. "
      "The model dir is incomplete; copy the whole directory, or point to "
      "an existing checkpoint prefix."
    )
  return prefix


def latest_checkpoint(model_dir: str) -> str:
  """The prefix of a model dir's latest checkpoint.

  Raises:
    errors.CheckpointNotFoundError: No state file, or it names a checkpoint
      that does not exist.
    errors.CorruptCheckpointError: The state file does not parse.
  """
  return _latest_of(model_dir, read(model_dir))


def _latest_of(model_dir: str, state: Optional[protos.CheckpointState]) -> str:
  """`latest_checkpoint` for the state file `read(model_dir)` returned."""
  if state is None:
    raise errors.CheckpointNotFoundError(
      f"`{model_dir}` is a directory without a `{STATE_FILENAME}` state "
      "file. Pass a model_dir that has been trained, or a checkpoint prefix "
      "such as `model_dir/model.ckpt-100`."
    )
  return _require_index(
    _locate(model_dir, state.model_checkpoint_path), model_dir
  )


def listed_checkpoints(model_dir: str) -> Tuple[List[str], str]:
  """Every checkpoint a model dir keeps, in its state file's order.

  Each checkpoint is listed once, however often and however spelled the
  state file records it (`model.ckpt-5`, `./model.ckpt-5`, an absolute
  path): two records are one checkpoint when they resolve to the same file.
  The latest is among the prefixes, appended if the state file does not list
  it, and spelled as `latest_checkpoint` returns it.

  Returns:
    The prefixes in the state file's order, and the latest of them.

  Raises:
    errors.CheckpointNotFoundError, errors.CorruptCheckpointError: As for
      `latest_checkpoint`, for any listed checkpoint.
  """
  state = read(model_dir)  # Once: on an object store, each read is a GET.
  latest = _latest_of(model_dir, state)
  assert state is not None  # _latest_of found it.
  latest_identity = _identity(latest)
  prefixes = []
  seen = set()
  for recorded in state.all_model_checkpoint_paths:
    prefix = _require_index(_locate(model_dir, recorded), model_dir)
    identity = _identity(prefix)
    if identity not in seen:
      seen.add(identity)
      prefixes.append(latest if identity == latest_identity else prefix)
  if latest_identity not in seen:
    prefixes.append(latest)
  return prefixes, latest


def all_checkpoints(model_dir: str) -> List[str]:
  """Prefixes of every checkpoint a model dir keeps, the latest last.

  As `listed_checkpoints`, with the latest moved to the end.

  Raises:
    errors.CheckpointNotFoundError, errors.CorruptCheckpointError: As for
      `latest_checkpoint`, for any listed checkpoint.
  """
  prefixes, latest = listed_checkpoints(model_dir)
  return [p for p in prefixes if p != latest] + [latest]


def _identity(prefix: str) -> str:
  """What two spellings of one checkpoint prefix have in common."""
  return registry.for_path(prefix).real(prefix)


def resolve(path: str) -> str:
  """A model dir's latest checkpoint prefix, or `path` if it is a prefix.

  Raises:
    errors.CheckpointNotFoundError: Neither; the message says what to pass.
    errors.CorruptCheckpointError: The model dir's state file is garbage.
  """
  if registry.for_path(path).capabilities.directories_are_prefixes:
    # Object stores (and TensorFlow's ram://) may call any prefix of an
    # object a directory: a prefix with an index is a checkpoint.
    if checkpoint_files.exists(bundle.index_filename(path)):
      return path
    if checkpoint_files.isdir(path):
      return latest_checkpoint(path)
  if checkpoint_files.isdir(path):
    return latest_checkpoint(path)
  if checkpoint_files.exists(bundle.index_filename(path)):
    return path
  for suffix in (".index", ".meta"):
    if path.endswith(suffix):
      raise _one_file_error(path, path[: -len(suffix)])
  if ".data-" in os.path.basename(path):
    raise _one_file_error(path, path[: path.rindex(".data-")])
  raise errors.CheckpointNotFoundError(
    f"`{path}` is neither a model_dir nor a checkpoint prefix (there is no "
    f"`{bundle.index_filename(path)}`). Pass a model_dir or a prefix such "
    "as `model_dir/model.ckpt-100`."
  )


def _one_file_error(path: str, prefix: str) -> errors.CheckpointNotFoundError:
  return errors.CheckpointNotFoundError(
    f"`{path}` is one file of a checkpoint; pass its prefix `{prefix}` "
    "(or the model_dir) instead."
  )


def encode(prefixes: Sequence[str], latest: Optional[str] = None) -> bytes:
  """A state file naming `prefixes`, in order, by their base names.

  Relative paths keep the model dir movable; Estimator and
  `tf.train.latest_checkpoint` resolve them against the model dir.

  Args:
    prefixes: The checkpoints the state file lists, in its order.
    latest: The one of `prefixes` it names as the latest; default the last.
  """
  latest = prefixes[-1] if latest is None else latest
  if latest not in prefixes:
    raise ValueError(f"latest {latest!r} is not one of {list(prefixes)!r}")
  return encode_state(
    protos.CheckpointState(
      model_checkpoint_path=os.path.basename(latest),
      all_model_checkpoint_paths=[os.path.basename(p) for p in prefixes],
    )
  )


def encode_state(state: protos.CheckpointState) -> bytes:
  """The state file's text for `state`, as TensorFlow writes it."""
  return text_format.MessageToString(state).encode("utf-8")
