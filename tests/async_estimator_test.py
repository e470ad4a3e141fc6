"""Asynchronous saves through Estimator and MonitoredSession (issue 20).

Real TensorFlow graphs, sessions and Estimators. The background writer is
held at a gate (a wrapper around `AsyncParts.write`, our code) where a test
needs training to run while a save is in flight, so no test depends on
timing; failures are injected at the same place or in the storage seam.
"""

import os
import threading
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf
from tensorflow.python.training import training_util

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import async_hook
from estimator_ckpt._src import migrate
from estimator_ckpt._src.storage import local

from examples.guide import models as guide_models
from tests import async_fixtures

tf1 = tf.compat.v1


class EstimatorTest(async_fixtures.TestCase):
  def test_installs_the_async_hook_on_the_runconfig_schedule(self):
    model_fn = migrate.tf2_checkpoints(
      guide_models.model_fn_tf1_ckpt, async_save=True
    )
    config = tf.estimator.RunConfig(
      model_dir=self.model_dir(), save_checkpoints_steps=7
    )
    with tf.Graph().as_default():
      features, labels = tf1.data.make_one_shot_iterator(
        guide_models.train_input_fn()
      ).get_next()
      spec = model_fn(features, labels, tf.estimator.ModeKeys.TRAIN, config)
    (hook,) = [
      h
      for h in spec.training_chief_hooks
      if isinstance(h, tf1.train.CheckpointSaverHook)
    ]
    self.assertIsInstance(hook, async_hook.AsyncCheckpointSaverHook)
    self.assertIs(estimator_ckpt.AsyncCheckpointSaverHook, type(hook))
    self.assertEqual(hook._timer._every_steps, 7)  # pylint: disable=protected-access
    self.assertTrue(spec.scaffold.saver.async_save)
    # Evaluation never saves: no snapshot, no hook.
    with tf.Graph().as_default():
      features, labels = tf1.data.make_one_shot_iterator(
        guide_models.train_input_fn()
      ).get_next()
      spec = model_fn(features, labels, tf.estimator.ModeKeys.EVAL, config)
    self.assertFalse(spec.scaffold.saver.async_save)
    self.assertEmpty(spec.training_chief_hooks)

  def test_train_returns_with_every_checkpoint_committed(self):
    model_dir = self.model_dir()
    # The last save is held well after training ends: train() must wait.
    gate = async_fixtures.Gate(hold_at="model.ckpt-7", open_after=1.0)
    with gate.patch():
      async_fixtures.estimator(model_dir).train(
        async_fixtures.repeat_input_fn, steps=7
      )
    self.assertFalse(
      [t for t in threading.enumerate() if "async-save" in t.name]
    )
    state = tf.train.get_checkpoint_state(model_dir)
    self.assertEqual(
      os.path.basename(state.model_checkpoint_path), "model.ckpt-7"
    )
    for path in state.all_model_checkpoint_paths:
      self.assertEqual(
        tf.train.load_checkpoint(path).get_tensor(keys.STEP_KEY),
        int(path.rsplit("-", 1)[1]),
      )
    # Every save went through the background writer: 0, 2, 4, 6 and 7.
    self.assertEqual(
      [os.path.basename(p) for p in gate.prefixes],
      [f"model.ckpt-{s}" for s in (0, 2, 4, 6, 7)],
    )
    # keep_checkpoint_max=3: retention applied in the background.
    self.assertEqual(
      [os.path.basename(p) for p in state.all_model_checkpoint_paths],
      ["model.ckpt-4", "model.ckpt-6", "model.ckpt-7"],
    )
    self.assertFalse(
      os.path.exists(os.path.join(model_dir, "model.ckpt-2.index"))
    )

  def test_listener_after_save_sees_the_committed_checkpoint(self):
    model_dir = self.model_dir()
    listener = async_fixtures.CommittedListener(self, model_dir)
    # Each write held a while: a listener run before the commit would see
    # the previous checkpoint.
    gate = async_fixtures.Gate(open_after=0.3)
    with gate.patch():
      async_fixtures.estimator(model_dir).train(
        async_fixtures.repeat_input_fn, steps=5, saving_listeners=[listener]
      )
    self.assertEqual(listener.steps, [0, 2, 4, 5])

  def test_resumes_and_max_steps(self):
    model_dir = self.model_dir()
    async_fixtures.estimator(model_dir).train(
      async_fixtures.repeat_input_fn, max_steps=3
    )
    est = async_fixtures.estimator(model_dir)
    est.train(async_fixtures.repeat_input_fn, max_steps=5)
    self.assertEqual(est.get_variable_value("global_step"), 5)
    est.train(
      async_fixtures.repeat_input_fn, max_steps=5
    )  # Already there: no step.
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-5"
    )

  def test_train_and_evaluate_evaluates_committed_checkpoints(self):
    model_dir = self.model_dir()
    est = async_fixtures.estimator(model_dir, save_steps=3)
    metrics, _ = tf.estimator.train_and_evaluate(
      est,
      tf.estimator.TrainSpec(async_fixtures.repeat_input_fn, max_steps=6),
      tf.estimator.EvalSpec(
        guide_models.train_input_fn, steps=1, throttle_secs=0
      ),
    )
    self.assertEqual(metrics["global_step"], 6)
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-6"
    )

  def test_migrate_estimator_takes_async_save(self):
    model_dir = self.model_dir()
    est = migrate.migrate_estimator(
      tf.estimator.Estimator(
        guide_models.model_fn_tf1_ckpt,
        model_dir,
        config=tf.estimator.RunConfig(save_checkpoints_steps=2),
      ),
      async_save=True,
    )
    gate = async_fixtures.Gate()
    gate.opened.set()
    with gate.patch():
      est.train(async_fixtures.repeat_input_fn, steps=3)
    self.assertNotEmpty(gate.prefixes)
    self.assertEqual(est.get_variable_value("global_step"), 3)


