"""Vocabulary-aware warm start: stock `VocabInfo` from any checkpoint layout.

A variable indexed by a vocabulary (an embedding or linear weights over a
feature's words, axis 0; an output layer over a label vocabulary, axis 1)
cannot be copied row for row when the vocabulary changed: stock Estimator
remaps it with `tf.estimator.VocabInfo`, through the `GenerateVocabRemapping`
and `LoadAndRemapMatrix` ops (tensorflow/python/training/
warm_starting_util.py `_warm_start_var_with_vocab`, checkpoint_ops.py
`_load_and_remap_matrix`).

The remapped values here are stock's, bit for bit, because they are made by
stock's own code: `LoadAndRemapMatrix` reads one tensor by name from a
name-based bundle with `BundleReader::LookupSlice`, which reads a whole
tensor or a tensor stored as slices alike, so

* a source that one key holds (TF1 names, `var_list/...` with or without
  slices, the guide's `vars/...`, object-graph names, SavedModels, Keras
  keys) is handed to stock code with that key as the previous tensor name;
* a source stored one tensor per partition (stock `tf.train.Checkpoint`'s
  `emb.Spart_K`) has no such key: `staged_index` writes a small TF1 index
  that lists the parts as slices of one tensor over the source's own data
  files, and stock code reads it like any sliced tensor. Nothing is decoded
  or held in memory.

What stock does not check until a session runs (a variable of the wrong
shape, a missing vocabulary file) is checked here when the warm start is
resolved, by `problem`.
"""

import dataclasses
from typing import (
  AbstractSet,
  Dict,
  Mapping,
  Optional,
  Sequence,
  Tuple,
)

import tensorflow as tf

# Stock's implementation; TensorFlow exports only `warm_start` itself, which
# reads every tensor from one checkpoint (one path for all variables).
from tensorflow.python.training import warm_starting_util

# `tf.estimator.VocabInfo` (and `tf.compat.v1.train.VocabInfo`) is this class;
# imported by name so that type checkers see a class.
from tensorflow.python.training.warm_starting_util import VocabInfo  # noqa: I001  pylint: disable=g-importing-member

from estimator_ckpt import errors
from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import registry

VocabInfoArg = Optional[Mapping[str, VocabInfo]]


def validate(vocab_info: VocabInfoArg) -> Mapping[str, VocabInfo]:
  """Checks the `vocab_info` argument's types and numbers.

  Raises:
    errors.ArgumentTypeError: Not a mapping of names to VocabInfo.
    errors.InvalidArgumentError: A size or bucket count out of range.
  """
  if vocab_info is None:
    return {}
  if not isinstance(vocab_info, Mapping):
    raise errors.ArgumentTypeError(
      "vocab_info must be a dict {variable name: tf.estimator.VocabInfo}, "
      f"got {type(vocab_info).__name__}."
    )
  result = {}
  for name, info in vocab_info.items():
    if not isinstance(name, str) or not isinstance(info, VocabInfo):
      raise errors.ArgumentTypeError(
        "vocab_info must map variable names (str) to "
        f"tf.estimator.VocabInfo, got {name!r}: {type(info).__name__}. "
        "Key a partitioned variable by its name, not a partition's."
      )
    if not (isinstance(info.new_vocab_size, int) and info.new_vocab_size > 0):
      raise errors.InvalidArgumentError(
        f"vocab_info[{name!r}].new_vocab_size must be a positive int, got "
        f"{info.new_vocab_size!r}."
      )
    if not (
      isinstance(info.num_oov_buckets, int) and info.num_oov_buckets >= 0
    ):
      raise errors.InvalidArgumentError(
        f"vocab_info[{name!r}].num_oov_buckets must be an int >= 0, got "
        f"{info.num_oov_buckets!r}."
      )
    if not info.new_vocab or not info.old_vocab:
      raise errors.InvalidArgumentError(
        f"vocab_info[{name!r}] needs both new_vocab and old_vocab (paths to "
        "vocabulary files, one entry per line)."
      )
    result[name] = info
  return result


FLAG_SYNTAX = (
  "VARIABLE=NEW_VOCAB,OLD_VOCAB[,new_size=N][,oov=N][,old_size=N][,axis=0|1]"
)
_FLAG_KEYS = ("new_size", "oov", "old_size", "axis")


