r"""Converts checkpoints between TF1 (name-based) and TF2 (object-based).

  convert SRC DST_DIR --to=tf2|tf1 [--rename=OLD=NEW ...] [--link]
          [--all_checkpoints] [--overwrite] [--dry_run]
          [--adam_betas=BETA_1,BETA_2]

SRC: a model dir (its latest checkpoint) or a checkpoint prefix. Prints the
new checkpoint prefix; progress goes to stderr.
"""

import sys
from typing import Dict, Sequence

from absl import app
from absl import flags

from estimator_ckpt import errors
from estimator_ckpt._src import conversion_plan
from estimator_ckpt._src import convert
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src.cli import process
from estimator_ckpt._src.cli import render
from estimator_ckpt._src.keras import checkpoints as keras_checkpoints

_TO = flags.DEFINE_enum(
  "to",
  None,
  ["tf1", "tf2"],
  "Output format: tf2 (object-based, the Scaffold "
  "factory's layout) or tf1 (name-based).",
)
_RENAME = flags.DEFINE_multi_string(
  "rename",
  [],
  "OLD=NEW renames variable OLD of the source to NEW; a name "
  "ending in / is a scope (`tower/=` drops `tower/`, `/=net/` adds `net/`). "
  "Repeatable.",
)
_LINK = flags.DEFINE_bool(
  "link",
  False,
  "Hard-link data files instead of copying them (copies "
  "where links are impossible).",
)
_ALL_CHECKPOINTS = flags.DEFINE_bool(
  "all_checkpoints",
  False,
  "Convert every checkpoint SRC (a model dir) keeps, not only the latest.",
)
_OVERWRITE = flags.DEFINE_bool(
  "overwrite", False, "Replace output files that already exist in DST_DIR."
)
_DRY_RUN = flags.DEFINE_bool(
  "dry_run", False, "Print what would be written, write nothing."
)
_ADAM_BETAS = flags.DEFINE_list(
  "adam_betas",
  None,
  "BETA_1,BETA_2 of the Keras Adam whose checkpoint SRC is: a new Keras Adam "
  "does not save them, and --to=tf1 needs them for TF1's beta1_power and "
  "beta2_power. Default: Keras's 0.9,0.999 (a legacy Adam's saved ones).",
)
_TF1_NAMES = flags.DEFINE_bool(
  "tf1_names",
  True,
  "With --to=tf2, also store every variable under its TF1 name as an index "
  "alias of the same bytes (no data written twice), for TF1 readers.",
)


def _rename_spec(values: Sequence[str]) -> Dict[str, str]:
  spec = {}
  for value in values:
    old, sep, new = value.partition("=")
    if not sep or not old:
      raise app.UsageError(
        f"--rename={value} is not OLD=NEW; e.g. --rename=tower/= drops the "
        "scope `tower/`."
      )
    spec[old] = new
  return spec


def main(argv: Sequence[str]) -> None:
  src, dst_dir = process.positional_arguments(argv, 2, "SRC and DST_DIR")
  if _TO.value is None:
    # Not flags.mark_flag_as_required: that breaks tests importing this file.
    raise app.UsageError(
      "Pass --to=tf2 (object-based) or --to=tf1 (name-based)."
    )
  adam_betas = None
  if _ADAM_BETAS.value is not None:
    try:
      adam_betas = keras_checkpoints.parse_adam_betas(_ADAM_BETAS.value)
    except ValueError as e:
      raise app.UsageError(f"--adam_betas={e}") from None
  try:
    rename = rename_rules.parse(_rename_spec(_RENAME.value))
    lines = []
    if _DRY_RUN.value:
      plans = conversion_plan.plan(
        src,
        to=_TO.value,
        rename=rename,
        all_checkpoints=_ALL_CHECKPOINTS.value,
        tf1_names=_TF1_NAMES.value,
        adam_betas=adam_betas,
      )
      lines += [render.format_plan(p, dst_dir) for p in plans]
    prefix = convert.convert(
      src,
      dst_dir,
      to=_TO.value,
      rename=rename,
      link=_LINK.value,
      all_checkpoints=_ALL_CHECKPOINTS.value,
      overwrite=_OVERWRITE.value,
      dry_run=_DRY_RUN.value,
      tf1_names=_TF1_NAMES.value,
      adam_betas=adam_betas,
    )
  except (errors.Error, OSError) as e:
    sys.exit(f"convert: {e}")
  lines.append(f"would write {prefix}" if _DRY_RUN.value else prefix)
  process.print_result("\n".join(lines))


def run() -> None:
  """Parses the flags and runs `main`.

  The `estimator-ckpt-convert` console script of the pip package, and what
  `python -m estimator_ckpt.convert_main` runs.
  """
  process.run_app(main)


if __name__ == "__main__":
  run()
