r"""Benchmark: TF1 `Saver` scaffold vs `estimator_ckpt.scaffold()`.

Runs both, side by side in one process, on the same models and prints the
ratio ours / TF1 for each phase (target: within 1.05x):

  build    graph construction + `Scaffold.finalize()` (saver ops)
  save     the first save of a freshly initialised model
  resume   a new graph: build, finalize, restore the saved checkpoint, run
           one training step

A second table compares the saves of our saver with TF1-name aliases
(`tf1_names=True`, the default) against `tf1_names=False` and against
`also_write_tf1=True` (a second, name-based copy): time (target: at most
1.02x of `tf1_names=False`), data bytes (target: 1.00x) and index bytes.

Models: (a) many small variables (default 5,000), (b) one partitioned table
(default 1 GiB in 8 partitions). Each phase is repeated, alternating which
saver goes first, and the fastest run of each is compared (as `timeit` does:
on a shared machine, noise only ever adds time).

  bazel run -c opt //benchmarks:scaffold_benchmark
  bazel run //benchmarks:scaffold_benchmark -- --table_mib=64 --repeats=1
"""

import os
import tempfile
import time
from typing import Callable, Dict, Sequence

from absl import app
from absl import flags
import tensorflow as tf

from estimator_ckpt._src import scaffold

tf1 = tf.compat.v1

_NUM_VARIABLES = flags.DEFINE_integer(
  "num_variables", 5000, "Variables of model (a)."
)
_TABLE_MIB = flags.DEFINE_integer(
  "table_mib", 1024, "Size of model (b)'s table in MiB."
)
_PARTITIONS = flags.DEFINE_integer(
  "partitions", 8, "Partitions of model (b)'s table."
)
_REPEATS = flags.DEFINE_integer("repeats", 5, "Runs per phase (fastest kept).")


def many_variables_model():
  step = tf1.train.get_or_create_global_step()
  variables = [
    tf1.get_variable(
      f"layer_{i // 10}/w_{i % 10}",
      shape=[4],
      initializer=tf1.ones_initializer(),
    )
    for i in range(_NUM_VARIABLES.value)
  ]
  return tf.group(variables[0].assign_add(tf.ones([4])), step.assign_add(1))


def big_table_model():
  step = tf1.train.get_or_create_global_step()
  dim = 64
  rows = _TABLE_MIB.value * 2**20 // (4 * dim)
  table = tf1.get_variable(
    "embedding",
    shape=[rows, dim],
    initializer=tf1.zeros_initializer(),
    partitioner=tf1.fixed_size_partitioner(_PARTITIONS.value),
  )
  row = tf1.nn.embedding_lookup(table, tf.constant([0], tf.int64))
  return tf.group(tf.reduce_sum(row), step.assign_add(1))


def make_tf1_scaffold():
  return tf1.train.Scaffold(
    saver=tf1.train.Saver(
      sharded=True, save_relative_paths=True, defer_build=True
    )
  )


def make_tf2_scaffold():
  return scaffold.scaffold()


def run_save(
  build_model: Callable[[], tf.Operation],
  make_scaffold: Callable[[], tf1.train.Scaffold],
  workdir: str,
) -> Dict[str, float]:
  """Times one save; sizes of what it wrote (TF1 copies included)."""
  with tf.Graph().as_default():
    build_model()
    scaffold = make_scaffold()
    scaffold.finalize()
    with tf1.Session() as sess:
      sess.run(scaffold.init_op)
      start = time.perf_counter()
      scaffold.saver.save(sess, os.path.join(workdir, "model.ckpt"), 0)
      seconds = time.perf_counter() - start
  sizes = {"data": 0, "index": 0}
  for directory, _, names in os.walk(workdir):
    for name in names:
      kind = "index" if name.endswith(".index") else "data"
      if kind == "index" or ".data-" in name:
        sizes[kind] += os.path.getsize(os.path.join(directory, name))
  return {"save": seconds, **sizes}


