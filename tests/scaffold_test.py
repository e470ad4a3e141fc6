"""The Scaffold factory on real Estimators and MonitoredTrainingSessions.

The `StockGap*` tests are the scenarios of tests/guide_test.py's
`StockGapsTest` (where stock TF 2.15 fails) run through estimator_ckpt: each
one that fails there passes here.
"""

import os
import shutil

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import migrate
from estimator_ckpt._src import scaffold

from examples.guide import models as guide_models
from examples.ranking import data as ranking_data
from examples.ranking import model as ranking_model
from tests import fixtures

tf1 = tf.compat.v1

_VAR_KEY = "var_list/var/.ATTRIBUTES/VARIABLE_VALUE"


def _stored(model_dir):
  """Every tensor of a model dir's latest checkpoint, by key."""
  reader = tf.train.load_checkpoint(model_dir)
  return {
    key: reader.get_tensor(key) for key in reader.get_variable_to_shape_map()
  }


def _ranking_input_fn(num_rows=256, num_epochs=None):
  params = ranking_model.RankingParams()
  examples = ranking_data.synthesize(num_rows, params, seed=7)
  return ranking_data.input_fn(
    examples, batch_size=32, shuffle=False, num_epochs=num_epochs
  )


class _TestCase(parameterized.TestCase, tf.test.TestCase):
  def model_dir(self, name="model"):
    return os.path.join(self.create_tempdir().full_path, name)


class InPlaceMigrationTest(_TestCase):
  def test_tf1_dir_resumes_and_next_save_is_tf2(self):
    model_dir = fixtures.copy_golden("est-tf1", self.model_dir())
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(guide_models.model_fn_tf1_ckpt), model_dir
    )
    est.train(guide_models.train_input_fn, steps=1)
    stored = _stored(model_dir)
    self.assertEqual(stored[_VAR_KEY], 4.0)  # 2 restored by name, + 2.
    self.assertEqual(stored[keys.STEP_KEY], 2)
    self.assertIn(keys.OBJECT_GRAPH_KEY, stored)
    # The TF1 name is now an index alias of the TF2 key (tf1_names=True).
    self.assertEqual(stored["var"], stored[_VAR_KEY])

  def test_tf2_dir_resumes(self):
    model_dir = fixtures.copy_golden("est-tf2", self.model_dir())
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(guide_models.model_fn_tf1_ckpt), model_dir
    )
    est.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(_stored(model_dir)[_VAR_KEY], 6.0)

  def test_guides_own_checkpoint_reads_our_tf2_dir(self):
    model_dir = fixtures.copy_golden("est-tf1", self.model_dir())
    tf.estimator.Estimator(
      migrate.tf2_checkpoints(guide_models.model_fn_tf1_ckpt), model_dir
    ).train(guide_models.train_input_fn, steps=1)
    # The guide's model_fn_tf2_ckpt resumes from what we wrote.
    est = tf.estimator.Estimator(guide_models.model_fn_tf2_ckpt, model_dir)
    est.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(est.get_variable_value(_VAR_KEY), 6.0)

  def test_ranking_dir_restores_every_variable_and_slot_by_name(self):
    """One more step from the TF1 dir equals the same step under TF1."""
    tf1_copy = fixtures.copy_golden("est-tf1-ranking", self.model_dir("tf1"))
    tf2_copy = fixtures.copy_golden("est-tf1-ranking", self.model_dir("tf2"))
    params = ranking_model.RankingParams().as_dict()
    tf.estimator.Estimator(
      ranking_model.model_fn, tf1_copy, params=params
    ).train(_ranking_input_fn(), steps=1)
    tf.estimator.Estimator(
      migrate.tf2_checkpoints(ranking_model.model_fn), tf2_copy, params=params
    ).train(_ranking_input_fn(), steps=1)
    tf1_values = _stored(tf1_copy)
    tf2_values = _stored(tf2_copy)
    self.assertLen(tf1_values, 29)
    for name, value in tf1_values.items():
      # Adam's update reads both slots and beta powers: equal values after
      # a step prove they were all restored.
      self.assertAllEqual(tf2_values[keys.variable_key(name)], value, msg=name)
    self.assertEqual(tf2_values[keys.STEP_KEY], 21)

  def test_mismatched_dir_lists_missing_keys(self):
    model_dir = fixtures.copy_golden("est-tf1", self.model_dir())

    def model_fn(features, labels, mode):
      spec = guide_models.model_fn_tf1_ckpt(features, labels, mode)
      for i in range(12):
        tf1.get_variable(f"extra_{i:02d}", shape=[])
      return spec

    est = tf.estimator.Estimator(migrate.tf2_checkpoints(model_fn), model_dir)
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError,
      r"12 of 14 are missing: `extra_00`, .* and 2 more\. .*fresh "
      r"model_dir warm-started",
    ):
      est.train(guide_models.train_input_fn, steps=1)

  def test_restore_name_based_false_refuses_tf1(self):
    model_dir = fixtures.copy_golden("est-tf1", self.model_dir())
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(
        guide_models.model_fn_tf1_ckpt, restore_name_based=False
      ),
      model_dir,
    )
    with self.assertRaisesRegex(
      errors.IncompatibleCheckpointError, "restore_name_based=True"
    ):
      est.train(guide_models.train_input_fn, steps=1)

  def test_shape_mismatch_names_variable_and_shapes(self):
    model_dir = fixtures.copy_golden("est-tf1", self.model_dir())

    def model_fn(features, labels, mode):
      del features, labels
      step = tf1.train.get_or_create_global_step()
      v = tf1.get_variable("var", shape=[3])
      return tf.estimator.EstimatorSpec(
        mode,
        loss=tf.constant(1.0),
        train_op=tf.group(v.assign_add(tf.ones([3])), step.assign_add(1)),
      )

    est = tf.estimator.Estimator(migrate.tf2_checkpoints(model_fn), model_dir)
    with self.assertRaisesRegex(
      errors.ShapeMismatchError,
      r"`var` is stored with shape \[\] .* variable `var` has shape \[3\]",
    ):
      est.train(guide_models.train_input_fn, steps=1)


