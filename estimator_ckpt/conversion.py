"""Converting checkpoints between TF1 (name-based) and TF2 (object-based).

Public: `convert` (re-exported by `estimator_ckpt`). `plan` is not public API;
the convert binary prints it for `--dry_run`.

A converted checkpoint holds the same tensor bytes under other keys, so
conversion rewrites only the `.index` and copies the data files byte for byte
(or hard-links them with `link=True`); tensors are never loaded into memory,
let alone into `tf.Variable`s as the guide's `convert_tf1_to_tf2` does.
Memory use does not grow with the checkpoint. Copies read the source once,
verify the checksums of the bytes they write, and write with O_DIRECT where
the file system allows (`_copy_file`).

TF2 output has the layout of the Scaffold factory (`keys.object_graph`):

  var_list/<escaped TF1 name>/.ATTRIBUTES/VARIABLE_VALUE   every variable
  step/.ATTRIBUTES/VARIABLE_VALUE                          the global step
  global_step                                              alias of `step/...`
  _CHECKPOINTABLE_OBJECT_GRAPH                             keys.object_graph

A partitioned variable stays one entry with its slices (slice keys re-encoded
for the new key), as TF1 stores it. The alias shares the step's bytes, so
Estimator's `train(max_steps=N)` and `tf.train.load_variable(dir,
'global_step')` keep working. The object graph goes into a new, last data
file, so the source's data files are reused unchanged. TF1 output stores every
variable under its name (sources: see `inspection` for how TF2 keys map to
names). Converting to the source's own format is allowed (to rename, or to
normalize another TF2 layout).

Writes are atomic. Everything is written into a hidden staging directory next
to the destination (so renames stay on one file system), fsynced, then moved
into place: a new or empty `dst_dir` appears in one `rename`; into an existing
directory (see `_commit_into`) the state file first stops naming checkpoints
being replaced, then the data files go in, then each `.index` (TensorFlow's
own "checkpoint exists" marker), then the new `checkpoint` state file. A
failure removes the staging directory; a kill leaves at most the hidden
staging directory (and, with `overwrite`, the replaced checkpoints absent
rather than mixed), and the next conversion to the same destination removes
the leftovers.
"""

import dataclasses
import errno
import fcntl
import mmap
import os
import queue
import secrets
import shutil
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging

from estimator_ckpt import bundle
from estimator_ckpt import checkpoint_state
from estimator_ckpt import errors
from estimator_ckpt import inspection
from estimator_ckpt import keys
from estimator_ckpt import progress
from estimator_ckpt import protos
from estimator_ckpt import renaming

TF1 = inspection.TF1
TF2 = inspection.TF2

# Copies: buffers and O_DIRECT offsets and sizes aligned to this (a page; the
# strictest logical block size in common use). 4 buffers of 8 MiB, 2 writes
# in flight: no layout tried here (8-64 MiB buffers, 1-4 writers) was
# reliably faster on 2 GiB, and 32 MiB of buffers keeps peak RSS flat.
_DIRECT_ALIGNMENT = 4096
_COPY_CHUNK = 8 << 20
_COPY_BUFFERS = 4
_COPY_WRITERS = 2
_STAGING_TAG = ".convert-tmp-"
# Hard links fail with these where the file system does not allow them.
_NO_LINK_ERRNOS = frozenset(
    (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP,
     errno.EACCES))
# O_DIRECT opens or writes fail with these where the file system lacks it.
_NO_DIRECT_ERRNOS = frozenset((errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP))
_OBJECT_GRAPH_KEY = keys.OBJECT_GRAPH_KEY.encode()
_ALIAS_KEY = keys.GLOBAL_STEP_NAME.encode()


@dataclasses.dataclass(frozen=True)
class VariableMapping:
  """Where one variable goes.

  Attributes:
    source_name: Its TF1 name in the source.
    source_keys: Its keys in the source.
    name: Its TF1 name in the destination (after `rename`).
    key: Its key in the destination.
  """
  source_name: str
  source_keys: Tuple[str, ...]
  name: str
  key: str


