"""How the slices of one tensor fit together.

Not public API. Used by `layouts` to put a variable stored in pieces back
together: the axis along which per-partition tensors are concatenated
(`concat_axis`), and whether a variable's slices can be parts of it
(`coverage_problem`: they may leave elements uncovered, never overlap).
"""

from typing import List, Optional, Sequence

from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import tensor_slice


def concat_axis(
  shapes: Sequence[Sequence[int]], full_shape: Optional[Sequence[int]] = None
) -> Optional[int]:
  """The axis along which stock partitions of these shapes concatenate.

  Args:
    shapes: The parts' shapes, in part order.
    full_shape: The whole variable's shape if known (a model's variable, in
      warm start). Default: unknown.

  Returns:
    Without `full_shape`, the one axis in which the shapes differ, or 0 if
    they are all the same shape (every TF1 partitioner splits one axis, and
    the default one axis 0). With `full_shape`, the first axis along which
    they concatenate to exactly `full_shape`, so that equal parts of a
    variable split along axis 1 still fit a model that says so. None if no
    axis fits: no parts, ranks that differ or are 0, shapes that differ in
    more than one axis, or that do not make `full_shape`.
  """
  if not shapes:
    return None
  rank = len(shapes[0])
  if rank == 0 or any(len(shape) != rank for shape in shapes):
    return None
  if full_shape is None:
    differing = [
      axis for axis in range(rank) if len({shape[axis] for shape in shapes}) > 1
    ]
    if len(differing) > 1:
      return None
    return differing[0] if differing else 0
  if len(full_shape) != rank:
    return None
  for axis in range(rank):
    others_match = all(
      shape[d] == full_shape[d]
      for shape in shapes
      for d in range(rank)
      if d != axis
    )
    if others_match and sum(s[axis] for s in shapes) == full_shape[axis]:
      return axis
  return None


# Slices along more than one axis are checked pairwise; TensorFlow never
# writes them (its partitioners split one axis), so few is plenty.
_MAX_MULTI_AXIS_SLICES = 2000


def coverage_problem(
  shape: Sequence[int], slices: Sequence[tensor_slice.TensorSlice]
) -> Optional[str]:
  """Why slices cannot be parts of one tensor (they overlap), or None.

  Slices that leave elements uncovered are fine (`Variable.complete`).
  Slices along one axis (what TensorFlow writes) are sorted and checked end
  to start: n log n. Slices along several axes are compared pairwise after a
  sort by their first axis, up to `_MAX_MULTI_AXIS_SLICES`.
  """
  boxes = [part.bounds(shape) for part in slices]
  sizes = [
    bundle.num_elements([end - start for start, end in box]) for box in boxes
  ]
  volume = sum(sizes)
  if volume > bundle.num_elements(shape):
    return (
      f"its {len(slices)} slices hold {volume} elements, more than its "
      f"{bundle.num_elements(shape)} (first slices: "
      f"{errors.format_list((f'`{s}`' for s in slices), limit=3)})"
    )
  # Fewer is fine: TF1 writes the slots of one partition that way.
  split_axes = {
    axis
    for box in boxes
    for axis, ((start, end), dim) in enumerate(zip(box, shape))
    if (start, end) != (0, dim)
  }
  if not shape:
    return None  # A scalar's one slice; the volumes add up.
  if len(split_axes) <= 1:
    axis = split_axes.pop() if split_axes else 0
    order = sorted(range(len(boxes)), key=lambda i: boxes[i][axis])
    previous = None
    for i in order:
      if not sizes[i]:
        continue
      if previous is not None and boxes[i][axis][0] < boxes[previous][axis][1]:
        return f"slices `{slices[previous]}` and `{slices[i]}` overlap"
      previous = i
    return None  # No overlaps: an exact tiling, or part of one.
  if len(boxes) > _MAX_MULTI_AXIS_SLICES:
    return (
      f"it has {len(boxes)} slices along several axes; this tool "
      f"checks at most {_MAX_MULTI_AXIS_SLICES} (TensorFlow's "
      "partitioners split one axis)"
    )
  order = sorted(
    (i for i in range(len(boxes)) if sizes[i]), key=lambda i: boxes[i][0]
  )
  active: List[int] = []
  for i in order:
    start = boxes[i][0][0]
    active = [j for j in active if boxes[j][0][1] > start]
    for j in active:
      if all(
        a < other_end and other_start < b
        for (a, b), (other_start, other_end) in zip(boxes[i], boxes[j])
      ):
        return f"slices `{slices[j]}` and `{slices[i]}` overlap"
    active.append(i)
  return None
