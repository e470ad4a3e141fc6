r"""Verifies a checkpoint: index, files and every tensor's checksum.

  verify PATH [--against=OTHER]

PATH, OTHER: model dirs (latest checkpoint) or checkpoint prefixes, either
format. With --against, also compares their variables by TF1 name.
"""

import os
import sys
from typing import Sequence

from absl import app
from absl import flags

from estimator_ckpt import errors
from estimator_ckpt import verification

_AGAINST = flags.DEFINE_string(
    "against", None, "Another checkpoint to compare with, by TF1 name: same "
    "variables, dtypes, shapes and bit-identical values.")


def main(argv: Sequence[str]) -> None:
  # `bazel run` starts binaries in their runfiles; paths are the user's.
  os.chdir(os.environ.get("BUILD_WORKING_DIRECTORY", os.getcwd()))
  if len(argv) != 2:
    raise app.UsageError(
        f"Pass one checkpoint (model dir or prefix); got {len(argv) - 1}.")
  try:
    report = verification.verify(argv[1], against=_AGAINST.value)
  except (errors.Error, OSError) as e:
    sys.exit(f"verify: FAILED: {e}")
  try:
    print(report.summary())
  except BrokenPipeError:  # `verify ... | head`: not an error.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
  app.run(main)
