r"""Benchmark: vocabulary warm start, stock from TF1 vs estimator_ckpt.

Issue 18's target: warm-starting a 1 GiB embedding with `vocab_info` takes
at most 1.2x the time and peak memory of stock
`tf.compat.v1.train.warm_start(..., var_name_to_vocab_info=...)` from the
TF1 original. One table `[rows, dim]` float32 in `--partitions` partitions
is saved as a TF1 checkpoint, as this package's `var_list/` layout
(`convert(to="tf2")`) and as stock `tf.train.Checkpoint` partitions (one
tensor per part); the new vocabulary is the old one shuffled with 1% new
words. Each run is a fresh process (`measured`: wall time and peak RSS of
that process alone) that builds the model, warm-starts it and runs the
initialisers, so both sides pay the same TensorFlow start-up. The fastest
of `--repeats` runs is kept, and the ratio ours / stock is printed per
layout.

  bazel run -c opt //benchmarks:vocab_warm_start_benchmark
  bazel run //benchmarks:vocab_warm_start_benchmark -- --table_mib=64
"""

import os
import shutil
import sys
import tempfile
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np

from benchmarks import measured

_TABLE_MIB = flags.DEFINE_integer("table_mib", 1024, "Table size in MiB.")
_DIM = flags.DEFINE_integer("dim", 64, "Columns of the table.")
_PARTITIONS = flags.DEFINE_integer(
  "partitions", 8, "Partitions of the table, in the source and the model."
)
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs per side (fastest kept).")
_LAYOUTS = flags.DEFINE_list(
  "layouts", ["var_list", "stock_parts"], "Source layouts to compare."
)
# Internal: one measured run.
_CHILD = flags.DEFINE_enum(
  "child", None, ["stock", "ours"], "Run one warm start (internal)."
)
_SOURCE = flags.DEFINE_string("source", None, "Checkpoint (internal).")
_WORK = flags.DEFINE_string("work", None, "Vocabulary dir (internal).")

_NAME = "emb"


def _rows() -> int:
  return _TABLE_MIB.value * (1 << 20) // (4 * _DIM.value)


def _write_vocabularies(work: str, rows: int) -> None:
  rng = np.random.default_rng(0)
  old = [f"w{i}" for i in range(rows)]
  new = list(np.array(old, dtype=object)[rng.permutation(rows)])
  for i in rng.choice(rows, size=rows // 100, replace=False):
    new[i] = f"new{i}"
  for name, words in (("old", old), ("new", new)):
    with open(os.path.join(work, f"{name}.txt"), "w") as f:
      f.write("\n".join(words) + "\n")


def _write_sources(work: str, rows: int) -> Dict[str, str]:
  """TF1 original and the other layouts; name -> model dir."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf

  import estimator_ckpt

  tf1 = tf.compat.v1
  sources = {}
  with tf.Graph().as_default():
    table = tf1.get_variable(
      _NAME,
      shape=[rows, _DIM.value],
      initializer=tf1.random_uniform_initializer(seed=1),
      partitioner=tf1.fixed_size_partitioner(_PARTITIONS.value),
    )
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      tf1_dir = os.path.join(work, "tf1")
      prefix = tf1.train.Saver().save(sess, os.path.join(tf1_dir, "model.ckpt"))
      sources["tf1"] = tf1_dir
      if "stock_parts" in _LAYOUTS.value:
        stock = tf.train.Checkpoint(var_list={v.op.name: v for v in table})
        stock.save(os.path.join(work, "stock_parts", "ckpt"))
        sources["stock_parts"] = os.path.join(work, "stock_parts")
  if "var_list" in _LAYOUTS.value:
    converted = estimator_ckpt.convert(
      prefix, os.path.join(work, "var_list"), to="tf2"
    )
    sources["var_list"] = os.path.dirname(converted)
  return sources


def _child() -> None:
  """One warm start into a fresh graph, then the initialisers."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf

  import estimator_ckpt

  tf1 = tf.compat.v1
  work = _WORK.value
  rows = _rows()
  info = tf.estimator.VocabInfo(
    new_vocab=os.path.join(work, "new.txt"),
    new_vocab_size=rows,
    num_oov_buckets=0,
    old_vocab=os.path.join(work, "old.txt"),
  )
  with tf.Graph().as_default():
    tf1.get_variable(
      _NAME,
      shape=[rows, _DIM.value],
      initializer=tf1.zeros_initializer(),
      partitioner=tf1.fixed_size_partitioner(_PARTITIONS.value),
    )
    if _CHILD.value == "stock":
      tf1.train.warm_start(
        _SOURCE.value,
        vars_to_warm_start=[_NAME],
        var_name_to_vocab_info={_NAME: info},
      )
    else:
      estimator_ckpt.warm_start(_SOURCE.value, vocab_info={_NAME: info})
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())


def _measure(kind: str, source: str, work: str) -> Tuple[float, int]:
  command = [
    sys.executable,
    os.path.abspath(__file__),
    f"--child={kind}",
    f"--source={source}",
    f"--work={work}",
    f"--table_mib={_TABLE_MIB.value}",
    f"--dim={_DIM.value}",
    f"--partitions={_PARTITIONS.value}",
  ]
  runs = [
    measured.run(command, env=measured.python_path_env())
    for _ in range(_REPEATS.value)
  ]
  return min(r[0] for r in runs), min(r[1] for r in runs)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  if _CHILD.value:
    _child()
    return
  rows = _rows()
  work = tempfile.mkdtemp(prefix="vocab_warm_start_benchmark_")
  try:
    _write_vocabularies(work, rows)
    sources = _write_sources(work, rows)
    stock_seconds, stock_rss = _measure("stock", sources["tf1"], work)
    lines: List[str] = [
      f"vocab warm start of a {_TABLE_MIB.value} MiB table [{rows}, "
      f"{_DIM.value}] in {_PARTITIONS.value} partitions (fastest of "
      f"{_REPEATS.value}; target: ours / stock <= 1.2x)",
      f"{'source':<34} {'time s':>8} {'peak RSS MB':>12} {'time x':>7} "
      f"{'RSS x':>7}",
      f"{'stock, from TF1':<34} {stock_seconds:8.2f} "
      f"{stock_rss / 2**20:12.0f} {1:7.2f} {1:7.2f}",
    ]
    for layout in ["tf1"] + list(_LAYOUTS.value):
      seconds, rss = _measure("ours", sources[layout], work)
      lines.append(
        f"{'estimator_ckpt, from ' + layout:<34} {seconds:8.2f} "
        f"{rss / 2**20:12.0f} {seconds / stock_seconds:7.2f} "
        f"{rss / stock_rss:7.2f}"
      )
    print("\n".join(lines))
  finally:
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
