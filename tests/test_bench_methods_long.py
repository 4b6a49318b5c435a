"""bench/methods_long.py: which config a method runs, and the table generated from the results
file (rows by kNN, references last, what is not run yet named), without training; resuming a killed
method and ``--seed`` on tiny budgets; bench/tune_long.py's table and its config check."""

import argparse

import pytest

from bench import methods_long, tune_long
from pipelines.config import load_config


def test_config_path__prefers_a_long_budget_config_and_falls_back_to_the_fmnist_one():
    assert methods_long.config_path("simclr").name == "simclr_fmnist_long.yaml"
    assert methods_long.config_path("moco").name == "moco_fmnist.yaml"
    assert methods_long.config_path("random-init").name == "simclr_fmnist.yaml"
    tuned, base = (
        load_config(methods_long.config_path("simclr")),
        load_config(methods_long.config_path("raw-pixels")),
    )
    assert tuned.method == base.method and tuned.train == base.train  # only the views differ
    assert tuned.augment != base.augment


def test_table__sorts_methods_by_knn_keeps_references_last_and_names_the_missing():
    row = {"linear_top1": 0.85, "epochs": 20, "train_size": 60000, "seconds": 3725.0}
    init = {"knn_top1": 0.761, "linear_top1": 0.805, "seconds": 45.0, "backbone": "tiny_cnn"}
    results = {
        "random-init tiny_cnn_grid4": init | {"knn_top1": 0.79, "backbone": "tiny_cnn_grid4"},
        "random-init": init,
        "raw-pixels": {"knn_top1": 0.788, "linear_top1": 0.842, "seconds": 2.0},
        "moco": row | {"knn_top1": 0.805, "config": "moco_fmnist.yaml", "backbone": "tiny_cnn"},
        "simclr": row | {"knn_top1": 0.8204, "config": "simclr_fmnist_long.yaml", "backbone": "tiny_cnn"},
    }
    lines = methods_long.table(results, ["moco", "simclr", "byol"]).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:7]] == [
        "| simclr",
        "| moco",
        "| *raw-pixels*",
        "| *random-init*",
        "| *random-init tiny_cnn_grid4*",
    ]
    assert lines[2] == "| simclr | 82.0 | 85.0 | 20 | 60000 | tiny_cnn | `simclr_fmnist_long.yaml` | 62m05s |"
    assert lines[4] == "| *raw-pixels* | 78.8 | 84.2 | – | – | – | – | 0m02s |"
    assert lines[5] == "| *random-init* | 76.1 | 80.5 | – | – | tiny_cnn | – | 0m45s |"
    assert lines[-1] == "Not run yet: byol."


def test_references__a_random_init_row_for_each_backbone_the_methods_use():
    assert methods_long.references(["simclr", "moco"]) == ["raw-pixels", "random-init"]
    grid = methods_long.references(["simclr", "simclr_grid", "swav_grid"])
    assert grid == ["raw-pixels", "random-init", "random-init tiny_cnn_grid4"]
    assert all(methods_long.is_reference(r) for r in grid)
    for method in ("simclr", "swav"):
        assert not methods_long.is_reference(f"{method}_grid")
        assert methods_long.config_path(f"{method}_grid").name == f"{method}_grid_fmnist_long.yaml"
        grid_config, tuned = (load_config(methods_long.config_path(m)) for m in (f"{method}_grid", method))
        assert grid_config.backbone.name == "tiny_cnn_grid4"  # only the backbone differs
        assert (grid_config.method, grid_config.train, grid_config.augment) == (
            tuned.method,
            tuned.train,
            tuned.augment,
        )
    # swav_grid_mc: swav_grid with six local crops instead of two, nothing else changed
    assert methods_long.references(["swav_grid_mc"]) == grid
    more, fewer = (load_config(methods_long.config_path(m)) for m in ("swav_grid_mc", "swav_grid"))
    assert (more.augment.params["num_local"], fewer.augment.params["num_local"]) == (6, 2)
    assert {k: v for k, v in more.augment.params.items() if k != "num_local"} == {
        k: v for k, v in fewer.augment.params.items() if k != "num_local"
    }
    assert (more.backbone, more.method, more.train) == (fewer.backbone, fewer.method, fewer.train)
    # swav_wgrid: swav_grid on the wider grid encoder, with its own random-init row
    wide, narrow = (load_config(methods_long.config_path(m)) for m in ("swav_wgrid", "swav_grid"))
    assert wide.backbone.name == "tiny_cnn_grid4_w48"
    assert (wide.method, wide.train, wide.augment) == (narrow.method, narrow.train, narrow.augment)
    assert methods_long.references(["swav_wgrid"])[-1] == "random-init tiny_cnn_grid4_w48"


