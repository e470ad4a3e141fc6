"""Seeded mutations of a checkpoint copy, one named kind at a time.

Not public API (a `testonly` library for tests/fuzz_test.py); no TensorFlow.
`mutate(path, rng)` damages a copy of a golden (as `tool_fixtures.copy_golden`
returns it: a prefix or a model dir) in one of the ways `KINDS` names and
says what it did. The same `(path layout, rng seed, kind)` always makes the
same bytes, so a case reproduces from its seed.

The kinds, by what they damage:

  index_*     raw bytes of the `.index` (anywhere, the footer, its block
              handles); table structure re-encoded with valid block checksums
              (handles, block types, restart arrays, separators); the file
              replaced by a FIFO, a symlink to /dev/zero, a directory...
  entry_*, key_*, header_*
              the index re-encoded with one entry, key or the header changed,
              every table checksum valid (`bundle.encode_index`,
              `table.encode_table`, or `tool_fixtures.write_raw_index` for
              unsorted or duplicate keys), so only the reader's own checks
              can catch it.
  data_*      a data file flipped, cut, extended, deleted, or replaced.
  graph_*     (TF2 only) the object graph tensor replaced by garbage or by a
              graph whose keys and names point nowhere, re-encoded with a
              valid checksum.
  state_*     the model dir's `checkpoint` state file.

Every mutation returns a `Mutation` whose `blame` lists the files an error
message about the damage should name.
"""

import dataclasses
import os
import random
import shutil
import struct
from typing import (
  Any,
  Callable,
  Dict,
  FrozenSet,
  Iterable,
  List,
  Optional,
  Sequence,
  Set,
  Tuple,
)

from google.protobuf import text_format

from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import protos
from estimator_ckpt._src.format import table
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.format import values
from estimator_ckpt._src.format import varint

from tests import tool_fixtures

STATE_FILENAME = "checkpoint"
OBJECT_GRAPH_KEY = b"_CHECKPOINTABLE_OBJECT_GRAPH"

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)
_UINT32 = struct.Struct("<I")
_TABLE_MAGIC = struct.pack("<Q", 0xDB4775248B80FB57)
_FOOTER_SIZE = 48
_HANDLES_SIZE = 40
# Bytes that are never valid UTF-8, in any position.
_NON_UTF8 = (b"\xff\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xf8\x88")


@dataclasses.dataclass(frozen=True)
class Mutation:
  """What `mutate` did.

  Attributes:
    kind: One of `KINDS`.
    description: The file and the change, e.g. "entry_shape:
      est-tf1/model.ckpt-1.index: `var` shape [] -> [-3]".
    blame: Absolute paths of the files an error about this damage should
      name (by path or base name).
    prefix: The damaged checkpoint's prefix, for damage to its index (an
      error may name the checkpoint instead of its `.index`); else None.
  """

  kind: str
  description: str
  blame: Tuple[str, ...]
  prefix: Optional[str] = None

  def __str__(self) -> str:
    return self.description


@dataclasses.dataclass
class _Target:
  """The checkpoint copy being damaged."""

  model_dir: str
  prefix: str  # The checkpoint this mutation damages.
  latest: str
  prefixes: List[str]

  @property
  def index_path(self) -> str:
    return bundle.index_filename(self.prefix)

  def data_paths(self, prefix: Optional[str] = None) -> List[str]:
    prefix = prefix or self.prefix
    directory, base = os.path.split(prefix)
    return sorted(
      os.path.join(directory, name)
      for name in os.listdir(directory)
      if name.startswith(base + ".data-")
    )

  @property
  def state_path(self) -> str:
    return os.path.join(self.model_dir, STATE_FILENAME)

  def rel(self, path: str) -> str:
    """`path` relative to the golden's parent, for descriptions."""
    return os.path.relpath(path, os.path.dirname(self.model_dir))

  def index_blame(self) -> Tuple[str, ...]:
    return (self.index_path, *self.data_paths())


# A kind damages a target and returns (what it did, the files to blame).
_KindFunction = Callable[[_Target, random.Random], Tuple[str, Sequence[str]]]
_KIND_FUNCTIONS: Dict[str, _KindFunction] = {}
_TF2_ONLY: Set[str] = set()


def _kind(name: str, tf2_only: bool = False):
  def register(function: _KindFunction) -> _KindFunction:
    _KIND_FUNCTIONS[name] = function
    if tf2_only:
      _TF2_ONLY.add(name)
    return function

  return register


def _target(path: str, rng: random.Random) -> _Target:
  model_dir = path if os.path.isdir(path) else os.path.dirname(path)
  prefixes = sorted(
    os.path.join(model_dir, name[: -len(".index")])
    for name in os.listdir(model_dir)
    if name.endswith(".index")
  )
  if os.path.isdir(path):
    with open(os.path.join(model_dir, STATE_FILENAME), "rb") as f:
      state = text_format.Parse(
        f.read().decode("utf-8"), protos.CheckpointState()
      )
    latest = os.path.join(model_dir, state.model_checkpoint_path)
  else:
    latest = path
  # Mostly the checkpoint the tools read by default; sometimes an older one,
  # which only `all_checkpoints` conversions read.
  others = [p for p in prefixes if p != latest]
  prefix = latest if not others or rng.random() < 0.8 else rng.choice(others)
  return _Target(model_dir, prefix, latest, prefixes)


def _is_tf2(prefix: str) -> bool:
  return OBJECT_GRAPH_KEY in tool_fixtures.entries(prefix)


def latest_prefix(path: str) -> str:
  """The prefix the tools read at `path`, from the undamaged copy.

  Args:
    path: A prefix (returned as is) or a model dir (its latest checkpoint).
  """
  return _target(path, random.Random(0)).latest


def applicable_kinds(path: str) -> List[str]:
  """The kinds that apply to the checkpoint at `path` (graph_* need TF2)."""
  tf2 = _is_tf2(latest_prefix(path))
  return [k for k in KINDS if tf2 or k not in TF2_ONLY_KINDS]


def mutate(
  path: str, rng: random.Random, kind: Optional[str] = None
) -> Mutation:
  """Applies one mutation to the checkpoint copy at `path`, in place.

  Args:
    path: A golden's copy: a checkpoint prefix or a model dir.
    rng: Decides everything (which checkpoint, key, byte, value).
    kind: One of `KINDS`; default: chosen by `rng` among those that apply
      (`graph_*` only to TF2 checkpoints; on a TF1 one they fall back to an
      entry mutation).

  Returns:
    The `Mutation`.
  """
  if kind is None:
    kind = rng.choice(applicable_kinds(path))
  if kind not in _KIND_FUNCTIONS:
    raise ValueError(f"unknown mutation kind {kind!r}; one of {KINDS}")
  target = _target(path, rng)
  if kind in TF2_ONLY_KINDS and not _is_tf2(target.prefix):
    target.prefix = target.latest
    if not _is_tf2(target.prefix):
      raise ValueError(f"{kind} needs a TF2 checkpoint; {path} is TF1")
  what, blame = _KIND_FUNCTIONS[kind](target, rng)
  damages_index = target.index_path in blame and not kind.startswith(
    ("data_", "state_")
  )
  return Mutation(
    kind,
    f"{kind}: {what}",
    tuple(blame),
    target.prefix if damages_index else None,
  )


# Helpers ----------------------------------------------------------------------


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _write(path: str, data: bytes) -> None:
  with open(path, "wb") as f:
    f.write(data)


def _random_bytes(rng: random.Random, size: int) -> bytes:
  return bytes(rng.getrandbits(8) for _ in range(size))


