"""The background writer's priority (`writer_priority`, issue 20).

A save's checksums and copies run at SCHED_IDLE, only where the process may
restore the thread, and a waiter restores it first. Real saves of a small
graph, held where a test needs to look at the writer's policy; the order of
the calls themselves is checked with `sched_setscheduler` recorded, so it is
tested whatever this process may do.
"""

import contextlib
import os
import resource
import select
import threading
from unittest import mock

from absl.testing import absltest
import tensorflow as tf

from estimator_ckpt._src import async_committer
from estimator_ckpt._src import scaffold
from estimator_ckpt._src import snapshot_bundle
from estimator_ckpt._src import writer_priority
from estimator_ckpt._src.storage import direct_copy

from tests import async_fixtures

tf1 = tf.compat.v1


def _may_leave_sched_idle() -> bool:
  """The kernel's rule (sched(7)), from this process's capabilities."""
  with open("/proc/self/status") as status:
    (effective,) = [
      int(line.split()[1], 16) for line in status if line.startswith("CapEff:")
    ]
  cap_sys_nice = 23  # linux/capability.h
  soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
  # SCHED_IDLE counts as nice 20; leaving it for nice 0 needs RLIMIT_NICE
  # of 20 - 0 = 20 or more.
  return bool(effective >> cap_sys_nice & 1) or (
    soft == resource.RLIM_INFINITY or soft >= 20
  )


