r"""`load_weights` against Keras's own `model.load_weights`, side by side.

Issue 13's benchmark: a 2 GiB Estimator checkpoint (a 4-part embedding table
and 1,000 small variables, each with its Adagrad slot, and `global_step`)
loaded by `estimator_ckpt.load_weights` into the matching Keras model and
Adagrad, against `model.load_weights` of the same values from the model's
own checkpoint (`model.save_weights`, optimizer included). Target: at most
1.2x its time and 1.2x its peak RSS.

  bazel run //benchmarks:keras_load_benchmark
  bazel run //benchmarks:keras_load_benchmark -- --table_mib=64 --repeats=1

Each load runs in a fresh process that builds the model and the optimizer's
state (the same in both) and then loads; the time is the load call's, the
peak RSS the whole process's (the model's variables are in both). Runs
alternate which contender goes first; the fastest time and the largest peak
RSS of each count. This process imports no TensorFlow: it writes the TF1
checkpoint itself (`bundle`) and starts every TensorFlow process fresh from
a small launcher, so no child inherits its memory in `ru_maxrss`.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np

from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import dtypes
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.format import tensor_slice

_TABLE_MIB = flags.DEFINE_integer(
  "table_mib",
  1024,
  "Size of the table; its Adagrad slot is as large again (default: a 2 GiB "
  "checkpoint).",
  lower_bound=1,
)
_NUM_SMALL = flags.DEFINE_integer(
  "num_small", 1000, "Small [16, 16] variables.", lower_bound=0
)
_REPEATS = flags.DEFINE_integer(
  "repeats", 3, "Runs of each contender.", lower_bound=1
)
_WORK_DIR = flags.DEFINE_string(
  "work_dir",
  None,
  "Where to write the checkpoints (default: a new temporary directory, "
  "removed at the end).",
)
# Internal: what a child process does.
_CHILD = flags.DEFINE_enum(
  "child", None, ["save_native", "ours", "native"], "Internal."
)
_TF1_PREFIX = flags.DEFINE_string("tf1_prefix", None, "Internal.")
_NATIVE_PREFIX = flags.DEFINE_string("native_prefix", None, "Internal.")
_MEASURED = flags.DEFINE_string("measured", None, "Internal.")

_DIM = 64
_PARTITIONS = 4
_STEP = 1000
_ACCUMULATOR = "Adagrad"
_FLOAT32 = dtypes.DTYPES[1]
_INT64 = dtypes.DTYPES[9]
_CHUNK_ELEMENTS = 4 << 20

# Runs a command in a child forked from this small launcher and writes the
# load time it prints and its peak RSS to argv[1]. Linux counts in a child's
# ru_maxrss the memory of the process it was forked from (until exec), so
# the launcher, not this benchmark, forks it.
_LAUNCHER = """
import os, subprocess, sys
pid = os.fork()
if pid == 0:
  os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "a") as f:
  f.write(f" {usage.ru_maxrss * 1024}")
