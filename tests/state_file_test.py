"""The `checkpoint` state file: read like TensorFlow, written relative."""

import os

from absl.testing import absltest
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src.format import state_file

from tests import tool_fixtures


class CheckpointStateTest(tf.test.TestCase):
  def test_latest_checkpoint_of_golden(self):
    model_dir = tool_fixtures.golden_path("est-tf2")
    self.assertEqual(
      state_file.latest_checkpoint(model_dir),
      os.path.join(model_dir, "model.ckpt-1"),
    )
    self.assertEqual(
      state_file.all_checkpoints(model_dir),
      [
        os.path.join(model_dir, "model.ckpt-0"),
        os.path.join(model_dir, "model.ckpt-1"),
      ],
    )

  def test_written_state_is_relative_and_read_by_tensorflow(self):
    model_dir = os.path.dirname(
      tool_fixtures.copy_golden("est-tf2", self.get_temp_dir()) + "/"
    )
    with open(os.path.join(model_dir, "checkpoint"), "wb") as f:
      f.write(
        state_file.encode(
          [
            os.path.join(model_dir, "model.ckpt-0"),
            os.path.join(model_dir, "model.ckpt-1"),
          ]
        )
      )
    with open(os.path.join(model_dir, "checkpoint")) as f:
      self.assertEqual(
        f.read(),
        'model_checkpoint_path: "model.ckpt-1"\n'
        'all_model_checkpoint_paths: "model.ckpt-0"\n'
        'all_model_checkpoint_paths: "model.ckpt-1"\n',
      )
    self.assertEqual(
      tf.train.latest_checkpoint(model_dir),
      os.path.join(model_dir, "model.ckpt-1"),
    )

  def test_garbage_state_file_is_an_error(self):
    # TensorFlow only warns and returns None, then overwrites ckpt-1.
    model_dir = os.path.dirname(
      tool_fixtures.copy_golden("est-tf1", self.get_temp_dir()) + "/"
    )
    with open(os.path.join(model_dir, "checkpoint"), "w") as f:
      f.write("this is { not a CheckpointState")
    with self.assertRaisesRegex(
      errors.CorruptCheckpointError, "does not parse.*Fix or delete it"
    ):
      state_file.resolve(model_dir)

  def test_missing_state_file(self):
    with self.assertRaisesRegex(
      errors.CheckpointNotFoundError, "without a `checkpoint` state file"
    ):
      state_file.resolve(self.get_temp_dir())

  def test_state_naming_missing_checkpoint(self):
    model_dir = os.path.dirname(
      tool_fixtures.copy_golden("est-tf1", self.get_temp_dir()) + "/"
    )
    os.remove(os.path.join(model_dir, "model.ckpt-1.index"))
    with self.assertRaisesRegex(
      errors.CheckpointNotFoundError, "model.ckpt-1.index` does not exist"
    ):
      state_file.resolve(model_dir)

  def test_moved_model_dir_with_absolute_paths(self):
    model_dir = os.path.dirname(
      tool_fixtures.copy_golden("est-tf1", self.get_temp_dir()) + "/"
    )
    with open(os.path.join(model_dir, "checkpoint"), "w") as f:
      f.write('model_checkpoint_path: "/elsewhere/model.ckpt-1"\n')
    self.assertEqual(
      state_file.resolve(model_dir), os.path.join(model_dir, "model.ckpt-1")
    )

  def test_one_file_of_a_checkpoint_names_its_prefix(self):
    prefix = tool_fixtures.golden_path("tf1-ckpt")
    for path in (prefix + ".index", prefix + ".data-00000-of-00001"):
      with self.assertRaisesRegex(
        errors.CheckpointNotFoundError, f"pass its prefix `{prefix}`"
      ):
        state_file.resolve(path)


if __name__ == "__main__":
  absltest.main()
