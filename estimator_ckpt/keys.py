"""TF1 variable names <-> TF2 object-based checkpoint keys (public module).

`estimator_ckpt.keys.variable_key("dense/kernel")` is
`var_list/dense.Skernel/.ATTRIBUTES/VARIABLE_VALUE`, the key
`tf.train.Checkpoint(var_list={name: variable}, step=global_step)` writes;
`variable_name` inverts it. A lookup table named `vocab` is stored under
`tensor_key("vocab-keys", tables={"vocab"})`, i.e.
`var_list/vocab/.ATTRIBUTES/table-keys`, and `...-values`. The
implementation and the layout's description are in
`estimator_ckpt/_src/format/keys.py`.
"""

from estimator_ckpt._src.format.keys import escape
from estimator_ckpt._src.format.keys import full_names_by_key
from estimator_ckpt._src.format.keys import GLOBAL_STEP_NAME
from estimator_ckpt._src.format.keys import GUIDE_CONVERTED_VAR_LIST
from estimator_ckpt._src.format.keys import object_graph
from estimator_ckpt._src.format.keys import OBJECT_GRAPH_KEY
from estimator_ckpt._src.format.keys import SAVE_COUNTER
from estimator_ckpt._src.format.keys import SAVE_COUNTER_KEY
from estimator_ckpt._src.format.keys import save_name
from estimator_ckpt._src.format.keys import STEP
from estimator_ckpt._src.format.keys import STEP_KEY
from estimator_ckpt._src.format.keys import TABLE_ATTRIBUTE
from estimator_ckpt._src.format.keys import table_attribute_key
from estimator_ckpt._src.format.keys import TABLE_SUFFIXES
from estimator_ckpt._src.format.keys import tensor_key
from estimator_ckpt._src.format.keys import tensor_name
from estimator_ckpt._src.format.keys import unescape
from estimator_ckpt._src.format.keys import VAR_LIST
from estimator_ckpt._src.format.keys import variable_key
from estimator_ckpt._src.format.keys import variable_name
from estimator_ckpt._src.format.keys import VARIABLE_VALUE_SUFFIX

__all__ = [
  "GLOBAL_STEP_NAME",
  "GUIDE_CONVERTED_VAR_LIST",
  "OBJECT_GRAPH_KEY",
  "SAVE_COUNTER",
  "SAVE_COUNTER_KEY",
  "STEP",
  "STEP_KEY",
  "TABLE_ATTRIBUTE",
  "TABLE_SUFFIXES",
  "VARIABLE_VALUE_SUFFIX",
  "VAR_LIST",
  "escape",
  "full_names_by_key",
  "object_graph",
  "save_name",
  "table_attribute_key",
  "tensor_key",
  "tensor_name",
  "unescape",
  "variable_key",
  "variable_name",
]