@dataclasses.dataclass
class Plan:
  """One output checkpoint, before anything is written.

  Attributes:
    source: The source checkpoint.
    to: `tf1` or `tf2`.
    basename: The output prefix's file name (the source's).
    mappings: One per variable, sorted by source name.
    header: The output's header (shard count updated).
    entries: The output's entries, shard ids renumbered.
    shards: Output data file i is source data file `shards[i]`; a new last
      file holds `extra_shard` if that is not None.
    extra_shard: Bytes of a new last data file (the TF2 object graph).
    checked_keys: Per source shard, the data-owning keys the output uses,
      whose checksums a copy verifies.
  """
  source: inspection.Contents
  to: str
  basename: str
  mappings: List[VariableMapping]
  header: protos.BundleHeaderProto
  entries: Dict[bytes, protos.BundleEntryProto]
  shards: List[int]
  extra_shard: Optional[bytes]
  checked_keys: Dict[int, List[bytes]]

  @property
  def num_shards(self) -> int:
    return self.header.num_shards

  @property
  def copy_bytes(self) -> int:
    return sum(self.source.bundle.shard_sizes[s] for s in self.shards)


def _check_name(name: str, source_name: str, to: str, prefix: str) -> None:
  problem = None
  if not name:
    problem = "is empty"
  elif name.startswith("\x00"):
    problem = "starts with a NUL byte, which marks slice keys"
  elif to == TF1 and name == keys.OBJECT_GRAPH_KEY:
    problem = "would make the TF1 output look object-based (TF2)"
  if problem:
    raise errors.InvalidArgumentError(
        f"Renaming `{source_name}` of `{prefix}` gives `{name}`, which "
        f"{problem}. Fix the rename spec.")


def _copied_entry(entry: protos.BundleEntryProto) -> protos.BundleEntryProto:
  copy = protos.BundleEntryProto()
  copy.CopyFrom(entry)
  return copy


def _plan_one(contents: inspection.Contents, to: str,
              renamer: renaming.Renamer) -> Plan:
  """Plans one output checkpoint: names, keys, entries, shards."""
  prefix = contents.prefix
  renamed: Dict[str, inspection.Variable] = {}
  sources_of: Dict[str, List[str]] = {}
  for name, variable in contents.variables.items():
    new_name = renamer(name)
    _check_name(new_name, name, to, prefix)
    sources_of.setdefault(new_name, []).append(name)
    renamed[new_name] = variable
  clashes = {new: old for new, old in sources_of.items() if len(old) > 1}
  if clashes:
    raise errors.InvalidArgumentError(
        f"Renaming the variables of `{prefix}` maps several onto one name: " +
        "; ".join(f"{errors.format_names(old)} -> `{new}`"
                  for new, old in sorted(clashes.items())) +
        ". Fix the rename spec so that every name stays unique.")

  has_step = to == TF2 and keys.GLOBAL_STEP_NAME in renamed
  key_of = {
      name: (keys.variable_key(name) if to == TF2 else name)
      for name in renamed
  }
  entries: Dict[bytes, protos.BundleEntryProto] = {}
  for name, variable in renamed.items():
    key = key_of[name].encode("utf-8", "surrogateescape")
    if not variable.partitioned:
      entries[key] = _copied_entry(variable.parts[0].entry)
      continue
    full = protos.BundleEntryProto(dtype=variable.dtype.enum)
    for dim in variable.shape:
      full.shape.dim.add(size=dim)
    for part in variable.parts:
      part.slice.to_proto(full.slices.add())
      entries[bundle.slice_key(key, part.slice)] = _copied_entry(part.entry)
    entries[key] = full
  step = renamed.get(keys.GLOBAL_STEP_NAME)
  if has_step and not step.partitioned:
    entries[_ALIAS_KEY] = _copied_entry(step.parts[0].entry)

  checked_keys: Dict[int, List[bytes]] = {}
  for variable in renamed.values():
    for part in variable.parts:
      checked_keys.setdefault(part.entry.shard_id, []).append(part.key)
  shards = sorted(checked_keys)
  new_shard_id = {old: new for new, old in enumerate(shards)}
  for entry in entries.values():
    if not entry.slices:
      entry.shard_id = new_shard_id[entry.shard_id]

  extra_shard = None
  if to == TF2:
    graph = keys.object_graph(
        [n for n in renamed if n != keys.GLOBAL_STEP_NAME],
        step_name=keys.GLOBAL_STEP_NAME if has_step else None,
        graph=protos.TrackableObjectGraph())
    extra_shard, crc = bundle.encode_strings([graph.SerializeToString()])
    entries[_OBJECT_GRAPH_KEY] = protos.BundleEntryProto(
        dtype=bundle.STRING.enum, shard_id=len(shards), offset=0,
        size=len(extra_shard), crc32c=crc)
  elif not shards:
    extra_shard = b""  # Every checkpoint has at least one data file.
  header = protos.BundleHeaderProto()
  header.CopyFrom(contents.bundle.header)
  header.num_shards = len(shards) + (extra_shard is not None)

  mappings = sorted(
      (VariableMapping(old, variable.keys, new, key_of[new])
       for new, variable in renamed.items()
       for old in sources_of[new]), key=lambda m: m.source_name)
  return Plan(contents, to, os.path.basename(prefix), mappings, header,
              entries, shards, extra_shard, checked_keys)


