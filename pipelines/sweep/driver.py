"""Ray Tune sweeps of pretraining runs with ASHA early stopping, tracked in MLflow.

    python pipelines/tune.py tune_spaces/simclr_temperature_aug.yaml
    python pipelines/tune.py tune_spaces/moco_queue.yaml --set train.epochs=10 --set data.limit=20000
    python pipelines/tune.py tune_spaces/cross_method.yaml --smoke-test
    python pipelines/tune.py --resume runs/sweep-moco_queue-20261123-101500

One Tune trial = one Ray Train run (``pipelines.train.trainer.build_trainer``) = one MLflow child run
of the sweep's parent run. The space is validated before Ray starts (``pipelines.sweep.space``).
"""

import copy
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray
import ray.tune
import yaml
from mlflow.tracking import MlflowClient

from pipelines import storage
from pipelines.config import ExperimentConfig, load_config, load_yaml, to_dict
from pipelines.data.build import build_datasets
from pipelines.home import output_home, staging_dir
from pipelines.run import RUN_INFO, SMOKE, finish_run, open_run
from pipelines.sweep.space import (
    AshaSettings,
    SweepSpace,
    load_space,
    max_t,
    trial_count,
    trial_overrides,
    validate_space,
)
from pipelines.tracking.mlflow_run import (
    default_tracking_uri,
    end_run,
    fail_run,
    log_artifacts,
    reopen_run,
    start_run,
)
from pipelines.train.cluster import connect, quiet_ray
from pipelines.train.trainer import build_trainer, check_model_builds

SWEEP_INFO = "sweep.json"
RUNS = "runs"  # <sweep dir>/runs/<trial name>: each trial's Train run (config, checkpoints, encoder)
TRIAL_CPUS = 0.01  # the trial function only drives a Train run; Tune refuses an all-zero request
SMOKE_SWEEP = [*SMOKE, "train.epochs=2"]