def parse_flag_value(value: str) -> Tuple[str, VocabInfo]:
  """One `--warm_start_vocab` value as (variable name, VocabInfo).

  `VARIABLE=NEW_VOCAB,OLD_VOCAB[,new_size=N][,oov=N][,old_size=N]
  [,axis=0|1]`: the variable's current name, its new and old vocabulary
  files; `new_size` defaults to the new file's line count, `oov` (OOV
  buckets) to 0, `old_size` to the whole old file, `axis` to 0. No backup
  initializer: rows of new words start at zero, as stock's default.

  Raises:
    errors.InvalidArgumentError: The value does not follow the syntax, a
      number is bad, or a vocabulary file does not exist.
  """

  def fail(why: str) -> errors.InvalidArgumentError:
    return errors.InvalidArgumentError(
      f"`{value}`: {why}. Expected {FLAG_SYNTAX}, e.g. "
      "`--warm_start_vocab=dnn/emb/embedding_weights=/data/words_v2.txt,"
      "/data/words_v1.txt,oov=2`."
    )

  name, sep, rest = value.partition("=")
  fields = rest.split(",")
  if not sep or not name.strip() or len(fields) < 2:
    raise fail("it needs a variable name, `=`, and two vocabulary files")
  new_vocab, old_vocab = fields[0].strip(), fields[1].strip()
  if not new_vocab or not old_vocab or "=" in new_vocab + old_vocab:
    raise fail("the new and the old vocabulary file come first, in order")
  options: Dict[str, int] = {}
  for field in fields[2:]:
    key, eq, number = field.partition("=")
    key = key.strip()
    if not eq or key not in _FLAG_KEYS:
      raise fail(f"unknown option `{field}` (options: {', '.join(_FLAG_KEYS)})")
    if key in options:
      raise fail(f"`{key}` is given twice")
    try:
      options[key] = int(number)
    except ValueError:
      raise fail(f"`{key}` must be an integer, got `{number}`") from None
  for path in (new_vocab, old_vocab):
    if not registry.for_path(path).exists(path):
      raise fail(f"vocabulary file `{path}` does not exist")
  if options.get("axis", 0) not in (0, 1):
    raise fail("axis must be 0 (rows: embeddings) or 1 (columns: labels)")
  if options.get("oov", 0) < 0:
    raise fail("oov must be >= 0")
  new_size = options.get("new_size")
  if new_size is None:
    new_size = _line_count(new_vocab)
  if new_size < 1:
    raise fail("new_size must be at least 1 (an empty new vocabulary?)")
  old_size = options.get("old_size", -1)
  if old_size == 0 or old_size < -1:
    raise fail("old_size must be at least 1 (or left out: the whole file)")
  info = VocabInfo(
    new_vocab=new_vocab,
    new_vocab_size=new_size,
    num_oov_buckets=options.get("oov", 0),
    old_vocab=old_vocab,
    old_vocab_size=old_size,
    axis=options.get("axis", 0),
  )
  return name.strip(), info


def parse_flag_values(values: Sequence[str]) -> Dict[str, VocabInfo]:
  """All `--warm_start_vocab` values; a variable named twice is an error."""
  result: Dict[str, VocabInfo] = {}
  for value in values:
    name, info = parse_flag_value(value)
    if name in result:
      raise errors.InvalidArgumentError(
        f"`{name}` is given twice; pass one --warm_start_vocab per variable."
      )
    result[name] = info
  return result


def for_selected(
  vocab_info: Mapping[str, VocabInfo],
  shapes: Mapping[str, Sequence[int]],
  optimizer_state: Optional[AbstractSet[str]],
) -> Dict[str, VocabInfo]:
  """The VocabInfo of each selected variable that has one.

  A slot of a remapped variable (Adagrad's accumulator, Adam's `m` and
  `v`) is indexed by the same vocabulary, so it gets the same VocabInfo
  (stock users list the slot names in `var_name_to_vocab_info` too; here it
  is implied). An explicit entry for a slot wins.

  Args:
    vocab_info: The user's, by current variable name.
    shapes: The selected variables' full shapes, by name.
    optimizer_state: Names of the optimizer's variables when slots are
      warm-started (`with_optimizer_slots`); None otherwise.

  Raises:
    errors.InvalidArgumentError: A `vocab_info` name is not selected.
  """
  unknown = sorted(set(vocab_info) - set(shapes))
  if unknown:
    raise errors.InvalidArgumentError(
      f"vocab_info names variables that are not warm-started: "
      f"{errors.format_names(unknown)}. A misspelled name would silently "
      "copy rows of another vocabulary, so this is an error (as with stock "
      "var_name_to_vocab_info). Use current variable names (a partitioned "
      "variable by its name, not a partition's), and select them with "
      "vars_to_warm_start (optimizer slots need with_optimizer_slots). "
      f"Selected variables: {errors.format_names(sorted(shapes)) or 'none'}."
    )
  result = dict(vocab_info)
  if optimizer_state is None:
    return result
  for name, info in vocab_info.items():
    for slot in sorted(set(shapes) & set(optimizer_state)):
      if slot.startswith(name + "/") and shapes[slot] == shapes[name]:
        result.setdefault(slot, info)
  return result