def _sources(src: str, all_checkpoints: bool) -> List[str]:
  if not all_checkpoints:
    return [checkpoint_state.resolve(src)]
  if not os.path.isdir(src):
    raise errors.InvalidArgumentError(
        f"all_checkpoints=True converts every checkpoint of a model_dir, but "
        f"`{src}` is not a directory. Pass the model_dir, or convert this "
        "one checkpoint with all_checkpoints=False.")
  return checkpoint_state.all_checkpoints(src)


def plan(src: str, *, to: str, rename: Optional[renaming.RenameSpec] = None,
         all_checkpoints: bool = False) -> List[Plan]:
  """Plans a conversion without touching any file (see `convert`).

  Returns:
    One `Plan` per output checkpoint, the latest last.

  Raises:
    errors.Error: As `convert`, except for destination checks.
  """
  if to not in inspection.FORMATS:
    raise errors.InvalidArgumentError(
        f"to={to!r} is not a checkpoint format; pass to='tf2' (object-based) "
        "or to='tf1' (name-based).")
  renamer = renaming.parse(rename)
  return [_plan_one(inspection.read(prefix), to, renamer)
          for prefix in _sources(src, all_checkpoints)]


def format_plan(p: Plan, dst_dir: str) -> str:
  """A plan as text: a summary line and one row per variable."""
  source = p.source
  lines = [
      f"{source.prefix} ({source.format}) -> "
      f"{os.path.join(dst_dir, p.basename)} ({p.to}): {len(p.mappings)} "
      f"variables, {p.num_shards} data file{'s' if p.num_shards > 1 else ''}"
      f", {progress.size_text(p.copy_bytes)} of data", ""
  ]
  rows = [["source name", "source key", "destination key"]]
  for m in p.mappings:
    key = m.key
    if p.to == TF2 and m.name == keys.GLOBAL_STEP_NAME:
      key += f" (and alias {keys.GLOBAL_STEP_NAME})"
    rows.append([m.source_name, ", ".join(m.source_keys), key])
  if source.format == TF1:
    rows = [[row[0], row[2]] for row in rows]
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  for i, row in enumerate(rows):
    lines.append("  ".join(cell.ljust(width)
                           for cell, width in zip(row, widths)).rstrip())
    if i == 0:
      lines.append("  ".join("-" * width for width in widths))
  return "\n".join(lines)


# Destination checks -----------------------------------------------------------


def _is_within(path: str, directory: str) -> bool:
  return path == directory or path.startswith(directory.rstrip(os.sep) +
                                              os.sep)


