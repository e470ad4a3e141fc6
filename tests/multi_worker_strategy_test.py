"""Estimator with `TF_CONFIG` and `MultiWorkerMirroredStrategy`.

With a cluster in `TF_CONFIG`, Estimator trains through the distribute
coordinator, whose `MonitoredTrainingSession`
(`monitored_session._create_monitored_session_with_worker_context`) adds a
stock `CheckpointSaverHook` of its own on the chief, saving through the
scaffold's saver, beside the `EstimatorSpec`'s chief hooks. With
`async_save=True` that hook saves each checkpoint the
`AsyncCheckpointSaverHook` has just started: the saver returns it instead of
writing it a second time, synchronously; and the async hook keeps that
hook's schedule (every 1000 steps instead of by seconds, no saves when no
summaries are saved). A one-worker cluster on 127.0.0.1 (the strategy starts
its gRPC server in this process), against stock Estimator with the same
strategy and schedule.

The rules themselves (which hook a spec gets, and the refusal below) are
checked in process on the RunConfig of a cluster (`AsyncHookRulesTest`).

A two-worker cluster of processes (`multi_worker_child`) trains a model with
batch normalization, whose moving statistics are on-read variables: saving
them is an all-reduce every worker must run (the workers that are not the
chief save into a temporary dir for that), so the chief's async snapshot and
the other workers' saves must share one read (`distributed_saveables`);
before they did, every worker waited for the others forever.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import List
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf
from tensorflow.python.training import saver as saver_lib

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys

from tests import strategy_fixtures
from tests import tool_fixtures

tf1 = tf.compat.v1


_TF_CONFIG_BEFORE = os.environ.get("TF_CONFIG")


def setUpModule():
  os.environ["TF_CONFIG"] = json.dumps(
    {
      "cluster": {"worker": [f"127.0.0.1:{tool_fixtures.free_ports(1)[0]}"]},
      "task": {"type": "worker", "index": 0},
    }
  )


def tearDownModule():
  if _TF_CONFIG_BEFORE is None:
    del os.environ["TF_CONFIG"]
  else:
    os.environ["TF_CONFIG"] = _TF_CONFIG_BEFORE


# RunConfig schedules: every 3 steps; by seconds (every step's worth here),
# which MonitoredTrainingSession turns into every 1000 steps under a
# collective strategy; and summaries off, where it adds no saver hook (stock
# saves no checkpoint at all).
_EVERY_3_STEPS = {"save_checkpoints_steps": 3}
_BY_SECONDS = {"save_checkpoints_secs": 1e-6}
_NO_SUMMARIES = {"save_checkpoints_steps": 3, "save_summary_steps": None}


class MultiWorkerMirroredStrategyTest(parameterized.TestCase, tf.test.TestCase):
  def _train(self, model_fn, schedule):
    """Trains to step 7; the model dir and its synchronous writes.

    The synchronous writes are the calls of `tf.compat.v1.train.Saver.save`
    (a `Tf2Saver`'s own saves call it; background saves do not).
    """
    config = tf.estimator.RunConfig(
      model_dir=self.create_tempdir().full_path,
      train_distribute=tf.distribute.experimental.MultiWorkerMirroredStrategy(),
      **schedule,
    )
    estimator = tf.estimator.Estimator(model_fn, config=config)
    with mock.patch.object(
      saver_lib.Saver, "save", autospec=True, side_effect=saver_lib.Saver.save
    ) as save:
      # Estimator.train refuses a cluster (only train_and_evaluate runs
      # it); there is no evaluator task, so no evaluation.
      tf.estimator.train_and_evaluate(
        estimator,
        tf.estimator.TrainSpec(strategy_fixtures.input_fn, max_steps=7),
        tf.estimator.EvalSpec(strategy_fixtures.input_fn),
      )
    return config.model_dir, save.call_count

  @parameterized.named_parameters(
    ("sync_every_3_steps", False, _EVERY_3_STEPS, [0, 3, 6, 7]),
    ("async_every_3_steps", True, _EVERY_3_STEPS, [0, 3, 6, 7]),
    ("sync_by_seconds", False, _BY_SECONDS, [0, 7]),
    ("async_by_seconds", True, _BY_SECONDS, [0, 7]),
    ("sync_no_summaries", False, _NO_SUMMARIES, []),
    ("async_no_summaries", True, _NO_SUMMARIES, []),
  )
  def test_saves_each_checkpoint_once_as_stock(
    self, async_save, schedule, saved
  ):
    stock_dir, stock_writes = self._train(strategy_fixtures.model_fn, schedule)
    our_dir, our_writes = self._train(
      estimator_ckpt.tf2_checkpoints(
        strategy_fixtures.model_fn, async_save=async_save
      ),
      schedule,
    )
    self.assertEqual(strategy_fixtures.saved_steps(stock_dir), saved)
    self.assertEqual(strategy_fixtures.saved_steps(our_dir), saved)
    self.assertEqual(stock_writes, len(saved))
    # Synchronous: one write per save, through the Tf2Saver. Asynchronous:
    # every save in the background, none again in MonitoredTrainingSession's
    # own hook.
    self.assertEqual(our_writes, 0 if async_save else len(saved))
    for step in saved:
      self.assertAllClose(
        tf.train.load_variable(
          f"{our_dir}/model.ckpt-{step}", keys.variable_key("w")
        ),
        tf.train.load_variable(f"{stock_dir}/model.ckpt-{step}", "w"),
        msg=step,
      )
      self.assertEqual(
        tf.train.load_variable(f"{our_dir}/model.ckpt-{step}", keys.STEP_KEY),
        step,
      )


def _config_of_cluster(cluster, strategy, **schedule):
  """The RunConfig of task 0 of `cluster`'s first job (as in TF_CONFIG)."""
  tf_config = {
    "cluster": cluster,
    "task": {"type": next(iter(cluster)), "index": 0},
  }
  with mock.patch.dict(os.environ, {"TF_CONFIG": json.dumps(tf_config)}):
    return tf.estimator.RunConfig(
      model_dir=tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir()),
      train_distribute=strategy,
      **schedule,
    )


