"""How the TF2 saver restores: keys that can be fed, and the layout choice.

Not public API. `RemappableKeysSaverBuilder` builds restore ops whose
checkpoint keys come from a `placeholder_with_default` (default: the TF2
keys), so one set of restore ops reads this layout directly and any other
layout by feeding other keys. When the direct restore fails,
`choose_layout` reads the index and finds, through `layouts`, where each
variable is stored (TF1 names, `var_list/`, `vars/`, object-graph names,
stock per-partition tensors) or says what is missing, and `check_shapes`
refuses a shape or dtype change before any restore op runs.
"""

import collections
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
from tensorflow.python.framework import constant_op
from tensorflow.python.framework import dtypes
from tensorflow.python.ops import array_ops
from tensorflow.python.ops import io_ops
from tensorflow.python.training import saver as saver_lib

from estimator_ckpt import errors
from estimator_ckpt._src import layouts
from estimator_ckpt._src import reader
from estimator_ckpt._src import saver_keys
from estimator_ckpt._src import staged_index

tf1 = tf.compat.v1


class RemappableKeysSaverBuilder(saver_lib.BulkSaverBuilder):
  """Builds restore ops whose checkpoint keys can be fed.

  Stock `BulkSaverBuilder.bulk_restore` bakes the keys into a constant.
  Here they come from a `placeholder_with_default`, so `Tf2Saver.restore` can
  read the same variables under their TF1 names.
  """

  def __init__(self):
    super().__init__()
    # (keys tensor, default keys) per restore op (one per device shard).
    self.key_feeds: List[Tuple[tf.Tensor, Tuple[str, ...]]] = []

  def bulk_restore(
    self, filename_tensor, saveables, preferred_shard, restore_sequentially
  ):
    del preferred_shard, restore_sequentially  # As BulkSaverBuilder.
    specs = [
      spec
      for saveable in saveables
      if not isinstance(saveable, saver_keys.SaveOnlySaveable)
      for spec in saveable.specs
    ]
    restored = []
    if specs:
      names = tuple(spec.name for spec in specs)
      with tf.device("cpu:0"):
        names_tensor = array_ops.placeholder_with_default(
          constant_op.constant(names, dtype=dtypes.string),
          shape=[len(names)],
          name="checkpoint_keys",
        )
        restored = io_ops.restore_v2(
          filename_tensor,
          names_tensor,
          [spec.slice_spec for spec in specs],
          [spec.dtype for spec in specs],
        )
      self.key_feeds.append((names_tensor, names))
    # Save-only saveables get placeholders their restore() ignores.
    tensors = iter(restored)
    result: List[Any] = []
    for saveable in saveables:
      for _ in saveable.specs:
        if isinstance(saveable, saver_keys.SaveOnlySaveable):
          result.append(None)
        else:
          result.append(next(tensors))
    return result


def per_partition(variable: layouts.Variable) -> bool:
  """Stored one tensor per partition: no key holds it whole."""
  return variable.layout is layouts.Layout.STOCK_PARTS and variable.partitioned


def locate(
  contents: reader.Contents,
  key: str,
  tf1_name: str,
  restore_name_based: bool,
) -> Optional[layouts.Variable]:
  """What `contents` holds for this saver's `key`, or None.

  The key itself first (this layout; a saveable's own name), then, with
  `restore_name_based`, the variable's TF1 name in any layout `layouts`
  resolves, unless that is several per-partition tensors, which one
  RestoreV2 key cannot read (`restore` stages them as one), unless the
  checkpoint is remote (`staged_index` links to local data files).
  """
  variable = layouts.find(contents.bundle, contents.variables, key)
  if variable is not None or not restore_name_based:
    return variable
  variable = contents.variables.get(tf1_name)
  if variable is None or (
    per_partition(variable)
    and not staged_index.can_keep_entries(contents.prefix)
  ):
    return None
  return variable


