"""Local file copies at disk speed: O_DIRECT, pipelined, fsynced.

`copy_file` reads the source once through a few reused page-aligned buffers
and shows each to an observer (the checksum check) while writer threads write
earlier ones, with O_DIRECT where the file system takes it, so reading,
checking and writing overlap and the page cache is left alone. Elsewhere it
writes through the page cache and fsyncs once. `local.LocalStorage.copy`
uses it. `write_segments` writes bytes this process holds (an asynchronous
save's snapshot) the same way, straight from their memory where it can.
"""

import errno
import fcntl
import mmap
import os
import queue
import sys
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from estimator_ckpt import errors
from estimator_ckpt._src.storage import base

# Copies: buffers and O_DIRECT offsets and sizes aligned to this (a page; the
# strictest logical block size in common use). 4 buffers of 8 MiB, 2 writes
# in flight: no layout tried here (8-64 MiB buffers, 1-4 writers) was
# reliably faster on 2 GiB, and 32 MiB of buffers keeps peak RSS flat.
_DIRECT_ALIGNMENT = 4096
_COPY_CHUNK = 8 << 20
_COPY_BUFFERS = 4
_COPY_WRITERS = 2
# write_segments: blocks assembled from segment edges held at most.
_EDGE_BATCH = 2048
# O_DIRECT opens or writes fail with these where the file system lacks it.
_NO_DIRECT_ERRNOS = frozenset((errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP))


class _DirectIOUnsupportedError(Exception):
  """The destination's file system does not take O_DIRECT writes."""


def _open_direct(path: str) -> int:
  """Creates `path` for O_DIRECT writes.

  Raises:
    _DirectIOUnsupportedError: The file system refuses O_DIRECT (`path` is then
      removed again: Linux creates the file before it checks the flag).
  """
  try:
    return os.open(
      path,
      os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT | os.O_CLOEXEC,
      0o666,
    )
  except OSError as e:
    if e.errno not in _NO_DIRECT_ERRNOS:
      raise
    try:
      os.remove(path)
    except FileNotFoundError:
      pass
    raise _DirectIOUnsupportedError() from e


