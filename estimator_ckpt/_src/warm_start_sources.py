"""Where each selected variable's tensor is in the checkpoint, and reading it.

Not public API. `CheckpointIndex` finds a variable's tensor (one key, or
stock per-partition tensors to put back together) in any layout through
`layouts`; `check_compatible` checks shapes and dtypes before any step;
`init_from_parts` and `init_from_value` initialise what stock warm start
cannot read itself.
"""

import dataclasses
from typing import (
  Any,
  List,
  Mapping,
  Optional,
  Sequence,
  Tuple,
)

from absl import logging
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import layouts
from estimator_ckpt._src import reader
from estimator_ckpt._src import slice_geometry
from estimator_ckpt._src import warm_start_selection
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.keras import checkpoints as keras_checkpoints

# Shape/dtype problems listed in one error before "... and N more".
_MAX_LISTED_PROBLEMS = 10


@dataclasses.dataclass(frozen=True)
class Source:
  """Where a variable's value is in the checkpoint (not public).

  Either one key holding the whole logical tensor (possibly stored as
  slices), or the keys of its partitions stored one full tensor each,
  concatenated along `axis`.
  """

  name: str
  keys: Tuple[str, ...]
  shapes: Tuple[Tuple[int, ...], ...]
  dtype: tf.dtypes.DType
  axis: Optional[int] = None

  @property
  def assembled(self) -> bool:
    return len(self.keys) > 1 or self.axis is not None


def check_compatible(
  checkpoint: str,
  selected: Sequence[warm_start_selection.GraphVariable],
  sources: Mapping[str, Source],
) -> None:
  """Raises one error listing every shape or dtype mismatch."""
  by_name = {variable.name: variable for variable in selected}
  problems = []
  for name, source in sorted(sources.items()):
    variable = by_name[name]
    shape_ok = source.axis is not None or (
      len(source.shapes) == 1 and source.shapes[0] == variable.shape
    )
    if shape_ok and source.dtype == variable.dtype:
      continue
    stored = " + ".join(_format_shape(s) for s in source.shapes)
    if len(source.shapes) > 1:
      stored = f"{len(source.shapes)} partitions {stored}"
    problems.append(
      f"`{name}`: the model's variable has shape "
      f"{_format_shape(variable.shape)} and dtype {variable.dtype.name}; "
      f"the checkpoint's `{source.name}` has shape {stored} and dtype "
      f"{source.dtype.name}"
    )
  if problems:
    listed = ";\n  ".join(problems[:_MAX_LISTED_PROBLEMS])
    more = ""
    if len(problems) > _MAX_LISTED_PROBLEMS:
      more = f"\n  ... and {len(problems) - _MAX_LISTED_PROBLEMS} more"
    raise errors.ShapeMismatchError(
      f"Cannot warm-start from `{checkpoint}`: {len(problems)} variable(s) "
      f"differ from their checkpoint tensors:\n  {listed}{more}.\nWarm "
      "start copies values exactly, so shapes and dtypes must match. Leave "
      "such a variable out with vars_to_warm_start, map it to another "
      "tensor with rename, or change the model."
    )


def _format_shape(shape: Sequence[int]) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


