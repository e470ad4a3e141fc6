"""`AsyncCheckpointSaverHook`: saves that do not block training.

A `tf.compat.v1.train.CheckpointSaverHook` whose saves through a `Tf2Saver`
built with `scaffold(async_save=True)` snapshot and return
(`Tf2Saver.save_async`); with any other saver it is the stock hook. What it
adds to the stock hook (tensorflow/python/training/basic_session_run_hooks.py):

* listeners' `after_save` runs once the checkpoint of that step is
  committed: at the first step after the commit, or before the next save, or
  at the end, so `train_and_evaluate`'s evaluation
  (`_NewCheckpointListenerForEvaluate`) and any listener read a committed
  checkpoint; `after_save` returning True still stops training;
* `end` (the end of `Estimator.train()`, of a `MonitoredSession`) waits until
  the last save is committed and raises a background failure there, before
  the listeners' `end`;
* each background thread is registered with the session's coordinator, so a
  `MonitoredSession` closed by an exception waits for the save in flight (up
  to its `stop_grace_period_secs`) before it closes the session, and a
  failure while the session closes is reported to the coordinator
  (`_report_to_coordinator`): a session closed by an exception raises the
  failure there, with the exception that closed it as its `__context__`;
* the global step is read in a `session.run` of its own only when a save may
  be due. The stock hook's `after_run` reads it when `stale step +
  _steps_per_run` reaches the schedule, and `_steps_per_run` is 1000000
  unless `_set_steps_per_run` is called (TPUEstimator calls it on the hook
  it makes, never on one a model_fn brings): a read after every step, an
  extra `session.run` per training step (measured 130-150 us, about 12% of
  the benchmark's 1.1 ms step). Here `_steps_per_run` is the largest advance
  of the step between two runs seen so far (1 to start with, or what
  `_set_steps_per_run` set), so the step is read in the runs that may reach
  a save and the saves are at stock's steps whenever no run advances the
  step further than an earlier run did. A run that does (the first run of a
  loop of several steps per run, other workers of a ps cluster advancing it
  faster) may take a save due in it to the next run. Saves by seconds are
  not affected;
* with `stock_saver_follows`, a stock saver hook running after this one on
  the same schedule through the same saver (Estimator with a cluster and a
  multi-worker collective strategy, `_train_with_estimator_spec_distributed`,
  whose `MonitoredTrainingSession` adds one of its own) saves each
  checkpoint this one has just started by returning it
  (`Tf2Saver._expect_duplicate_save`), not by writing it again,
  synchronously.

`tf2_checkpoints(async_save=True)` and `migrate_estimator(async_save=True)`
add it to the `EstimatorSpec`'s `training_chief_hooks`, where Estimator finds
it instead of making its own (`_train_with_estimator_spec`) and attaches the
`saving_listeners` to it.
"""

import functools
from typing import Optional

import tensorflow as tf
from tensorflow.python.training import basic_session_run_hooks
from tensorflow.python.training import coordinator

from estimator_ckpt import errors
from estimator_ckpt._src import scaffold as scaffold_lib

tf1 = tf.compat.v1


