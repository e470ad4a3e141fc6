"""Moving a file's bytes between storages: copies and hard links.

A copy within one storage is that storage's own (`LocalStorage.copy`:
O_DIRECT, pipelined, fsynced); across storages, or where a storage has
nothing faster, bounded chunks stream through (`base.stream_copy`).
"""

from typing import Callable, Dict

from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import registry


def copy_file(
  src: str,
  dst: str,
  on_bytes: Callable[[int], None],
  new_observer: Callable[[], base.Observer],
) -> None:
  """Copies a file's bytes to a new file `dst`, durably.

  The source is read once; `new_observer()` sees every byte (the checksum
  check); `on_bytes` counts each byte once.
  """
  source, target = registry.for_path(src), registry.for_path(dst)
  if source is target:
    target.copy(src, dst, on_bytes, new_observer)
  else:
    base.stream_copy(source, src, target, dst, on_bytes, new_observer())


def try_link(
  src: str, dst: str, on_bytes: Callable[[int], None], state: Dict[str, bool]
) -> bool:
  """Hard-links `src` to `dst`; False where the storage does not allow it.

  After the first refusal (logged once), later calls do not try again.
  """
  source, target = registry.for_path(src), registry.for_path(dst)
  if source is not target or state.get("no_links"):
    return False
  if not target.link(src, dst):
    state["no_links"] = True
    return False
  info = target.stat(dst)
  on_bytes(info.size if info else 0)
  return True