def _interesting(
  rng: random.Random,
  bounds: Tuple[int, int],
  near: Sequence[int] = (),
  old: Optional[int] = None,
) -> int:
  """A boundary value, one next to one of `near`, or a random one; not `old`."""
  low, high = bounds
  candidates = [
    0,
    1,
    -1,
    2,
    7,
    255,
    2**16,
    2**31 - 1,
    -(2**31),
    2**31,
    2**32,
    2**32 - 1,
    2**40,
    2**53 + 1,
    2**62,
    2**63 - 1,
    -(2**63),
  ]
  for value in near:
    candidates += [value - 1, value + 1, 2 * value, -value]
  candidates += [rng.randint(low, high), rng.randint(-1000, 1000)]
  candidates = [c for c in candidates if low <= c <= high and c != old]
  return rng.choice(candidates)


def _load(
  prefix: str,
) -> Tuple[protos.BundleHeaderProto, Dict[bytes, protos.BundleEntryProto]]:
  items = tool_fixtures.entries(prefix)
  header = items.pop(bundle.HEADER_KEY)
  return header, items


def _store(
  prefix: str,
  header: protos.BundleHeaderProto,
  entries: Dict[bytes, protos.BundleEntryProto],
) -> None:
  _write(
    bundle.index_filename(prefix), bundle.encode_index(header, entries.items())
  )


def _store_items(prefix: str, items: Sequence[Tuple[bytes, bytes]]) -> None:
  """Writes raw items in their order; valid checksums either way."""
  keys = [key for key, _ in items]
  if all(a < b for a, b in zip(keys, keys[1:])):
    _write(bundle.index_filename(prefix), table.encode_table(items))
  else:
    tool_fixtures.write_raw_index(prefix, items)


def _serialized(
  header: protos.BundleHeaderProto,
  entries: Dict[bytes, protos.BundleEntryProto],
) -> List[Tuple[bytes, bytes]]:
  return [(bundle.HEADER_KEY, header.SerializeToString())] + sorted(
    (key, entry.SerializeToString()) for key, entry in entries.items()
  )


def _text(key: bytes) -> str:
  return tensor_slice.key_text(key)


def _shape(entry: protos.BundleEntryProto) -> List[int]:
  return [dim.size for dim in entry.shape.dim]


def _set_shape(entry: protos.BundleEntryProto, shape: Sequence[int]) -> None:
  del entry.shape.dim[:]
  for size in shape:
    entry.shape.dim.add(size=size)


def _whole_keys(entries: Dict[bytes, protos.BundleEntryProto]) -> List[bytes]:
  return sorted(k for k, e in entries.items() if not e.slices)


def _tensor_keys(entries: Dict[bytes, protos.BundleEntryProto]) -> List[bytes]:
  return sorted(k for k in entries if not tensor_slice.is_slice_key(k))


def _partitioned_keys(
  entries: Dict[bytes, protos.BundleEntryProto],
) -> List[bytes]:
  return sorted(k for k, e in entries.items() if e.slices)


def _rename_tensor(
  entries: Dict[bytes, protos.BundleEntryProto], old: bytes, new: bytes
) -> None:
  """Renames a tensor and, if partitioned, its slices' keys with it."""
  entry = entries.pop(old)
  for proto in entry.slices:
    part = tensor_slice.TensorSlice.from_proto(proto)
    child = entries.pop(tensor_slice.slice_key(old, part), None)
    if child is not None:
      entries[tensor_slice.slice_key(new, part)] = child
  entries[new] = entry


def _masked_crc(data: bytes) -> int:
  return crc32c.mask(crc32c.crc32c(data))


# index_*: raw bytes and table structure ---------------------------------------


@_kind("index_flip_bytes")
def _index_flip_bytes(t: _Target, rng: random.Random):
  data = bytearray(_read(t.index_path))
  positions = sorted(
    {rng.randrange(len(data)) for _ in range(rng.choice([1, 1, 1, 2, 3, 8]))}
  )
  for position in positions:
    data[position] ^= rng.randrange(1, 256)
  _write(t.index_path, bytes(data))
  return f"{t.rel(t.index_path)}: flipped bytes at {positions}", t.index_blame()


@_kind("index_overwrite")
def _index_overwrite(t: _Target, rng: random.Random):
  data = bytearray(_read(t.index_path))
  start = rng.randrange(len(data))
  size = min(rng.choice([1, 4, 16, 64, 512]), len(data) - start)
  fill = rng.choice(["zeros", "0xff", "random"])
  data[start : start + size] = (
    b"\x00" * size
    if fill == "zeros"
    else b"\xff" * size
    if fill == "0xff"
    else _random_bytes(rng, size)
  )
  _write(t.index_path, bytes(data))
  return (
    f"{t.rel(t.index_path)}: bytes [{start}, {start + size}) "
    f"overwritten with {fill}"
  ), t.index_blame()


@_kind("index_truncate")
def _index_truncate(t: _Target, rng: random.Random):
  size = os.path.getsize(t.index_path)
  new = rng.choice(
    [
      0,
      1,
      _FOOTER_SIZE - 1,
      _FOOTER_SIZE,
      size - 1,
      size - _FOOTER_SIZE,
      rng.randrange(size),
    ]
  )
  tool_fixtures.truncate(t.index_path, max(new, 0))
  return (
    f"{t.rel(t.index_path)}: truncated from {size} to {max(new, 0)} bytes"
  ), t.index_blame()


@_kind("index_extend")
def _index_extend(t: _Target, rng: random.Random):
  data = _read(t.index_path)
  extra = rng.choice(
    [
      b"\x00" * rng.randint(1, 4096),
      _random_bytes(rng, rng.randint(1, 64)),
      data,
    ]
  )
  where = rng.choice(["end", "start", "middle"])
  position = {"end": len(data), "start": 0, "middle": rng.randrange(len(data))}[
    where
  ]
  _write(t.index_path, data[:position] + extra + data[position:])
  return (
    f"{t.rel(t.index_path)}: inserted {len(extra)} bytes at offset "
    f"{position} ({where})"
  ), t.index_blame()


@_kind("index_footer")
def _index_footer(t: _Target, rng: random.Random):
  data = bytearray(_read(t.index_path))
  offset = rng.randrange(_FOOTER_SIZE)
  position = len(data) - _FOOTER_SIZE + offset
  data[position] ^= rng.randrange(1, 256)
  _write(t.index_path, bytes(data))
  return (
    f"{t.rel(t.index_path)}: flipped footer byte {offset} "
    f"({'magic' if offset >= _HANDLES_SIZE else 'handles'})"
  ), t.index_blame()


@dataclasses.dataclass
class _Block:
  contents: bytes
  block_type: int = 0


@dataclasses.dataclass
class _Table:
  """A parsed table file: data blocks with their index keys, the metaindex."""

  data_blocks: List[Tuple[bytes, _Block]]
  meta: _Block


def _block_items(contents: bytes) -> List[Tuple[bytes, bytes]]:
  (num_restarts,) = _UINT32.unpack_from(contents, len(contents) - 4)
  limit = len(contents) - 4 - 4 * num_restarts
  items = []
  key = b""
  pos = 0
  while pos < limit:
    shared, pos = varint.decode_varint(contents, pos, limit)
    unshared, pos = varint.decode_varint(contents, pos, limit)
    size, pos = varint.decode_varint(contents, pos, limit)
    key = key[:shared] + contents[pos : pos + unshared]
    pos += unshared
    items.append((key, contents[pos : pos + size]))
    pos += size
  return items


def _decode_handle(data: bytes, pos: int = 0) -> Tuple[int, int, int]:
  offset, pos = varint.decode_varint(data, pos, len(data))
  size, pos = varint.decode_varint(data, pos, len(data))
  return offset, size, pos