class FailureTest(async_fixtures.TestCase):
  def test_failure_is_raised_naming_it_and_previous_stays_whole(self):
    model_dir = self.model_dir()
    gate = async_fixtures.Gate(fail_at="model.ckpt-4")
    gate.opened.set()
    with gate.patch():
      with self.assertRaisesRegex(
        errors.AsyncSaveError, r"model\.ckpt-4` \(step 4\).*No space left"
      ) as raised:
        async_fixtures.estimator(model_dir).train(
          async_fixtures.repeat_input_fn, steps=8
        )
    self.assertEqual(raised.exception.checkpoint, f"{model_dir}/model.ckpt-4")
    self.assertEqual(raised.exception.step, 4)
    self.assertIsInstance(
      raised.exception.__cause__, tf.errors.ResourceExhaustedError
    )
    self.assertIn("model.ckpt-2", str(raised.exception))
    # Raised at the next save: nothing after step 4 was saved.
    self.assertEqual(
      [os.path.basename(p) for p in gate.prefixes],
      ["model.ckpt-0", "model.ckpt-2", "model.ckpt-4"],
    )
    latest = tf.train.latest_checkpoint(model_dir)
    self.assertEqual(os.path.basename(latest), "model.ckpt-2")
    self.assertEqual(
      tf.train.load_checkpoint(latest).get_tensor(keys.STEP_KEY), 2
    )
    # The next run resumes from it.
    est = async_fixtures.estimator(model_dir)
    est.train(async_fixtures.repeat_input_fn, steps=1)
    self.assertEqual(est.get_variable_value("global_step"), 3)

  def test_failure_of_the_last_save_is_raised_at_the_end(self):
    model_dir = self.model_dir()
    gate = async_fixtures.Gate(fail_at="model.ckpt-3")
    gate.opened.set()
    with gate.patch():
      with self.assertRaisesRegex(errors.AsyncSaveError, r"model\.ckpt-3"):
        async_fixtures.estimator(model_dir).train(
          async_fixtures.repeat_input_fn, steps=3
        )
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-2"
    )

  def test_failure_is_raised_over_an_exception_that_ends_train(self):
    # A hook of the user's raises while the save of step 2 is held; the
    # save fails while the session closes (its coordinator's join opens
    # the gate). No hook's end runs. train() raises the failure, the
    # ValueError its context.
    class RaisesWhileSaving(tf1.train.SessionRunHook):
      def begin(self):
        self._step = tf1.train.get_global_step()

      def after_run(self, run_context, run_values):
        # By the run that reached step 3, the save of step 2 has started
        # (whatever the order of the hooks); the next save is at step 4.
        if run_context.session.run(self._step) >= 3:
          self.held = gate.entered.wait(timeout=60)
          raise ValueError("user error")

    model_dir = self.model_dir()
    gate = async_fixtures.Gate(hold_at="model.ckpt-2", fail_at="model.ckpt-2")
    hook = RaisesWhileSaving()
    with gate.patch(), _opened_when_the_session_closes(gate):
      with self.assertRaisesRegex(
        errors.AsyncSaveError, r"model\.ckpt-2"
      ) as raised:
        async_fixtures.estimator(model_dir).train(
          async_fixtures.repeat_input_fn, steps=8, hooks=[hook]
        )
    self.assertTrue(hook.held)
    self.assertIsInstance(raised.exception.__context__, ValueError)
    self.assertIsInstance(
      raised.exception.__cause__, tf.errors.ResourceExhaustedError
    )
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-0"
    )

  def test_storage_failure_in_commit_keeps_previous(self):
    model_dir = self.model_dir()
    real = local.LocalStorage.fsync_file
    calls = []

    def failing(store, path):
      calls.append(path)
      if "model.ckpt-2." in path:
        raise OSError(28, "No space left on device", path)
      real(store, path)

    with mock.patch.object(local.LocalStorage, "fsync_file", failing):
      with self.assertRaisesRegex(errors.AsyncSaveError, r"model\.ckpt-2"):
        async_fixtures.estimator(model_dir).train(
          async_fixtures.repeat_input_fn, steps=2
        )
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-0"
    )


