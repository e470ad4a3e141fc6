"""The checkpoint tools end to end where `import tensorflow` fails.

inspect, convert and verify read and write checkpoints with the TensorFlow-free
format core (`estimator_ckpt/_src/format/`). Each binary runs here in a fresh
interpreter whose import system refuses `tensorflow` and everything under it,
so a stray import anywhere on their path fails the test instead of costing
users seconds and hundreds of MB per run.
"""

import json
import os
import subprocess
import sys
from typing import List

from absl.testing import absltest
from absl.testing import parameterized

from tests import tool_fixtures

# Runs `module` as __main__ with sys.argv, after blocking TensorFlow.
_LAUNCHER = r"""
import importlib.abc
import runpy
import sys


class _BlockTensorFlow(importlib.abc.MetaPathFinder):

  def find_spec(self, name, path=None, target=None):
    if name.split(".")[0] in ("tensorflow", "tensorflow_estimator", "keras",
                              "tf_keras"):
      raise ImportError(f"{name} is blocked in this test")
    return None


sys.meta_path.insert(0, _BlockTensorFlow())
try:
  import tensorflow  # pylint: disable=unused-import
except ImportError:
  pass
else:
  sys.exit("the TensorFlow block does not work")
module, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def _root() -> str:
  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NoTensorFlowTest(parameterized.TestCase):
  def _run(self, module: str, args: List[str]) -> str:
    env = dict(os.environ, PYTHONPATH=_root())
    result = subprocess.run(
      [sys.executable, "-c", _LAUNCHER, module, *args],
      env=env,
      cwd=self.create_tempdir().full_path,
      capture_output=True,
      text=True,
      timeout=120,
      check=False,
    )
    self.assertEqual(
      result.returncode, 0, f"{module} {args} failed:\n{result.stderr}"
    )
    return result.stdout

  @parameterized.parameters(
    "tf1-ckpt", "tf2-ckpt", "est-tf1", "est-tf2", "est-tf1-ranking"
  )
  def test_inspect(self, golden):
    path = tool_fixtures.golden_path(golden)
    table = self._run("estimator_ckpt.inspect_main", [path, "--values"])
    self.assertIn("checkpoint  ", table)
    description = json.loads(
      self._run(
        "estimator_ckpt.inspect_main", [path, "--format=json", "--values"]
      )
    )
    self.assertTrue(description["variables"])

  @parameterized.parameters(
    ("est-tf1-ranking", "tf2", "tf1"),
    ("est-tf2", "tf1", "tf2"),
    ("tf2-ckpt", "tf1", "tf2"),
  )
  def test_convert_both_ways_and_verify(self, golden, there, back):
    source = tool_fixtures.golden_path(golden)
    work = self.create_tempdir().full_path
    first = os.path.join(work, there)
    second = os.path.join(work, back)
    self._run("estimator_ckpt.convert_main", [source, first, f"--to={there}"])
    self._run("estimator_ckpt.convert_main", [first, second, f"--to={back}"])
    for converted in (first, second):
      report = self._run(
        "estimator_ckpt.verify_main", [converted, f"--against={source}"]
      )
      self.assertRegex(report, r"^OK .* bit-identical")


if __name__ == "__main__":
  absltest.main()
