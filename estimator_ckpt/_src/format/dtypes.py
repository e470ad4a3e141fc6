"""TensorFlow data types as tensor-bundle entries store them.

`BundleEntryProto.dtype` holds a `tensorflow.DataType` enum
(`tensorflow/core/framework/types.proto`); this maps it to the element size
and the numpy type values decode to, without importing TensorFlow.
"""

import dataclasses
from typing import Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class DType:
  """A `tensorflow.DataType` as stored in entries.

  Attributes:
    enum: The `DataType` enum value stored in `BundleEntryProto.dtype`.
    name: TensorFlow's name (`tf.dtypes.as_dtype(enum).name`).
    itemsize: Bytes per element; 0 for variable-length (string, variant).
    numpy_name: The numpy (or ml_dtypes) type `load_variable` returns.
  """

  enum: int
  name: str
  itemsize: int
  numpy_name: str

  @property
  def variable_length(self) -> bool:
    return self.itemsize == 0

  def numpy_dtype(self) -> np.dtype:
    if self.numpy_name in (
      "bfloat16",
      "float8_e5m2",
      "float8_e4m3fn",
      "int4",
      "uint4",
    ):
      import ml_dtypes  # pylint: disable=g-import-not-at-top

      return np.dtype(getattr(ml_dtypes, self.numpy_name))
    return np.dtype(self.numpy_name)


# tensorflow/core/framework/types.proto; quantized types read as their storage
# type, as `tf.train.load_checkpoint(...).get_tensor` returns them.
DTYPES: Mapping[int, DType] = {
  d.enum: d
  for d in (
    DType(1, "float32", 4, "float32"),
    DType(2, "float64", 8, "float64"),
    DType(3, "int32", 4, "int32"),
    DType(4, "uint8", 1, "uint8"),
    DType(5, "int16", 2, "int16"),
    DType(6, "int8", 1, "int8"),
    DType(7, "string", 0, "object"),
    DType(8, "complex64", 8, "complex64"),
    DType(9, "int64", 8, "int64"),
    DType(10, "bool", 1, "bool"),
    DType(11, "qint8", 1, "int8"),
    DType(12, "quint8", 1, "uint8"),
    DType(13, "qint32", 4, "int32"),
    DType(14, "bfloat16", 2, "bfloat16"),
    DType(15, "qint16", 2, "int16"),
    DType(16, "quint16", 2, "uint16"),
    DType(17, "uint16", 2, "uint16"),
    DType(18, "complex128", 16, "complex128"),
    DType(19, "float16", 2, "float16"),
    DType(21, "variant", 0, "object"),
    DType(22, "uint32", 4, "uint32"),
    DType(23, "uint64", 8, "uint64"),
    DType(24, "float8_e5m2", 1, "float8_e5m2"),
    DType(25, "float8_e4m3fn", 1, "float8_e4m3fn"),
    DType(29, "int4", 1, "int4"),
    DType(30, "uint4", 1, "uint4"),
  )
}
STRING = DTYPES[7]
VARIANT = DTYPES[21]