def _batch_norm_model_fn(features, labels, mode):
  del labels  # Unused.
  normalized = tf1.layers.batch_normalization(features, training=False)
  step = tf1.train.get_global_step()
  return tf.estimator.EstimatorSpec(
    mode, loss=tf.reduce_sum(normalized), train_op=step.assign_add(1)
  )


class AsyncHookRulesTest(tf.test.TestCase):
  """Which hook `tf2_checkpoints(async_save=True)` gives a multi-worker spec.

  The model_fn is called as Estimator calls it, in a graph whose batch
  normalization statistics are on-read variables, with the RunConfig of a
  cluster (its ports never used).
  """

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy()

  def _hooks(self, config, also_write_tf1=True):
    model_fn = estimator_ckpt.tf2_checkpoints(
      _batch_norm_model_fn, async_save=True, also_write_tf1=also_write_tf1
    )
    with tf.Graph().as_default():
      # A plain variable too: neither mirrored nor on-read.
      tf1.get_variable("plain", [1])
      with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        tf1.train.get_or_create_global_step()
        spec = model_fn(
          tf.ones([2, 4]), None, tf.estimator.ModeKeys.TRAIN, config=config
        )
    return [
      h
      for h in spec.training_chief_hooks
      if isinstance(h, estimator_ckpt.AsyncCheckpointSaverHook)
    ]

  def test_tf1_copy_of_on_read_variables_on_two_workers_is_refused(self):
    workers = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    config = _config_of_cluster(
      workers, self.strategy, save_checkpoints_steps=3
    )
    with self.assertRaisesRegex(
      errors.InvalidArgumentError,
      "also_write_tf1=True cannot save the on-read variables "
      "batch_normalization/moving_mean, batch_normalization/moving_variance "
      r"\(.* on 2 workers",
    ):
      self._hooks(config)
    # Without the TF1 copy, or without saves, nothing can hang.
    self.assertLen(self._hooks(config, also_write_tf1=False), 1)
    off = _config_of_cluster(
      workers,
      self.strategy,
      save_checkpoints_steps=None,
      save_checkpoints_secs=None,
    )
    self.assertEmpty(self._hooks(off))

  def test_one_worker_or_a_master_job_keeps_the_tf1_copy(self):
    for cluster in (
      {"worker": ["127.0.0.1:1"]},
      {"master": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]},
    ):
      config = _config_of_cluster(
        cluster, self.strategy, save_checkpoints_steps=3
      )
      (hook,) = self._hooks(config)
      self.assertIsInstance(hook, estimator_ckpt.AsyncCheckpointSaverHook)


