"""Parameter-server training with the TF2 scaffold, in real processes.

A TF_CONFIG cluster of chief, worker, ps and evaluator on 127.0.0.1 runs the
training binary (`//examples/ranking:train --mode=train_and_evaluate`, the
ranking model: partitioned embeddings on the ps, Adam, TF2 checkpoints). The
chief is killed with SIGKILL after its first checkpoint past step 0 and
restarted; the cluster must finish, resuming from TF2 checkpoints. The test
follows the processes' output lines (no sleeps) under a deadline, and stops
every process itself.

With `--async_save` (two ps tasks), the chief's listener line comes once the
background save is committed, and the meta graph the chief wrote shows where
the saves ran: every snapshot variable on the device of the variable it
copies, and the save ops of the snapshot on each ps task, so each ps writes
its own shards and no tensor travels to the chief.
"""

import json
import os
import queue
import signal
import subprocess
import threading
import time

from absl.testing import absltest
import tensorflow as tf

from estimator_ckpt import keys

from tests import tool_fixtures

_TRAINER = os.path.join(
  os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
  "examples",
  "ranking",
  "train",
)
_DEADLINE_SECS = 600
_MAX_STEPS = 400


class _Task:
  """A trainer subprocess whose output lines arrive on a queue."""

  def __init__(self, task_type, cluster, model_dir, lines, flags=(), index=0):
    env = dict(os.environ)
    env["TF_CONFIG"] = json.dumps(
      {
        "cluster": cluster,
        "task": {"type": task_type, "index": index},
      }
    )
    self.task_type = f"{task_type}{index}"
    self.process = subprocess.Popen(
      [
        _TRAINER,
        f"--model_dir={model_dir}",
        "--mode=train_and_evaluate",
        f"--train_steps={_MAX_STEPS}",
        "--save_checkpoints_steps=40",
        "--eval_throttle_secs=1",
        *flags,
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

  def _start(self, task_type, cluster, model_dir, flags=(), index=0):
    task = _Task(task_type, cluster, model_dir, self.lines, flags, index)
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

  def _train_killing_the_chief(self, model_dir, flags=(), ps_tasks=1):
    """Kills the chief after its first checkpoint past 0, then finishes."""
    ports = iter(tool_fixtures.free_ports(2 + ps_tasks))
    cluster = {
      name: [f"127.0.0.1:{next(ports)}" for _ in range(count)]
      for name, count in (("chief", 1), ("worker", 1), ("ps", ps_tasks))
    }
    for index in range(ps_tasks):
      self._start("ps", cluster, model_dir, flags, index)
    chief = self._start("chief", cluster, model_dir, flags)
    worker = self._start("worker", cluster, model_dir, flags)
    evaluator = self._start("evaluator", cluster, model_dir, flags)

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
    # The listener's line comes once the checkpoint is committed.
    reader = tf.train.load_checkpoint(model_dir)
    self.assertIn(keys.OBJECT_GRAPH_KEY, reader.get_variable_to_shape_map())
    self.assertGreaterEqual(reader.get_tensor(keys.STEP_KEY), killed_at)

    chief = self._start("chief", cluster, model_dir, flags)
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
    return restarted_log

  def test_chief_killed_and_restarted_resumes_from_tf2(self):
    self._train_killing_the_chief(self.create_tempdir().full_path)

  def test_async_save_snapshots_and_writes_on_each_ps(self):
    model_dir = self.create_tempdir().full_path
    log = self._train_killing_the_chief(
      model_dir, flags=["--async_save"], ps_tasks=2
    )
    self.assertIn("in the background", log)
    self.assertIn("committed; calling checkpoint listeners", log)
    graph_def = _meta_graph_of(tf.train.latest_checkpoint(model_dir))
    nodes = {node.name: node for node in graph_def.node}
    snapshots = [
      node
      for node in graph_def.node
      if node.name.startswith("async_save_snapshot/")
      and node.op == "AssignVariableOp"
    ]
    self.assertNotEmpty(snapshots)
    snapshot_devices = set()
    for assign in snapshots:
      handle = nodes[assign.input[0].split(":")[0]]
      source = _source_of(nodes, assign.input[1])
      with self.subTest(snapshot=handle.name, of=source.name):
        self.assertEqual(_task_of(handle.device), _task_of(source.device))
        snapshot_devices.add(_task_of(handle.device))
    self.assertEqual(snapshot_devices, {"/job:ps/task:0", "/job:ps/task:1"})
    saves = [
      node
      for node in graph_def.node
      if node.name.startswith("async_save/") and node.op == "SaveV2"
    ]
    # Each device writes the shards of its own snapshot variables; a save
    # elsewhere (the chief's) writes only constants: the object graph.
    self.assertContainsSubset(
      snapshot_devices, {_task_of(node.device) for node in saves}
    )
    for save in saves:
      if _task_of(save.device) in snapshot_devices:
        continue
      self.assertEqual(_task_of(save.device), "/job:chief/task:0")
      data = [t for t in save.input[3:] if not t.startswith("^")]
      self.assertNotEmpty(data)
      for tensor in data:
        with self.subTest(save=save.name, tensor=tensor):
          self.assertEqual(_source_of(nodes, tensor).op, "Const")


def _meta_graph_of(prefix):
  meta_graph = tf.compat.v1.MetaGraphDef()
  with open(prefix + ".meta", "rb") as f:
    meta_graph.ParseFromString(f.read())
  return meta_graph.graph_def


def _source_of(nodes, tensor_name):
  """The node whose value a snapshot copies (through Identity reads)."""
  node = nodes[tensor_name.lstrip("^").split(":")[0]]
  while node.op == "Identity":
    node = nodes[node.input[0].split(":")[0]]
  return node


def _task_of(device):
  """`/job:ps/task:0` of a device string (the task, not its CPU)."""
  spec = tf.DeviceSpec.from_string(device)
  return f"/job:{spec.job}/task:{spec.task}"


if __name__ == "__main__":
  absltest.main()
