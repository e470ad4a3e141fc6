r"""Lists a checkpoint's variables by TF1 name (TF1 and TF2 checkpoints).

  inspect PATH [--format=table|json] [--values]

PATH: a model dir (its latest checkpoint) or a checkpoint prefix.
"""

import sys
from typing import Sequence

from absl import flags

from estimator_ckpt import errors
from estimator_ckpt._src import describe
from estimator_ckpt._src.cli import process
from estimator_ckpt._src.cli import render

_FORMAT = flags.DEFINE_enum(
  "format",
  "table",
  ["table", "json"],
  "Output: an aligned table, or one JSON object.",
)
_VALUES = flags.DEFINE_bool(
  "values",
  False,
  "Also print the values of small tensors (checksums verified).",
)
_MAX_VALUE_ELEMENTS = flags.DEFINE_integer(
  "max_value_elements",
  8,
  "With --values: largest tensor (in elements) whose value is printed.",
  lower_bound=0,
)


def main(argv: Sequence[str]) -> None:
  (path,) = process.positional_arguments(
    argv, 1, "one checkpoint (model dir or prefix)"
  )
  try:
    description = describe.describe(
      path,
      with_values=_VALUES.value,
      max_value_elements=_MAX_VALUE_ELEMENTS.value,
    )
  except (errors.Error, OSError) as e:
    sys.exit(f"inspect: {e}")
  text = (
    render.to_json(description)
    if _FORMAT.value == "json"
    else render.format_description(description)
  )
  process.print_result(text)


def run() -> None:
  """Parses the flags and runs `main`.

  The `estimator-ckpt-inspect` console script of the pip package, and what
  `python -m estimator_ckpt.inspect_main` runs.
  """
  process.run_app(main)


if __name__ == "__main__":
  run()