class PartitionedVariablesTest(_TestCase):
  def _train(self, model_dir, num_partitions, steps=1):
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(
        fixtures.partitioned_model_fn(num_partitions, tf2_checkpoint=False)
      ),
      model_dir,
    )
    est.train(fixtures.one_example_input_fn, steps=steps)
    return est

  def test_one_logical_tensor_per_variable(self):
    model_dir = self.model_dir()
    self._train(model_dir, 4)
    reader = tf.train.load_checkpoint(model_dir)
    key = keys.variable_key("emb")
    self.assertEqual(reader.get_variable_to_shape_map()[key], [8, 2])
    expected = np.arange(8, dtype=np.float32)[:, None] + [1.0, 1.0]
    self.assertAllEqual(reader.get_tensor(key), expected)
    self.assertNotIn(
      "var_list/emb.Spart_0/.ATTRIBUTES/VARIABLE_VALUE",
      reader.get_variable_to_shape_map(),
    )

  @parameterized.named_parameters(
    ("4_to_2", 4, 2), ("2_to_3", 2, 3), ("3_to_1", 3, 1), ("1_to_4", 1, 4)
  )
  def test_resume_with_other_partition_count(self, before, after):
    model_dir = self.model_dir()
    self._train(model_dir, before)
    self._train(model_dir, after)
    expected = np.arange(8, dtype=np.float32)[:, None] + [2.0, 2.0]
    self.assertAllEqual(_stored(model_dir)[keys.variable_key("emb")], expected)

  @parameterized.named_parameters(("4_to_2", 4, 2), ("2_to_4", 2, 4))
  def test_tf1_dir_resumes_with_other_partition_count(self, before, after):
    model_dir = self.model_dir()
    tf.estimator.Estimator(
      fixtures.partitioned_model_fn(before, tf2_checkpoint=False), model_dir
    ).train(fixtures.one_example_input_fn, steps=1)
    self._train(model_dir, after)
    expected = np.arange(8, dtype=np.float32)[:, None] + [2.0, 2.0]
    self.assertAllEqual(_stored(model_dir)[keys.variable_key("emb")], expected)

  @parameterized.named_parameters(("3_to_2", 3, 2), ("2_to_1", 2, 1))
  def test_stock_tf2_dir_resumes_with_other_partition_count(
    self, before, after
  ):
    # One tensor per partition (`var_list/emb.Spart_<i>`): read through a
    # staged index that lists the parts as slices of `emb`.
    model_dir = self.model_dir()
    tf.estimator.Estimator(
      fixtures.partitioned_model_fn(before, tf2_checkpoint=True), model_dir
    ).train(fixtures.one_example_input_fn, steps=1)
    self._train(model_dir, after)
    expected = np.arange(8, dtype=np.float32)[:, None] + [2.0, 2.0]
    self.assertAllEqual(_stored(model_dir)[keys.variable_key("emb")], expected)