def _existing_outputs(dst_dir: str, plans: Sequence[Plan]) -> List[str]:
  if not os.path.isdir(dst_dir):
    return []
  names = set(os.listdir(dst_dir))
  existing = []
  if checkpoint_state.STATE_FILENAME in names:
    existing.append(checkpoint_state.STATE_FILENAME)
  for p in plans:
    existing += [n for n in names
                 if n == p.basename + ".index" or
                 n.startswith(p.basename + ".data-")]
  return sorted(existing)


def _check_destination(dst_dir: str, plans: Sequence[Plan],
                       overwrite: bool) -> None:
  real_dst = os.path.realpath(dst_dir)
  for p in plans:
    source_dir = os.path.dirname(os.path.realpath(p.source.prefix))
    if _is_within(real_dst, source_dir):
      raise errors.DestinationExistsError(
          f"dst_dir `{dst_dir}` is the source's directory `{source_dir}` or "
          "inside it. Converting in place would mix the formats in one model "
          "dir; pass a new directory outside the source.")
  if os.path.exists(dst_dir) and not os.path.isdir(dst_dir):
    raise errors.DestinationExistsError(
        f"dst_dir `{dst_dir}` exists and is not a directory.")
  existing = _existing_outputs(dst_dir, plans)
  if existing and not overwrite:
    raise errors.DestinationExistsError(
        f"dst_dir `{dst_dir}` already holds {errors.format_names(existing)}. "
        "Pass overwrite=True (--overwrite) to replace them, or a new "
        "directory.")


# Writing ----------------------------------------------------------------------


def _fsync_dir(path: str) -> None:
  fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
  try:
    os.fsync(fd)
  finally:
    os.close(fd)


def _write_file(path: str, data: bytes) -> None:
  """Writes a new file and fsyncs it."""
  with open(path, "xb", buffering=0) as f:
    _write_at(f.fileno(), memoryview(data), 0)
    os.fsync(f.fileno())


class _DirectIOUnsupported(Exception):
  """The destination's file system does not take O_DIRECT writes."""


def _open_direct(path: str) -> int:
  """Creates `path` for O_DIRECT writes.

  Raises:
    _DirectIOUnsupported: The file system refuses O_DIRECT (`path` is then
      removed again: Linux creates the file before it checks the flag).
  """
  try:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT |
                   os.O_CLOEXEC, 0o666)
  except OSError as e:
    if e.errno not in _NO_DIRECT_ERRNOS:
      raise
    try:
      os.remove(path)
    except FileNotFoundError:
      pass
    raise _DirectIOUnsupported() from e


# Called with each piece of the source as it is copied: (offset, bytes).
_Observer = Callable[[int, memoryview], None]


