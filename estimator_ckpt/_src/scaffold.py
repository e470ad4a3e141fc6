"""The Scaffold factory: TF2 object-based checkpoints from any Estimator model.

`scaffold()` returns a `tf.compat.v1.train.Scaffold` whose saver writes TF2
checkpoints in the layout of the TensorFlow guide "Migrating model
checkpoints" (what `tf.train.Checkpoint(var_list={name: v}, step=step)`
writes, see `keys.py`), and restores either layout:

* TF2 checkpoints of this layout (ours, or the guide's hand-made Checkpoint);
* TF1 name-based checkpoints, by variable name, so an existing model dir
  resumes in place and its next save is TF2 (`restore_name_based=True`);
* other object-based checkpoints whose object graph names the variables.

Why not hand `tf.train.Checkpoint` to the Scaffold, as the guide does? Stock
`Scaffold.finalize` (tensorflow/python/training/monitored_session.py) turns it
into `Saver(var_list=frozen_saveable_objects, sharded=True)`: Estimator's
`keep_checkpoint_max` is lost, the state file gets absolute paths, TF1 dirs
cannot be restored (the graph is finalized before `Saver.restore` could build
its object-based fallback), and partitioned variables are saved as unrelated
pieces. `tests/guide_test.py` records each of these.

How: `Tf2Saver` is a `tf.compat.v1.train.Saver` (so Estimator,
MonitoredSession, SessionManager and SavedModel export use it unchanged) with
a saver builder whose restore ops read the checkpoint keys from a
`placeholder_with_default` tensor. Its default is the TF2 keys; restoring a
TF1 checkpoint feeds the TF1 names instead. One set of restore ops serves both
layouts, so the graph is no larger than a TF1 Saver's and nothing is built
after the graph is finalized. Restoring a checkpoint of the TF2 layout runs
the restore op directly; only when that fails is the index read (`reader`)
to find, through `layouts` (the resolver inspection and warm start use too),
the layout each variable is stored in (or to explain a mismatch).

Besides the guide's keys, every checkpoint holds the step a second time (8
bytes) under `save_counter/.ATTRIBUTES/VARIABLE_VALUE`, the value of the
object graph's `save_counter` node, so that `tf.train.Checkpoint(var_list=...,
step=...).restore(path).assert_consumed()` passes. It also carries index
aliases: entries
that point at the bytes of another key, so no tensor is written twice
(format/aliases.py). They are not in the object graph, so TF2 readers see
only the TF2 layout:

* `global_step`, the step by the name Estimator reads it
  (`_load_global_step_from_checkpoint_dir`, `get_variable_value`) to honour
  `train(max_steps=N)`; without it, stock TF2 checkpoints make Estimator
  rebuild and rerun the model;
* with `tf1_names=True` (the default), every variable's TF1 name (a
  partitioned one with its slices), for TF1 readers: `Saver.restore`,
  `tf.train.load_variable`, stock warm start, TF1 inference pipelines.

The aliases are added by rewriting the `.index` after TensorFlow's save (after
the merge of a sharded save), written whole under a temporary name and renamed
over the index, and only then does the `checkpoint` state file name the new
checkpoint: a kill at any point leaves the previous checkpoint named and
whole, and the new one (not yet named) either without or with its aliases,
complete for TF2 readers either way, never in between.
"""

import collections
import os
import secrets
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management
from tensorflow.python.framework import constant_op
from tensorflow.python.framework import dtypes
from tensorflow.python.ops import array_ops
from tensorflow.python.ops import control_flow_ops
from tensorflow.python.ops import io_ops
from tensorflow.python.ops import variables as variables_lib
from tensorflow.python.training import saver as saver_lib
from tensorflow.python.training.saving import saveable_object
from tensorflow.python.training.saving import saveable_object_util

from estimator_ckpt import errors
from estimator_ckpt._src import async_save as async_lib
from estimator_ckpt._src import durable
from estimator_ckpt._src import layouts
from estimator_ckpt._src import reader
from estimator_ckpt._src.format import aliases
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.storage import registry

