"""A test-only binary: defines the checkpoint flags, prints the settings.

Not public. Shows the pattern binaries follow (thin: flags and main only;
library errors become `app.UsageError`, so bad usage exits non-zero without
a traceback) and lets checkpoint_flags_test run the flags as a user does.
Prints the resulting settings as one JSON object.
"""

import json
from typing import Sequence

from absl import app

from estimator_ckpt import errors
from estimator_ckpt._src import checkpoint_flags

checkpoint_flags.define_checkpoint_flags()


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  try:
    settings = checkpoint_flags.checkpoint_settings_from_flags()
  except errors.Error as e:
    raise app.UsageError(str(e)) from None
  config = settings.run_config
  warm_start = settings.warm_start_from
  print(
    json.dumps(
      {
        "model_dir": settings.model_dir,
        "keep_checkpoint_max": config.keep_checkpoint_max,
        "save_checkpoints_steps": config.save_checkpoints_steps,
        "save_checkpoints_secs": config.save_checkpoints_secs,
        "checkpoint_format": settings.checkpoint_format,
        "scaffold_options": (
          None
          if settings.scaffold_options is None
          else dict(settings.scaffold_options)
        ),
        "warm_start": (
          None
          if warm_start is None
          else {
            key: (list(value) if isinstance(value, tuple) else value)
            for key, value in warm_start._asdict().items()
          }
        ),
      },
      sort_keys=True,
    )
  )


if __name__ == "__main__":
  app.run(main)
