"""Lookup tables in TF2 checkpoints: their saveables under object-graph keys.

A graph-mode `MutableHashTable` or `DenseHashTable` is saved through a
`SaveableObject` (its `_Saveable`, tensorflow/python/ops/lookup_ops.py) whose
two save specs are named `<table>-keys` and `<table>-values`. A TF1 Saver
stores them under those names. `tf.train.Checkpoint(var_list={name: table})`
makes the table a node of the object graph with one attribute, `table` (the
class's `legacy_saveable_name`), and stores the same tensors under
`var_list/<escaped name>/.ATTRIBUTES/table-keys` and `...-values`
(`keys.tensor_key`).

`tf2_keyed` re-keys such a saveable for the `Tf2Saver`, so its checkpoints
have the table as a graph node that a TF2 `Checkpoint` tracking the table
restores (and `assert_existing_objects_matched` accepts); its TF1 names stay
readable as index aliases (`tf1_names`), and TF1 checkpoints restore by them.
Other saveables (no `table` attribute, or specs named otherwise) keep their
TF1 names as keys, next to the object graph, as before.
"""

from typing import Dict, Optional

from tensorflow.python.checkpoint import saveable_compat
from tensorflow.python.training.saving import saveable_object

from estimator_ckpt._src.format import keys


class Tf2KeyedSaveable(saveable_object.SaveableObject):
  """A table's saveable whose tensors are saved under their TF2 keys.

  Attributes:
    tf1_names: TF2 key -> the TF1 name of the same tensor.
    original: The table's own saveable, which restores the table.
  """

  def __init__(self, saveable: saveable_object.SaveableObject):
    self.original = saveable
    self.tf1_names: Dict[str, str] = {}
    specs = []
    for spec in saveable.specs:
      key = keys.tensor_key(spec.name, (saveable.name,))
      self.tf1_names[key] = spec.name
      specs.append(
        saveable_object.SaveSpec(
          spec._tensor,  # pylint: disable=protected-access
          spec.slice_spec,
          key,
          dtype=spec.dtype,
          device=spec.device,
        )
      )
    super().__init__(saveable.op, specs, saveable.name)

  def restore(self, restored_tensors, restored_shapes):
    return self.original.restore(restored_tensors, restored_shapes)


def tf2_keyed(
  saveable: saveable_object.SaveableObject,
) -> Optional[Tf2KeyedSaveable]:
  """The saveable under TF2 keys if it is a lookup table's, else None."""
  attribute = saveable_compat.get_saveable_name(saveable.op)
  spec_names = sorted(spec.name for spec in saveable.specs)
  expected = sorted(saveable.name + suffix for suffix in keys.TABLE_SUFFIXES)
  if attribute != keys.TABLE_ATTRIBUTE or spec_names != expected:
    return None
  return Tf2KeyedSaveable(saveable)
