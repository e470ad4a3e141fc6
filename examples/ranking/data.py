"""The ranking model's data: CSV files of `user_id,item_id,label` rows.

Not public API. The shipped dataset (`testdata/ranking/*.csv`) is synthetic:
users and items get random latent factors, and a click is drawn with
probability sigmoid(<user, item>), so a model can learn it. User files of the
same schema are read with a check of every row; a malformed row raises an
error naming the file, the line and what is wrong.
"""

import csv
import dataclasses
from typing import Optional

import numpy as np
import tensorflow as tf

from estimator_ckpt import errors

from examples.ranking import model as ranking_model

COLUMNS = (ranking_model.USER_ID, ranking_model.ITEM_ID, ranking_model.LABEL)


@dataclasses.dataclass(frozen=True)
class Examples:
  """Columns of a data file, one entry per row."""

  user_id: np.ndarray
  item_id: np.ndarray
  label: np.ndarray

  def __len__(self) -> int:
    return len(self.label)


def synthesize(
  num_rows: int, params: ranking_model.RankingParams, seed: int
) -> Examples:
  """Draws a synthetic click dataset (deterministic for a seed)."""
  rng = np.random.default_rng(seed)
  users = rng.normal(size=(params.num_users, 4))
  items = rng.normal(size=(params.num_items, 4))
  user_id = rng.integers(0, params.num_users, size=num_rows)
  item_id = rng.integers(0, params.num_items, size=num_rows)
  affinity = np.sum(users[user_id] * items[item_id], axis=1)
  label = rng.random(num_rows) < 1 / (1 + np.exp(-2 * affinity))
  return Examples(
    user_id.astype(np.int64), item_id.astype(np.int64), label.astype(np.float32)
  )


def write_csv(examples: Examples, path: str) -> None:
  """Writes examples as CSV with a header row."""
  with tf.io.gfile.GFile(path, "w") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in zip(examples.user_id, examples.item_id, examples.label):
      writer.writerow((int(row[0]), int(row[1]), int(row[2])))


def _parse_id(path: str, line: int, column: str, text: str, limit: int) -> int:
  try:
    value = int(text)
  except ValueError:
    raise errors.MalformedDataError(
      f"{path}:{line}: `{column}` is `{text}`, not an integer. Fix the row "
      "or remove it."
    ) from None
  if not 0 <= value < limit:
    raise errors.MalformedDataError(
      f"{path}:{line}: `{column}` is {value}, outside [0, {limit}) of the "
      "model's vocabulary. Fix the row, or train a model with a larger "
      "vocabulary."
    )
  return value


def read_csv(path: str, params: ranking_model.RankingParams) -> Examples:
  """Reads and checks a `user_id,item_id,label` CSV file.

  Args:
    path: The file; its first line must be the header `user_id,item_id,label`.
    params: Model parameters; ids must fall inside their vocabularies.

  Returns:
    The rows as `Examples`.

  Raises:
    FileNotFoundError: No such file (the message names it).
    errors.MalformedDataError: A malformed row or header (file, line, problem).
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"Data file `{path}` does not exist.")
  user_ids, item_ids, labels = [], [], []
  with tf.io.gfile.GFile(path, "r") as f:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != COLUMNS:
      raise errors.MalformedDataError(
        f"{path}:1: header is {header!r}; expected `{','.join(COLUMNS)}`."
      )
    for row in reader:
      line = reader.line_num
      if not row:
        continue
      if len(row) != len(COLUMNS):
        raise errors.MalformedDataError(
          f"{path}:{line}: {len(row)} fields ({','.join(row)}); expected "
          f"{len(COLUMNS)}: `{','.join(COLUMNS)}`."
        )
      user_ids.append(
        _parse_id(path, line, ranking_model.USER_ID, row[0], params.num_users)
      )
      item_ids.append(
        _parse_id(path, line, ranking_model.ITEM_ID, row[1], params.num_items)
      )
      if row[2].strip() not in ("0", "1"):
        raise errors.MalformedDataError(
          f"{path}:{line}: `label` is `{row[2]}`; expected 0 or 1."
        )
      labels.append(float(row[2]))
  if not labels:
    raise errors.MalformedDataError(f"{path}: no data rows after the header.")
  return Examples(
    np.array(user_ids, np.int64),
    np.array(item_ids, np.int64),
    np.array(labels, np.float32),
  )


def input_fn(
  examples: Examples,
  *,
  batch_size: int,
  shuffle: bool,
  num_epochs: Optional[int] = None,
  seed: int = 0,
):
  """Returns an Estimator input_fn over in-memory examples."""

  def _input_fn() -> tf.data.Dataset:
    features = {
      ranking_model.USER_ID: examples.user_id,
      ranking_model.ITEM_ID: examples.item_id,
    }
    dataset = tf.data.Dataset.from_tensor_slices((features, examples.label))
    if shuffle:
      dataset = dataset.shuffle(len(examples), seed=seed)
    return dataset.repeat(num_epochs).batch(batch_size)

  return _input_fn
