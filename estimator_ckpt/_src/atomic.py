"""Atomic writes of checkpoints into a model dir: stage, fsync, commit in order.

Everything is written into a hidden staging directory next to the destination
(so renames stay on one file system), fsynced, then moved into place:

- a new or empty destination appears in one `rename`;
- into an existing directory (`_commit_into`) the `checkpoint` state file
  first stops naming the checkpoints being replaced, then their data files go
  in, then each `.index` (TensorFlow's own "checkpoint exists" marker), then
  the new `checkpoint` state file.

A failure removes the staging directory; a kill leaves at most the hidden
staging directory (and, when replacing, the replaced checkpoints absent rather
than mixed), and the next write to the same destination removes the
leftovers of writers that are no longer running.

One writer per destination, local or remote (`destination_lock`): a second
writer fails at once with `errors.DestinationLockedError`. Hidden names stay
within the file system's 255-byte name limit for any destination name.
Failures of the file system become `errors.CheckpointIOError` naming the
destination, never a hidden name.

Destinations behind a URL (`_write_remote`): object stores have no atomic
directory rename (on GCS and S3 a rename is a copy plus a delete), so the
commit is by order instead, each object complete before the next names it:
the state file stops naming checkpoints being replaced, their old index then
data objects are deleted, the new data objects are written, then each
`.index` (under a temporary name, then renamed: objects appear whole), then
the new `checkpoint` state file (the same way). A reader trusts only
checkpoints the state file names or whose index exists, so during and after a
failed or killed conversion it sees the old checkpoints, or the new ones, or
(for replaced names) none, never a mix; what a kill leaves (data objects
without an index, temporary objects) is never picked up, and converting again
replaces it. The lock is held throughout, so the temporary objects found
there are a killed writer's, removed before writing.
"""

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
from typing import Callable, Optional, Sequence

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src import destination_lock
from estimator_ckpt._src import file_copy
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import remote_files
from estimator_ckpt._src.format import state_file

_STAGING_TAG = ".convert-tmp-"
# file_copy.write_file's temporary objects behind a URL.
_REMOTE_TEMPORARY = re.compile(r".*\.tmp-\d+-[0-9a-f]{8}$")


@dataclasses.dataclass(frozen=True)
class StagedCheckpoint:
  """A checkpoint the writer puts into the staging directory.

  Attributes:
    basename: Its prefix's file name, e.g. `model.ckpt-100`.
    num_shards: How many `.data-*-of-*` files it has.
  """

  basename: str
  num_shards: int


def write_checkpoints(
  dst_dir: str,
  checkpoints: Sequence[StagedCheckpoint],
  write: Callable[[str], None],
  *,
  latest: Optional[str] = None,
) -> None:
  """Writes checkpoints into `dst_dir` atomically, with a new state file.

  Args:
    dst_dir: Absolute path of the destination model dir (created if missing;
      other files in it stay).
    checkpoints: What `write` stages; the state file lists them all, in this
      order.
    write: Writes each checkpoint's data files and `.index` into the staging
      directory it is given (files created there need no fsync of the
      directory; this function does it).
    latest: The basename the state file names as the latest; default the
      last of `checkpoints`.
  """
  basenames = [c.basename for c in checkpoints]
  state = state_file.encode(
    basenames, basenames[-1] if latest is None else latest
  )
  if checkpoint_files.is_url(dst_dir):
    with destination_lock.hold(dst_dir):
      _write_remote(dst_dir, checkpoints, write, state)
    return
  parent = os.path.dirname(dst_dir)
  try:
    with contextlib.suppress(FileNotFoundError):
      os.stat(parent)  # Names a symlink loop (ELOOP) before makedirs hides it.
    os.makedirs(parent, exist_ok=True)
    with destination_lock.hold(dst_dir):
      _write_locked(dst_dir, parent, checkpoints, write, state)
  except errors.Error:
    raise
  except OSError as e:
    raise checkpoint_files.io_error(e, dst_dir, "writing") from None