class EstimatorBehaviourTest(_TestCase):
  def test_train_evaluate_predict_export(self):
    model_dir = self.model_dir()
    params = ranking_model.RankingParams().as_dict()
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(ranking_model.model_fn), model_dir, params=params
    )
    est.train(_ranking_input_fn(), steps=3)
    metrics = est.evaluate(_ranking_input_fn(64, num_epochs=1))
    self.assertEqual(metrics["global_step"], 3)
    predictions = list(est.predict(_ranking_input_fn(64, num_epochs=1)))
    self.assertLen(predictions, 64)
    export_dir = est.export_saved_model(
      self.create_tempdir().full_path, ranking_model.serving_input_receiver_fn
    )
    with tf.Graph().as_default(), tf1.Session() as sess:
      tf1.saved_model.load(sess, ["serve"], export_dir)
      probability = sess.run(
        "Sigmoid:0", {"user_id:0": [1, 2], "item_id:0": [3, 4]}
      )
    self.assertAllClose(
      probability,
      [
        p["probability"]
        for p in est.predict(
          lambda: tf.data.Dataset.from_tensors(
            {
              "user_id": tf.constant([1, 2], tf.int64),
              "item_id": tf.constant([3, 4], tf.int64),
            }
          )
        )
      ],
    )

  def test_stock_gap_keep_checkpoint_max_honoured(self):
    model_dir = self.model_dir()
    config = tf.estimator.RunConfig(
      keep_checkpoint_max=1, save_checkpoints_steps=1
    )
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(guide_models.model_fn_tf1_ckpt),
      model_dir,
      config=config,
    )
    est.train(fixtures.one_example_input_fn, steps=3)
    state = tf.train.get_checkpoint_state(model_dir)
    self.assertLen(state.all_model_checkpoint_paths, 1)
    self.assertLen(tf.io.gfile.glob(os.path.join(model_dir, "*.index")), 1)

  def test_stock_gap_state_file_is_relative_and_dir_can_move(self):
    model_dir = self.model_dir()
    model_fn = migrate.tf2_checkpoints(guide_models.model_fn_tf1_ckpt)
    tf.estimator.Estimator(model_fn, model_dir).train(
      guide_models.train_input_fn, steps=1
    )
    with open(os.path.join(model_dir, "checkpoint")) as f:
      self.assertIn('model_checkpoint_path: "model.ckpt-1"', f.read())
    moved = self.model_dir("moved")
    shutil.move(model_dir, moved)
    est = tf.estimator.Estimator(model_fn, moved)
    est.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(est.get_variable_value(_VAR_KEY), 4.0)

  def test_stock_gap_max_steps_reads_global_step_and_skips(self):
    model_fn = fixtures.CallCounter(guide_models.model_fn_tf1_ckpt)
    est = tf.estimator.Estimator(
      migrate.tf2_checkpoints(model_fn), self.model_dir()
    )
    est.train(fixtures.one_example_input_fn, max_steps=2)
    calls = model_fn.calls
    est.train(fixtures.one_example_input_fn, max_steps=2)
    self.assertEqual(model_fn.calls, calls)
    self.assertEqual(est.get_variable_value("global_step"), 2)
    self.assertIn(_VAR_KEY, est.get_variable_names())

  def test_stock_gap_warm_start_from_tf2_partitioned(self):
    source = self.model_dir("source")
    tf.estimator.Estimator(
      migrate.tf2_checkpoints(
        fixtures.partitioned_model_fn(2, tf2_checkpoint=False)
      ),
      source,
    ).train(fixtures.one_example_input_fn, steps=1)
    for parts in (2, 3):
      est = tf.estimator.Estimator(
        migrate.tf2_checkpoints(
          fixtures.partitioned_model_fn(parts, tf2_checkpoint=False)
        ),
        self.model_dir(f"target{parts}"),
        warm_start_from=tf.estimator.WarmStartSettings(source, "emb"),
      )
      est.train(fixtures.one_example_input_fn, steps=1)
      expected = np.arange(8, dtype=np.float32)[:, None] + [2.0, 2.0]
      self.assertAllEqual(
        est.get_variable_value(keys.variable_key("emb")), expected
      )

  def test_decorator_forms_and_user_scaffold_fields(self):
    init_fn_calls = []

    @migrate.tf2_checkpoints(max_to_keep=1)
    def model_fn(features, labels, mode, params):
      del params
      spec = guide_models.model_fn_tf1_ckpt(features, labels, mode)
      return spec._replace(
        scaffold=tf1.train.Scaffold(
          init_fn=lambda scaffold, sess: init_fn_calls.append(scaffold)
        )
      )

    model_dir = self.model_dir()
    config = tf.estimator.RunConfig(
      keep_checkpoint_max=3, save_checkpoints_steps=1
    )
    est = tf.estimator.Estimator(
      model_fn, model_dir, config=config, params={"unused": 1}
    )
    est.train(fixtures.one_example_input_fn, steps=2)
    self.assertLen(init_fn_calls, 1)
    self.assertIsInstance(init_fn_calls[0].saver, scaffold.Tf2Saver)
    # The explicit option beats RunConfig.
    self.assertLen(
      tf.train.get_checkpoint_state(model_dir).all_model_checkpoint_paths, 1
    )

  def test_model_fn_without_labels_mode_or_params(self):

    def model_fn(features):
      del features
      step = tf1.train.get_or_create_global_step()
      return tf.estimator.EstimatorSpec(
        tf.estimator.ModeKeys.TRAIN,
        loss=tf.constant(1.0),
        train_op=step.assign_add(1),
      )

    model_dir = self.model_dir()
    tf.estimator.Estimator(migrate.tf2_checkpoints(model_fn), model_dir).train(
      lambda: tf.data.Dataset.from_tensors({"x": 1.0}).repeat(), steps=2
    )
    self.assertEqual(_stored(model_dir)[keys.STEP_KEY], 2)