def choose_layout(
  save_path: str,
  contents: reader.Contents,
  wanted: Sequence[str],
  tf1_name_by_key: Mapping[str, str],
  restore_name_based: bool,
) -> Dict[str, Tuple[str, layouts.Variable]]:
  """Key -> (stored key, what is stored) for every key restored.

  Args:
    save_path: The checkpoint prefix (for messages).
    contents: Its contents.
    wanted: Each key the restore ops read, once.
    tf1_name_by_key: TF2 key -> TF1 name (keys not in it are their own).
    restore_name_based: Also look up TF1 names in any layout.

  Raises:
    errors.IncompatibleCheckpointError: Some key is in no layout.
  """
  located: Dict[str, Tuple[str, layouts.Variable]] = {}
  missing = []
  for key in wanted:
    variable = locate(
      contents, key, tf1_name_by_key.get(key, key), restore_name_based
    )
    if variable is None:
      missing.append(key)
    else:
      # The key itself if it is stored, else where the variable's value is
      # read from (an alias's first key).
      stored = variable.keys[0]
      if key in variable.keys:
        stored = key
      elif per_partition(variable):
        stored = variable.name  # Its key in the staged index.
      located[key] = (stored, variable)
  if missing and not restore_name_based:
    raise errors.IncompatibleCheckpointError(
      f"`{save_path}` lacks {len(missing)} of the {len(wanted)} keys "
      f"this model restores: {errors.format_names(missing)}. "
      "`restore_name_based=False`, so TF1 names were not tried; pass "
      "`restore_name_based=True` to resume a TF1 checkpoint, or "
      "warm-start a fresh model_dir from it."
    )
  if missing:
    names = sorted(tf1_name_by_key.get(key, key) for key in missing)
    parts = [
      name
      for name in names
      if name in contents.variables
      and contents.variables[name].layout is layouts.Layout.STOCK_PARTS
    ]
    hint = ""
    if parts:
      hint = (
        f" {errors.format_names(parts)} are stored one tensor per "
        "partition (stock tf.train.Checkpoint) on a remote file system, "
        "which restore cannot read; copy the checkpoint to a local "
        "directory, or warm-start from it."
      )
    raise errors.IncompatibleCheckpointError(
      f"`{save_path}` does not hold this model's variables: looked up "
      "by key and by TF1 name (TF1 names, `var_list/`, `vars/`, "
      f"object-graph names), {len(missing)} of {len(wanted)} are "
      f"missing: {errors.format_names(names)}.{hint} If the model "
      "changed on purpose, train it in a fresh model_dir warm-started "
      "from this checkpoint (estimator_ckpt.warm_start_settings, with "
      "`rename` for renamed scopes); if the model_dir is the wrong one, "
      "point model_dir at the right one."
    )

  moved = [
    variable.layout
    for key, (stored, variable) in located.items()
    if stored != key
  ]
  if moved and contents.format == reader.TF1:
    tf1.logging.info(
      "%s is a name-based (TF1) checkpoint; restoring %d variables by "
      "name (TensorFlow's NOT_FOUND warning for the TF2 keys just above "
      "is expected). The next save writes a TF2 checkpoint.",
      save_path,
      len(wanted),
    )
  elif moved:
    counts = collections.Counter(layout.value for layout in moved)
    tf1.logging.info(
      "%s is an object-based checkpoint of another layout; restoring %d "
      "of %d variables by TF1 name (%s).",
      save_path,
      len(moved),
      len(wanted),
      ", ".join(f"{n} as {layout}" for layout, n in sorted(counts.items())),
    )
  return located


def check_shapes(
  save_path: str,
  located: Mapping[str, Tuple[str, layouts.Variable]],
  values_by_key: Mapping[str, Any],
  tf1_name_by_key: Mapping[str, str],
) -> None:
  """Raises ShapeMismatchError before any restore op runs."""
  for key, (stored_key, variable) in located.items():
    value = values_by_key.get(key)
    expected = None if value is None else saver_keys.shape_and_dtype(value)
    if expected is None:
      continue
    stored = (list(variable.shape), variable.dtype.name)
    if stored != tuple(expected):
      raise errors.ShapeMismatchError(
        f"`{save_path}`: `{stored_key}` is stored with shape {stored[0]} "
        f"and dtype {stored[1]}, but variable "
        f"`{tf1_name_by_key.get(key, key)}` has shape "
        f"{expected[0]} and dtype {expected[1]}. Restore into a model of "
        "the same shapes, or warm-start only the variables that match "
        "(vars_to_warm_start)."
      )


def restored_keys(
  key_feeds: Sequence[Tuple[tf.Tensor, Tuple[str, ...]]],
) -> List[str]:
  """Each key the restore ops read, once, in order."""
  return list(dict.fromkeys(name for _, names in key_feeds for name in names))


def feed_for_layout(
  save_path: str,
  key_feeds: Sequence[Tuple[tf.Tensor, Tuple[str, ...]]],
  tf1_name_by_key: Mapping[str, str],
  values_by_key: Mapping[str, Any],
  restore_name_based: bool,
  *,
  filename_tensor: str,
) -> Dict[Any, Any]:
  """The feed that makes the restore ops read `save_path`'s own layout.

  Args:
    save_path: The checkpoint prefix, which the direct restore could not read.
    key_feeds: `RemappableKeysSaverBuilder.key_feeds`.
    tf1_name_by_key: TF2 key -> TF1 name.
    values_by_key: TF2 key -> the model's value (for shape checks).
    restore_name_based: Also look up TF1 names in any layout.
    filename_tensor: The saver's filename tensor name, fed a staged index
      when stock per-partition tensors are read.

  Raises:
    errors.IncompatibleCheckpointError, errors.ShapeMismatchError: As
      `choose_layout` and `check_shapes`, before any restore op runs.
  """
  contents = reader.read(save_path)
  located = choose_layout(
    save_path,
    contents,
    restored_keys(key_feeds),
    tf1_name_by_key,
    restore_name_based,
  )
  check_shapes(save_path, located, values_by_key, tf1_name_by_key)
  feed: Dict[Any, Any] = {}
  stock_parts = {
    variable.name: variable
    for _, variable in located.values()
    if per_partition(variable)
  }
  if stock_parts:
    # No key holds them whole: restore from an index that lists them as
    # slices over the same data files (see staged_index).
    feed[filename_tensor] = staged_index.stage(
      contents.bundle,
      list(stock_parts.values()),
      keep=staged_index.entries_except(contents.bundle, stock_parts).items(),
    )
  for names_tensor, names in key_feeds:
    translated = [located[name][0] for name in names]
    if translated != list(names):
      feed[names_tensor] = translated
  return feed