tf1 = tf.compat.v1

# Sub-directory of the model dir that receives the TF1 copy of every save
# when `also_write_tf1=True`.
TF1_SUBDIR = "tf1"

VarList = Union[Mapping[str, Any], Sequence[Any]]


class _SaveOnlySaveable(saveable_object.SaveableObject):
  """Saves a tensor under a key but restores nothing. Not public.

  Used for the object graph proto and the `global_step` alias: both are
  written on every save and ignored on restore, so a checkpoint without them
  (TF1) still restores.
  """

  def __init__(self, tensor: tf.Tensor, name: str):
    spec = saveable_object.SaveSpec(
      tensor, "", name, dtype=tensor.dtype, device=tensor.device
    )
    super().__init__(tensor, [spec], name)

  def restore(self, restored_tensors, restored_shapes):
    del restored_tensors, restored_shapes  # Nothing to restore.
    return control_flow_ops.no_op()


class _RemappableKeysSaverBuilder(saver_lib.BulkSaverBuilder):
  """Builds restore ops whose checkpoint keys can be fed. Not public.

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
      if not isinstance(saveable, _SaveOnlySaveable)
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
        if isinstance(saveable, _SaveOnlySaveable):
          result.append(None)
        else:
          result.append(next(tensors))
    return result


def _partitioned_shape_and_dtype(value) -> Optional[Tuple[List[int], str]]:
  """Full shape and dtype name of a partitioned variable, else None."""
  parts = (
    list(value)
    if isinstance(value, (list, tuple, variables_lib.PartitionedVariable))
    else None
  )
  if not parts:
    return None
  info = parts[0]._get_save_slice_info()  # pylint: disable=protected-access
  return list(info.full_shape), parts[0].dtype.base_dtype.name


def _shape_and_dtype(value) -> Optional[Tuple[List[int], str]]:
  """The full shape and dtype a variable (or its partitions) restores."""
  partitioned = _partitioned_shape_and_dtype(value)
  if partitioned is not None:
    return partitioned
  if isinstance(value, saveable_object.SaveableObject):
    return None
  shape = value.shape
  if not shape.is_fully_defined():
    return None
  return shape.as_list(), value.dtype.base_dtype.name


class Tf2Saver(saver_lib.Saver):
  """A `tf.compat.v1.train.Saver` writing TF2 keys, restoring TF1 or TF2.

  Build it through `scaffold()`; it is public so that code can recognise it
  (`isinstance(scaffold.saver, estimator_ckpt.Tf2Saver)`). Graph mode only.
  """

  def __init__(
    self,
    *,
    var_list: Optional[VarList] = None,
    step: Optional[tf.Variable] = None,
    max_to_keep: int = 5,
    keep_checkpoint_every_n_hours: float = 10000.0,
    restore_name_based: bool = True,
    also_write_tf1: bool = False,
    tf1_names: bool = True,
    async_save: bool = False,
  ):
    if tf.executing_eagerly():
      raise RuntimeError(
        "estimator_ckpt.scaffold() builds graph-mode savers for Estimator "
        "and MonitoredSession; in eager code use tf.train.Checkpoint."
      )
    if max_to_keep is not None and max_to_keep < 0:
      raise errors.InvalidArgumentError(
        f"max_to_keep must be >= 0 or None, got {max_to_keep}."
      )
    self._requested_var_list = var_list
    self._requested_step = step
    self._restore_name_based = restore_name_based
    self._also_write_tf1 = also_write_tf1
    self._tf1_names = tf1_names
    # Alias key -> key it aliases, added to each saved index.
    self._aliases: Dict[bytes, bytes] = {}
    # TF2 key -> TF1 name, and TF2 key -> value to save (filled at build).
    self._tf1_name_by_key: Dict[str, str] = {}
    self._values_by_key: Dict[str, Any] = {}
    self._tf1_saver: Optional[saver_lib.Saver] = None
    self._async = async_lib.AsyncParts() if async_save else None
    self._key_builder = _RemappableKeysSaverBuilder()
    super().__init__(
      var_list=None,
      sharded=True,
      max_to_keep=max_to_keep,
      keep_checkpoint_every_n_hours=keep_checkpoint_every_n_hours,
      builder=self._key_builder,
      defer_build=True,
      save_relative_paths=True,
    )

  # --- Building -------------------------------------------------------------

  def _names_to_values(self) -> Dict[str, Any]:
    """TF1 name -> variable (or partitions, or saveable) to checkpoint."""
    requested = self._requested_var_list
    if requested is None:
      # What a TF1 Saver() saves: global variables and SAVEABLE_OBJECTS.
      requested = variables_lib._all_saveable_objects()  # pylint: disable=protected-access
    if isinstance(requested, Mapping):
      return dict(requested)
    # As a TF1 Saver does: single variables become their existing read
    # tensors, so the save op adds no read op per variable (5,000 variables
    # build ~10% faster than with Variable objects; scaffold_benchmark).
    return saveable_object_util.op_list_to_dict(list(requested))

  def _build(self, checkpoint_path, build_save, build_restore):
    if not self._is_built:
      self._var_list = self._saveables_by_key()
    super()._build(checkpoint_path, build_save, build_restore)
    if self._async is not None and self._async.snapshot is None:
      tf1_rename = None
      if self._also_write_tf1:
        tf1_rename = {k: n for k, n in self._tf1_name_by_key.items()}
      self._async.build(
        self._var_list,
        tf1_rename=tf1_rename,
        tf1_skip=(keys.OBJECT_GRAPH_KEY, keys.SAVE_COUNTER_KEY),
      )

  def _saveables_by_key(self) -> Dict[str, Any]:
    """The Saver var_list: TF2 key -> what to save under it."""
    by_name = self._names_to_values()
    step = self._requested_step
    if step is None:
      step = tf1.train.get_global_step()
    if step is not None:
      step_name = keys.tensor_name(step)
      by_name = {
        name: value
        for name, value in by_name.items()
        if value is not step and name != step_name
      }
    by_key = {}
    for name, value in by_name.items():
      if isinstance(value, saveable_object.SaveableObject):
        # Lookup tables and other saveables name their own tensors; they
        # keep their TF1 names in both layouts.
        key = name
      else:
        key = keys.variable_key(name)
      self._tf1_name_by_key[key] = name
      by_key[key] = value
    names = [
      self._tf1_name_by_key[k]
      for k in by_key
      if not isinstance(by_key[k], saveable_object.SaveableObject)
    ]
    if step is not None:
      by_key[keys.STEP_KEY] = step
      self._tf1_name_by_key[keys.STEP_KEY] = keys.GLOBAL_STEP_NAME
    self._values_by_key = dict(by_key)

    # The step is an int64 scalar variable in practice; then it doubles as
    # the Checkpoint's save counter (an index alias, see format/aliases.py).
    with_save_counter = (
      step is not None
      and step.dtype.base_dtype == tf.int64
      and step.shape.rank == 0
    )
    graph = keys.object_graph(
      names,
      step_name=keys.GLOBAL_STEP_NAME if step is not None else None,
      save_counter=with_save_counter,
    )
    with tf.device("cpu:0"):
      graph_tensor = constant_op.constant(
        graph.SerializeToString(), name="object_graph"
      )
    by_key[keys.OBJECT_GRAPH_KEY] = _SaveOnlySaveable(
      graph_tensor, keys.OBJECT_GRAPH_KEY
    )
    if step is not None:
      self._aliases[keys.GLOBAL_STEP_NAME.encode()] = keys.STEP_KEY.encode()
    if with_save_counter:
      # Saved, not aliased (8 bytes): the object graph names this key, so
      # the index TensorFlow writes must hold it before any rewrite.
      with tf.device(step.device):
        counter = tf.identity(
          step.read_value() if hasattr(step, "read_value") else step,
          name="save_counter",
        )
      by_key[keys.SAVE_COUNTER_KEY] = _SaveOnlySaveable(
        counter, keys.SAVE_COUNTER_KEY
      )
    if self._tf1_names:
      for key, name in self._tf1_name_by_key.items():
        if key not in (name, keys.STEP_KEY) and aliases.can_alias(name):
          self._aliases[name.encode()] = key.encode()

    if self._also_write_tf1:
      tf1_var_list = {
        name: self._values_by_key[key]
        for key, name in self._tf1_name_by_key.items()
      }
      self._tf1_saver = saver_lib.Saver(
        var_list=tf1_var_list,
        sharded=True,
        max_to_keep=self._max_to_keep,
        keep_checkpoint_every_n_hours=self._keep_checkpoint_every_n_hours,
        save_relative_paths=True,
      )
    return by_key

  def _ensure_built(self):
    if not self._is_built:
      self.build()

  # --- Saving ---------------------------------------------------------------

  def save(
    self,
    sess,
    save_path,
    global_step=None,
    latest_filename=None,
    meta_graph_suffix="meta",
    write_meta_graph=True,
    write_state=True,
    strip_default_attrs=False,
    save_debug_info=False,
  ):
    """Saves a TF2 checkpoint (and its TF1 copy); see `tf1.train.Saver.save`.

    With `also_write_tf1`, a name-based copy goes to `<dir>/tf1/` with its own
    `checkpoint` state file and the same retention, for every save that
    updates the state file (SavedModel export writes no copy).
    """
    self._ensure_built()
    if self._async is not None:
      self._async.committer.wait_until_finished()
    path = super().save(
      sess,
      save_path,
      global_step=global_step,
      latest_filename=latest_filename,
      meta_graph_suffix=meta_graph_suffix,
      write_meta_graph=write_meta_graph,
      write_state=False,  # Below, once the index has its aliases.
      strip_default_attrs=strip_default_attrs,
      save_debug_info=save_debug_info,
    )
    if path:
      self._add_aliases(path)
      if write_state:
        durable.commit_state(
          self, path, latest_filename, meta_graph_suffix, self.async_save
        )
    if self._tf1_saver is not None and write_state and path:
      tf1_dir = os.path.join(os.path.dirname(save_path), TF1_SUBDIR)
      registry.for_path(tf1_dir).makedirs(tf1_dir)
      self._tf1_saver.save(
        sess,
        os.path.join(tf1_dir, os.path.basename(save_path)),
        global_step=global_step,
        meta_graph_suffix=meta_graph_suffix,
        write_meta_graph=write_meta_graph,
        strip_default_attrs=strip_default_attrs,
      )
    return path

  @property
  def async_save(self) -> bool:
    """Whether `save_async` is available (`scaffold(async_save=True)`)."""
    return self._async is not None

  def save_async(
    self,
    sess,
    save_path: str,
    global_step=None,
    latest_filename: Optional[str] = None,
    meta_graph_suffix: str = "meta",
    write_meta_graph: bool = True,
    strip_default_attrs: bool = False,
    save_debug_info: bool = False,
    on_thread=None,
  ) -> str:
    """Snapshots every saved tensor and saves them in the background.

    Blocks for the save in flight, if any, and one `session.run` that copies
    every saved tensor into its snapshot variable on the same device; the
    checkpoint is then written and committed in the background exactly as
    `save` commits it (aliases, fsync where durable, state file, retention,
    the `also_write_tf1` copy). `AsyncCheckpointSaverHook` calls it.

    Args:
      sess: The session (used from the background thread too).
      save_path: As `tf.compat.v1.train.Saver.save`.
      global_step: As `Saver.save`.
      latest_filename: As `Saver.save` (the state file is always written).
      meta_graph_suffix: As `Saver.save`.
      write_meta_graph: As `Saver.save`.
      strip_default_attrs: As `Saver.save`.
      save_debug_info: As `Saver.save`.
      on_thread: Called with the background thread once started.

    Returns:
      The prefix of the checkpoint being written (committed once
      `wait_until_finished()` returns).

    Raises:
      errors.AsyncSaveError: The previous background save failed.
      errors.InvalidArgumentError: The saver was not built with async_save.
    """
    if self._async is None:
      raise errors.InvalidArgumentError(
        "save_async needs a saver built with scaffold(async_save=True)."
      )
    self._ensure_built()
    parts = self._async
    parts.committer.wait_until_finished()
    prefix = async_lib.checkpoint_file(sess, save_path, global_step)
    assert parts.snapshot is not None  # Built with the saver.
    sess.run(parts.snapshot.take)

    def write_and_commit():
      parts.write_and_commit(
        sess,
        self,
        prefix,
        tf1_saver=self._tf1_saver,
        tf1_dir=os.path.join(os.path.dirname(save_path), TF1_SUBDIR),
        latest_filename=latest_filename,
        meta_graph_suffix=meta_graph_suffix,
        write_meta_graph=write_meta_graph,
        strip_default_attrs=strip_default_attrs,
        save_debug_info=save_debug_info,
      )

    previous = self.last_checkpoints[-1] if self.last_checkpoints else None
    step = int(prefix.rsplit("-", 1)[1]) if global_step is not None else None
    parts.committer.start(
      write_and_commit,
      checkpoint=prefix,
      step=step,
      previous=previous,
      on_thread=on_thread,
    )
    return prefix

  def save_in_flight(self) -> bool:
    """Whether a background save is still being written or committed."""
    return self._async is not None and self._async.committer.in_flight()

  def wait_until_finished(self) -> None:
    """Waits until the background save, if any, is committed.

    Raises:
      errors.AsyncSaveError: It failed; the message names the checkpoint.
    """
    if self._async is not None:
      self._async.committer.wait_until_finished()

  def _add_aliases(self, prefix: str) -> None:
    """Rewrites a saved checkpoint's index with the aliases, atomically.

    Through the storage that holds it, so model dirs on any file system
    TensorFlow reads work; the new index is complete under a temporary name
    before it is renamed over the old one (on object stores, where a rename
    is a copy, readers still see one whole index or the other).
    """
    if not self._aliases:
      return
    index = prefix + ".index"
    store = registry.for_path(index)
    with store.open_regular(index, "checkpoint index") as f:
      data = f.pread(f.size, 0)
    rewritten = aliases.add_to_index(index, data, self._aliases)
    staged = f"{index}.aliases-{os.getpid()}-{secrets.token_hex(4)}"
    try:
      store.put(staged, rewritten)
      store.rename(staged, index)
    except BaseException:
      store.remove(staged)
      raise

  def recover_last_checkpoints(self, checkpoint_paths):
    """Also recovers the TF1 copies, so their retention survives restarts."""
    super().recover_last_checkpoints(checkpoint_paths)
    if self._tf1_saver is not None and checkpoint_paths:
      tf1_dir = os.path.join(os.path.dirname(checkpoint_paths[-1]), TF1_SUBDIR)
      state = tf.train.get_checkpoint_state(tf1_dir)
      if state is not None:
        self._tf1_saver.recover_last_checkpoints(
          list(state.all_model_checkpoint_paths)
        )

  # --- Restoring ------------------------------------------------------------

  def restore(self, sess, save_path):
    """Restores a TF2 checkpoint of this layout, or a TF1 one by name.

    Args:
      sess: The session.
      save_path: A checkpoint prefix.

    Raises:
      ValueError: `save_path` is None or not a checkpoint (as stock).
      errors.IncompatibleCheckpointError: The checkpoint holds the model's
        variables in no layout; the message lists the missing keys.
      errors.ShapeMismatchError: A stored tensor differs from its variable in
        shape or dtype.
    """
    self._ensure_built()
    if self._is_empty:
      return
    if save_path is None:
      raise errors.InvalidArgumentError("Can't load save_path when it is None.")
    if not checkpoint_management.checkpoint_exists_internal(save_path):
      raise errors.InvalidArgumentError(
        f"The passed save_path is not a valid checkpoint: {save_path}"
      )
    tf1.logging.info("Restoring parameters from %s", save_path)
    feed = {self.saver_def.filename_tensor_name: save_path}
    try:
      # Fast path, as cheap as a TF1 Saver: a checkpoint of this layout.
      sess.run(self.saver_def.restore_op_name, feed)
      return
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError):
      # Another layout, or a mismatch: read the index to tell which. (RestoreV2
      # reads every tensor before any assignment runs; a shard that did
      # restore is restored again below.)
      pass
    located = self._choose_layout(save_path, reader.read(save_path))
    self._check_shapes(save_path, located)
    for names_tensor, names in self._key_builder.key_feeds:
      translated = [located[name][0] for name in names]
      if translated != list(names):
        feed[names_tensor] = translated
    sess.run(self.saver_def.restore_op_name, feed)

  def _restored_keys(self) -> List[str]:
    """Each key the restore ops read, once, in order."""
    return list(
      dict.fromkeys(
        name for _, names in self._key_builder.key_feeds for name in names
      )
    )

  def _tf1_name(self, key: str) -> str:
    return self._tf1_name_by_key.get(key, key)

  def _locate(
    self, contents: reader.Contents, key: str
  ) -> Optional[layouts.Variable]:
    """What `contents` holds for this saver's `key`, or None.

    The key itself first (this layout; a saveable's own name), then, with
    `restore_name_based`, the variable's TF1 name in any layout `layouts`
    resolves, unless that is several per-partition tensors, which one
    RestoreV2 key cannot read.
    """
    variable = layouts.find(contents.bundle, contents.variables, key)
    if variable is not None or not self._restore_name_based:
      return variable
    variable = contents.variables.get(self._tf1_name(key))
    if variable is None or (
      variable.layout is layouts.Layout.STOCK_PARTS and variable.partitioned
    ):
      return None
    return variable

  def _choose_layout(
    self, save_path: str, contents: reader.Contents
  ) -> Dict[str, Tuple[str, layouts.Variable]]:
    """Key -> (stored key, what is stored) for every key restored.

    Raises:
      errors.IncompatibleCheckpointError: Some key is in no layout.
    """
    wanted = self._restored_keys()
    located: Dict[str, Tuple[str, layouts.Variable]] = {}
    missing = []
    for key in wanted:
      variable = self._locate(contents, key)
      if variable is None:
        missing.append(key)
      else:
        # The key itself if it is stored, else where the variable's value is
        # read from (an alias's first key).
        located[key] = (
          key if key in variable.keys else variable.keys[0],
          variable,
        )
    if missing and not self._restore_name_based:
      raise errors.IncompatibleCheckpointError(
        f"`{save_path}` lacks {len(missing)} of the {len(wanted)} keys "
        f"this model restores: {errors.format_names(missing)}. "
        "`restore_name_based=False`, so TF1 names were not tried; pass "
        "`restore_name_based=True` to resume a TF1 checkpoint, or "
        "warm-start a fresh model_dir from it."
      )
    if missing:
      names = sorted(self._tf1_name(key) for key in missing)
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
          "partition (stock tf.train.Checkpoint), which restore cannot "
          "read; warm start can."
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

  def _check_shapes(
    self, save_path: str, located: Mapping[str, Tuple[str, layouts.Variable]]
  ) -> None:
    """Raises ShapeMismatchError before any restore op runs."""
    for key, (stored_key, variable) in located.items():
      value = self._values_by_key.get(key)
      expected = None if value is None else _shape_and_dtype(value)
      if expected is None:
        continue
      stored = (list(variable.shape), variable.dtype.name)
      if stored != tuple(expected):
        raise errors.ShapeMismatchError(
          f"`{save_path}`: `{stored_key}` is stored with shape {stored[0]} "
          f"and dtype {stored[1]}, but variable "
          f"`{self._tf1_name(key)}` has shape "
          f"{expected[0]} and dtype {expected[1]}. Restore into a model of "
          "the same shapes, or warm-start only the variables that match "
          "(vars_to_warm_start)."
        )


def scaffold(
  *,
  var_list: Optional[VarList] = None,
  step: Optional[tf.Variable] = None,
  max_to_keep: int = 5,
  keep_checkpoint_every_n_hours: float = 10000.0,
  restore_name_based: bool = True,
  also_write_tf1: bool = False,
  tf1_names: bool = True,
  async_save: bool = False,
  **scaffold_kwargs,
) -> "tf.compat.v1.train.Scaffold":
  """A Scaffold whose saver writes TF2 object-based checkpoints.

  Call it inside `model_fn` and pass it as `EstimatorSpec(scaffold=...)`, or
  pass it to `MonitoredTrainingSession(scaffold=...)`. The saver is built when
  the Scaffold is finalized, so variables created after this call (optimizer
  slots) are included.

  Args:
    var_list: What to checkpoint. None (default): what a TF1 `Saver()` saves,
      i.e. every global variable, optimizer slots included, and saveable
      objects. A dict `{TF1 name: variable or partitions}` or a list of
      variables narrows it.
    step: The step variable, saved under `step/`. Default: the global step,
      if the graph has one.
    max_to_keep: Checkpoints to keep (Estimator users: see `tf2_checkpoints`,
      which takes RunConfig's `keep_checkpoint_max`).
    keep_checkpoint_every_n_hours: Additionally keep one checkpoint per this
      many hours.
    restore_name_based: Also restore TF1 name-based checkpoints (by name), so
      an existing model_dir resumes in place.
    also_write_tf1: Write a name-based copy of every save under
      `<model_dir>/tf1/`, for pipelines that need a directory of TF1
      checkpoints of their own. It writes every tensor a second time; with
      `tf1_names` a TF1 reader already finds every variable by name in the
      TF2 checkpoint itself.
    tf1_names: Also store every variable under its TF1 name, as an index
      alias of the same bytes (no tensor is written twice; the index grows
      by one entry per variable and slice), so TF1 readers (`Saver.restore`,
      `tf.train.load_variable`, stock warm start) read the TF2 checkpoint by
      name. TF2 readers see only the object graph, the same either way.
    async_save: Save in the background: a save blocks training only for one
      `session.run` that snapshots every saved tensor on its device; the
      checkpoint is written and committed (durably, on a local file system)
      behind training, with the same contents and commit order. Saves go
      through `estimator_ckpt.AsyncCheckpointSaverHook` (`tf2_checkpoints`
      and `migrate_estimator` install it); other hooks save synchronously.
      See README, "Asynchronous saves".
    **scaffold_kwargs: Passed to `tf.compat.v1.train.Scaffold` (init_op,
      init_fn, ready_op, local_init_op, summary_op, copy_from_scaffold, ...).
      `saver` is not accepted: this function provides it.

  Returns:
    A `tf.compat.v1.train.Scaffold` whose `saver` is a `Tf2Saver`.

  Raises:
    TypeError: `saver` was passed.
  """
  if "saver" in scaffold_kwargs:
    raise errors.ArgumentTypeError(
      "estimator_ckpt.scaffold() provides the saver; do not pass `saver`. "
      "Use `var_list` to choose what it saves."
    )
  saver = Tf2Saver(
    var_list=var_list,
    step=step,
    max_to_keep=max_to_keep,
    keep_checkpoint_every_n_hours=keep_checkpoint_every_n_hours,
    restore_name_based=restore_name_based,
    also_write_tf1=also_write_tf1,
    tf1_names=tf1_names,
    async_save=async_save,
  )
  return tf1.train.Scaffold(saver=saver, **scaffold_kwargs)
