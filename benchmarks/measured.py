"""Runs a command and measures its own wall time and peak RSS.

The command runs in a child forked from a small launcher process, which
writes the wall time and the child's peak RSS: Linux counts in a child's
ru_maxrss the memory of the process it was forked from (until exec), so a
command started straight from a benchmark (which may have TensorFlow loaded)
would report the benchmark's own peak.
"""

import os
import subprocess
import sys
import tempfile
from typing import AbstractSet, Mapping, Optional, Sequence, Tuple

_LAUNCHER = """
import os, sys, time
if sys.argv[2]:
  os.sched_setaffinity(0, {int(c) for c in sys.argv[2].split(",")})
start = time.monotonic()
pid = os.fork()
if pid == 0:
  os.execvp(sys.argv[3], sys.argv[3:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
  f.write(f"{time.monotonic() - start} {usage.ru_maxrss * 1024}")
sys.exit(1 if os.waitstatus_to_exitcode(status) else 0)
"""


def run(
  command: Sequence[str],
  env: Optional[Mapping[str, str]] = None,
  cpus: Optional[AbstractSet[int]] = None,
) -> Tuple[float, int]:
  """Runs `command`; returns (wall seconds, peak RSS in bytes).

  Args:
    command: The program and its arguments.
    env: Its environment (default: this process's).
    cpus: The CPUs it runs on (default: any), set by the single-threaded
      launcher before it starts the command.

  Raises:
    RuntimeError: The command failed (the end of its stderr is included).
  """
  with tempfile.NamedTemporaryFile("r", suffix=".measured") as measured:
    result = subprocess.run(
      [
        sys.executable,
        "-c",
        _LAUNCHER,
        measured.name,
        ",".join(str(c) for c in sorted(cpus or ())),
        *command,
      ],
      stdout=subprocess.DEVNULL,
      stderr=subprocess.PIPE,
      env=dict(env) if env is not None else None,
      check=False,
    )
    if result.returncode != 0:
      raise RuntimeError(
        f"{' '.join(command[:5])} failed:\n"
        f"{result.stderr.decode(errors='replace')[-2000:]}"
      )
    seconds, rss = measured.read().split()
  return float(seconds), int(rss)


def python_path_env() -> Mapping[str, str]:
  """This environment with this process's `sys.path` as PYTHONPATH."""
  return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
