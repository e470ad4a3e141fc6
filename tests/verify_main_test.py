"""The verify binary, in-process and as a user runs it."""

import os
import subprocess

from absl import app
from absl.testing import absltest

from estimator_ckpt import verify_main

from tests import tool_fixtures


class VerifyMainTest(absltest.TestCase):
  def test_ok(self):
    stdout, _ = tool_fixtures.run_main(
      verify_main.main, ["verify", tool_fixtures.golden_path("est-tf2")]
    )
    self.assertRegex(stdout, r"^OK .*model\.ckpt-1 \(tf2\): 2 variables")

  def test_differences_exit_non_zero(self):
    with self.assertRaises(SystemExit) as raised:
      tool_fixtures.run_main(
        verify_main.main,
        [
          "verify",
          tool_fixtures.golden_path("est-tf1"),
          "--against=" + tool_fixtures.golden_path("est-tf2"),
        ],
      )
    self.assertIn("`var`: values differ", raised.exception.code)

  def test_corrupt_exit_non_zero(self):
    model_dir = tool_fixtures.copy_golden(
      "est-tf1", self.create_tempdir().full_path
    )
    tool_fixtures.flip_byte(
      os.path.join(model_dir, "model.ckpt-1.data-00000-of-00001"), 9
    )
    with self.assertRaises(SystemExit) as raised:
      tool_fixtures.run_main(verify_main.main, ["verify", model_dir])
    self.assertRegex(
      raised.exception.code,
      "(?s)^verify: FAILED: .*`var` in .*checksum mismatch",
    )

  def test_bad_usage(self):
    with self.assertRaisesRegex(app.UsageError, "Pass one checkpoint"):
      tool_fixtures.run_main(verify_main.main, ["verify", "a", "b"])

  def test_as_a_subprocess(self):
    command = tool_fixtures.binary_command("verify")
    result = subprocess.run(
      command + [tool_fixtures.golden_path("est-tf1-ranking")],
      capture_output=True,
      text=True,
      check=False,
      timeout=120,
    )
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertIn("29 variables, 47 tensors", result.stdout)
    result = subprocess.run(
      command + ["/no/such/dir"],
      capture_output=True,
      text=True,
      check=False,
      timeout=120,
    )
    self.assertEqual(result.returncode, 1)
    self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
  absltest.main()
