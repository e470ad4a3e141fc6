"""Leaving Estimator: the ranking model dir into Keras, checked, trained on.

Not public API: `keras_main.py` is its command line. `leave_estimator` takes
a TF1 model dir of `model.model_fn` (default: the one shipped in testdata/)
and

1. evaluates it with the Estimator, and records the Estimator's next
   training step (on a copy of the model dir, so the source stays as it is);
2. loads it into the Keras twin (`keras_model.build`) and its Adam with
   `estimator_ckpt.load_weights`;
3. evaluates the Keras model with the same metric definitions (the
   model_fn's `tf1.metrics`, over the same batches) and compares its
   predictions with the Estimator's, bit for bit;
4. takes the same next step in Keras and compares every weight and Adam
   slot with the Estimator's;
5. trains on with `model.fit` and saves a Keras checkpoint
   (`tf.train.Checkpoint(model=..., optimizer=...)`);
6. brings it back: converts the Keras checkpoint to a TF1 model dir
   (`convert(..., to="tf1")` with the names `keras_load.tf1_rename` gives)
   and evaluates it with the Estimator, to the Keras model's metrics.

The Estimator runs before any Keras model exists (and again only once the
Keras model is done): Keras swaps the base classes of its layer classes
when TF1 layers are built in a graph (keras/src/utils/version_utils.py
`swap_class`), which breaks Keras models built before that in the same
process.
"""

import dataclasses
import os
import shutil
import tempfile
from typing import Dict, List, Mapping, Optional

import numpy as np
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt._src import reader
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.keras import load as keras_load
from estimator_ckpt._src.keras import optimizers as keras_optimizers

from examples.ranking import data as ranking_data
from examples.ranking import keras_model
from examples.ranking import model as ranking_model
from examples.ranking import trainer

tf1 = tf.compat.v1

# The Estimator's metrics besides global_step, in report order.
METRICS = ("accuracy", "auc", "loss")


@dataclasses.dataclass(frozen=True)
class LeavingOptions:
  """What `leave_estimator` runs on.

  Attributes:
    model_dir: The TF1 model dir of `model.model_fn` to leave (read only).
    output_dir: Where to put the working copies and the Keras checkpoint;
      must not exist or be empty. None: a new temporary directory.
    train_data: CSV of `user_id,item_id,label` for the next step and `fit`.
    eval_data: Same schema, for evaluation.
    batch_size: Examples per step and per evaluation batch.
    fit_epochs: Epochs of `model.fit` after the checks.
  """

  model_dir: str = trainer.SHIPPED_TF1_MODEL_DIR
  output_dir: Optional[str] = None
  train_data: str = trainer.DEFAULT_TRAIN_DATA
  eval_data: str = trainer.DEFAULT_EVAL_DATA
  batch_size: int = 64
  fit_epochs: int = 1

  def __post_init__(self):
    if self.batch_size < 1:
      raise errors.InvalidArgumentError(
        f"batch_size must be >= 1, got {self.batch_size}."
      )
    if self.fit_epochs < 0:
      raise errors.InvalidArgumentError(
        f"fit_epochs must be >= 0, got {self.fit_epochs}."
      )