def _pipelined_copy(source: int, target: int, size: int, direct: bool,
                    on_bytes: Callable[[int], None], observe: _Observer,
                    src: str) -> None:
  """Copies `source` to `target` through a few reused buffers, then fsyncs.

  The calling thread reads the source into page-aligned buffers and shows
  each to `observe` while `_COPY_WRITERS` threads write earlier ones, so
  reading, checking and writing overlap and the disk has more than one
  write in flight. With `direct` (`target` opened O_DIRECT) whole blocks are
  written O_DIRECT and the tail past the last block buffered.

  Raises:
    _DirectIOUnsupported: With `direct`, a write was refused as unsupported.
    errors.CorruptCheckpointError: The source shrank while being copied.
  """
  end = size - size % _DIRECT_ALIGNMENT if direct else size
  free: "queue.Queue[Optional[mmap.mmap]]" = queue.Queue()
  jobs: "queue.Queue[Optional[Tuple[mmap.mmap, int, int]]]" = queue.Queue()
  for _ in range(_COPY_BUFFERS):
    free.put(mmap.mmap(-1, _COPY_CHUNK))  # Anonymous maps are page-aligned.
  failures: List[BaseException] = []

  def write(fd: int) -> None:
    try:
      while (job := jobs.get()) is not None:
        buffer, offset, count = job
        try:
          with memoryview(buffer) as view:
            _write_at(fd, view[:count], offset)
        except BaseException as e:  # pylint: disable=broad-except
          failures.append(e)  # Re-raised in the reading thread.
          free.put(None)  # Wakes the reader.
          return
        free.put(buffer)
    finally:
      os.close(fd)

  writers: List[threading.Thread] = []
  try:
    for i in range(_COPY_WRITERS):
      # Each writer has its own descriptor: if an interrupt (Ctrl-C in join)
      # closes `target` early, late writes still land in this file, never in
      # another that reuses the number.
      fd = os.dup(target)
      try:
        writers.append(threading.Thread(target=write, args=(fd,), daemon=True,
                                        name=f"copy-writer-{i}"))
        writers[-1].start()
      except BaseException:
        writers.pop()
        os.close(fd)
        raise
    offset = 0
    while offset < end and (buffer := free.get()) is not None:
      count = min(_COPY_CHUNK, end - offset)
      with memoryview(buffer) as view:
        _read_at(source, view[:count], offset, src, size)
        observe(offset, view[:count])
      jobs.put((buffer, offset, count))
      offset += count
      on_bytes(count)
  finally:
    for _ in writers:
      jobs.put(None)
    for thread in writers:
      thread.join()
  if failures:
    failure = failures[0]
    if direct and isinstance(
        failure, OSError) and failure.errno in _NO_DIRECT_ERRNOS:
      raise _DirectIOUnsupported() from failure
    raise failure
  if end < size:
    tail = bytearray(size - end)
    _read_at(source, memoryview(tail), end, src, size)
    observe(end, memoryview(tail))
    flags = fcntl.fcntl(target, fcntl.F_GETFL)
    fcntl.fcntl(target, fcntl.F_SETFL, flags & ~os.O_DIRECT)
    _write_at(target, memoryview(tail), end)
    on_bytes(len(tail))
  os.fsync(target)


def _read_at(fd: int, view: memoryview, offset: int, src: str,
             size: int) -> None:
  """Fills `view` from `fd` at `offset`."""
  done = 0
  while done < len(view):
    count = os.preadv(fd, [view[done:]], offset + done)
    if not count:
      raise errors.CorruptCheckpointError(
          f"`{src}` shrank to {offset + done} bytes while being copied (it "
          f"was {size}). Is something else writing the checkpoint?")
    done += count


def _write_at(fd: int, view: memoryview, offset: int) -> None:
  done = 0
  while done < len(view):
    done += os.pwrite(fd, view[done:], offset + done)


def _copy_file(src: str, dst: str, on_bytes: Callable[[int], None],
               new_observer: Callable[[], _Observer]) -> None:
  """Copies a file's bytes to a new file `dst`, durably (fsynced).

  The source is read once; `new_observer()` sees every byte (the checksum
  check). Writes use O_DIRECT where the file system takes them: the bytes go
  to the disk as they are copied instead of piling up in the page cache for
  a final fsync, about twice as fast for multi-GB files (see
  //benchmarks:convert_benchmark), and the page cache is left alone.
  Elsewhere, buffered writes and one fsync.
  """
  source = os.open(src, os.O_RDONLY | os.O_CLOEXEC)
  try:
    size = os.fstat(source).st_size
    os.posix_fadvise(source, 0, 0, os.POSIX_FADV_SEQUENTIAL)
    reported = 0

    def report(count: int) -> None:
      nonlocal reported
      reported += count
      on_bytes(count)

    try:
      target = _open_direct(dst)
    except _DirectIOUnsupported:
      target = None
    if target is not None:
      try:
        _pipelined_copy(source, target, size, True, report, new_observer(),
                        src)
        return
      except _DirectIOUnsupported:
        logging.info("%s refuses O_DIRECT writes; copying through the page "
                     "cache.", os.path.dirname(dst))
        os.remove(dst)
      finally:
        os.close(target)

    def report_new(count: int) -> None:  # Progress counts each byte once.
      nonlocal reported
      new = max(0, count - reported)
      reported -= count - new
      if new:
        on_bytes(new)

    target = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                     0o666)
    try:
      _pipelined_copy(source, target, size, False, report_new, new_observer(),
                      src)
    finally:
      os.close(target)
  finally:
    os.close(source)


