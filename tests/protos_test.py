"""The TF-free proto copies match TensorFlow's protos field for field."""

from absl.testing import absltest
from absl.testing import parameterized
from google.protobuf import descriptor
import tensorflow as tf
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import tensor_slice_pb2
from tensorflow.core.framework import versions_pb2
from tensorflow.core.protobuf import tensor_bundle_pb2
from tensorflow.core.protobuf import trackable_object_graph_pb2
from tensorflow.python.training import checkpoint_state_pb2

from estimator_ckpt._src.format import protos

_TENSORFLOW_MESSAGES = (
  tensor_shape_pb2.TensorShapeProto,
  tensor_slice_pb2.TensorSliceProto,
  versions_pb2.VersionDef,
  tensor_bundle_pb2.BundleHeaderProto,
  tensor_bundle_pb2.BundleEntryProto,
  trackable_object_graph_pb2.TrackableObjectGraph,
  checkpoint_state_pb2.CheckpointState,
)
# Enums are declared int32 in the copies: the same wire format.
_SAME_WIRE_TYPE = {
  descriptor.FieldDescriptor.TYPE_ENUM: descriptor.FieldDescriptor.TYPE_INT32
}


def _fields(message_descriptor, prefix=""):
  """(path, number, label, type, oneof) of every field, nested included."""
  out = []
  for field in message_descriptor.fields:
    out.append(
      (
        prefix + field.name,
        field.number,
        field.label,
        _SAME_WIRE_TYPE.get(field.type, field.type),
        field.containing_oneof.name if field.containing_oneof else None,
        field.message_type.full_name if field.message_type else None,
      )
    )
  for nested in message_descriptor.nested_types:
    out += _fields(nested, f"{prefix}{nested.name}.")
  return sorted(out)


class ProtosTest(parameterized.TestCase):
  @parameterized.parameters(*_TENSORFLOW_MESSAGES)
  def test_fields_match_tensorflow(self, tensorflow_class):
    ours = protos.MESSAGES[tensorflow_class.DESCRIPTOR.full_name]
    self.assertEqual(
      _fields(ours.DESCRIPTOR), _fields(tensorflow_class.DESCRIPTOR)
    )

  def test_entry_round_trips_through_tensorflow_bytes(self):
    entry = tensor_bundle_pb2.BundleEntryProto(
      dtype=tf.bfloat16.as_datatype_enum,
      shard_id=2,
      offset=2**40,
      size=96,
      crc32c=0xFFFFFFFE,
    )
    entry.shape.dim.add(size=6)
    entry.shape.dim.add(size=8)
    piece = entry.slices.add()
    piece.extent.add(start=0, length=3)
    piece.extent.add()  # A full extent: no length (proto3 oneof).
    data = entry.SerializeToString()
    ours = protos.BundleEntryProto.FromString(data)
    self.assertTrue(ours.slices[0].extent[0].HasField("length"))
    self.assertFalse(ours.slices[0].extent[1].HasField("length"))
    self.assertEqual(ours.SerializeToString(), data)

  def test_object_graph_round_trips_through_tensorflow_bytes(self):
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    node = graph.nodes.add()
    node.children.add(node_id=1, local_name="var_list")
    node.attributes.add(
      name="VARIABLE_VALUE",
      full_name="a/b",
      checkpoint_key="var_list/a.Sb/.ATTRIBUTES/VARIABLE_VALUE",
    )
    node.has_checkpoint_values.value = True
    data = graph.SerializeToString()
    self.assertEqual(
      protos.TrackableObjectGraph.FromString(data).SerializeToString(), data
    )

  def test_importing_the_tools_does_not_import_tensorflow(self):
    # In a fresh interpreter: this process imported TensorFlow above.
    import subprocess  # pylint: disable=g-import-not-at-top
    import sys  # pylint: disable=g-import-not-at-top

    code = (
      "import sys, estimator_ckpt\n"
      "estimator_ckpt.convert, estimator_ckpt.verify, "
      "estimator_ckpt.list_variables, estimator_ckpt.keys\n"
      "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
    )
    result = subprocess.run(
      [sys.executable, "-c", code],
      capture_output=True,
      text=True,
      check=False,
      timeout=60,
      cwd=_repository_root(),
    )
    self.assertEqual(result.returncode, 0, result.stderr)


def _repository_root():
  import os  # pylint: disable=g-import-not-at-top

  return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


if __name__ == "__main__":
  absltest.main()