sys.exit(1 if os.waitstatus_to_exitcode(status) else 0)
"""


def _entry(dtype, shape, offset, size, crc) -> protos.BundleEntryProto:
  entry = protos.BundleEntryProto(
    dtype=dtype.enum, offset=offset, size=size, crc32c=crc32c.mask(crc)
  )
  for dim in shape:
    entry.shape.dim.add(size=dim)
  return entry


def table_rows(table_mib: int) -> int:
  return max(_PARTITIONS, (table_mib << 20) // (4 * _DIM))


def write_tf1_checkpoint(model_dir: str, table_mib: int, num_small: int) -> str:
  """A TF1 Saver's checkpoint of the model after Adagrad steps.

  `embedding` [rows, 64] in 4 slices and its slot `embedding/Adagrad`,
  `small/kernel_<i>` [16, 16] and `small/kernel_<i>/Adagrad`, `global_step`;
  pseudo-random values, written in 16 MiB chunks.
  """
  os.makedirs(model_dir, exist_ok=True)
  prefix = os.path.join(model_dir, f"model.ckpt-{_STEP}")
  rng = np.random.default_rng(0)
  rows = table_rows(table_mib)
  entries: List[Tuple[bytes, protos.BundleEntryProto]] = []
  offset = 0
  with open(bundle.data_filename(prefix, 0, 1), "wb") as data:

    def add(key: str, dtype, values: np.ndarray) -> None:
      nonlocal offset
      raw = np.ascontiguousarray(values).tobytes()
      data.write(raw)
      entry = _entry(dtype, values.shape, offset, len(raw), crc32c.crc32c(raw))
      entries.append((key.encode(), entry))
      offset += len(raw)

    def add_table(key: str) -> None:
      nonlocal offset
      table = protos.BundleEntryProto(dtype=_FLOAT32.enum)
      table.shape.dim.add(size=rows)
      table.shape.dim.add(size=_DIM)
      start = 0
      for part in range(_PARTITIONS):
        part_rows = rows // _PARTITIONS + (part < rows % _PARTITIONS)
        part_slice = tensor_slice.TensorSlice(((start, part_rows), (0, _DIM)))
        part_slice.to_proto(table.slices.add())
        crc, size, remaining = 0, 0, part_rows * _DIM
        while remaining:
          count = min(remaining, _CHUNK_ELEMENTS)
          raw = rng.random(count, dtype=np.float32).tobytes()
          data.write(raw)
          crc = crc32c.crc32c(raw, crc)
          size += len(raw)
          remaining -= count
        entries.append(
          (
            tensor_slice.slice_key(key.encode(), part_slice),
            _entry(_FLOAT32, [part_rows, _DIM], offset, size, crc),
          )
        )
        offset += size
        start += part_rows
      entries.append((key.encode(), table))

    add("global_step", _INT64, np.array(_STEP, np.int64))
    add_table("embedding")
    add_table(f"embedding/{_ACCUMULATOR}")
    for i in range(num_small):
      add(f"small/kernel_{i}", _FLOAT32, rng.random((16, 16), np.float32))
      # Accumulators are positive (0.1 plus squared gradients).
      accumulator = 0.1 + rng.random((16, 16), np.float32)
      add(f"small/kernel_{i}/{_ACCUMULATOR}", _FLOAT32, accumulator)
  header = protos.BundleHeaderProto(num_shards=1)
  header.version.producer = bundle.BUNDLE_VERSION
  with open(bundle.index_filename(prefix), "wb") as f:
    f.write(bundle.encode_index(header, sorted(entries, key=lambda e: e[0])))
  with open(os.path.join(model_dir, state_file.STATE_FILENAME), "wb") as f:
    f.write(state_file.encode([prefix]))
  return prefix


def _build(rows: int, num_small: int):
  """The matching Keras model and Adagrad, state built (in the child)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class Small(tf.keras.layers.Layer):
    """`num_small` [16, 16] kernels, named `small/kernel_<i>`."""

    def build(self, input_shape):
      self.kernels = [
        self.add_weight(f"kernel_{i}", [16, 16], initializer="zeros")
        for i in range(num_small)
      ]

    def call(self, inputs):
      return inputs + sum(tf.reduce_sum(k) for k in self.kernels[:1])

  ids = tf.keras.Input([], dtype=tf.int64)
  net = tf.keras.layers.Embedding(
    rows, _DIM, embeddings_initializer="zeros", name="embedding"
  )(ids)
  model = tf.keras.Model(ids, Small(name="small")(net))
  optimizer = tf.keras.optimizers.Adagrad(0.1, epsilon=0.0)
  model.compile(optimizer=optimizer, loss="mse")
  optimizer.build(model.trainable_variables)
  return model, optimizer


