"""The guide's Estimator scenario, and what stock TF 2.15 gets wrong with it.

The TensorFlow guide "Migrating model checkpoints" (section "TF2 checkpoints
in Estimator") hands `tf.train.Checkpoint` to the Scaffold. The scenario itself
works. The `StockGapsTest` cases record, as passing tests, what fails or is
lost when a real Estimator user does that on TF 2.15: every one was observed
here. Stock `Scaffold.finalize` turns the Checkpoint into a plain
`Saver(var_list=frozen_saveable_objects, sharded=True)` (monitored_session.py),
so Estimator's own saver settings and global-step lookups never apply.
estimator_ckpt's scaffold closes each gap; tests/scaffold_test.py runs the
same scenarios through it.
"""

import os

from absl.testing import absltest
import tensorflow as tf

from examples.guide import models as guide_models
from tests import fixtures


class GuideScenarioTest(tf.test.TestCase):
  def test_warm_start_tf2_model_from_tf1_dir(self):
    """The guide verbatim: est-tf1 trained 1 step, est-tf2 warm-started."""
    root = self.create_tempdir().full_path
    est_tf1 = os.path.join(root, "est-tf1")
    est = tf.estimator.Estimator(guide_models.model_fn_tf1_ckpt, est_tf1)
    est.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(est.get_variable_value("var"), 2)

    est = tf.estimator.Estimator(
      guide_models.model_fn_tf2_ckpt,
      os.path.join(root, "est-tf2"),
      warm_start_from=est_tf1,
    )
    est.train(guide_models.train_input_fn, steps=1)
    self.assertEqual(
      est.get_variable_value("var_list/var/.ATTRIBUTES/VARIABLE_VALUE"), 4
    )
    # "The train step value doesn't carry over from the warm_start checkpoint."
    self.assertEqual(
      est.get_variable_value("step/.ATTRIBUTES/VARIABLE_VALUE"), 1
    )

  def test_guide_text_differs_from_real_behaviour(self):
    """The guide says v "should be 16 ... trained for an additional 5 steps".

    Its code trains one step (`steps=1`); real behaviour wins: 2 + 2 == 4,
    which is what the guide's own assert checks.
    """
    root = self.create_tempdir().full_path
    fixtures.copy_golden("est-tf1", os.path.join(root, "est-tf1"))
    est = tf.estimator.Estimator(
      guide_models.model_fn_tf2_ckpt,
      os.path.join(root, "est-tf2"),
      warm_start_from=os.path.join(root, "est-tf1"),
    )
    est.train(guide_models.train_input_fn, steps=1)
    self.assertNotEqual(
      est.get_variable_value("var_list/var/.ATTRIBUTES/VARIABLE_VALUE"), 16
    )


class StockGapsTest(tf.test.TestCase):
  """Stock TF 2.15 with `Scaffold(saver=tf.train.Checkpoint(...))`."""

  def _model_dir(self):
    return os.path.join(self.create_tempdir().full_path, "model")

  def test_resuming_tf1_dir_in_place_fails_with_not_found(self):
    model_dir = fixtures.copy_golden("est-tf1", self._model_dir())
    est = tf.estimator.Estimator(guide_models.model_fn_tf2_ckpt, model_dir)
    with self.assertRaises(tf.errors.NotFoundError):
      est.train(guide_models.train_input_fn, steps=1)

  def test_keep_checkpoint_max_is_ignored(self):
    model_dir = self._model_dir()
    config = tf.estimator.RunConfig(
      keep_checkpoint_max=1, save_checkpoints_steps=1
    )
    est = tf.estimator.Estimator(
      guide_models.model_fn_tf2_ckpt, model_dir, config=config
    )
    est.train(fixtures.one_example_input_fn, steps=3)
    state = tf.train.get_checkpoint_state(model_dir)
    # Saves at steps 0..3, the Checkpoint's Saver keeps its default of 5.
    self.assertLen(state.all_model_checkpoint_paths, 4)
    # A TF1 Saver honours the setting.
    tf1_dir = self._model_dir()
    tf.estimator.Estimator(
      guide_models.model_fn_tf1_ckpt, tf1_dir, config=config
    ).train(fixtures.one_example_input_fn, steps=3)
    self.assertLen(
      tf.train.get_checkpoint_state(tf1_dir).all_model_checkpoint_paths, 1
    )

  def test_state_file_holds_absolute_paths(self):
    model_dir = self._model_dir()
    est = tf.estimator.Estimator(guide_models.model_fn_tf2_ckpt, model_dir)
    est.train(guide_models.train_input_fn, steps=1)
    with open(os.path.join(model_dir, "checkpoint")) as f:
      state = f.read()
    self.assertIn(f'model_checkpoint_path: "{model_dir}/model.ckpt-1"', state)

  def test_max_steps_cannot_see_global_step_and_rebuilds(self):
    model_fn = fixtures.CallCounter(guide_models.model_fn_tf2_ckpt)
    est = tf.estimator.Estimator(model_fn, self._model_dir())
    est.train(fixtures.one_example_input_fn, max_steps=2)
    calls = model_fn.calls
    est.train(fixtures.one_example_input_fn, max_steps=2)
    # Estimator reads `global_step` by name, finds only `step/...`, assumes
    # step 0 and builds the whole model again (TF1 skips: see below).
    self.assertGreater(model_fn.calls, calls)
    with self.assertRaises(tf.errors.NotFoundError):
      est.get_variable_value("global_step")

    tf1_model_fn = fixtures.CallCounter(guide_models.model_fn_tf1_ckpt)
    est = tf.estimator.Estimator(tf1_model_fn, self._model_dir())
    est.train(fixtures.one_example_input_fn, max_steps=2)
    calls = tf1_model_fn.calls
    est.train(fixtures.one_example_input_fn, max_steps=2)
    self.assertEqual(tf1_model_fn.calls, calls)

  def test_warm_start_from_tf2_partitioned_fails(self):
    source = self._model_dir()
    tf.estimator.Estimator(
      fixtures.partitioned_model_fn(2, tf2_checkpoint=True), source
    ).train(fixtures.one_example_input_fn, steps=1)
    est = tf.estimator.Estimator(
      fixtures.partitioned_model_fn(2, tf2_checkpoint=True),
      self._model_dir(),
      warm_start_from=source,
    )
    # The TF2 keys hold each partition (`emb/part_0`) as its own full
    # variable; warm start asks for slices of `emb`.
    with self.assertRaises(
      (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, ValueError)
    ):
      est.train(fixtures.one_example_input_fn, steps=1)


if __name__ == "__main__":
  absltest.main()
