"""A throwaway Ray cluster of `ray start` processes on loopback, for end-to-end tests.

Every node gets free ports (the default dashboard-agent port 52365 is taken while the tests'
own local instance runs) and the cluster gets its own temp dir, so `stop` kills only its
processes (``ray stop`` would also stop the other Ray instance of the test session).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalCluster:
    """``with LocalCluster() as cluster:`` a head (and ``add_node`` workers) on 127.0.0.1."""

    def __init__(self, head_cpus: int = 2, head_resources: dict[str, float] | None = None) -> None:
        self.temp_dir = Path("/tmp") / f"ray-test-{os.getpid()}-{free_port()}"  # short: socket path limit
        self.port, self.dashboard = free_port(), free_port()
        self.env = dict(
            os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", RAY_AUTH_MODE="token"
        )
        self.env.pop("RAY_ADDRESS", None)
        self._start(
            [
                "--head",
                f"--port={self.port}",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard}",
                f"--temp-dir={self.temp_dir}",
            ],
            head_cpus,
            head_resources,
        )

    def _start(self, args: list[str], cpus: int, resources: dict[str, float] | None) -> None:
        extra = [f"--resources={json.dumps(resources)}"] if resources else []
        subprocess.run(
            [
                RAY,
                "start",
                *args,
                "--node-ip-address=127.0.0.1",
                f"--num-cpus={cpus}",
                f"--dashboard-agent-listen-port={free_port()}",
                "--disable-usage-stats",
                *extra,
            ],
            check=True,
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            timeout=120,
        )

    def add_node(self, cpus: int, resources: dict[str, float] | None = None) -> None:
        """A worker raylet joining the head, with its own ports and custom resources."""
        self._start([f"--address=127.0.0.1:{self.port}"], cpus, resources)

    def run(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        """A ``ray`` CLI command against this cluster (``job ...``, ``list ...``)."""
        return subprocess.run(
            [RAY, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
        )

    def submit(
        self, entrypoint: list[str], env_vars: dict[str, str], working_dir: bool = True
    ) -> subprocess.CompletedProcess:
        """``ray job submit [--working-dir .]``; retries while the head's job agent registers.

        Without ``working_dir`` the job runs the installed project (the venv has it, editable):
        raylets sharing one machine also share the session folder, and one node's runtime-env
        agent deletes the unpacked working dir that another node's workers still run in.
        """
        runtime_env = json.dumps({"env_vars": env_vars})
        upload = ["--working-dir", "."] if working_dir else []
        for _ in range(30):
            job = self.run(
                "job",
                "submit",
                "--address",
                f"http://127.0.0.1:{self.dashboard}",
                *upload,
                "--runtime-env-json",
                runtime_env,
                "--",
                *entrypoint,
            )
            if "No available agent" not in job.stderr:
                return job
            time.sleep(2)
        return job

    def state(self, kind: str) -> list[dict]:
        """``ray list <kind>`` (nodes, tasks, actors, placement-groups) as JSON rows."""
        listed = self.run(
            "list",
            kind,
            "--address",
            f"127.0.0.1:{self.port}",
            "--format",
            "json",
            "--limit",
            "10000",
            "--detail",
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr[-2000:]
        return json.loads(listed.stdout)

    def stop(self) -> None:
        """Kill every process started with this cluster's temp dir (the head's and its nodes')."""
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if str(self.temp_dir).encode() in cmdline.read_bytes():
                    os.kill(int(cmdline.parent.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue  # the process ended meanwhile
        time.sleep(1)
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