def _try_link(src: str, dst: str, on_bytes: Callable[[int], None],
              state: Dict[str, bool]) -> bool:
  """Hard-links `src` to `dst`; False where the file system does not allow it.

  After the first refusal (logged once), later calls do not try again.
  """
  if state.get("no_links"):
    return False
  try:
    os.link(src, dst)
  except OSError as e:
    if e.errno not in _NO_LINK_ERRNOS:
      raise
    logging.warning("Cannot hard-link %s into %s (%s); copying instead.", src,
                    os.path.dirname(dst), os.strerror(e.errno))
    state["no_links"] = True
    return False
  on_bytes(os.stat(dst).st_size)
  return True


def _copy_verified(source: bundle.Bundle, shard_id: int,
                   checked_keys: Sequence[bytes], dst: str,
                   on_bytes: Callable[[int], None]) -> None:
  """Copies a source data file, verifying the checksums of the bytes it
  writes (of `checked_keys`' entries): a damaged source is refused."""
  ranges = bundle.data_ranges(source, shard_id, checked_keys)
  checkers: List[bundle.StreamChecker] = []

  def new_checker() -> _Observer:
    checkers.append(bundle.StreamChecker(source, ranges))
    return checkers[-1].update

  _copy_file(source.data_path(shard_id), dst, on_bytes, new_checker)
  problems = checkers[-1].finish()
  if problems:
    raise errors.CorruptCheckpointError(
        f"Not converting `{source.prefix}`: {len(problems)} tensors fail "
        f"their checksums. First: {problems[0]}")


def _write_plan(p: Plan, staging: str, link: bool,
                reporter: progress.Progress,
                link_state: Dict[str, bool]) -> None:
  """Writes one output checkpoint into the staging directory."""
  source = p.source.bundle
  out_prefix = os.path.join(staging, p.basename)
  for out_id, source_id in enumerate(p.shards):
    src_path = source.data_path(source_id)
    dst_path = bundle.data_filename(out_prefix, out_id, p.num_shards)
    if link and _try_link(src_path, dst_path, reporter.add, link_state):
      continue  # Linked: the source's own bytes; `verify` checks them.
    _copy_verified(source, source_id, p.checked_keys[source_id], dst_path,
                   reporter.add)
  if p.extra_shard is not None:
    _write_file(
        bundle.data_filename(out_prefix, len(p.shards), p.num_shards),
        p.extra_shard)
  _write_file(bundle.index_filename(out_prefix),
              bundle.encode_index(p.header, p.entries.items()))


def _remove_stale_staging(directory: str, tag: str) -> None:
  """Removes staging dirs of conversions that were killed."""
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    return
  for name in names:
    if not name.startswith(tag):
      continue
    pid_text = name[len(tag):].split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
      continue
    try:
      os.kill(int(pid_text), 0)
      continue  # Its conversion is still running.
    except ProcessLookupError:
      pass
    except PermissionError:
      continue
    logging.info("Removing %s, left by an interrupted conversion.",
                 os.path.join(directory, name))
    shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _withdraw_from_state(staging: str, dst_dir: str,
                         basenames: Sequence[str]) -> None:
  """Stops `dst_dir`'s state file naming checkpoints about to be replaced.

  Until the new state file lands, TensorFlow then sees only the other
  checkpoints the old state file kept (or, if none, no state file), never a
  half-replaced one.
  """
  path = os.path.join(dst_dir, checkpoint_state.STATE_FILENAME)
  try:
    state = checkpoint_state.read(dst_dir)
  except errors.CorruptCheckpointError:
    os.remove(path)  # Being replaced; TensorFlow would ignore it anyway.
    _fsync_dir(dst_dir)
    return
  if state is None:
    return
  replaced = frozenset(basenames)
  listed = list(state.all_model_checkpoint_paths)
  if state.model_checkpoint_path not in listed:
    listed.append(state.model_checkpoint_path)
  kept = [r for r in listed if os.path.basename(r) not in replaced]
  if len(kept) == len(listed):
    return
  if not kept:
    os.remove(path)
  else:
    latest = state.model_checkpoint_path
    interim = protos.CheckpointState(
        model_checkpoint_path=latest if latest in kept else kept[-1],
        all_model_checkpoint_paths=kept)
    staged = os.path.join(staging, checkpoint_state.STATE_FILENAME + ".interim")
    _write_file(staged, checkpoint_state.encode_state(interim))
    os.rename(staged, path)
  _fsync_dir(dst_dir)


