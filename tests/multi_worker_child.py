"""Child of multi_worker_strategy_test: one worker of a two-worker cluster.

`python -m tests.multi_worker_child SAVER INDEX PORTS MODEL_DIR` trains a
model with batch normalization (its moving statistics are on-read
variables, averaged over the workers when saved) with
`MultiWorkerMirroredStrategy` through `train_and_evaluate` to step 7, saving
every 3 steps, as worker INDEX of the cluster on 127.0.0.1 at PORTS (a JSON
list). SAVER is `stock` (Estimator's own Saver), `sync`, `async` or
`async_tf1` (`tf2_checkpoints(async_save=..., also_write_tf1=...)`). Each
worker's batch is its own constant, so the saved averages differ from the
chief's own.
"""

import json
import os
import sys

import tensorflow as tf

import estimator_ckpt

tf1 = tf.compat.v1


def _model_fn(features, labels, mode):
  normalized = tf1.layers.batch_normalization(
    features, training=mode == tf.estimator.ModeKeys.TRAIN
  )
  w = tf1.get_variable("w", [4], initializer=tf1.zeros_initializer())
  loss = tf.reduce_mean(tf.square(tf.reduce_sum(normalized * w, 1) - labels))
  with tf.control_dependencies(tf1.get_collection(tf1.GraphKeys.UPDATE_OPS)):
    train = tf1.train.GradientDescentOptimizer(0.1).minimize(
      loss, global_step=tf1.train.get_global_step()
    )
  return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train)


def main(saver: str, index: int, ports: list, model_dir: str) -> None:
  os.environ["TF_CONFIG"] = json.dumps(
    {
      "cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]},
      "task": {"type": "worker", "index": index},
    }
  )

  def input_fn():
    features = tf.reshape(tf.range(8 * 4, dtype=tf.float32), [8, 4])
    return tf.data.Dataset.from_tensors(
      (features * (index + 1), tf.ones([8]))
    ).repeat()

  model_fn = _model_fn
  if saver != "stock":
    model_fn = estimator_ckpt.tf2_checkpoints(
      _model_fn,
      async_save=saver.startswith("async"),
      also_write_tf1=saver.endswith("tf1"),
    )
  config = tf.estimator.RunConfig(
    model_dir=model_dir,
    train_distribute=tf.distribute.experimental.MultiWorkerMirroredStrategy(),
    save_checkpoints_steps=3,
  )
  tf.estimator.train_and_evaluate(
    tf.estimator.Estimator(model_fn, config=config),
    tf.estimator.TrainSpec(input_fn, max_steps=7),
    tf.estimator.EvalSpec(input_fn, steps=1, throttle_secs=0),
  )
  print("DONE", flush=True)


if __name__ == "__main__":
  main(sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4])
