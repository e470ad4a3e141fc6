"""One task of a real parameter-server cluster for tests/distributed_test.py.

Not public API (test-only binary). Reads TF_CONFIG like any Estimator
trainer and runs `tf.estimator.train_and_evaluate` on a model with a
partitioned table (placed on the ps by Estimator's device setter) and the
TF2 scaffold. Prints `SAVED <step>` after each checkpoint the chief writes
and `DONE <task>` when its task finishes, so the test can follow without
sleeping.
"""

import sys
from typing import Sequence

from absl import app
from absl import flags
import tensorflow as tf

from estimator_ckpt import migration

tf1 = tf.compat.v1

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Shared model dir.")
_MAX_STEPS = flags.DEFINE_integer("max_steps", 400, "Global steps to train.")
_SAVE_STEPS = flags.DEFINE_integer("save_checkpoints_steps", 40,
                                   "Checkpoint interval.")


def model_fn(features, labels, mode):
  """Linear model over a partitioned embedding of the feature id."""
  table = tf1.get_variable(
      "emb", shape=[16, 4], initializer=tf1.zeros_initializer(),
      partitioner=tf1.fixed_size_partitioner(2))
  logits = tf.reduce_sum(tf1.nn.embedding_lookup(table, features), axis=1)
  loss = tf.reduce_mean(tf.square(logits - labels))
  train_op = tf1.train.AdagradOptimizer(0.1).minimize(
      loss, global_step=tf1.train.get_or_create_global_step())
  return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)


def input_fn():
  ids = tf.range(16, dtype=tf.int64)
  labels = tf.cast(ids % 3, tf.float32)
  return tf.data.Dataset.from_tensor_slices((ids, labels)).repeat().batch(4)


class _PrintSaves(tf.estimator.CheckpointSaverListener):

  def after_save(self, session, global_step_value):
    print(f"SAVED {global_step_value}", flush=True)


def main(argv: Sequence[str]) -> None:
  del argv
  config = tf.estimator.RunConfig(
      model_dir=_MODEL_DIR.value,
      save_checkpoints_steps=_SAVE_STEPS.value,
      experimental_max_worker_delay_secs=0)
  est = tf.estimator.Estimator(migration.tf2_checkpoints(model_fn),
                               config=config)
  tf.estimator.train_and_evaluate(
      est,
      tf.estimator.TrainSpec(input_fn, max_steps=_MAX_STEPS.value,
                             saving_listeners=[_PrintSaves()]),
      tf.estimator.EvalSpec(input_fn, steps=2, start_delay_secs=0,
                            throttle_secs=1))
  print(f"DONE {config.task_type}", flush=True)
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
