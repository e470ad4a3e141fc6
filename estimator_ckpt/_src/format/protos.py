"""TensorFlow's checkpoint protos, usable without importing TensorFlow.

Not public API. Importing any `tensorflow.*` module runs
`tensorflow/__init__.py`, which costs seconds and hundreds of MB, so the
checkpoint tools (inspect, convert, verify) carry wire-compatible copies of the
few messages they read and write:

  tensorflow/core/protobuf/tensor_bundle.proto           BundleHeaderProto,
                                                         BundleEntryProto
  tensorflow/core/framework/tensor_shape.proto           TensorShapeProto
  tensorflow/core/framework/tensor_slice.proto           TensorSliceProto
  tensorflow/core/framework/versions.proto               VersionDef
  tensorflow/core/protobuf/trackable_object_graph.proto  TrackableObjectGraph
  tensorflow/python/training/checkpoint_state.proto      CheckpointState

They live in a private descriptor pool, so they never clash with TensorFlow's
own classes when both are loaded; exchange messages with TensorFlow code as
bytes (`SerializeToString` / `FromString`). Enum fields (`dtype`,
`endianness`) are declared `int32`, which has the same wire encoding; see
`bundle.DTYPES` for the values. `tests/protos_test.py` checks every field
against TensorFlow's descriptors, so a change in TensorFlow fails a test.
"""

from typing import Sequence, Tuple

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import wrappers_pb2

_FieldSpec = Tuple[str, int, str]  # (name, number, type or .message.Name)

_OPTIONAL = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
_REPEATED = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
_SCALAR_TYPES = {
  "int32": descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
  "int64": descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
  "fixed32": descriptor_pb2.FieldDescriptorProto.TYPE_FIXED32,
  "double": descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
  "bool": descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
  "string": descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
}


def _message(
  parent,
  name: str,
  fields: Sequence[_FieldSpec],
  oneofs: Sequence[Tuple[str, str]] = (),
):
  """Adds message `name` to `parent` (a file or message descriptor proto).

  Args:
    parent: Where to add the message.
    name: Its short name.
    fields: `(name, number, type)`; a type starting with `.` is a message
      type's full name; `repeated ` before the type makes the field repeated.
    oneofs: `(oneof name, field name)`: the field is the oneof's only member
      (how proto3 spells "has_length").

  Returns:
    The new `DescriptorProto`, to add nested messages to.
  """
  message = (
    parent.message_type.add()
    if hasattr(parent, "message_type")
    else parent.nested_type.add()
  )
  message.name = name
  oneof_of_field = {}
  for oneof_name, field_name in oneofs:
    oneof_of_field[field_name] = len(message.oneof_decl)
    message.oneof_decl.add(name=oneof_name)
  for field_name, number, spec in fields:
    field = message.field.add(name=field_name, number=number)
    field.label = _OPTIONAL
    type_name = spec
    if type_name.startswith("repeated "):
      field.label = _REPEATED
      type_name = type_name[len("repeated ") :]
    if type_name.startswith("."):
      field.type = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
      field.type_name = type_name
    else:
      field.type = _SCALAR_TYPES[type_name]
    if field_name in oneof_of_field:
      field.oneof_index = oneof_of_field[field_name]
  return message