@dataclasses.dataclass(frozen=True)
class LeavingReport:
  """What `leave_estimator` did.

  Attributes:
    model_dir: The TF1 model dir left.
    load_summary: `LoadReport.summary()` of the load into Keras.
    estimator_metrics: `Estimator.evaluate` of the model dir.
    keras_metrics: The same metrics of the loaded Keras model.
    predictions_identical: Keras logits equal the Estimator's bit for bit.
    examples: How many evaluation examples were compared.
    step: The global step after the compared next step.
    next_step_difference: Max abs difference of every weight and optimizer
      slot after one more step in Keras and in the Estimator.
    fit_metrics: The metrics after `model.fit`.
    fit_step: The optimizer's iterations after `model.fit`.
    keras_checkpoint: The saved Keras checkpoint prefix.
    back_metrics: The Estimator's evaluation of the Keras checkpoint,
      converted to TF1 names.
    back_checkpoint: The converted (TF1) checkpoint prefix.
  """

  model_dir: str
  load_summary: str
  estimator_metrics: Mapping[str, float]
  keras_metrics: Mapping[str, float]
  predictions_identical: bool
  examples: int
  step: int
  next_step_difference: float
  fit_metrics: Mapping[str, float]
  fit_step: int
  keras_checkpoint: str
  back_metrics: Mapping[str, float]
  back_checkpoint: str

  @property
  def metrics_identical(self) -> bool:
    return dict(self.estimator_metrics) == dict(self.keras_metrics)

  @property
  def back_identical(self) -> bool:
    return dict(self.fit_metrics) == dict(self.back_metrics)

  def format(self) -> str:
    """A short human-readable report."""
    lines = [
      "Leaving Estimator: the TF1 ranking model in Keras",
      f"  source (TF1 model dir): {self.model_dir}",
      "",
      *("  " + line for line in self.load_summary.splitlines()),
      "",
      f"  {'':10s}  {'':>12s}  {'':>12s}  {'Keras':>12s}  {'Estimator':>12s}",
      f"  {'metric':10s}  {'Estimator':>12s}  {'Keras':>12s}  "
      f"{'after fit':>12s}  {'from Keras':>12s}",
    ]
    for name in METRICS:
      lines.append(
        f"  {name:10s}  {self.estimator_metrics[name]:12.8g}  "
        f"{self.keras_metrics[name]:12.8g}  {self.fit_metrics[name]:12.8g}  "
        f"{self.back_metrics[name]:12.8g}"
      )
    lines += [
      f"  {'step':10s}  {self.step - 1:12d}  {self.step - 1:12d}  "
      f"{self.fit_step:12d}  {self.fit_step:12d}",
      "",
      f"  predictions ({self.examples} examples): "
      + ("IDENTICAL" if self.predictions_identical else "DIFFERENT"),
      "  metrics Estimator/Keras: "
      + ("IDENTICAL" if self.metrics_identical else "DIFFERENT"),
      f"  next step ({self.step}) vs the Estimator's: max abs difference "
      f"{self.next_step_difference:.2g} (weights and Adam slots)",
      f"  Keras checkpoint: {self.keras_checkpoint}",
      f"  back in the Estimator: {self.back_checkpoint}, metrics "
      + ("IDENTICAL" if self.back_identical else "DIFFERENT")
      + " to Keras after fit",
    ]
    return "\n".join(lines)


def _batches(examples: ranking_data.Examples, size: int):
  for start in range(0, len(examples), size):
    end = start + size
    yield ranking_data.Examples(
      examples.user_id[start:end],
      examples.item_id[start:end],
      examples.label[start:end],
    )


def head(examples: ranking_data.Examples, size: int) -> ranking_data.Examples:
  """The first `size` examples: the batch of the compared next step."""
  return next(_batches(examples, size))


def tf1_metrics(
  logits: np.ndarray, labels: np.ndarray, batch_size: int
) -> Dict[str, float]:
  """The model_fn's evaluation metrics of logits, batch by batch.

  The same `tf1.metrics` over the same batches as `Estimator.evaluate` runs
  (its loss is the mean of the batch losses), so equal logits give equal
  numbers. Keras's own AUC sums differently (interpolation, not TF1's
  trapezoids) and would differ in the last digits.
  """
  with tf.Graph().as_default():
    logit_in = tf1.placeholder(tf.float32, [None])
    label_in = tf1.placeholder(tf.float32, [None])
    probabilities = tf.sigmoid(logit_in)
    loss = tf1.losses.sigmoid_cross_entropy(label_in, logit_in)
    metrics = {
      "auc": tf1.metrics.auc(label_in, probabilities),
      "accuracy": tf1.metrics.accuracy(
        label_in, tf.cast(probabilities > 0.5, tf.float32)
      ),
      "loss": tf1.metrics.mean(loss),
    }
    with tf1.Session() as session:
      session.run(tf1.local_variables_initializer())
      for start in range(0, len(labels), batch_size):
        end = start + batch_size
        session.run(
          [update for _, update in metrics.values()],
          {logit_in: logits[start:end], label_in: labels[start:end]},
        )
      values = session.run(
        {name: value for name, (value, _) in metrics.items()}
      )
  return {name: float(value) for name, value in values.items()}