def compare_tf1_names(models: Dict[str, Callable[[], tf.Operation]]) -> None:
  """The second table: aliases against no aliases and a TF1 copy."""
  savers = {
    "tf1_names=False": lambda: scaffold.scaffold(tf1_names=False),
    "tf1_names=True": lambda: scaffold.scaffold(tf1_names=True),
    "also_write_tf1": lambda: scaffold.scaffold(
      tf1_names=False, also_write_tf1=True
    ),
  }
  print(
    f"\n{'model':36s} {'save':16s} {'s':>8s} {'ratio':>7s} "
    f"{'data bytes':>14s} {'ratio':>6s} {'index bytes':>12s}"
  )
  for model_name, build_model in models.items():
    samples: Dict[str, Dict[str, list]] = {name: {} for name in savers}
    for repeat in range(_REPEATS.value):
      order = list(savers) if repeat % 2 == 0 else list(reversed(savers))
      for name in order:
        with tempfile.TemporaryDirectory() as workdir:
          for key, value in run_save(
            build_model, savers[name], workdir
          ).items():
            samples[name].setdefault(key, []).append(value)
    base = samples["tf1_names=False"]
    for name, sample in samples.items():
      print(
        f"{model_name:36s} {name:16s} {min(sample['save']):8.3f} "
        f"{min(sample['save']) / min(base['save']):6.2f}x "
        f"{int(sample['data'][0]):14,d} "
        f"{sample['data'][0] / base['data'][0]:5.2f}x "
        f"{int(sample['index'][0]):12,d}",
        flush=True,
      )


def run_phases(
  build_model: Callable[[], tf.Operation],
  make_scaffold: Callable[[], tf1.train.Scaffold],
  workdir: str,
) -> Dict[str, float]:
  """Times build, first save and resume for one model and scaffold."""
  times = {}
  prefix = os.path.join(workdir, "model.ckpt")
  with tf.Graph().as_default():
    start = time.perf_counter()
    build_model()
    scaffold = make_scaffold()
    scaffold.finalize()
    times["build"] = time.perf_counter() - start
    with tf1.Session() as sess:
      sess.run(scaffold.init_op)
      start = time.perf_counter()
      path = scaffold.saver.save(sess, prefix, global_step=0)
      times["save"] = time.perf_counter() - start
  with tf.Graph().as_default():
    start = time.perf_counter()
    train_op = build_model()
    scaffold = make_scaffold()
    scaffold.finalize()
    with tf1.Session() as sess:
      scaffold.saver.restore(sess, path)
      sess.run(train_op)
    times["resume"] = time.perf_counter() - start
  return times


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  models = {
    f"(a) {_NUM_VARIABLES.value} variables": many_variables_model,
    (
      f"(b) {_TABLE_MIB.value} MiB table in {_PARTITIONS.value} parts"
    ): big_table_model,
  }
  scaffolds = {"tf1": make_tf1_scaffold, "tf2": make_tf2_scaffold}
  print(
    f"{'model':36s} {'phase':7s} {'TF1 Saver s':>12s} "
    f"{'ours s':>10s} {'ratio':>7s}"
  )
  for model_name, build_model in models.items():
    samples = {name: {} for name in scaffolds}
    for repeat in range(_REPEATS.value):
      # Alternate the order so caches and warm-up favour neither side.
      for name in scaffolds if repeat % 2 == 0 else reversed(list(scaffolds)):
        with tempfile.TemporaryDirectory() as workdir:
          for phase, seconds in run_phases(
            build_model, scaffolds[name], workdir
          ).items():
            samples[name].setdefault(phase, []).append(seconds)
    for phase in samples["tf1"]:
      tf1_s = min(samples["tf1"][phase])
      ours_s = min(samples["tf2"][phase])
      print(
        f"{model_name:36s} {phase:7s} {tf1_s:12.3f} {ours_s:10.3f} "
        f"{ours_s / tf1_s:6.2f}x",
        flush=True,
      )
  compare_tf1_names(models)


if __name__ == "__main__":
  app.run(main)
