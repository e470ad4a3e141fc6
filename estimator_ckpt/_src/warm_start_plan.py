"""Resolving one warm start against the default graph: what goes where.

Not public API. `prepare` selects the variables, resolves each one's source,
checks everything before any step (shapes, renames, vocabularies) and returns
the arguments of stock `tf.compat.v1.train.warm_start` for what it can read,
after initialising the rest itself; `WarmStartSummary` reports it.
"""

import dataclasses
import types
from typing import (
  Any,
  Dict,
  List,
  Mapping,
  Sequence,
  Tuple,
)

from absl import logging
import tensorflow as tf

from estimator_ckpt import errors
from estimator_ckpt._src import staged_index
from estimator_ckpt._src import vocab_detect
from estimator_ckpt._src import vocab_remap
from estimator_ckpt._src import warm_start_options
from estimator_ckpt._src import warm_start_selection
from estimator_ckpt._src import warm_start_sources
from estimator_ckpt._src.format import keys
from estimator_ckpt._src.format import state_file

# Checkpoint entries that are bookkeeping, never model state to report.
_BOOKKEEPING_NAMES = frozenset([keys.GLOBAL_STEP_NAME, "save_counter"])


@dataclasses.dataclass(frozen=True)
class WarmStartSummary:
  """What one warm start did, as logged.

  Attributes:
    checkpoint: The checkpoint prefix read.
    object_based: Whether it is a TF2 object-based checkpoint.
    warm_started: Current variable name -> the name it was read from in the
      checkpoint (after `rename`).
    not_found: Selected variables the checkpoint does not hold, sorted.
    unused_in_checkpoint: Checkpoint variables no variable of the model maps
      to (selected or not), sorted; the global step and `save_counter` are
      left out.
    excluded: Variables left out by default, sorted: the global step, and
      optimizer state unless `with_optimizer_slots`.
    not_selected: Variables that `vars_to_warm_start` does not match, sorted.
    remapped: Warm-started variables whose rows or columns were remapped
      to a new vocabulary (`vocab_info`), sorted.
  """

  checkpoint: str
  object_based: bool
  warm_started: Mapping[str, str]
  not_found: Tuple[str, ...]
  unused_in_checkpoint: Tuple[str, ...]
  excluded: Tuple[str, ...]
  not_selected: Tuple[str, ...]
  remapped: Tuple[str, ...] = ()

  def format(self) -> str:
    """A multi-line, human-readable account (what gets logged)."""
    kind = "TF2 object-based" if self.object_based else "TF1 name-based"
    lines = [
      f"Warm-started {len(self.warm_started)} of "
      f"{len(self.warm_started) + len(self.not_found)} selected variables "
      f"from `{self.checkpoint}` ({kind})."
    ]
    if self.warm_started:
      lines.append(
        "  warm-started: "
        + errors.format_names(
          name if source == name else f"{name} <- {source}"
          for name, source in self.warm_started.items()
        )
      )
    if self.remapped:
      lines.append(
        "  remapped to a new vocabulary: " + errors.format_names(self.remapped)
      )
    if self.not_found:
      lines.append(
        "  not found in checkpoint (keep their initializers): "
        + errors.format_names(self.not_found)
      )
    if self.unused_in_checkpoint:
      lines.append(
        "  unused in checkpoint (no variable maps to them): "
        + errors.format_names(self.unused_in_checkpoint)
      )
    if self.excluded:
      lines.append(
        "  start fresh (global step; optimizer state unless "
        "with_optimizer_slots=True): " + errors.format_names(self.excluded)
      )
    if self.not_selected:
      lines.append(
        "  not selected by vars_to_warm_start: "
        + errors.format_names(self.not_selected)
      )
    return "\n".join(lines)