def _commit_into(staging: str, dst_dir: str, plans: Sequence[Plan]) -> None:
  """Moves staged files into an existing, non-empty `dst_dir`.

  Each step leaves `dst_dir` consistent for TensorFlow: the state file stops
  naming a checkpoint before its files change, an old index never meets new
  data files (the index, TensorFlow's "checkpoint exists" marker, goes first
  and comes back last), and the new state file comes last. A kill in between
  leaves the replaced checkpoints absent, never mixed; converting again
  finishes the job.
  """
  _withdraw_from_state(staging, dst_dir, [p.basename for p in plans])
  for p in plans:
    final = os.path.join(dst_dir, p.basename)
    for name in [p.basename + ".index"] + sorted(
        n for n in os.listdir(dst_dir) if n.startswith(p.basename + ".data-")):
      try:
        os.remove(os.path.join(dst_dir, name))
      except FileNotFoundError:
        pass
    _fsync_dir(dst_dir)
    for out_id in range(p.num_shards):
      name = os.path.basename(bundle.data_filename(final, out_id,
                                                   p.num_shards))
      os.rename(os.path.join(staging, name), os.path.join(dst_dir, name))
    _fsync_dir(dst_dir)
    os.rename(os.path.join(staging, p.basename + ".index"),
              bundle.index_filename(final))
  _fsync_dir(dst_dir)
  os.rename(os.path.join(staging, checkpoint_state.STATE_FILENAME),
            os.path.join(dst_dir, checkpoint_state.STATE_FILENAME))
  _fsync_dir(dst_dir)
  shutil.rmtree(staging, ignore_errors=True)


def _write(plans: Sequence[Plan], dst_dir: str, link: bool,
           total: int) -> bool:
  """Writes the planned checkpoints atomically; returns whether it linked.

  Args:
    plans: From `plan`.
    dst_dir: Absolute path of the destination (checked already).
    link: Try hard links for data files.
    total: Bytes of data files, for progress.
  """
  parent = os.path.dirname(dst_dir)
  os.makedirs(parent, exist_ok=True)
  # A new or empty directory appears in one rename (not through a symlink,
  # which rename would replace).
  whole_dir = not os.path.lexists(dst_dir) or (
      not os.path.islink(dst_dir) and not os.listdir(dst_dir))
  if whole_dir:
    tag = f".{os.path.basename(dst_dir)}{_STAGING_TAG}"
    staging_parent = parent
  else:
    tag = _STAGING_TAG
    staging_parent = dst_dir
  _remove_stale_staging(staging_parent, tag)
  staging = os.path.join(staging_parent,
                         f"{tag}{os.getpid()}-{secrets.token_hex(4)}")
  os.mkdir(staging)  # Mode 0o777 minus the umask, as the final dir gets.
  reporter = progress.Progress(f"{'Linking' if link else 'Copying'} data",
                               total)
  link_state: Dict[str, bool] = {}
  try:
    for p in plans:
      _write_plan(p, staging, link, reporter, link_state)
    _write_file(os.path.join(staging, checkpoint_state.STATE_FILENAME),
                checkpoint_state.encode([p.basename for p in plans]))
    _fsync_dir(staging)
    if whole_dir:
      os.rename(staging, dst_dir)  # Atomic, also onto an empty directory.
      _fsync_dir(parent)
    else:
      _commit_into(staging, dst_dir, plans)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return link and not link_state.get("no_links")


