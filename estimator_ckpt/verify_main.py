r"""Verifies a checkpoint: index, files and every tensor's checksum.

  verify PATH [--against=OTHER]

PATH, OTHER: model dirs (latest checkpoint) or checkpoint prefixes, either
format. With --against, also compares their variables by TF1 name.
"""

import sys
from typing import Sequence

from absl import flags

from estimator_ckpt import errors
from estimator_ckpt._src import verify
from estimator_ckpt._src.cli import process

_AGAINST = flags.DEFINE_string(
  "against",
  None,
  "Another checkpoint to compare with, by TF1 name: same "
  "variables, dtypes, shapes and bit-identical values.",
)


def main(argv: Sequence[str]) -> None:
  (path,) = process.positional_arguments(
    argv, 1, "one checkpoint (model dir or prefix)"
  )
  try:
    report = verify.verify(path, against=_AGAINST.value)
  except (errors.Error, OSError) as e:
    sys.exit(f"verify: FAILED: {e}")
  process.print_result(report.summary())


def run() -> None:
  """Parses the flags and runs `main`.

  The `estimator-ckpt-verify` console script of the pip package, and what
  `python -m estimator_ckpt.verify_main` runs.
  """
  process.run_app(main)


if __name__ == "__main__":
  run()
