r"""Benchmarks checkpoint conversion against `cp -r` and the guide's converter.

  bazel run //benchmarks:convert_benchmark -- [--size_mb=2048] [--repeats=3]

Builds an Estimator-style TF1 checkpoint (one 4-part partitioned table plus
1,000 small variables, `--size_mb` in all) and a tiny one, then measures, in
one run and interleaved:

- `cp -r` of the model dir, and `cp -r` followed by `sync -f` (the tools
  fsync what they write; `cp` does not);
- the convert binary (to TF2, a subprocess as users run it), whose fixed
  start-up is its time on the tiny checkpoint;
- the same with `--link`;
- `convert()` in-process (no start-up at all);
- the guide's `convert_tf1_to_tf2` (a subprocess; its start-up, mostly
  importing TensorFlow, measured the same way);
- peak RSS of each subprocess (`wait4`), tiny vs large.

Reports medians of `--repeats` runs. Timings on a shared machine are noisy;
the page cache is warm for every contender (the source was just written).
Not a test: nothing here asserts a time.
"""

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging

from benchmarks import synthetic
import estimator_ckpt

_SIZE_MB = flags.DEFINE_integer(
    "size_mb", 2048, "Size of the large checkpoint's table, in MiB.",
    lower_bound=1)
_REPEATS = flags.DEFINE_integer("repeats", 3, "Runs per measurement.",
                                lower_bound=1)
_SKIP_GUIDE = flags.DEFINE_bool(
    "skip_guide", False, "Do not run the guide's converter (it needs about "
    "3.3x the checkpoint size in RAM).")
_WORK_DIR = flags.DEFINE_string(
    "work_dir", None, "Where to write checkpoints (default: a new temporary "
    "directory, removed at the end).")

# The guide's convert_tf1_to_tf2 ("Migrating model checkpoints"), verbatim.
_GUIDE_CONVERTER = """
import sys
import tensorflow as tf

def convert_tf1_to_tf2(checkpoint_path, output_prefix):
  vars = {}
  reader = tf.train.load_checkpoint(checkpoint_path)
  dtypes = reader.get_variable_to_dtype_map()
  for key in dtypes.keys():
    vars[key] = tf.Variable(reader.get_tensor(key))
  return tf.train.Checkpoint(vars=vars).save(output_prefix)

convert_tf1_to_tf2(sys.argv[1], sys.argv[2])
"""


def _run(command: Sequence[str], env=None) -> Tuple[float, int]:
  """Runs a command; returns (wall seconds, peak RSS in bytes)."""
  start = time.monotonic()
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, env=env)
  _, status, usage = os.wait4(process.pid, 0)
  elapsed = time.monotonic() - start
  stderr = process.stderr.read().decode(errors="replace")
  process.stderr.close()
  if os.waitstatus_to_exitcode(status) != 0:
    raise RuntimeError(f"{command[:3]} failed:\n{stderr[-2000:]}")
  return elapsed, usage.ru_maxrss * 1024  # Linux reports KiB.


def _settle() -> None:
  """Flushes earlier runs' dirty pages so they do not slow the next one."""
  os.sync()
  time.sleep(0.5)


class _Bench:
  """Runs each contender `repeats` times, interleaved, and keeps medians."""

  def __init__(self, work: str, repeats: int):
    self._work = work
    self._repeats = repeats
    self.times: Dict[str, List[float]] = {}
    self.rss: Dict[str, int] = {}

  def _output(self) -> str:
    path = os.path.join(self._work, "out")
    if os.path.exists(path):
      shutil.rmtree(path)
    return path

  def measure(self, contenders: Dict[str, Callable[[str], Tuple[float, int]]]
              ) -> None:
    for _ in range(self._repeats):
      for name, run in contenders.items():
        output = self._output()
        _settle()
        seconds, rss = run(output)
        self.times.setdefault(name, []).append(seconds)
        self.rss[name] = max(self.rss.get(name, 0), rss)
        shutil.rmtree(output, ignore_errors=True)
        if os.path.exists(output + ".ckpt"):
          shutil.rmtree(output + ".ckpt", ignore_errors=True)

  def median(self, name: str) -> float:
    return statistics.median(self.times[name])