class AsyncCheckpointSaverHook(basic_session_run_hooks.CheckpointSaverHook):
  """Saves checkpoints every N steps or seconds, in the background.

  Takes the arguments of `tf.compat.v1.train.CheckpointSaverHook`, and
  `stock_saver_follows`: whether a stock `CheckpointSaverHook` runs after
  this one on the same schedule through the same saver (see the module);
  its saves of the checkpoints this hook has just started return them.
  """

  def __init__(self, *args, stock_saver_follows: bool = False, **kwargs):
    super().__init__(*args, **kwargs)
    # The largest advance of the step per run seen (see the module).
    self._steps_per_run = 1
    self._previous_stale_step: Optional[int] = None
    self._pending_step: Optional[int] = None
    self._coord = None
    self._stock_saver_follows = stock_saver_follows

  def _async_saver(self) -> Optional[scaffold_lib.Tf2Saver]:
    saver = self._get_saver()
    if isinstance(saver, scaffold_lib.Tf2Saver) and saver.async_save:
      return saver
    return None

  def after_create_session(self, session, coord):
    self._coord = coord
    self._previous_stale_step = None  # A recreated session restored a step.
    saver = self._async_saver()
    if saver is not None and self._pending_step is not None:
      # A session recreated after a failure (`_RecoverableSession`): the
      # save in flight used the old session. Its checkpoint is committed or
      # not; the new session restored the last committed one either way.
      self._pending_step = None
      try:
        saver.wait_until_finished()
      except errors.AsyncSaveError as e:
        tf1.logging.warning("%s (the session was recreated)", e)
    super().after_create_session(session, coord)

  def after_run(self, run_context, run_values):
    # After every training step: the cheap checks first.
    stale_step = int(run_values.results)
    previous, self._previous_stale_step = self._previous_stale_step, stale_step
    if previous is not None and stale_step - previous > self._steps_per_run:
      self._steps_per_run = stale_step - previous
    super().after_run(run_context, run_values)
    if self._pending_step is None:
      return
    saver = self._async_saver()
    if saver is not None and not saver.save_in_flight():
      if self._finish(run_context.session):
        run_context.request_stop()

  def end(self, session):
    saver = self._async_saver()
    if saver is None:
      super().end(session)
      return
    last_step = session.run(self._global_step_tensor)
    if last_step != self._timer.last_triggered_step():
      self._save(session, last_step)
    self._finish(session)
    for listener in self._listeners:
      listener.end(session, last_step)

  def _finish(self, session) -> bool:
    """Waits for the save in flight, then runs its after_save listeners.

    Returns:
      Whether a listener asked to stop training.

    Raises:
      errors.AsyncSaveError: The save failed (its listeners do not run).
    """
    saver = self._async_saver()
    assert saver is not None
    step, self._pending_step = self._pending_step, None
    saver.wait_until_finished()
    if step is None:
      return False
    tf1.logging.info(
      "Checkpoint for step %d committed; calling checkpoint listeners.", step
    )
    should_stop = False
    for listener in self._listeners:
      if listener.after_save(session, step):
        tf1.logging.info(
          "A CheckpointSaverListener requested that training be stopped. "
          "listener: %s",
          listener,
        )
        should_stop = True
    return should_stop

  def _save(self, session, step):
    """Starts a background save of `step`; returns should_stop."""
    saver = self._async_saver()
    if saver is None:
      return super()._save(session, step)
    should_stop = self._finish(session)
    for listener in self._listeners:
      listener.before_save(session, step)
    tf1.logging.info(
      "Saving checkpoint for %d into %s in the background.",
      step,
      self._save_path,
    )
    coord = self._coord
    prefix = saver.save_async(
      session,
      self._save_path,
      global_step=step,
      write_meta_graph=self._save_graph_def,
      on_thread=coord.register_thread if coord is not None else None,
      on_failure=(
        functools.partial(_report_to_coordinator, coord)
        if coord is not None
        else None
      ),
    )
    if self._stock_saver_follows:
      # That hook's save of this checkpoint returns it, unwritten twice.
      # Private to the saver's async protocol, which this hook drives.
      saver._expect_duplicate_save(session, prefix)  # pylint: disable=protected-access
    self._pending_step = step
    self._summary_writer.add_session_log(
      tf.compat.v1.SessionLog(
        status=tf.compat.v1.SessionLog.CHECKPOINT,
        checkpoint_path=self._save_path,
      ),
      step,
    )
    return should_stop


def _report_to_coordinator(
  coord: coordinator.Coordinator, failure: errors.AsyncSaveError
) -> bool:
  """Makes a closing session's `coord.join()` raise a background failure.

  Runs in the background thread before it ends. `MonitoredSession` closes
  through `_CoordinatedSession.close`: `coord.request_stop()`, then
  `coord.join()`, which waits for registered threads and raises the
  exception recorded with the coordinator. A session closed by an exception
  runs no hook's `end`, so a failure while it closes would be only logged:
  it is recorded as `request_stop` records one, since `request_stop` records
  nothing once a stop is requested (tensorflow/python/training/
  coordinator.py), and the closing `join` raises it. Python chains the
  exception that closed the session as its `__context__`.

  Nothing is recorded while training goes on (no stop requested): the hook
  raises the failure at the next step or at the end. A recorded exception
  would also make `_CoordinatedSession.run` re-raise every later exception
  of a step `from None`, dropping its `__cause__`. Nor is a failure caused
  by a preemption error (AbortedError, UnavailableError): a
  `_RecoverableSession` closes the session through the coordinator to
  recreate it after one, and `after_create_session` logs such a failure
  then. A coordinator that has joined (the save outlived
  `stop_grace_period_secs`) or holds another exception raises nothing more;
  the failure stays logged.

  Args:
    coord: The session's coordinator.
    failure: The background save's failure.

  Returns:
    Whether `coord.join()` will raise `failure`.
  """
  if not coord.should_stop() or isinstance(
    failure.__cause__, (tf.errors.AbortedError, tf.errors.UnavailableError)
  ):
    return False
  # Coordinator keeps exactly this (type, value, traceback) for `join`;
  # TensorFlow 2.15's, pinned, is the last with Estimator.
  with coord._lock:  # pylint: disable=protected-access
    if coord.joined or coord._exc_info_to_raise is not None:  # pylint: disable=protected-access
      return False
    coord._exc_info_to_raise = (type(failure), failure, failure.__traceback__)  # pylint: disable=protected-access
  return True
