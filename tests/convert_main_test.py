"""The convert binary, in-process and as a user runs it, killed included."""

import os
import signal
import subprocess
import time

from absl import app
from absl.testing import absltest

import estimator_ckpt
from benchmarks import synthetic
from estimator_ckpt import convert_main
from tests import tool_fixtures

# Big enough that copying and fsyncing it takes a while, so the kill lands
# mid-way; the test checks that it did.
_KILL_TEST_TABLE_BYTES = 384 << 20


class ConvertMainTest(absltest.TestCase):

  def test_converts_and_prints_prefix(self):
    dst = os.path.join(self.create_tempdir().full_path, "dst")
    stdout, _ = tool_fixtures.run_main(convert_main.main, [
        "convert", tool_fixtures.golden_path("est-tf1-ranking"), dst,
        "--to=tf2", "--rename=hidden/=tower/hidden/", "--link"
    ])
    self.assertEqual(stdout, os.path.join(dst, "model.ckpt-20") + "\n")
    self.assertIn("tower/hidden/kernel",
                  dict(estimator_ckpt.list_variables(dst)))

  def test_dry_run_prints_plan(self):
    dst = os.path.join(self.create_tempdir().full_path, "dst")
    stdout, _ = tool_fixtures.run_main(convert_main.main, [
        "convert", tool_fixtures.golden_path("est-tf1"), dst, "--to=tf2",
        "--dry_run"
    ])
    self.assertRegex(stdout, r"var +var_list/var/\.ATTRIBUTES/VARIABLE_VALUE")
    self.assertIn("would write", stdout)
    self.assertFalse(os.path.exists(dst))

  def test_bad_usage(self):
    with self.assertRaisesRegex(app.UsageError, "Pass SRC and DST_DIR"):
      tool_fixtures.run_main(convert_main.main, ["convert", "--to=tf2", "x"])
    with self.assertRaisesRegex(app.UsageError, "is not OLD=NEW"):
      tool_fixtures.run_main(convert_main.main, [
          "convert", "--to=tf2", "--rename=nonsense",
          tool_fixtures.golden_path("est-tf1"), "/tmp/never"
      ])
    source = tool_fixtures.golden_path("est-tf1")
    with self.assertRaises(SystemExit) as raised:
      tool_fixtures.run_main(convert_main.main,
                             ["convert", "--to=tf2", source, source])
    self.assertIn("outside the source", raised.exception.code)

  def test_as_a_subprocess(self):
    command = tool_fixtures.binary_command("convert")
    dst = os.path.join(self.create_tempdir().full_path, "dst")
    result = subprocess.run(
        command + ["--to=tf2", tool_fixtures.golden_path("est-tf1"), dst],
        capture_output=True, text=True, check=False, timeout=120)
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout.strip(), os.path.join(dst, "model.ckpt-1"))
    estimator_ckpt.verify(dst, against=tool_fixtures.golden_path("est-tf1"))
    for args in ([tool_fixtures.golden_path("est-tf1"), dst],  # No --to.
                 ["--to=tf2", tool_fixtures.golden_path("est-tf1"), dst]):
      result = subprocess.run(command + args, capture_output=True, text=True,
                              check=False, timeout=120)
      self.assertNotEqual(result.returncode, 0, args)
      self.assertNotIn("Traceback", result.stderr, args)

  def test_kill_9_mid_conversion_leaves_nothing(self):
    work = self.create_tempdir().full_path
    source = os.path.join(work, "source")
    synthetic.write_estimator_checkpoint(
        source, table_bytes=_KILL_TEST_TABLE_BYTES, num_small=100)
    before = tool_fixtures.tree_digest(source)
    parent = os.path.join(work, "out")
    os.mkdir(parent)
    dst = os.path.join(parent, "converted")
    process = subprocess.Popen(
        tool_fixtures.binary_command("convert") + ["--to=tf2", source, dst],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Kill as soon as the staged copy of the data file has started.
    staged = None
    deadline = time.monotonic() + 120
    while staged is None and process.poll() is None:
      for name in os.listdir(parent):
        for data in (os.listdir(os.path.join(parent, name))
                     if os.path.isdir(os.path.join(parent, name)) else []):
          if ".data-" in data and os.path.getsize(
              os.path.join(parent, name, data)):
            staged = os.path.join(parent, name)
      self.assertLess(time.monotonic(), deadline)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    self.assertEqual(process.returncode, -signal.SIGKILL,
                     "the conversion finished before the kill; make "
                     "_KILL_TEST_TABLE_BYTES larger")
    self.assertIsNotNone(staged)
    # Nothing at the destination, only the hidden staging dir; source intact.
    self.assertFalse(os.path.exists(dst))
    self.assertEqual(os.listdir(parent), [os.path.basename(staged)])
    self.assertTrue(os.path.basename(staged).startswith(".converted."))
    self.assertEqual(tool_fixtures.tree_digest(source), before)
    # The next conversion removes the leftovers and succeeds.
    estimator_ckpt.convert(source, dst, to="tf2", link=True)
    self.assertEqual(os.listdir(parent), ["converted"])
    estimator_ckpt.verify(dst, against=source)


if __name__ == "__main__":
  absltest.main()
