"""Every bad-input case of the tools is an `errors.Error` naming file and key.

TensorFlow's own reaction is in each case's comment (TF 2.15; the two that
kill the process are shown in tests/tensorflow_faults_test.py). Nothing
here imports TensorFlow: the checks are ours, made before TensorFlow could see
the file.
"""

import os
import shutil

from absl.testing import absltest
from absl.testing import parameterized

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import tensor_slice

from tests import tool_fixtures

_RANKING = "est-tf1-ranking"
_PREFIX = "model.ckpt-20"
_DATA = _PREFIX + ".data-00000-of-00001"
_INDEX = _PREFIX + ".index"
_SLICED = b"user_embedding"


def _first_slice_key(entries):
  return next(
    k
    for k in entries
    if tensor_slice.is_slice_key(k)
    and tensor_slice.parse_slice_key(k)[0] == _SLICED
  )


def _truncate_index(model_dir):
  path = os.path.join(model_dir, _INDEX)
  tool_fixtures.truncate(path, os.path.getsize(path) // 2)


def _empty_index(model_dir):
  tool_fixtures.truncate(os.path.join(model_dir, _INDEX), 0)


def _flip_index_byte(model_dir):
  tool_fixtures.flip_byte(os.path.join(model_dir, _INDEX), 100)


def _flip_index_footer(model_dir):
  tool_fixtures.flip_byte(os.path.join(model_dir, _INDEX), -1)


def _flip_data_byte(model_dir):
  entries = tool_fixtures.entries(os.path.join(model_dir, _PREFIX))
  entry = entries[b"hidden/kernel"]
  tool_fixtures.flip_byte(os.path.join(model_dir, _DATA), entry.offset + 7)


def _truncate_data(model_dir):
  path = os.path.join(model_dir, _DATA)
  tool_fixtures.truncate(path, os.path.getsize(path) - 10)


def _remove_data(model_dir):
  os.remove(os.path.join(model_dir, _DATA))


def _negative_dimension(model_dir):
  tool_fixtures.set_dimension(
    os.path.join(model_dir, _PREFIX), b"hidden/bias", 0, -16
  )


def _unparseable_entry(model_dir):
  tool_fixtures.replace_entry_bytes(
    os.path.join(model_dir, _PREFIX), b"hidden/bias", b"\xff\xff\xff\xff"
  )


def _no_header(model_dir):
  tool_fixtures.rewrite_index(
    os.path.join(model_dir, _PREFIX),
    lambda entries: entries.pop(bundle.HEADER_KEY),
  )


def _wrong_shard_count(model_dir):
  def edit(entries):
    entries[bundle.HEADER_KEY].num_shards = 2

  tool_fixtures.rewrite_index(os.path.join(model_dir, _PREFIX), edit)


def _raw_items(model_dir):
  prefix = os.path.join(model_dir, _PREFIX)
  return prefix, [
    (key, entry.SerializeToString())
    for key, entry in sorted(tool_fixtures.entries(prefix).items())
  ]


def _duplicate_key(model_dir):
  prefix, items = _raw_items(model_dir)
  position = [key for key, _ in items].index(b"hidden/bias")
  tool_fixtures.write_raw_index(
    prefix, items[: position + 1] + items[position:]
  )


def _unsorted_keys(model_dir):
  prefix, items = _raw_items(model_dir)
  position = [key for key, _ in items].index(b"hidden/bias")
  items[position], items[position + 1] = items[position + 1], items[position]
  tool_fixtures.write_raw_index(prefix, items)


def _slice_entry_missing(model_dir):
  tool_fixtures.rewrite_index(
    os.path.join(model_dir, _PREFIX),
    lambda entries: entries.pop(_first_slice_key(entries)),
  )


def _different_saves(model_dir):
  # est-tf1: index of model.ckpt-0, data of model.ckpt-1 (same sizes).
  shutil.copyfile(
    os.path.join(model_dir, "model.ckpt-1.data-00000-of-00001"),
    os.path.join(model_dir, "model.ckpt-0.data-00000-of-00001"),
  )
  with open(os.path.join(model_dir, "checkpoint"), "w") as f:
    f.write('model_checkpoint_path: "model.ckpt-0"\n')


def _garbage_state_file(model_dir):
  with open(os.path.join(model_dir, "checkpoint"), "w") as f:
    f.write("\x00\x01garbage {{{")


# (name, golden, damage, error class, file the message names, key it names
# or None, whether the index alone shows it: list_variables fails too).
_CASES = (
  # TF: opaque OpError "not an sstable".
  (
    "truncated_index",
    _RANKING,
    _truncate_index,
    errors.CorruptCheckpointError,
    _INDEX,
    None,
    True,
  ),
  (
    "empty_index",
    _RANKING,
    _empty_index,
    errors.CorruptCheckpointError,
    _INDEX,
    None,
    True,
  ),
  # TF: opaque OpError "block checksum mismatch".
  (
    "flipped_index_byte",
    _RANKING,
    _flip_index_byte,
    errors.CorruptCheckpointError,
    _INDEX,
    None,
    True,
  ),
  (
    "flipped_index_footer",
    _RANKING,
    _flip_index_footer,
    errors.CorruptCheckpointError,
    _INDEX,
    None,
    True,
  ),
  # TF: DataLoss "Checksum does not match", only when read.
  (
    "flipped_data_byte",
    _RANKING,
    _flip_data_byte,
    errors.CorruptCheckpointError,
    _DATA,
    "hidden/kernel",
    False,
  ),
  # TF: "Read less bytes than requested", only when read.
  (
    "truncated_data",
    _RANKING,
    _truncate_data,
    errors.CorruptCheckpointError,
    _DATA,
    "user_embedding",
    True,
  ),
  # TF: fails only when a tensor from that file is read.
  (
    "missing_data_file",
    _RANKING,
    _remove_data,
    errors.CorruptCheckpointError,
    _DATA,
    "batch_norm/beta",
    True,
  ),
  # TF: aborts the process (F tensor_shape.cc).
  (
    "negative_dimension",
    _RANKING,
    _negative_dimension,
    errors.CorruptCheckpointError,
    _INDEX,
    "hidden/bias",
    True,
  ),
  # TF: aborts the process (F checkpoint_reader.cc).
  (
    "unparseable_entry",
    _RANKING,
    _unparseable_entry,
    errors.CorruptCheckpointError,
    _INDEX,
    "hidden/bias",
    True,
  ),
  # TF: parses the first tensor's entry as the header.
  (
    "no_header",
    _RANKING,
    _no_header,
    errors.CorruptCheckpointError,
    _INDEX,
    None,
    True,
  ),
  # TF: fails only when a tensor is read.
  (
    "wrong_shard_count",
    _RANKING,
    _wrong_shard_count,
    errors.CorruptCheckpointError,
    _PREFIX + ".data-00000-of-00002",
    None,
    True,
  ),
  # TF: accepted silently.
  (
    "duplicate_key",
    _RANKING,
    _duplicate_key,
    errors.CorruptCheckpointError,
    _INDEX,
    "hidden/bias",
    True,
  ),
  # TF: entries silently not found.
  (
    "unsorted_keys",
    _RANKING,
    _unsorted_keys,
    errors.CorruptCheckpointError,
    _INDEX,
    "hidden/bias",
    True,
  ),
  # Slices that leave elements uncovered are no damage: TensorFlow 1 writes
  # the optimizer slots of one partition that way (reader_test's
  # test_partition_slots_as_tensorflow_writes_them), so that case is there.
  (
    "slice_entry_missing",
    _RANKING,
    _slice_entry_missing,
    errors.CorruptCheckpointError,
    _INDEX,
    "user_embedding",
    True,
  ),
  # TF: DataLoss on read (or silently wrong values if bytes happen to fit).
  (
    "index_and_data_from_different_saves",
    "est-tf1",
    _different_saves,
    errors.CorruptCheckpointError,
    "model.ckpt-0.data-00000-of-00001",
    "global_step",
    False,
  ),
  # TF: a warning; latest_checkpoint is None; training restarts at step 0.
  (
    "garbage_state_file",
    _RANKING,
    _garbage_state_file,
    errors.CorruptCheckpointError,
    "checkpoint",
    None,
    True,
  ),
)


class FaultsTest(parameterized.TestCase):
  def _damaged(self, golden, damage):
    model_dir = tool_fixtures.copy_golden(
      golden, self.create_tempdir().full_path
    )
    damage(model_dir)
    return model_dir

  def _assert_names(self, error, filename, key):
    message = str(error)
    self.assertIn(filename, message)
    if key is not None:
      self.assertIn(f"`{key}", message)
    self.assertRegex(message, "restore|Restore|Fix|Copy|backup|pass")

  @parameterized.named_parameters(*_CASES)
  def test_verify(self, golden, damage, error, filename, key, _):
    model_dir = self._damaged(golden, damage)
    with self.assertRaises(error) as raised:
      estimator_ckpt.verify(model_dir)
    self.assertIsInstance(raised.exception, errors.Error)
    self._assert_names(raised.exception, filename, key)

  @parameterized.named_parameters(*_CASES)
  def test_convert_writes_nothing(
    self, golden, damage, error, filename, key, _
  ):
    model_dir = self._damaged(golden, damage)
    before = tool_fixtures.tree_digest(model_dir)
    dst = os.path.join(self.create_tempdir().full_path, "converted")
    for link in (False, True):
      if link and damage in (_flip_data_byte, _different_saves):
        continue  # Linked bytes are not read (documented); verify checks.
      with self.assertRaises(error) as raised:
        estimator_ckpt.convert(model_dir, dst, to="tf2", link=link)
      self._assert_names(raised.exception, filename, key)
      self.assertEqual(os.listdir(os.path.dirname(dst)), [])
    self.assertEqual(tool_fixtures.tree_digest(model_dir), before)

  @parameterized.named_parameters(*_CASES)
  def test_list_and_load(
    self, golden, damage, error, filename, key, index_shows_it
  ):
    model_dir = self._damaged(golden, damage)
    if index_shows_it:
      with self.assertRaises(error) as raised:
        estimator_ckpt.list_variables(model_dir)
      self._assert_names(raised.exception, filename, key)
    else:
      estimator_ckpt.list_variables(model_dir)  # Reads only the index.
    if key is not None:
      with self.assertRaises(error) as raised:
        estimator_ckpt.load_variable(model_dir, key)
      self._assert_names(raised.exception, filename, key)


if __name__ == "__main__":
  absltest.main()