def _pipelined_copy(
  source: int,
  target: int,
  size: int,
  direct: bool,
  on_bytes: Callable[[int], None],
  observe: base.Observer,
  src: str,
) -> None:
  """Copies `source` to `target` through a few reused buffers, then fsyncs.

  The calling thread reads the source into page-aligned buffers and shows
  each to `observe` while `_COPY_WRITERS` threads write earlier ones, so
  reading, checking and writing overlap and the disk has more than one
  write in flight. With `direct` (`target` opened O_DIRECT) whole blocks are
  written O_DIRECT and the tail past the last block buffered.

  Raises:
    _DirectIOUnsupportedError: With `direct`, a write was refused as
      unsupported.
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
        writers.append(
          threading.Thread(
            target=write, args=(fd,), daemon=True, name=f"copy-writer-{i}"
          )
        )
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
    if (
      direct
      and isinstance(failure, OSError)
      and failure.errno in _NO_DIRECT_ERRNOS
    ):
      raise _DirectIOUnsupportedError() from failure
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


def _read_at(
  fd: int, view: memoryview, offset: int, src: str, size: int
) -> None:
  """Fills `view` from `fd` at `offset`."""
  done = 0
  while done < len(view):
    try:
      count = os.preadv(fd, [view[done:]], offset + done)
    except OSError as e:
      raise base.os_io_error(e, src) from None
    if not count:
      raise errors.CorruptCheckpointError(
        f"`{src}` shrank to {offset + done} bytes while being copied (it "
        f"was {size}). Is something else writing the checkpoint?"
      )
    done += count


def _write_at(fd: int, view: memoryview, offset: int) -> None:
  done = 0
  while done < len(view):
    done += os.pwrite(fd, view[done:], offset + done)


def copy_file(
  src: str,
  dst: str,
  on_bytes: Callable[[int], None],
  new_observer: Callable[[], base.Observer],
) -> None:
  """Copies a local file's bytes to a new local file `dst`, durably (fsynced).

  The source is read once; `new_observer()` sees every byte (the checksum
  check). Writes use O_DIRECT where the file system takes them: the bytes go
  to the disk as they are copied instead of piling up in the page cache for
  a final fsync, about twice as fast for multi-GB files (see
  //benchmarks:convert_benchmark), and the page cache is left alone.
  Elsewhere, buffered writes and one fsync.
  """
  # O_NONBLOCK: never blocks, even if `src` was swapped for a FIFO.
  source = os.open(src, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
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
    except _DirectIOUnsupportedError:
      target = None
    if target is not None:
      try:
        _pipelined_copy(source, target, size, True, report, new_observer(), src)
        return
      except _DirectIOUnsupportedError:
        logging.info(
          "%s refuses O_DIRECT writes; copying through the page cache.",
          os.path.dirname(dst),
        )
        os.remove(dst)
      finally:
        os.close(target)

    def report_new(count: int) -> None:  # Progress counts each byte once.
      nonlocal reported
      new = max(0, count - reported)
      reported -= count - new
      if new:
        on_bytes(new)

    target = os.open(
      dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
    )
    try:
      _pipelined_copy(
        source, target, size, False, report_new, new_observer(), src
      )
    finally:
      os.close(target)
  finally:
    os.close(source)


def write_segments(
  dst: str, size: int, segments: Sequence[Tuple[int, Any]]
) -> None:
  """Writes a new local file of `size` bytes from `segments`, fsynced.

  Each segment is `(offset, buffer)`: a C-contiguous bytes-like object
  written at `offset`; bytes no segment covers read as zeros. With O_DIRECT
  (where the file system takes it) the part of a segment whose memory
  address and file offset are both on block boundaries (its address and
  offset congruent modulo the block: lay large segments out so) is written
  straight from its memory, without a copy and without page cache; the
  blocks around (segment edges, small segments, the padding between) are
  assembled in an aligned buffer. Elsewhere, buffered writes and one fsync.

  Args:
    dst: The file to create; it must not exist.
    size: The file's length.
    segments: Non-overlapping, within `size`, in any order.

  Raises:
    OSError: Writing failed (`dst` is removed).
  """
  views = [(offset, np.frombuffer(data, np.uint8)) for offset, data in segments]
  direct = None
  if size >= _DIRECT_ALIGNMENT:
    try:
      direct = _open_direct(dst)
    except _DirectIOUnsupportedError:
      pass
  # Raises (FileExistsError) before anything is written if `dst` exists.
  target: Optional[int] = direct if direct is not None else _open_buffered(dst)
  try:
    if direct is not None:
      try:
        _write_direct(direct, views)
      except _DirectIOUnsupportedError:
        os.close(direct)
        target = None
        os.remove(dst)
        logging.info(
          "%s refuses O_DIRECT writes; writing through the page cache.",
          os.path.dirname(dst),
        )
        target = _open_buffered(dst)
        direct = None
    assert target is not None
    if direct is None:
      for offset, view in views:
        _write_at(target, view.data, offset)
    os.ftruncate(target, size)
    os.fsync(target)
  except BaseException:
    if target is not None:
      os.close(target)
      target = None
    if os.path.lexists(dst):
      os.remove(dst)
    raise
  finally:
    if target is not None:
      os.close(target)


def _open_buffered(path: str) -> int:
  return os.open(
    path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666
  )


def _write_direct(target: int, views: List[Tuple[int, np.ndarray]]) -> None:
  """`write_segments` on an O_DIRECT descriptor (see there).

  Aligned middles of segments go to `_COPY_WRITERS` threads as they are
  found; every other byte is assembled into its block, and blocks are
  written (contiguous ones together) once the segments pass them, so at
  most `_EDGE_BATCH` blocks are held.

  Raises:
    _DirectIOUnsupportedError: O_DIRECT writes are refused (seen at a first
      zero block, before anything else is written).
  """
  block = _DIRECT_ALIGNMENT
  try:  # Block 0 is a segment's or zeros: a zero block there is right.
    _write_at(target, memoryview(mmap.mmap(-1, block)), 0)
  except OSError as e:
    if e.errno in _NO_DIRECT_ERRNOS:
      raise _DirectIOUnsupportedError() from e
    raise
  edges: Dict[int, np.ndarray] = {}  # Block index -> its assembled bytes.

  def to_edges(view: np.ndarray, offset: int) -> None:
    at = 0
    while at < len(view):
      index, within = divmod(offset + at, block)
      count = min(block - within, len(view) - at)
      edge = edges.get(index)
      if edge is None:
        edge = edges[index] = np.zeros(block, np.uint8)
      edge[within : within + count] = view[at : at + count]
      at += count

  def flush(below: int) -> None:
    ready = sorted(i for i in edges if i < below)
    if not ready:
      return
    aligned = np.frombuffer(mmap.mmap(-1, len(ready) * block), np.uint8)
    first = 0
    for j, index in enumerate(ready):
      aligned[j * block : (j + 1) * block] = edges.pop(index)
      if j + 1 == len(ready) or ready[j + 1] != index + 1:
        _write_at(
          target,
          aligned[first * block : (j + 1) * block].data,
          ready[first] * block,
        )
        first = j + 1

  with _Writers(target) as writers:
    for offset, view in sorted(views, key=lambda v: v[0]):
      if len(edges) >= _EDGE_BATCH:
        flush(offset // block)
      address = view.__array_interface__["data"][0]
      head = -offset % block
      tail = (offset + len(view)) % block
      if (address - offset) % block or head + tail >= len(view):
        to_edges(view, offset)
        continue
      to_edges(view[:head], offset)
      to_edges(view[len(view) - tail :], offset + len(view) - tail)
      middle = view[head : len(view) - tail]
      for at in range(0, len(middle), _COPY_CHUNK):
        writers.put(middle[at : at + _COPY_CHUNK], offset + head + at)
    flush(sys.maxsize)


class _Writers:
  """`_COPY_WRITERS` threads writing (memory, offset) jobs to a file.

  Each has its own descriptor (as in `_pipelined_copy`). Leaving the block
  waits for every job; the first failure is raised then.
  """

  def __init__(self, target: int):
    self._target = target
    self._jobs: "queue.Queue[Optional[Tuple[np.ndarray, int]]]" = queue.Queue()
    self._failures: List[BaseException] = []
    self._threads: List[threading.Thread] = []

  def put(self, data: np.ndarray, offset: int) -> None:
    if self._failures:
      raise self._failures[0]
    self._jobs.put((data, offset))

  def _write(self, fd: int) -> None:
    try:
      while (job := self._jobs.get()) is not None:
        if not self._failures:
          try:
            _write_at(fd, job[0].data, job[1])
          except BaseException as e:  # pylint: disable=broad-except
            self._failures.append(e)
    finally:
      os.close(fd)

  def __enter__(self) -> "_Writers":
    try:
      for i in range(_COPY_WRITERS):
        fd = os.dup(self._target)
        try:
          thread = threading.Thread(
            target=self._write,
            args=(fd,),
            daemon=True,
            name=f"segment-writer-{i}",
          )
          thread.start()
        except BaseException:
          os.close(fd)
          raise
        self._threads.append(thread)
    except BaseException:
      self.__exit__(None, None, None)
      raise
    return self

  def __exit__(self, *exc_info) -> None:
    for _ in self._threads:
      self._jobs.put(None)
    for thread in self._threads:
      thread.join()
    if self._failures and exc_info[0] is None:
      raise self._failures[0]