class AlsoWriteTf1Test(_TestCase):
  def test_every_save_has_a_tf1_copy_with_same_retention(self):
    model_dir = self.model_dir()
    config = tf.estimator.RunConfig(
      keep_checkpoint_max=2, save_checkpoints_steps=1
    )
    model_fn = migrate.tf2_checkpoints(
      guide_models.model_fn_tf1_ckpt, also_write_tf1=True
    )
    tf.estimator.Estimator(model_fn, model_dir, config=config).train(
      fixtures.one_example_input_fn, steps=3
    )
    # A restart must keep applying retention to the TF1 copies.
    tf.estimator.Estimator(model_fn, model_dir, config=config).train(
      fixtures.one_example_input_fn, steps=2
    )
    tf1_dir = os.path.join(model_dir, scaffold.TF1_SUBDIR)
    state = tf.train.get_checkpoint_state(tf1_dir)
    self.assertEqual(
      [os.path.basename(p) for p in state.all_model_checkpoint_paths],
      ["model.ckpt-4", "model.ckpt-5"],
    )
    with open(os.path.join(tf1_dir, "checkpoint")) as f:
      self.assertIn('model_checkpoint_path: "model.ckpt-5"', f.read())
    self.assertLen(tf.io.gfile.glob(os.path.join(tf1_dir, "*.index")), 2)
    # The copy is name-based and a TF1 Saver restores it.
    with tf.Graph().as_default():
      step = tf1.train.get_or_create_global_step()
      var = tf1.get_variable("var", shape=[])
      with tf1.Session() as sess:
        tf1.train.Saver().restore(sess, tf.train.latest_checkpoint(tf1_dir))
        self.assertEqual(sess.run([step, var]), [5, 10.0])
    self.assertEqual(_stored(model_dir)[_VAR_KEY], 10.0)


