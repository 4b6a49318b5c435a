"""Placement by role on a local multi-node Ray: a head plus a data-tier and a train-tier raylet
(`ray start` with distinct custom resources, loopback only). A pretraining job submitted with
`ray job submit` finishes, and Ray's state API shows every Ray Data task ran on the data node
and every Train worker on the train node."""

from tests.local_cluster import ROOT, LocalCluster


def test_roles__data_tasks_and_train_workers_run_on_their_own_nodes(tmp_path):
    with LocalCluster(head_cpus=1) as cluster:
        cluster.add_node(cpus=1, resources={"data": 100})
        cluster.add_node(cpus=1, resources={"train": 100})
        job = cluster.submit(
            [
                "python",
                f"{ROOT}/pipelines/pretrain.py",
                f"{ROOT}/configs/smoke.yaml",
                "--set",
                "train.epochs=1",
                "--set",
                "placement.data_resource=data",
                "--set",
                "placement.train_resource=train",
            ],
            {"SSL_PIPELINE_HOME": str(tmp_path)},
            working_dir=False,
        )
        assert job.returncode == 0 and "succeeded" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
        nodes = {n["node_id"]: n["resources_total"] for n in cluster.state("nodes")}
        tasks, actors = cluster.state("tasks"), cluster.state("actors")
    role = {node: next((r for r in ("data", "train") if r in res), "head") for node, res in nodes.items()}
    assert sorted(role.values()) == ["data", "head", "train"]
    data_tasks = [t for t in tasks if t["name"].startswith(("MapBatches", "ReadParquet", "Map("))]
    assert data_tasks, sorted({t["name"] for t in tasks})
    assert {role[t["node_id"]] for t in data_tasks if t.get("node_id")} == {"data"}
    workers = [a for a in actors if a["class_name"] == "RayTrainWorker"]
    assert workers and {role[a["node_id"]] for a in workers} == {"train"}