def concurrency(config: ExperimentConfig, cluster_cpus: float) -> int:
    """Trials that fit at once: CPUs / (Train CPUs per trial + one Data task), at least 1."""
    per_trial = config.scaling.num_workers * config.scaling.cpus_per_worker + config.augment.cpus_per_task
    return max(1, int(cluster_cpus // per_trial))


def param_space(space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Tune domains for the space's entries (``*_set`` options are whole mappings)."""
    make = {
        "choice": ray.tune.choice,
        "grid": ray.tune.grid_search,
        "choice_set": ray.tune.choice,
        "grid_set": ray.tune.grid_search,
        "uniform": lambda a: ray.tune.uniform(*a),
        "loguniform": lambda a: ray.tune.loguniform(*a),
        "randint": lambda a: ray.tune.randint(*a),
    }
    return {label: make[kind](args) for label, spec in space.items() for kind, args in spec.items()}


def _short(value: Any) -> str:
    if isinstance(value, dict):  # a *_set option: its scalar values, e.g. simclr
        return "-".join(str(v) for v in value.values() if isinstance(v, (str, int, float)))[:24]
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trial_name(trial) -> str:
    """``t003_temperature=0.1_strength=0.5``: the trial's index (stable across restores) and values."""
    index = int(str(trial.trial_id).rsplit("_", 1)[-1])
    parts = [f"{label.rsplit('.', 1)[-1]}={_short(v)}" for label, v in trial.config.items()]
    name = "_".join([f"t{index:03d}", *parts])[:100]
    return "".join(c if c.isalnum() or c in "._=-" else "-" for c in name)


def run_trial(params: dict[str, Any], sweep: dict[str, Any]) -> None:
    """One Tune trial: build its config and data, open its child MLflow run, fit its Train run.

    Args:
        params: the trial's sampled values (label -> value).
        sweep: plain dict: ``dir``, ``tracking_uri``, ``parent_run_id``, ``base`` (the base
            config as a dict), ``space`` (the space's entries).
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    quiet_ray()
    name = ray.tune.get_context().get_trial_name()  # Ray: stable across Tuner.restore
    config = load_config(
        values=copy.deepcopy(sweep["base"]), overrides=trial_overrides(sweep["space"], params)
    )
    run_dir, uri = _trial_dir(sweep["dir"], name), sweep["tracking_uri"]
    datasets = build_datasets(config)
    if storage.exists(storage.join(run_dir, RUN_INFO)):  # restored trial: same MLflow run, Train resumes
        run_id = json.loads(storage.read_text(storage.join(run_dir, RUN_INFO)))["run_id"]
        reopen_run(uri, run_id)
    else:
        run_id = open_run(config, run_dir, uri, parent_run_id=sweep["parent_run_id"])
        MlflowClient(uri).set_tag(run_id, "trial", name)
    # Ray: the Train run reports each epoch's metrics to this trial (ASHA decides on them).
    try:
        check_model_builds(config)  # after open_run: a trial that cannot build shows as a FAILED child run
        result = build_trainer(config, datasets, run_dir, run_id, uri, callbacks=[TuneReportCallback()]).fit()
    except BaseException:
        # An ASHA stop also ends here (Tune exits the trial); the driver's TrialMlflowRuns may have
        # closed the run as KILLED already, and overrides this FAILED when it runs later.
        fail_run(uri, run_id)
        raise
    epochs = int(result.metrics.get("train/epoch", 0))
    # An ASHA stop that reached the workers after their last epoch: the driver's TrialMlflowRuns has
    # closed the run KILLED (Tune's verdict); it stays so.
    if MlflowClient(uri).get_run(run_id).info.status == "RUNNING":
        finish_run(result, run_dir, uri, run_id, complete=epochs >= config.train.epochs)


class TrialMlflowRuns(ray.tune.Callback):
    """Driver-side: closes a trial's MLflow run when Tune ends the trial (an ASHA stop kills
    the trial's process, which cannot close it) and prints one line per finished trial."""

    def __init__(self, sweep_dir: str, metric: str) -> None:
        self.sweep_dir, self.metric = sweep_dir, metric

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._close(trial, failed=True)

    def _close(self, trial, failed: bool) -> None:
        name, result = str(trial), trial.last_result or {}
        epochs, value = int(result.get("train/epoch", 0)), result.get(self.metric)
        status = "FAILED" if failed else "no run"
        run_dir = _trial_dir(self.sweep_dir, name)
        if storage.exists(storage.join(run_dir, RUN_INFO)):
            info = json.loads(storage.read_text(storage.join(run_dir, RUN_INFO)))
            client = MlflowClient(info["tracking_uri"])
            planned = load_yaml(storage.read_text(storage.join(run_dir, "config.yaml")))["train"]["epochs"]
            status = client.get_run(info["run_id"]).info.status
            # Tune's verdict wins over a FAILED that a stopped trial wrote while being shut down,
            # and over a FINISHED when the stop reached the Train workers after their last epoch.
            verdict = "FAILED" if failed else ("FINISHED" if epochs >= planned else "KILLED")
            if status == "RUNNING" or (status in ("FAILED", "FINISHED") and not failed and status != verdict):
                if verdict == "KILLED":  # the workers may have logged the epoch in flight: Tune judged this
                    client.set_tag(info["run_id"], "tune.stopped_after_epoch", str(epochs))
                status = verdict
                end_run(info["tracking_uri"], info["run_id"], status)
        shown = "n/a" if value is None else f"{value:.4f}"
        word = {"KILLED": "stopped early by ASHA"}.get(status, status.lower())
        print(f"trial {name}: {word} after {epochs} epochs, {self.metric} {shown}", flush=True)


def build_tuner(
    space: SweepSpace, base: ExperimentConfig, state: dict[str, Any], restore: bool
) -> ray.tune.Tuner:
    """The sweep's Tuner, new or restored from its directory (errored trials resume)."""
    sweep_dir = str(state["dir"]).rstrip("/")
    sweep = {
        "dir": state["dir"],
        "tracking_uri": state["tracking_uri"],
        "parent_run_id": state["parent_run_id"],
        "base": to_dict(base),
        "space": space.space,
    }
    # Ray: a small CPU request so the trial's driver does not starve its Train worker.
    # placement.driver_resource: trial drivers only on the nodes that offer it (the head in cluster.yaml).
    role = base.placement.driver_resource
    resources = {"CPU": TRIAL_CPUS, **({role: 1} if role else {})}
    trainable = ray.tune.with_resources(ray.tune.with_parameters(run_trial, sweep=sweep), resources)
    if restore:
        return ray.tune.Tuner.restore(sweep_dir, trainable=trainable, resume_errored=True)  # Ray: path or URI
    scheduler = ray.tune.schedulers.ASHAScheduler(  # Ray: stop weak trials at rungs of train/epoch
        time_attr="train/epoch",
        max_t=max_t(space, base),
        grace_period=space.scheduler.grace_period,
        reduction_factor=space.scheduler.reduction_factor,
        stop_last_trials=False,
    )
    return ray.tune.Tuner(
        trainable,
        param_space=param_space(space.space),
        tune_config=ray.tune.TuneConfig(
            metric=space.metric,
            mode=space.mode,
            scheduler=scheduler,
            num_samples=space.num_samples,
            max_concurrent_trials=state["max_concurrent_trials"],
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=ray.tune.RunConfig(
            name=sweep_dir.rsplit("/", 1)[-1],
            storage_path=sweep_dir.rsplit("/", 1)[0],  # a path or an s3:// URI
            verbose=0,
            failure_config=ray.tune.FailureConfig(
                max_failures=0, fail_fast=False
            ),  # a failed trial: sweep goes on
            callbacks=[TrialMlflowRuns(str(sweep_dir), space.metric)],
        ),
    )


def _trial_dir(sweep_dir: str | Path, name: str) -> Path | str:
    """``<sweep dir>/runs/<trial>``: a path, or a URI for a sweep on object storage."""
    joined = storage.join(sweep_dir, RUNS, name)
    return joined if storage.is_uri(joined) else Path(joined)


def _sweep_dir(state: dict[str, Any]) -> Path | str:
    return state["dir"] if storage.is_uri(state["dir"]) else Path(state["dir"])


def _trial_row(result, sweep_dir: Path | str, metric: str, mode: str) -> dict[str, Any]:
    """One summary row: sampled values, final / best metric and its history as Tune received
    them, epochs reported to Tune, MLflow status."""
    name, metrics = str(result.path).rstrip("/").rsplit("/", 1)[-1], result.metrics or {}
    history = result.metrics_dataframe
    values = [] if history is None or metric not in history else history[metric].dropna().tolist()
    status = "ERROR" if result.error else "?"
    info_file = storage.join(_trial_dir(sweep_dir, name), RUN_INFO)
    if storage.exists(info_file):
        info = json.loads(storage.read_text(info_file))
        status = MlflowClient(info["tracking_uri"]).get_run(info["run_id"]).info.status
    pick = max if mode == "max" else min
    return {
        "trial": name,
        "sampled": result.config,
        "final": metrics.get(metric),
        "best": pick(values, default=None),
        "history": values,
        "epochs": int(metrics.get("train/epoch", 0)),
        "status": status,
    }


def summary_table(rows: list[dict[str, Any]], metric: str) -> str:
    """The rows as a Markdown table (printed and logged as the parent run's ``summary.md``)."""

    def fmt(x: Any) -> str:
        return "n/a" if x is None else f"{x:.4f}" if isinstance(x, float) else str(x)

    def sampled(values: dict[str, Any]) -> str:
        return ", ".join(f"{k}={_short(v)}" for k, v in values.items())

    lines = [
        f"| trial | sampled values | final {metric} | best {metric} | epochs | status |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [
            r["trial"],
            sampled(r["sampled"]),
            fmt(r["final"]),
            fmt(r["best"]),
            str(r["epochs"]),
            r["status"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_best(
    rows: list[dict[str, Any]], sweep_dir: Path | str, metric: str, mode: str
) -> tuple[dict, Path | str]:
    """The best trial by final metric; its config as a ready-to-run ``best_config.yaml`` (also in
    the sweep's local staging folder when the sweep is on object storage)."""
    scored = [r for r in rows if r["final"] is not None]
    if not scored:
        raise RuntimeError(f"no trial reported {metric}; see the trial errors above and in {sweep_dir}")
    best = (max if mode == "max" else min)(scored, key=lambda r: r["final"])
    values = load_yaml(storage.read_text(storage.join(_trial_dir(sweep_dir, best["trial"]), "config.yaml")))
    load_config(values=copy.deepcopy(values))  # the file must load and validate as written
    path = storage.join(sweep_dir, "best_config.yaml")
    name = str(sweep_dir).rstrip("/").rsplit("/", 1)[-1]
    header = (
        f"# Best trial {best['trial']} of sweep {name}: final {metric} {best['final']:.4f}.\n"
        f"# python pipelines/pretrain.py {path}\n"
    )
    text = header + yaml.safe_dump(values, sort_keys=False)
    storage.write_text(path, text)
    (staging_dir(sweep_dir) / "best_config.yaml").write_text(text)
    return best, path if storage.is_uri(path) else Path(path)


def prepare(space_path: str | Path, overrides: list[str], smoke: bool) -> tuple[SweepSpace, ExperimentConfig]:
    """Load and validate the space (every path and value) before any Ray work."""
    space = load_space(space_path)
    if smoke:  # one short trial: a grid keeps its first option (num_samples=1 alone runs every one)
        first = {
            k: {d: a[:1] if d in ("grid", "grid_set") else a for d, a in dom.items()}
            for k, dom in space.space.items()
        }
        space = replace(
            space,
            space=first,
            num_samples=1,
            scheduler=AshaSettings(max_t=2, grace_period=1, reduction_factor=2),
        )
    base = validate_space(space, (SMOKE_SWEEP if smoke else []) + overrides)
    return space, base


def new_sweep(space: SweepSpace, base: ExperimentConfig, argv: dict[str, Any]) -> dict[str, Any]:
    """Create the sweep directory, its parent MLflow run and ``sweep.json`` (what --resume reads)."""
    name = f"sweep-{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if storage.is_uri(base.checkpoint.output_dir):
        sweep_dir: Path | str = storage.join(base.checkpoint.output_dir, name)
    else:
        out = Path(base.checkpoint.output_dir).expanduser()
        sweep_dir = (out if out.is_absolute() else output_home() / out) / name
    uri = base.tracking.tracking_uri or default_tracking_uri(output_home())
    mct = space.max_concurrent_trials or concurrency(base, ray.cluster_resources().get("CPU", 1.0))  # Ray
    params = {
        "space": str(argv["space"]),
        "base_config": str(space.base_config),
        "metric": space.metric,
        "mode": space.mode,
        "num_samples": space.num_samples,
        "max_concurrent_trials": mct,
        "scheduler.max_t": max_t(space, base),
        "scheduler.grace_period": space.scheduler.grace_period,
        "scheduler.reduction_factor": space.scheduler.reduction_factor,
        "overrides": " ".join(list(space.overrides) + argv["overrides"]),
        **{f"space.{k}": json.dumps(v) for k, v in space.space.items()},
    }
    parent = start_run(uri, base.tracking.experiment, name, params, {"sweep": space.name})
    state = {
        **argv,
        "dir": str(sweep_dir),
        "tracking_uri": uri,
        "parent_run_id": parent,
        "max_concurrent_trials": mct,
    }
    storage.write_text(storage.join(sweep_dir, SWEEP_INFO), json.dumps(state, indent=2))
    return state


def release_placement_groups(wait_s: float = 30.0) -> list[str]:
    """After the sweep: give Train's cleaner ``wait_s`` to remove the stopped trials' placement
    groups, then remove what this job still holds (seen here: the last ASHA-stopped trial's
    1-CPU group outlived the sweep, as in Ray issue #54305). Returns the ids removed."""
    from ray.util.placement_group import PlacementGroup

    job = ray.get_runtime_context().get_job_id()  # Ray: a group id ends with its job's id
    deadline = time.monotonic() + wait_s
    while True:
        table = ray.util.placement_group_table()  # Ray
        live = [pg for pg, info in table.items() if info["state"] != "REMOVED" and pg.endswith(job)]
        if not live or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    for pg in live:
        ray.util.remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(pg))))  # Ray
        print(f"released placement group {pg} left by a stopped trial", flush=True)
    return live


def finish_sweep(results, space: SweepSpace, state: dict[str, Any]) -> dict[str, Any]:
    """Summary table, best config, parent run artifacts; returns what a caller needs."""
    sweep_dir, uri, parent = _sweep_dir(state), state["tracking_uri"], state["parent_run_id"]
    rows = sorted(
        (_trial_row(r, sweep_dir, space.metric, space.mode) for r in results), key=lambda r: r["trial"]
    )
    table = summary_table(rows, space.metric)
    local = staging_dir(sweep_dir)  # the sweep directory itself unless it is on object storage
    (local / "summary.md").write_text(table)
    if storage.is_uri(sweep_dir):
        storage.write_text(storage.join(sweep_dir, "summary.md"), table)
    print(table, flush=True)
    try:
        best, best_path = write_best(rows, sweep_dir, space.metric, space.mode)
    except BaseException:
        log_artifacts(uri, parent, [local / "summary.md"])
        fail_run(uri, parent)
        raise
    log_artifacts(uri, parent, [local / "summary.md", local / "best_config.yaml"])
    MlflowClient(uri).log_metric(parent, f"best/{space.metric}", float(best["final"]))
    end_run(uri, parent, "FINISHED")
    print(
        f"best: {best['trial']} ({space.metric} {best['final']:.4f}); {results.num_errors} trials failed",
        flush=True,
    )
    print(f"best config: {best_path}\n  run it: python pipelines/pretrain.py {best_path}", flush=True)
    print(f"sweep directory: {sweep_dir}\nMLflow: parent run {parent} in {uri}", flush=True)
    return {
        "sweep_dir": sweep_dir,
        "rows": rows,
        "best": best,
        "best_config": best_path,
        "tracking_uri": uri,
        "parent_run_id": parent,
        "num_errors": results.num_errors,
    }


def run_sweep(
    space_path: str | Path | None, overrides: list[str], smoke: bool = False, resume: Path | str | None = None
) -> dict[str, Any]:
    """Run a sweep (or continue one from its directory, a path or a URI); returns the summary
    (see finish_sweep)."""
    state = json.loads(storage.read_text(storage.join(resume, SWEEP_INFO))) if resume is not None else None
    argv = {
        "space": str(Path(space_path).resolve()) if space_path else None,
        "overrides": overrides,
        "smoke": smoke,
    }
    argv = {k: state[k] for k in argv} if state is not None else argv
    if argv["space"] is None:
        raise SystemExit("tune.py: give a space file (tune_spaces/NAME.yaml) or --resume SWEEP_DIR")
    space, base = prepare(argv["space"], argv["overrides"], argv["smoke"])  # before any Ray work
    print(
        f"space {space.name}: every path and value valid; {trial_count(space)} trials "
        f"on base config {space.base_config}",
        flush=True,
    )
    print(f"Ray: using {connect()}", flush=True)
    quiet_ray()
    if state is None:
        state = new_sweep(space, base, argv)
    else:
        reopen_run(state["tracking_uri"], state["parent_run_id"])
    print(
        f"sweep directory: {state['dir']}; up to {state['max_concurrent_trials']} trials at once", flush=True
    )
    tuner = build_tuner(space, base, state, restore=resume is not None)
    results = tuner.fit()  # Ray: runs (or continues) the trials; finished ones are not re-run
    release_placement_groups()
    return finish_sweep(results, space, state)