def _parse_table(data: bytes) -> _Table:
  footer = data[-_FOOTER_SIZE:]
  meta_offset, meta_size, pos = _decode_handle(footer)
  index_offset, index_size, _ = _decode_handle(footer, pos)

  def block(offset: int, size: int) -> _Block:
    return _Block(data[offset : offset + size], data[offset + size])

  index = block(index_offset, index_size)
  blocks = []
  for separator, handle in _block_items(index.contents):
    offset, size, _ = _decode_handle(handle)
    blocks.append((separator, block(offset, size)))
  return _Table(blocks, block(meta_offset, meta_size))


def _encode_block(items: Sequence[Tuple[bytes, bytes]]) -> bytes:
  """A block with a restart point at every entry (as index blocks have)."""
  out = bytearray()
  restarts = []
  for key, value in items:
    restarts.append(len(out))
    out += (
      varint.encode_varint(0)
      + varint.encode_varint(len(key))
      + varint.encode_varint(len(value))
      + key
      + value
    )
  restarts = restarts or [0]
  return (
    bytes(out)
    + b"".join(_UINT32.pack(r) for r in restarts)
    + (_UINT32.pack(len(restarts)))
  )


def _assemble(
  parsed: _Table,
  handles: Optional[Dict[int, bytes]] = None,
  index_edit: Optional[Callable[[_Block], _Block]] = None,
  footer_handles: Optional[bytes] = None,
) -> bytes:
  """Writes a table with valid block checksums, whatever the blocks hold."""
  out = bytearray()

  def put(block: _Block) -> bytes:
    handle = varint.encode_varint(len(out)) + varint.encode_varint(
      len(block.contents)
    )
    trailer = bytes([block.block_type])
    out.extend(
      block.contents
      + trailer
      + _UINT32.pack(_masked_crc(block.contents + trailer))
    )
    return handle

  index_items = []
  for number, (separator, block) in enumerate(parsed.data_blocks):
    handle = put(block)
    index_items.append((separator, (handles or {}).get(number, handle)))
  meta_handle = put(parsed.meta)
  index = _Block(_encode_block(index_items))
  if index_edit:
    index = index_edit(index)
  index_handle = put(index)
  footer = (
    footer_handles if footer_handles is not None else meta_handle + index_handle
  )
  out.extend(
    footer[:_HANDLES_SIZE].ljust(_HANDLES_SIZE, b"\x00") + _TABLE_MAGIC
  )
  return bytes(out)


def _handle_value(rng: random.Random, size: int) -> Tuple[int, int]:
  near = (size, size - _FOOTER_SIZE)
  return (
    _interesting(rng, (0, 2**64 - 1), near),
    _interesting(rng, (0, 2**64 - 1), near),
  )


@_kind("index_footer_handles")
def _index_footer_handles(t: _Target, rng: random.Random):
  data = _read(t.index_path)
  parsed = _parse_table(data)
  footer = data[-_FOOTER_SIZE:]
  meta_offset, meta_size, pos = _decode_handle(footer)
  index_offset, index_size, _ = _decode_handle(footer, pos)
  handles = [[meta_offset, meta_size], [index_offset, index_size]]
  which = rng.randrange(2)
  new = _handle_value(rng, len(data))
  field = rng.choice([0, 1, None])
  if field is None:
    handles[which] = list(new)
  else:
    handles[which][field] = new[field]
  encoded = b"".join(varint.encode_varint(v) for h in handles for v in h)
  if len(encoded) > _HANDLES_SIZE:
    encoded = encoded[:_HANDLES_SIZE]
  _write(t.index_path, _assemble(parsed, footer_handles=encoded))
  return (
    f"{t.rel(t.index_path)}: footer {('metaindex', 'index')[which]} "
    f"handle -> {handles[which]}"
  ), t.index_blame()


@_kind("index_block_handle")
def _index_block_handle(t: _Target, rng: random.Random):
  data = _read(t.index_path)
  parsed = _parse_table(data)
  number = rng.randrange(len(parsed.data_blocks))
  choice = rng.choice(
    ["values", "values", "values", "empty", "unterminated", "trailing"]
  )
  if choice == "values":
    offset, size = _handle_value(rng, len(data))
    handle = varint.encode_varint(offset) + varint.encode_varint(size)
    what = f"({offset}, {size})"
  else:
    handle = {
      "empty": b"",
      "unterminated": b"\x80" * 11,
      "trailing": b"\x00\x10\x00",
    }[choice]
    what = choice
  _write(t.index_path, _assemble(parsed, handles={number: handle}))
  return (
    f"{t.rel(t.index_path)}: handle of data block {number} -> {what} "
    "(index block checksum valid)"
  ), t.index_blame()


@_kind("index_block_type")
def _index_block_type(t: _Target, rng: random.Random):
  parsed = _parse_table(_read(t.index_path))
  block_type = rng.choice([1, 2, 0x7F, 0xFF])
  which = rng.choice(["data", "meta", "index"])

  def edit(block: _Block) -> _Block:
    return _Block(block.contents, block_type)

  if which == "data":
    parsed.data_blocks[0][1].block_type = block_type
  elif which == "meta":
    parsed.meta.block_type = block_type
  _write(
    t.index_path,
    _assemble(parsed, index_edit=edit if which == "index" else None),
  )
  return (
    f"{t.rel(t.index_path)}: {which} block type -> {block_type} "
    "(checksum valid)"
  ), t.index_blame()


def _mutated_restarts(contents: bytes, rng: random.Random) -> Tuple[bytes, str]:
  (count,) = _UINT32.unpack_from(contents, len(contents) - 4)
  limit = len(contents) - 4 - 4 * count
  body = contents[:limit]
  restarts = list(struct.unpack_from(f"<{count}I", contents, limit))
  choice = rng.choice(
    ["zero count", "huge count", "count + 1", "one offset", "reversed", "none"]
  )
  count_field = len(restarts)
  if choice == "zero count":
    count_field = 0
  elif choice == "huge count":
    count_field = 0xFFFFFFFF
  elif choice == "count + 1":
    count_field = count + 1
  elif choice == "one offset":
    i = rng.randrange(len(restarts))
    restarts[i] = _interesting(rng, (0, 2**32 - 1), (len(body),))
    choice = f"restart {i} -> {restarts[i]}"
  elif choice == "reversed":
    restarts.reverse()
  else:
    restarts = []
    count_field = 0
  return body + b"".join(map(_UINT32.pack, restarts)) + _UINT32.pack(
    count_field
  ), choice


@_kind("index_restarts")
def _index_restarts(t: _Target, rng: random.Random):
  parsed = _parse_table(_read(t.index_path))
  which = rng.choice(["data", "index", "meta"])
  what = ""
  edit = None
  if which == "data":
    number = rng.randrange(len(parsed.data_blocks))
    block = parsed.data_blocks[number][1]
    block.contents, what = _mutated_restarts(block.contents, rng)
  elif which == "meta":
    parsed.meta.contents, what = _mutated_restarts(parsed.meta.contents, rng)
  else:
    details = []

    def edit(block: _Block) -> _Block:
      contents, detail = _mutated_restarts(block.contents, rng)
      details.append(detail)
      return _Block(contents, block.block_type)

  _write(t.index_path, _assemble(parsed, index_edit=edit))
  if which == "index":
    what = details[0]
  return (
    f"{t.rel(t.index_path)}: {which} block restart array: {what} "
    "(checksum valid)"
  ), t.index_blame()


