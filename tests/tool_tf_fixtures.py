"""Fixtures for the checkpoint-tool tests that run TensorFlow.

Not public API (a `testonly` library): checkpoints written by TensorFlow
itself (every dtype, partitioned variables both the TF1 way and the stock TF2
way, the guide's converted `vars/` layout), and TensorFlow's view of a
checkpoint to compare the tools against.
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


def save_v2(
  prefix: str,
  tensors: Dict[Union[str, bytes], tf.Tensor],
  slices: Optional[
    Dict[Union[str, bytes], Tuple[Sequence[int], List[Tuple[str, tf.Tensor]]]]
  ] = None,
) -> str:
  """Writes a bundle with TensorFlow's own SaveV2 op (eager).

  Args:
    prefix: Checkpoint prefix.
    tensors: Whole tensors by key (bytes for keys that are not UTF-8).
    slices: Partitioned tensors: key -> (full shape, [(slice spec such as
      `0,2:-`, slice value)]), saved as TF1 saves partitioned variables.
  """
  names, specs, values = [], [], []
  for name, value in tensors.items():
    names.append(name.encode() if isinstance(name, str) else name)
    specs.append("")
    values.append(value)
  for name, (shape, parts) in (slices or {}).items():
    for spec, value in parts:
      names.append(name.encode() if isinstance(name, str) else name)
      specs.append(" ".join(str(d) for d in shape) + " " + spec)
      values.append(value)
  tf.raw_ops.SaveV2(
    prefix=prefix,
    tensor_names=tf.constant(names),
    shape_and_slices=specs,
    tensors=values,
  )
  return prefix


def every_dtype_tensors() -> Dict[str, tf.Tensor]:
  """One tensor per dtype TensorFlow 2.15 can save, with awkward values."""
  tensors = {}
  for dtype in (
    tf.float16,
    tf.bfloat16,
    tf.float32,
    tf.float64,
    tf.int8,
    tf.int16,
    tf.int32,
    tf.int64,
    tf.uint8,
    tf.uint16,
    tf.uint32,
    tf.uint64,
    tf.bool,
    tf.complex64,
    tf.complex128,
    tf.dtypes.experimental.float8_e5m2,
    tf.dtypes.experimental.float8_e4m3fn,
  ):
    tensors[f"dtype/{dtype.name}"] = tf.cast(
      tf.reshape(tf.range(-3.0, 3.0), [2, 3]), dtype
    )
  tensors["dtype/float32_specials"] = tf.constant(
    [np.nan, -np.inf, np.inf, -0.0, 1e-45], tf.float32
  )
  tensors["dtype/qint8"] = tf.quantization.quantize(
    tf.constant([0.0, 1.0, 2.0]), 0.0, 2.0, tf.qint8
  ).output
  tensors["dtype/string"] = tf.constant(
    [[b"", b"a" * 300, "\u00e9\u4e2d".encode()], [b"\x00\xff", b"x", b""]]
  )
  tensors["dtype/string_scalar"] = tf.constant(b"scalar")
  tensors["dtype/string_empty"] = tf.constant([], tf.string)
  tensors["dtype/float32_empty"] = tf.zeros([0, 4], tf.float32)
  tensors["global_step"] = tf.constant(7, tf.int64)
  return tensors


def tensorflow_values(prefix: str) -> Dict[str, np.ndarray]:
  """Every tensor as TensorFlow's reader returns it, by raw key."""
  reader = tf.train.load_checkpoint(prefix)
  return {
    key: np.asarray(
      reader.get_tensor(key), dtype=object if dtype == tf.string else None
    )
    for key, dtype in reader.get_variable_to_dtype_map().items()
  }


def assert_bit_equal(test, expected, actual, msg: str = "") -> None:
  """Same dtype, shape and bits (NaN payloads and -0.0 included)."""
  expected = np.asarray(expected)
  actual = np.asarray(actual)
  test.assertEqual(expected.shape, actual.shape, msg)
  if expected.dtype == object or expected.dtype.kind == "S":
    test.assertEqual(actual.dtype, object, msg)
    test.assertEqual(expected.astype(object).tolist(), actual.tolist(), msg)
    return
  test.assertEqual(expected.dtype, actual.dtype, msg)
  test.assertEqual(
    np.ascontiguousarray(expected).tobytes(),
    np.ascontiguousarray(actual).tobytes(),
    msg,
  )


def partitioned_checkpoints(
  directory: str, *, num_partitions: int = 4, rows: int = 10
) -> Tuple[str, str, np.ndarray]:
  """The same partitioned variable saved the TF1 way and the stock TF2 way.

  Returns:
    (TF1 `Saver` prefix, prefix of the guide's stock `tf.train.Checkpoint(
    var_list={v.name: v for v in global_variables()})`, the full value of
    `emb`).
  """
  with tf.Graph().as_default():
    step = tf1.train.get_or_create_global_step()
    emb = tf1.get_variable(
      "emb",
      shape=[rows, 3],
      initializer=tf1.random_normal_initializer(seed=1),
      partitioner=tf1.fixed_size_partitioner(num_partitions),
    )
    tf1.get_variable("dense/kernel", shape=[3, 2])
    ckpt = tf.train.Checkpoint(
      var_list={v.name.split(":")[0]: v for v in tf1.global_variables()}
    )
    with tf1.Session() as sess:
      sess.run(tf1.global_variables_initializer())
      sess.run(step.assign(5))
      tf1_prefix = tf1.train.Saver().save(
        sess,
        os.path.join(directory, "tf1", "model.ckpt"),
        global_step=step,
        write_meta_graph=False,
      )
      tf2_prefix = ckpt.write(os.path.join(directory, "tf2", "model.ckpt-5"))
      value = sess.run(emb.as_tensor())
  return tf1_prefix, tf2_prefix, value


def scaffold_layout_checkpoint(prefix: str) -> str:
  """A checkpoint in the Scaffold factory's layout, written by SaveV2.

  As `estimator_ckpt/scaffolding.py` saves it: `var_list/<escaped name>/...`, a
  partitioned variable as slices under one key, `step/...`, the object graph
  of `keys.object_graph`, and the `global_step` alias as a second copy of the
  step's value (not shared bytes, unlike converted checkpoints).
  """
  from estimator_ckpt import keys  # pylint: disable=g-import-not-at-top

  names = ["dense/kernel", "emb", "emb/Adam"]
  graph = keys.object_graph(names)
  step = tf.constant(42, tf.int64)
  emb = tf.reshape(tf.range(12.0), [6, 2])
  return save_v2(
    prefix,
    {
      keys.OBJECT_GRAPH_KEY: tf.constant(graph.SerializeToString()),
      keys.STEP_KEY: step,
      keys.GLOBAL_STEP_NAME: step,
      keys.variable_key("dense/kernel"): tf.ones([2, 3]),
      keys.variable_key("emb/Adam"): emb * 2,
    },
    {
      keys.variable_key("emb"): (
        [6, 2],
        [("0,3:-", emb[:3]), ("3,3:-", emb[3:])],
      ),
    },
  )