def _estimator_input(examples: ranking_data.Examples, batch_size: int):
  return ranking_data.input_fn(
    examples, batch_size=batch_size, shuffle=False, num_epochs=1
  )


def estimator_logits(
  est: tf.estimator.Estimator, examples: ranking_data.Examples, batch_size: int
) -> np.ndarray:
  """The Estimator's logits, in the examples' order."""
  predictions = est.predict(_estimator_input(examples, batch_size))
  return np.array([p["logit"] for p in predictions], dtype=np.float32)


def estimator_next_step(
  model_dir: str, batch: ranking_data.Examples
) -> Dict[str, np.ndarray]:
  """Trains one step on `batch` in place; every variable after it, by name."""
  est = ranking_model.estimator(model_dir)
  est.train(_estimator_input(batch, len(batch)), steps=1)
  return {
    name: reader.load_variable(model_dir, name)
    for name, _ in reader.list_variables(model_dir)
  }


def keras_logits(
  model: tf.keras.Model, examples: ranking_data.Examples, batch_size: int
) -> np.ndarray:
  """The Keras model's logits (inference mode), in the examples' order."""
  return np.asarray(
    model.predict(
      keras_model.features(examples), batch_size=batch_size, verbose=0
    ),
    dtype=np.float32,
  )


def keras_values(
  model: tf.keras.Model, optimizer: tf.keras.optimizers.Optimizer
) -> Dict[str, np.ndarray]:
  """The Keras model's weights and optimizer state, by TF1 name.

  Optimizer state comes back as TF1 keeps it (SGD's momentum divided by
  `-learning_rate`), and `global_step` from `iterations`.
  """
  spec = keras_optimizers.spec(optimizer)
  step = int(optimizer.iterations.numpy())
  rate = keras_optimizers.learning_rate(optimizer, step)
  values = {"global_step": np.asarray(step, np.int64)}
  trainable = {id(v) for v in model.trainable_variables}
  for weight in model.weights:
    name = weight.name.split(":")[0]
    name = keras_model.RENAME.get(name, name)
    values[name] = weight.numpy()
    if id(weight) not in trainable:
      continue
    for slot in spec.slots:
      state = keras_optimizers.state_variable(optimizer, slot, weight).numpy()
      if slot.negative_learning_rate:
        state = state / np.float32(-rate)
      values[keras_optimizers.tf1_slot_name(name, slot)] = state
  return values


def max_difference(
  expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray]
) -> float:
  """Max abs difference over the names both have (all of `actual`'s).

  Raises:
    errors.IncompatibleCheckpointError: `expected` lacks a name of `actual`.
  """
  missing = sorted(set(actual) - set(expected))
  if missing:
    raise errors.IncompatibleCheckpointError(
      f"The Estimator's checkpoint lacks {errors.format_names(missing)}, "
      "which the Keras model has. Is the model dir of `model.model_fn`?"
    )
  return max(
    float(np.max(np.abs(np.asarray(expected[n], np.float64) - value)))
    if np.size(value)
    else 0.0
    for n, value in actual.items()
  )


def _prepare_output(output_dir: Optional[str]) -> str:
  if output_dir is None:
    return tempfile.mkdtemp(prefix="estimator_ckpt-leaving-")
  if checkpoint_files.listdir(output_dir):
    raise errors.DestinationExistsError(
      f"`{output_dir}` is not empty. Pass a new or empty directory; the run "
      "never overwrites."
    )
  os.makedirs(output_dir, exist_ok=True)
  return output_dir


