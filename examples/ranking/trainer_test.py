"""The training app's library: the default migration run and the modes."""

import os

from absl.testing import absltest
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import checkpoint_flags

from examples.ranking import trainer


class MigrateShippedModelTest(tf.test.TestCase):
  def test_default_run_gives_identical_metrics(self):
    output_dir = self.create_tempdir().full_path
    report = trainer.migrate_shipped_model(output_dir=output_dir, train_steps=5)
    self.assertTrue(report.metrics_identical, report.format())
    self.assertEqual(report.tf1_metrics, report.tf2_metrics)
    self.assertEqual(report.tf1_metrics["global_step"], 20)
    self.assertEqual(report.trained_metrics["global_step"], 25)
    self.assertEqual(
      (report.format_before, report.format_after), ("tf1", "tf2")
    )
    self.assertEqual(report.variables, 29)  # Slots and global_step included.
    self.assertGreater(report.variable_bytes, 50_000)
    self.assertEqual(os.path.dirname(report.tf2_model_dir), output_dir)
    latest = tf.train.load_checkpoint(report.tf2_model_dir)
    self.assertEqual(latest.get_tensor(keys.STEP_KEY), 25)
    text = report.format()
    self.assertIn("IDENTICAL", text)
    self.assertIn("tf1 -> tf2", text)
    self.assertIn(report.tf2_model_dir, text)

  def test_refuses_non_empty_output_dir(self):
    output_dir = self.create_tempdir()
    output_dir.create_file("something")
    with self.assertRaisesRegex(errors.Error, "not empty"):
      trainer.migrate_shipped_model(output_dir=output_dir.full_path)


class RunTest(tf.test.TestCase):
  def _settings(self, model_dir, checkpoint_format="tf2"):
    return checkpoint_flags.CheckpointSettings(
      run_config=tf.estimator.RunConfig(
        model_dir=model_dir, save_checkpoints_steps=5
      ),
      warm_start_from=None,
      checkpoint_format=checkpoint_format,
      scaffold_options=None if checkpoint_format == "tf1" else {},
    )

  def test_modes(self):
    model_dir = os.path.join(self.create_tempdir().full_path, "model")
    settings = self._settings(model_dir)
    result = trainer.run(
      trainer.TrainerOptions(mode="train", train_steps=6), settings
    )
    self.assertEqual(result["global_step"], 6)
    metrics = trainer.run(trainer.TrainerOptions(mode="evaluate"), settings)
    self.assertEqual(metrics["global_step"], 6)
    self.assertIn("auc", metrics)
    export_dir = self.create_tempdir().full_path
    result = trainer.run(
      trainer.TrainerOptions(mode="export", export_dir=export_dir), settings
    )
    self.assertTrue(tf.saved_model.contains_saved_model(result["export_path"]))
    metrics = trainer.run(
      trainer.TrainerOptions(mode="train_and_evaluate", train_steps=10),
      settings,
    )
    self.assertEqual(metrics["global_step"], 10)
    self.assertIn(
      keys.OBJECT_GRAPH_KEY,
      tf.train.load_checkpoint(model_dir).get_variable_to_shape_map(),
    )

  def test_malformed_data_names_file_and_line(self):
    data = self.create_tempfile(
      "bad.csv", content="user_id,item_id,label\n1,2,1\n3,x,0\n"
    )
    settings = self._settings(
      os.path.join(self.create_tempdir().full_path, "model")
    )
    with self.assertRaisesRegex(
      errors.Error,
      rf"{data.full_path}:3: `item_id` is `x`, not an "
      "integer",
    ):
      trainer.run(
        trainer.TrainerOptions(mode="train", train_data=data.full_path),
        settings,
      )

  def test_bad_options(self):
    with self.assertRaisesRegex(ValueError, "export_dir"):
      trainer.TrainerOptions(mode="export")
    with self.assertRaisesRegex(ValueError, "mode must be one of"):
      trainer.TrainerOptions(mode="serve")


if __name__ == "__main__":
  absltest.main()
