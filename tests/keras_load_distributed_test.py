"""`load_weights` under tf.distribute: ShardedVariables of another shard count.

An in-process loopback cluster (one worker, two parameter servers on
127.0.0.1) runs `tf.distribute.experimental.ParameterServerStrategy` with a
variable partitioner, so the Keras twin of the ranking model has its
embedding tables (and its hidden kernel) as `ShardedVariable`s of 3 shards on
the parameter servers, where the shipped TF1 checkpoint has 4 partitions.
The load fills each shard with its rows, the Adam state of each shard with
its rows of the TF1 slots, and `model.fit` then trains there.
"""

from absl.testing import absltest
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt._src.keras import optimizers as keras_optimizers

from examples.ranking import data as ranking_data
from examples.ranking import keras_model
from examples.ranking import model as ranking_model
from examples.ranking import trainer
from tests import tool_fixtures

ShardedVariable = tf.__internal__.distribute.ShardedVariable

_RANKING = "est-tf1-ranking"
_SHARDS = 3


def _loopback_strategy() -> tf.distribute.experimental.ParameterServerStrategy:
  worker, ps0, ps1 = tool_fixtures.free_ports(3)
  cluster = tf.train.ClusterSpec(
    {
      "worker": [f"127.0.0.1:{worker}"],
      "ps": [f"127.0.0.1:{ps0}", f"127.0.0.1:{ps1}"],
    }
  )
  for job in ("worker", "ps"):
    for index in range(cluster.num_tasks(job)):
      tf.distribute.Server(
        cluster, job_name=job, task_index=index, protocol="grpc", start=True
      )
  resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
    cluster, rpc_layer="grpc"
  )
  return tf.distribute.experimental.ParameterServerStrategy(
    resolver,
    # Shards every variable of at least 1000 bytes, in at most 3 shards:
    # both tables, and the hidden kernel in 2.
    variable_partitioner=(
      tf.distribute.experimental.partitioners.MinSizePartitioner(
        min_shard_bytes=1000, max_shards=_SHARDS
      )
    ),
  )


class ParameterServerTest(tf.test.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.strategy = _loopback_strategy()
    cls.tf1_dir = tool_fixtures.golden_path(_RANKING)

  def _build(self):
    with self.strategy.scope():
      model = keras_model.build()
      optimizer = keras_model.optimizer()
    return model, optimizer

  def _check_loaded(self, model, optimizer, report):
    self.assertEqual(report.iterations, 20)
    self.assertEqual(report.advice, ())
    self.assertLen(report.loaded, 10)
    spec = keras_optimizers.spec(optimizer)
    for layer, name in (
      ("user_embedding", "user_embedding"),
      ("item_embedding", "item_embedding"),
    ):
      table = model.get_layer(layer).embeddings
      self.assertIsInstance(table, ShardedVariable)
      self.assertLen(table.variables, _SHARDS)
      self.assertAllEqual(
        tf.concat(table.variables, 0).numpy(),
        estimator_ckpt.load_variable(self.tf1_dir, name),
      )
      for slot in spec.slots:
        state = np.concatenate(
          [
            keras_optimizers.state_variable(optimizer, slot, shard).numpy()
            for shard in table.variables
          ]
        )
        self.assertAllEqual(
          state,
          estimator_ckpt.load_variable(
            self.tf1_dir, keras_optimizers.tf1_slot_name(name, slot)
          ),
        )
    kernel = model.get_layer("hidden").kernel
    self.assertIsInstance(kernel, ShardedVariable)
    self.assertAllEqual(
      tf.concat(kernel.variables, 0).numpy(),
      estimator_ckpt.load_variable(self.tf1_dir, "hidden/kernel"),
    )

  def test_load_outside_the_scope_then_fit(self):
    model, optimizer = self._build()
    report = estimator_ckpt.load_weights(
      model, self.tf1_dir, optimizer=optimizer, rename=keras_model.RENAME
    )
    self._check_loaded(model, optimizer, report)

    table = model.get_layer("user_embedding").embeddings
    before = tf.concat(table.variables, 0).numpy()
    with self.strategy.scope():
      keras_model.compile_model(model, optimizer)
    train = ranking_data.read_csv(
      trainer.DEFAULT_TRAIN_DATA, ranking_model.RankingParams()
    )
    dataset = (
      tf.data.Dataset.from_tensor_slices(
        (keras_model.features(train), train.label)
      )
      .repeat()
      .batch(64)
    )
    history = model.fit(dataset, epochs=1, steps_per_epoch=5, verbose=0)
    self.assertEqual(int(optimizer.iterations.numpy()), 25)
    self.assertTrue(np.isfinite(history.history["loss"][0]))
    self.assertNotAllClose(tf.concat(table.variables, 0).numpy(), before)

  def test_load_inside_the_scope(self):
    model, optimizer = self._build()
    with self.strategy.scope():
      report = estimator_ckpt.load_weights(
        model, self.tf1_dir, optimizer=optimizer, rename=keras_model.RENAME
      )
    self._check_loaded(model, optimizer, report)


if __name__ == "__main__":
  absltest.main()
