r"""Benchmark: time a save blocks training, TF1 Saver vs Scaffold sync/async.

  bazel run -c opt //benchmarks:async_save_benchmark -- \
    [--sizes_mib=1024,64] [--stores=local,s3] [--save_steps=1000]

Side by side in one run, for each table size and store (a local model dir;
`s3`: moto on loopback, benchmarks/s3_server.py, with tensorflow-io as the
client), an Estimator with a partitioned embedding (`--partitions` parts,
sparse SGD updates of a small batch per step) trains `--saves` x
`--save_steps` steps with each of:

  tf1     stock Estimator: TF1 `Saver(sharded=True)`;
  sync    `tf2_checkpoints(model_fn)`: this Scaffold, synchronous;
  async   `tf2_checkpoints(model_fn, async_save=True)`;
  none    the same run without saves (the throughput baseline).

Each run is its own process (`measured.py`: its own peak RSS). On a machine
of two or more CPUs the emulator gets the last CPU to itself and every s3
run (each saver and the baseline) the others (`--isolate_emulator`): a
remote store does not take the trainer's CPU, and moto on the trainer's
cores costs it as much as the upload does. TensorFlow sizes its thread
pools by the CPUs a process may use, so on 2 CPUs the s3 runs have pools of
one thread. The s3 runs bound tensorflow-io's upload buffers as the
checkpoint tools do (`--s3_upload_limits`: its defaults hold a whole data
file in memory while it is uploaded). Printed per saver and store:

  blocked/save  median over saves of (the step with a save + the step after
                it - 2 x the median step without a save): counts the
                copy-on-write costs a snapshot moves into the next step;
  xfloor        blocked/save over the snapshot floor: one `session.run`
                that deep-copies every saved variable once on its device
                (measured in a process of its own; target for async: <= 1.5);
  committed     median over saves of the time from a save's start to its
                checkpoint committed (`CheckpointSaverListener` before_save
                to after_save; for async the background write, seen at
                the first step after it);
  throughput    steps/s of the run over the same run's without saves
                (target for async: >= 0.9 where tf1 is < 0.5);
  CPU/save      the CPU time a save costs: per step of the training loop,
                the process's CPU (all its threads) over the same run's
                without saves, times `--save_steps`, plus (async on s3)
                the uploader's CPU per save. Where the run without saves
                keeps all its CPUs busy (the header says how many it
                uses), no priority can hide it: throughput is then at
                most T / (T + CPU/save / CPUs), T the time N steps take
                without saves;
  peak RSS      of the run's process, beside the table size (target for
                async: <= table + one snapshot + 64 MiB over `none`'s).
                On s3 async uploads from a process of its own
                (`storage.uploader`); a line below the table gives its
                peak RSS and the memory only it holds.

With `--repeats` > 1 every run (the baseline too) is repeated, the runs
of one repeat side by side, and each column is the median over repeats
(throughput: of each repeat's ratio to its own baseline), with the range of
the throughput beside it: run-to-run noise on a shared VM is ~10%.

Not a test: nothing here asserts a time.
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from absl import app
from absl import flags
import numpy as np

from estimator_ckpt._src.storage import gfile
from estimator_ckpt._src.storage import uploader

from benchmarks import measured
from benchmarks import s3_server

_SIZES_MIB = flags.DEFINE_list(
  "sizes_mib", ["1024", "64"], "Table sizes in MiB, one run each."
)
_STORES = flags.DEFINE_list("stores", ["local", "s3"], "local and/or s3.")
_PARTITIONS = flags.DEFINE_integer("partitions", 8, "Parts of the table.")
_SAVE_STEPS = flags.DEFINE_integer(
  "save_steps",
  1000,
  "Save every N steps. Pick N so that N steps outlast one background save "
  "(on S3 with moto, several seconds per 64 MiB): a save requested while "
  "the previous one is still written waits for it.",
)
_SAVES = flags.DEFINE_integer("saves", 5, "Saves per run (after step 0).")
_REPEATS = flags.DEFINE_integer(
  "repeats", 1, "Runs of each saver (and the baseline); medians reported."
)
_S3_UPLOAD_LIMITS = flags.DEFINE_bool(
  "s3_upload_limits",
  True,
  "Bound tensorflow-io's upload buffers as the checkpoint tools do "
  "(S3_UPLOAD_LIMITS: 4 threads of 8 MiB parts); false keeps its defaults, "
  "which hold a whole data file in memory while it is uploaded.",
)
_S3_TLS = flags.DEFINE_bool(
  "s3_tls",
  True,
  "Serve the S3 emulator over HTTPS, as S3 does: over plain HTTP the AWS "
  "SDK hashes every byte it uploads (SigV4 payload signing), which it does "
  "not over HTTPS.",
)
_ISOLATE_EMULATOR = flags.DEFINE_bool(
  "isolate_emulator",
  True,
  "On a machine of 2 or more CPUs, run the S3 emulator on the last CPU and "
  "every s3 run (each saver and the baseline alike) on the others: a remote "
  "store does not take the trainer's CPU, an emulator on the same cores "
  "does.",
)
_BATCH = flags.DEFINE_integer("batch", 4096, "Ids looked up per step.")
_SAVERS = flags.DEFINE_list(
  "savers", ["tf1", "sync", "async"], "Savers to compare."
)
# Child mode: one run, results as JSON into --result.
_CHILD = flags.DEFINE_enum(
  "child", None, ["tf1", "sync", "async", "none", "floor"], "Internal."
)
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Internal.")
_TABLE_MIB = flags.DEFINE_integer("table_mib", 64, "Internal.")
_RESULT = flags.DEFINE_string("result", None, "Internal.")

_DIM = 64
_BUCKET = "async-save-benchmark"


def _rows(table_mib: int) -> int:
  return table_mib * (1 << 20) // (4 * _DIM)


def _child_run() -> Dict[str, Any]:
  """Trains one Estimator; returns the step periods and saves."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  import estimator_ckpt  # pylint: disable=g-import-not-at-top

  tf1 = tf.compat.v1
  rows = _rows(_TABLE_MIB.value)

  def model_fn(features, mode):
    emb = tf1.get_variable(
      "emb",
      shape=[rows, _DIM],
      initializer=tf1.zeros_initializer(),
      partitioner=tf1.fixed_size_partitioner(_PARTITIONS.value),
    )
    loss = tf.reduce_mean(tf.square(tf.nn.embedding_lookup(emb, features) - 1))
    train_op = tf1.train.GradientDescentOptimizer(0.1).minimize(
      loss, global_step=tf1.train.get_global_step()
    )
    return tf.estimator.EstimatorSpec(mode, loss=loss, train_op=train_op)

  def input_fn():
    return (
      tf.data.Dataset.range(1)
      .repeat()
      .map(lambda _: tf.random.uniform([_BATCH.value], 0, rows, dtype=tf.int64))
    )

  class Timer(tf1.train.SessionRunHook):
    def __init__(self):
      self.starts: List[float] = []
      self.steps: List[int] = []

    def begin(self):
      self._step = tf1.train.get_global_step()

    def before_run(self, run_context):
      self.starts.append(time.perf_counter())
      self.cpu_last = time.process_time()  # Of all this process's threads.
      if len(self.starts) == 1:
        self.cpu_first = self.cpu_last
      return tf1.train.SessionRunArgs(self._step)

    def after_run(self, run_context, run_values):
      self.steps.append(int(run_values.results) + 1)

  class Commits(tf1.train.CheckpointSaverListener):
    def __init__(self):
      self.started: Dict[int, float] = {}
      self.committed: List[float] = []

    def before_save(self, session, global_step_value):
      self.started[global_step_value] = time.perf_counter()

    def after_save(self, session, global_step_value):
      if global_step_value in self.started:
        self.committed.append(
          time.perf_counter() - self.started.pop(global_step_value)
        )

  saver = _CHILD.value
  save_steps = None if saver == "none" else _SAVE_STEPS.value
  config = tf.estimator.RunConfig(
    save_checkpoints_steps=save_steps,
    save_checkpoints_secs=None,
    save_summary_steps=None,
    log_step_count_steps=None,
    keep_checkpoint_max=2,
  )
  if saver == "tf1":
    fn = model_fn
  else:
    fn = estimator_ckpt.tf2_checkpoints(model_fn, async_save=saver == "async")
  est = tf.estimator.Estimator(fn, _MODEL_DIR.value, config=config)
  timer = Timer()
  commits = Commits()
  steps = _SAVES.value * _SAVE_STEPS.value + 2
  start = time.perf_counter()
  with _UploaderUsage() as worker:
    est.train(
      input_fn,
      steps=steps,
      hooks=[timer],
      saving_listeners=[commits] if save_steps else None,
    )
  total = time.perf_counter() - start
  periods = list(np.diff(timer.starts))
  return {
    "uploader": (
      {
        "peak_rss": worker.peak_rss,
        "peak_anonymous": worker.peak_anonymous,
        # The first save (step 0) is one of its saves too.
        "cpu_per_save": worker.cpu_seconds / (len(commits.committed) or 1),
      }
      if worker.peak_rss
      else None
    ),
    "periods": periods,
    "steps_after": timer.steps[: len(periods)],
    "loop_secs": timer.starts[-1] - timer.starts[0],
    "loop_cpu_secs": timer.cpu_last - timer.cpu_first,
    "loop_steps": len(periods),
    "train_secs": total,
    # The first save (step 0, before training) is not one of training's.
    "committed": commits.committed[1:],
  }


