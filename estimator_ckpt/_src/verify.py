"""Verifying a checkpoint, and comparing two across formats.

Public: `verify` (re-exported by `estimator_ckpt`); `Report` is what it
returns. Everything TensorFlow would trip over is checked by our own code
(`bundle.read` for the index and file sizes), then every tensor's bytes are
read once and checked against their stored crc32c, at disk speed and in
constant memory. With `against`, variables are matched by TF1 name (so a TF1
checkpoint compares with its TF2 conversion) and compared bit for bit.
"""

import collections
import dataclasses
from typing import Any, List, Optional, Tuple

import numpy as np

from estimator_ckpt import errors
from estimator_ckpt._src import progress
from estimator_ckpt._src import reader
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import checksums
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.storage import base

# Problems listed in one error message before "... and N more".
_MAX_LISTED = 10


@dataclasses.dataclass(frozen=True)
class Report:
  """What `verify` checked.

  Attributes:
    prefix: The checkpoint verified.
    format: `tf1` or `tf2`.
    num_variables: Variables by TF1 name.
    num_tensors: Stored tensors (slices count one each) whose checksums
      matched, in both checkpoints if `against`.
    num_bytes: Bytes of tensor data checksummed, likewise.
    against: The checkpoint compared with, if any.
    against_format: Its format.
  """

  prefix: str
  format: str
  num_variables: int
  num_tensors: int
  num_bytes: int
  against: Optional[str] = None
  against_format: Optional[str] = None

  def summary(self) -> str:
    """One line for people, e.g. `OK /m/model.ckpt-20 (tf1): ...`."""
    checked = (
      f"{self.num_tensors} tensors, "
      f"{progress.size_text(self.num_bytes)} checksummed"
    )
    if not self.against:
      return (
        f"OK {self.prefix} ({self.format}): {self.num_variables} "
        f"variables, {checked}"
      )
    return (
      f"OK {self.prefix} ({self.format}) and {self.against} "
      f"({self.against_format}): the same {self.num_variables} variables "
      f"by TF1 name, bit-identical; {checked} in both"
    )


def _listed(problems: List[str]) -> str:
  return errors.format_list(problems, limit=_MAX_LISTED, separator="\n  ")


def _check_object_graph(contents: reader.Contents) -> List[str]:
  """Keys the TF2 object graph names but the index lacks."""
  if contents.object_graph is None:
    return []
  missing = sorted(
    set(keys.full_names_by_key(contents.object_graph))
    - {k.decode("utf-8", "surrogateescape") for k in contents.bundle.entries}
  )
  return [
    f"The object graph of `{contents.bundle.index_path}` names key `{key}`, "
    "which the index lacks; TensorFlow cannot restore that variable."
    for key in missing
  ]


def _check_data(
  contents: reader.Contents, reporter: progress.Progress
) -> Tuple[int, int]:
  """Checks every stored tensor's checksum; returns (tensors, bytes)."""
  checkpoint = contents.bundle
  problems = _check_object_graph(contents)
  count = 0
  size = 0
  for shard_id in range(checkpoint.num_shards):
    ranges = checksums.data_ranges(checkpoint, shard_id)
    count += len(ranges)
    size += sum(r.size for r in ranges)
    problems += checksums.check_ranges(
      checkpoint, shard_id, ranges, reporter.add
    )
  if problems:
    raise errors.CorruptCheckpointError(
      f"`{contents.prefix}` is damaged: {len(problems)} problem"
      f"{'s' if len(problems) > 1 else ''}:\n  {_listed(problems)}"
    )
  return count, size


class _DataFiles:
  """Data files kept open across a comparison, the most recent few.

  On an object store an open costs requests, and a comparison reads every
  tensor; tensors of one variable mostly share files, so a few open files
  serve. Each open URL holds a read buffer, so the number stays bounded.
  """

  _MAX_OPEN = 16

  def __init__(self):
    self._open: "collections.OrderedDict[str, Any]" = collections.OrderedDict()

  def get(self, path: str) -> base.ReadableFile:
    if path in self._open:
      self._open.move_to_end(path)
      return self._open[path][1]
    if len(self._open) >= self._MAX_OPEN:
      _, (context, _) = self._open.popitem(last=False)
      context.__exit__(None, None, None)
    context = checkpoint_files.open_regular(path, "data file")
    file = context.__enter__()
    self._open[path] = (context, file)
    return file

  def close(self) -> None:
    while self._open:
      _, (context, _) = self._open.popitem()
      context.__exit__(None, None, None)


