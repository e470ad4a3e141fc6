"""Converting checkpoints between TF1 (name-based) and TF2 (object-based).

Public: `convert` (re-exported by `estimator_ckpt`). What is written is
planned by `conversion_plan.plan`; this module checks the destination and
writes the plan.

A converted checkpoint holds the same tensor bytes under other keys, so
conversion rewrites only the `.index` and copies the data files byte for byte
(or hard-links them with `link=True`); tensors are never loaded into memory,
let alone into `tf.Variable`s as the guide's `convert_tf1_to_tf2` does.
Memory use does not grow with the checkpoint. Copies read the source once,
verify the checksums of the bytes they write, and write with O_DIRECT where
the file system allows (`storage.transfer.copy_file`). The output's layout:
`conversion_plan`.

Writes are atomic (`atomic.write_checkpoints`): a reader sees the old
checkpoints or the new ones, never a mix, also after a kill.
"""

import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging

from estimator_ckpt import errors
from estimator_ckpt._src import atomic
from estimator_ckpt._src import conversion_plan
from estimator_ckpt._src import progress
from estimator_ckpt._src import rename_rules
from estimator_ckpt._src.format import bundle
from estimator_ckpt._src.format import checkpoint_files
from estimator_ckpt._src.format import checksums
from estimator_ckpt._src.format import state_file
from estimator_ckpt._src.storage import base
from estimator_ckpt._src.storage import registry
from estimator_ckpt._src.storage import transfer

# Destination checks -----------------------------------------------------------


def _is_within(path: str, directory: str) -> bool:
  return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _existing_outputs(
  dst_dir: str, plans: Sequence[conversion_plan.Plan]
) -> List[str]:
  names = set(checkpoint_files.listdir(dst_dir))
  existing = []
  if state_file.STATE_FILENAME in names:
    existing.append(state_file.STATE_FILENAME)
  for p in plans:
    # Data files without their index are no checkpoint (a killed writer's
    # objects on a store without rename); the commit replaces them.
    if p.basename + ".index" in names:
      existing += [
        n
        for n in names
        if n == p.basename + ".index" or n.startswith(p.basename + ".data-")
      ]
  return sorted(existing)


def _check_destination(
  src: str, dst_dir: str, plans: Sequence[conversion_plan.Plan], overwrite: bool
) -> None:
  real_dst = conversion_plan.real_path(dst_dir)
  # The source model dir too: its state file may name checkpoints elsewhere.
  source_dirs = (
    [conversion_plan.real_path(src)] if checkpoint_files.isdir(src) else []
  )
  source_dirs += [
    os.path.dirname(conversion_plan.real_path(p.source.prefix)) for p in plans
  ]
  for source_dir in source_dirs:
    if _is_within(real_dst, source_dir):
      raise errors.DestinationExistsError(
        f"dst_dir `{dst_dir}` is the source's directory `{source_dir}` or "
        "inside it. Converting in place would mix the formats in one model "
        "dir; pass a new directory outside the source."
      )
  if checkpoint_files.exists(dst_dir) and not checkpoint_files.isdir(dst_dir):
    raise errors.DestinationExistsError(
      f"dst_dir `{dst_dir}` exists and is not a directory."
    )
  existing = _existing_outputs(dst_dir, plans)
  if existing and not overwrite:
    raise errors.DestinationExistsError(
      f"dst_dir `{dst_dir}` already holds {errors.format_names(existing)}. "
      "Pass overwrite=True (--overwrite) to replace them, or a new "
      "directory."
    )


def _copy_verified(
  source: bundle.Bundle,
  shard_id: int,
  checked_keys: Sequence[bytes],
  dst: str,
  on_bytes: Callable[[int], None],
) -> None:
  """Copies a source data file, verifying the bytes it writes.

  The checksums of `checked_keys`' entries are checked on the bytes as they
  are written: a damaged source is refused.
  """
  ranges = checksums.data_ranges(source, shard_id, checked_keys)
  checkers: List[checksums.StreamChecker] = []

  def new_checker() -> base.Observer:
    checkers.append(checksums.StreamChecker(source, ranges))
    return checkers[-1].update

  transfer.copy_file(source.data_path(shard_id), dst, on_bytes, new_checker)
  problems = checkers[-1].finish()
  if problems:
    raise errors.CorruptCheckpointError(
      f"Not converting `{source.prefix}`: {len(problems)} tensors fail "
      f"their checksums. First: {problems[0]}"
    )


