r"""Benchmark: what training loses while another process writes to the disk.

  bazel run -c opt //benchmarks:disk_write_cost_benchmark -- \
    [--write_mib=1024] [--rounds=5] [--window_secs=3]

An asynchronous save writes its data while training runs, so a save's
cost to training's throughput is at least what the disk write itself costs
training. On a virtual machine that may be more than the writing thread's
CPU time: the host may do the I/O on the CPUs the guest runs on (this
project's machines are Firecracker VMs). Side by side in one run, this
trains the model of `async_save_benchmark` (a `--table_mib` embedding in 8
parts, sparse SGD updates of 4,096 ids per step) in a plain session loop
and counts the steps done in windows of `--window_secs`:

  quiet   nothing else runs;
  write   another process, at SCHED_IDLE (it gets a CPU only when training
          leaves one), writes `--write_mib` of non-zero bytes O_DIRECT to
          `--dir` through 8 MiB buffers and fsyncs, as a background save's
          data is written;
  burn    another process at SCHED_IDLE burns, without I/O, the CPU time
          the last writer used.

Printed per kind: the child's CPU time and the training time lost in the
window (the quiet windows' median steps minus its steps, times the quiet
step), medians over `--rounds` rounds and their range. If `write` loses far
more than `burn`, the write costs training more than the writer's CPU: no
priority or placement of the writer can take that back.

Not a test: nothing here asserts a time.
"""

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, NamedTuple, Sequence

from absl import app
from absl import flags

_WRITE_MIB = flags.DEFINE_integer("write_mib", 1024, "MiB each write writes.")
_TABLE_MIB = flags.DEFINE_integer("table_mib", 1024, "The trainer's table.")
_ROUNDS = flags.DEFINE_integer("rounds", 5, "Rounds of quiet/write/burn.")
_WINDOW_SECS = flags.DEFINE_float("window_secs", 3.0, "Seconds per window.")
_DIR = flags.DEFINE_string(
  "dir", None, "Where the writer writes (default: the temp dir)."
)

_DIM = 64
_CHUNK = 8 << 20

# Each child first puts itself at SCHED_IDLE (nice 19 where there is none).
_AT_IDLE_PRIORITY = """
import os
if hasattr(os, "SCHED_IDLE"):
  os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
else:
  os.nice(19)
"""

_WRITER = (
  _AT_IDLE_PRIORITY
  + """
import mmap, sys
path, chunks = sys.argv[1], int(sys.argv[2])
buffer = mmap.mmap(-1, {chunk})  # Page-aligned, as O_DIRECT needs.
buffer.write(os.urandom({chunk}))
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
try:
  for _ in range(chunks):
    os.write(fd, buffer)
  os.fsync(fd)
finally:
  os.close(fd)
  os.remove(path)
""".format(chunk=_CHUNK)
)

_BURNER = (
  _AT_IDLE_PRIORITY
  + """
import sys, time
end = time.process_time() + float(sys.argv[1])
while time.process_time() < end:
  pass
"""
)


class _Window(NamedTuple):
  steps: int  # Training steps done in the window.
  cpu_secs: float  # The child's CPU time.
  finished: bool  # Whether the child ended within the window.


def main(argv: Sequence[str]) -> None:
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  tf1 = tf.compat.v1
  tf1.disable_eager_execution()
  rows = _TABLE_MIB.value * (1 << 20) // (4 * _DIM)
  step = tf1.train.get_or_create_global_step()
  emb = tf1.get_variable(
    "emb",
    shape=[rows, _DIM],
    initializer=tf1.zeros_initializer(),
    partitioner=tf1.fixed_size_partitioner(8),
  )
  ids = tf.random.uniform([4096], 0, rows, dtype=tf.int64)
  loss = tf.reduce_mean(tf.square(tf.nn.embedding_lookup(emb, ids) - 1))
  train = tf1.train.GradientDescentOptimizer(0.1).minimize(
    loss, global_step=step
  )
  directory = _DIR.value or tempfile.gettempdir()
  path = os.path.join(directory, f"disk_write_cost_{os.getpid()}")
  chunks = _WRITE_MIB.value * (1 << 20) // _CHUNK

  with tf1.Session() as sess:
    sess.run(tf1.global_variables_initializer())
    for _ in range(500):  # Warm up.
      sess.run(train)

    def window(command: List[str]) -> _Window:
      before = resource.getrusage(resource.RUSAGE_CHILDREN)
      child = subprocess.Popen(command) if command else None
      start = time.perf_counter()
      steps = 0
      while time.perf_counter() - start < _WINDOW_SECS.value:
        sess.run(train)
        steps += 1
      finished = child is None or child.poll() is not None
      if child is not None and child.wait() != 0:
        raise RuntimeError(f"{command} failed")
      after = resource.getrusage(resource.RUSAGE_CHILDREN)
      return _Window(
        steps,
        (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        finished,
      )

    results: Dict[str, List[_Window]] = {
      "quiet": [],
      "write": [],
      "burn": [],
    }
    for _ in range(_ROUNDS.value):
      results["quiet"].append(window([]))
      results["write"].append(
        window([sys.executable, "-c", _WRITER, path, str(chunks)])
      )
      results["quiet"].append(window([]))
      burn = results["write"][-1].cpu_secs
      results["burn"].append(window([sys.executable, "-c", _BURNER, str(burn)]))

  quiet_steps = [r.steps for r in results["quiet"]]
  quiet = statistics.median(quiet_steps)
  step_secs = _WINDOW_SECS.value / quiet
  print(
    f"trainer: table {_TABLE_MIB.value} MiB in 8 parts, quiet step "
    f"{step_secs * 1e3:.2f} ms (quiet windows {min(quiet_steps)}-"
    f"{max(quiet_steps)} steps); windows of {_WINDOW_SECS.value:g} s, "
    f"{_ROUNDS.value} rounds; write: {_WRITE_MIB.value} MiB O_DIRECT + "
    f"fsync into {directory}"
  )
  print("  kind    child CPU  training lost/window       (range)")
  for kind in ("write", "burn"):
    lost = [(quiet - r.steps) * step_secs * 1e3 for r in results[kind]]
    cpu = statistics.median(r.cpu_secs for r in results[kind]) * 1e3
    late = sum(not r.finished for r in results[kind])
    note = f"  ({late} outlasted their window)" if late else ""
    print(
      f"  {kind:6s}  {cpu:7.0f} ms  {statistics.median(lost):11.0f} ms"
      f"  {min(lost):6.0f} to {max(lost):.0f} ms{note}"
    )


if __name__ == "__main__":
  app.run(main)
