"""`kill -9` during a background save leaves the last named checkpoint whole.

A child process (`async_kill_child`) trains with `async_save=True` and pauses
the background save of step 4 at one point of its write or commit; the test
SIGKILLs it there (no sleeps: it waits for the child's `PAUSED` line), then
checks that the `checkpoint` state file names a whole checkpoint (step 2, or
step 4 once the state file was written) and that a new run resumes from it.
"""

import os
import signal
import subprocess
import sys

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from estimator_ckpt import keys

_DEADLINE_SECS = 300


def _child(model_dir, point, step):
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
  return subprocess.Popen(
    [
      sys.executable,
      "-m",
      "tests.async_kill_child",
      model_dir,
      point,
      str(step),
    ],
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.STDOUT,
    text=True,
  )


class KillTest(parameterized.TestCase):
  @parameterized.parameters(
    ("before_write", 2),
    ("after_write", 2),
    ("before_state", 2),
    ("after_state", 4),
  )
  def test_kill_leaves_named_checkpoint_whole_and_resumes(self, point, named):
    model_dir = os.path.join(self.create_tempdir().full_path, "model")
    child = _child(model_dir, point, 4)
    log = []
    try:
      for line in child.stdout:
        log.append(line)
        if line.startswith("PAUSED"):
          break
      else:
        self.fail("The child ended without pausing:\n" + "".join(log[-40:]))
      child.send_signal(signal.SIGKILL)
    finally:
      child.kill()
      child.wait(timeout=_DEADLINE_SECS)
    self.assertEqual(child.returncode, -signal.SIGKILL)

    latest = tf.train.latest_checkpoint(model_dir)
    self.assertEqual(os.path.basename(latest), f"model.ckpt-{named}")
    # Whole: every tensor of the checkpoint reads back.
    reader = tf.train.load_checkpoint(latest)
    for key in reader.get_variable_to_shape_map():
      self.assertIsNotNone(reader.get_tensor(key), key)
    self.assertEqual(reader.get_tensor(keys.STEP_KEY), named)
    self.assertEqual(reader.get_tensor("global_step"), named)  # The alias.
    np.testing.assert_array_equal(
      reader.get_tensor("var"),
      reader.get_tensor("var_list/var/.ATTRIBUTES/VARIABLE_VALUE"),
    )

    resumed = _child(model_dir, "none", 0)
    output, _ = resumed.communicate(timeout=_DEADLINE_SECS)
    self.assertEqual(resumed.returncode, 0, output[-4000:])
    self.assertIn(f"STEP {named + 1}", output)


if __name__ == "__main__":
  absltest.main()
