"""What a checkpoint holds, for display: variables with small values, raw keys.

The inspect binary shows a `Description`; the guide scenario shows raw-key
`TensorRow`s, as `tf.train.load_checkpoint(...).get_variable_to_shape_map()`
lists them. `cli/render.py` turns both into text.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence

from absl import logging
import numpy as np

from estimator_ckpt import errors
from estimator_ckpt._src import reader
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import keys

# Tensors with at most this many elements show their values.
MAX_VALUE_ELEMENTS = 8
_OBJECT_GRAPH_KEY = keys.OBJECT_GRAPH_KEY.encode()


@dataclasses.dataclass(frozen=True)
class Description:
  """What the inspect binary prints about a checkpoint."""

  contents: reader.Contents
  values: Dict[str, np.ndarray]

  @property
  def total_bytes(self) -> int:
    return sum(self.contents.bundle.shard_sizes)


def describe(
  path: str,
  *,
  with_values: bool = False,
  max_value_elements: int = MAX_VALUE_ELEMENTS,
) -> Description:
  """Reads a checkpoint for display; values only of small tensors.

  Args:
    path: A model dir or checkpoint prefix.
    with_values: Read the values of variables with at most
      `max_value_elements` elements (checksums verified).
    max_value_elements: See `with_values`.
  """
  contents = reader.read(path)
  values = {}
  if with_values:
    for name, variable in contents.variables.items():
      if bundle.num_elements(variable.shape) <= max_value_elements:
        try:
          values[name] = reader.variable_value(contents, variable)
        except errors.IncompatibleCheckpointError as e:
          logging.warning("Not showing the value of %s: %s", name, e)
  return Description(contents, values)


@dataclasses.dataclass(frozen=True)
class TensorRow:
  """One tensor of a checkpoint, by raw key, as a table shows it."""

  key: str
  shape: Sequence[int]
  dtype: str
  value: Optional[np.ndarray]


def read_rows(path: str, with_values: bool = True) -> List[TensorRow]:
  """Every tensor of a checkpoint (model dir or prefix), sorted by raw key.

  Like `tf.train.load_checkpoint(path).get_variable_to_shape_map()`: raw keys,
  including `_CHECKPOINTABLE_OBJECT_GRAPH`; partitioned tensors once.
  """
  contents = reader.read(path)
  checkpoint = contents.bundle
  rows = []
  for key in checkpoint.tensor_keys():
    entry = checkpoint.entries[key]
    shape = bundle.shape_of(entry)
    value = None
    if with_values and (
      key == _OBJECT_GRAPH_KEY
      or bundle.num_elements(shape) <= MAX_VALUE_ELEMENTS
    ):
      value = reader.variable_value(
        contents, reader.key_variable(contents, key)
      )
    rows.append(
      TensorRow(
        reader.key_name(key), list(shape), bundle.dtype_of(entry).name, value
      )
    )
  return rows