def leave_estimator(options: LeavingOptions) -> LeavingReport:
  """Runs steps 1-5 of the module docstring.

  Args:
    options: Source model dir, data and output.

  Returns:
    A `LeavingReport`.

  Raises:
    errors.Error: The model dir holds no checkpoint of the ranking model, or
      the output dir is not empty.
    errors.MalformedDataError: A data file has a malformed row.
  """
  params = ranking_model.RankingParams()
  train = ranking_data.read_csv(options.train_data, params)
  evaluation = ranking_data.read_csv(options.eval_data, params)
  batch = head(train, options.batch_size)
  output_dir = _prepare_output(options.output_dir)
  # Estimator writes eval summaries into its model_dir: work on copies.
  estimator_dir = os.path.join(output_dir, "estimator")
  next_step_dir = os.path.join(output_dir, "estimator-next-step")
  prefix = reader.read(options.model_dir).prefix
  for copy in (estimator_dir, next_step_dir):
    _copy_checkpoint(prefix, copy)

  # 1. The Estimator (before any Keras model exists; module docstring).
  est = ranking_model.estimator(estimator_dir)
  estimator_metrics = est.evaluate(
    _estimator_input(evaluation, options.batch_size), name="estimator"
  )
  expected_logits = estimator_logits(est, evaluation, options.batch_size)
  expected_next = estimator_next_step(next_step_dir, batch)

  # 2. Load into Keras.
  model = keras_model.build(params)
  optimizer = keras_model.optimizer(params)
  report = estimator_ckpt.load_weights(
    model, options.model_dir, optimizer=optimizer, rename=keras_model.RENAME
  )

  # 3. Evaluate with the same metrics.
  logits = keras_logits(model, evaluation, options.batch_size)
  keras_metrics = tf1_metrics(logits, evaluation.label, options.batch_size)

  # 4. One more step, compared with the Estimator's.
  keras_model.compile_model(model, optimizer)
  model.train_on_batch(keras_model.features(batch), batch.label)
  difference = max_difference(expected_next, keras_values(model, optimizer))

  # 5. Train on and save (shuffled the same way every run).
  tf.keras.utils.set_random_seed(0)
  if options.fit_epochs:
    model.fit(
      keras_model.features(train),
      train.label,
      batch_size=options.batch_size,
      epochs=options.fit_epochs,
      shuffle=True,
      verbose=0,
    )
  fit_logits = keras_logits(model, evaluation, options.batch_size)
  fit_step = int(optimizer.iterations.numpy())
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  keras_dir = os.path.join(output_dir, "keras")
  saved = tf.train.CheckpointManager(checkpoint, keras_dir, 3).save(
    checkpoint_number=fit_step
  )

  # 6. Back into the Estimator.
  back = estimator_ckpt.convert(
    saved,
    os.path.join(output_dir, "estimator-from-keras"),
    to="tf1",
    rename=keras_load.tf1_rename(model, optimizer, keras_model.RENAME),
  )
  back_metrics = ranking_model.estimator(os.path.dirname(back)).evaluate(
    _estimator_input(evaluation, options.batch_size), name="from_keras"
  )
  return LeavingReport(
    model_dir=options.model_dir,
    load_summary=report.summary(),
    estimator_metrics={m: float(estimator_metrics[m]) for m in METRICS},
    keras_metrics={m: keras_metrics[m] for m in METRICS},
    predictions_identical=bool(np.array_equal(expected_logits, logits)),
    examples=len(evaluation),
    step=int(expected_next["global_step"]),
    next_step_difference=difference,
    fit_metrics=tf1_metrics(fit_logits, evaluation.label, options.batch_size),
    fit_step=fit_step,
    keras_checkpoint=saved,
    back_metrics={m: float(back_metrics[m]) for m in METRICS},
    back_checkpoint=back,
  )


def _copy_checkpoint(prefix: str, destination: str) -> None:
  """A model dir holding just `prefix`'s checkpoint (files and state)."""
  os.makedirs(destination)
  base = os.path.basename(prefix)
  names: List[str] = [
    n for n in os.listdir(os.path.dirname(prefix)) if n.startswith(base + ".")
  ]
  for name in names:
    shutil.copy2(os.path.join(os.path.dirname(prefix), name), destination)
  tf1.train.update_checkpoint_state(destination, base)
