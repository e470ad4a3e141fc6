"""Text and JSON for the checkpoint tools: what the binaries print.

The inspect binary's description (table or JSON), the convert binary's plan,
and the guide scenario's raw-key table. Every table goes through one column
aligner.
"""

import json
import os
from typing import Any, List, Sequence

import numpy as np

from estimator_ckpt._src import conversion_plan
from estimator_ckpt._src import describe
from estimator_ckpt._src import progress
from estimator_ckpt._src import reader
from estimator_ckpt._src.format import keys

_ML_DTYPES = ("bfloat16", "float8_e5m2", "float8_e4m3fn", "int4", "uint4")


def _value_text(value: np.ndarray) -> str:
  """A value on one line; strings over 32 bytes as `<N bytes>`."""
  formatter: Any = None
  if value.dtype == object:
    value = (
      np.vectorize(
        lambda b: repr(b) if len(b) <= 32 else f"<{len(b)} bytes>",
        otypes=[object],
      )(value)
      if value.size
      else value
    )
    formatter = {"all": str}
  return np.array2string(
    value,
    threshold=describe.MAX_VALUE_ELEMENTS,
    precision=6,
    separator=", ",
    formatter=formatter,
  ).replace("\n", "")


def _json_value(value: np.ndarray) -> Any:
  """A value as JSON-ready lists: strings decoded, complex as [re, im]."""
  if value.dtype == object:
    return (
      np.vectorize(
        lambda b: b.decode("utf-8", "backslashreplace"), otypes=[object]
      )(value).tolist()
      if value.size
      else []
    )
  if value.dtype.kind == "c":
    return np.stack([value.real, value.imag], axis=-1).tolist()
  if value.dtype.name in _ML_DTYPES:
    # ml_dtypes types (bfloat16, float8, int4) have no JSON form of their own.
    return value.astype(
      np.int64 if "int" in value.dtype.name else np.float64
    ).tolist()
  return value.tolist()


def _aligned(rows: Sequence[Sequence[str]]) -> List[str]:
  """Left-aligned columns with a rule under the header; last column free."""
  widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
  lines = []
  for i, row in enumerate(rows):
    cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths)]
    lines.append("  ".join(cells + [row[-1]]).rstrip())
    if i == 0:
      lines.append("  ".join("-" * max(width, 3) for width in widths).rstrip())
  return lines


def format_description(description: describe.Description) -> str:
  """A readable summary and one row per variable."""
  contents = description.contents
  variables = contents.variables
  partitioned = sum(v.partitioned for v in variables.values())
  kind = "object-based" if contents.format == reader.TF2 else "name-based"
  shards = contents.bundle.num_shards
  lines = [
    f"checkpoint  {contents.prefix}",
    f"format      {contents.format} ({kind})",
    f"variables   {len(variables)} ({partitioned} partitioned), "
    f"{shards} data shard{'s' if shards != 1 else ''}, "
    f"{progress.size_text(description.total_bytes)}",
    "",
  ]
  header = ["name", "shape", "dtype", "parts"]
  if contents.format == reader.TF2:
    header.append("key")
  if description.values:
    header.append("value")
  rows = [header]
  for name, variable in variables.items():
    row = [
      name,
      str(list(variable.shape)),
      variable.dtype.name,
      str(len(variable.parts)) if variable.partitioned else "",
    ]
    if contents.format == reader.TF2:
      more = len(variable.keys) - 1
      row.append(variable.keys[0] + (f" (+{more} more)" if more else ""))
    if description.values:
      value = description.values.get(name)
      row.append("" if value is None else _value_text(value))
    rows.append(row)
  lines += _aligned(rows)
  return "\n".join(lines)


def to_json(description: describe.Description) -> str:
  """The description as JSON (one object; `variables` sorted by name)."""
  contents = description.contents
  variables = []
  for name, variable in contents.variables.items():
    item = {
      "name": name,
      "shape": list(variable.shape),
      "dtype": variable.dtype.name,
      "keys": list(variable.keys),
      "bytes": variable.nbytes,
    }
    if variable.partitioned:
      slices = [part.slice for part in variable.parts if part.slice]
      item["partitions"] = [
        {
          "offset": [start for start, _ in part.bounds(variable.shape)],
          "shape": list(part.shape(variable.shape)),
        }
        for part in slices
      ]
    if name in description.values:
      item["value"] = _json_value(description.values[name])
    variables.append(item)
  head = json.dumps(
    {
      "checkpoint": contents.prefix,
      "format": contents.format,
      "num_shards": contents.bundle.num_shards,
      "bytes": description.total_bytes,
    }
  )
  # One variable per line: readable, and still one JSON document.
  body = ",\n".join("  " + json.dumps(item) for item in variables)
  return f'{head[:-1]}, "variables": [\n{body}\n]}}'


def format_table(rows: Sequence[describe.TensorRow]) -> str:
  """Formats raw-key rows as an aligned text table."""
  cells = [("key", "shape", "dtype", "value")] + [
    (
      row.key,
      str(list(row.shape)),
      row.dtype,
      "" if row.value is None else _value_text(row.value),
    )
    for row in rows
  ]
  return "\n".join(_aligned(cells))


def format_plan(p: conversion_plan.Plan, dst_dir: str) -> str:
  """A plan as text: a summary line and one row per variable."""
  source = p.source
  lines = [
    f"{source.prefix} ({source.format}) -> "
    f"{os.path.join(dst_dir, p.basename)} ({p.to}): {len(p.mappings)} "
    f"variables, {p.num_shards} data file{'s' if p.num_shards > 1 else ''}"
    f", {progress.size_text(p.copy_bytes)} of data",
    "",
  ]
  rows = [["source name", "source key", "destination key"]]
  for m in p.mappings:
    key = m.key
    if p.to == reader.TF2 and m.name == keys.GLOBAL_STEP_NAME:
      key += f" (and alias {keys.GLOBAL_STEP_NAME})"
    rows.append([m.source_name, ", ".join(m.source_keys), key])
  if source.format == reader.TF1:
    rows = [[row[0], row[2]] for row in rows]
  lines += _aligned(rows)
  return "\n".join(lines)
