"""Parameter-server training with the TF2 scaffold, in real processes.

A TF_CONFIG cluster of chief, worker, ps and evaluator on 127.0.0.1 runs the
training binary (`//examples/ranking:train --mode=train_and_evaluate`, the
ranking model: partitioned embeddings on the ps, Adam, TF2 checkpoints). The
chief is killed with SIGKILL after its first checkpoint past step 0 and
restarted; the cluster must finish, resuming from TF2 checkpoints. The test
follows the processes' output lines (no sleeps) under a deadline, and stops
every process itself.
"""

import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time

from absl.testing import absltest
import tensorflow as tf

from estimator_ckpt import keys

_TRAINER = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  "examples",
  "ranking",
  "train",
)
_DEADLINE_SECS = 600
_MAX_STEPS = 400


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class _Task:
  """A trainer subprocess whose output lines arrive on a queue."""

  def __init__(self, task_type, cluster, model_dir, lines):
    env = dict(os.environ)
    env["TF_CONFIG"] = json.dumps(
      {
        "cluster": cluster,
        "task": {"type": task_type, "index": 0},
      }
    )
    self.task_type = task_type
    self.process = subprocess.Popen(
      [
        _TRAINER,
        f"--model_dir={model_dir}",
        "--mode=train_and_evaluate",
        f"--train_steps={_MAX_STEPS}",
        "--save_checkpoints_steps=40",
        "--eval_throttle_secs=1",
      ],
      env=env,
      stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT,
      text=True,
    )
    self.log = []
    threading.Thread(target=self._pump, args=(lines,), daemon=True).start()

  def _pump(self, lines):
    for line in self.process.stdout:
      self.log.append(line)
      lines.put((self, line.strip()))
    lines.put((self, None))  # EOF.

  def kill(self):
    if self.process.poll() is None:
      self.process.send_signal(signal.SIGKILL)
    self.process.wait()


class DistributedTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.deadline = time.monotonic() + _DEADLINE_SECS
    self.lines = queue.Queue()
    self.tasks = []

  def tearDown(self):
    for task in self.tasks:
      task.kill()
    super().tearDown()

  def _start(self, task_type, cluster, model_dir):
    task = _Task(task_type, cluster, model_dir, self.lines)
    self.tasks.append(task)
    return task

  def _wait_for(self, predicate, what):
    """Consumes output lines until predicate(task, line) holds."""
    while True:
      remaining = self.deadline - time.monotonic()
      if remaining <= 0:
        self.fail(f"Timed out waiting for {what}. Logs:\n" + self._logs())
      try:
        task, line = self.lines.get(timeout=remaining)
      except queue.Empty:
        continue
      if predicate(task, line):
        return task, line

  def _logs(self):
    return "\n".join(
      f"--- {t.task_type} ---\n" + "".join(t.log[-40:]) for t in self.tasks
    )

  def test_chief_killed_and_restarted_resumes_from_tf2(self):
    model_dir = self.create_tempdir().full_path
    cluster = {
      name: [f"127.0.0.1:{_free_port()}"] for name in ("chief", "worker", "ps")
    }
    self._start("ps", cluster, model_dir)
    chief = self._start("chief", cluster, model_dir)
    worker = self._start("worker", cluster, model_dir)
    evaluator = self._start("evaluator", cluster, model_dir)

    def saved_past_zero(task, line):
      return (
        task is chief
        and line is not None
        and line.startswith("checkpoint saved: step ")
        and int(line.split()[-1]) > 0
      )

    _, line = self._wait_for(saved_past_zero, "the chief's first checkpoint")
    killed_at = int(line.split()[-1])
    chief.kill()
    self.assertEqual(chief.process.returncode, -signal.SIGKILL)
    reader = tf.train.load_checkpoint(model_dir)
    self.assertIn(keys.OBJECT_GRAPH_KEY, reader.get_variable_to_shape_map())
    self.assertGreaterEqual(reader.get_tensor(keys.STEP_KEY), killed_at)

    chief = self._start("chief", cluster, model_dir)
    running = {chief, worker, evaluator}
    finished = set()

    def all_done(task, line):
      if task not in running or line is not None:
        return False  # The killed chief's last lines, the ps, progress.
      if task.process.wait() != 0:
        self.fail(
          f"{task.task_type} exited with {task.process.returncode}:"
          "\n" + "".join(task.log[-60:])
        )
      finished.add(task)
      return running <= finished

    self._wait_for(all_done, "chief, worker and evaluator to finish")
    restarted_log = "".join(chief.log)
    self.assertIn("Restoring parameters from", restarted_log)
    reader = tf.train.load_checkpoint(model_dir)
    # The worker trains asynchronously, so the last save may pass max_steps
    # by a step or two.
    self.assertBetween(
      reader.get_tensor(keys.STEP_KEY), _MAX_STEPS, _MAX_STEPS + 5
    )
    stored = reader.get_variable_to_shape_map()
    self.assertEqual(stored[keys.variable_key("user_embedding")], [200, 8])
    self.assertIn(keys.variable_key("user_embedding/Adam"), stored)
    self.assertIn(keys.variable_key("batch_norm/moving_mean"), stored)


if __name__ == "__main__":
  absltest.main()