def _opened_when_the_session_closes(gate):
  """Opens `gate` when a session's close joins its coordinator's threads."""
  real_join = tf1.train.Coordinator.join

  def join(coord, *args, **kwargs):
    gate.opened.set()
    return real_join(coord, *args, **kwargs)

  return mock.patch.object(tf1.train.Coordinator, "join", join)


def _train_to(last_step, train, sc, hook, checkpoint_dir=None):
  """Runs `train` in a MonitoredTrainingSession saving by `hook` only."""
  with tf1.train.MonitoredTrainingSession(
    scaffold=sc,
    checkpoint_dir=checkpoint_dir,
    chief_only_hooks=[hook],
    save_checkpoint_secs=None,
    hooks=[tf1.train.StopAtStepHook(last_step=last_step)],
  ) as sess:
    while not sess.should_stop():
      sess.run(train)


class MonitoredSessionTest(async_fixtures.TestCase):
  def _graph(self, checkpoint_dir, **options):
    step, train = async_fixtures.model()
    sc = estimator_ckpt.scaffold(async_save=True, **options)
    hook = estimator_ckpt.AsyncCheckpointSaverHook(
      checkpoint_dir, save_steps=2, scaffold=sc
    )
    return step, train, sc, hook

  def _close_by_exception(self, model_dir, gate, when_held):
    """Saves step 2 held at `gate`, then raises ValueError in the session.

    `when_held(gate)` runs once the save is held, before the ValueError.
    The session's `Coordinator.join` (its close) opens the gate, so a held
    save finishes while the session closes.
    """
    with tf.Graph().as_default(), gate.patch():
      _, train, sc, hook = self._graph(model_dir)
      with _opened_when_the_session_closes(gate):
        with tf1.train.MonitoredTrainingSession(
          scaffold=sc, chief_only_hooks=[hook], save_checkpoint_secs=None
        ) as sess:
          sess.run(train)
          sess.run(train)  # Step 2: a save, held at the gate.
          self.assertTrue(gate.entered.wait(timeout=60))
          when_held(gate)
          raise ValueError("user error")

  def test_close_by_exception_waits_for_the_save_in_flight(self):
    model_dir = self.model_dir()
    gate = async_fixtures.Gate(hold_at="model.ckpt-2")
    with self.assertRaisesRegex(ValueError, "user error"):
      self._close_by_exception(model_dir, gate, lambda gate: None)
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-2"
    )

  def test_failure_while_closing_by_exception_is_raised_there(self):
    # The save fails while the session closes (its join opens the gate):
    # after the stop the closing session requested, for which TensorFlow's
    # Coordinator.request_stop records no exception.
    model_dir = self.model_dir()
    gate = async_fixtures.Gate(hold_at="model.ckpt-2", fail_at="model.ckpt-2")
    with self.assertRaises(errors.AsyncSaveError) as raised:
      self._close_by_exception(model_dir, gate, lambda gate: None)
    self.assertFalse(gate.in_flight)
    failure = raised.exception
    self.assertEqual(
      failure.checkpoint, os.path.join(model_dir, "model.ckpt-2")
    )
    self.assertIsInstance(failure.__cause__, tf.errors.ResourceExhaustedError)
    # Python chains the exception that closed the session.
    self.assertIsInstance(failure.__context__, ValueError)
    self.assertEqual(str(failure.__context__), "user error")
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-0"
    )

  def test_failure_before_closing_by_exception_is_logged(self):
    # The save failed before the exception, in the step that raised it:
    # not reported while training went on (see _report_to_coordinator), so
    # only logged, and the exception that closed the session propagates.
    def fail_now(gate):
      (thread,) = [
        t
        for t in threading.enumerate()
        if t.name == "estimator_ckpt-async-save-2"
      ]
      gate.opened.set()
      thread.join()

    model_dir = self.model_dir()
    gate = async_fixtures.Gate(hold_at="model.ckpt-2", fail_at="model.ckpt-2")
    with self.assertLogs(level="ERROR") as logs:
      with self.assertRaisesRegex(ValueError, "user error"):
        self._close_by_exception(model_dir, gate, fail_now)
    self.assertTrue(
      any("model.ckpt-2" in line for line in logs.output), logs.output
    )
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-0"
    )

  def test_only_a_failure_while_closing_is_reported(self):
    def failure(cause):
      error = errors.AsyncSaveError("failed", checkpoint="c", step=1)
      error.__cause__ = cause
      return error

    full = tf.errors.ResourceExhaustedError(None, None, "no space")
    preempted = tf.errors.UnavailableError(None, None, "ps restarted")
    # While training goes on: the hook raises it, nothing is recorded.
    coord = tf1.train.Coordinator()
    self.assertFalse(async_hook._report_to_coordinator(coord, failure(full)))  # pylint: disable=protected-access
    self.assertFalse(coord.should_stop())
    coord.request_stop()
    # A preemption: the session is recreated, and the failure logged then.
    self.assertFalse(
      async_hook._report_to_coordinator(coord, failure(preempted))  # pylint: disable=protected-access
    )
    coord.join()
    # While the session closes: join raises it.
    coord = tf1.train.Coordinator()
    coord.request_stop()
    reported = failure(full)
    self.assertTrue(async_hook._report_to_coordinator(coord, reported))  # pylint: disable=protected-access
    with self.assertRaises(errors.AsyncSaveError) as raised:
      coord.join()
    self.assertIs(raised.exception, reported)
    # Once joined: nothing more.
    self.assertFalse(async_hook._report_to_coordinator(coord, failure(full)))  # pylint: disable=protected-access

  def test_resumes_from_its_checkpoints(self):
    model_dir = self.model_dir()
    for last_step in (3, 5):
      with tf.Graph().as_default():
        _, train, sc, hook = self._graph(model_dir)
        _train_to(last_step, train, sc, hook, checkpoint_dir=model_dir)
      self.assertEqual(
        os.path.basename(tf.train.latest_checkpoint(model_dir)),
        f"model.ckpt-{last_step}",
      )

  def _saves_and_step_reads(self, hook_class, save_steps, advance, last_step):
    """Trains to `last_step`, `advance` steps per run, saving by `hook_class`.

    Returns:
      (the steps saved, how many `session.run`s read the global step).
    """

    class Steps(tf1.train.CheckpointSaverListener):
      def __init__(self):
        self.saved = []

      def before_save(self, session, global_step_value):
        self.saved.append(global_step_value)

    listener = Steps()
    step_reads = []
    real_run = tf1.Session.run

    def counting_run(session, fetches, *args, **kwargs):
      # The hooks fetch the step's read tensor alone.
      if isinstance(fetches, tf.Tensor) and fetches.name.startswith(
        step.op.name + "/"
      ):
        step_reads.append(fetches.name)
      return real_run(session, fetches, *args, **kwargs)

    with tf.Graph().as_default():
      step = tf1.train.get_or_create_global_step()
      # The read the hooks fetch, before the increment in every run, so
      # every hook sees the step the run started from.
      read = training_util._get_or_create_global_step_read()  # pylint: disable=protected-access
      with tf.control_dependencies([read]):
        train = tf1.assign_add(step, advance)
      sc = estimator_ckpt.scaffold(async_save=True)
      hook = hook_class(
        self.model_dir(hook_class.__name__),
        save_steps=save_steps,
        scaffold=sc,
        listeners=[listener],
      )
      with mock.patch.object(tf1.Session, "run", counting_run):
        _train_to(last_step, train, sc, hook)
    return listener.saved, len(step_reads)

  @parameterized.named_parameters(
    # Saved steps: at session creation, in the runs, at the end. With two
    # steps per run, StopAtStepHook stops after the run passing step 16.
    ("one_step_per_run", 1, 3, 10, [0, 3, 6, 9, 10], 10),
    ("two_steps_per_run", 2, 4, 16, [0, 4, 8, 12, 16, 18], 9),
  )
  def test_saves_at_stock_steps_reading_the_step_only_then(
    self, advance, save_steps, last_step, saved, runs
  ):
    # The stock hook reads the global step in a session.run of its own
    # after every run; this one only in the runs that reach a save (with
    # two steps per run, from the second run on, where stale step + 2 does).
    results = [
      self._saves_and_step_reads(hook_class, save_steps, advance, last_step)
      for hook_class in (
        tf1.train.CheckpointSaverHook,
        estimator_ckpt.AsyncCheckpointSaverHook,
      )
    ]
    (stock_saves, stock_reads), (saves, reads) = results
    self.assertEqual(stock_saves, saved)
    self.assertEqual(saves, stock_saves)
    # Other reads (session creation, the end, StopAtStepHook) are the same.
    self.assertEqual(stock_reads - reads, runs - len(saved[1:-1]))

  def test_stock_hook_saves_synchronously(self):
    model_dir = self.model_dir()
    gate = async_fixtures.Gate()
    with tf.Graph().as_default(), gate.patch():
      step, train = async_fixtures.model()
      sc = estimator_ckpt.scaffold(async_save=True)
      with tf1.train.MonitoredTrainingSession(
        scaffold=sc,
        checkpoint_dir=model_dir,
        save_checkpoint_steps=2,
        hooks=[tf1.train.StopAtStepHook(last_step=3)],
      ) as sess:
        while not sess.should_stop():
          sess.run(train)
    self.assertEqual(gate.prefixes, [])  # No background write.
    self.assertEqual(
      os.path.basename(tf.train.latest_checkpoint(model_dir)), "model.ckpt-3"
    )


if __name__ == "__main__":
  absltest.main()