class _UploaderUsage:
  """Samples the uploader process's memory and CPU every 50 ms in a run.

  Its anonymous RSS is the memory it adds: its file-backed pages are
  TensorFlow's libraries, which the trainer maps too (the same pages).
  """

  def __init__(self):
    self.peak_anonymous = 0
    self.peak_rss = 0
    self.cpu_seconds = 0.0  # Of all its threads, at the last sample.
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)

  def __enter__(self) -> "_UploaderUsage":
    self._thread.start()
    return self

  def __exit__(self, *exc_info) -> None:
    self._stop.set()
    self._thread.join()

  def _sample(self) -> None:
    while not self._stop.wait(0.05):
      pid = uploader.shared().pid
      if pid is None:
        continue
      try:
        with open(f"/proc/{pid}/status") as f:
          status = dict(line.split(":", 1) for line in f)
        with open(f"/proc/{pid}/stat") as f:
          ticks = f.read().rsplit(")", 1)[1].split()[11:13]  # utime, stime
      except OSError:
        continue  # Ended meanwhile.
      self.cpu_seconds = sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK")
      self.peak_anonymous = max(
        self.peak_anonymous, int(status["RssAnon"].split()[0]) * 1024
      )
      self.peak_rss = max(self.peak_rss, int(status["VmHWM"].split()[0]) * 1024)


