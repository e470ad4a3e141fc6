"""Estimator with a `tf.distribute` strategy (`RunConfig(train_distribute=)`).

Under `MirroredStrategy` every variable, the global step too, is a
`MirroredVariable`, which a TF1 `Saver` saves through its own saveable. The
TF2 saver makes that saveable under the variable's TF2 key. Real training,
against stock Estimator with the same strategy, on one CPU (with two, stock
Estimator's first step did not finish in 10 minutes on this 2-core
machine); a save and restore of two replicas on two logical CPUs, in a
session, checks every replica.
"""

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys

from tests import strategy_fixtures

tf1 = tf.compat.v1


def setUpModule():
  # Two logical CPUs for the replicas of `TwoReplicasTest`.
  (cpu,) = tf.config.list_physical_devices("CPU")
  tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2
  )


def _estimator(model_fn, model_dir):
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  config = tf.estimator.RunConfig(
    model_dir=model_dir,
    train_distribute=strategy,
    save_checkpoints_steps=3,
    keep_checkpoint_max=10,
  )
  return tf.estimator.Estimator(model_fn, config=config)


class MirroredStrategyTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.named_parameters(
    ("sync", False, False),
    ("sync_also_tf1", False, True),
    ("async", True, False),
    ("async_also_tf1", True, True),
  )
  def test_trains_resumes_and_restores_as_stock(
    self, async_save, also_write_tf1
  ):
    stock_dir = self.create_tempdir().full_path
    ours_dir = self.create_tempdir().full_path
    stock = _estimator(strategy_fixtures.model_fn, stock_dir)
    ours = _estimator(
      estimator_ckpt.tf2_checkpoints(
        strategy_fixtures.model_fn,
        async_save=async_save,
        also_write_tf1=also_write_tf1,
      ),
      ours_dir,
    )
    for est in (stock, ours):
      est.train(strategy_fixtures.input_fn, steps=7)
      est.train(strategy_fixtures.input_fn, steps=3)  # Resumes from step 7.

    self.assertEqual(
      strategy_fixtures.saved_steps(ours_dir),
      strategy_fixtures.saved_steps(stock_dir),
    )
    self.assertEqual(strategy_fixtures.saved_steps(ours_dir)[-1], 10)
    saved = dict(tf.train.list_variables(ours_dir))
    self.assertIn(keys.variable_key("w"), saved)
    self.assertIn(keys.STEP_KEY, saved)
    self.assertEqual(estimator_ckpt.checkpoint_format(ours_dir), "tf2")
    self.assertAllClose(
      ours.get_variable_value("w"), stock.get_variable_value("w")
    )
    self.assertAllClose(
      tf.train.load_variable(ours_dir, keys.variable_key("w/Adagrad")),
      tf.train.load_variable(stock_dir, "w/Adagrad"),
    )
    # A TF2 reader by key, and an Estimator without the strategy resuming.
    w = tf.Variable(tf.zeros([2]))
    tf.train.Checkpoint(var_list={"w": w}).read(
      tf.train.latest_checkpoint(ours_dir)
    ).expect_partial()
    self.assertAllClose(w.numpy(), stock.get_variable_value("w"))
    plain = tf.estimator.Estimator(
      estimator_ckpt.tf2_checkpoints(strategy_fixtures.model_fn), ours_dir
    )
    plain.train(strategy_fixtures.input_fn, steps=1)
    self.assertEqual(plain.get_variable_value("global_step"), 11)
    if also_write_tf1:  # The TF1 copy, by TF1 name, as stock's.
      tf1_dir = f"{ours_dir}/tf1"
      self.assertEqual(estimator_ckpt.checkpoint_format(tf1_dir), "tf1")
      for name in ("w", "w/Adagrad", "global_step"):
        self.assertAllClose(
          tf.train.load_variable(tf1_dir, name),
          tf.train.load_variable(stock_dir, name),
        )

  def test_migrates_a_tf1_model_dir_in_place(self):
    model_dir = self.create_tempdir().full_path
    _estimator(strategy_fixtures.model_fn, model_dir).train(
      strategy_fixtures.input_fn, steps=4
    )
    w = tf.train.load_variable(model_dir, "w")
    migrated = _estimator(
      estimator_ckpt.tf2_checkpoints(strategy_fixtures.model_fn), model_dir
    )
    # Restores the TF1 checkpoint by name (step 4), saves TF2 from then on.
    self.assertAllClose(migrated.get_variable_value("w"), w)
    migrated.train(strategy_fixtures.input_fn, steps=2)
    self.assertEqual(estimator_ckpt.checkpoint_format(model_dir), "tf2")
    self.assertEqual(tf.train.load_variable(model_dir, keys.STEP_KEY), 6)


