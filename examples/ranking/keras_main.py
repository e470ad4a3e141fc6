r"""Leaves Estimator: the ranking model dir into Keras, checked, trained on.

Loads the TF1 model dir of the ranking Estimator (default: the one shipped
in testdata/) into its Keras twin and Keras Adam with
`estimator_ckpt.load_weights`, evaluates both and shows that the metrics are
identical, checks one more training step against the Estimator's next step,
trains on with `model.fit`, saves a Keras checkpoint, and brings it back:
converted to TF1 names, the Estimator evaluates the Keras-trained model to
the same metrics:

  bazel run //examples/ranking:keras
  bazel run //examples/ranking:keras -- --model_dir=/tmp/ranker \
      --output_dir=/tmp/ranker-keras --fit_epochs=3

Exits non-zero if predictions or metrics differ (either way), or the next
step differs by more than --max_step_difference.
"""

import sys
from typing import Sequence

from absl import app
from absl import flags

from estimator_ckpt import errors
from estimator_ckpt._src.cli import process

from examples.ranking import keras_migration
from examples.ranking import trainer

_MODEL_DIR = flags.DEFINE_string(
  "model_dir",
  trainer.SHIPPED_TF1_MODEL_DIR,
  "TF1 model dir (or checkpoint prefix) of the ranking Estimator to leave; "
  "read only. Default: the one shipped in testdata/.",
)
_OUTPUT_DIR = flags.DEFINE_string(
  "output_dir",
  None,
  "Where the Estimator's working copies and the Keras checkpoint (keras/) "
  "go; must be new or empty. Default: a new temporary directory.",
)
_TRAIN_DATA = flags.DEFINE_string(
  "train_data",
  trainer.DEFAULT_TRAIN_DATA,
  "CSV of `user_id,item_id,label` rows with a header, for the next step "
  "and model.fit.",
)
_EVAL_DATA = flags.DEFINE_string(
  "eval_data", trainer.DEFAULT_EVAL_DATA, "CSV for evaluation, same schema."
)
_BATCH_SIZE = flags.DEFINE_integer(
  "batch_size", 64, "Examples per step and evaluation batch.", lower_bound=1
)
_FIT_EPOCHS = flags.DEFINE_integer(
  "fit_epochs", 1, "Epochs of model.fit after the checks.", lower_bound=0
)
_MAX_STEP_DIFFERENCE = flags.DEFINE_float(
  "max_step_difference",
  1e-6,
  "Largest accepted max abs difference between Keras's and the Estimator's "
  "next step.",
  lower_bound=0.0,
)


def main(argv: Sequence[str]) -> None:
  process.use_callers_directory()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    report = keras_migration.leave_estimator(
      keras_migration.LeavingOptions(
        model_dir=_MODEL_DIR.value,
        output_dir=_OUTPUT_DIR.value,
        train_data=_TRAIN_DATA.value,
        eval_data=_EVAL_DATA.value,
        batch_size=_BATCH_SIZE.value,
        fit_epochs=_FIT_EPOCHS.value,
      )
    )
  except (errors.Error, FileNotFoundError) as e:
    # Bad checkpoints, malformed data, a non-empty output dir: one line.
    raise app.UsageError(str(e)) from None
  process.print_result(report.format())
  if (
    not report.predictions_identical
    or not report.metrics_identical
    or not report.back_identical
    or report.next_step_difference > _MAX_STEP_DIFFERENCE.value
  ):
    sys.exit(1)


if __name__ == "__main__":
  process.run_app(main)
