"""The training app's logic: a ranking Estimator with migration built in.

Not public API: `train_main.py` is its command line. Two ways to run:

* `run(options, settings)`: a normal Estimator trainer (train, evaluate,
  train_and_evaluate, export) over CSV data, writing checkpoints in the
  format the checkpoint flags chose, warm-starting as they say. Works under
  TF_CONFIG (chief/worker/ps/evaluator) like any Estimator trainer.
* `migrate_shipped_model(...)`: the default run. It converts the TF1 model
  dir shipped in testdata/ into a fresh TF2 model dir, evaluates both on the
  same data (the metrics must be identical), trains on with TF2 checkpoints
  and reports what was carried over.
"""

import dataclasses
import os
import tempfile
from typing import Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import checkpoint_flags
from estimator_ckpt._src import convert
from estimator_ckpt._src import migrate
from estimator_ckpt._src import reader
from estimator_ckpt._src.format import checkpoint_files

from examples.ranking import data as ranking_data
from examples.ranking import model as ranking_model

# The repository's testdata/ (a data dependency of the Bazel targets).
_TESTDATA = os.path.join(
  os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
  "testdata",
)
SHIPPED_TF1_MODEL_DIR = os.path.join(_TESTDATA, "est-tf1-ranking")
DEFAULT_TRAIN_DATA = os.path.join(_TESTDATA, "ranking", "train.csv")
DEFAULT_EVAL_DATA = os.path.join(_TESTDATA, "ranking", "eval.csv")

MODES = ("train", "evaluate", "train_and_evaluate", "export")


@dataclasses.dataclass(frozen=True)
class TrainerOptions:
  """What to run, besides checkpoint settings.

  Attributes:
    mode: One of `MODES`.
    train_steps: Train until the global step reaches this (Estimator's
      `max_steps`, so a rerun after a crash resumes and stops at the same
      step).
    train_data: CSV file of `user_id,item_id,label` rows.
    eval_data: Same schema, for evaluation.
    export_dir: Where `export` writes SavedModels.
    batch_size: Examples per step.
    eval_throttle_secs: In `train_and_evaluate`, evaluate a new checkpoint at
      most this often (`EvalSpec.throttle_secs`).
  """

  mode: str = "train_and_evaluate"
  train_steps: int = 200
  train_data: str = DEFAULT_TRAIN_DATA
  eval_data: str = DEFAULT_EVAL_DATA
  export_dir: Optional[str] = None
  batch_size: int = 64
  eval_throttle_secs: int = 60

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}.")
    if self.train_steps < 1:
      raise ValueError(f"train_steps must be >= 1, got {self.train_steps}.")
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}.")
    if self.mode == "export" and not self.export_dir:
      raise ValueError("mode `export` needs an export_dir.")


class _PrintSaves(tf.estimator.CheckpointSaverListener):
  """Prints one line per checkpoint: progress users (and tests) can follow."""

  def after_save(self, session, global_step_value):
    del session
    print(f"checkpoint saved: step {global_step_value}", flush=True)


def build_estimator(
  model_dir: Optional[str],
  *,
  checkpoint_format: str = checkpoint_flags.FORMAT_TF2,
  scaffold_options: Optional[Mapping] = None,
  run_config: Optional[tf.estimator.RunConfig] = None,
  warm_start_from=None,
) -> tf.estimator.Estimator:
  """The ranking model as an Estimator writing `checkpoint_format`."""
  model_fn = ranking_model.model_fn
  if checkpoint_format != checkpoint_flags.FORMAT_TF1:
    model_fn = migrate.tf2_checkpoints(model_fn, **dict(scaffold_options or {}))
  return tf.estimator.Estimator(
    model_fn,
    model_dir=model_dir,
    config=run_config,
    params=ranking_model.RankingParams().as_dict(),
    warm_start_from=warm_start_from,
  )


def _train_input_fn(options: TrainerOptions):
  examples = ranking_data.read_csv(
    options.train_data, ranking_model.RankingParams()
  )
  return ranking_data.input_fn(
    examples, batch_size=options.batch_size, shuffle=True
  )