def test_readme_block__each_results_file_has_its_own_block():
    assert methods_long.readme_block(methods_long.ROOT / "bench/results/methods_long.json") == "methods-long"
    assert methods_long.readme_block(methods_long.ROOT / "bench/results/methods_long_40ep.json") == (
        "methods-long-40ep"
    )


def test_tune_long__table_gives_each_finished_setting_against_the_base_in_the_order_asked():
    results = {
        "base": {"knn_top1": 0.740, "linear_top1": 0.800},
        "augment.params.strength=1.0": {"knn_top1": 0.756, "linear_top1": 0.797},
    }
    names = [tune_long.label([]), tune_long.label(["augment.params.strength=1.0"]), "train.base_lr=0.3"]
    lines = tune_long.table(results, names).splitlines()
    assert lines[2:] == [
        "| base | 74.0 | +0.0 | 80.0 | +0.0 |",
        "| augment.params.strength=1.0 | 75.6 | +1.6 | 79.7 | -0.3 |",
    ]  # the setting not run yet has no row
    assert tune_long.table({"train.base_lr=0.3": results["base"]}, names).splitlines()[2] == (
        "| train.base_lr=0.3 | 74.0 | – | 80.0 | – |"
    )


def test_tune_long__a_bad_override_fails_before_any_training(capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune_long.main(["moco", "--try", "method.params.temprature=0.1"])
    assert exit_info.value.code == 2
    assert "temprature" in capsys.readouterr().err


def test_main__a_killed_method_resumes_from_its_last_epoch_and_its_checkpoint_goes(
    tmp_path, capsys, monkeypatch
):
    results = tmp_path / "long.json"
    budget = {"epochs": 2, "limit": 512, "eval_train_size": 1000, "device": "cpu"}
    args = argparse.Namespace(
        methods=["simclr"], results=results, table_only=False, update_readme=False, **budget
    )  # what bench/methods.py --budget long passes
    printer = methods_long.progress_printer

    def killed_after_epoch_1(name, epochs, started):
        def report(metrics):
            printer(name, epochs, started)(metrics)
            if metrics["epoch"] == 1:
                raise KeyboardInterrupt

        return report

    monkeypatch.setattr(methods_long, "progress_printer", killed_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        methods_long.main(args)
    partial = methods_long.partial_checkpoint(results, "simclr")
    assert partial.exists() and "simclr" not in methods_long.load_results(results)
    monkeypatch.setattr(methods_long, "progress_printer", printer)
    capsys.readouterr()
    methods_long.main(args)
    out = capsys.readouterr().out
    assert f"resuming from {partial}" in out
    assert "[simclr] epoch 2/2" in out and "[simclr] epoch 1/2" not in out  # epoch 1 is not redone
    row = methods_long.load_results(results)["simclr"]
    assert row["epochs"] == 2 and row["train_size"] == 512 and not partial.exists()
    assert 0.1 < row["knn_top1"] <= 1.0 and "| simclr |" in results.with_suffix(".md").read_text()


def test_run_one__seed_is_another_draw_that_reproduces_and_is_recorded():
    data = methods_long.load_data(limit=256, eval_train_size=300)
    data["images"] = (data["images"][0], data["images"][1][:200])  # 200 of the 10k test images
    data["labels"] = (data["labels"][0], data["labels"][1][:200])

    def run(seed):
        args = argparse.Namespace(epochs=1, limit=256, device="cpu", seed=seed)  # bench/methods.py --seed
        return methods_long.run_one("simclr", args, data)

    default, one, again = run(None), run(1), run(1)
    assert (default["seed"], one["seed"]) == (0, 1)  # the config's train.seed, then --seed's
    assert one["final_loss"] == again["final_loss"] and one["knn_top1"] == again["knn_top1"]
    assert one["final_loss"] != default["final_loss"]