def _same_bytes(
  files: _DataFiles,
  a: reader.Contents,
  a_part: reader.Part,
  b: reader.Contents,
  b_part: reader.Part,
) -> bool:
  if a_part.entry.size != b_part.entry.size:
    return False
  if a_part.entry.crc32c != b_part.entry.crc32c:
    return False
  fa = files.get(a.bundle.data_path(a_part.entry.shard_id))
  fb = files.get(b.bundle.data_path(b_part.entry.shard_id))
  done = 0
  while done < a_part.entry.size:
    size = min(a_part.entry.size - done, checksums.CHUNK_SIZE)
    if fa.pread(size, a_part.entry.offset + done) != fb.pread(
      size, b_part.entry.offset + done
    ):
      return False
    done += size
  return True


def _same_values(
  files: _DataFiles,
  a: reader.Contents,
  a_var: reader.Variable,
  b: reader.Contents,
  b_var: reader.Variable,
) -> bool:
  """Bit-for-bit equality, streaming when both store the same slices."""
  a_parts = {part.slice: part for part in a_var.parts}
  b_parts = {part.slice: part for part in b_var.parts}
  if a_parts.keys() == b_parts.keys():
    return all(
      _same_bytes(files, a, a_parts[s], b, b_parts[s]) for s in a_parts
    )
  a_value = reader.variable_value(a, a_var)
  b_value = reader.variable_value(b, b_var)
  if a_value.dtype == object:
    return a_value.tolist() == b_value.tolist()
  return (
    np.ascontiguousarray(a_value).tobytes()
    == np.ascontiguousarray(b_value).tobytes()
  )


def _differences(a: reader.Contents, b: reader.Contents) -> List[str]:
  files = _DataFiles()
  try:
    return _differences_in(files, a, b)
  finally:
    files.close()


def _differences_in(
  files: _DataFiles, a: reader.Contents, b: reader.Contents
) -> List[str]:
  differences = []
  for name in sorted(set(a.variables) | set(b.variables)):
    a_var = a.variables.get(name)
    b_var = b.variables.get(name)
    if b_var is None:
      differences.append(f"`{name}`: only in {a.prefix}")
    elif a_var is None:
      differences.append(f"`{name}`: only in {b.prefix}")
    elif a_var.dtype != b_var.dtype:
      differences.append(
        f"`{name}`: dtype {a_var.dtype.name} vs {b_var.dtype.name}"
      )
    elif a_var.shape != b_var.shape:
      differences.append(
        f"`{name}`: shape {list(a_var.shape)} vs {list(b_var.shape)}"
      )
    elif not _same_values(files, a, a_var, b, b_var):
      differences.append(f"`{name}`: values differ")
  return differences


def verify(path: str, *, against: Optional[str] = None) -> Report:
  """Checks a checkpoint's index, files and every tensor's checksum.

  Catches what TensorFlow reports opaquely, late, or not at all: damaged,
  truncated or empty index files, entries TensorFlow would abort the process
  on (negative dimensions, unparseable entries), a missing or wrong header,
  duplicate or unsorted keys, missing or truncated data files, slices that do
  not tile their variable, flipped data bytes, index and data from different
  saves, and (TF2) object-graph keys missing from the index.

  Args:
    path: A model dir (its latest checkpoint) or a checkpoint prefix.
    against: Another checkpoint (dir or prefix, either format), also
      verified, then compared with `path` variable by variable, by TF1 name:
      the same names, dtypes, shapes and bit-identical values.

  Returns:
    A `Report` of what was checked.

  Raises:
    errors.CheckpointNotFoundError: No checkpoint at `path` or `against`.
    errors.CorruptCheckpointError: A damaged checkpoint; the message lists
      every problem found, naming files and keys.
    errors.CheckpointsDifferError: With `against`, the checkpoints differ;
      `.differences` lists each difference.
  """
  contents = reader.read(path)
  other = reader.read(against) if against is not None else None
  total = sum(contents.bundle.shard_sizes) + (
    sum(other.bundle.shard_sizes) if other else 0
  )
  reporter = progress.Progress("Verifying checksums", total)
  num_tensors, num_bytes = _check_data(contents, reporter)
  if other is None:
    return Report(
      contents.prefix,
      contents.format,
      len(contents.variables),
      num_tensors,
      num_bytes,
    )
  other_tensors, other_bytes = _check_data(other, reporter)
  differences = _differences(contents, other)
  if differences:
    raise errors.CheckpointsDifferError(
      f"`{contents.prefix}` ({contents.format}) and `{other.prefix}` "
      f"({other.format}) differ in {len(differences)} variable"
      f"{'s' if len(differences) > 1 else ''}:\n  {_listed(differences)}",
      differences,
    )
  return Report(
    contents.prefix,
    contents.format,
    len(contents.variables),
    num_tensors + other_tensors,
    num_bytes + other_bytes,
    other.prefix,
    other.format,
  )