@_kind("index_separator")
def _index_separator(t: _Target, rng: random.Random):
  parsed = _parse_table(_read(t.index_path))
  number = rng.randrange(len(parsed.data_blocks))
  old, block = parsed.data_blocks[number]
  new = rng.choice(
    [
      b"",
      b"\x00",
      b"\xff" * 8,
      old[: len(old) // 2],
      _random_bytes(rng, rng.randint(1, 12)),
    ]
  )
  parsed.data_blocks[number] = (new, block)
  _write(t.index_path, _assemble(parsed))
  return (
    f"{t.rel(t.index_path)}: index key of data block {number} "
    f"{old!r} -> {new!r} (checksum valid)"
  ), t.index_blame()


@_kind("index_fifo")
def _index_fifo(t: _Target, rng: random.Random):
  del rng
  os.remove(t.index_path)
  os.mkfifo(t.index_path)
  return f"{t.rel(t.index_path)}: replaced by a FIFO", (t.index_path,)


@_kind("index_dev_zero")
def _index_dev_zero(t: _Target, rng: random.Random):
  del rng
  os.remove(t.index_path)
  os.symlink("/dev/zero", t.index_path)
  return (
    f"{t.rel(t.index_path)}: replaced by a symlink to /dev/zero",
    (t.index_path,),
  )


@_kind("index_special")
def _index_special(t: _Target, rng: random.Random):
  choice = rng.choice(
    [
      "directory",
      "delete",
      "symlink loop",
      "dangling symlink",
      "symlink to a data file",
    ]
  )
  os.remove(t.index_path)
  if choice == "directory":
    os.mkdir(t.index_path)
  elif choice == "symlink loop":
    os.symlink(os.path.basename(t.index_path), t.index_path)
  elif choice == "dangling symlink":
    os.symlink("/nonexistent/model.ckpt.index", t.index_path)
  elif choice == "symlink to a data file":
    os.symlink(os.path.basename(t.data_paths()[0]), t.index_path)
  return f"{t.rel(t.index_path)}: {choice}", (t.index_path,)


# entry_*, key_*, header_*: the index re-encoded, checksums valid --------------


def _pick_key(rng: random.Random, keys: Iterable[bytes]) -> bytes:
  return rng.choice(sorted(keys))


@_kind("entry_dtype")
def _entry_dtype(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, entries)
  old = entries[key].dtype
  new = rng.choice(
    [
      d
      for d in (
        0,
        1,
        2,
        3,
        4,
        7,
        9,
        10,
        14,
        19,
        20,
        21,
        26,
        27,
        28,
        29,
        31,
        101,
        107,
        2**31 - 1,
        -1,
        rng.randint(1, 30),
      )
      if d != old
    ]
  )
  entries[key].dtype = new
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: `{_text(key)}` dtype {old} -> {new}",
    t.index_blame(),
  )


@_kind("entry_shape")
def _entry_shape(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, entries)
  entry = entries[key]
  old = _shape(entry)
  choice = rng.choice(
    [
      "negative",
      "huge",
      "zero elements, huge dims",
      "add dim",
      "remove dim",
      "scalar",
      "reverse",
      "unknown rank",
      "overflow",
    ]
  )
  if choice == "negative":
    new = list(old) or [1]
    new[rng.randrange(len(new))] = rng.choice([-1, -16, -(2**63)])
  elif choice == "huge":
    new = list(old) or [1]
    new[rng.randrange(len(new))] = rng.choice([2**40, 2**62, 2**63 - 1])
  elif choice == "zero elements, huge dims":
    new = rng.choice(
      [[0, 2**40, 2**40], [2**40, 0], [0, 2**62, 2**62], [0] + [2**40] * 5]
    )
    # Valid otherwise: no bytes, and the checksum of no bytes.
    entry.size = 0
    entry.crc32c = _masked_crc(b"")
  elif choice == "add dim":
    new = list(old)
    new.insert(rng.randint(0, len(new)), rng.choice([1, 1, 0, 2]))
  elif choice == "remove dim":
    new = list(old[1:])
  elif choice == "scalar":
    new = []
  elif choice == "reverse":
    new = list(reversed(old))
  elif choice == "overflow":
    new = [2**32, 2**32, 2**32]
  else:
    new = old
    entry.shape.unknown_rank = True
  _set_shape(entry, new)
  return_text = (
    f"{t.rel(t.index_path)}: `{_text(key)}` shape {old} -> {new} ({choice})"
  )
  _store(t.prefix, header, entries)
  return return_text, t.index_blame()


@_kind("entry_shard_id")
def _entry_shard_id(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, _whole_keys(entries))
  old = entries[key].shard_id
  new = _interesting(rng, _INT32, (header.num_shards, old), old)
  if header.num_shards > 1 and rng.random() < 0.5:
    new = (old + 1) % header.num_shards
  entries[key].shard_id = new
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: `{_text(key)}` shard_id {old} -> {new}",
    t.index_blame(),
  )


@_kind("entry_offset")
def _entry_offset(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, _whole_keys(entries))
  entry = entries[key]
  old = entry.offset
  data_size = os.path.getsize(
    bundle.data_filename(t.prefix, entry.shard_id, header.num_shards)
  )
  same_size = [
    k
    for k in _whole_keys(entries)
    if k != key
    and entries[k].size == entry.size
    and entries[k].shard_id == entry.shard_id
  ]
  if same_size and rng.random() < 0.3:
    # Another tensor's bytes, with their (valid) checksum.
    other = rng.choice(same_size)
    entry.offset = entries[other].offset
    entry.crc32c = entries[other].crc32c
    what = f"{old} -> {entry.offset} (the bytes of `{_text(other)}`, crc too)"
  else:
    entry.offset = _interesting(
      rng, _INT64, (old, data_size, data_size - entry.size), old
    )
    what = f"{old} -> {entry.offset}"
  _store(t.prefix, header, entries)
  return f"{t.rel(t.index_path)}: `{_text(key)}` offset {what}", t.index_blame()


@_kind("entry_size")
def _entry_size(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, _whole_keys(entries))
  old = entries[key].size
  entries[key].size = _interesting(rng, _INT64, (old,), old)
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: `{_text(key)}` size {old} -> {entries[key].size}"
  ), t.index_blame()


@_kind("entry_crc32c")
def _entry_crc32c(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, _whole_keys(entries))
  old = entries[key].crc32c
  new = rng.choice(
    [0, 0xFFFFFFFF, crc32c.unmask(old), old ^ 1, rng.getrandbits(32)]
  )
  entries[key].crc32c = new
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: `{_text(key)}` crc32c {old:#x} -> {new:#x}"
  ), t.index_blame()


@_kind("entry_garbage")
def _entry_garbage(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, entries)
  value = entries[key].SerializeToString()
  choice = rng.choice(
    ["random", "truncated", "0xff", "unknown field", "wrong wire type", "empty"]
  )
  new = {
    "random": _random_bytes(rng, rng.randint(1, 40)),
    "truncated": value[: max(len(value) - rng.randint(1, 4), 0)],
    "0xff": b"\xff\xff\xff\xff",
    "unknown field": value + b"\xf8\x01\x05",  # field 31, varint 5
    "wrong wire type": b"\x0a\x01\x00" + value,  # field 1 (dtype) as bytes
    "empty": b"",
  }[choice]
  items = [(k, new if k == key else v) for k, v in _serialized(header, entries)]
  _store_items(t.prefix, items)
  return (
    f"{t.rel(t.index_path)}: `{_text(key)}` entry bytes -> {choice} "
    f"{new[:16]!r}"
  ), t.index_blame()


