r"""Benchmarks conversion to and from an object store against gfile.copy.

  bazel run //benchmarks:remote_benchmark -- [--store=s3|gcs] \
    [--size_mb=1024] [--repeats=1]

Writes an Estimator-style TF1 checkpoint (a 4-part partitioned table plus
1,000 small variables, `--size_mb` in all) and a tiny one, starts the store's
server on loopback (`--store=s3`: moto, benchmarks/s3_server.py, with
tensorflow-io 0.36.0 as the client; `--store=gcs`: fake-gcs-server behind a
TLS proxy, benchmarks/gcs_server.py, with TensorFlow's own GCS client) and
measures, in one run, in each direction:

- `estimator_ckpt.convert(..., to="tf2")` local -> store and store -> local;
- `tf.io.gfile.copy` of the same files in the same direction (the TF1 source
  files; the conversion writes as many bytes plus a small object graph);

both timed in this process, interleaved, `--repeats` times (fastest kept);
then each once more as a user runs it, in a child process (the convert binary
and benchmarks/gfile_copy.py, the latter through
benchmarks/with_tensorflow_io.py: plain TensorFlow has no s3://), on
the large and on the tiny checkpoint, for peak RSS (each command's own; see
`measured.py`).

Targets (issue 12): conversion throughput at least 0.8x gfile.copy's, and
peak RSS on the large checkpoint within 64 MB of the tiny one's. The server
runs on the same two cores and its cost is in every number; the comparison
with gfile.copy on the same server is the point. Not a test: nothing here
asserts a time.

S3 uploads: tensorflow-io stages each object in a local temporary file and
uploads it when closed, holding up to (S3_EXECUTOR_POOL_SIZE + 1) parts of
S3_MULTI_PART_UPLOAD_CHUNK_SIZE bytes in memory (its defaults, 25 threads and 50
MB parts: a 1 GiB object costs any writer about 1 GB of RSS). The library sets 4
threads and 8 MiB parts where they are unset (`S3_UPLOAD_LIMITS` of
storage/gfile.py). In the child processes each tool runs at its own defaults:
the convert binary at the library's, gfile.copy at tensorflow-io's. The
in-process runs share one setting, fixed at the setup's first upload:
tensorflow-io's defaults. `--s3_upload_chunk_mb` and `--s3_executor_pool_size`
set both variables for every contender instead.
"""

import os
import shutil
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging

from benchmarks import gcs_server
from benchmarks import gfile_copy
from benchmarks import measured
from benchmarks import s3_server
from benchmarks import synthetic

_SIZE_MB = flags.DEFINE_integer(
  "size_mb",
  1024,
  "Size of the large checkpoint's table, in MiB.",
  lower_bound=1,
)
_REPEATS = flags.DEFINE_integer(
  "repeats", 1, "In-process runs per measurement.", lower_bound=1
)
_WORK_DIR = flags.DEFINE_string(
  "work_dir",
  None,
  "Where to write local checkpoints (default: a new temporary directory, "
  "removed at the end).",
)

_STORE = flags.DEFINE_enum(
  "store", "s3", ["s3", "gcs"], "Which object store to run against."
)
_SCHEMES = {"s3": "s3", "gcs": "gs"}
_S3_UPLOAD_CHUNK_MB = flags.DEFINE_integer(
  "s3_upload_chunk_mb",
  0,
  "S3_MULTI_PART_UPLOAD_CHUNK_SIZE for every contender, in MiB (S3's "
  "minimum part is 5 MiB); 0: not set, each tool's default.",
  lower_bound=0,
)
_S3_EXECUTOR_POOL_SIZE = flags.DEFINE_integer(
  "s3_executor_pool_size",
  0,
  "S3_EXECUTOR_POOL_SIZE for every contender; 0: not set, each tool's default.",
  lower_bound=0,
)

_BUCKET = "remote-benchmark"


def _s3_settings() -> Dict[str, str]:
  """The flags' S3 variables (none at their defaults)."""
  settings = {}
  if _S3_UPLOAD_CHUNK_MB.value:
    settings["S3_MULTI_PART_UPLOAD_CHUNK_SIZE"] = str(
      _S3_UPLOAD_CHUNK_MB.value << 20
    )
  if _S3_EXECUTOR_POOL_SIZE.value:
    settings["S3_EXECUTOR_POOL_SIZE"] = str(_S3_EXECUTOR_POOL_SIZE.value)
  return settings


