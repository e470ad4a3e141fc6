"""Local file copies at disk speed: O_DIRECT, pipelined, fsynced.

`copy_file` reads the source once through a few reused page-aligned buffers
and shows each to an observer (the checksum check) while writer threads write
earlier ones, with O_DIRECT where the file system takes it, so reading,
checking and writing overlap and the page cache is left alone. Elsewhere it
writes through the page cache and fsyncs once. `local.LocalStorage.copy`
uses it. `write_segments` writes bytes this process holds (an asynchronous
save's snapshot) the same way.
"""

import bisect
import errno
import fcntl
import mmap
import os
import queue
import threading
from typing import Any, Callable, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np

from estimator_ckpt import errors
from estimator_ckpt._src import writer_priority
from estimator_ckpt._src.storage import base

# Copies: buffers and O_DIRECT offsets and sizes aligned to this (a page; the
# strictest logical block size in common use). 4 buffers of 8 MiB, 2 writes
# in flight: no layout tried here (8-64 MiB buffers, 1-4 writers) was
# reliably faster on 2 GiB, and 32 MiB of buffers keeps peak RSS flat.
_DIRECT_ALIGNMENT = 4096
_COPY_CHUNK = 8 << 20
_COPY_BUFFERS = 4
_COPY_WRITERS = 2
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


# Fills a buffer with the bytes the file has at an offset.
_Fill = Callable[[memoryview, int], None]


def _pipelined_write(
  fill: _Fill,
  target: int,
  size: int,
  direct: bool,
  on_bytes: Callable[[int], None],
) -> None:
  """Writes `size` bytes from `fill` to `target` through reused buffers.

  The calling thread fills page-aligned buffers in order while
  `_COPY_WRITERS` threads write earlier ones, so producing and writing
  overlap and the disk has more than one write in flight. With `direct`
  (`target` opened O_DIRECT) whole blocks are written O_DIRECT and the tail
  past the last block buffered. Then fsyncs.

  Raises:
    _DirectIOUnsupportedError: With `direct`, a write was refused as
      unsupported.
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
          failures.append(e)  # Re-raised in the filling thread.
          free.put(None)  # Wakes the filler.
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
      # The writer threads started first: a lowered thread's children would
      # inherit its priority (`writer_priority`).
      with memoryview(buffer) as view, writer_priority.below_training():
        fill(view[:count], offset)
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
    fill(memoryview(tail), end)
    flags = fcntl.fcntl(target, fcntl.F_GETFL)
    fcntl.fcntl(target, fcntl.F_SETFL, flags & ~os.O_DIRECT)
    _write_at(target, memoryview(tail), end)
    on_bytes(len(tail))
  os.fsync(target)


def _file_fill(
  source: int, size: int, src: str, observe: base.Observer
) -> _Fill:
  """Fills from the file `source` (of `size` bytes), shown to `observe`."""

  def fill(view: memoryview, offset: int) -> None:
    _read_at(source, view, offset, src, size)
    observe(offset, view)

  return fill


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
    _write_new_file(
      dst,
      size,
      lambda: _file_fill(source, size, src, new_observer()),
      on_bytes,
    )
  finally:
    os.close(source)


def write_segments(
  dst: str, size: int, segments: Sequence[Tuple[int, Any]]
) -> None:
  """Writes a new local file of `size` bytes from `segments`, fsynced.

  Each segment is `(offset, buffer)`: a C-contiguous bytes-like object
  written at `offset`; bytes no segment covers are zeros. The bytes are
  copied into the aligned buffers of `copy_file` and written as it writes,
  O_DIRECT where the file system takes it (to the disk as they are
  written, no page cache), else buffered with one fsync.

  Args:
    dst: The file to create; it must not exist.
    size: The file's length.
    segments: Non-overlapping, within `size`, in any order.

  Raises:
    ValueError: Segments overlap or pass `size` (nothing is written).
    OSError: Writing failed (`dst` is removed; an existing `dst` is
      refused, `FileExistsError`, before anything is written).
  """
  fill = _segments_fill(segments, size)
  try:
    _write_new_file(dst, size, lambda: fill, lambda _: None)
  except FileExistsError:
    raise  # Not ours: kept.
  except BaseException:
    if os.path.lexists(dst):
      os.remove(dst)
    raise


def _write_new_file(
  dst: str,
  size: int,
  new_fill: Callable[[], _Fill],
  on_bytes: Callable[[int], None],
) -> None:
  """Creates `dst` from `new_fill()`: O_DIRECT, else buffered; fsynced.

  Where O_DIRECT is refused at the open or a write, `dst` is removed
  and written again through the page cache from a new fill; `on_bytes`
  counts each byte once.

  Raises:
    FileExistsError: `dst` exists (nothing is written).
  """
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
      _pipelined_write(new_fill(), target, size, True, report)
      return
    except _DirectIOUnsupportedError:
      logging.info(
        "%s refuses O_DIRECT writes; writing through the page cache.",
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
    _pipelined_write(new_fill(), target, size, False, report_new)
  finally:
    os.close(target)


def _segments_fill(segments: Sequence[Tuple[int, Any]], size: int) -> _Fill:
  """Fills buffers from `segments` (zeros between them).

  Raises:
    ValueError: Segments overlap or pass `size`.
  """
  views = sorted(
    ((offset, np.frombuffer(data, np.uint8)) for offset, data in segments),
    key=lambda segment: segment[0],
  )
  for (offset, view), (next_offset, _) in zip(views, views[1:] + [(size, 0)]):
    if offset < 0 or offset + len(view) > next_offset:
      raise ValueError(
        f"Segment at {offset} of {len(view)} bytes overlaps the next (at "
        f"{next_offset}) or passes the file's {size} bytes."
      )
  starts = [offset for offset, _ in views]

  def fill(view: memoryview, offset: int) -> None:
    out = np.frombuffer(view, np.uint8)
    end = offset + len(out)
    at = offset  # Filled up to here.
    # From the last segment starting at or before `offset`.
    i = max(bisect.bisect_right(starts, offset) - 1, 0)
    while i < len(views) and views[i][0] < end:
      start, data = views[i]
      lo, hi = max(start, offset), min(start + len(data), end)
      if lo < hi:  # numpy copies without holding the GIL.
        out[at - offset : lo - offset] = 0
        np.copyto(out[lo - offset : hi - offset], data[lo - start : hi - start])
        at = hi
      i += 1
    out[at - offset :] = 0

  return fill
