"""Variable values as tensors, read by TensorFlow at the keys layouts chose.

Not public API: `load_weights` reads every value it assigns here. `layouts`
decides which key holds a TF1 name (the one resolver); TensorFlow's own
bundle reader (`RestoreV2`, tensorflow/core/util/tensor_bundle) then reads
the tensors, all in one op, as `tf.train.Checkpoint.restore` and
`model.load_weights` do: straight into tensors (no numpy copies on the way),
checksums verified, a partitioned variable assembled from its slices (or just
the rows a shard needs, `LookupSlice`), local or remote paths alike. That
keeps a load's time and peak memory those of Keras's own restore.

Stock per-part layouts (`var_list/emb.Spart_<i>`, one whole tensor per
partition) have no key that holds the variable; their value is read by
`reader.variable_value` and sliced in numpy.
"""

import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import layouts
from estimator_ckpt._src import reader

# Rows `[start, end)` of axis 0, or None for the whole value.
Rows = Optional[Tuple[int, int]]


@dataclasses.dataclass(frozen=True, eq=False)
class Request:
  """A value to read: a checkpoint variable, whole or some of its rows.

  Requests are equal when they read the same rows of the same variable (the
  variable's entries, protos, do not hash).
  """

  source: layouts.Variable
  rows: Rows = None

  def _identity(self) -> Tuple[str, Tuple[str, ...], Rows]:
    return self.source.name, self.source.keys, self.rows

  def __eq__(self, other: object) -> bool:
    return isinstance(other, Request) and self._identity() == other._identity()

  def __hash__(self) -> int:
    return hash(self._identity())


def _key(source: layouts.Variable) -> bytes:
  if source.partitioned:
    # The entry that lists the slices; RestoreV2 assembles them.
    return source.keys[0].encode("utf-8", "surrogateescape")
  return source.parts[0].key


def _shape_and_slice(source: layouts.Variable, rows: Rows) -> str:
  """RestoreV2's `shape_and_slices` entry ("" reads a whole tensor)."""
  shape = tuple(source.shape)
  if rows is None or not shape or rows == (0, shape[0]):
    if not source.partitioned:
      return ""
    rows = None
  extents = ["-"] * len(shape)
  if rows is not None:
    extents[0] = f"{rows[0]},{rows[1] - rows[0]}"
  return " ".join(str(d) for d in shape) + " " + ":".join(extents)


def _numpy_read(contents: reader.Contents, request: Request) -> tf.Tensor:
  value = reader.variable_value(contents, request.source)
  if request.rows is not None:
    value = value[request.rows[0] : request.rows[1]]
  return tf.constant(value)


def read(
  contents: reader.Contents, requests: Sequence[Request]
) -> Dict[Request, tf.Tensor]:
  """Reads every request (one RestoreV2 op for all that have a key).

  Args:
    contents: The checkpoint, as `reader.read` resolved it.
    requests: What to read; duplicates are read once.

  Returns:
    The tensor of each request.

  Raises:
    errors.CorruptCheckpointError: TensorFlow could not read a tensor (a
      checksum, a truncated or missing data file, slices that do not cover
      the rows); the message names the checkpoint, the variable and the
      key.
  """
  unique = list(dict.fromkeys(requests))
  tensors: Dict[Request, tf.Tensor] = {}
  batched: List[Request] = []
  for request in unique:
    if request.source.layout == layouts.Layout.STOCK_PARTS:
      tensors[request] = _numpy_read(contents, request)
    else:
      batched.append(request)
  if not batched:
    return tensors
  names = [_key(r.source) for r in batched]
  slices = [_shape_and_slice(r.source, r.rows) for r in batched]
  dtypes = [tf.as_dtype(r.source.dtype.name) for r in batched]
  try:
    with tf.device("/cpu:0"):
      values = tf.raw_ops.RestoreV2(
        prefix=contents.prefix,
        tensor_names=names,
        shape_and_slices=slices,
        dtypes=dtypes,
      )
  except tf.errors.OpError as e:
    raise _read_error(contents, batched, e) from None
  tensors.update(zip(batched, values))
  return tensors


def _read_error(
  contents: reader.Contents, batched: Sequence[Request], e: tf.errors.OpError
) -> errors.Error:
  """The error for a failed read, naming the variable and key.

  TensorFlow's message names the data shard, not the tensor; reading each
  requested variable again with this package's reader finds the one that
  fails and says which file and key (an error path: the cost is no matter).
  """
  for request in dict.fromkeys(batched):
    try:
      reader.variable_value(contents, request.source)
    except errors.Error as found:
      return type(found)(f"{found} Nothing was assigned.")
  # TensorFlow prefixes the op's function node: `{{function_node ...}} `.
  message = e.message.rsplit("}} ", 1)[-1]
  return errors.CorruptCheckpointError(
    f"TensorFlow could not read `{contents.prefix}`: {message} Nothing was "
    "assigned. Run `verify` on the checkpoint to find the damaged file and "
    "key, and restore the files from a copy."
  )