def _child_floor() -> Dict[str, Any]:
  """One session.run deep-copying every saved variable on its device."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.ops import gen_array_ops  # pylint: disable=g-import-not-at-top
  from tensorflow.python.ops import gen_resource_variable_ops as rv  # pylint: disable=g-import-not-at-top

  tf1 = tf.compat.v1
  rows = _rows(_TABLE_MIB.value)
  with tf.Graph().as_default():
    step = tf1.train.get_or_create_global_step()
    emb = tf1.get_variable(
      "emb",
      shape=[rows, _DIM],
      initializer=tf1.zeros_initializer(),
      partitioner=tf1.fixed_size_partitioner(_PARTITIONS.value),
    )
    copies = []
    for i, part in enumerate([step, *emb]):
      with tf1.device(part.device):
        handle = rv.var_handle_op(
          dtype=part.dtype.base_dtype, shape=part.shape, shared_name=f"c{i}"
        )
        copies.append(
          rv.assign_variable_op(
            handle, gen_array_ops.deep_copy(part.read_value())
          )
        )
    copy = tf.group(*copies)
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      times = []
      for _ in range(5):
        start = time.perf_counter()
        sess.run(copy)
        times.append(time.perf_counter() - start)
  return {"floor_secs": statistics.median(times)}


def _blocked(result: Dict[str, Any]) -> float:
  """Median over saves of save step + next step - 2 x plain step."""
  periods, steps = result["periods"], result["steps_after"]
  every = _SAVE_STEPS.value
  saves = [i for i, s in enumerate(steps) if s % every == 0]
  after = {i + 1 for i in saves}
  plain = [
    p for i, p in enumerate(periods) if i not in saves and i not in after
  ]
  base = statistics.median(plain)
  blocked = [
    periods[i] + periods[i + 1] - 2 * base
    for i in saves
    if i + 1 < len(periods)
  ]
  return statistics.median(blocked) if blocked else float("nan")


def _run_child(
  kind: str,
  model_dir: str,
  table_mib: int,
  env: Dict[str, str],
  cpus: Optional[Set[int]] = None,
) -> Dict[str, Any]:
  with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
    module = ["-m", "benchmarks.async_save_benchmark"]
    if model_dir.startswith("s3://"):
      module = ["-m", "benchmarks.with_tensorflow_io"] + module[1:]
    seconds, rss = measured.run(
      [
        sys.executable,
        *module,
        f"--child={kind}",
        f"--model_dir={model_dir}",
        f"--table_mib={table_mib}",
        f"--partitions={_PARTITIONS.value}",
        f"--save_steps={_SAVE_STEPS.value}",
        f"--saves={_SAVES.value}",
        f"--batch={_BATCH.value}",
        f"--result={out.name}",
      ],
      env=env,
      cpus=cpus,
    )
    result = json.loads(out.read())
  result["process_secs"] = seconds
  result["peak_rss"] = rss
  return result


def _report(
  store: str,
  table_mib: int,
  repeats: List[Dict[str, Any]],
  floor: float,
  cpus: int,
) -> None:
  """Prints one table: medians over `repeats` (each a run per saver)."""

  def rate(result):
    return result["loop_steps"] / result["loop_secs"]

  def cpu_per_step(result):
    return result["loop_cpu_secs"] / result["loop_steps"]

  def cpu_per_save(result, none):
    """CPU a save costs over `none`: the trainer's and its uploader's."""
    worker = result.get("uploader") or {"cpu_per_save": 0.0}
    over = cpu_per_step(result) - cpu_per_step(none)
    return over * _SAVE_STEPS.value + worker["cpu_per_save"]

  none = [r["none"] for r in repeats]
  base_step = statistics.median(1 / rate(n) for n in none)
  busy = statistics.median(n["loop_cpu_secs"] / n["loop_secs"] for n in none)
  print(
    f"\n{store}, table {table_mib} MiB in {_PARTITIONS.value} parts, "
    f"save every {_SAVE_STEPS.value} steps, {len(repeats)} run(s) each; "
    f"snapshot floor {floor * 1e3:.1f} ms; step without saves "
    f"{base_step * 1e3:.2f} ms, using {busy:.2f} CPUs of {cpus}; peak RSS "
    f"without saves {max(n['peak_rss'] for n in none) / (1 << 20):.0f} MiB"
  )
  print(
    f"  {'saver':6} {'blocked/save':>13} {'xfloor':>7} {'committed':>10} "
    f"{'throughput':>11} {'(range)':>12} {'CPU/save':>9} {'peak RSS':>9} "
    f"{'train()':>8}"
  )
  for saver in _SAVERS.value:
    runs = [r[saver] for r in repeats]
    blocked = statistics.median(_blocked(r) for r in runs)
    committed = statistics.median(
      statistics.median(r["committed"]) if r["committed"] else float("nan")
      for r in runs
    )
    ratios = sorted(rate(r[saver]) / rate(r["none"]) for r in repeats)
    spread = f"{ratios[0]:.2f}-{ratios[-1]:.2f}" if len(ratios) > 1 else ""
    cpu = statistics.median(cpu_per_save(r[saver], r["none"]) for r in repeats)
    print(
      f"  {saver:6} {blocked * 1e3:10.1f} ms {blocked / floor:6.1f}x "
      f"{committed * 1e3:7.0f} ms {statistics.median(ratios):10.2f}x "
      f"{spread:>12} {cpu * 1e3:6.0f} ms "
      f"{max(r['peak_rss'] for r in runs) / (1 << 20):5.0f} MiB"
      f" {statistics.median(r['train_secs'] for r in runs):6.1f} s"
    )
  workers = [r["async"].get("uploader") for r in repeats if "async" in r]
  workers = [w for w in workers if w]
  if workers:
    print(
      "  async uploads from a process of its own: peak RSS "
      f"{max(w['peak_rss'] for w in workers) / (1 << 20):.0f} MiB, "
      "of which anonymous (its own; the rest is TensorFlow's libraries, "
      "shared with the trainer) "
      f"{max(w['peak_anonymous'] for w in workers) / (1 << 20):.0f} MiB;"
      " its CPU per save "
      f"{statistics.median(w['cpu_per_save'] for w in workers) * 1e3:.0f} ms"
    )


def _s3_environ() -> Dict[str, str]:
  """tensorflow-io's upload settings the s3 runs get."""
  return dict(gfile.S3_UPLOAD_LIMITS) if _S3_UPLOAD_LIMITS.value else {}