def _write_locked(
  dst_dir: str,
  parent: str,
  checkpoints: Sequence[StagedCheckpoint],
  write: Callable[[str], None],
  state: bytes,
) -> None:
  # A new or empty directory appears in one rename (not through a symlink,
  # which rename would replace).
  whole_dir = not os.path.lexists(dst_dir) or (
    not os.path.islink(dst_dir) and not os.listdir(dst_dir)
  )
  if whole_dir:
    tag = destination_lock.hidden_name(os.path.basename(dst_dir), _STAGING_TAG)
    staging_parent = parent
  else:
    tag = _STAGING_TAG
    staging_parent = dst_dir
  _remove_stale_staging(staging_parent, tag)
  staging = os.path.join(
    staging_parent, f"{tag}{os.getpid()}-{secrets.token_hex(4)}"
  )
  os.mkdir(staging)  # Mode 0o777 minus the umask, as the final dir gets.
  try:
    write(staging)
    file_copy.write_file(
      os.path.join(staging, state_file.STATE_FILENAME),
      state,
    )
    file_copy.fsync_dir(staging)
    if whole_dir:
      os.rename(staging, dst_dir)  # Atomic, also onto an empty directory.
      file_copy.fsync_dir(parent)
    else:
      _commit_into(staging, dst_dir, checkpoints)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def _write_remote(
  dst_dir: str,
  checkpoints: Sequence[StagedCheckpoint],
  write: Callable[[str], None],
  state: bytes,
) -> None:
  """Commits by order where there is no atomic rename (module docstring)."""
  gfile = remote_files.gfile(dst_dir)
  written = []
  try:
    gfile.makedirs(dst_dir)
    basenames = [c.basename for c in checkpoints]
    _withdraw_from_state("", dst_dir, basenames)
    existing = set(checkpoint_files.listdir(dst_dir))
    # Temporary objects of killed writers (write_file's `.tmp-<pid>-<hex>`):
    # never read, removed here (once: GCS answers 404 to a second delete).
    temporaries = {
      name
      for name in existing
      if _REMOTE_TEMPORARY.match(name)
      and (
        name.startswith(state_file.STATE_FILENAME + ".")
        or any(name.startswith(b + ".") for b in basenames)
      )
    }
    for name in sorted(temporaries):
      gfile.remove(os.path.join(dst_dir, name))
    existing -= temporaries
    for name in basenames:
      # The old index first: from then on its checkpoint does not exist.
      for old in [name + ".index"] + sorted(
        n for n in existing if n.startswith(name + ".data-")
      ):
        if old in existing:
          gfile.remove(os.path.join(dst_dir, old))
    written = basenames
    write(dst_dir)  # Per checkpoint: data objects, then the index.
    file_copy.write_file(
      os.path.join(dst_dir, state_file.STATE_FILENAME),
      state,
    )
  except BaseException as failure:
    # Nothing a reader trusts is left half-written; drop the litter.
    with contextlib.suppress(Exception):
      for name in checkpoint_files.listdir(dst_dir):
        if any(name.startswith(b + ".") for b in written):
          gfile.remove(os.path.join(dst_dir, name))
    if isinstance(failure, (errors.Error, KeyboardInterrupt, SystemExit)):
      raise
    if isinstance(failure, Exception):
      raise remote_files.io_error(failure, dst_dir, "writing") from None
    raise


def _remove_stale_staging(directory: str, tag: str) -> None:
  """Removes staging dirs of writers that were killed."""
  try:
    names = os.listdir(directory)
  except FileNotFoundError:
    return
  for name in names:
    if not name.startswith(tag):
      continue
    pid_text = name[len(tag) :].split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
      continue
    try:
      os.kill(int(pid_text), 0)
      continue  # Its conversion is still running.
    except ProcessLookupError:
      pass
    except PermissionError:
      continue
    logging.info(
      "Removing %s, left by an interrupted conversion.",
      os.path.join(directory, name),
    )
    shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def _withdraw_from_state(
  staging: str, dst_dir: str, basenames: Sequence[str]
) -> None:
  """Stops `dst_dir`'s state file naming checkpoints about to be replaced.

  Until the new state file lands, TensorFlow then sees only the other
  checkpoints the old state file kept (or, if none, no state file), never a
  half-replaced one.
  """
  path = os.path.join(dst_dir, state_file.STATE_FILENAME)
  remote = checkpoint_files.is_url(dst_dir)
  remove = remote_files.gfile(dst_dir).remove if remote else os.remove
  try:
    state = state_file.read(dst_dir)
  except errors.CorruptCheckpointError:
    remove(path)  # Being replaced; TensorFlow would ignore it anyway.
    if not remote:
      file_copy.fsync_dir(dst_dir)
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
    remove(path)
  else:
    latest = state.model_checkpoint_path
    interim = protos.CheckpointState(
      model_checkpoint_path=latest if latest in kept else kept[-1],
      all_model_checkpoint_paths=kept,
    )
    if remote:  # write_file: a temporary object, then a rename.
      file_copy.write_file(path, state_file.encode_state(interim))
      return
    staged = os.path.join(staging, state_file.STATE_FILENAME + ".interim")
    file_copy.write_file(staged, state_file.encode_state(interim))
    os.rename(staged, path)
  if not remote:
    file_copy.fsync_dir(dst_dir)


def _commit_into(
  staging: str, dst_dir: str, checkpoints: Sequence[StagedCheckpoint]
) -> None:
  """Moves staged files into an existing, non-empty `dst_dir`.

  Each step leaves `dst_dir` consistent for TensorFlow: the state file stops
  naming a checkpoint before its files change, an old index never meets new
  data files (the index, TensorFlow's "checkpoint exists" marker, goes first
  and comes back last), and the new state file comes last. A kill in between
  leaves the replaced checkpoints absent, never mixed; converting again
  finishes the job.
  """
  _withdraw_from_state(staging, dst_dir, [p.basename for p in checkpoints])
  for p in checkpoints:
    final = os.path.join(dst_dir, p.basename)
    for name in [p.basename + ".index"] + sorted(
      n for n in os.listdir(dst_dir) if n.startswith(p.basename + ".data-")
    ):
      try:
        os.remove(os.path.join(dst_dir, name))
      except FileNotFoundError:
        pass
    file_copy.fsync_dir(dst_dir)
    for out_id in range(p.num_shards):
      name = os.path.basename(bundle.data_filename(final, out_id, p.num_shards))
      os.rename(os.path.join(staging, name), os.path.join(dst_dir, name))
    file_copy.fsync_dir(dst_dir)
    os.rename(
      os.path.join(staging, p.basename + ".index"), bundle.index_filename(final)
    )
  file_copy.fsync_dir(dst_dir)
  os.rename(
    os.path.join(staging, state_file.STATE_FILENAME),
    os.path.join(dst_dir, state_file.STATE_FILENAME),
  )
  file_copy.fsync_dir(dst_dir)
  shutil.rmtree(staging, ignore_errors=True)
