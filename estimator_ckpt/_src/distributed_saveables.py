"""Distributed variables (of a `tf.distribute` strategy) as saveables.

A TF1 `Saver` saves a `MirroredVariable` or a `SyncOnReadVariable` through
the saveable its strategy gives it (`_gather_saveables_for_checkpoint`, made
by `saveable_object_util.op_list_to_dict` under the variable's own name);
the same factory makes it under a TF2 key. An on-read variable's saveable
reads it through a callable (`values_util.get_on_read_saveable`), so every op
built from it, the save op and the async snapshot alike, would add its own
cross-replica read: under `MultiWorkerMirroredStrategy` an all-reduce that
every worker must run. The chief takes the async snapshot while the other
workers run the save op (`monitored_session` saves on every worker, into a
temporary dir on those that are not the chief), so with two reads of their
own the workers wait for each other forever. Here each variable is read once,
when the saver is built, and every saveable made of it shares that read.
"""

from typing import Any, Dict, List, Tuple

import tensorflow as tf
from tensorflow.python.distribute import distribute_utils
from tensorflow.python.trackable import base as trackable
from tensorflow.python.training.saving import saveable_object
from tensorflow.python.training.saving import saveable_object_util


def is_distributed(value: Any) -> bool:
  """Whether `value` is a distributed variable (`MirroredVariable`, ...)."""
  return distribute_utils.is_distributed_variable(value)


def is_on_read(value: Any) -> bool:
  """Whether `value` is an on-read variable (`SyncOnReadVariable`)."""
  # is_sync_on_read alone is `not is_mirrored`: true of a plain variable.
  return is_distributed(value) and distribute_utils.is_sync_on_read(value)


class _ReadOnce(saveable_object.SaveableObject):
  """A distributed variable's saveable, its values read once (see module)."""

  def __init__(
    self,
    saveable: saveable_object.SaveableObject,
    tensors: List[Any],
  ):
    specs = [
      saveable_object.SaveSpec(
        tensor,
        spec.slice_spec,
        spec.name,
        dtype=spec.dtype,
        device=spec.device,
      )
      for spec, tensor in zip(saveable.specs, tensors)
    ]
    super().__init__(saveable.op, specs, saveable.name)
    self._saveable = saveable

  def restore(self, restored_tensors, restored_shapes):
    return self._saveable.restore(restored_tensors, restored_shapes)


class Reads:
  """Each distributed variable read once, shared by its saveables."""

  def __init__(self):
    self._tensors: Dict[Tuple[int, int], Any] = {}
    self._variables: List[Any] = []  # Keeps the ids above unique.

  def saveable(
    self, variable: Any, name: str
  ) -> saveable_object.SaveableObject:
    """The saveable of distributed `variable` under `name`."""
    saveable = variable._gather_saveables_for_checkpoint()[  # pylint: disable=protected-access
      trackable.VARIABLE_VALUE_KEY
    ](name=name)
    tensors = []
    for i, spec in enumerate(saveable.specs):
      key = (id(variable), i)
      if key not in self._tensors:
        # On the device a TF1 Saver builds it on (saver.py's sharded save).
        with tf.device(saveable_object_util.set_cpu0(spec.device)):
          self._tensors[key] = spec.tensor  # Builds the read.
        self._variables.append(variable)
      tensors.append(self._tensors[key])
    return _ReadOnce(saveable, tensors)

  def saveables(self, values: Dict[str, Any]) -> Dict[str, Any]:
    """`values`, each distributed variable as its saveable under its name."""
    return {
      name: self.saveable(value, name) if is_distributed(value) else value
      for name, value in values.items()
    }
