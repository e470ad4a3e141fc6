"""Asynchronous saving, the part of `Tf2Saver` that `async_save=True` adds.

Not public API (the methods are public on `Tf2Saver`). A save snapshots every
saved tensor on its device in one `session.run` and returns; `async_save`
(`AsyncParts`) writes and commits the checkpoint in the background exactly
as a synchronous save commits it, one at a time. `AsyncCheckpointSaverHook`
(`async_hook`) calls `save_async` and waits at the end of training.
"""

import functools
import os
import threading
from typing import Any, Callable, List, Mapping, Optional, Tuple

from estimator_ckpt import errors
from estimator_ckpt._src import async_save as async_lib

# Sub-directory of the model dir that receives the TF1 copy of every save
# when `also_write_tf1=True` (also `tf2_saver.TF1_SUBDIR`).
TF1_SUBDIR = "tf1"


class AsyncSaving:
  """`save_async` and its waits, for `Tf2Saver` (a mixin; see the module)."""

  _async: Optional[async_lib.AsyncParts]
  _aliases: Mapping[bytes, bytes]  # Alias key -> saved key.
  _tf1_saver: Any
  # (session, prefix, latest_filename) of the save `_expect_duplicate_save`
  # announced; consumed by the next `save` (see there).
  _duplicate: Optional[Tuple[Any, str, Optional[str]]] = None
  last_checkpoints: List[str]
  _ensure_built: Callable[[], None]

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
    on_thread: Optional[Callable[[threading.Thread], None]] = None,
    on_failure: Optional[Callable[[errors.AsyncSaveError], bool]] = None,
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
      on_failure: Called in the background thread with its
        `errors.AsyncSaveError` if the save fails, before the thread ends;
        returns whether it took the failure to raise elsewhere. A failure
        not taken is raised by the next save or `wait_until_finished()`.

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
    self._duplicate = None
    parts = self._async
    parts.committer.wait_until_finished()
    prefix = async_lib.checkpoint_file(sess, save_path, global_step)
    parts.start_uploader(sess, prefix)
    parts.take(sess, prefix)
    try:
      previous = self.last_checkpoints[-1] if self.last_checkpoints else None
      step = int(prefix.rsplit("-", 1)[1]) if global_step is not None else None
      parts.committer.start(
        functools.partial(
          parts.write_and_commit,
          sess,
          self,
          prefix,
          aliases=self._aliases,
          tf1_saver=self._tf1_saver,
          tf1_dir=os.path.join(os.path.dirname(save_path), TF1_SUBDIR),
          latest_filename=latest_filename,
          meta_graph_suffix=meta_graph_suffix,
          write_meta_graph=write_meta_graph,
          strip_default_attrs=strip_default_attrs,
          save_debug_info=save_debug_info,
        ),
        checkpoint=prefix,
        step=step,
        previous=previous,
        on_thread=on_thread,
        on_failure=on_failure,
      )
    except BaseException:
      if not parts.committer.in_flight():  # A running save drops it itself.
        parts.drop()
      raise
    return prefix

  def _expect_duplicate_save(
    self, sess, prefix: str, latest_filename: Optional[str] = None
  ) -> None:
    """Lets the next `save`, if of the checkpoint just started, return it.

    On Estimator's multi-worker collective path (a cluster and
    `MultiWorkerMirroredStrategy`, `_train_with_estimator_spec_distributed`),
    `MonitoredTrainingSession` adds a stock `CheckpointSaverHook` of its own
    on the chief, after the `EstimatorSpec`'s chief hooks, saving through the
    scaffold's saver on the same schedule.
    `AsyncCheckpointSaverHook(stock_saver_follows=True)` calls this there,
    right after `save_async`: the next `save` of that checkpoint (same
    session, prefix and `latest_filename`, with a `global_step`) returns its
    prefix instead of writing it again synchronously. Any other `save`,
    `save_async` or `restore` forgets it.

    Args:
      sess: The session `save_async` used.
      prefix: What `save_async` returned.
      latest_filename: As given to `save_async`.
    """
    self._duplicate = (sess, prefix, latest_filename)

  def _expected_duplicate(
    self, sess, save_path: str, global_step, latest_filename: Optional[str]
  ) -> Optional[str]:
    """The prefix, if this `save` is the one announced; forgets it anyway."""
    duplicate, self._duplicate = self._duplicate, None
    if duplicate is None or global_step is None:
      return None
    expected_sess, prefix, expected_latest = duplicate
    if sess is not expected_sess or latest_filename != expected_latest:
      return None
    if async_lib.checkpoint_file(sess, save_path, global_step) != prefix:
      return None
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