def _child(mode: str, rows: int, num_small: int) -> float:
  """Builds the model, loads as `mode`; returns the load's seconds."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  import estimator_ckpt  # pylint: disable=g-import-not-at-top

  model, optimizer = _build(rows, num_small)
  rename = {"embedding/embeddings": "embedding"}
  if mode == "save_native":
    estimator_ckpt.load_weights(
      model, _TF1_PREFIX.value, optimizer=optimizer, rename=rename
    )
    model.save_weights(_NATIVE_PREFIX.value)
    return 0.0
  start = time.monotonic()
  if mode == "ours":
    estimator_ckpt.load_weights(
      model, _TF1_PREFIX.value, optimizer=optimizer, rename=rename
    )
  else:
    model.load_weights(_NATIVE_PREFIX.value).assert_consumed()
  seconds = time.monotonic() - start
  # Both must have loaded the same values.
  table = model.get_layer("embedding").embeddings
  if float(tf.reduce_sum(table[:2])) == 0.0:
    raise RuntimeError(f"{mode}: the table was not loaded.")
  return seconds


def _run(args: Sequence[str]) -> Tuple[float, int]:
  """Runs this binary as a child; returns (load seconds, peak RSS bytes)."""
  with tempfile.NamedTemporaryFile("r", suffix=".measured") as measured:
    result = subprocess.run(
      [
        sys.executable,
        "-c",
        _LAUNCHER,
        measured.name,
        sys.executable,
        os.path.abspath(__file__),
        *args,
        f"--measured={measured.name}",
      ],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
      check=False,
    )
    if result.returncode != 0:
      raise RuntimeError(
        f"{args[0]} failed:\n{result.stderr.decode(errors='replace')[-3000:]}"
      )
    seconds, rss = measured.read().split()
  return float(seconds), int(rss)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  rows = table_rows(_TABLE_MIB.value)
  if _CHILD.value:
    seconds = _child(_CHILD.value, rows, _NUM_SMALL.value)
    with open(_MEASURED.value, "w") as f:
      f.write(f"{seconds}")
    return
  work_dir = _WORK_DIR.value or tempfile.mkdtemp(prefix="keras_load_bench-")
  try:
    _benchmark(work_dir, rows)
  finally:
    if not _WORK_DIR.value:
      shutil.rmtree(work_dir, ignore_errors=True)


def _benchmark(work_dir: str, rows: int) -> None:
  start = time.monotonic()
  tf1_prefix = write_tf1_checkpoint(
    os.path.join(work_dir, "estimator"), _TABLE_MIB.value, _NUM_SMALL.value
  )
  size = sum(
    os.path.getsize(os.path.join(os.path.dirname(tf1_prefix), name))
    for name in os.listdir(os.path.dirname(tf1_prefix))
  )
  native_prefix = os.path.join(work_dir, "keras", "weights")
  common = [
    f"--tf1_prefix={tf1_prefix}",
    f"--native_prefix={native_prefix}",
    f"--table_mib={_TABLE_MIB.value}",
    f"--num_small={_NUM_SMALL.value}",
  ]
  _run(["--child=save_native", *common])
  print(
    f"checkpoints: TF1 {size / 2**30:.2f} GiB ({rows:,} x {_DIM} table in "
    f"{_PARTITIONS} parts, {_NUM_SMALL.value} small variables, Adagrad "
    f"slots), Keras native written ({time.monotonic() - start:.0f} s)",
    flush=True,
  )
  times: Dict[str, List[float]] = {"ours": [], "native": []}
  rss: Dict[str, List[int]] = {"ours": [], "native": []}
  for repeat in range(_REPEATS.value):
    order = ("ours", "native") if repeat % 2 == 0 else ("native", "ours")
    for mode in order:
      os.sync()
      seconds, peak = _run([f"--child={mode}", *common])
      times[mode].append(seconds)
      rss[mode].append(peak)
      print(
        f"  run {repeat + 1} {mode:6s}  load {seconds:7.3f} s  "
        f"peak RSS {peak / 2**30:6.2f} GiB",
        flush=True,
      )
  fastest = {mode: min(values) for mode, values in times.items()}
  peak = {mode: max(values) for mode, values in rss.items()}
  print(
    f"\n{'':28s}{'load s (fastest)':>18s}{'peak RSS GiB (max)':>20s}\n"
    f"{'model.load_weights (native)':28s}{fastest['native']:18.3f}"
    f"{peak['native'] / 2**30:20.2f}\n"
    f"{'estimator_ckpt.load_weights':28s}{fastest['ours']:18.3f}"
    f"{peak['ours'] / 2**30:20.2f}\n"
    f"{'ratio (target <= 1.2x)':28s}"
    f"{fastest['ours'] / fastest['native']:17.2f}x"
    f"{peak['ours'] / peak['native']:19.2f}x"
  )


if __name__ == "__main__":
  app.run(main)