class WriterPriorityTest(async_fixtures.TestCase):
  """A save's checksums run at SCHED_IDLE until someone waits for it."""

  def _held_save(self, release):
    """Runs a second save whose first checksum waits for `go`.

    The first save runs at normal priority (no interval to go by), so it
    is only made and awaited; the second is held, `go` set by `release`.

    `release(go, looked, copied)` is called once the writer is in its
    first checksum; the test then waits for the save.

    Returns:
      The scheduling policy of each phase of the save, the first time it
      runs: "checksum" (the writer in its first checksum), "checksum, go
      set" (once `go` is set; the writer then sets `looked`),
      "write_segments" (the writer as it starts writing the data), "copy"
      (the writer in its first copy into a write buffer; it then sets
      `copied`) and "copy thread" (a thread that writes those buffers out).
    """
    seen = {}

    armed = threading.Event()  # Set once the first save is committed.

    def look(phase):
      if armed.is_set():
        seen.setdefault(phase, os.sched_getscheduler(0))

    entered, go, looked, copied = (threading.Event() for _ in range(4))
    real_crc = snapshot_bundle._masked_crc  # pylint: disable=protected-access
    real_write_segments = direct_copy.write_segments
    real_segments_fill = direct_copy._segments_fill  # pylint: disable=protected-access
    real_write_at = direct_copy._write_at  # pylint: disable=protected-access

    def crc(p, arrays):
      if armed.is_set() and not entered.is_set():
        look("checksum")
        entered.set()
        go.wait(timeout=30)  # Fails the test, not hangs it, if never set.
        look("checksum, go set")
        looked.set()
      return real_crc(p, arrays)

    def write_segments(*args):
      look("write_segments")
      real_write_segments(*args)

    def segments_fill(*args):
      fill = real_segments_fill(*args)

      def looking_fill(view, offset):
        look("copy")
        if armed.is_set():
          copied.set()
        fill(view, offset)

      return looking_fill

    def write_at(*args):
      look("copy thread")
      real_write_at(*args)

    model_dir = self.model_dir()
    os.makedirs(model_dir)
    with tf.Graph().as_default(), contextlib.ExitStack() as patches:
      for module, name, replacement in [
        (snapshot_bundle, "_masked_crc", crc),
        (direct_copy, "write_segments", write_segments),
        (direct_copy, "_segments_fill", segments_fill),
        (direct_copy, "_write_at", write_at),
        # No deadline hurries the held save.
        (async_committer, "LOWERED_FRACTION_OF_INTERVAL", 1e6),
      ]:
        patches.enter_context(mock.patch.object(module, name, replacement))
      async_fixtures.model()
      # 64 KiB: a data file of whole pages, copied through the buffers.
      tf1.get_variable("pages", [256, 64], initializer=tf1.ones_initializer())
      saver = scaffold.Tf2Saver(async_save=True)
      saver.build()
      with tf1.Session() as sess:
        sess.run(tf1.global_variables_initializer())
        saver.save_async(sess, os.path.join(model_dir, "m"), global_step=0)
        saver.wait_until_finished()
        armed.set()
        saver.save_async(sess, os.path.join(model_dir, "m"), global_step=1)
        self.assertTrue(entered.wait(timeout=60))
        release(go, looked, copied)
        saver.wait_until_finished()
    self.assertEqual(
      tf.train.latest_checkpoint(model_dir), os.path.join(model_dir, "m-1")
    )
    return seen

  def _lowered(self):
    return os.SCHED_IDLE if writer_priority.can_restore() else os.SCHED_OTHER

  def test_lowered_only_where_it_can_be_restored(self):
    self.assertEqual(writer_priority.can_restore(), _may_leave_sched_idle())
    if os.geteuid() == 0:
      # Another user, without the capability, at RLIMIT_NICE 0: a forked
      # child (no TensorFlow call in it) probes afresh.
      read_end, write_end = os.pipe()
      pid = os.fork()
      if pid == 0:
        answer = b"E"  # This machine has no user 65534 to become.
        try:
          resource.setrlimit(resource.RLIMIT_NICE, (0, 0))
          os.setuid(65534)
          writer_priority.can_restore.cache_clear()
          answer = b"1" if writer_priority.can_restore() else b"0"
        finally:
          os.write(write_end, answer)
          os._exit(0)
      os.close(write_end)
      with os.fdopen(read_end, "rb") as pipe:
        ready, _, _ = select.select([pipe], [], [], 60)
        answer = pipe.read(1) if ready else b"timeout"
      os.waitpid(pid, 0)
      self.assertIn(answer, (b"0", b"E"))

  def test_lowers_and_restores_in_order(self):
    # The calls themselves, whatever this process may do: a thread at the
    # default policy is lowered in the block, gives up its CPU at once (a
    # change of policy alone does not reschedule) and is restored at its
    # end, and a waiter restores it by its id first.
    calls = []
    hurried_inside = threading.Event()
    priority = writer_priority.WriterPriority()

    def record(thread_id, policy, param):
      del param
      calls.append((thread_id, policy))

    def record_yield():
      calls.append("yield")

    def writer(hurry):
      with priority.of_this_thread(), writer_priority.below_training():
        calls.append("inside")
        if hurry:
          waiter = threading.Thread(target=priority.hurry)
          waiter.start()
          waiter.join()
          hurried_inside.set()
      writer_ids.append(threading.get_native_id())

    writer_ids = []
    with mock.patch.object(writer_priority, "can_restore", lambda: True):
      with (
        mock.patch.object(writer_priority.os, "sched_setscheduler", record),
        mock.patch.object(writer_priority.os, "sched_yield", record_yield),
      ):
        for hurry in (False, True):
          thread = threading.Thread(target=writer, args=(hurry,))
          thread.start()
          thread.join()
    idle, other = os.SCHED_IDLE, os.SCHED_OTHER
    self.assertTrue(hurried_inside.is_set())
    self.assertEqual(
      calls,
      [
        (0, idle), "yield", "inside", (0, other),
        (0, idle), "yield", "inside", (writer_ids[1], other), (0, other),
      ],
    )  # fmt: skip

  def test_a_thread_a_user_set_keeps_its_policy(self):
    policies = []

    def writer():
      os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
      with priority.of_this_thread(), writer_priority.below_training():
        policies.append(os.sched_getscheduler(0))
      policies.append(os.sched_getscheduler(0))

    priority = writer_priority.WriterPriority()
    thread = threading.Thread(target=writer)
    thread.start()
    thread.join()
    self.assertEqual(policies, [os.SCHED_BATCH, os.SCHED_BATCH])

  def test_checksums_and_copies_run_below_training_while_no_one_waits(self):
    def release(go, looked, copied):
      go.set()
      # Only then does the test wait for the save.
      self.assertTrue(looked.wait(timeout=60))
      self.assertTrue(copied.wait(timeout=60))

    lowered = self._lowered()
    self.assertEqual(
      self._held_save(release),
      {
        "checksum": lowered,
        "checksum, go set": lowered,
        # Between blocks, and so as it starts the copy threads: normal.
        "write_segments": os.SCHED_OTHER,
        "copy": lowered,
        "copy thread": os.SCHED_OTHER,
      },
    )

  def test_a_waiter_restores_the_writers_priority_first(self):
    go = threading.Event()
    real_hurry = writer_priority.WriterPriority.hurry

    def hurry(priority):
      real_hurry(priority)
      go.set()  # The writer looks again only once restored.

    def release(held_go, looked, copied):
      del looked, copied  # The test waits for the save at once.
      nonlocal go
      go = held_go

    with mock.patch.object(writer_priority.WriterPriority, "hurry", hurry):
      # The waiter: saver.wait_until_finished() in _held_save.
      seen = self._held_save(release)
    self.assertEqual(
      seen,
      {
        "checksum": self._lowered(),
        # Restored, and not lowered again.
        "checksum, go set": os.SCHED_OTHER,
        "write_segments": os.SCHED_OTHER,
        "copy": os.SCHED_OTHER,
        "copy thread": os.SCHED_OTHER,
      },
    )

  def test_once_hurried_never_lowered(self):
    priority = writer_priority.WriterPriority()
    policies = []

    def writer():
      with priority.of_this_thread(), writer_priority.below_training():
        policies.append(os.sched_getscheduler(0))

    priority.hurry()
    thread = threading.Thread(target=writer)
    thread.start()
    thread.join()
    self.assertEqual(policies, [os.SCHED_OTHER])

  def test_a_save_is_hurried_after_a_quarter_of_the_interval(self):
    timers = []

    class Timer:
      """Records the deadline; the test fires it."""

      def __init__(self, seconds, function):
        self.seconds, self.function = seconds, function
        self.started = self.cancelled = False
        timers.append(self)

      def start(self):
        self.started = True

      def cancel(self):
        self.cancelled = True

    times = iter([10.0, 14.0])  # The second save starts 4 s after the first.
    committer = async_committer.Committer(
      clock=lambda: next(times), timer=Timer
    )
    lowered_seen = []
    hurried = threading.Event()
    deadline_started = threading.Event()
    done = threading.Event()

    def first():
      with writer_priority.delegated(lambda: None) as lowered:
        lowered_seen.append(lowered())

    def second():
      with writer_priority.delegated(hurried.set) as lowered:
        lowered_seen.append(lowered())
        deadline_started.set()
        hurried.wait(timeout=60)
        lowered_seen.append(lowered())
      done.set()

    # Only the calls are recorded here: no policy changes.
    with mock.patch.object(writer_priority, "can_restore", lambda: True):
      committer.start(first, checkpoint="m-1", step=1, previous=None)
      committer.wait_until_finished()
      # The first save has no interval to go by: never lowered, no deadline.
      self.assertEqual(timers, [])
      committer.start(second, checkpoint="m-2", step=2, previous="m-1")
      self.assertTrue(deadline_started.wait(timeout=60))
      (deadline,) = timers
      self.assertEqual(deadline.seconds, 1.0)
      self.assertTrue(deadline.started)
      deadline.function()  # The deadline passes; no one waits yet.
      self.assertTrue(done.wait(timeout=60))
      committer.wait_until_finished()
    self.assertTrue(hurried.is_set())
    self.assertEqual(lowered_seen, [False, True, False])
    self.assertTrue(deadline.cancelled)  # Once the save ended.

  def test_not_lowered_outside_a_background_save(self):
    with writer_priority.below_training():
      self.assertEqual(os.sched_getscheduler(0), os.SCHED_OTHER)

  def test_work_handed_to_another_process_is_hurried_with_the_save(self):
    priority = writer_priority.WriterPriority()
    hurried = []
    seen = []

    # Only the calls are recorded here: no policy changes.
    with mock.patch.object(writer_priority, "can_restore", lambda: True):
      with priority.of_this_thread():
        with writer_priority.delegated(lambda: hurried.append(1)) as lowered:
          seen.append(lowered())
          priority.hurry()
          self.assertEqual(hurried, [1])  # The work in flight is hurried.
          seen.append(lowered())  # And asked again, it is not lowered.
        # Once hurried, work handed over later is not lowered at all.
        with writer_priority.delegated(lambda: hurried.append(2)) as lowered:
          seen.append(lowered())
      priority.hurry()
      self.assertEqual(hurried, [1])  # A block that ended is not called.
      with writer_priority.delegated(lambda: hurried.append(3)) as lowered:
        self.assertFalse(lowered())  # Not in a background save.
    self.assertEqual(seen, [True, False, False])

  def test_work_handed_over_is_not_lowered_where_it_cannot_be_restored(self):
    priority = writer_priority.WriterPriority()
    with mock.patch.object(writer_priority, "can_restore", lambda: False):
      with priority.of_this_thread():
        with writer_priority.delegated(lambda: None) as lowered:
          self.assertFalse(lowered())


if __name__ == "__main__":
  absltest.main()