@dataclasses.dataclass(frozen=True)
class Remapped:
  """A variable to remap and its source (for `check`)."""

  name: str
  shape: Tuple[int, ...]
  dtype: tf.dtypes.DType
  source_name: str
  source_shape: Tuple[int, ...]
  source_dtype: tf.dtypes.DType
  info: VocabInfo


def check(checkpoint: str, remapped: Sequence[Remapped]) -> None:
  """Raises one error listing what stock's remapping would fail on.

  Raises:
    errors.ShapeMismatchError: See `problem`.
  """
  problems = [
    found
    for found in (
      problem(
        r.name,
        r.shape,
        r.dtype,
        r.source_name,
        r.source_shape,
        r.source_dtype,
        r.info,
      )
      for r in remapped
    )
    if found
  ]
  if problems:
    raise errors.ShapeMismatchError(
      f"Cannot remap vocabularies warm-starting from `{checkpoint}`:\n  "
      + ";\n  ".join(problems)
      + ".\nFix the VocabInfo (the variable's size along `axis` must be "
      "new_vocab_size + num_oov_buckets), or leave the variable out of "
      "vocab_info and vars_to_warm_start."
    )


def problem(
  name: str,
  shape: Sequence[int],
  dtype: tf.dtypes.DType,
  source_name: str,
  source_shape: Sequence[int],
  source_dtype: tf.dtypes.DType,
  info: VocabInfo,
) -> Optional[str]:
  """Why stock's remapping of `name` would fail at run time, or None.

  Args:
    name: The current variable's name.
    shape: Its full shape.
    dtype: Its dtype.
    source_name: The checkpoint variable it is read from.
    source_shape: That variable's full shape.
    source_dtype: That variable's dtype.
    info: The VocabInfo for it.
  """
  expected = info.new_vocab_size + info.num_oov_buckets
  where = f"`{name}` (from `{source_name}`)"
  if len(shape) != 2 or len(source_shape) != 2:
    return (
      f"{where}: vocabulary remapping works on matrices, but the variable "
      f"has shape {list(shape)} and the checkpoint's {list(source_shape)}"
    )
  if dtype != tf.float32 or source_dtype != tf.float32:
    return (
      f"{where}: LoadAndRemapMatrix reads float32 only, but the variable is "
      f"{dtype.name} and the checkpoint's {source_dtype.name}"
    )
  axis, other = info.axis, 1 - info.axis
  if shape[axis] != expected:
    return (
      f"{where}: axis {axis} has {shape[axis]} entries, but the VocabInfo "
      f"says new_vocab_size {info.new_vocab_size} + num_oov_buckets "
      f"{info.num_oov_buckets} = {expected}"
    )
  if shape[other] != source_shape[other]:
    return (
      f"{where}: axis {other} (not remapped) has {shape[other]} entries in "
      f"the model and {source_shape[other]} in the checkpoint"
    )
  if info.axis == 0 and info.old_vocab_size > source_shape[0]:
    return (
      f"{where}: old_vocab_size {info.old_vocab_size} exceeds the "
      f"checkpoint's {source_shape[0]} rows"
    )
  for which, path in (
    ("new_vocab", info.new_vocab),
    ("old_vocab", info.old_vocab),
  ):
    if isinstance(path, str) and not registry.for_path(path).exists(path):
      return f"{where}: {which} file `{path}` does not exist"
  return None


def _line_count(path: str) -> int:
  """Lines of a vocabulary file, as stock counts them (a last one unended)."""
  store = registry.for_path(path)
  count = 0
  last = b""
  with store.open_regular(path, "vocabulary file") as f:
    offset = 0
    while offset < f.size:
      chunk = f.pread(min(base.STREAM_CHUNK, f.size - offset), offset)
      count += chunk.count(b"\n")
      last = chunk[-1:]
      offset += len(chunk)
  return count + (1 if last not in (b"", b"\n") else 0)


def initialise(
  parts: Sequence[tf.Variable],
  checkpoint: str,
  tensor_name: str,
  info: VocabInfo,
) -> None:
  """Replaces the initializers of `parts` with stock's remapping.

  Args:
    parts: The variable, or its partitions.
    checkpoint: A name-based bundle prefix (or a model dir).
    tensor_name: The key of the source tensor in it.
    info: How to remap.
  """
  # pylint: disable=protected-access
  warm_starting_util._warm_start_var_with_vocab(
    list(parts),
    current_vocab_path=info.new_vocab,
    current_vocab_size=info.new_vocab_size,
    prev_ckpt=checkpoint,
    prev_vocab_path=info.old_vocab,
    previous_vocab_size=info.old_vocab_size,
    current_oov_buckets=info.num_oov_buckets,
    prev_tensor_name=tensor_name,
    initializer=info.backup_initializer,
    axis=info.axis,
  )
  # pylint: enable=protected-access