def _size_mib(path: str) -> float:
  total = 0
  for directory, _, names in os.walk(path):
    total += sum(os.path.getsize(os.path.join(directory, n)) for n in names)
  return total / 2**20


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # No progress lines in the table.
  work = _WORK_DIR.value or tempfile.mkdtemp(prefix="convert-benchmark-")
  os.makedirs(work, exist_ok=True)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = {**os.environ, "PYTHONPATH": root, "TF_CPP_MIN_LOG_LEVEL": "3"}
  convert_cli = [sys.executable, "-m", "estimator_ckpt.convert_main"]
  try:
    print(f"Writing checkpoints under {work} ...", flush=True)
    tiny = os.path.join(work, "tiny")
    large = os.path.join(work, "large")
    synthetic.write_estimator_checkpoint(tiny, table_bytes=64 << 10)
    large_prefix = synthetic.write_estimator_checkpoint(
        large, table_bytes=_SIZE_MB.value << 20)
    size = _size_mib(large)

    bench = _Bench(work, _REPEATS.value)
    contenders = {
        "cp -r": lambda out: _run(["cp", "-r", large, out]),
        "cp -r + sync": lambda out: _run(
            ["sh", "-c", f'cp -r "{large}" "{out}" && sync -f "{out}"']),
        "convert CLI, tiny": lambda out: _run(
            convert_cli + ["--to=tf2", tiny, out], env),
        "convert CLI": lambda out: _run(
            convert_cli + ["--to=tf2", large, out], env),
        "convert CLI --link": lambda out: _run(
            convert_cli + ["--to=tf2", "--link", large, out], env),
    }

    def in_process(out: str, link: bool = False) -> Tuple[float, int]:
      start = time.monotonic()
      estimator_ckpt.convert(large, out, to="tf2", link=link)
      return time.monotonic() - start, 0

    contenders["convert() in-process"] = in_process
    contenders["convert(link=True) in-process"] = (
        lambda out: in_process(out, link=True))
    if not _SKIP_GUIDE.value:
      guide = [sys.executable, "-c", _GUIDE_CONVERTER]
      contenders["guide, tiny"] = lambda out: _run(
          guide + [tiny, os.path.join(out, "ckpt")], env)
      contenders["guide"] = lambda out: _run(
          guide + [large, os.path.join(out, "ckpt")], env)
    bench.measure(contenders)

    cp = bench.median("cp -r")
    cp_sync = bench.median("cp -r + sync")
    startup = bench.median("convert CLI, tiny")
    cli = bench.median("convert CLI") - startup
    link = bench.median("convert CLI --link") - startup
    library = bench.median("convert() in-process")
    library_link = bench.median("convert(link=True) in-process")
    rss_tiny = bench.rss["convert CLI, tiny"]
    rss_large = bench.rss["convert CLI"]

    lines = [
        "",
        f"checkpoint: {large_prefix}, {size:.0f} MiB (4-part table + 1,000 "
        f"small variables); medians of {_REPEATS.value} runs, interleaved",
        "",
        f"{'':34}{'seconds':>9}{'vs cp -r':>10}{'peak RSS':>11}",
        f"{'cp -r':34}{cp:9.2f}{1:10.2f}{'':>11}",
        f"{'cp -r + sync':34}{cp_sync:9.2f}{cp_sync / cp:10.2f}{'':>11}",
        f"{'convert CLI start-up (tiny ckpt)':34}{startup:9.2f}{'':>10}"
        f"{rss_tiny / 2**20:8.0f} MB",
        f"{'convert CLI, beyond start-up':34}{cli:9.2f}{cli / cp:10.2f}"
        f"{rss_large / 2**20:8.0f} MB",
        f"{'convert() in-process':34}{library:9.2f}{library / cp:10.2f}",
        f"{'convert CLI --link, total':34}"
        f"{bench.median('convert CLI --link'):9.2f}{'':>10}"
        f"{bench.rss['convert CLI --link'] / 2**20:8.0f} MB",
        f"{'convert CLI --link, beyond start':34}{link:9.2f}"
        f"{link / cp:10.2f}",
        f"{'convert(link=True) in-process':34}{library_link:9.2f}"
        f"{library_link / cp:10.2f}",
    ]
    if not _SKIP_GUIDE.value:
      guide_startup = bench.median("guide, tiny")
      guide = bench.median("guide") - guide_startup
      lines += [
          f"{'guide start-up (tiny ckpt)':34}{guide_startup:9.2f}{'':>10}"
          f"{bench.rss['guide, tiny'] / 2**20:8.0f} MB",
          f"{'guide, beyond start-up':34}{guide:9.2f}{guide / cp:10.2f}"
          f"{bench.rss['guide'] / 2**20:8.0f} MB",
          "",
          f"guide / convert CLI (beyond start-up): {guide / cli:.1f}x time, "
          f"{bench.rss['guide'] / rss_large:.1f}x peak RSS",
      ]
    lines += [
        f"targets: convert beyond start-up <= 1.5x cp -r: "
        f"{'met' if cli <= 1.5 * cp else 'NOT met'} ({cli / cp:.2f}x; "
        f"{cli / cp_sync:.2f}x of cp -r + sync)",
        f"         peak RSS large - tiny < 64 MB: "
        f"{'met' if rss_large - rss_tiny < 64 << 20 else 'NOT met'} "
        f"({(rss_large - rss_tiny) / 2**20:+.1f} MB)",
        f"         --link under 1 s: {'met' if link < 1 else 'NOT met'} "
        f"({link:.2f} s beyond start-up)",
        f"benchmark process peak RSS: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} "
        "MB",
    ]
    print("\n".join(line.rstrip() for line in lines))
  finally:
    if _WORK_DIR.value is None:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
