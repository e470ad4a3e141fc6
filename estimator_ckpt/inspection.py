"""Reading a checkpoint into rows and printing them as a table.

Not public API yet: the checkpoint tools build on it.
"""

import dataclasses
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt import keys

# Tensors with at most this many elements show their values.
_MAX_VALUE_ELEMENTS = 8


@dataclasses.dataclass(frozen=True)
class TensorRow:
  """One tensor of a checkpoint, as a table shows it."""
  key: str
  shape: Sequence[int]
  dtype: str
  value: Optional[str]


def latest_checkpoint(path: str) -> str:
  """Resolves a model dir to its latest checkpoint; a prefix stays itself.

  Raises:
    errors.CheckpointNotFoundError: Neither a dir with a checkpoint nor a
      prefix with an `.index` file.
  """
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise errors.CheckpointNotFoundError(
          f"`{path}` is a directory without a `checkpoint` state file naming "
          "an existing checkpoint. Pass a model_dir that has been trained, "
          "or a checkpoint prefix such as `model_dir/model.ckpt-100`.")
    return latest
  if not tf.io.gfile.exists(path + ".index"):
    raise errors.CheckpointNotFoundError(
        f"`{path}` is neither a model_dir nor a checkpoint prefix (there is no "
        f"`{path}.index`). Pass a model_dir or a prefix without the "
        "`.index`/`.data-*` suffix.")
  return path


def _format_value(value: np.ndarray) -> str:
  if value.dtype.kind in "OS" and value.size == 1:
    text = value.reshape(-1)[0]
    if isinstance(text, bytes) and len(text) > 32:
      return f"<{len(text)} bytes>"
  return np.array2string(value, threshold=_MAX_VALUE_ELEMENTS, precision=6,
                         separator=", ").replace("\n", "")


def read_rows(path: str, with_values: bool = True) -> List[TensorRow]:
  """Every tensor of a checkpoint (model dir or prefix), sorted by key."""
  reader = tf.train.load_checkpoint(latest_checkpoint(path))
  dtypes = reader.get_variable_to_dtype_map()
  rows = []
  for key, shape in sorted(reader.get_variable_to_shape_map().items()):
    value = None
    if with_values and (key == keys.OBJECT_GRAPH_KEY or
                        int(np.prod(shape)) <= _MAX_VALUE_ELEMENTS):
      value = _format_value(np.asarray(reader.get_tensor(key)))
    rows.append(TensorRow(key, list(shape), dtypes[key].name, value))
  return rows


def format_table(rows: Sequence[TensorRow]) -> str:
  """Formats rows as an aligned text table."""
  header = ("key", "shape", "dtype", "value")
  cells = [header] + [
      (row.key, str(list(row.shape)), row.dtype,
       "" if row.value is None else row.value) for row in rows
  ]
  widths = [max(len(cell[i]) for cell in cells) for i in range(3)]
  lines = []
  for i, cell in enumerate(cells):
    lines.append("  ".join(
        [cell[j].ljust(widths[j]) for j in range(3)] + [cell[3]]).rstrip())
    if i == 0:
      lines.append("  ".join("-" * w for w in widths + [5]))
  return "\n".join(lines)
