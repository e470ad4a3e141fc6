"""One background save at a time, its failure kept for the caller.

`Committer` runs the write and commit of an asynchronous save in a thread.
A save requested while one is in flight waits for it; a failure is kept
and raised in the caller's thread at the next save or at
`wait_until_finished()` (Orbax `AsyncCheckpointer` style) as
`errors.AsyncSaveError` naming the checkpoint and its step.

A save runs below training's priority (`writer_priority`) for at most a
quarter of the time the last two saves were apart, then at normal priority:
below training it gets only the CPU time training leaves, none on a CPU
training keeps busy, and a save still running when the next one is due
stops training until it ends. The first save, with no interval to go by,
runs at normal priority throughout: below training it could not end before
the next save is due, which would then wait for all of it.
"""

import threading
import time
from typing import Any, Callable, Optional

import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import writer_priority

tf1 = tf.compat.v1

# A save runs below training for this fraction of the time between the
# last two saves (the time it is expected to have), then at normal priority:
# at 0.5 a 64 MiB save to the S3 emulator on a busy CPU still ran into the
# next save (benchmark: blocked 107 ms per save against 11 ms without
# lowering), as it did throughout without a deadline.
LOWERED_FRACTION_OF_INTERVAL = 0.25


class Committer:
  """Runs one background save at a time; keeps its failure for the caller.

  `start` waits for the save in flight (raising its failure) before it
  starts the next. Threads are not daemons: the interpreter waits for a
  commit in flight before it exits. Each runs its own CPU work (checksums,
  copies, an upload's process) below training's priority until someone
  waits for it or a quarter of the last interval between saves passed, the
  first save at normal priority (`writer_priority`; the module docstring).
  """

  def __init__(
    self,
    clock: Callable[[], float] = time.monotonic,
    timer: Callable[[float, Callable[[], None]], Any] = threading.Timer,
  ):
    """A committer.

    Args:
      clock: Times the intervals between saves.
      timer: Makes the deadline of a save: `timer(seconds, hurry)`, with
        `start()` and `cancel()` (`threading.Timer`).
    """
    self._clock = clock
    self._timer = timer
    self._lock = threading.Lock()
    self._thread: Optional[threading.Thread] = None
    self._failure: Optional[errors.AsyncSaveError] = None
    self._priority: Optional[writer_priority.WriterPriority] = None
    self._last_start: Optional[float] = None

  def start(
    self,
    work: Callable[[], None],
    *,
    checkpoint: str,
    step: Optional[int],
    previous: Optional[str],
    on_thread: Optional[Callable[[threading.Thread], None]] = None,
    on_failure: Optional[Callable[[errors.AsyncSaveError], bool]] = None,
  ) -> None:
    """Waits for the save in flight, then runs `work` in the background.

    Args:
      work: Writes and commits the checkpoint.
      checkpoint: Its prefix, for messages.
      step: Its step, for messages.
      previous: The checkpoint the state file names, for messages.
      on_thread: Called with the thread once started (the hook registers it
        with the MonitoredSession's coordinator, whose close waits for it).
      on_failure: Called in the thread with the failure before the thread
        ends; returns whether it took the failure to raise elsewhere (the
        hook reports a failure while the session closes to its coordinator,
        whose close raises it). A failure not taken is raised by the next
        save or `wait_until_finished()`.
    """
    self.wait_until_finished()

    priority = writer_priority.WriterPriority()
    now = self._clock()
    deadline = None
    if self._last_start is None:
      # No interval to go by. Lowered until the next save waits for it, a
      # 64 MiB save to the S3 emulator on the trainer's busy CPU got
      # nothing, and the first save in the training loop waited 1.3 s.
      priority.hurry()
    else:
      deadline = self._timer(
        (now - self._last_start) * LOWERED_FRACTION_OF_INTERVAL,
        priority.hurry,
      )
      deadline.daemon = True  # Never holds up the interpreter's exit.
    self._last_start = now

    def run():
      try:
        if deadline is not None:
          # Started here, at normal priority: its thread must run on time.
          deadline.start()
        with priority.of_this_thread():
          work()
      except BaseException as e:  # pylint: disable=broad-except
        failure = _failure(e, checkpoint, step, previous)
        tf1.logging.error("%s", failure)
        taken = False
        if on_failure is not None:
          try:
            taken = on_failure(failure)
          except Exception as report_error:  # pylint: disable=broad-except
            tf1.logging.error(
              "Reporting the failure of `%s` failed: %s",
              checkpoint,
              report_error,
            )
        if not taken:
          with self._lock:
            self._failure = failure
      finally:
        if deadline is not None:
          deadline.cancel()

    thread = threading.Thread(
      target=run, name=f"estimator_ckpt-async-save-{step}", daemon=False
    )
    with self._lock:
      self._thread = thread
      self._priority = priority
    thread.start()
    if on_thread is not None:
      on_thread(thread)

  def in_flight(self) -> bool:
    """Whether a background save is still running."""
    with self._lock:
      return self._thread is not None and self._thread.is_alive()

  def wait_until_finished(self) -> None:
    """Waits for the save in flight; raises its failure (once).

    Raises:
      errors.AsyncSaveError: The last background save failed.
    """
    with self._lock:
      thread, priority = self._thread, self._priority
    if thread is not None:
      assert priority is not None
      priority.hurry()
      thread.join()
    with self._lock:
      self._thread = None
      self._priority = None
      failure, self._failure = self._failure, None
    if failure is not None:
      raise failure


def _failure(
  error: BaseException,
  checkpoint: str,
  step: Optional[int],
  previous: Optional[str],
) -> errors.AsyncSaveError:
  at_step = f" (step {step})" if step is not None else ""
  kept = (
    f"still names the previous checkpoint `{previous}`, which is whole"
    if previous
    else "was not written, so this model_dir has no checkpoint yet"
  )
  failure = errors.AsyncSaveError(
    f"Saving checkpoint `{checkpoint}`{at_step} in the background failed: "
    f"{type(error).__name__}: {error}. The `checkpoint` state file {kept}. "
    "Fix the cause (free space, permissions, network) and train again: "
    "training resumes from the last checkpoint the state file names.",
    checkpoint=checkpoint,
    step=step,
  )
  failure.__cause__ = error
  return failure
