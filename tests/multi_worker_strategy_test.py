"""Estimator with `TF_CONFIG` and `MultiWorkerMirroredStrategy`.

With a cluster in `TF_CONFIG`, Estimator trains through the distribute
coordinator, whose `MonitoredTrainingSession`
(`monitored_session._create_monitored_session_with_worker_context`) adds a
stock `CheckpointSaverHook` of its own on the chief, saving through the
scaffold's saver, beside the `EstimatorSpec`'s chief hooks. With
`async_save=True` that hook saves each checkpoint the
`AsyncCheckpointSaverHook` has just started: the saver returns it instead of
writing it a second time, synchronously. A one-worker cluster on 127.0.0.1
(the coordinator starts its gRPC server in this process), against stock
Estimator with the same strategy and schedule.
"""

import json
import os
import socket
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
from tensorflow.python.training import saver as saver_lib

import estimator_ckpt
from estimator_ckpt import keys

tf1 = tf.compat.v1


def setUpModule():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  os.environ["TF_CONFIG"] = json.dumps(
    {
      "cluster": {"worker": [f"127.0.0.1:{port}"]},
      "task": {"type": "worker", "index": 0},
    }
  )


def tearDownModule():
  del os.environ["TF_CONFIG"]


def _model_fn(features, labels, mode):
  w = tf1.get_variable("w", [2], initializer=tf1.zeros_initializer())
  loss = tf.reduce_mean(tf.square(tf.reduce_sum(features * w, 1) - labels))
  train = tf1.train.AdagradOptimizer(0.1).minimize(
    loss, global_step=tf1.train.get_global_step()
  )
  return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train)


def _input_fn():
  features = np.array([[1.0, 2.0], [3.0, -1.0]], np.float32)
  labels = np.array([1.0, 2.0], np.float32)
  return tf.data.Dataset.from_tensors((features, labels)).repeat()


class MultiWorkerMirroredStrategyTest(parameterized.TestCase, tf.test.TestCase):
  def _train(self, model_fn):
    """Trains to step 7 saving every 3; the estimator and its sync writes.

    The synchronous writes are the calls of `tf.compat.v1.train.Saver.save`
    (a `Tf2Saver`'s own saves call it; background saves do not).
    """
    config = tf.estimator.RunConfig(
      model_dir=self.create_tempdir().full_path,
      train_distribute=tf.distribute.experimental.MultiWorkerMirroredStrategy(),
      save_checkpoints_steps=3,
    )
    estimator = tf.estimator.Estimator(model_fn, config=config)
    with mock.patch.object(
      saver_lib.Saver, "save", autospec=True, side_effect=saver_lib.Saver.save
    ) as save:
      tf.estimator.train_and_evaluate(
        estimator,
        tf.estimator.TrainSpec(_input_fn, max_steps=7),
        tf.estimator.EvalSpec(_input_fn, steps=1, throttle_secs=0),
      )
    return estimator, save.call_count

  @parameterized.named_parameters(("sync", False), ("async", True))
  def test_saves_each_checkpoint_once_as_stock(self, async_save):
    stock, stock_writes = self._train(_model_fn)
    ours, our_writes = self._train(
      estimator_ckpt.tf2_checkpoints(_model_fn, async_save=async_save)
    )

    def steps(model_dir):
      state = tf.train.get_checkpoint_state(model_dir)
      return [
        int(path.rsplit("-", 1)[1]) for path in state.all_model_checkpoint_paths
      ]

    self.assertEqual(steps(stock.model_dir), [0, 3, 6, 7])
    self.assertEqual(steps(ours.model_dir), steps(stock.model_dir))
    self.assertEqual(stock_writes, 4)
    # Synchronous: one write per save, through the Tf2Saver. Asynchronous:
    # every save in the background, none again in MonitoredTrainingSession's
    # own hook.
    self.assertEqual(our_writes, 0 if async_save else 4)
    self.assertEqual(estimator_ckpt.checkpoint_format(ours.model_dir), "tf2")
    self.assertAllClose(
      tf.train.load_variable(ours.model_dir, keys.variable_key("w")),
      tf.train.load_variable(stock.model_dir, "w"),
    )
    self.assertEqual(tf.train.load_variable(ours.model_dir, keys.STEP_KEY), 7)


if __name__ == "__main__":
  absltest.main()