def _write_plan(
  p: conversion_plan.Plan,
  staging: str,
  link: bool,
  reporter: progress.Progress,
  link_state: Dict[str, bool],
) -> None:
  """Writes one output checkpoint into the staging directory."""
  source = p.source.bundle
  out_prefix = os.path.join(staging, p.basename)
  for out_id, source_id in enumerate(p.shards):
    src_path = source.data_path(source_id)
    dst_path = bundle.data_filename(out_prefix, out_id, p.num_shards)
    if link and transfer.try_link(src_path, dst_path, reporter.add, link_state):
      continue  # Linked: the source's own bytes; `verify` checks them.
    _copy_verified(
      source, source_id, p.checked_keys[source_id], dst_path, reporter.add
    )
  store = registry.for_path(staging)
  if p.extra_shard is not None:
    store.write_file(
      bundle.data_filename(out_prefix, len(p.shards), p.num_shards),
      p.extra_shard,
    )
  store.write_file(
    bundle.index_filename(out_prefix),
    bundle.encode_index(p.header, p.entries.items()),
  )


def _latest(plans: Sequence[conversion_plan.Plan]) -> conversion_plan.Plan:
  return next(p for p in plans if p.latest)


def _write(
  plans: Sequence[conversion_plan.Plan], dst_dir: str, link: bool, total: int
) -> bool:
  """Writes the planned checkpoints atomically; returns whether it linked.

  Args:
    plans: From `plan`.
    dst_dir: Absolute path of the destination (checked already).
    link: Try hard links for data files.
    total: Bytes of data files, for progress.
  """
  reporter = progress.Progress(
    f"{'Linking' if link else 'Copying'} data", total
  )
  link_state: Dict[str, bool] = {}
  # Before the destination changes: each data object fits its upload.
  store = registry.for_path(dst_dir)
  for p in plans:
    sizes = [p.source.bundle.shard_sizes[i] for i in p.shards]
    for out_id, size in enumerate(sizes):
      store.check_fits(
        bundle.data_filename(
          os.path.join(dst_dir, p.basename), out_id, p.num_shards
        ),
        size,
      )

  def write(staging: str) -> None:
    for p in plans:
      _write_plan(p, staging, link, reporter, link_state)

  atomic.write_checkpoints(
    dst_dir,
    [atomic.StagedCheckpoint(p.basename, p.num_shards) for p in plans],
    write,
    latest=_latest(plans).basename,
  )
  return link and not link_state.get("no_links")


