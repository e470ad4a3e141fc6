"""Tests of the checkpoint flags: in-process and once as a real binary."""

import json
import os
import subprocess
import sys

from absl import flags
from absl import logging
from absl.testing import absltest
from absl.testing import flagsaver
from absl.testing import parameterized
import tensorflow as tf

import estimator_ckpt
from estimator_ckpt import errors
from estimator_ckpt import keys
from estimator_ckpt._src import checkpoint_flags
from estimator_ckpt._src import warm_start

from examples.guide import models as guide_models
from tests import fixtures

FLAGS = flags.FLAGS

_EST_TF1 = fixtures.testdata_path(fixtures.GOLDENS["est-tf1"])
# Under Bazel the probe binary is a runfile next to this test (data dep);
# without Bazel, run its module with this Python.
_PROBE = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), "checkpoint_flags_probe"
)


def _parse(*args):
  flag_values = flags.FlagValues()
  checkpoint_flags.define_checkpoint_flags(flag_values)
  flag_values(["prog", *args])
  return flag_values


class CheckpointFlagsTest(parameterized.TestCase):
  def _model_dir(self):
    return os.path.join(self.create_tempdir().full_path, "model")

  def test_defaults(self):
    model_dir = self._model_dir()
    settings = checkpoint_flags.checkpoint_settings_from_flags(
      _parse(f"--model_dir={model_dir}")
    )
    self.assertEqual(settings.model_dir, model_dir)
    self.assertEqual(settings.run_config.keep_checkpoint_max, 5)
    self.assertIsNone(settings.run_config.save_checkpoints_steps)
    self.assertEqual(settings.run_config.save_checkpoints_secs, 600)
    self.assertEqual(settings.checkpoint_format, "tf2")
    self.assertEqual(dict(settings.scaffold_options), {"max_to_keep": 5})
    self.assertIsNone(settings.warm_start_from)

  def test_every_flag(self):
    settings = checkpoint_flags.checkpoint_settings_from_flags(
      _parse(
        f"--model_dir={self._model_dir()}",
        f"--warm_start_from={_EST_TF1}",
        "--warm_start_vars=var",
        "--warm_start_vars=tower/",
        "--warm_start_rename=tower/=",
        "--warm_start_rename=x=var",
        "--warm_start_optimizer_slots",
        "--warm_start_adam_betas=0.8,0.99",
        "--warm_start_strict",
        "--checkpoint_format=both",
        "--keep_checkpoint_max=2",
        "--save_checkpoints_steps=10",
        "--async_save",
      )
    )
    self.assertEqual(settings.run_config.keep_checkpoint_max, 2)
    self.assertEqual(settings.run_config.save_checkpoints_steps, 10)
    self.assertIsNone(settings.run_config.save_checkpoints_secs)
    self.assertEqual(
      dict(settings.scaffold_options),
      {"max_to_keep": 2, "also_write_tf1": True, "async_save": True},
    )
    warm_start_from = settings.warm_start_from
    self.assertIsInstance(warm_start_from, warm_start.WarmStartSettings)
    self.assertIsInstance(warm_start_from, tf.estimator.WarmStartSettings)
    self.assertEqual(
      warm_start_from._asdict(),
      {
        "ckpt_to_initialize_from": _EST_TF1,
        "vars_to_warm_start": ("var", "tower/"),
        "rename": ("x", "tower/"),
        "with_optimizer_slots": True,
        "strict": True,
        "adam_betas": (0.8, 0.99),
        "vocab_info": {},  # --warm_start_vocab: warm_start_vocab_flag_test.
      },
    )

  def test_tf1_format_keeps_the_stock_saver(self):
    settings = checkpoint_flags.checkpoint_settings_from_flags(
      _parse(f"--model_dir={self._model_dir()}", "--checkpoint_format=tf1")
    )
    self.assertIsNone(settings.scaffold_options)

  def test_settings_validate_themselves(self):
    config = tf.estimator.RunConfig(model_dir=self._model_dir())
    with self.assertRaisesRegex(ValueError, "exactly for checkpoint_format"):
      checkpoint_flags.CheckpointSettings(
        config, None, "tf1", {"max_to_keep": 1}
      )
    with self.assertRaisesRegex(ValueError, "must be one of"):
      checkpoint_flags.CheckpointSettings(config, None, "tf3", None)
    settings = checkpoint_flags.CheckpointSettings(config, None, "tf2", {})
    with self.assertRaises(TypeError):
      settings.scaffold_options["max_to_keep"] = 3  # Read-only.

  @parameterized.named_parameters(
    (
      "vars_without_source",
      ["--warm_start_vars=dense"],
      "--warm_start_vars needs --warm_start_from",
    ),
    (
      "rename_without_source",
      ["--warm_start_rename=a=b"],
      "--warm_start_rename needs --warm_start_from",
    ),
    (
      "strict_without_source",
      ["--warm_start_strict"],
      "--warm_start_strict needs --warm_start_from",
    ),
    (
      "keep_zero",
      ["--keep_checkpoint_max=0"],
      "--keep_checkpoint_max must be at least 1",
    ),
    (
      "steps_zero",
      ["--save_checkpoints_steps=0"],
      "--save_checkpoints_steps must be at least 1",
    ),
    (
      "bad_rename",
      [f"--warm_start_from={_EST_TF1}", "--warm_start_rename=nope"],
      "is not `current=in_checkpoint`",
    ),
    (
      "bad_regex",
      [f"--warm_start_from={_EST_TF1}", "--warm_start_vars=("],
      "--warm_start_vars=\\( is not a regex",
    ),
    ("bad_format", ["--checkpoint_format=tf3"], r"one of <tf2\|tf1\|both>"),
    (
      "async_save_with_tf1",
      ["--checkpoint_format=tf1", "--async_save"],
      "--async_save needs --checkpoint_format tf2 or both",
    ),
    (
      "bad_adam_betas",
      [f"--warm_start_from={_EST_TF1}", "--warm_start_adam_betas=0.9"],
      "--warm_start_adam_betas is BETA_1,BETA_2",
    ),
  )
  def test_bad_combinations_fail_at_parse(self, args, fragment):
    with self.assertRaisesRegex(flags.IllegalFlagValueError, fragment):
      _parse(f"--model_dir={self._model_dir()}", *args)

  def test_model_dir_is_required(self):
    with self.assertRaisesRegex(
      flags.IllegalFlagValueError, "--model_dir must have a value"
    ):
      _parse()

  def test_warm_start_from_model_dir_itself(self):
    model_dir = self._model_dir()
    with self.assertRaisesRegex(
      flags.IllegalFlagValueError, "is --model_dir itself"
    ):
      _parse(f"--model_dir={model_dir}", f"--warm_start_from={model_dir}/")

  def test_missing_source_names_the_path(self):
    missing = os.path.join(self.create_tempdir().full_path, "nothing")
    with self.assertRaisesRegex(errors.CheckpointNotFoundError, missing):
      checkpoint_flags.checkpoint_settings_from_flags(
        _parse(
          f"--model_dir={self._model_dir()}", f"--warm_start_from={missing}"
        )
      )

  def test_one_shot_rule_is_logged_up_front(self):
    model_dir = fixtures.copy_golden("est-tf2", self._model_dir())
    with self.assertLogs(logging.get_absl_logger(), "WARNING") as logs:
      checkpoint_flags.checkpoint_settings_from_flags(
        _parse(f"--model_dir={model_dir}", f"--warm_start_from={_EST_TF1}")
      )
    self.assertIn(
      f"Not warm-starting from `{_EST_TF1}`: model_dir "
      f"`{model_dir}` already has checkpoint",
      logs.output[0],
    )

  @parameterized.named_parameters(
    ("tf2", "tf2", keys.variable_key("var"), False),
    ("both", "both", keys.variable_key("var"), True),
    ("tf1", "tf1", "var", False),
  )
  def test_settings_drive_an_estimator(
    self, checkpoint_format, var_key, tf1_copy
  ):
    """The README's recipe: flags -> Estimator, warm-started from est-tf1."""
    model_dir = self._model_dir()
    settings = checkpoint_flags.checkpoint_settings_from_flags(
      _parse(
        f"--model_dir={model_dir}",
        f"--warm_start_from={_EST_TF1}",
        f"--checkpoint_format={checkpoint_format}",
        "--keep_checkpoint_max=1",
        "--save_checkpoints_steps=1",
      )
    )
    model_fn = guide_models.model_fn_tf1_ckpt
    if settings.scaffold_options is not None:
      model_fn = estimator_ckpt.tf2_checkpoints(
        model_fn, **settings.scaffold_options
      )
    est = tf.estimator.Estimator(
      model_fn,
      config=settings.run_config,
      warm_start_from=settings.warm_start_from,
    )
    est.train(guide_models.train_input_fn, steps=2)
    self.assertEqual(est.get_variable_value(var_key), 6.0)  # 2 + 2 + 2.
    state = tf.train.get_checkpoint_state(model_dir)
    self.assertLen(state.all_model_checkpoint_paths, 1)  # keep_max=1.
    self.assertEqual(
      tf.io.gfile.exists(os.path.join(model_dir, "tf1")), tf1_copy
    )

  def test_global_flags_with_flagsaver(self):
    """The way binaries use it: define on FLAGS, override in tests."""
    if "model_dir" not in FLAGS:
      checkpoint_flags.define_checkpoint_flags()
    model_dir = self._model_dir()
    with flagsaver.flagsaver(
      model_dir=model_dir,
      warm_start_from=_EST_TF1,
      warm_start_vars=["var"],
      checkpoint_format="tf1",
    ):
      settings = checkpoint_flags.checkpoint_settings_from_flags()
    self.assertEqual(settings.model_dir, model_dir)
    self.assertIsNone(settings.scaffold_options)
    self.assertEqual(settings.warm_start_from.vars_to_warm_start, ["var"])