def _shift_slice(
  rng: random.Random, entries: Dict[bytes, protos.BundleEntryProto], key: bytes
) -> str:
  """Changes one listed slice and its child's key (and shape) to match."""
  entry = entries[key]
  shape = _shape(entry)
  number = rng.randrange(len(entry.slices))
  old = tensor_slice.TensorSlice.from_proto(entry.slices[number])
  child = entries.pop(tensor_slice.slice_key(key, old))
  extents = list(old.extents)
  axis = next((a for a, (_, length) in enumerate(extents) if length >= 0), 0)
  start, length = extents[axis]
  choice = rng.choice(
    [
      "overlap",
      "out of range",
      "negative start",
      "full extent",
      "huge",
      "zero length",
    ]
  )
  if choice == "overlap":
    start = start + length // 2 if start == 0 else start - length // 2
  elif choice == "out of range":
    start = shape[axis] - length + rng.randint(1, 3)
  elif choice == "negative start":
    start = -rng.randint(1, 10)
  elif choice == "full extent":
    start, length = 0, -1
  elif choice == "huge":
    start = rng.choice([2**62, 2**63 - 1 - length])
  else:
    length = 0
  extents[axis] = (start, length)
  new = tensor_slice.TensorSlice(tuple(extents))
  del entry.slices[number].extent[:]
  new.to_proto(entry.slices[number])
  if choice in ("overlap", "zero length"):
    _set_shape(child, new.shape(shape))
  entries[tensor_slice.slice_key(key, new)] = child
  return f"slice `{old}` -> `{new}` ({choice})"


@_kind("entry_slices")
def _entry_slices(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  partitioned = _partitioned_keys(entries)
  if not partitioned:
    # Partition a whole tensor: valid (children at the parent's bytes, with
    # their checksums) when it has a dimension to split, else bogus.
    key = _pick_key(
      rng, [k for k in _whole_keys(entries) if k != OBJECT_GRAPH_KEY]
    )
    entry = entries.pop(key)
    shape = _shape(entry)
    full = protos.BundleEntryProto(dtype=entry.dtype)
    _set_shape(full, shape)
    if shape and shape[0] >= 2:
      data_path = bundle.data_filename(
        t.prefix, entry.shard_id, header.num_shards
      )
      data = _read(data_path)[entry.offset : entry.offset + entry.size]
      rows = shape[0] // 2
      row_bytes = entry.size // shape[0]
      extents = []
      for start, length in ((0, rows), (rows, shape[0] - rows)):
        part = tensor_slice.TensorSlice(
          ((start, length),) + tuple((0, -1) for _ in shape[1:])
        )
        part.to_proto(full.slices.add())
        child = protos.BundleEntryProto()
        child.CopyFrom(entry)
        _set_shape(child, part.shape(shape))
        child.offset = entry.offset + start * row_bytes
        child.size = length * row_bytes
        child.crc32c = _masked_crc(
          data[start * row_bytes : (start + length) * row_bytes]
        )
        entries[tensor_slice.slice_key(key, part)] = child
        extents.append(str(part))
      what = f"partitioned into slices {extents} (valid)"
    else:
      rank = rng.choice([0, 1, len(shape) + 1])
      part = tensor_slice.TensorSlice(tuple((0, 1) for _ in range(rank)))
      part.to_proto(full.slices.add())
      if rng.random() < 0.5:
        entries[tensor_slice.slice_key(key, part)] = entry
      what = f"lists slice `{part}` of rank {rank} for shape {shape}"
    entries[key] = full
  else:
    key = _pick_key(rng, partitioned)
    entry = entries[key]
    choice = rng.choice(
      [
        "drop",
        "duplicate",
        "shift",
        "shift",
        "clear",
        "extra extent",
        "child lists slices",
        "child shape",
        "orphan",
      ]
    )
    if choice == "drop":
      number = rng.randrange(len(entry.slices))
      dropped = tensor_slice.TensorSlice.from_proto(entry.slices[number])
      del entry.slices[number]
      if rng.random() < 0.5:
        del entries[tensor_slice.slice_key(key, dropped)]
        what = f"dropped slice `{dropped}` and its entry"
      else:
        what = f"dropped slice `{dropped}` from the list (entry stays)"
    elif choice == "duplicate":
      entry.slices.add().CopyFrom(rng.choice(list(entry.slices)))
      what = "listed a slice twice"
    elif choice == "shift":
      what = _shift_slice(rng, entries, key)
    elif choice == "clear":
      del entry.slices[:]
      what = "no slices listed (children stay)"
    elif choice == "extra extent":
      number = rng.randrange(len(entry.slices))
      entry.slices[number].extent.add(start=0, length=1)
      what = f"slice {number} gets an extra extent"
    elif choice == "child lists slices":
      part = tensor_slice.TensorSlice.from_proto(rng.choice(entry.slices))
      child = entries[tensor_slice.slice_key(key, part)]
      child.slices.add().CopyFrom(entry.slices[0])
      what = f"slice `{part}`'s entry lists a slice itself"
    elif choice == "child shape":
      part = tensor_slice.TensorSlice.from_proto(rng.choice(entry.slices))
      child = entries[tensor_slice.slice_key(key, part)]
      old = _shape(child)
      _set_shape(child, list(reversed(old)))
      what = f"slice `{part}`'s entry shape {old} -> {list(reversed(old))}"
    else:
      part = tensor_slice.TensorSlice(((0, 1), (0, -1)))
      orphan = protos.BundleEntryProto()
      orphan.CopyFrom(entries[_whole_keys(entries)[0]])
      entries[tensor_slice.slice_key(b"nobody", part)] = orphan
      what = "added a slice entry of an unlisted tensor `nobody`"
  _store(t.prefix, header, entries)
  return f"{t.rel(t.index_path)}: `{_text(key)}` {what}", t.index_blame()


def _non_utf8_name(rng: random.Random, key: bytes) -> bytes:
  bad = rng.choice(_NON_UTF8)
  if b"/" in key and rng.random() < 0.5:
    # Inside a TF2 key's escaped name, or a TF1 scope.
    parts = key.split(b"/")
    i = 1 if len(parts) > 2 else 0
    parts[i] = parts[i] + bad
    return b"/".join(parts)
  return rng.choice([bad, key + bad, bad + key])


@_kind("key_non_utf8")
def _key_non_utf8(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, _tensor_keys(entries))
  new = _non_utf8_name(rng, key)
  _rename_tensor(entries, key, new)
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: key `{_text(key)}` -> {new!r}",
    t.index_blame(),
  )


@_kind("key_empty")
def _key_empty(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, _whole_keys(entries))
  items = _serialized(header, entries)
  choice = rng.choice(["replaces header", "second empty key", "after header"])
  value = entries[key].SerializeToString()
  if choice == "replaces header":
    items = [(bundle.HEADER_KEY, value)] + [
      (k, v) for k, v in items[1:] if k != key
    ]
  elif choice == "second empty key":
    items = [(bundle.HEADER_KEY, value)] + items
  else:
    items = (
      items[:1]
      + [(bundle.HEADER_KEY, value)]
      + [(k, v) for k, v in items[1:] if k != key]
    )
  _store_items(t.prefix, items)
  return (
    f"{t.rel(t.index_path)}: `{_text(key)}`'s entry under the empty "
    f"key ({choice})"
  ), t.index_blame()


