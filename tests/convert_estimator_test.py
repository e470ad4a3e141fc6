"""Estimators resume training from converted model dirs."""

import os

from absl.testing import absltest
import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import keys
from estimator_ckpt._src import migrate

from examples.ranking import data as ranking_data
from examples.ranking import model as ranking_model
from tests import fixtures
from tests import tool_tf_fixtures


def _input_fn():
  examples = ranking_data.read_csv(
    fixtures.testdata_path("ranking", "train.csv"),
    ranking_model.RankingParams(),
  )
  return ranking_data.input_fn(examples, batch_size=32, shuffle=False)


class ConversionEstimatorTest(tf.test.TestCase):
  def test_resumes_from_tf2_conversion_of_ranking_dir(self):
    source = fixtures.GOLDENS["est-tf1-ranking"]
    source = fixtures.testdata_path(source)
    model_dir = estimator_ckpt.convert(
      source, os.path.join(self.get_temp_dir(), "tf2"), to="tf2"
    )
    model_dir = os.path.dirname(model_dir)
    calls = []

    def counting_model_fn(features, labels, mode, params):
      calls.append(mode)
      return ranking_model.model_fn(features, labels, mode, params)

    # The real Scaffold factory resumes from the converted dir.
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(counting_model_fn),
      model_dir,
      params=ranking_model.RankingParams().as_dict(),
    )
    # The `global_step` alias: max_steps already reached, no model built.
    est.train(_input_fn(), max_steps=20)
    self.assertEqual(calls, [])
    self.assertAllEqual(
      est.get_variable_value(keys.variable_key("hidden/kernel")),
      tf.train.load_variable(source, "hidden/kernel"),
    )
    est.train(_input_fn(), max_steps=22)
    self.assertEqual(est.get_variable_value(keys.STEP_KEY), 22)
    self.assertNotAllEqual(
      est.get_variable_value(keys.variable_key("hidden/kernel")),
      tf.train.load_variable(source, "hidden/kernel"),
    )

  def test_resumes_from_round_trip_with_stock_estimator(self):
    source = fixtures.testdata_path(fixtures.GOLDENS["est-tf1-ranking"])
    tf2_prefix = estimator_ckpt.convert(
      source, os.path.join(self.get_temp_dir(), "tf2"), to="tf2"
    )
    model_dir = os.path.dirname(
      estimator_ckpt.convert(
        tf2_prefix, os.path.join(self.get_temp_dir(), "tf1"), to="tf1"
      )
    )
    est = ranking_model.estimator(model_dir)
    self.assertAllEqual(
      est.get_variable_value("user_embedding/Adam"),
      tf.train.load_variable(source, "user_embedding/Adam"),
    )
    est.train(_input_fn(), max_steps=21)
    self.assertEqual(est.get_variable_value("global_step"), 21)

  def test_stock_tf2_partitions_resume_as_tf1(self):
    # The guide's TF2 Scaffold (Checkpoint over global_variables()) stores
    # partitions as separate variables; converted to TF1 they restore into a
    # partitioned variable again.
    stock_dir = os.path.join(self.get_temp_dir(), "stock")
    tf.estimator.Estimator(
      fixtures.partitioned_model_fn(3, tf2_checkpoint=True), stock_dir
    ).train(fixtures.one_example_input_fn, steps=2)
    self.assertIn(
      "var_list/emb.Spart_2/.ATTRIBUTES/VARIABLE_VALUE",
      dict(tf.train.list_variables(stock_dir)),
    )
    model_dir = os.path.dirname(
      estimator_ckpt.convert(
        stock_dir, os.path.join(self.get_temp_dir(), "tf1"), to="tf1"
      )
    )
    est = tf.estimator.Estimator(
      fixtures.partitioned_model_fn(3, tf2_checkpoint=False), model_dir
    )
    est.train(fixtures.one_example_input_fn, steps=1)
    # Initialized to the row index; +1 per step: 2 steps before, 1 after.
    expected = np.tile(np.arange(8, dtype=np.float32)[:, None], [1, 2]) + 3
    self.assertAllEqual(tf.train.load_variable(model_dir, "emb"), expected)
    tool_tf_fixtures.assert_bit_equal(
      self, expected, estimator_ckpt.load_variable(model_dir, "emb")
    )
    self.assertEqual(tf.train.load_variable(model_dir, "global_step"), 3)

  def test_stock_tf2_partitions_with_adagrad_slots_resume_as_tf1(self):
    # Issue 18 item 4: stock Checkpoint stores each partition's slot as its
    # own tensor (`var_list/emb.Spart_K.SAdagrad`); they are one logical
    # `emb/Adagrad`, which a stock Estimator restores by that name.
    weights = np.arange(16, dtype=np.float32).reshape([8, 2]) / 8

    def model_fn(tf2_checkpoint):
      def fn(features, labels, mode):
        del features, labels
        step = tf.compat.v1.train.get_or_create_global_step()
        emb = tf.compat.v1.get_variable(
          "emb",
          shape=[8, 2],
          initializer=tf.compat.v1.zeros_initializer(),
          partitioner=tf.compat.v1.fixed_size_partitioner(3),
        )
        loss = tf.reduce_sum(tf.convert_to_tensor(emb) * weights)
        train_op = tf.compat.v1.train.AdagradOptimizer(0.1).minimize(
          loss, global_step=step
        )
        scaffold = None
        if tf2_checkpoint:
          scaffold = tf.compat.v1.train.Scaffold(
            saver=tf.train.Checkpoint(
              var_list={
                v.name.split(":")[0]: v for v in tf.compat.v1.global_variables()
              }
            )
          )
        return tf.estimator.EstimatorSpec(
          mode, loss=loss, train_op=train_op, scaffold=scaffold
        )

      return fn

    stock_dir = os.path.join(self.get_temp_dir(), "stock_slots")
    tf.estimator.Estimator(model_fn(True), stock_dir).train(
      fixtures.one_example_input_fn, steps=2
    )
    self.assertIn(
      "var_list/emb.Spart_2.SAdagrad/.ATTRIBUTES/VARIABLE_VALUE",
      dict(tf.train.list_variables(stock_dir)),
    )
    listed = dict(estimator_ckpt.list_variables(stock_dir))
    self.assertEqual(listed["emb/Adagrad"], [8, 2])
    self.assertNotIn("emb/part_0/Adagrad", listed)
    accumulator = np.full([8, 2], 0.1, np.float32) + 2 * weights**2
    self.assertAllClose(
      estimator_ckpt.load_variable(stock_dir, "emb/Adagrad"), accumulator
    )

    model_dir = os.path.dirname(
      estimator_ckpt.convert(
        stock_dir, os.path.join(self.get_temp_dir(), "tf1_slots"), to="tf1"
      )
    )
    est = tf.estimator.Estimator(model_fn(False), model_dir)
    est.train(fixtures.one_example_input_fn, steps=1)  # Resumes at step 2.
    self.assertEqual(tf.train.load_variable(model_dir, "global_step"), 3)
    self.assertAllClose(
      tf.train.load_variable(model_dir, "emb/Adagrad"),
      accumulator + weights**2,
    )

    # The Scaffold factory resumes the stock dir in place (by TF1 name).
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(model_fn(False)), stock_dir
    )
    est.train(fixtures.one_example_input_fn, steps=1)
    self.assertAllClose(
      estimator_ckpt.load_variable(stock_dir, "emb/Adagrad"),
      accumulator + weights**2,
    )
    self.assertEqual(estimator_ckpt.load_variable(stock_dir, "global_step"), 3)

    # And warm start reads them as one tensor, into any partitioning.
    def warm_started(tf2_source):
      with tf.Graph().as_default():
        model_fn(False)({}, None, tf.estimator.ModeKeys.TRAIN)
        summary = estimator_ckpt.warm_start(
          tf2_source, with_optimizer_slots=True, strict=True
        )
        slots = [
          v for v in tf.compat.v1.global_variables() if "Adagrad" in v.name
        ]
        with tf.compat.v1.Session() as sess:
          sess.run(tf.compat.v1.global_variables_initializer())
          return summary, np.concatenate(sess.run(slots))

    summary, slot = warm_started(model_dir)
    self.assertIn("emb/Adagrad", summary.warm_started)
    self.assertAllEqual(slot, tf.train.load_variable(model_dir, "emb/Adagrad"))


if __name__ == "__main__":
  absltest.main()
