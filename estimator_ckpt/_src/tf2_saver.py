"""`Tf2Saver`: a TF1 `Saver` that writes TF2 object-based checkpoints.

`scaffold.scaffold()` returns a `tf.compat.v1.train.Scaffold` whose saver,
a `Tf2Saver`, writes TF2
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

import os
import secrets
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
from tensorflow.python.checkpoint import checkpoint_management
from tensorflow.python.training import saver as saver_lib

from estimator_ckpt import errors
from estimator_ckpt._src import async_save as async_lib
from estimator_ckpt._src import durable
from estimator_ckpt._src import saver_keys
from estimator_ckpt._src import saver_restore
from estimator_ckpt._src import tf2_saver_async
from estimator_ckpt._src.format import aliases
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.storage import registry

tf1 = tf.compat.v1

# Sub-directory of the model dir that receives the TF1 copy of every save
# when `also_write_tf1=True`.
TF1_SUBDIR = tf2_saver_async.TF1_SUBDIR


class Tf2Saver(tf2_saver_async.AsyncSaving, saver_lib.Saver):
  """A `tf.compat.v1.train.Saver` writing TF2 keys, restoring TF1 or TF2.

  Build it through `scaffold()`; it is public so that code can recognise it
  (`isinstance(scaffold.saver, estimator_ckpt.Tf2Saver)`). Graph mode only.
  """

  def __init__(
    self,
    *,
    var_list: Optional[saver_keys.VarList] = None,
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
    self._key_builder = saver_restore.RemappableKeysSaverBuilder()
    super().__init__(
      var_list=None,
      sharded=True,
      max_to_keep=max_to_keep,
      keep_checkpoint_every_n_hours=keep_checkpoint_every_n_hours,
      builder=self._key_builder,
      defer_build=True,
      save_relative_paths=True,
    )

  @property
  def also_write_tf1(self) -> bool:
    """Whether every save also writes a TF1 copy (`also_write_tf1=True`)."""
    return self._also_write_tf1

  def _build(self, checkpoint_path, build_save, build_restore):
    if not self._is_built:
      built = saver_keys.build(
        self._requested_var_list, self._requested_step, self._tf1_names
      )
      self._tf1_name_by_key = built.tf1_name_by_key
      self._values_by_key = built.values_by_key
      self._aliases = built.aliases
      if self._also_write_tf1:
        self._tf1_saver = saver_lib.Saver(
          var_list=built.tf1_values,
          sharded=True,
          max_to_keep=self._max_to_keep,
          keep_checkpoint_every_n_hours=self._keep_checkpoint_every_n_hours,
          save_relative_paths=True,
        )
      self._var_list = built.by_key
    super()._build(checkpoint_path, build_save, build_restore)
    if self._async is not None and self._async.snapshot is None:
      tf1_rename = None
      if self._also_write_tf1:
        tf1_rename = dict(self._tf1_name_by_key)
      self._async.build(
        self._var_list,
        tf1_rename=tf1_rename,
        tf1_skip=(keys.OBJECT_GRAPH_KEY, keys.SAVE_COUNTER_KEY),
      )

  def _ensure_built(self):
    if not self._is_built:
      self.build()

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
    updates the state file (SavedModel export writes no copy). With
    `async_save`, it first waits for the background save in flight; the
    save `_expect_duplicate_save` announced returns the checkpoint being
    written instead.
    """
    self._ensure_built()
    duplicate = self._expected_duplicate(
      sess, save_path, global_step, latest_filename
    )
    if duplicate is not None:
      return duplicate
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

  def _add_aliases(self, prefix: str) -> None:
    """Adds this saver's aliases to a checkpoint it wrote (`add_aliases`)."""
    add_aliases(prefix, self._aliases)

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
    self._duplicate = None
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
    feed.update(
      saver_restore.feed_for_layout(
        save_path,
        self._key_builder.key_feeds,
        self._tf1_name_by_key,
        self._values_by_key,
        self._restore_name_based,
        filename_tensor=self.saver_def.filename_tensor_name,
      )
    )
    sess.run(self.saver_def.restore_op_name, feed)


def add_aliases(prefix: str, alias_keys: Mapping[bytes, bytes]) -> None:
  """Rewrites a saved checkpoint's index with the aliases, atomically.

  Through the storage that holds it, so model dirs on any file system
  TensorFlow reads work; the new index is complete under a temporary name
  before it is renamed over the old one (on object stores, where a rename
  is a copy, readers still see one whole index or the other).
  """
  if not alias_keys:
    return
  index = prefix + ".index"
  store = registry.for_path(index)
  with store.open_regular(index, "checkpoint index") as f:
    data = f.pread(f.size, 0)
  rewritten = aliases.add_to_index(index, data, alias_keys)
  staged = f"{index}.aliases-{os.getpid()}-{secrets.token_hex(4)}"
  try:
    store.put(staged, rewritten)
    store.rename(staged, index)
  except BaseException:
    store.remove(staged)
    raise
