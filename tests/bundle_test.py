"""bundle.py against files TensorFlow itself writes."""

import mmap
import os
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import google_crc32c
import numpy as np
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import checksums
from estimator_ckpt._src.format import crc32c
from estimator_ckpt._src.format import table
from estimator_ckpt._src.format import tensor_slice
from estimator_ckpt._src.format import values

from tests import tool_fixtures
from tests import tool_tf_fixtures


def _index_bytes(prefix: str) -> bytes:
  with open(bundle.index_filename(prefix), "rb") as f:
    return f.read()


class BundleTest(parameterized.TestCase, tf.test.TestCase):
  @parameterized.parameters(*tool_fixtures.GOLDENS)
  def test_reencodes_golden_index_byte_for_byte(self, name):
    path = tool_fixtures.golden_path(name)
    if os.path.isdir(path):
      path = tf.train.latest_checkpoint(path)
    checkpoint = bundle.read(path)
    self.assertEqual(
      bundle.encode_index(checkpoint.header, checkpoint.entries.items()),
      _index_bytes(path),
    )

  def test_reencodes_multi_block_index_byte_for_byte(self):
    # Over 256 KiB of entries: several data blocks and separators, and a key
    # of over two blocks, which flushes the block before it.
    prefix = os.path.join(self.get_temp_dir(), "many")
    tensors = {
      f"scope_{i // 100}/layer_{i}/"
      + "w" * (i % 50)
      + "/a_long_descriptive_variable_name": tf.constant(float(i))
      for i in range(6000)
    }
    tensors["scope_3/" + "x" * (2 * 262144 + 10)] = tf.constant(1.0)
    shape = [2**20, 1]
    parts = [(f"{i * 2**18},{2**18}:-", tf.zeros([2**18, 1])) for i in range(4)]
    huge_slices = {
      "h" * 20: (
        [64, 1],
        [(f"{i},1:-", tf.zeros([1, 1])) for i in range(0, 64, 2)]
        + [(f"{i},1:-", tf.ones([1, 1])) for i in range(1, 64, 2)],
      )
    }
    tool_tf_fixtures.save_v2(
      prefix, tensors, {"big": (shape, parts), **huge_slices}
    )
    checkpoint = bundle.read(prefix)
    data = _index_bytes(prefix)
    self.assertGreater(len(data), 2 * 262144)
    self.assertEqual(
      bundle.encode_index(checkpoint.header, checkpoint.entries.items()), data
    )

  def test_slice_keys_match_tensorflow(self):
    prefix = os.path.join(self.get_temp_dir(), "sliced")
    rows = 100003
    tool_tf_fixtures.save_v2(
      prefix,
      {},
      {
        "table/with/scope": (
          [rows, 2],
          [
            ("0,33334:-", tf.zeros([33334, 2])),
            ("33334,33334:-", tf.zeros([33334, 2])),
            ("66668,33335:0,2", tf.zeros([33335, 2])),
          ],
        ),
        # OrderedCode escapes 0x00 and 0xff inside names.
        b"name\xff\x00odd\x01": (
          [4],
          [("0,2", tf.zeros([2])), ("2,2", tf.zeros([2]))],
        ),
      },
    )
    checkpoint = bundle.read(prefix)
    slice_keys = [k for k in checkpoint.entries if tensor_slice.is_slice_key(k)]
    self.assertLen(slice_keys, 5)
    for key in slice_keys:
      name, part_slice = tensor_slice.parse_slice_key(key)
      self.assertEqual(tensor_slice.slice_key(name, part_slice), key)
    for key in checkpoint.tensor_keys():
      self.assertCountEqual(
        [k for _, k in checkpoint.slices(key)],
        [k for k in slice_keys if tensor_slice.parse_slice_key(k)[0] == key],
      )

  def test_signed_numbers_round_trip_in_order(self):
    values = sorted(
      {
        sign * (2**k + delta)
        for k in range(63)
        for delta in (-1, 0, 1)
        for sign in (1, -1)
      }
      | {0, -(2**63), 2**63 - 1}
    )
    encoded = [tensor_slice._write_signed_num_increasing(v) for v in values]  # pylint: disable=protected-access
    self.assertEqual(encoded, sorted(encoded))
    for value, code in zip(values, encoded):
      self.assertEqual(
        tensor_slice._read_signed_num_increasing(code, 0),  # pylint: disable=protected-access
        (value, len(code)),
      )

  def test_every_dtype_decodes_bit_exactly(self):
    prefix = os.path.join(self.get_temp_dir(), "dtypes")
    tool_tf_fixtures.save_v2(prefix, tool_tf_fixtures.every_dtype_tensors())
    expected = tool_tf_fixtures.tensorflow_values(prefix)
    checkpoint = bundle.read(prefix)
    self.assertLen(checkpoint.entries, len(expected))
    for key, entry in checkpoint.entries.items():
      value = values.decode_value(
        entry, values.read_entry_bytes(checkpoint, key, entry)
      )
      tool_tf_fixtures.assert_bit_equal(
        self, expected[key.decode()], value, key.decode()
      )
      self.assertEqual(
        bundle.dtype_of(entry).name, tf.as_dtype(entry.dtype).name
      )

  def test_encode_strings_matches_tensorflow(self):
    strings = [b"", b"a" * 300, b"\x00\xff", "\u00e9".encode()]
    prefix = tool_tf_fixtures.save_v2(
      os.path.join(self.get_temp_dir(), "strings"), {"s": tf.constant(strings)}
    )
    checkpoint = bundle.read(prefix)
    entry = checkpoint.entries[b"s"]
    data, crc = values.encode_strings(strings)
    self.assertEqual(crc, entry.crc32c)
    self.assertEqual(data, values.read_entry_bytes(checkpoint, b"s", entry))

  def test_check_ranges_finds_flipped_byte_by_key(self):
    prefix = tool_tf_fixtures.save_v2(
      os.path.join(self.get_temp_dir(), "flip"),
      {
        "a": tf.zeros([1000]),
        "b": tf.constant(["x" * 100] * 3),
        "c": tf.ones([10]),
      },
    )
    checkpoint = bundle.read(prefix)
    string_entry = checkpoint.entries[b"b"]
    tool_fixtures.flip_byte(checkpoint.data_path(0), string_entry.offset + 50)
    problems = checksums.check_ranges(
      checkpoint, 0, checksums.data_ranges(checkpoint, 0)
    )
    self.assertLen(problems, 1)
    self.assertIn("`b`", problems[0])
    self.assertIn(checkpoint.data_path(0), problems[0])
    with self.assertRaisesRegex(errors.CorruptCheckpointError, "checksum"):
      values.read_entry_bytes(checkpoint, b"b", string_entry)

  def test_crc32c_of_any_buffer(self):
    data = bytes(range(256)) * 1000
    expected = google_crc32c.value(data)
    in_map = mmap.mmap(-1, len(data))
    in_map[:] = data
    buffers = [
      data,
      bytearray(data),
      memoryview(data),
      memoryview(in_map),
      memoryview(in_map)[: len(data)],
      np.frombuffer(data, np.uint8),
    ]
    # The fast path (no copy of writable buffers) is available here.
    self.assertIsNotNone(crc32c._NATIVE_CRC32C_EXTEND)  # pylint: disable=protected-access
    for native in (crc32c._NATIVE_CRC32C_EXTEND, None):  # pylint: disable=protected-access
      with mock.patch.object(crc32c, "_NATIVE_CRC32C_EXTEND", native):
        for buffer in buffers:
          self.assertEqual(crc32c.crc32c(buffer), expected, type(buffer))
        self.assertEqual(
          crc32c.crc32c(memoryview(in_map)[1000:], crc32c.crc32c(data[:1000])),
          expected,
        )
        self.assertEqual(crc32c.crc32c(bytearray(), 1234), 1234)

  @parameterized.parameters(1, 3, 7, 64, 4096, None)
  def test_stream_checker_agrees_with_check_ranges(self, piece):
    prefix = tool_tf_fixtures.save_v2(
      os.path.join(self.get_temp_dir(), f"stream{piece}"),
      {
        **tool_tf_fixtures.every_dtype_tensors(),
        "strings": tf.constant(["x" * 100, "", "yz"] * 3),
      },
    )
    checkpoint = bundle.read(prefix)
    ranges = checksums.data_ranges(checkpoint, 0)

    def streamed(fed_bytes=None):
      with open(checkpoint.data_path(0), "rb") as f:
        data = f.read()
      data = data[:fed_bytes]
      checker = checksums.StreamChecker(checkpoint, ranges)
      step = piece or len(data) or 1
      for offset in range(0, len(data), step):
        checker.update(
          offset, memoryview(bytearray(data[offset : offset + step]))
        )
      return checker.finish()

    self.assertEqual(streamed(), [])
    # Bytes stop short of the last range: it is reported as truncated.
    last = ranges[-1]
    truncated = streamed(last.offset + last.size - 1)
    self.assertLen(truncated, 1)
    self.assertIn(f"read {last.size - 1} of {last.size} bytes", truncated[0])
    strings = checkpoint.entries[b"strings"]
    tool_fixtures.flip_byte(checkpoint.data_path(0), strings.offset + 1)
    tool_fixtures.flip_byte(checkpoint.data_path(0), ranges[0].offset)
    expected = checksums.check_ranges(checkpoint, 0, ranges)
    self.assertLen(expected, 2)
    self.assertEqual(streamed(), expected)

  def test_encode_table_refuses_unsorted_keys(self):
    with self.assertRaisesRegex(ValueError, "out of order"):
      table.encode_table([(b"b", b""), (b"a", b"")])
    with self.assertRaisesRegex(ValueError, "duplicate"):
      bundle.encode_index(
        bundle.protos.BundleHeaderProto(num_shards=1),
        [
          (b"a", bundle.protos.BundleEntryProto()),
          (b"a", bundle.protos.BundleEntryProto()),
        ],
      )


if __name__ == "__main__":
  absltest.main()
