r"""Trains, evaluates and exports the ranking Estimator; migration built in.

With no flags, migrates the TF1 model dir shipped in testdata/ to TF2,
evaluates both on the same data, trains on and prints a report:

  bazel run //examples/ranking:train

With --model_dir, a normal Estimator trainer that writes TF2 checkpoints
(or --checkpoint_format=tf1/both) and can warm-start from any TF1 or TF2
checkpoint:

  bazel run //examples/ranking:train -- --model_dir=/tmp/ranker \
      --mode=train_and_evaluate --train_steps=500 \
      --warm_start_from=/path/to/est-tf1-dir
"""

import sys
from typing import Sequence

from absl import app
from absl import flags

from estimator_ckpt import errors
from estimator_ckpt._src import checkpoint_flags
from estimator_ckpt._src.cli import process

from examples.ranking import trainer

_MODE = flags.DEFINE_enum(
  "mode",
  "train_and_evaluate",
  trainer.MODES,
  "What to run (needs --model_dir).",
)
_TRAIN_STEPS = flags.DEFINE_integer(
  "train_steps",
  None,
  "Train until the global step reaches this (resumable: a rerun stops at "
  "the same step). Default: 200 with --model_dir; 100 more steps in the "
  "default migration run.",
  lower_bound=1,
)
_TRAIN_DATA = flags.DEFINE_string(
  "train_data",
  trainer.DEFAULT_TRAIN_DATA,
  "CSV of `user_id,item_id,label` rows with a header.",
)
_EVAL_DATA = flags.DEFINE_string(
  "eval_data", trainer.DEFAULT_EVAL_DATA, "CSV for evaluation, same schema."
)
_EXPORT_DIR = flags.DEFINE_string(
  "export_dir", None, "Where --mode=export writes SavedModels."
)
_EVAL_THROTTLE_SECS = flags.DEFINE_integer(
  "eval_throttle_secs",
  60,
  "--mode=train_and_evaluate: evaluate new checkpoints at most this often "
  "(the evaluator task under TF_CONFIG, or after saves when local).",
  lower_bound=1,
)
_OUTPUT_DIR = flags.DEFINE_string(
  "output_dir",
  None,
  "Default run only (no --model_dir): where the TF1 copy and the migrated "
  "TF2 model dir go. Default: a new temporary directory.",
)

checkpoint_flags.define_checkpoint_flags(require_model_dir=False)


def _validate_flags(flag_values: flags.FlagValues) -> None:
  if flag_values.model_dir is None:
    set_only_with_model_dir = [
      name
      for name in ("mode", "export_dir", "warm_start_from")
      if flag_values[name].present
    ]
    if set_only_with_model_dir:
      raise app.UsageError(
        f"--{set_only_with_model_dir[0]} needs --model_dir. Without "
        "--model_dir the trainer runs its default migration demo."
      )
    return
  if _OUTPUT_DIR.present:
    raise app.UsageError(
      "--output_dir is for the default run; with --model_dir, checkpoints "
      "go to --model_dir."
    )
  if _MODE.value == "export" and not _EXPORT_DIR.value:
    raise app.UsageError("--mode=export needs --export_dir.")


def main(argv: Sequence[str]) -> None:
  process.use_callers_directory()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  _validate_flags(flags.FLAGS)
  try:
    if flags.FLAGS.model_dir is None:
      options = trainer.TrainerOptions(
        train_data=_TRAIN_DATA.value, eval_data=_EVAL_DATA.value
      )
      report = trainer.migrate_shipped_model(
        output_dir=_OUTPUT_DIR.value,
        train_steps=_TRAIN_STEPS.value or 100,
        options=options,
      )
      print(report.format())
      if not report.metrics_identical:
        sys.exit(1)
      return
    options = trainer.TrainerOptions(
      mode=_MODE.value,
      train_steps=_TRAIN_STEPS.value or 200,
      train_data=_TRAIN_DATA.value,
      eval_data=_EVAL_DATA.value,
      export_dir=_EXPORT_DIR.value,
      eval_throttle_secs=_EVAL_THROTTLE_SECS.value,
    )
    settings = checkpoint_flags.checkpoint_settings_from_flags()
    result = trainer.run(options, settings)
  except (errors.Error, FileNotFoundError) as e:
    # errors.Error subclasses (malformed data, bad checkpoints) and missing
    # files are usage problems: one line, no traceback.
    raise app.UsageError(str(e)) from None
  for name, value in sorted(result.items()):
    print(f"{name}: {value}")


if __name__ == "__main__":
  process.run_app(main)