# A two-worker run takes about 12 s; a hang ends here, with the workers' logs.
_DEADLINE_SECS = 120


def _train_two_workers(saver: str, model_dir: str) -> List[str]:
  """Trains a two-worker cluster of processes; their return codes and logs.

  Raises:
    AssertionError: The workers did not finish by the deadline.
  """
  env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  ports = tool_fixtures.free_ports(2)
  deadline = time.monotonic() + _DEADLINE_SECS
  hung = False
  with contextlib.ExitStack() as stack:
    # Files, never pipes: a full pipe would stop a worker, then the other.
    logs = [
      stack.enter_context(
        tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")
      )
      for _ in ports
    ]
    workers = []
    try:
      for index, log in enumerate(logs):
        workers.append(
          subprocess.Popen(
            [
              sys.executable,
              "-m",
              "tests.multi_worker_child",
              saver,
              str(index),
              json.dumps(ports),
              model_dir,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
          )
        )
      for worker in workers:
        worker.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
      hung = True
    finally:
      for worker in workers:
        if worker.poll() is None:
          worker.kill()
          worker.wait()
    texts = []
    for worker, log in zip(workers, logs):
      log.seek(0)
      texts.append(f"exit {worker.returncode}\n{log.read()}")
  if hung:
    raise AssertionError(
      f"{saver}: the workers did not finish in {_DEADLINE_SECS} s:\n"
      + "\n".join(text[-3000:] for text in texts)
    )
  return texts


def _assert_finished(texts: List[str]) -> None:
  for text in texts:
    if not text.startswith("exit 0\n") or "DONE" not in text:
      raise AssertionError(f"a worker failed:\n{text[-3000:]}")


class TwoWorkersTest(parameterized.TestCase, tf.test.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.stock_dir = tempfile.mkdtemp(dir=absltest.get_default_test_tmpdir())
    _assert_finished(_train_two_workers("stock", cls.stock_dir))

  @parameterized.named_parameters(("sync", "sync"), ("async", "async"))
  def test_on_read_variables_save_as_stock(self, saver):
    model_dir = self.create_tempdir().full_path
    _assert_finished(_train_two_workers(saver, model_dir))

    self.assertEqual(
      strategy_fixtures.saved_steps(self.stock_dir), [0, 3, 6, 7]
    )
    self.assertEqual(
      strategy_fixtures.saved_steps(model_dir),
      strategy_fixtures.saved_steps(self.stock_dir),
    )
    self.assertEqual(estimator_ckpt.checkpoint_format(model_dir), "tf2")
    for name in (
      "w",
      "batch_normalization/moving_mean",
      "batch_normalization/moving_variance",
    ):
      self.assertAllClose(
        tf.train.load_variable(model_dir, keys.variable_key(name)),
        tf.train.load_variable(self.stock_dir, name),
        msg=name,
      )

  def test_async_tf1_copy_of_on_read_variables_is_refused(self):
    # The chief's background save would read them once per save, the other
    # worker's saves twice (the TF2 save and its TF1 copy): a hang.
    texts = _train_two_workers("async_tf1", self.create_tempdir().full_path)
    for text in texts:
      self.assertFalse(text.startswith("exit 0\n"), text[-3000:])
      self.assertNotIn("DONE", text)
      self.assertIn(
        "InvalidArgumentError: async_save=True with also_write_tf1=True "
        "cannot save the on-read variables batch_normalization/moving_mean, "
        "batch_normalization/moving_variance (",
        text,
      )


if __name__ == "__main__":
  absltest.main()
