"""One writer per destination model dir, locally and behind a URL.

`hold(dst_dir)` is held while a conversion writes `dst_dir`; a second writer
fails at once with `errors.DestinationLockedError` naming the holder (host
and pid) and the lock to delete if no conversion runs there any more. A lock
whose process is gone is stale and the next writer removes it, judged only
where the pid means the same process: the same host name, boot and pid
namespace (containers may share a host name, not pids). A lock of another
host or container cannot be checked from here and is respected.

The storage that holds the destination (`storage.registry`) decides how.
Where it creates files exclusively (local paths, and `file://` URLs, the
same files): a hidden lock file next to the destination, created in one step
with its owner inside (`Storage.create_exclusive`: hard link or `O_EXCL`);
this works where advisory locks do not (NFS). Two writers may find the
same stale lock: clearing it takes a second lock (`<lock>.clearing`) and
looks again under it, so a slower writer never removes the lock a faster one
has just taken.

Elsewhere (URLs TensorFlow's file systems serve: no exclusive create, and on
GCS and S3 a rename is a copy plus a delete) a lock is a prefix next to the
destination holding one object per writer that wants it. A writer writes its
own object (owner inside), then lists the prefix: if any other writer's object
is there and not stale, it deletes its own and fails. Of two writers whose
writes overlap in time, the later one to finish its object sees the other's
when it lists, so they never both write; both may fail if they race exactly
(each then says who holds the lock; try again). This relies on listings that
show every completed write, which GCS, S3 (since December 2020), HDFS and
`ram://` give; a listing that fails, or that does not show the writer's own
object, is an error, never an empty lock.
"""

import contextlib
import hashlib
import os
import secrets
import socket
from typing import Iterator, Optional, Tuple

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import registry

LOCK_SUFFIX = ".convert-lock"
# Linux's NAME_MAX, in bytes, on every common local and network file system.
_NAME_MAX = 255
# Room a hidden name keeps for its suffix: pid, random hex, tags.
_SUFFIX_ROOM = 48


def hidden_name(basename: str, tag: str) -> str:
  """`.<basename><tag>`, shortened to fit the name limit with room to spare.

  A long basename keeps its first bytes and gains a hash of the whole, so
  two long names never share hidden files.
  """
  name = f".{basename}{tag}"
  if len(os.fsencode(name)) + _SUFFIX_ROOM <= _NAME_MAX:
    return name
  digest = hashlib.sha256(os.fsencode(basename)).hexdigest()[:16]
  keep = os.fsencode(basename)[: _NAME_MAX - _SUFFIX_ROOM - len(tag) - 18]
  # Never half a UTF-8 character (URLs must be valid text): drop a cut one.
  while keep and keep[-1] & 0xC0 == 0x80:
    keep = keep[:-1]
  if keep and keep[-1] >= 0xC0:
    keep = keep[:-1]
  return f".{os.fsdecode(keep)}~{digest}{tag}"


def lock_path(dst_dir: str) -> str:
  """Where the lock of `dst_dir` lives: a file, or (listing lock) a prefix.

  Next to the destination, so the destination itself holds only what the
  conversion writes; inside it only for a destination with no parent (a
  bucket).
  """
  store = registry.for_path(dst_dir)
  parent, basename = store.split(dst_dir)
  if not basename:
    return store.join(parent, LOCK_SUFFIX)
  return store.join(parent, hidden_name(basename, LOCK_SUFFIX))


@contextlib.contextmanager
def hold(dst_dir: str) -> Iterator[None]:
  """Holds the one-writer lock of `dst_dir` (its parent is created).

  Raises:
    errors.DestinationLockedError: A running process holds the lock, or one
      on another host (which cannot be checked from here).
    errors.CheckpointIOError: The lock could not be written or listed.
  """
  store = registry.for_path(dst_dir)
  if not store.capabilities.exclusive_create:
    with _hold_listed(store, dst_dir):
      yield
    return
  try:
    parent = store.split(dst_dir)[0]
    if parent:
      store.makedirs(parent)
    path, mine = _take_exclusive(store, dst_dir)
  except errors.Error:
    raise
  except OSError as e:
    raise store.io_error(e, dst_dir, "locking") from None
  try:
    yield
  finally:
    # Ours unless someone judged it stale (it never is while we run).
    _remove_if_ours(store, path, mine)


def _take_exclusive(store: base.Storage, dst_dir: str) -> Tuple[str, bytes]:
  """Creates the lock file of `dst_dir`; returns it and what it holds."""
  path = lock_path(dst_dir)
  mine = _owner()
  for _ in range(3):
    if store.create_exclusive(path, mine):
      return path, mine
    try:
      recorded = _owner_or_none(path)
    except FileNotFoundError:
      if store.lexists(path):  # A dangling symlink: nobody's lock.
        raise _locked_error(dst_dir, path, None, "the lock file") from None
      continue  # Released meanwhile: try again.
    if recorded is None or not _is_stale(recorded):
      raise _locked_error(dst_dir, path, recorded, "the lock file")
    _clear_stale_exclusive(path, recorded)
  raise errors.DestinationLockedError(
    f"Could not take the lock `{path}` of `{dst_dir}`: another writer "
    "took it at the same time. Write elsewhere or try again."
  )


