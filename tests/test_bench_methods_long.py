"""bench/methods_long.py without training: which config a method runs, and the table generated
from the results file (rows by kNN, references last, what is not run yet named)."""

from bench import methods_long
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
    results = {
        "random-init": {"knn_top1": 0.761, "linear_top1": 0.805, "seconds": 45.0},
        "moco": row | {"knn_top1": 0.805, "config": "moco_fmnist.yaml"},
        "simclr": row | {"knn_top1": 0.8204, "config": "simclr_fmnist_long.yaml"},
    }
    lines = methods_long.table(results, ["moco", "simclr", "byol"]).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:5]] == ["| simclr", "| moco", "| *random-init*"]
    assert lines[2] == "| simclr | 82.0 | 85.0 | 20 | 60000 | `simclr_fmnist_long.yaml` | 62m05s |"
    assert lines[4] == "| *random-init* | 76.1 | 80.5 | – | – | – | 0m45s |"
    assert lines[-1] == "Not run yet: byol."
