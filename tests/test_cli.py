"""The four command lines: ``--help`` loads none of torch, Ray, MLflow or pyarrow (it answers at
once); a bad config ends with its message and status 2 before any Ray work; ``--print-config``
prints the resolved config, which loads back to the same config."""

import os
import subprocess
import sys

import pytest
import yaml

from pipelines import evaluate, pretrain, run
from pipelines.config import load_config
from pipelines.run import SMOKE

HEAVY = ("torch", "ray", "mlflow", "pyarrow", "numpy")


@pytest.mark.parametrize("name", ["pretrain", "tune", "evaluate", "compare"])
def test_help__imports_nothing_heavy(name):
    code = (
        f"import sys\nfrom pipelines import {name}\n"
        f"try:\n    {name}.cli(['--help'])\nexcept SystemExit as e:\n    assert e.code == 0\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert "usage:" in done.stdout


def _no_run(*args, **kwargs):
    raise AssertionError("reached Ray / the run")


def test_config_error__ends_with_the_message_and_status_2_before_ray(capsys, monkeypatch):
    monkeypatch.setattr(run, "connect", _no_run)  # the run's first Ray touch point
    monkeypatch.setattr(run, "pretrain", _no_run)
    with pytest.raises(SystemExit) as exit_info:
        pretrain.cli(["--set", "train.precision=fp16"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert (
        err.strip() == "pretrain: error: train.precision: 'fp16' is not allowed; allowed values: fp32, bf16"
    )


def test_missing_config_file__names_the_shipped_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        pretrain.cli(["no-such-config.yaml"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "no-such-config.yaml not found" in err and "smoke.yaml" in err and "Traceback" not in err


def test_print_config__prints_the_resolved_config_which_loads_back(capsys, monkeypatch):
    monkeypatch.setattr(run, "pretrain", _no_run)
    assert pretrain.cli(["smoke.yaml", "--smoke-test", "--set", "train.epochs=7", "--print-config"]) is None
    printed = yaml.safe_load(capsys.readouterr().out)
    expected = load_config("smoke.yaml", [*SMOKE, "train.epochs=7"])
    assert printed["train"]["epochs"] == 7 and printed["method"]["params"]["temperature"] == 0.2
    assert load_config(values=printed) == expected


def test_evaluate_parser__constants_agree_with_their_sources():
    from cl_core.evaluation import FineTuneSettings
    from pipelines.evaluation import downstream

    assert evaluate.REFERENCES == downstream.REFERENCES
    assert evaluate.FINETUNE_EPOCHS == FineTuneSettings.epochs


def test_quiet_local_instance__ray_data_console_from_warning_without_the_progress_bar_notice(monkeypatch):
    import logging

    from ray.data._internal import logging as data_logging

    from pipelines.train.cluster import quiet_local_instance

    monkeypatch.delenv("RAY_DATA_LOGGING_CONFIG", raising=False)
    monkeypatch.delenv("RAY_DATA_LOG_LEVEL", raising=False)
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)
    quiet_local_instance()
    assert os.environ["PYTHONWARNINGS"] == "ignore::DeprecationWarning"
    data_logging.configure_logging()  # what each Ray process does with the inherited variable
    try:
        (console,) = [h for h in logging.getLogger("ray.data").handlers if "Plain" in type(h).__name__]
        assert console.level == logging.WARNING and logging.getLogger("ray.data").level == logging.DEBUG
        assert logging.getLogger("ray.data._internal.progress").level == logging.ERROR
    finally:
        monkeypatch.delenv("RAY_DATA_LOGGING_CONFIG")
        data_logging.configure_logging()  # Ray's default again for the rest of the session