def _clear_stale_exclusive(path: str, recorded: "_Owner") -> None:
  """Removes a stale lock file, unless another writer replaced it first.

  Two writers may judge the same lock stale; without care the slower one
  would remove the lock the faster one has just created. So clearing takes
  its own lock (`<lock>.clearing`, O_EXCL) and looks again under it: only
  the dead owner's file is removed. If the clearing lock is held, another
  writer is clearing: the caller's next attempt sees its result. A clearing
  lock left by a killed writer is never removed automatically (that would
  race the same way): the error names it.

  Raises:
    errors.DestinationLockedError: A killed writer left the clearing lock.
  """
  store = registry.for_path(path)
  clearing = path + ".clearing"
  mine = _owner()
  if not store.create_exclusive(clearing, mine):
    holder = _owner_or_none_quiet(clearing)
    if holder is not None and _is_stale(holder):
      raise errors.DestinationLockedError(
        f"A conversion was killed while clearing the stale lock `{path}` "
        f"and left `{clearing}`. If no conversion runs there any more, "
        "delete both files."
      )
    return
  try:
    try:
      now = _owner_or_none(path)
    except FileNotFoundError:
      return
    if now == recorded and _is_stale(now):
      _remove_stale(path, recorded, store.remove)
  finally:
    _remove_if_ours(store, clearing, mine)


@contextlib.contextmanager
def _hold_listed(store: base.Storage, dst_dir: str) -> Iterator[None]:
  """The lock where files cannot be created exclusively (module docstring)."""
  lock_dir = lock_path(dst_dir)
  mine = store.join(lock_dir, secrets.token_hex(8))

  def remove(path: str) -> None:
    try:
      store.remove(path)
    except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
      try:
        still_there = store.exists(path)
      except Exception:  # pylint: disable=broad-except  (tf OpErrors)
        still_there = True
      if still_there:
        raise store.io_error(e, path, "removing the lock") from None

  try:
    store.put(mine, _owner())
  except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
    # A store where objects exist once opened (ram://, HDFS) may keep a
    # partial one, which would lock everyone out: remove it.
    with contextlib.suppress(Exception):
      remove(mine)
    raise store.io_error(e, mine, "writing the lock") from None
  try:
    # Strictly: a listing that failed, or that misses our own object, could
    # hide another writer's.
    try:
      names = store.listdir(lock_dir, strict=True)
    except Exception as e:  # pylint: disable=broad-except  (tf OpErrors)
      raise store.io_error(e, lock_dir, "listing the lock") from None
    if store.split(mine)[1] not in names:
      raise errors.CheckpointIOError(
        f"Listing `{lock_dir}` does not show `{mine}`, written just before: "
        "this store's listings are not consistent with its writes, so no "
        "lock can be taken there. Write elsewhere.",
        filename=lock_dir,
      )
    for name in sorted(names):
      path = store.join(lock_dir, name)
      if path == mine:
        continue
      try:
        recorded = _owner_or_none(path)
      except FileNotFoundError:
        continue  # Released while we listed.
      if recorded is not None and _is_stale(recorded):
        _remove_stale(path, recorded, remove)
        continue
      raise _locked_error(dst_dir, path, recorded, "that object")
    yield
  except BaseException:
    with contextlib.suppress(Exception):
      remove(mine)
    raise
  remove(mine)


# (host, pid, namespace): who holds a lock.
_Owner = Tuple[str, int, str]


def _namespace() -> str:
  """This boot and pid namespace: where a pid means this process.

  Containers may share a host name (Kubernetes hostNetwork, docker --network
  host) but not pids; a lock is judged stale only within its namespace.
  """
  try:
    with open("/proc/sys/kernel/random/boot_id") as f:
      boot = f.read().strip()
    return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
  except OSError:
    return ""


def owner_record(pid: int) -> bytes:
  """What a lock of process `pid` of this host and namespace holds."""
  return f"{socket.gethostname()} {pid} {_namespace()}\n".encode()


def _owner() -> bytes:
  return owner_record(os.getpid())


def _owner_or_none(path: str) -> Optional[_Owner]:
  """(host, pid, namespace) recorded in a lock; None if unreadable.

  Raises:
    FileNotFoundError: The lock is gone.
  """
  try:
    fields = checkpoint_files.read_small(path, "lock file", 4096).split()
    host, pid = fields[0].decode(), int(fields[1])
    namespace = fields[2].decode() if len(fields) > 2 else ""
    if not 0 < pid < 2**31:
      return None
    return host, pid, namespace
  except (errors.Error, UnicodeDecodeError, ValueError, IndexError):
    return None


def _owner_or_none_quiet(path: str) -> Optional[_Owner]:
  try:
    return _owner_or_none(path)
  except FileNotFoundError:
    return None


def _is_stale(recorded: _Owner) -> bool:
  """Whether the recorded writer is certainly gone (checked from here)."""
  host, pid, namespace = recorded
  if host != socket.gethostname():
    return False  # Cannot be checked from here.
  if namespace != _namespace():
    # Another container or boot (or a lock that does not say): its pids are
    # not ours to check.
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:
    return False  # Someone else's process.
  return False


def _remove_stale(path: str, recorded: _Owner, remove) -> None:
  logging.info(
    "Removing %s, left by an interrupted conversion (pid %d).",
    path,
    recorded[1],
  )
  remove(path)


def _remove_if_ours(store: base.Storage, path: str, mine: bytes) -> None:
  """Removes the lock file `path` if it still records `mine`."""
  with contextlib.suppress(FileNotFoundError, errors.Error):
    if checkpoint_files.read_small(path, "lock file", 4096) == mine:
      store.remove(path)


def _locked_error(
  dst_dir: str,
  path: str,
  recorded: Optional[_Owner],
  what: str,
) -> errors.DestinationLockedError:
  who = (
    f"process {recorded[1]} on {recorded[0]}" if recorded else "another process"
  )
  return errors.DestinationLockedError(
    f"`{dst_dir}` is being written by {who} (lock `{path}`). Wait for it "
    "to finish, or write elsewhere; if no conversion is running there any "
    f"more, delete {what}."
  )
