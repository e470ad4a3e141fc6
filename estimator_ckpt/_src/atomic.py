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

The storage that holds the destination (`storage.registry`) decides which:
staging and renames where its renames are atomic and its fsync durable (the
local file system), and otherwise (`_write_ordered`: object stores, where a
rename is a copy plus a delete, and any URL TensorFlow serves) the commit is by
order instead, each object complete before the next names it:
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
from typing import Callable, Optional, Sequence

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src import destination_lock
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import registry

_STAGING_TAG = ".convert-tmp-"
# Temporary objects of `Storage.write_file` where it renames into place.
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
  store = registry.for_path(dst_dir)
  if not (
    store.capabilities.atomic_rename and store.capabilities.durable_fsync
  ):
    with destination_lock.hold(dst_dir):
      _write_ordered(store, dst_dir, checkpoints, write, state)
    return
  parent, _ = store.split(dst_dir)
  try:
    store.makedirs(parent)
    with destination_lock.hold(dst_dir):
      _write_staged(store, dst_dir, parent, checkpoints, write, state)
  except errors.Error:
    raise
  except OSError as e:
    raise store.io_error(e, dst_dir, "writing") from None


def _write_staged(
  store: base.Storage,
  dst_dir: str,
  parent: str,
  checkpoints: Sequence[StagedCheckpoint],
  write: Callable[[str], None],
  state: bytes,
) -> None:
  """Stages, fsyncs and renames into place (module docstring)."""
  # A new or empty directory appears in one rename (not through a symlink,
  # which rename would replace).
  whole_dir = not store.lexists(dst_dir) or (
    not store.islink(dst_dir) and not store.listdir(dst_dir, strict=True)
  )
  if whole_dir:
    tag = destination_lock.hidden_name(store.split(dst_dir)[1], _STAGING_TAG)
    staging_parent = parent
  else:
    tag = _STAGING_TAG
    staging_parent = dst_dir
  _remove_stale_staging(store, staging_parent, tag)
  staging = store.join(
    staging_parent, f"{tag}{os.getpid()}-{secrets.token_hex(4)}"
  )
  store.mkdir(staging)
  try:
    write(staging)
    store.write_file(
      store.join(staging, state_file.STATE_FILENAME),
      state,
    )
    store.fsync_dir(staging)
    if whole_dir:
      store.rename(staging, dst_dir)  # Atomic, also onto an empty directory.
      store.fsync_dir(parent)
    else:
      _commit_into(store, staging, dst_dir, checkpoints)
  except BaseException:
    store.rmtree(staging)
    raise


def _write_ordered(
  store: base.Storage,
  dst_dir: str,
  checkpoints: Sequence[StagedCheckpoint],
  write: Callable[[str], None],
  state: bytes,
) -> None:
  """Commits by order where there is no atomic rename (module docstring)."""
  written = []
  try:
    store.makedirs(dst_dir)
    basenames = [c.basename for c in checkpoints]
    _withdraw_from_state(store, "", dst_dir, basenames)
    existing = set(store.listdir(dst_dir))
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
      store.remove(store.join(dst_dir, name))
    existing -= temporaries
    for name in basenames:
      # The old index first: from then on its checkpoint does not exist.
      for old in [name + ".index"] + sorted(
        n for n in existing if n.startswith(name + ".data-")
      ):
        if old in existing:
          store.remove(store.join(dst_dir, old))
    written = basenames
    write(dst_dir)  # Per checkpoint: data objects, then the index.
    store.write_file(
      store.join(dst_dir, state_file.STATE_FILENAME),
      state,
    )
  except BaseException as failure:
    # Nothing a reader trusts is left half-written; drop the litter.
    with contextlib.suppress(Exception):
      for name in store.listdir(dst_dir):
        if any(name.startswith(b + ".") for b in written):
          store.remove(store.join(dst_dir, name))
    if isinstance(failure, (errors.Error, KeyboardInterrupt, SystemExit)):
      raise
    if isinstance(failure, Exception):
      raise store.io_error(failure, dst_dir, "writing") from None
    raise


def _remove_stale_staging(
  store: base.Storage, directory: str, tag: str
) -> None:
  """Removes staging dirs of writers that were killed."""
  try:
    names = store.listdir(directory, strict=True)
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
      store.join(directory, name),
    )
    store.rmtree(store.join(directory, name))


def _withdraw_from_state(
  store: base.Storage, staging: str, dst_dir: str, basenames: Sequence[str]
) -> None:
  """Stops `dst_dir`'s state file naming checkpoints about to be replaced.

  Until the new state file lands, TensorFlow then sees only the other
  checkpoints the old state file kept (or, if none, no state file), never a
  half-replaced one. With a `staging` directory the interim state file is
  written there and renamed into place; without (an ordered commit),
  `write_file` replaces it whole.
  """
  path = store.join(dst_dir, state_file.STATE_FILENAME)
  try:
    state = state_file.read(dst_dir)
  except errors.CorruptCheckpointError:
    store.remove(path)  # Being replaced; TensorFlow would ignore it anyway.
    store.fsync_dir(dst_dir)
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
    store.remove(path)
  else:
    latest = state.model_checkpoint_path
    interim = protos.CheckpointState(
      model_checkpoint_path=latest if latest in kept else kept[-1],
      all_model_checkpoint_paths=kept,
    )
    if not staging:  # write_file: a temporary object, then a rename.
      store.write_file(path, state_file.encode_state(interim))
      return
    staged = store.join(staging, state_file.STATE_FILENAME + ".interim")
    store.write_file(staged, state_file.encode_state(interim))
    store.rename(staged, path)
  store.fsync_dir(dst_dir)


def _commit_into(
  store: base.Storage,
  staging: str,
  dst_dir: str,
  checkpoints: Sequence[StagedCheckpoint],
) -> None:
  """Moves staged files into an existing, non-empty `dst_dir`.

  Each step leaves `dst_dir` consistent for TensorFlow: the state file stops
  naming a checkpoint before its files change, an old index never meets new
  data files (the index, TensorFlow's "checkpoint exists" marker, goes first
  and comes back last), and the new state file comes last. A kill in between
  leaves the replaced checkpoints absent, never mixed; converting again
  finishes the job.
  """
  _withdraw_from_state(
    store, staging, dst_dir, [p.basename for p in checkpoints]
  )
  for p in checkpoints:
    final = store.join(dst_dir, p.basename)
    for name in [p.basename + ".index"] + sorted(
      n
      for n in store.listdir(dst_dir, strict=True)
      if n.startswith(p.basename + ".data-")
    ):
      store.remove(store.join(dst_dir, name))
    store.fsync_dir(dst_dir)
    for out_id in range(p.num_shards):
      name = os.path.basename(bundle.data_filename(final, out_id, p.num_shards))
      store.rename(store.join(staging, name), store.join(dst_dir, name))
    store.fsync_dir(dst_dir)
    store.rename(
      store.join(staging, p.basename + ".index"), bundle.index_filename(final)
    )
  store.fsync_dir(dst_dir)
  store.rename(
    store.join(staging, state_file.STATE_FILENAME),
    store.join(dst_dir, state_file.STATE_FILENAME),
  )
  store.fsync_dir(dst_dir)
  store.rmtree(staging)
