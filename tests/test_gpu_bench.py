"""bench/gpu.py, the prepared GPU check (issue #23), run whole on the CPU (``--cpu --tiny``): both
workloads' synthetic ceiling, colour stage and real Ray Data stream, on the shared Ray instance."""

import math

import pytest
from mlflow.tracking import MlflowClient

from bench import gpu


def test_gpu_bench__dry_run_on_cpu_reports_every_figure(ray_local, tmp_path):
    results = gpu.run_bench(cpu=True, tiny=True, work_dir=tmp_path)
    assert [row["workload"] for row in results["workloads"]] == [w.name for w in gpu.TINY]
    for row in results["workloads"]:
        ceiling, stream = row["ceiling"], row["stream"]
        assert row["precision"] == "fp32" and ceiling["images_per_s"] > 0 and math.isfinite(ceiling["loss"])
        assert stream["epochs"] == 1 and stream["images_per_s"] > 0 and 0.0 <= stream["wait_fraction"] <= 1.0
        assert row["stream_over_ceiling"] == pytest.approx(stream["images_per_s"] / ceiling["images_per_s"])
        assert row["colour_images_per_s"] > 0
    assert results["nccl"] == {"ran": False, "why": "the CPU dry run"}
    table = gpu.table(results["workloads"])
    assert len(table.splitlines()) == 2 + len(gpu.TINY) and "tiny_cnn 64 px" in table
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "gpu-bench"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "FINISHED"]  # the two stream jobs