def _eval_input_fn(path: str, batch_size: int):
  examples = ranking_data.read_csv(path, ranking_model.RankingParams())
  return ranking_data.input_fn(
    examples, batch_size=batch_size, shuffle=False, num_epochs=1
  )


def run(
  options: TrainerOptions, settings: checkpoint_flags.CheckpointSettings
) -> Dict[str, object]:
  """Runs one mode of the trainer.

  Args:
    options: What to run.
    settings: From `checkpoint_flags.checkpoint_settings_from_flags()`.

  Returns:
    Evaluation metrics (evaluate, train_and_evaluate), the export path
    (export, under key `export_path`), or the final global step (train).

  Raises:
    errors.MalformedDataError: A data file has a malformed row.
    FileNotFoundError: A data file does not exist.
  """
  est = build_estimator(
    settings.model_dir,
    checkpoint_format=settings.checkpoint_format,
    scaffold_options=settings.scaffold_options,
    run_config=settings.run_config,
    warm_start_from=settings.warm_start_from,
  )
  if options.mode == "train":
    est.train(
      _train_input_fn(options),
      max_steps=options.train_steps,
      saving_listeners=[_PrintSaves()],
    )
    return {"global_step": est.get_variable_value("global_step")}
  if options.mode == "evaluate":
    return est.evaluate(_eval_input_fn(options.eval_data, options.batch_size))
  if options.mode == "train_and_evaluate":
    # Returns (metrics, export results) where this task evaluated (local
    # runs, the evaluator task); None on chief, worker and ps tasks.
    result = tf.estimator.train_and_evaluate(
      est,
      tf.estimator.TrainSpec(
        _train_input_fn(options),
        max_steps=options.train_steps,
        saving_listeners=[_PrintSaves()],
      ),
      tf.estimator.EvalSpec(
        _eval_input_fn(options.eval_data, options.batch_size),
        steps=None,
        start_delay_secs=0,
        throttle_secs=options.eval_throttle_secs,
      ),
    )
    return (result[0] if result else None) or {}
  path = est.export_saved_model(
    options.export_dir, ranking_model.serving_input_receiver_fn
  )
  return {"export_path": path.decode() if isinstance(path, bytes) else path}


@dataclasses.dataclass(frozen=True)
class MigrationReport:
  """What the default run did.

  Attributes:
    tf1_model_dir: Working copy of the shipped TF1 model dir.
    tf2_model_dir: The migrated model dir (TF2 checkpoints).
    format_before: Checkpoint format of the source (`tf1`).
    format_after: Checkpoint format of the latest checkpoint after training.
    variables: Variables carried over (partitioned ones once).
    variable_bytes: Their size in bytes.
    tf1_metrics: Evaluation of the TF1 checkpoint.
    tf2_metrics: Evaluation of the converted TF2 checkpoint.
    trained_metrics: Evaluation after training on with TF2 checkpoints.
    tf2_checkpoints: Checkpoint prefixes in tf2_model_dir after training.
  """

  tf1_model_dir: str
  tf2_model_dir: str
  format_before: str
  format_after: str
  variables: int
  variable_bytes: int
  tf1_metrics: Mapping[str, float]
  tf2_metrics: Mapping[str, float]
  trained_metrics: Mapping[str, float]
  tf2_checkpoints: List[str]

  @property
  def metrics_identical(self) -> bool:
    return dict(self.tf1_metrics) == dict(self.tf2_metrics)

  def format(self) -> str:
    """A short human-readable report."""
    names = sorted(self.tf1_metrics)
    width = max(len(n) for n in names)
    lines = [
      "Migration of the shipped TF1 ranking model",
      f"  source (TF1):        {self.tf1_model_dir}",
      f"  migrated (TF2):      {self.tf2_model_dir}",
      f"  formats:             {self.format_before} -> {self.format_after}",
      f"  variables carried:   {self.variables} "
      f"({self.variable_bytes:,} bytes, optimizer slots and global_step "
      "included)",
      "",
      f"  {'metric':{width}s}  {'TF1 checkpoint':>16s}  "
      f"{'TF2 checkpoint':>16s}  {'after training':>16s}",
    ]
    for name in names:
      lines.append(
        f"  {name:{width}s}  {self.tf1_metrics[name]:16.8g}  "
        f"{self.tf2_metrics[name]:16.8g}  "
        f"{self.trained_metrics[name]:16.8g}"
      )
    lines += [
      "",
      "  metrics before/after migration: "
      + ("IDENTICAL" if self.metrics_identical else "DIFFERENT"),
      "  TF2 checkpoints now: "
      + ", ".join(os.path.basename(p) for p in self.tf2_checkpoints),
    ]
    return "\n".join(lines)


