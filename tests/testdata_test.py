"""Every golden checkpoint in testdata/ restores with its recorded values.

Each golden is restored through the API that wrote it (TF1 Saver, TF2
Checkpoint, Estimator), then compared tensor by tensor with MANIFEST.json, so
a format change cannot silently break old checkpoints.
"""

import collections
import os
import re

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from examples.guide import models as guide_models
from examples.ranking import data as ranking_data
from examples.ranking import model as ranking_model
from tests import fixtures

tf1 = tf.compat.v1


class TestdataTest(parameterized.TestCase, tf.test.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.manifest = fixtures.load_manifest()

  @parameterized.parameters(*fixtures.GOLDENS)
  def test_manifest_matches_files(self, name):
    self.assertEqual(
      fixtures.checkpoint_manifest(
        fixtures.testdata_path(fixtures.GOLDENS[name])
      ),
      self.manifest[name],
    )

  def _assert_digests(self, name, values_by_key):
    """Values a real restore produced equal the manifest's digests."""
    expected = self.manifest[name]
    for key, value in values_by_key.items():
      self.assertEqual(
        fixtures.array_digest(value),
        expected[key]["sha256"],
        msg=f"{name}: {key}",
      )

  def test_tf1_ckpt_restores_with_saver(self):
    with tf.Graph().as_default():
      names = ("a", "b", "scoped/c")
      variables = [tf1.get_variable(n, shape=[]) for n in names]
      with tf1.Session() as sess:
        tf1.train.Saver().restore(
          sess, fixtures.testdata_path(fixtures.GOLDENS["tf1-ckpt"])
        )
        values = sess.run(variables)
    self.assertEqual(values, [1.0, 2.0, 3.0])
    self._assert_digests("tf1-ckpt", dict(zip(names, values)))

  def test_tf2_ckpt_restores_with_checkpoint(self):
    variables = [tf.Variable(0.0) for _ in range(3)]
    tf.train.Checkpoint(variables=variables).restore(
      fixtures.testdata_path(fixtures.GOLDENS["tf2-ckpt"])
    ).assert_existing_objects_matched()
    values = [v.numpy() for v in variables]
    self.assertEqual(values, [5.0, 6.0, 7.0])
    self._assert_digests(
      "tf2-ckpt",
      {
        f"variables/{i}/.ATTRIBUTES/VARIABLE_VALUE": values[i] for i in range(3)
      },
    )

  def test_est_tf1_restores_with_saver(self):
    model_dir = fixtures.testdata_path(fixtures.GOLDENS["est-tf1"])
    with tf.Graph().as_default():
      step = tf1.train.get_or_create_global_step()
      var = tf1.get_variable("var", shape=[])
      with tf1.Session() as sess:
        tf1.train.Saver().restore(sess, tf.train.latest_checkpoint(model_dir))
        values = dict(zip(("global_step", "var"), sess.run([step, var])))
    self.assertEqual(values, {"global_step": 1, "var": 2.0})
    self._assert_digests("est-tf1", values)

  def test_est_tf2_restores_with_the_guides_checkpoint(self):
    model_dir = fixtures.testdata_path(fixtures.GOLDENS["est-tf2"])
    with tf.Graph().as_default():
      step = tf1.train.get_or_create_global_step()
      var = tf1.get_variable("var", shape=[])
      ckpt = tf.train.Checkpoint(var_list={"var": var}, step=step)
      with tf1.Session() as sess:
        # Not assert_existing_objects_matched(): the Scaffold's saver never
        # saves the Checkpoint's own `save_counter`.
        ckpt.restore(tf.train.latest_checkpoint(model_dir)).run_restore_ops()
        values = sess.run([step, var])
    self.assertEqual(values, [1, 4.0])
    self._assert_digests(
      "est-tf2",
      {
        "step/.ATTRIBUTES/VARIABLE_VALUE": values[0],
        "var_list/var/.ATTRIBUTES/VARIABLE_VALUE": values[1],
      },
    )

  def test_guide_model_fns_cannot_predict(self):
    """Real behaviour: the guide's `predictions=v` is a Variable, not a Tensor.

    Estimator.predict rejects it, so its est-* dirs are checked by restore.
    """
    est = tf.estimator.Estimator(
      guide_models.model_fn_tf1_ckpt,
      fixtures.testdata_path(fixtures.GOLDENS["est-tf1"]),
    )
    with self.assertRaisesRegex(ValueError, "must be a Tensor"):
      next(est.predict(guide_models.train_input_fn))

  def test_ranking_dir_restores_into_the_model(self):
    model_dir = fixtures.testdata_path(fixtures.GOLDENS["est-tf1-ranking"])
    params = ranking_model.RankingParams()
    with tf.Graph().as_default():
      ranking_model.build_training_graph(params)
      saver = tf1.train.Saver()
      # Partitioned variables restore whole; read each logical variable.
      parts_by_name = collections.defaultdict(list)
      for v in tf1.global_variables():
        parts_by_name[re.sub(r"/part_\d+", "", v.op.name)].append(v)
      with tf1.Session() as sess:
        saver.restore(sess, tf.train.latest_checkpoint(model_dir))
        values = {}
        for name, parts in parts_by_name.items():
          # Partitions (axis 0) in order: part_0, part_1, ...
          parts.sort(
            key=lambda v: (
              v._get_save_slice_info().var_offset  # pylint: disable=protected-access
              if v._get_save_slice_info()
              else [0]
            )
          )  # pylint: disable=protected-access
          values[name] = (
            np.concatenate(sess.run(parts))
            if len(parts) > 1
            else sess.run(parts[0])
          )
    self.assertEqual(set(values), set(self.manifest["est-tf1-ranking"]))
    self._assert_digests("est-tf1-ranking", values)
    self.assertEqual(values["global_step"], 20)
    self.assertEqual(values["user_embedding"].shape, (params.num_users, 8))
    self.assertNotAllClose(
      values["batch_norm/moving_variance"], np.ones(params.hidden_units)
    )
    reader = tf.train.load_checkpoint(model_dir)
    self.assertLen(reader.get_variable_to_shape_map(), len(values))

  def test_ranking_data_reads(self):
    params = ranking_model.RankingParams()
    train = ranking_data.read_csv(
      fixtures.testdata_path("ranking", "train.csv"), params
    )
    self.assertLen(train, 4000)
    self.assertBetween(float(train.label.mean()), 0.3, 0.7)

  def test_goldens_are_small(self):
    total = sum(
      os.path.getsize(os.path.join(root, f))
      for root, _, files in os.walk(fixtures.TESTDATA_DIR)
      for f in files
    )
    self.assertLess(total, 5 * 2**20)


if __name__ == "__main__":
  absltest.main()