def _cpus() -> Tuple[Optional[Set[int]], Optional[Set[int]]]:
  """(the s3 runs' CPUs, the emulator's), or (None, None) for any."""
  cpus = sorted(os.sched_getaffinity(0))
  if not _ISOLATE_EMULATOR.value or len(cpus) < 2:
    return None, None
  return set(cpus[:-1]), {cpus[-1]}


def _parent() -> None:
  work = tempfile.mkdtemp(prefix="async_save_benchmark.")
  env = dict(measured.python_path_env())
  upload_limits = _s3_environ()
  s3_env = {**env, **upload_limits}
  s3_cpus, emulator_cpus = _cpus()
  server = None
  if "s3" in _STORES.value:
    server = s3_server.S3Server(cpus=emulator_cpus, tls=_S3_TLS.value)
    server.start()
    server.create_bucket(_BUCKET)
    s3_env.update(server.environ())
    print(
      f"s3: {server.description()} on CPUs "
      f"{sorted(emulator_cpus) if emulator_cpus else 'any'}, runs on CPUs "
      f"{sorted(s3_cpus) if s3_cpus else 'any'}; tensorflow-io "
      + (" ".join(f"{k}={v}" for k, v in upload_limits.items()) or "defaults")
    )
  try:
    for size in [int(s) for s in _SIZES_MIB.value]:
      for store in _STORES.value:
        store_env, cpus = (s3_env, s3_cpus) if store == "s3" else (env, None)
        floor = _run_child(
          "floor", os.path.join(work, "floor"), size, env, cpus
        )
        repeats = []
        for repeat in range(_REPEATS.value):
          results = {}
          for saver in ["none", *_SAVERS.value]:
            name = f"{saver}-{repeat}"
            if store == "s3":
              model_dir = f"s3://{_BUCKET}/{size}/{name}"
            else:
              model_dir = os.path.join(work, str(size), name)
            results[saver] = _run_child(saver, model_dir, size, store_env, cpus)
          repeats.append(results)
        _report(
          store,
          size,
          repeats,
          floor["floor_secs"],
          len(cpus or os.sched_getaffinity(0)),
        )
        sys.stdout.flush()
  finally:
    if server is not None:
      server.stop()
    shutil.rmtree(work, ignore_errors=True)  # GiBs of checkpoints per run.


def main(argv: Sequence[str]) -> None:
  del argv
  if _CHILD.value is None:
    _parent()
    return
  result = _child_floor() if _CHILD.value == "floor" else _child_run()
  with open(_RESULT.value, "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  app.run(main)