def _as_floats(metrics: Mapping[str, object]) -> Dict[str, float]:
  return {name: float(np.asarray(value)) for name, value in metrics.items()}


def migrate_shipped_model(
  *,
  output_dir: Optional[str] = None,
  train_steps: int = 100,
  options: Optional[TrainerOptions] = None,
) -> MigrationReport:
  """The default run: TF1 model dir -> TF2, compared, then trained on.

  Args:
    output_dir: Where to put `est-tf1/` (a working copy of the shipped dir)
      and `est-tf2/`; must not exist or be empty. Default: a new temporary
      directory.
    train_steps: Steps to train on after the migration.
    options: Data and batch size (mode and train_steps are ignored).

  Returns:
    A `MigrationReport`.

  Raises:
    errors.Error: The output dir is not empty.
  """
  options = options or TrainerOptions()
  if output_dir is None:
    output_dir = tempfile.mkdtemp(prefix="estimator_ckpt-migration-")
  elif checkpoint_files.listdir(output_dir):
    raise errors.DestinationExistsError(
      f"`{output_dir}` is not empty. Pass a new or empty directory; the "
      "default run never overwrites."
    )
  tf1_dir = os.path.join(output_dir, "est-tf1")
  tf2_dir = os.path.join(output_dir, "est-tf2")
  # Estimator writes eval summaries into model_dir: work on a copy, through
  # tf.io.gfile so that --output_dir may be a URL (gs://, s3://, ...).
  tf.io.gfile.makedirs(tf1_dir)
  for name in tf.io.gfile.listdir(SHIPPED_TF1_MODEL_DIR):
    tf.io.gfile.copy(
      os.path.join(SHIPPED_TF1_MODEL_DIR, name), os.path.join(tf1_dir, name)
    )

  source = reader.read(tf1_dir)  # One index read: names, sizes, format.

  convert.convert(tf1_dir, tf2_dir, to="tf2")
  eval_input_fn = _eval_input_fn(options.eval_data, options.batch_size)
  tf1_metrics = build_estimator(
    tf1_dir, checkpoint_format=checkpoint_flags.FORMAT_TF1
  ).evaluate(eval_input_fn, name="tf1")
  tf2_est = build_estimator(tf2_dir)
  tf2_metrics = tf2_est.evaluate(eval_input_fn, name="tf2")
  start_step = int(tf2_metrics["global_step"])
  tf2_est.train(
    _train_input_fn(options),
    max_steps=start_step + train_steps,
    saving_listeners=[_PrintSaves()],
  )
  trained_metrics = tf2_est.evaluate(eval_input_fn, name="trained")
  state = tf.train.get_checkpoint_state(tf2_dir)
  return MigrationReport(
    tf1_model_dir=tf1_dir,
    tf2_model_dir=tf2_dir,
    format_before=source.format,
    format_after=reader.checkpoint_format(tf2_dir),
    variables=len(source.variables),
    variable_bytes=sum(v.nbytes for v in source.variables.values()),
    tf1_metrics=_as_floats(tf1_metrics),
    tf2_metrics=_as_floats(tf2_metrics),
    trained_metrics=_as_floats(trained_metrics),
    tf2_checkpoints=list(state.all_model_checkpoint_paths),
  )