def _child_env() -> Dict[str, str]:
  """This environment for a child, its S3 variables only the flags'.

  The library's in-process conversions set its defaults into os.environ;
  a child must find the variables as a user's shell has them.
  """
  env = dict(measured.python_path_env())
  for variable in ("S3_MULTI_PART_UPLOAD_CHUNK_SIZE", "S3_EXECUTOR_POOL_SIZE"):
    env.pop(variable, None)
  env.update(_s3_settings())
  return env


def _size_mib(path: str) -> float:
  return sum(
    os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
  ) / float(1 << 20)


class _Outputs:
  """Fresh output locations, removed after each run."""

  def __init__(self, work: str, server: Any):
    self._work = work
    self._server = server
    self._count = 0

  def local(self) -> str:
    self._count += 1
    return os.path.join(self._work, f"out-{self._count}")

  def remote(self) -> str:
    self._count += 1
    return f"{_SCHEMES[_STORE.value]}://{_BUCKET}/out-{self._count}"

  def remove(self, path: str) -> None:
    root = f"{_SCHEMES[_STORE.value]}://{_BUCKET}/"
    if path.startswith(root):
      self._server.remove_prefix(_BUCKET, path[len(root) :] + "/")
    else:
      shutil.rmtree(path, ignore_errors=True)


