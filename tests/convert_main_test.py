"""The convert binary, in-process and as a user runs it, killed included."""

import os
import shutil
import signal
import subprocess
import sys
import time

from absl import app
from absl.testing import absltest

import estimator_ckpt
from estimator_ckpt import convert_main
from estimator_ckpt._src.format import state_file

from benchmarks import synthetic
from tests import tool_fixtures

# Big enough that copying and fsyncing it takes a while, so the kill lands
# mid-way; the test checks that it did.
_KILL_TEST_TABLE_BYTES = 384 << 20

# Runs convert(SRC, DST, to="tf2", overwrite=True) and SIGKILLs itself right
# before its KILL_AT-th change to DST (a rename into it or a removal from it),
# so a real kill -9 lands at each step of the commit in turn. Prints "done"
# when the conversion finishes first.
_KILL_AT_STEP = """
import os, signal, sys
import estimator_ckpt
src, dst, kill_at = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3])
changes = 0
def killing_before(change, path_arg):
  def wrapped(*args, **kwargs):
    global changes
    if os.path.dirname(os.path.abspath(args[path_arg])) == dst:
      if changes == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
      changes += 1
    return change(*args, **kwargs)
  return wrapped
os.rename = killing_before(os.rename, 1)
os.remove = killing_before(os.remove, 0)
estimator_ckpt.convert(src, dst, to="tf2", overwrite=True)
print("done")
"""