def convert(
  src: str,
  dst_dir: str,
  *,
  to: str,
  rename: Optional[rename_rules.RenameArg] = None,
  link: bool = False,
  all_checkpoints: bool = False,
  overwrite: bool = False,
  dry_run: bool = False,
  tf1_names: bool = True,
  adam_betas: Optional[Tuple[float, float]] = None,
) -> str:
  """Converts a checkpoint to TF2 (object-based) or TF1 (name-based).

  Estimator resumes from `dst_dir`: it gets a `checkpoint` state file with
  relative paths. Tensor bytes are copied unchanged (bit-exact, every dtype,
  optimizer slots, partitioned variables as slices); see the module docstring
  for the layouts. The source is only read.

  Args:
    src: A model dir (its latest checkpoint, or all with `all_checkpoints`)
      or a checkpoint prefix such as `model_dir/model.ckpt-100`.
    dst_dir: The output directory, created if missing. It must not be the
      source's directory or inside it, and must not hold files this
      conversion writes (its `checkpoint` state file, or files of the same
      checkpoint names) unless `overwrite`.
    to: `"tf2"`: the Scaffold factory's layout (`var_list/...`, `step`).
      `"tf1"`: variables by TF1 name, from this package's layout, the guide's
      (`var_list/`, `vars/`), or any object-based checkpoint whose variables
      carry names. A Keras checkpoint (`model.save_weights`,
      `tf.train.Checkpoint(model=..., optimizer=...)`) keeps its Keras names
      (`<layer>/<weight>`); its optimizer state becomes TF1 slots
      (`<var>/Adam`, `<var>/Adam_1`, ...), `iterations` the `global_step`,
      and Adam's `beta1_power`/`beta2_power` are written as beta **
      (iterations + 1), so an Estimator resumes where Keras stopped (see
      `keras_checkpoints`). Keras SGD's momentum is refused.
    rename: A rename spec (`rename_rules.parse`: a dict `{from: to}` with
      `/`-scope prefixes, or `(regex, replacement)` pairs) from source TF1
      names to destination names. Default: keep names.
    link: Hard-link the data files instead of copying them (instant, no extra
      disk), falling back to copying where the file system does not allow it.
      Linked bytes are not re-read, so their checksums are not verified (run
      `verify`); copies always are. The files are shared with the source:
      TensorFlow never modifies a written checkpoint, but do not edit them in
      place.
    all_checkpoints: Convert every checkpoint the model dir `src` keeps, not
      only the latest.
    overwrite: Replace output files already in `dst_dir` (its `checkpoint`
      state file and files of the same checkpoint names); other files stay.
    dry_run: Check everything and log the plan, but write nothing.
    tf1_names: With `to="tf2"`, also store each variable under its TF1 name
      as an index alias of the same bytes (no data is written twice), so TF1
      readers (`Saver.restore`, `tf.train.load_variable`, stock warm start)
      find it by name. The object graph is the same either way.
    adam_betas: With `to="tf1"` from a checkpoint of a new Keras Adam
      (which saves no betas): its `(beta_1, beta_2)`, from which TF1's
      `beta1_power` and `beta2_power` are computed. Default: Keras's
      (0.9, 0.999), logged as a warning; a legacy Adam's saved betas win.

  Returns:
    The prefix of the (latest) converted checkpoint in `dst_dir`.

  Raises:
    errors.CheckpointNotFoundError: No checkpoint at `src`.
    errors.CorruptCheckpointError: The source is damaged (index, checksums,
      missing files); nothing is written.
    errors.DestinationExistsError: `dst_dir` holds outputs (and not
      `overwrite`), is not a directory, or is the source or inside it.
    errors.InvalidArgumentError: A bad `to` or empty `dst_dir`, `rename`
      maps two variables onto one name, or the source's state file lists two
      different checkpoints of one name.
    errors.InvalidRenameError: A malformed rename spec, or a rule that
      matches no variable.
    errors.DestinationLockedError: Another conversion is writing `dst_dir`.
    errors.CheckpointIOError: The file system failed (no space,
      permissions, ...); the message names the user's path.
  """
  start = time.monotonic()
  if not dst_dir:
    raise errors.InvalidArgumentError(
      "dst_dir is empty. Pass the directory to write the converted "
      "checkpoint to (`.` for the current directory)."
    )
  plans = conversion_plan.plan(
    src,
    to=to,
    rename=rename,
    all_checkpoints=all_checkpoints,
    tf1_names=tf1_names,
    adam_betas=adam_betas,
  )
  # Not os.path.normpath on a URL: it would make `gs://b/x` the local path
  # `gs:/b/x`; the storage knows its paths.
  dst_store = registry.for_path(dst_dir)
  dst_dir = dst_store.normalize(dst_dir)
  _check_destination(src, dst_dir, plans, overwrite)
  result = os.path.join(dst_dir, _latest(plans).basename)
  for p in plans:
    logging.info(
      "%s %s (%s, %d variables) -> %s (%s, %d data file%s)",
      "Would convert" if dry_run else "Converting",
      p.source.prefix,
      p.source.format,
      len(p.mappings),
      os.path.join(dst_dir, p.basename),
      p.to,
      p.num_shards,
      "s" if p.num_shards > 1 else "",
    )
  if dry_run:
    return result

  total = sum(p.copy_bytes for p in plans)
  linked = _write(
    plans,
    dst_store.absolute(dst_dir),
    link,
    total,
  )
  logging.info(
    "Wrote %s (%d checkpoint%s, %s of data %s) in %.2f s.",
    result,
    len(plans),
    "s" if len(plans) > 1 else "",
    progress.size_text(total),
    "linked" if linked else "copied",
    time.monotonic() - start,
  )
  return result