def prepare(
  path: str, options: warm_start_options.Options
) -> Tuple[Tuple[Any, ...], WarmStartSummary]:
  """Resolves against the default graph; sets up what stock code cannot.

  Returns:
    The arguments for `tf.compat.v1.train.warm_start`, and the summary.
  """
  checkpoint = state_file.resolve(path)
  index = warm_start_sources.CheckpointIndex(
    checkpoint,
    keras_slots=options.with_optimizer_slots,
    adam_betas=options.adam_betas,
  )
  graph = tf.compat.v1.get_default_graph()
  graph_variables = warm_start_selection.variables_in_graph(graph)
  excluded, selected, not_selected = warm_start_selection.select(
    graph, graph_variables, options
  )

  vocab = _vocab_for(options, selected, graph_variables)
  sources: Dict[str, warm_start_sources.Source] = {}
  not_found = []
  synthesized: Dict[str, Any] = {}
  for variable in selected:
    value = index.synthesized.get(options.renamer(variable.name))
    if value is not None:
      synthesized[variable.name] = value
      continue
    # A remapped variable's shape is the new vocabulary's, not the source's.
    source = index.find(
      options.renamer(variable.name),
      None if variable.name in vocab else variable.shape,
    )
    if source is None:
      not_found.append(variable.name)
    else:
      sources[variable.name] = source

  warm_start_selection.check_unused_rules(options.renamer, selected)
  warm_start_sources.check_compatible(
    checkpoint,
    [v for v in selected if v.name not in vocab],
    {n: s for n, s in sources.items() if n not in vocab},
  )
  _check_vocab(checkpoint, selected, sources, vocab)
  vocab_detect.check(
    checkpoint,
    graph,
    {name: source.name for name, source in sources.items()},
    {variable.name: variable.shape for variable in selected},
    exempt=vocab,
  )
  consumed = set()
  for variable in graph_variables:
    consumed.update(index.names_read_for(options.renamer(variable.name)))
  unused = tuple(sorted(set(index.names) - consumed - _BOOKKEEPING_NAMES))
  if options.strict and not_found:
    raise errors.IncompatibleCheckpointError(
      f"{len(not_found)} of {len(selected)} selected variables are not in "
      f"`{checkpoint}`: {errors.format_names(not_found)}. Checkpoint "
      "variables no model variable maps to: "
      f"{errors.format_names(unused) or 'none'}. Map names with "
      "rename={current: in_checkpoint} (e.g. {'tower/': ''}), narrow "
      "vars_to_warm_start, or pass strict=False to warm-start what "
      "matches."
    )

  summary = WarmStartSummary(
    checkpoint=checkpoint,
    object_based=index.object_based,
    warm_started=types.MappingProxyType(
      dict(
        sorted(
          [(name, source.name) for name, source in sources.items()]
          + [
            (name, f"{options.renamer(name)} (from the Keras iterations)")
            for name in synthesized
          ]
        )
      )
    ),
    not_found=tuple(sorted(not_found)),
    unused_in_checkpoint=unused,
    excluded=tuple(sorted(v.name for v in excluded)),
    not_selected=tuple(sorted(v.name for v in not_selected)),
    remapped=tuple(sorted(set(vocab) & set(sources))),
  )
  if not_found or not sources:
    logging.warning("%s", summary.format())
  else:
    logging.info("%s", summary.format())

  for note in index.notes:
    logging.warning("%s", note)
  by_name = {variable.name: variable for variable in selected}
  for name, value in sorted(synthesized.items()):
    warm_start_sources.init_from_value(by_name[name], value)
  stock_vars: List[Any] = []
  prev_names = {}
  stock_vocab: Dict[str, vocab_remap.VocabInfo] = {}
  for name, source in sorted(sources.items()):
    info = vocab.get(name)
    if source.assembled and info is not None:
      # No key holds the whole tensor; stock code reads it from a staged
      # index that lists the parts as slices (see vocab_remap).
      staged = staged_index.stage(index.bundle, [index.variable(source.name)])
      vocab_remap.initialise(by_name[name].parts, staged, source.name, info)
    elif source.assembled:
      warm_start_sources.init_from_parts(checkpoint, by_name[name], source)
    else:
      stock_vars.extend(by_name[name].parts)
      prev_names[name] = source.keys[0]
      if info is not None:
        stock_vocab[name] = info
  # Stock code gets the model dir when that is what the user gave (it
  # resolves the same latest checkpoint): TensorFlow's own ram:// file system
  # calls any prefix of a file a directory, so a prefix would not load.
  stock_source = path if checkpoint != path else checkpoint
  return (stock_source, stock_vars, stock_vocab, prev_names), summary


def _vocab_for(
  options: warm_start_options.Options,
  selected: Sequence[warm_start_selection.GraphVariable],
  graph_variables: Sequence[warm_start_selection.GraphVariable],
) -> Mapping[str, vocab_remap.VocabInfo]:
  """The VocabInfo of each selected variable that has one (slots too)."""
  return vocab_remap.for_selected(
    dict(options.vocab_info),
    {variable.name: variable.shape for variable in selected},
    warm_start_selection.optimizer_state_names(graph_variables)
    if options.with_optimizer_slots
    else None,
  )


def _check_vocab(
  checkpoint: str,
  selected: Sequence[warm_start_selection.GraphVariable],
  sources: Mapping[str, warm_start_sources.Source],
  vocab: Mapping[str, vocab_remap.VocabInfo],
) -> None:
  """Raises one error listing what stock's remapping would fail on."""
  remapped = []
  for variable in selected:
    source = sources.get(variable.name)
    if variable.name not in vocab or source is None:
      continue
    stored = list(source.shapes[0])
    if source.axis is not None:
      stored[source.axis] = sum(s[source.axis] for s in source.shapes)
    remapped.append(
      vocab_remap.Remapped(
        variable.name,
        variable.shape,
        variable.dtype,
        source.name,
        tuple(stored),
        source.dtype,
        vocab[variable.name],
      )
    )
  vocab_remap.check(checkpoint, remapped)
