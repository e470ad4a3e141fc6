"""The train binary as users run it: subprocesses, kill -9, bad usage."""

import os
import signal
import subprocess

from absl.testing import absltest
from absl.testing import parameterized
import tensorflow as tf

_BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train")
_TIMEOUT_SECS = 300


def _run(*args):
  return subprocess.run(
    [_BINARY, *args],
    capture_output=True,
    text=True,
    timeout=_TIMEOUT_SECS,
    check=False,
  )


class TrainMainTest(parameterized.TestCase):
  def test_default_run_reports_identical_metrics(self):
    output_dir = os.path.join(self.create_tempdir().full_path, "out")
    result = _run(f"--output_dir={output_dir}", "--train_steps=3")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn("metrics before/after migration: IDENTICAL", result.stdout)
    self.assertIn(os.path.join(output_dir, "est-tf2"), result.stdout)
    self.assertIn("tf1 -> tf2", result.stdout)

  def test_killed_training_resumes_from_last_checkpoint(self):
    model_dir = os.path.join(self.create_tempdir().full_path, "model")
    save_steps = 10
    process = subprocess.Popen(
      [
        _BINARY,
        f"--model_dir={model_dir}",
        "--mode=train",
        "--train_steps=1000000",
        f"--save_checkpoints_steps={save_steps}",
      ],
      stdout=subprocess.PIPE,
      stderr=subprocess.DEVNULL,
      text=True,
    )
    assert process.stdout is not None
    try:
      last_saved = None
      for line in process.stdout:  # Blocks on the binary's progress lines.
        if line.startswith("checkpoint saved: step "):
          last_saved = int(line.split()[-1])
          if last_saved >= 3 * save_steps:
            break
      self.assertIsNotNone(last_saved, "the trainer saved no checkpoint")
      process.send_signal(signal.SIGKILL)
    finally:
      process.kill()
      process.wait(timeout=_TIMEOUT_SECS)
    self.assertEqual(process.returncode, -signal.SIGKILL)
    resumed_at = tf.train.load_checkpoint(model_dir).get_tensor(
      "step/.ATTRIBUTES/VARIABLE_VALUE"
    )
    # Nothing beyond the save interval is lost.
    self.assertGreaterEqual(resumed_at, last_saved)
    result = _run(
      f"--model_dir={model_dir}",
      "--mode=train",
      f"--train_steps={resumed_at + 5}",
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertIn(f"model.ckpt-{resumed_at}", result.stderr)  # Restored.
    self.assertIn(f"global_step: {resumed_at + 5}", result.stdout)

  @parameterized.named_parameters(
    ("unknown_mode", ["--model_dir=/tmp/x", "--mode=serve"], "--mode"),
    (
      "export_without_dir",
      ["--model_dir=MODEL", "--mode=export"],
      "--mode=export needs --export_dir",
    ),
    ("mode_without_model_dir", ["--mode=train"], "needs --model_dir"),
    (
      "slots_without_source",
      ["--model_dir=MODEL", "--warm_start_optimizer_slots"],
      "needs --warm_start_from",
    ),
    (
      "bad_keep",
      ["--model_dir=MODEL", "--keep_checkpoint_max=0"],
      "--keep_checkpoint_max must be at least 1",
    ),
    (
      "missing_source",
      ["--model_dir=MODEL", "--warm_start_from=/nowhere"],
      "/nowhere",
    ),
  )
  def test_bad_usage_is_one_line_and_non_zero(self, args, fragment):
    model_dir = os.path.join(self.create_tempdir().full_path, "model")
    args = [a.replace("MODEL", model_dir) for a in args]
    result = _run(*args)
    self.assertNotEqual(result.returncode, 0)
    self.assertIn(fragment, result.stderr)
    self.assertNotIn("Traceback", result.stderr)

  def test_malformed_data_row_is_one_line(self):
    data = self.create_tempfile(
      "bad.csv", content="user_id,item_id,label\n1,2,1\n1,2\n"
    )
    model_dir = os.path.join(self.create_tempdir().full_path, "model")
    result = _run(
      f"--model_dir={model_dir}",
      "--mode=train",
      f"--train_data={data.full_path}",
    )
    self.assertNotEqual(result.returncode, 0)
    self.assertIn(f"{data.full_path}:3: 2 fields", result.stderr)
    self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
  absltest.main()