class CheckpointIndex:
  """The variables of one checkpoint by TF1 name, in any layout (not public).

  `layouts` resolves the names (the precedence and conflict rules are in its
  docstring), as for inspection and the Scaffold factory's restore. The index
  is read by `reader` (no tensor bytes); a model dir, a checkpoint prefix or
  a SavedModel's `variables/variables` prefix.
  """

  def __init__(
    self,
    checkpoint: str,
    *,
    keras_slots: bool = False,
    adam_betas: Optional[Tuple[float, float]] = None,
  ):
    contents = reader.read(checkpoint)
    self.bundle = contents.bundle
    self.object_based = contents.format == reader.TF2
    self._variables = contents.variables
    # Values a Keras checkpoint lacks, by TF1 name (Adam's beta powers).
    self.synthesized: Mapping[str, Any] = {}
    self.notes: Tuple[str, ...] = ()
    keras = None
    if keras_slots:
      keras = keras_checkpoints.tf1_mapping(contents, adam_betas=adam_betas)
    if keras is not None:
      # Keras optimizer state answers to its TF1 slot names only.
      self._variables = {
        keras.renames.get(name, name): variable
        for name, variable in contents.variables.items()
      }
      self.synthesized = keras.synthesized
      self.notes = keras.notes
    # Every variable, by the name it is reported under.
    self.names = tuple(self._variables)

  def variable(self, name: str) -> layouts.Variable:
    """The checkpoint variable `find` found under `name`."""
    return self._variables[name]

  def names_read_for(self, name: str) -> List[str]:
    """The checkpoint names a variable with checkpoint name `name` reads."""
    return [name] if name in self._variables else []

  def find(self, name: str, shape: Optional[Sequence[int]]) -> Optional[Source]:
    """Where the variable with checkpoint name `name` is, or None.

    Args:
      name: The variable's name in the checkpoint (after renaming).
      shape: The model's full shape of it, used to find the axis along
        which per-partition tensors are concatenated; None when it may
        differ (a remapped vocabulary): the one axis the parts differ in.
    """
    variable = self._variables.get(name)
    if variable is None:
      return None
    dtype = tf.dtypes.as_dtype(variable.dtype.enum)
    if variable.layout is not layouts.Layout.STOCK_PARTS or (
      not variable.partitioned
    ):
      # One key holds the whole logical tensor (maybe as slices); an alias's
      # first key is the one it aliases.
      return Source(
        name=name,
        keys=(variable.keys[0],),
        shapes=(variable.shape,),
        dtype=dtype,
      )
    shapes = tuple(bundle.shape_of(part.entry) for part in variable.parts)
    return Source(
      name=name,
      keys=tuple(reader.key_name(p.key) for p in variable.parts),
      shapes=shapes,
      dtype=dtype,
      axis=slice_geometry.concat_axis(
        shapes, None if shape is None else tuple(shape)
      ),
    )


def init_from_value(
  variable: warm_start_selection.GraphVariable, value: Any
) -> None:
  """Initialises an unpartitioned variable to a constant (see below)."""
  for part in variable.parts:
    constant = tf.constant(value, dtype=part.dtype.base_dtype)
    constant.set_shape(part.shape)
    # pylint: disable=protected-access
    part._initializer_op = part.assign(constant, read_value=False)
    part._initial_value = constant


def init_from_parts(
  checkpoint: str, variable: warm_start_selection.GraphVariable, source: Source
) -> None:
  """Initialises `variable` from per-partition tensors, re-slicing them.

  Each of the variable's partitions (or the whole variable) reads, from every
  stored part it overlaps, just the overlapping slice (RestoreV2 slice
  specs), and concatenates them. This is what `init_from_checkpoint` does
  for one stored tensor (checkpoint_utils._set_checkpoint_initializer),
  including replacing the variable's private initializer op, which is how
  TensorFlow itself warm-starts.
  """
  axis = source.axis
  assert axis is not None  # Stock parts reassemble along one axis.
  bounds = []
  start = 0
  for shape in source.shapes:
    bounds.append((start, start + shape[axis]))
    start += shape[axis]
  for part in variable.parts:
    slice_info = warm_start_selection.save_slice_info(part)
    if slice_info is not None:
      offset, extent = list(slice_info.var_offset), list(slice_info.var_shape)
    else:
      offset, extent = [0] * len(variable.shape), list(variable.shape)
    low, high = offset[axis], offset[axis] + extent[axis]
    dtype = part.dtype.base_dtype
    with tf.compat.v1.device(part.device), tf.compat.v1.device("/cpu:0"):
      pieces = []
      for key, shape, (part_low, part_high) in zip(
        source.keys, source.shapes, bounds
      ):
        overlap_low, overlap_high = max(low, part_low), min(high, part_high)
        if overlap_low >= overlap_high:
          continue
        piece_offset = list(offset)
        piece_extent = list(extent)
        piece_offset[axis] = overlap_low - part_low
        piece_extent[axis] = overlap_high - overlap_low
        spec = tf.compat.v1.Variable.SaveSliceInfo(
          key, list(shape), piece_offset, piece_extent
        ).spec
        pieces.append(
          tf.raw_ops.RestoreV2(
            prefix=checkpoint,
            tensor_names=[key],
            shape_and_slices=[spec],
            dtypes=[dtype],
            name="warm_start_restore",
          )[0]
        )
      value = pieces[0] if len(pieces) == 1 else tf.concat(pieces, axis)
      value.set_shape(part.shape)
    # pylint: disable=protected-access
    part._initializer_op = part.assign(value, read_value=False)
    part._initial_value = value
    # pylint: enable=protected-access
  logging.debug(
    "Warm-started %s from %d per-partition tensors %s.",
    variable.name,
    len(source.keys),
    ", ".join(source.keys),
  )