class ConvertMainTest(absltest.TestCase):
  def test_converts_and_prints_prefix(self):
    dst = os.path.join(self.create_tempdir().full_path, "dst")
    stdout, _ = tool_fixtures.run_main(
      convert_main.main,
      [
        "convert",
        tool_fixtures.golden_path("est-tf1-ranking"),
        dst,
        "--to=tf2",
        "--rename=hidden/=tower/hidden/",
        "--link",
      ],
    )
    self.assertEqual(stdout, os.path.join(dst, "model.ckpt-20") + "\n")
    self.assertIn(
      "tower/hidden/kernel", dict(estimator_ckpt.list_variables(dst))
    )

  def test_dry_run_prints_plan(self):
    dst = os.path.join(self.create_tempdir().full_path, "dst")
    stdout, _ = tool_fixtures.run_main(
      convert_main.main,
      [
        "convert",
        tool_fixtures.golden_path("est-tf1"),
        dst,
        "--to=tf2",
        "--dry_run",
      ],
    )
    self.assertRegex(stdout, r"var +var_list/var/\.ATTRIBUTES/VARIABLE_VALUE")
    self.assertIn("would write", stdout)
    self.assertFalse(os.path.exists(dst))

  def test_bad_usage(self):
    with self.assertRaisesRegex(app.UsageError, "Pass SRC and DST_DIR"):
      tool_fixtures.run_main(convert_main.main, ["convert", "--to=tf2", "x"])
    with self.assertRaisesRegex(app.UsageError, "is not OLD=NEW"):
      tool_fixtures.run_main(
        convert_main.main,
        [
          "convert",
          "--to=tf2",
          "--rename=nonsense",
          tool_fixtures.golden_path("est-tf1"),
          "/tmp/never",
        ],
      )
    source = tool_fixtures.golden_path("est-tf1")
    with self.assertRaises(SystemExit) as raised:
      tool_fixtures.run_main(
        convert_main.main, ["convert", "--to=tf2", source, source]
      )
    self.assertIn("outside the source", raised.exception.code)

  def test_as_a_subprocess(self):
    command = tool_fixtures.binary_command("convert")
    dst = os.path.join(self.create_tempdir().full_path, "dst")
    result = subprocess.run(
      command + ["--to=tf2", tool_fixtures.golden_path("est-tf1"), dst],
      capture_output=True,
      text=True,
      check=False,
      timeout=120,
    )
    self.assertEqual(result.returncode, 0, result.stderr)
    self.assertEqual(result.stdout.strip(), os.path.join(dst, "model.ckpt-1"))
    estimator_ckpt.verify(dst, against=tool_fixtures.golden_path("est-tf1"))
    for args in (
      [tool_fixtures.golden_path("est-tf1"), dst],  # No --to.
      ["--to=tf2", tool_fixtures.golden_path("est-tf1"), dst],
    ):
      result = subprocess.run(
        command + args, capture_output=True, text=True, check=False, timeout=120
      )
      self.assertNotEqual(result.returncode, 0, args)
      self.assertNotIn("Traceback", result.stderr, args)

  def test_kill_9_mid_conversion_leaves_nothing(self):
    work = self.create_tempdir().full_path
    source = os.path.join(work, "source")
    synthetic.write_estimator_checkpoint(
      source, table_bytes=_KILL_TEST_TABLE_BYTES, num_small=100
    )
    before = tool_fixtures.tree_digest(source)
    parent = os.path.join(work, "out")
    os.mkdir(parent)
    dst = os.path.join(parent, "converted")
    process = subprocess.Popen(
      tool_fixtures.binary_command("convert") + ["--to=tf2", source, dst],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
    )
    # Kill as soon as the staged copy of the data file has started.
    staged = None
    deadline = time.monotonic() + 120
    while staged is None and process.poll() is None:
      for name in os.listdir(parent):
        for data in (
          os.listdir(os.path.join(parent, name))
          if os.path.isdir(os.path.join(parent, name))
          else []
        ):
          if ".data-" in data and os.path.getsize(
            os.path.join(parent, name, data)
          ):
            staged = os.path.join(parent, name)
      self.assertLess(time.monotonic(), deadline)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    self.assertEqual(
      process.returncode,
      -signal.SIGKILL,
      "the conversion finished before the kill; make "
      "_KILL_TEST_TABLE_BYTES larger",
    )
    self.assertIsNotNone(staged)
    # Nothing at the destination, only the hidden staging dir and the dead
    # writer's lock; source intact.
    self.assertFalse(os.path.exists(dst))
    self.assertCountEqual(
      os.listdir(parent), [os.path.basename(staged), ".converted.convert-lock"]
    )
    self.assertTrue(os.path.basename(staged).startswith(".converted."))
    self.assertEqual(tool_fixtures.tree_digest(source), before)
    # The next conversion removes the leftovers and succeeds.
    estimator_ckpt.convert(source, dst, to="tf2", link=True)
    self.assertEqual(os.listdir(parent), ["converted"])
    estimator_ckpt.verify(dst, against=source)

  def test_kill_9_at_each_step_of_an_overwrite_never_mixes_checkpoints(self):
    work = self.create_tempdir().full_path
    old_source = os.path.join(work, "old")
    new_source = os.path.join(work, "new")
    for source, seed in ((old_source, 0), (new_source, 1)):
      synthetic.write_estimator_checkpoint(
        source, table_bytes=64 << 10, num_small=10, seed=seed
      )
    # The destination: an earlier conversion of model.ckpt-1000 (which the
    # overwrite replaces) plus an older model.ckpt-500 it keeps.
    initial = os.path.join(work, "initial")
    estimator_ckpt.convert(old_source, initial, to="tf2")
    older = estimator_ckpt.convert(
      synthetic.write_estimator_checkpoint(
        os.path.join(work, "older"),
        table_bytes=64 << 10,
        num_small=10,
        step=500,
      ),
      os.path.join(work, "older_tf2"),
      to="tf2",
    )
    for name in os.listdir(os.path.dirname(older)):
      if name.startswith("model.ckpt-500."):
        shutil.copy(os.path.join(os.path.dirname(older), name), initial)
    with open(os.path.join(initial, "checkpoint"), "wb") as f:
      f.write(state_file.encode(["model.ckpt-500", "model.ckpt-1000"]))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}

    kills = 0
    while True:
      dst = os.path.join(work, f"dst{kills}")
      shutil.copytree(initial, dst)
      process = subprocess.run(
        [sys.executable, "-c", _KILL_AT_STEP, new_source, dst, str(kills)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
      )
      if process.returncode == 0:
        self.assertEqual(process.stdout, "done\n")
        break
      self.assertEqual(process.returncode, -signal.SIGKILL, process.stderr)
      kills += 1
      # Whatever TensorFlow can see is whole: each checkpoint the state file
      # names, and each index present, verifies and is entirely old or new.
      listed = (
        state_file.all_checkpoints(dst)
        if os.path.exists(os.path.join(dst, "checkpoint"))
        else []
      )
      indexed = [
        os.path.join(dst, n[: -len(".index")])
        for n in os.listdir(dst)
        if n.endswith(".index")
      ]
      self.assertContainsSubset(listed, indexed)
      for prefix in indexed:
        estimator_ckpt.verify(prefix)
        if prefix.endswith("-1000"):
          self._assert_same_as_either(prefix, old_source, new_source)
      # Converting again finishes the job and leaves nothing hidden behind.
      estimator_ckpt.convert(new_source, dst, to="tf2", overwrite=True)
      estimator_ckpt.verify(dst, against=new_source)
      self.assertFalse([n for n in os.listdir(dst) if n.startswith(".")])
    estimator_ckpt.verify(dst, against=new_source)
    # Removals of the old files, data renames, index, state file: at least.
    self.assertGreaterEqual(kills, 5)

  def _assert_same_as_either(self, prefix, *sources):
    for source in sources:
      try:
        estimator_ckpt.verify(prefix, against=source)
        return
      except estimator_ckpt.errors.Error:
        pass
    self.fail(f"{prefix} matches none of {sources}")


if __name__ == "__main__":
  absltest.main()