def convert(src: str,
            dst_dir: str,
            *,
            to: str,
            rename: Optional[renaming.RenameSpec] = None,
            link: bool = False,
            all_checkpoints: bool = False,
            overwrite: bool = False,
            dry_run: bool = False) -> str:
  """Converts a checkpoint to TF2 (object-based) or TF1 (name-based).

  Estimator resumes from `dst_dir`: it gets a `checkpoint` state file with
  relative paths. Tensor bytes are copied unchanged (bit-exact, every dtype,
  optimizer slots, partitioned variables as slices); see the module docstring
  for the layouts. The source is only read.

  Args:
    src: A model dir (its latest checkpoint, or all with `all_checkpoints`)
      or a checkpoint prefix such as `model_dir/model.ckpt-100`.
    dst_dir: The output directory, created if missing. It must not be the
      source's directory or inside it, and must not hold files this
      conversion writes (its `checkpoint` state file, or files of the same
      checkpoint names) unless `overwrite`.
    to: `"tf2"`: the Scaffold factory's layout (`var_list/...`, `step`).
      `"tf1"`: variables by TF1 name, from this package's layout, the guide's
      (`var_list/`, `vars/`), or any object-based checkpoint whose variables
      carry names.
    rename: A rename spec (`renaming.parse`: a dict `{from: to}` with `/`-scope
      prefixes, or `(regex, replacement)` pairs) from source TF1 names to
      destination names. Default: keep names.
    link: Hard-link the data files instead of copying them (instant, no extra
      disk), falling back to copying where the file system does not allow it.
      Linked bytes are not re-read, so their checksums are not verified (run
      `verify`); copies always are. The files are shared with the source:
      TensorFlow never modifies a written checkpoint, but do not edit them in
      place.
    all_checkpoints: Convert every checkpoint the model dir `src` keeps, not
      only the latest.
    overwrite: Replace output files already in `dst_dir` (its `checkpoint`
      state file and files of the same checkpoint names); other files stay.
    dry_run: Check everything and log the plan, but write nothing.

  Returns:
    The prefix of the (latest) converted checkpoint in `dst_dir`.

  Raises:
    errors.CheckpointNotFoundError: No checkpoint at `src`.
    errors.CorruptCheckpointError: The source is damaged (index, checksums,
      missing files); nothing is written.
    errors.DestinationExistsError: `dst_dir` holds outputs (and not
      `overwrite`), is not a directory, or is the source or inside it.
    errors.InvalidArgumentError: A bad `to`, or `rename` maps two variables
      onto one name.
    renaming.InvalidRenameError: A malformed rename spec.
  """
  start = time.monotonic()
  plans = plan(src, to=to, rename=rename, all_checkpoints=all_checkpoints)
  dst_dir = os.path.normpath(dst_dir)
  _check_destination(dst_dir, plans, overwrite)
  result = os.path.join(dst_dir, plans[-1].basename)
  for p in plans:
    logging.info("%s %s (%s, %d variables) -> %s (%s, %d data file%s)",
                 "Would convert" if dry_run else "Converting", p.source.prefix,
                 p.source.format, len(p.mappings),
                 os.path.join(dst_dir, p.basename), p.to, p.num_shards,
                 "s" if p.num_shards > 1 else "")
  if dry_run:
    return result

  total = sum(p.copy_bytes for p in plans)
  linked = _write(plans, os.path.abspath(dst_dir), link, total)
  logging.info("Wrote %s (%d checkpoint%s, %s of data %s) in %.2f s.", result,
               len(plans), "s" if len(plans) > 1 else "",
               progress.size_text(total), "linked" if linked else "copied",
               time.monotonic() - start)
  return result
