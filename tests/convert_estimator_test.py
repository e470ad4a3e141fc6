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


if __name__ == "__main__":
  absltest.main()