class TwoReplicasTest(parameterized.TestCase, tf.test.TestCase):
  def test_every_replica_saves_and_restores(self):
    prefix = f"{self.create_tempdir().full_path}/model.ckpt"
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with tf.Graph().as_default():
      with strategy.scope():
        tf1.train.get_or_create_global_step()
        w = tf1.get_variable("w", [2], initializer=tf1.zeros_initializer())
      replicas = strategy.experimental_local_results(w)
      self.assertLen(replicas, 2)
      set_every_replica = w.assign([1.0, 2.0])
      set_each_apart = [r.assign([7.0, 7.0]) for r in replicas]
      sc = estimator_ckpt.scaffold()
      sc.finalize()
      with tf1.Session() as sess:
        sess.run(sc.init_op)
        sess.run(set_every_replica)
        sc.saver.save(sess, prefix)
        sess.run(set_each_apart)
        sc.saver.restore(sess, prefix)
        for value in sess.run(list(replicas)):
          self.assertAllEqual(value, [1.0, 2.0])
    self.assertAllEqual(
      tf.train.load_variable(prefix, keys.variable_key("w")), [1.0, 2.0]
    )

  def test_var_list_nested_or_listing_a_variable_twice(self):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with tf.Graph().as_default():
      with strategy.scope():
        step = tf1.train.get_or_create_global_step()
        w = tf1.get_variable("w", [2], initializer=tf1.ones_initializer())
      plain = tf1.get_variable("p", [2])
      # As a TF1 Saver: a plain variable listed twice is refused, a
      # distributed one is saved once.
      with self.assertRaisesRegex(ValueError, "same name: p"):
        tf1.train.Saver(var_list=[plain, [plain]])
      with self.assertRaisesRegex(ValueError, "same name: p"):
        estimator_ckpt.scaffold(var_list=[plain, [plain]]).finalize()
      tf1.train.Saver(var_list=[w, [w]])
      # A distributed variable beside a variable of its name (its own first
      # component here) is refused, naming it.
      with self.assertRaisesRegex(
        errors.InvalidArgumentError, "same name: w .a distributed variable"
      ):
        estimator_ckpt.scaffold(
          var_list=[w, strategy.experimental_local_results(w)[0]]
        ).finalize()
      prefix = f"{self.create_tempdir().full_path}/model.ckpt"
      sc = estimator_ckpt.scaffold(var_list=[[w], (step, w)])
      sc.finalize()
      with tf1.Session() as sess:
        sess.run(sc.init_op)
        sc.saver.save(sess, prefix)
      self.assertAllEqual(
        tf.train.load_variable(prefix, keys.variable_key("w")), [1.0, 1.0]
      )

  @parameterized.named_parameters(
    ("stock", None), ("sync", False), ("async", True)
  )
  def test_variable_aggregated_on_read_saves_and_restores_as_stock(
    self, async_save
  ):
    # A SyncOnReadVariable (SUM) saves the sum of its replicas and restores
    # each replica to an equal share (values.py's saveable), as stock.
    prefix = f"{self.create_tempdir().full_path}/model.ckpt"
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with tf.Graph().as_default():
      with strategy.scope():
        tf1.train.get_or_create_global_step()
        total = tf1.get_variable(
          "total",
          [],
          initializer=tf1.zeros_initializer(),
          synchronization=tf.VariableSynchronization.ON_READ,
          aggregation=tf.VariableAggregation.SUM,
        )
      replicas = strategy.experimental_local_results(total)
      set_each = [r.assign(float(i + 2)) for i, r in enumerate(replicas)]
      clear_each = [r.assign(0.0) for r in replicas]
      if async_save is None:
        saver, init = tf1.train.Saver(), tf1.global_variables_initializer()
      else:
        sc = estimator_ckpt.scaffold(async_save=async_save)
        sc.finalize()
        saver, init = sc.saver, sc.init_op
      with tf1.Session() as sess:
        sess.run(init)
        sess.run(set_each)
        if async_save:
          saver.save_async(sess, prefix)
          saver.wait_until_finished()
        else:
          saver.save(sess, prefix)
        sess.run(clear_each)
        saver.restore(sess, prefix)
        self.assertAllEqual(sess.run(list(replicas)), [2.5, 2.5])
    key = "total" if async_save is None else keys.variable_key("total")
    self.assertEqual(tf.train.load_variable(prefix, key), 5.0)


if __name__ == "__main__":
  absltest.main()