class CheckpointFlagsBinaryTest(absltest.TestCase):
  """The flags as a user runs them: a real subprocess."""

  def _run(self, *args):
    if "TEST_SRCDIR" in os.environ:  # Under Bazel: the real binary.
      self.assertTrue(os.path.exists(_PROBE), _PROBE)
    if os.path.exists(_PROBE):
      command = [_PROBE]
    else:
      command = [sys.executable, "-m", "tests.checkpoint_flags_probe"]
    return subprocess.run(
      [*command, *args],
      capture_output=True,
      text=True,
      check=False,
      timeout=300,
    )

  def test_prints_settings_and_rejects_bad_usage(self):
    model_dir = os.path.join(self.create_tempdir().full_path, "model")
    result = self._run(
      f"--model_dir={model_dir}",
      f"--warm_start_from={_EST_TF1}",
      "--warm_start_rename=tower/=",
      "--checkpoint_format=both",
      "--save_checkpoints_steps=100",
    )
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    printed = json.loads(result.stdout.strip().splitlines()[-1])
    self.assertEqual(printed["model_dir"], model_dir)
    self.assertEqual(printed["save_checkpoints_steps"], 100)
    self.assertIsNone(printed["save_checkpoints_secs"])
    self.assertEqual(
      printed["scaffold_options"], {"also_write_tf1": True, "max_to_keep": 5}
    )
    self.assertEqual(printed["warm_start"]["ckpt_to_initialize_from"], _EST_TF1)
    self.assertEqual(printed["warm_start"]["rename"], ["tower/"])

    result = self._run(f"--model_dir={model_dir}", "--warm_start_vars=x")
    self.assertNotEqual(result.returncode, 0)
    self.assertIn("--warm_start_vars needs --warm_start_from", result.stderr)
    self.assertNotIn("Traceback", result.stderr)

    missing = os.path.join(model_dir, "nothing")
    result = self._run(
      f"--model_dir={model_dir}", f"--warm_start_from={missing}"
    )
    self.assertNotEqual(result.returncode, 0)
    self.assertIn(
      f"`{missing}` is neither a model_dir nor a checkpoint prefix",
      result.stderr,
    )
    self.assertNotIn("Traceback", result.stderr)


if __name__ == "__main__":
  absltest.main()