def _measure(server: Any, work: str) -> List[str]:
  """Runs every contender; returns the report's lines."""
  if _STORE.value == "s3":
    import tensorflow_io  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import

  import estimator_ckpt  # pylint: disable=g-import-not-at-top

  tiny = os.path.join(work, "tiny")
  large = os.path.join(work, "large")
  print(f"Writing checkpoints under {work} ...", flush=True)
  synthetic.write_estimator_checkpoint(tiny, table_bytes=64 << 10)
  synthetic.write_estimator_checkpoint(large, table_bytes=_SIZE_MB.value << 20)
  size = _size_mib(large)
  server.create_bucket(_BUCKET)
  store = _SCHEMES[_STORE.value]
  remote = {
    name: f"{store}://{_BUCKET}/source-{name}" for name in ("tiny", "large")
  }
  print(f"Uploading the sources ({store} -> local reads them) ...", flush=True)
  for name, local in (("tiny", tiny), ("large", large)):
    gfile_copy.copy_dir(local, remote[name])
  outputs = _Outputs(work, server)

  def timed(run: Callable[[str], object], output: str) -> float:
    start = time.monotonic()
    run(output)
    seconds = time.monotonic() - start
    outputs.remove(output)
    return seconds

  contenders: Dict[str, Tuple[Callable[[str], object], Callable[[], str]]] = {
    f"gfile.copy local->{store}": (
      lambda out: gfile_copy.copy_dir(large, out),
      outputs.remote,
    ),
    f"convert local->{store}": (
      lambda out: estimator_ckpt.convert(large, out, to="tf2"),
      outputs.remote,
    ),
    f"gfile.copy {store}->local": (
      lambda out: gfile_copy.copy_dir(remote["large"], out),
      outputs.local,
    ),
    f"convert {store}->local": (
      lambda out: estimator_ckpt.convert(remote["large"], out, to="tf2"),
      outputs.local,
    ),
  }
  times: Dict[str, List[float]] = {name: [] for name in contenders}
  for repeat in range(_REPEATS.value):
    for name, (run, output) in contenders.items():
      print(f"  [{repeat + 1}/{_REPEATS.value}] {name} ...", flush=True)
      times[name].append(timed(run, output()))

  # Each as a user runs it, in its own process, for peak RSS.
  commands = {
    "convert CLI": lambda src, dst: [
      sys.executable,
      "-m",
      "estimator_ckpt.convert_main",
      "--to=tf2",
      src,
      dst,
    ],
    "gfile.copy": lambda src, dst: [
      sys.executable,
      "-m",
      "benchmarks.with_tensorflow_io",
      "benchmarks.gfile_copy",
      src,
      dst,
    ],
  }
  rss: Dict[Tuple[str, str, str], Tuple[float, int]] = {}
  for direction in (f"local->{store}", f"{store}->local"):
    for tool, command in commands.items():
      for which in ("tiny", "large"):
        print(f"  {tool} {direction}, {which}, in a child ...", flush=True)
        if direction.startswith("local->"):
          src = tiny if which == "tiny" else large
          dst = outputs.remote()
        else:
          src, dst = remote[which], outputs.local()
        rss[(tool, direction, which)] = measured.run(
          command(src, dst), _child_env()
        )
        outputs.remove(dst)

  lines = [
    "",
    f"checkpoint: {size:.0f} MiB (4-part table + 1,000 small variables), "
    f"{store} = {server.description()} on 127.0.0.1; fastest of "
    f"{_REPEATS.value} in-process run(s)"
    + (
      "; S3 settings: "
      + (
        " ".join(f"{k}={v}" for k, v in _s3_settings().items())
        or "not set (in process: tensorflow-io's defaults; children: each "
        "tool's own)"
      )
      if store == "s3"
      else ""
    ),
    "",
    f"{'':24}{'seconds':>9}{'MB/s':>8}{'vs gfile':>10}",
  ]
  for direction in (f"local->{store}", f"{store}->local"):
    base = min(times[f"gfile.copy {direction}"])
    for tool in ("gfile.copy", "convert"):
      seconds = min(times[f"{tool} {direction}"])
      lines.append(
        f"{tool + ' ' + direction:24}{seconds:9.2f}{size / seconds:8.1f}"
        f"{base / seconds:9.2f}x"
      )
  lines += [
    "",
    "in child processes (wall includes start-up: TensorFlow and "
    "tensorflow-io imports)",
    f"{'':24}{'tiny s':>8}{'large s':>9}{'tiny RSS':>10}{'large RSS':>11}"
    f"{'delta':>9}",
  ]
  for direction in (f"local->{store}", f"{store}->local"):
    for tool in commands:
      tiny_s, tiny_rss = rss[(tool, direction, "tiny")]
      large_s, large_rss = rss[(tool, direction, "large")]
      lines.append(
        f"{tool + ' ' + direction:24}{tiny_s:8.2f}{large_s:9.2f}"
        f"{tiny_rss / 2**20:8.0f}MB{large_rss / 2**20:9.0f}MB"
        f"{(large_rss - tiny_rss) / 2**20:+7.1f}MB"
      )
  lines.append("")
  lines.append("targets:")
  for direction in (f"local->{store}", f"{store}->local"):
    ratio = min(times[f"gfile.copy {direction}"]) / min(
      times[f"convert {direction}"]
    )
    delta = (
      rss[("convert CLI", direction, "large")][1]
      - rss[("convert CLI", direction, "tiny")][1]
    )
    lines.append(
      f"  {direction}: throughput >= 0.8x gfile.copy: "
      f"{'met' if ratio >= 0.8 else 'NOT met'} ({ratio:.2f}x); "
      f"peak RSS large - tiny <= 64 MB: "
      f"{'met' if delta <= 64 << 20 else 'NOT met'} "
      f"({delta / 2**20:+.1f} MB)"
    )
  return lines


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # No progress lines in the table.
  work = _WORK_DIR.value or tempfile.mkdtemp(prefix="remote-benchmark-")
  os.makedirs(work, exist_ok=True)
  status = 0
  try:
    server = (
      s3_server.S3Server() if _STORE.value == "s3" else gcs_server.GcsServer()
    )
    with server:
      # The clients read these at their first transfer.
      os.environ.update(server.environ())
      os.environ.update(_s3_settings())
      print("\n".join(line.rstrip() for line in _measure(server, work)))
  except Exception:  # pylint: disable=broad-except  (reported, exit 1)
    logging.exception("remote_benchmark failed")
    status = 1
  finally:
    if _WORK_DIR.value is None:
      shutil.rmtree(work, ignore_errors=True)
  # This process loaded tensorflow-io, which aborts at exit
  # (tensorflow/io#1912): leave with the benchmark's own status.
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


if __name__ == "__main__":
  app.run(main)