def _checkpoint_file() -> descriptor_pb2.FileDescriptorProto:
  """All mirrored messages in one file of package `tensorflow`."""
  f = descriptor_pb2.FileDescriptorProto(
    name="estimator_ckpt/tensorflow_checkpoint_mirror.proto",
    package="tensorflow",
    syntax="proto3",
    dependency=["google/protobuf/wrappers.proto"],
  )
  shape = _message(
    f,
    "TensorShapeProto",
    [
      ("dim", 2, "repeated .tensorflow.TensorShapeProto.Dim"),
      ("unknown_rank", 3, "bool"),
    ],
  )
  _message(shape, "Dim", [("size", 1, "int64"), ("name", 2, "string")])
  tensor_slice = _message(
    f,
    "TensorSliceProto",
    [
      ("extent", 1, "repeated .tensorflow.TensorSliceProto.Extent"),
    ],
  )
  _message(
    tensor_slice,
    "Extent",
    [("start", 1, "int64"), ("length", 2, "int64")],
    oneofs=[("has_length", "length")],
  )
  _message(
    f,
    "VersionDef",
    [
      ("producer", 1, "int32"),
      ("min_consumer", 2, "int32"),
      ("bad_consumers", 3, "repeated int32"),
    ],
  )
  _message(
    f,
    "BundleHeaderProto",
    [
      ("num_shards", 1, "int32"),
      ("endianness", 2, "int32"),  # Enum Endianness: LITTLE = 0, BIG = 1.
      ("version", 3, ".tensorflow.VersionDef"),
    ],
  )
  _message(
    f,
    "BundleEntryProto",
    [
      ("dtype", 1, "int32"),  # Enum DataType.
      ("shape", 2, ".tensorflow.TensorShapeProto"),
      ("shard_id", 3, "int32"),
      ("offset", 4, "int64"),
      ("size", 5, "int64"),
      ("crc32c", 6, "fixed32"),
      ("slices", 7, "repeated .tensorflow.TensorSliceProto"),
    ],
  )
  graph = _message(
    f,
    "TrackableObjectGraph",
    [
      ("nodes", 1, "repeated .tensorflow.TrackableObjectGraph.TrackableObject"),
    ],
  )
  node_type = ".tensorflow.TrackableObjectGraph.TrackableObject"
  node = _message(
    graph,
    "TrackableObject",
    [
      ("children", 1, f"repeated {node_type}.ObjectReference"),
      ("attributes", 2, f"repeated {node_type}.SerializedTensor"),
      ("slot_variables", 3, f"repeated {node_type}.SlotVariableReference"),
      ("registered_saver", 4, ".tensorflow.RegisteredSaver"),
      ("has_checkpoint_values", 5, ".google.protobuf.BoolValue"),
    ],
  )
  _message(
    node,
    "ObjectReference",
    [("node_id", 1, "int32"), ("local_name", 2, "string")],
  )
  _message(
    node,
    "SerializedTensor",
    [
      ("name", 1, "string"),
      ("full_name", 2, "string"),
      ("checkpoint_key", 3, "string"),
    ],
  )
  _message(
    node,
    "SlotVariableReference",
    [
      ("original_variable_node_id", 1, "int32"),
      ("slot_name", 2, "string"),
      ("slot_variable_node_id", 3, "int32"),
    ],
  )
  _message(
    f, "RegisteredSaver", [("name", 1, "string"), ("object_name", 2, "string")]
  )
  _message(
    f,
    "CheckpointState",
    [
      ("model_checkpoint_path", 1, "string"),
      ("all_model_checkpoint_paths", 2, "repeated string"),
      ("all_model_checkpoint_timestamps", 3, "repeated double"),
      ("last_preserved_timestamp", 4, "double"),
    ],
  )
  return f


def _build_pool() -> descriptor_pool.DescriptorPool:
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  pool.Add(_checkpoint_file())
  return pool


POOL = _build_pool()


def _class(full_name: str):
  return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


TensorShapeProto = _class("tensorflow.TensorShapeProto")
TensorSliceProto = _class("tensorflow.TensorSliceProto")
VersionDef = _class("tensorflow.VersionDef")
BundleHeaderProto = _class("tensorflow.BundleHeaderProto")
BundleEntryProto = _class("tensorflow.BundleEntryProto")
TrackableObjectGraph = _class("tensorflow.TrackableObjectGraph")
CheckpointState = _class("tensorflow.CheckpointState")

# The mirrored messages, by full name, for tests and tools.
MESSAGES = {
  cls.DESCRIPTOR.full_name: cls
  for cls in (
    TensorShapeProto,
    TensorSliceProto,
    VersionDef,
    BundleHeaderProto,
    BundleEntryProto,
    TrackableObjectGraph,
    CheckpointState,
  )
}

# BundleHeaderProto.Endianness.
LITTLE_ENDIAN = 0
BIG_ENDIAN = 1
