r"""Runs the seed guide's Estimator scenario on the shipped est-tf1 dir.

The TensorFlow guide "Migrating model checkpoints" (section "TF2 checkpoints
in Estimator") warm-starts a model that saves TF2 checkpoints (est-tf2) from a
model dir of TF1 checkpoints (est-tf1). This binary does exactly that, from
testdata/est-tf1, into a fresh model dir, and prints both checkpoints.

  bazel run //examples/guide:scenario [-- --output_dir=/tmp/est-tf2]
"""

import os
import tempfile
from typing import Sequence

from absl import app
from absl import flags
import tensorflow as tf

from estimator_ckpt._src import describe
from estimator_ckpt._src import reader
from estimator_ckpt._src.cli import process
from estimator_ckpt._src.cli import render

from examples.guide import models as guide_models

_EST_TF1 = flags.DEFINE_string(
  "est_tf1",
  None,
  "TF1 model dir to warm-start from. Default: the shipped testdata/est-tf1.",
)
_OUTPUT_DIR = flags.DEFINE_string(
  "output_dir",
  None,
  "Fresh model dir for est-tf2 (must not hold a checkpoint). Default: a new "
  "temporary directory.",
)

# The repository's testdata/ (a data dependency of the Bazel target).
_SHIPPED_EST_TF1 = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
  "testdata",
  "est-tf1",
)


def main(argv: Sequence[str]) -> None:
  process.use_callers_directory()
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  est_tf1 = _EST_TF1.value or _SHIPPED_EST_TF1
  est_tf2 = _OUTPUT_DIR.value or tempfile.mkdtemp(prefix="est-tf2-")
  if tf.train.latest_checkpoint(est_tf2) is not None:
    raise app.UsageError(
      f"--output_dir `{est_tf2}` already holds a checkpoint, so Estimator "
      "would skip the warm start. Pass an empty or new directory."
    )
  try:
    tf1_rows = describe.read_rows(est_tf1)
  except reader.errors.Error as e:
    raise app.UsageError(f"--est_tf1: {e}") from None

  est = tf.estimator.Estimator(
    guide_models.model_fn_tf2_ckpt, est_tf2, warm_start_from=est_tf1
  )
  est.train(guide_models.train_input_fn, steps=1)
  value = est.get_variable_value("var_list/var/.ATTRIBUTES/VARIABLE_VALUE")

  print(f"\nest-tf1 (TF1 name-based): {tf.train.latest_checkpoint(est_tf1)}")
  print(render.format_table(tf1_rows))
  print(f"\nest-tf2 (TF2 object-based): {tf.train.latest_checkpoint(est_tf2)}")
  print(render.format_table(describe.read_rows(est_tf2)))
  print(
    f"\nvar_list/var/.ATTRIBUTES/VARIABLE_VALUE == {value} "
    f"(the guide expects 4.0): {'OK' if value == 4 else 'MISMATCH'}"
  )
  if value != 4:
    raise SystemExit(1)


if __name__ == "__main__":
  app.run(main)
