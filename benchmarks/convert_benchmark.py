r"""Benchmarks checkpoint conversion against `cp -r` and the guide's converter.

  bazel run //benchmarks:convert_benchmark -- [--size_mb=2048] [--repeats=3]

Builds an Estimator-style TF1 checkpoint (one 4-part partitioned table plus
1,000 small variables, `--size_mb` in all) and a tiny one, then measures, in
one run and interleaved:

- `cp -r` of the model dir, and `cp -r` followed by `sync -f` (the tools
  fsync what they write; `cp` does not);
- the disk's durable write floor: `dd` writing as many bytes with O_DIRECT
  and an fsync, no reading;
- the convert binary (to TF2, a subprocess as users run it), whose fixed
  start-up is its time on the tiny checkpoint;
- the same with `--link`;
- `convert()` in-process (no start-up at all);
- the guide's `convert_tf1_to_tf2` (a subprocess; its start-up, mostly
  importing TensorFlow, measured the same way);
- peak RSS of each subprocess (`wait4`), tiny vs large.

Reports the fastest and the median of `--repeats` runs; ratios and targets
use the fastest, each contender's time undisturbed by the rest of this shared
machine. The page cache is warm for every contender (the source was just
written), and so is the VM's memory (see `_Bench._warm_memory`).
Peak RSS is each command's own (see `measured.py`). Not a test: nothing here
asserts a time.
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging

import estimator_ckpt

from benchmarks import measured
from benchmarks import synthetic

_SIZE_MB = flags.DEFINE_integer(
  "size_mb",
  2048,
  "Size of the large checkpoint's table, in MiB.",
  lower_bound=1,
)
_REPEATS = flags.DEFINE_integer(
  "repeats", 3, "Runs per measurement.", lower_bound=1
)
_SKIP_GUIDE = flags.DEFINE_bool(
  "skip_guide",
  False,
  "Do not run the guide's converter (it needs about "
  "3.3x the checkpoint size in RAM).",
)
_WORK_DIR = flags.DEFINE_string(
  "work_dir",
  None,
  "Where to write checkpoints (default: a new temporary "
  "directory, removed at the end).",
)


def _settle() -> None:
  """Flushes earlier runs' dirty pages so they do not slow the next one."""
  os.sync()
  time.sleep(0.5)


