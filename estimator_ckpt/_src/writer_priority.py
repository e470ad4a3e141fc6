"""A background save's CPU work runs below training, until someone waits.

A background save competes with training for the CPUs: its checksums start
at once, while the next step runs, and its copies into the write buffers
follow. A step is a chain of ops that waits for whichever of its threads
the scheduler put behind the writer. Linux's `SCHED_IDLE` policy
(sched(7)) gives a thread the scheduler's lowest weight, so a waking
training thread preempts it and it mostly gets the CPU time training
leaves. The Python between the blocks' C calls holds the GIL, which a
training thread then waits for: keep the blocks to large C calls.

Only the writer's own CPU work is lowered (`below_training` blocks:
`snapshot_bundle`'s checksums, `direct_copy`'s copies into its buffers), never
a call into TensorFlow or a storage library. A thread that lowers itself gives
up its CPU at once (`yield_cpu`). A thread started from a `SCHED_IDLE` thread
inherits the policy (SCHED_RESET_ON_FORK resets only real-time policies and
negative nice values), and a pool thread started so would stay there, out of
reach. Work handed to a process of its own (an upload to an object store,
`storage.uploader`) runs there below training as a whole (`delegated`), and a
hurry reaches it too.

A thread at `SCHED_IDLE` may starve behind any other load, which must not
hold up whoever waits for the save (the next save, the end of training):
`WriterPriority.hurry` puts the writer back first, and the writer restores
itself at the end of each block. Leaving `SCHED_IDLE` needs CAP_SYS_NICE
or an RLIMIT_NICE that allows nice 0 (`ulimit -e` of 20 or more, within
the hard limit; the kernel treats SCHED_IDLE as nice 20), which containers
rarely grant. So the writer is lowered only where it can be restored,
found once per process by a thread that lowers and restores itself;
elsewhere (and off Linux) it runs at normal priority throughout. A thread
a user put at another policy keeps it.
"""

import contextlib
import functools
import os
import threading
from typing import Callable, Iterator, List, Optional

from absl import logging

_this_thread = threading.local()


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
  """One background save's priority: lowered in blocks, hurried by a waiter.

  Once hurried, the writer is not lowered again. The lock is never held
  across a change of policy: a thread that lowers itself may be descheduled
  at once, and must not hold up `hurry` while it waits for a CPU.
  """

  def __init__(self):
    self._lock = threading.Lock()
    self._lowered_id: Optional[int] = None  # The writer's, inside a block.
    self._hurried = False
    self._delegates: List[Callable[[], None]] = []

  @contextlib.contextmanager
  def of_this_thread(self) -> Iterator[None]:
    """Makes `below_training` blocks run in this thread use this priority."""
    _this_thread.priority = self
    try:
      yield
    finally:
      del _this_thread.priority

  @contextlib.contextmanager
  def _lowered(self) -> Iterator[None]:
    lower = _may_lower_this_thread()
    if lower:
      with self._lock:
        lower = not self._hurried
        if lower:
          self._lowered_id = threading.get_native_id()
    if not lower:
      yield
      return
    try:
      _set_policy(0, os.SCHED_IDLE)
      if self._hurried:  # Hurried between the lock and the line above.
        _set_policy(0, os.SCHED_OTHER)
      else:
        yield_cpu()
      yield
    finally:
      _set_policy(0, os.SCHED_OTHER)
      with self._lock:
        self._lowered_id = None

  @contextlib.contextmanager
  def _delegated(
    self, hurry: Callable[[], None]
  ) -> Iterator[Callable[[], bool]]:
    if not _may_lower_this_thread():
      yield _never
      return
    with self._lock:
      self._delegates.append(hurry)
    try:
      yield self._not_hurried
    finally:
      with self._lock:
        self._delegates.remove(hurry)

  def _not_hurried(self) -> bool:
    with self._lock:
      return not self._hurried

  def hurry(self) -> None:
    """By a waiter, before it waits: the writer back at normal priority."""
    with self._lock:
      self._hurried = True
      # Set only inside a block, whose end clears it: the thread is running.
      lowered_id = self._lowered_id
      if lowered_id is not None:
        _set_policy(lowered_id, os.SCHED_OTHER)
      delegates = list(self._delegates)
    for delegate in delegates:
      delegate()


def _may_lower_this_thread() -> bool:
  """Where it can be restored, and only from the default policy.

  A thread a user put at SCHED_BATCH, SCHED_IDLE or a real-time policy
  keeps it, and so does work it hands over.
  """
  return can_restore() and os.sched_getscheduler(0) == os.SCHED_OTHER


def _priority_of_this_thread() -> Optional[WriterPriority]:
  """The background save this thread runs (`of_this_thread`), if any."""
  return getattr(_this_thread, "priority", None)


def yield_cpu() -> None:
  """Gives up the CPU, once this thread lowered itself to SCHED_IDLE.

  A change of policy alone does not reschedule: the kernel keeps the
  thread on its CPU until the next tick (4 ms at HZ=250) or a wakeup,
  ahead of a training thread already waiting to run. Measured on one CPU
  (64 MiB, saves every 1000 steps): the step after a save took 2.4-3.3 ms
  more than a plain step without the yield, 1.1-2.1 ms with it.
  """
  if hasattr(os, "sched_yield"):
    os.sched_yield()


def _set_policy(thread_id: int, policy: int) -> None:
  """`sched_setscheduler`; a refusal is logged (the save goes on)."""
  try:
    os.sched_setscheduler(thread_id, policy, os.sched_param(0))
  except OSError as e:
    logging.warning(
      "Could not set the background save's scheduling policy to %d: %s",
      policy,
      e,
    )


@contextlib.contextmanager
def below_training() -> Iterator[None]:
  """Runs the block at SCHED_IDLE in a background save's thread.

  A no-op outside one (`WriterPriority.of_this_thread`), once it was
  hurried, or where the thread could not be restored. Only for the
  writer's own CPU work: start no thread and call no library that may.
  """
  priority = _priority_of_this_thread()
  if priority is None:
    yield
  else:
    with priority._lowered():  # pylint: disable=protected-access
      yield


@contextlib.contextmanager
def delegated(hurry: Callable[[], None]) -> Iterator[Callable[[], bool]]:
  """For work a background save hands to another process (an upload).

  Yields a function telling whether that work may run below training now:
  in a background save's thread, where it can be restored, until the save
  is hurried. Until the block ends, a hurry of the save also calls `hurry`,
  which puts that work back at normal priority. Ask the function after
  the work is where `hurry` reaches it, and again once it is lowered: a
  hurry in between is then never lost.
  """
  priority = _priority_of_this_thread()
  if priority is None:
    yield _never
  else:
    with priority._delegated(hurry) as lowered:  # pylint: disable=protected-access
      yield lowered


def _never() -> bool:
  return False