class MonitoredTrainingSessionTest(_TestCase):
  def _run(self, checkpoint_dir, steps):
    with tf.Graph().as_default():
      step = tf1.train.get_or_create_global_step()
      weights = tf1.get_variable(
        "dense/kernel", shape=[2, 2], initializer=tf1.ones_initializer()
      )
      loss = tf.reduce_sum(weights * weights)
      train_op = tf1.train.AdagradOptimizer(0.1).minimize(
        loss, global_step=step
      )
      with tf1.train.MonitoredTrainingSession(
        checkpoint_dir=checkpoint_dir,
        scaffold=scaffold.scaffold(),
        save_checkpoint_steps=1,
        hooks=[tf1.train.StopAtStepHook(last_step=steps)],
      ) as sess:
        while not sess.should_stop():
          sess.run(train_op)

  def test_saves_tf2_and_resumes(self):
    checkpoint_dir = self.model_dir()
    self._run(checkpoint_dir, 2)
    stored = _stored(checkpoint_dir)
    self.assertEqual(stored[keys.STEP_KEY], 2)
    self.assertIn(keys.variable_key("dense/kernel/Adagrad"), stored)
    self._run(checkpoint_dir, 4)
    self.assertEqual(_stored(checkpoint_dir)[keys.STEP_KEY], 4)


class TrickyNamesTest(_TestCase):
  def test_names_survive_round_trip(self):
    names = ["a.b", "x/y.S", "w-1", "v>0", "a..b/c", "s.S.S"]
    checkpoint_dir = self.model_dir()
    for attempt in range(2):
      with tf.Graph().as_default():
        step = tf1.train.get_or_create_global_step()
        variables = [
          tf1.get_variable(n, shape=[], initializer=tf1.constant_initializer(i))
          for i, n in enumerate(names)
        ]
        update = tf.group(
          [v.assign_add(10.0) for v in variables] + [step.assign_add(1)]
        )
        with tf1.train.MonitoredTrainingSession(
          checkpoint_dir=checkpoint_dir,
          scaffold=scaffold.scaffold(),
          save_checkpoint_steps=1,
        ) as sess:
          values = sess.run(variables)
          if attempt == 0:
            sess.run(update)
    # The second session restored what the first saved.
    self.assertEqual(values, [10.0 + i for i in range(len(names))])
    stored = _stored(checkpoint_dir)
    for name in names:
      self.assertIn(keys.variable_key(name), stored)
      self.assertEqual(keys.variable_name(keys.variable_key(name)), name)


class ScaffoldArgumentsTest(_TestCase):
  def test_rejects_saver(self):
    with tf.Graph().as_default():
      with self.assertRaisesRegex(TypeError, "provides the saver"):
        scaffold.scaffold(saver=tf1.train.Saver(allow_empty=True))

  def test_var_list_dict_narrows_and_names(self):
    checkpoint_dir = self.model_dir()
    with tf.Graph().as_default():
      tf1.train.get_or_create_global_step()
      kept = tf1.get_variable("kept", shape=[])
      tf1.get_variable("dropped", shape=[])
      with tf1.train.MonitoredTrainingSession(
        checkpoint_dir=checkpoint_dir,
        scaffold=scaffold.scaffold(var_list={"renamed": kept}),
      ):
        pass
    self.assertEqual(
      set(_stored(checkpoint_dir)),
      {
        keys.variable_key("renamed"),
        "renamed",  # Its TF1-name alias (tf1_names=True).
        keys.STEP_KEY,
        keys.GLOBAL_STEP_NAME,
        keys.SAVE_COUNTER_KEY,
        keys.OBJECT_GRAPH_KEY,
      },
    )


if __name__ == "__main__":
  absltest.main()
