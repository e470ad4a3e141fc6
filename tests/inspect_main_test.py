"""The inspect binary, in-process and as a user runs it."""

import json
import subprocess

from absl import app
from absl.testing import absltest

from estimator_ckpt import inspect_main

from tests import tool_fixtures


class InspectMainTest(absltest.TestCase):
  def test_table(self):
    stdout, _ = tool_fixtures.run_main(
      inspect_main.main,
      ["inspect", tool_fixtures.golden_path("est-tf1-ranking")],
    )
    self.assertIn("format      tf1 (name-based)", stdout)
    self.assertIn("variables   29 (6 partitioned), 1 data shard", stdout)
    self.assertRegex(stdout, r"\nuser_embedding +\[200, 8\] +float32 +4\n")

  def test_json_with_values(self):
    stdout, _ = tool_fixtures.run_main(
      inspect_main.main,
      [
        "inspect",
        "--format=json",
        "--values",
        tool_fixtures.golden_path("tf2-ckpt"),
      ],
    )
    document = json.loads(stdout)
    self.assertEqual(document["format"], "tf2")
    self.assertEqual(
      {v["name"]: v.get("value") for v in document["variables"]},
      {"a": 5.0, "b": 6.0, "scoped/c": 7.0},  # No save_counter: not a variable.
    )

  def test_bad_usage(self):
    with self.assertRaisesRegex(app.UsageError, "Pass one checkpoint"):
      tool_fixtures.run_main(inspect_main.main, ["inspect"])
    with self.assertRaises(SystemExit) as raised:
      tool_fixtures.run_main(inspect_main.main, ["inspect", "/no/such/dir"])
    self.assertIn(
      "is neither a model_dir nor a checkpoint prefix",
      str(raised.exception.code),
    )

  def test_as_a_subprocess(self):
    command = tool_fixtures.binary_command("inspect")
    result = subprocess.run(
      command + ["--values", tool_fixtures.golden_path("est-tf2")],
      capture_output=True,
      text=True,
      check=False,
      timeout=120,
    )
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertRegex(
      result.stdout,
      r"var +\[\] +float32 +var_list/var/\.ATTRIBUTES/"
      r"VARIABLE_VALUE +4\.",
    )
    for args in ([], ["/no/such/dir"], ["--format=xml", "x"]):
      result = subprocess.run(
        command + args, capture_output=True, text=True, check=False, timeout=120
      )
      self.assertNotEqual(result.returncode, 0, args)
      self.assertNotIn("Traceback", result.stderr, args)


if __name__ == "__main__":
  absltest.main()