@_kind("key_duplicate")
def _key_duplicate(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  items = _serialized(header, entries)
  number = rng.randrange(len(items))
  key, value = items[number]
  if rng.random() < 0.5:
    other = rng.choice(items)[1]
    what = "with another entry's value"
  else:
    other = value
    what = "with the same value"
  items.insert(number + rng.choice([0, 1]), (key, other))
  _store_items(t.prefix, items)
  return (
    f"{t.rel(t.index_path)}: key `{_text(key)}` twice ({what})",
    t.index_blame(),
  )


@_kind("key_unsorted")
def _key_unsorted(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  items = _serialized(header, entries)
  choice = rng.choice(["swap", "reverse", "header last", "shuffle"])
  if choice == "swap" and len(items) > 2:
    i, j = rng.sample(range(1, len(items)), 2)
    items[i], items[j] = items[j], items[i]
    choice = f"swapped `{_text(items[j][0])}` and `{_text(items[i][0])}`"
  elif choice == "reverse":
    items.reverse()
  elif choice == "header last":
    items = items[1:] + items[:1]
  else:
    rng.shuffle(items)
  _store_items(t.prefix, items)
  return f"{t.rel(t.index_path)}: keys out of order ({choice})", t.index_blame()


@_kind("key_slice_like")
def _key_slice_like(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  source = _pick_key(rng, _whole_keys(entries))
  entry = protos.BundleEntryProto()
  entry.CopyFrom(entries[source])
  choice = rng.choice(
    ["malformed", "orphan", "rank mismatch", "rename to slice key", "truncated"]
  )
  if choice == "malformed":
    key = b"\x00" + _random_bytes(rng, rng.randint(0, 12))
  elif choice == "orphan":
    key = tensor_slice.slice_key(source, tensor_slice.TensorSlice(((0, 1),)))
  elif choice == "rank mismatch":
    key = tensor_slice.slice_key(
      source + b"x", tensor_slice.TensorSlice(((0, 1), (0, -1), (0, -1)))
    )
  elif choice == "truncated":
    key = tensor_slice.slice_key(source, tensor_slice.TensorSlice(((0, 1),)))[
      :-1
    ]
  else:
    key = b"\x00" + source
    del entries[source]
  entries[key] = entry
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: slice-like key {key!r} ({choice}, entry of "
    f"`{_text(source)}`)"
  ), t.index_blame()


@_kind("key_rename")
def _key_rename(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, _tensor_keys(entries))
  new = rng.choice(
    [
      b"x" * rng.choice([300, 5000, 100000]),
      OBJECT_GRAPH_KEY,
      b"global_step",
      b"step/.ATTRIBUTES/VARIABLE_VALUE",
      b"var_list/a.Xb/.ATTRIBUTES/VARIABLE_VALUE",
      b"var_list/a..Sb/.ATTRIBUTES/VARIABLE_VALUE",
      b"var_list//.ATTRIBUTES/VARIABLE_VALUE",
      b"vars/w.Spart_0/.ATTRIBUTES/VARIABLE_VALUE",
      b"a/part_1",
      b"../../escape",
      b"/abs",
      b"\x01ctl\ttab\nline",
      b"var_list/x/.ATTRIBUTES/VARIABLE_VALUE/extra",
      key + b"/.ATTRIBUTES/VARIABLE_VALUE",
    ]
  )
  if new in entries:
    new = new + b"2"
  _rename_tensor(entries, key, new)
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: key `{_text(key)}` -> {new[:60]!r}"
    f"{' (%d bytes)' % len(new) if len(new) > 60 else ''}",
    t.index_blame(),
  )


@_kind("entry_remove")
def _entry_remove(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  key = _pick_key(rng, entries)
  del entries[key]
  _store(t.prefix, header, entries)
  return f"{t.rel(t.index_path)}: removed `{_text(key)}`", t.index_blame()


@_kind("entry_alias")
def _entry_alias(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  source = _pick_key(rng, _whole_keys(entries))
  other = _pick_key(rng, _whole_keys(entries))
  new_key = rng.choice(
    [
      b"global_step",
      b"alias",
      other,
      b"var_list/" + source.split(b"/")[0] + b"/.ATTRIBUTES/VARIABLE_VALUE",
    ]
  )
  entry = protos.BundleEntryProto()
  entry.CopyFrom(entries[source])
  entries[new_key] = entry
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: `{_text(new_key)}` -> the entry of "
    f"`{_text(source)}`"
  ), t.index_blame()


@_kind("header_num_shards")
def _header_num_shards(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  old = header.num_shards
  header.num_shards = _interesting(rng, _INT32, (old,), old)
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: header num_shards {old} -> {header.num_shards}"
  ), t.index_blame()


@_kind("header_version")
def _header_version(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  choice = rng.choice(["producer", "min_consumer", "bad_consumers"])
  if choice == "producer":
    header.version.producer = rng.choice([-1, 0, 2, 2**31 - 1])
  elif choice == "min_consumer":
    header.version.min_consumer = rng.choice([1, 2, 2**31 - 1, -1])
  else:
    header.version.bad_consumers.extend(rng.choice([[1], [0, 2], [1, 1]]))
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: header version -> "
    f"{text_format.MessageToString(header.version, as_one_line=True)}",
    t.index_blame(),
  )


@_kind("header_endianness")
def _header_endianness(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  header.endianness = rng.choice([1, 2, -1])
  _store(t.prefix, header, entries)
  return (
    f"{t.rel(t.index_path)}: header endianness -> {header.endianness}",
    t.index_blame(),
  )


@_kind("header_garbage")
def _header_garbage(t: _Target, rng: random.Random):
  header, entries = _load(t.prefix)
  choice = rng.choice(["empty", "random", "entry proto", "truncated"])
  value = {
    "empty": b"",
    "random": _random_bytes(rng, rng.randint(1, 20)),
    "entry proto": entries[_whole_keys(entries)[0]].SerializeToString(),
    "truncated": header.SerializeToString()[:-1],
  }[choice]
  items = [(bundle.HEADER_KEY, value)] + _serialized(header, entries)[1:]
  _store_items(t.prefix, items)
  return f"{t.rel(t.index_path)}: header bytes -> {choice}", t.index_blame()


# data_*: data files ----------------------------------------------------------


def _data_target(t: _Target, rng: random.Random) -> str:
  return rng.choice(t.data_paths())


@_kind("data_flip")
def _data_flip(t: _Target, rng: random.Random):
  path = _data_target(t, rng)
  size = os.path.getsize(path)
  if not size:
    tool_fixtures.truncate(path, 1)
    return f"{t.rel(path)}: empty file given 1 byte", (path,)
  offset = rng.randrange(size)
  tool_fixtures.flip_byte(path, offset)
  return f"{t.rel(path)}: flipped byte {offset} of {size}", (path,)


@_kind("data_truncate")
def _data_truncate(t: _Target, rng: random.Random):
  path = _data_target(t, rng)
  size = os.path.getsize(path)
  new = rng.choice([0, max(size - 1, 0), rng.randint(0, size)])
  tool_fixtures.truncate(path, new)
  return f"{t.rel(path)}: truncated from {size} to {new} bytes", (path,)


@_kind("data_extend")
def _data_extend(t: _Target, rng: random.Random):
  path = _data_target(t, rng)
  extra = rng.choice([1, 7, 4096, 1 << 20])
  with open(path, "ab") as f:
    f.write(_random_bytes(rng, min(extra, 64)) * (extra // min(extra, 64)))
  return f"{t.rel(path)}: appended about {extra} bytes", (path,)


@_kind("data_delete")
def _data_delete(t: _Target, rng: random.Random):
  path = _data_target(t, rng)
  os.remove(path)
  return f"{t.rel(path)}: deleted", (path,)


@_kind("data_directory")
def _data_directory(t: _Target, rng: random.Random):
  path = _data_target(t, rng)
  os.remove(path)
  os.mkdir(path)
  if rng.random() < 0.5:
    _write(os.path.join(path, "inner"), b"x")
  return f"{t.rel(path)}: replaced by a directory", (path,)


@_kind("data_special")
def _data_special(t: _Target, rng: random.Random):
  path = _data_target(t, rng)
  choice = rng.choice(
    ["fifo", "/dev/zero symlink", "symlink loop", "dangling symlink"]
  )
  os.remove(path)
  if choice == "fifo":
    os.mkfifo(path)
  elif choice == "/dev/zero symlink":
    os.symlink("/dev/zero", path)
  elif choice == "symlink loop":
    os.symlink(os.path.basename(path), path)
  else:
    os.symlink("/nonexistent/data", path)
  return f"{t.rel(path)}: replaced by a {choice}", (path,)


@_kind("data_other_save")
def _data_other_save(t: _Target, rng: random.Random):
  paths = t.data_paths()
  path = rng.choice(paths)
  others = [
    p
    for prefix in t.prefixes
    if prefix != t.prefix
    for p in t.data_paths(prefix)
  ]
  if len(paths) > 1 and (not others or rng.random() < 0.5):
    a, b = paths[0], paths[1]
    data_a, data_b = _read(a), _read(b)
    _write(a, data_b)
    _write(b, data_a)
    return f"{t.rel(a)} and {t.rel(b)} swapped", (a, b)
  if others:
    other = rng.choice(others)
    shutil.copyfile(other, path)
    return f"{t.rel(path)}: replaced by a copy of {t.rel(other)}", (path,)
  data = bytearray(_read(path))
  words = [bytes(data[i : i + 4]) for i in range(0, len(data), 4)]
  rng.shuffle(words)
  _write(path, b"".join(words))
  return f"{t.rel(path)}: 4-byte words shuffled", (path,)


# graph_*: the TF2 object graph ------------------------------------------------


def _load_graph(
  t: _Target,
) -> Tuple[
  protos.BundleHeaderProto,
  Dict[bytes, protos.BundleEntryProto],
  protos.TrackableObjectGraph,
]:
  header, entries = _load(t.prefix)
  entry = entries[OBJECT_GRAPH_KEY]
  path = bundle.data_filename(t.prefix, entry.shard_id, header.num_shards)
  data = _read(path)[entry.offset : entry.offset + entry.size]
  length, pos = varint.decode_varint(data, 0, len(data))
  graph = protos.TrackableObjectGraph.FromString(
    data[pos + 4 : pos + 4 + length]
  )
  return header, entries, graph


def _store_graph(
  t: _Target,
  header: protos.BundleHeaderProto,
  entries: Dict[bytes, protos.BundleEntryProto],
  graph_bytes: Sequence[bytes],
  shape: Sequence[int] = (),
) -> str:
  """Appends a string tensor to the graph's data file; points the entry at it.

  The entry gets the tensor's valid checksum, so only the reader's own checks
  of the graph can object.

  Returns:
    The data file's path.
  """
  entry = entries[OBJECT_GRAPH_KEY]
  path = bundle.data_filename(t.prefix, entry.shard_id, header.num_shards)
  payload, crc = values.encode_strings(list(graph_bytes))
  entry.offset = os.path.getsize(path)
  entry.size = len(payload)
  entry.crc32c = crc
  _set_shape(entry, shape)
  with open(path, "ab") as f:
    f.write(payload)
  _store(t.prefix, header, entries)
  return path


@_kind("graph_garbage", tf2_only=True)
def _graph_garbage(t: _Target, rng: random.Random):
  header, entries, graph = _load_graph(t)
  serialized = graph.SerializeToString()
  choice = rng.choice(
    ["random", "truncated", "flipped", "empty", "two strings", "not a graph"]
  )
  shape: Tuple[int, ...] = ()
  if choice == "random":
    values_ = [_random_bytes(rng, rng.randint(1, 300))]
  elif choice == "truncated":
    values_ = [serialized[: rng.randrange(len(serialized))]]
  elif choice == "flipped":
    data = bytearray(serialized)
    data[rng.randrange(len(data))] ^= rng.randrange(1, 256)
    values_ = [bytes(data)]
  elif choice == "empty":
    values_ = [b""]
  elif choice == "two strings":
    values_ = [serialized, serialized]
    shape = (2,)
  else:
    values_ = [b'model_checkpoint_path: "x"']
  path = _store_graph(t, header, entries, values_, shape)
  return (
    f"{t.rel(t.index_path)}: object graph -> {choice} (valid checksum, "
    f"bytes appended to {t.rel(path)})"
  ), t.index_blame()


def _attributes(graph: protos.TrackableObjectGraph):
  return [attribute for node in graph.nodes for attribute in node.attributes]


def _patched(serialized: bytes, placeholder: str, replacement: bytes) -> bytes:
  assert len(placeholder.encode()) == len(replacement)
  return serialized.replace(placeholder.encode(), replacement)


@_kind("graph_dangling", tf2_only=True)
def _graph_dangling(t: _Target, rng: random.Random):
  header, entries, graph = _load_graph(t)
  attributes = _attributes(graph)
  attribute: Any = rng.choice(attributes) if attributes else None
  names = sorted({a.full_name for a in attributes if a.full_name})
  choice = rng.choice(
    [
      "checkpoint_key nowhere",
      "checkpoint_key shared",
      "full_name empty",
      "full_name of another",
      "full_name part",
      "full_name non-UTF-8",
      "local_name non-UTF-8",
      "full_name long",
      "child out of range",
      "child negative",
      "cycle",
      "nodes dropped",
      "slot out of range",
    ]
  )
  placeholder = None
  if attribute is None and choice.startswith(("checkpoint_key", "full_name")):
    choice = "child out of range"
  if choice == "checkpoint_key nowhere":
    attribute.checkpoint_key = "nowhere/.ATTRIBUTES/VARIABLE_VALUE"
  elif choice == "checkpoint_key shared":
    attribute.checkpoint_key = rng.choice(attributes).checkpoint_key
  elif choice == "full_name empty":
    attribute.full_name = ""
  elif choice == "full_name of another":
    attribute.full_name = rng.choice(names or ["x"])
  elif choice == "full_name part":
    attribute.full_name = rng.choice(names or ["x"]) + "/part_0"
  elif choice == "full_name non-UTF-8":
    placeholder = "Q7Z9"
    attribute.full_name = attribute.full_name + placeholder
  elif choice == "local_name non-UTF-8":
    node = rng.choice([n for n in graph.nodes if n.children] or graph.nodes)
    if node.children:
      placeholder = "Q7Z9"
      node.children[0].local_name = placeholder
  elif choice == "full_name long":
    attribute.full_name = "n/" * 50000
  elif choice == "child out of range":
    graph.nodes[0].children.add(
      node_id=rng.choice([len(graph.nodes), 10**6]), local_name="ghost"
    )
  elif choice == "child negative":
    graph.nodes[0].children.add(node_id=-1, local_name="ghost")
  elif choice == "cycle":
    graph.nodes[-1].children.add(node_id=0, local_name="root_again")
  elif choice == "nodes dropped":
    del graph.nodes[1:]
  else:
    graph.nodes[0].slot_variables.add(
      original_variable_node_id=10**6, slot_name="m", slot_variable_node_id=-5
    )
  serialized = graph.SerializeToString()
  if placeholder:
    serialized = _patched(serialized, placeholder, b"\xff\xfe\xc3\x28")
  path = _store_graph(t, header, entries, [serialized])
  where = f" ({attribute.checkpoint_key})" if attribute is not None else ""
  return (
    f"{t.rel(t.index_path)}: object graph {choice}{where} (valid "
    f"checksum, bytes appended to {t.rel(path)})"
  ), t.index_blame()


@_kind("graph_stock_parts", tf2_only=True)
def _graph_stock_parts(t: _Target, rng: random.Random):
  """Makes variables look like stock `<name>/part_<i>` partitions."""
  header, entries, graph = _load_graph(t)
  attributes = [
    a for a in _attributes(graph) if a.checkpoint_key.encode() in entries
  ]
  count = rng.randint(1, len(attributes))
  chosen = rng.sample(attributes, count)
  indices = list(range(count))
  gap = rng.choice(["none", "none", "gap", "duplicate", "reshape"])
  if gap == "gap":
    indices[-1] += 1
  elif gap == "duplicate" and count > 1:
    indices[-1] = indices[0]
  renamed = []
  for attribute, index in zip(chosen, indices):
    old = attribute.checkpoint_key.encode()
    root = old.split(b"/")[0] if old.count(b"/") > 2 else b"var_list"
    new = root + b"/merged.Spart_%d/.ATTRIBUTES/VARIABLE_VALUE" % index
    if new in entries and new != old:
      continue
    entry = entries.pop(old)
    if gap == "reshape" and not _shape(entry):
      _set_shape(entry, [1])  # Same bytes: parts of shape [1] are valid.
    entries[new] = entry
    attribute.checkpoint_key = new.decode()
    attribute.full_name = "merged"
    renamed.append(f"{old.decode()} -> {new.decode()}")
  path = _store_graph(t, header, entries, [graph.SerializeToString()])
  return (
    f"{t.rel(t.index_path)}: stock parts of `merged` ({gap}): "
    f"{'; '.join(renamed)} (graph appended to {t.rel(path)})",
    t.index_blame(),
  )


@_kind("graph_empty", tf2_only=True)
def _graph_empty(t: _Target, rng: random.Random):
  header, entries, _ = _load_graph(t)
  graph = protos.TrackableObjectGraph()
  if rng.random() < 0.5:
    graph.nodes.add()
  path = _store_graph(t, header, entries, [graph.SerializeToString()])
  return (
    f"{t.rel(t.index_path)}: object graph with {len(graph.nodes)} nodes "
    f"(appended to {t.rel(path)})"
  ), t.index_blame()


# state_*: the `checkpoint` state file -----------------------------------------


def _state(model_checkpoint_path: str, all_paths: Sequence[str]) -> bytes:
  return text_format.MessageToString(
    protos.CheckpointState(
      model_checkpoint_path=model_checkpoint_path,
      all_model_checkpoint_paths=list(all_paths),
    )
  ).encode("utf-8")


def _write_state(t: _Target, data: bytes) -> None:
  _write(t.state_path, data)


@_kind("state_garbage")
def _state_garbage(t: _Target, rng: random.Random):
  choice = rng.choice(
    [
      "random bytes",
      "not a proto",
      "unknown field",
      "unterminated",
      "binary proto",
    ]
  )
  data = {
    "random bytes": _random_bytes(rng, rng.randint(1, 200)),
    "not a proto": b"this is not a checkpoint state\n",
    "unknown field": b'model_checkpoint_path: "x"\nbogus: 1\n',
    "unterminated": b'model_checkpoint_path: "model.ckpt',
    "binary proto": protos.CheckpointState(
      model_checkpoint_path=os.path.basename(t.latest)
    ).SerializeToString(),
  }[choice]
  _write_state(t, data)
  return f"{t.rel(t.state_path)}: {choice}", (t.state_path,)


@_kind("state_missing_checkpoint")
def _state_missing_checkpoint(t: _Target, rng: random.Random):
  base = os.path.basename(t.latest)
  missing = rng.choice([base + "999", "model.ckpt-12345", "sub/" + base])
  if rng.random() < 0.5:
    data = _state(missing, [missing])
    what = f"names only missing `{missing}`"
  else:
    data = _state(base, [missing, base])
    what = f"also lists missing `{missing}`"
  _write_state(t, data)
  return f"{t.rel(t.state_path)}: {what}", (t.state_path,)


@_kind("state_twice")
def _state_twice(t: _Target, rng: random.Random):
  base = os.path.basename(t.latest)
  other = f"../{os.path.basename(t.model_dir)}/{base}"
  paths = [base, other] if rng.random() < 0.5 else [other, base]
  latest = rng.choice(paths)
  _write_state(t, _state(latest, paths))
  return (
    f"{t.rel(t.state_path)}: lists {paths}, latest `{latest}` (one "
    "checkpoint twice)"
  ), (t.state_path,)


@_kind("state_absolute")
def _state_absolute(t: _Target, rng: random.Random):
  base = os.path.basename(t.latest)
  choice = rng.choice(["elsewhere", "itself", "parent", "root"])
  path = {
    "elsewhere": f"/nonexistent/elsewhere/{base}",
    "itself": t.latest,
    "parent": os.path.join(os.path.dirname(t.model_dir), base),
    "root": "/",
  }[choice]
  _write_state(t, _state(path, [path]))
  return f"{t.rel(t.state_path)}: names absolute `{path}`", (t.state_path,)


@_kind("state_odd_path")
def _state_odd_path(t: _Target, rng: random.Random):
  base = os.path.basename(t.latest)
  path = rng.choice(
    [
      base + ".index",
      base + ".data-00000-of-00001",
      ".",
      "..",
      base + "\x00x",
      "a" * 300,
      " " + base,
      base + "\n",
      os.path.join("..", "..", base),
    ]
  )
  if rng.random() < 0.5:
    data = _state(path, [path])
  else:
    data = _state(base, [path, base])
  _write_state(t, data)
  return f"{t.rel(t.state_path)}: names {path!r}", (t.state_path,)


@_kind("state_non_utf8")
def _state_non_utf8(t: _Target, rng: random.Random):
  base = os.path.basename(t.latest).encode()
  bad = rng.choice(_NON_UTF8)
  data = b'model_checkpoint_path: "' + base + bad + b'"\n'
  if rng.random() < 0.5:
    data = b"\xef\xbb\xbf" + data.replace(bad, b"")  # A UTF-8 BOM instead.
  _write_state(t, data)
  return f"{t.rel(t.state_path)}: {data!r}", (t.state_path,)


@_kind("state_empty")
def _state_empty(t: _Target, rng: random.Random):
  base = os.path.basename(t.latest)
  choice = rng.choice(
    ["empty", "whitespace", "only all paths", "latest not listed", "empty path"]
  )
  data = {
    "empty": b"",
    "whitespace": b"\n \n",
    "only all paths": _state("", [base]),
    "latest not listed": _state(base, []),
    "empty path": b'model_checkpoint_path: ""\n',
  }[choice]
  _write_state(t, data)
  return f"{t.rel(t.state_path)}: {choice}", (t.state_path,)


@_kind("state_special")
def _state_special(t: _Target, rng: random.Random):
  choice = rng.choice(
    ["directory", "deleted", "symlink loop", "dangling symlink"]
  )
  os.remove(t.state_path)
  if choice == "directory":
    os.mkdir(t.state_path)
  elif choice == "symlink loop":
    os.symlink(STATE_FILENAME, t.state_path)
  elif choice == "dangling symlink":
    os.symlink("/nonexistent/checkpoint", t.state_path)
  return f"{t.rel(t.state_path)}: {choice}", (t.state_path,)


@_kind("state_fifo")
def _state_fifo(t: _Target, rng: random.Random):
  del rng
  os.remove(t.state_path)
  os.mkfifo(t.state_path)
  return f"{t.rel(t.state_path)}: replaced by a FIFO", (t.state_path,)


@_kind("state_dev_zero")
def _state_dev_zero(t: _Target, rng: random.Random):
  del rng
  os.remove(t.state_path)
  os.symlink("/dev/zero", t.state_path)
  return (
    f"{t.rel(t.state_path)}: replaced by a symlink to /dev/zero",
    (t.state_path,),
  )


# Every kind, in a fixed order (a case's kind is chosen by its number).
KINDS: Tuple[str, ...] = tuple(_KIND_FUNCTIONS)
# The kinds that need a TF2 (object-based) checkpoint.
TF2_ONLY_KINDS: FrozenSet[str] = frozenset(_TF2_ONLY)
