"""The main job (guide scenario binary) as a user runs it: a subprocess."""

import os
import subprocess

from absl.testing import absltest

_BINARY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "scenario")


class GuideScenarioMainTest(absltest.TestCase):
  def _run(self, *args):
    return subprocess.run(
      [_BINARY, *args], capture_output=True, text=True, check=False, timeout=300
    )

  def test_prints_both_checkpoints(self):
    output_dir = os.path.join(self.create_tempdir().full_path, "est-tf2")
    result = self._run(f"--output_dir={output_dir}")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn("est-tf1 (TF1 name-based)", result.stdout)
    self.assertRegex(result.stdout, r"\nvar +\[\] +float32 +2\.")
    self.assertRegex(
      result.stdout,
      r"var_list/var/\.ATTRIBUTES/VARIABLE_VALUE +\[\] +float32 +4\.",
    )
    self.assertIn("(the guide expects 4.0): OK", result.stdout)

  def test_refuses_output_dir_with_a_checkpoint(self):
    output_dir = os.path.join(self.create_tempdir().full_path, "est-tf2")
    self.assertEqual(self._run(f"--output_dir={output_dir}").returncode, 0)
    result = self._run(f"--output_dir={output_dir}")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("already holds a checkpoint", result.stderr)
    self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
  absltest.main()