class _Bench:
  """Runs each contender `repeats` times, interleaved; keeps times, peak RSS."""

  def __init__(self, work: str, repeats: int, warm_source: str):
    self._work = work
    self._repeats = repeats
    self._warm_source = warm_source
    self.times: Dict[str, List[float]] = {}
    self.rss: Dict[str, int] = {}

  def _output(self) -> str:
    path = os.path.join(self._work, "out")
    if os.path.exists(path):
      shutil.rmtree(path)
    return path

  def measure(
    self, contenders: Dict[str, Callable[[str], Tuple[float, int]]]
  ) -> None:
    for _ in range(self._repeats):
      for name, run in contenders.items():
        output = self._output()
        self._warm_memory()
        _settle()
        seconds, rss = run(output)
        self.times.setdefault(name, []).append(seconds)
        self.rss[name] = max(self.rss.get(name, 0), rss)
        shutil.rmtree(output, ignore_errors=True)
        if os.path.exists(output + ".ckpt"):
          shutil.rmtree(output + ".ckpt", ignore_errors=True)

  def _warm_memory(self) -> None:
    """Copies the source and deletes the copy, untimed.

    On this VM, memory the guest has not touched lately is slow to touch (it
    comes back from the host): a 2 GiB `cp -r` took 28 s, then 2.9 s, then
    0.74 s when repeated. Without this, whatever ran before (an O_DIRECT
    conversion fills no page cache) would decide how fast the next
    page-cache writer is. It does not remove the noise: the fastest of five
    `cp -r` of 2 GiB still ranged from 0.58 s to 1.86 s between runs.
    """
    scratch = os.path.join(self._work, "warm")
    subprocess.run(["cp", "-r", self._warm_source, scratch], check=True)
    shutil.rmtree(scratch)

  def median(self, name: str) -> float:
    return statistics.median(self.times[name])

  def fastest(self, name: str) -> float:
    return min(self.times[name])


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
      large, table_bytes=_SIZE_MB.value << 20
    )
    size = _size_mib(large)

    bench = _Bench(work, _REPEATS.value, warm_source=large)

    def disk_write_floor(out: str) -> Tuple[float, int]:
      """The disk's durable write speed, O_DIRECT then fsync.

      As many bytes, from memory; buffered where the file system refuses
      O_DIRECT.
      """
      block_mib = 8 if size >= 64 else 1
      dd = (
        f'dd if=/dev/zero of="{out}/zeros" bs={block_mib}M '
        f"count={max(1, round(size / block_mib))} conv=fsync status=none"
      )
      return measured.run(
        [
          "sh",
          "-c",
          f'mkdir "{out}" && {{ {dd} oflag=direct 2>/dev/null || {dd}; }}',
        ]
      )

    contenders = {
      "cp -r": lambda out: measured.run(["cp", "-r", large, out]),
      "cp -r + sync": lambda out: measured.run(
        ["sh", "-c", f'cp -r "{large}" "{out}" && sync -f "{out}"']
      ),
      "disk write floor": disk_write_floor,
      "convert CLI, tiny": lambda out: measured.run(
        convert_cli + ["--to=tf2", tiny, out], env
      ),
      "convert CLI": lambda out: measured.run(
        convert_cli + ["--to=tf2", large, out], env
      ),
      "convert CLI --link": lambda out: measured.run(
        convert_cli + ["--to=tf2", "--link", large, out], env
      ),
    }

    def in_process(out: str, link: bool = False) -> Tuple[float, int]:
      start = time.monotonic()
      estimator_ckpt.convert(large, out, to="tf2", link=link)
      return time.monotonic() - start, 0

    contenders["convert() in-process"] = in_process
    contenders["convert(link=True) in-process"] = lambda out: in_process(
      out, link=True
    )
    if not _SKIP_GUIDE.value:
      # The guide's convert_tf1_to_tf2: examples/guide/converter.py.
      guide = [sys.executable, "-m", "examples.guide.converter"]
      contenders["guide, tiny"] = lambda out: measured.run(
        guide + [tiny, os.path.join(out, "ckpt")], env
      )
      contenders["guide"] = lambda out: measured.run(
        guide + [large, os.path.join(out, "ckpt")], env
      )
    bench.measure(contenders)

    cp = bench.fastest("cp -r")
    startup = bench.fastest("convert CLI, tiny")
    cli = bench.fastest("convert CLI") - startup
    link = bench.fastest("convert CLI --link") - startup
    cp_sync = bench.fastest("cp -r + sync")
    floor = bench.fastest("disk write floor")
    rss_tiny = bench.rss["convert CLI, tiny"]
    rss_large = bench.rss["convert CLI"]

    lines = [
      "",
      f"checkpoint: {large_prefix}, {size:.0f} MiB (4-part table + 1,000 "
      f"small variables); {_REPEATS.value} runs each, interleaved",
      "",
      f"{'':34}{'fastest':>9}{'median':>9}{'vs cp -r':>10}{'peak RSS':>11}",
    ]

    def row(
      label: str, name: str, minus: Optional[str] = None, ratio: bool = True
    ) -> None:
      """One contender's line; `minus`: a start-up contender to subtract."""
      offset = bench.fastest(minus) if minus else 0.0
      fastest = bench.fastest(name) - offset
      median = bench.median(name) - (bench.median(minus) if minus else 0.0)
      rss = bench.rss.get(name, 0)
      lines.append(
        f"{label:34}{fastest:9.2f}{median:9.2f}"
        f"{f'{fastest / cp:10.2f}' if ratio else '':>10}"
        f"{f'{rss / 2**20:8.0f} MB' if rss else '':>11}"
      )

    row("cp -r", "cp -r")
    row("cp -r + sync", "cp -r + sync")
    row("disk write floor (dd O_DIRECT)", "disk write floor")
    row("convert CLI start-up (tiny ckpt)", "convert CLI, tiny", ratio=False)
    row("convert CLI, beyond start-up", "convert CLI", "convert CLI, tiny")
    row("convert() in-process", "convert() in-process")
    row(
      "convert CLI --link, beyond start",
      "convert CLI --link",
      "convert CLI, tiny",
    )
    row("convert(link=True) in-process", "convert(link=True) in-process")
    if not _SKIP_GUIDE.value:
      row("guide start-up (tiny ckpt)", "guide, tiny", ratio=False)
      row("guide, beyond start-up", "guide", "guide, tiny")
      guide = bench.fastest("guide") - bench.fastest("guide, tiny")
      lines += [
        "",
        f"guide / convert CLI (beyond start-up): {guide / cli:.1f}x time, "
        f"{bench.rss['guide'] / rss_large:.1f}x peak RSS",
      ]
    lines += [
      "",
      f"targets (fastest runs): convert beyond start-up <= 1.5x cp -r: "
      f"{'met' if cli <= 1.5 * cp else 'NOT met'} ({cli / cp:.2f}x; "
      f"{cli / cp_sync:.2f}x of cp -r + sync)",
      f"  durable writes: the disk alone takes {floor / cp:.2f}x cp -r to "
      f"write as many bytes; convert takes {cli / floor:.2f}x that",
      f"  peak RSS, large - tiny checkpoint < 64 MB: "
      f"{'met' if rss_large - rss_tiny < 64 << 20 else 'NOT met'} "
      f"({(rss_large - rss_tiny) / 2**20:+.1f} MB)",
      f"  --link under 1 s: {'met' if link < 1 else 'NOT met'} "
      f"({link:.2f} s beyond start-up)",
    ]
    print("\n".join(line.rstrip() for line in lines))
  finally:
    if _WORK_DIR.value is None:
      shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
  app.run(main)
