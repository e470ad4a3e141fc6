"""The background writer's CPU priority: below training, restored for a waiter.

A background save competes with training for the CPUs: its checksums and
the copy into its write buffers run while the next steps do, and a step is
a chain of ops that waits for whichever of its threads the scheduler put
behind the writer. Linux's `SCHED_IDLE` policy (sched(7)) runs a thread
only when no other thread wants its CPU, so the writer takes the CPU time
training leaves and training's threads preempt it at once.

A thread at `SCHED_IDLE` may starve behind any other load, which must not
hold up whoever waits for the save (the next save, the end of training).
A waiter therefore puts the writer back at normal priority first
(`WriterPriority.hurry`). Leaving `SCHED_IDLE` needs CAP_SYS_NICE or an
RLIMIT_NICE that allows nice 0 (`ulimit -e` of 20 or more; sched(7):
"Treat SCHED_IDLE as nice 20"), which containers rarely grant. So the
writer is lowered only where it can be restored, found once per process by
a thread that lowers and restores itself; elsewhere (and off Linux) it runs
at normal priority, as every thread did before.
"""

import functools
import os
import threading
from typing import List, Optional


@functools.lru_cache(maxsize=None)
def can_restore() -> bool:
  """Whether a thread of this process may leave SCHED_IDLE (probed once)."""
  if not hasattr(os, "SCHED_IDLE"):
    return False
  restored: List[bool] = []

  def probe():
    try:
      os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError:
      restored.append(False)
      return
    try:
      os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
      restored.append(True)
    except OSError:
      restored.append(False)  # This thread ends at SCHED_IDLE: harmless.

  thread = threading.Thread(
    target=probe, name="estimator_ckpt-priority-probe", daemon=True
  )
  thread.start()
  thread.join()
  return restored[0]


class WriterPriority:
  """One background save's priority: `lower` in its thread, `hurry` by a waiter.

  Whichever comes first wins: a waiter that hurries before the writer
  lowers itself keeps it at normal priority. The writer calls `done` before
  it ends, so `hurry` only ever names a thread that is still running.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._native_id: Optional[int] = None  # The writer's, while lowered.
    self._hurried = False

  def lower(self) -> None:
    """In the writer's thread: SCHED_IDLE, where it can be restored."""
    if not can_restore():
      return
    with self._lock:
      if self._hurried:
        return
      os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
      self._native_id = threading.get_native_id()

  def done(self) -> None:
    """In the writer's thread, as it ends."""
    with self._lock:
      self._native_id = None

  def hurry(self) -> None:
    """By a waiter, before it waits: the writer back at normal priority."""
    with self._lock:
      self._hurried = True
      if self._native_id is not None:
        os.sched_setscheduler(
          self._native_id, os.SCHED_OTHER, os.sched_param(0)
        )
        self._native_id = None
