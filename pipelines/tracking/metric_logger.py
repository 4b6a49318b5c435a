"""Metric points from one process into one MLflow run, without the caller ever waiting on the network.

``log`` filters a dict and puts it on a bounded queue; a sender thread appends each batch to a
pending file (JSON lines on local disk; in memory without one) and then uploads what the file
holds, so a batch is on disk before its request leaves (a worker killed mid-request loses
nothing). When the queue is full, ``log`` moves it, with the new batch, to the file itself. While
the server does not answer the file grows and is replayed every ``retry_s``; ``start`` replays
what a killed predecessor left (a restarted worker, or the driver at the end of the job), and
``close`` replays once more.

Exactly once per (key, step): ``log`` drops a point whose key already has one at that step or later
(in MLflow when ``start`` ran, or in the pending file), so a resumed worker does not repeat the
steps it recomputes; a replay uploads only the points above the server's last step of their key
(asked again after any failure), sorted by step, so a replay cut short, or a batch that reached
the server whose answer did not, is never uploaded twice.
"""

import json
import logging
import queue
import threading
import time
from pathlib import Path

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from pipelines.tracking.mlflow_run import redact

LOG = logging.getLogger(__name__)
PENDING_FILE = "mlflow-pending.jsonl"
BATCH_LIMIT = 1000  # MLflow's log_batch limit for metrics


class MetricLogger:
    """Logs metric dicts for one run from one process (see the module docstring).

    Args:
        uri: tracking URI.
        run_id: the run.
        spool: the pending file (kept across a restart); None: pending points live in memory.
        queue_size: batches (``log`` calls) queued before ``log`` writes to the pending file.
        retry_s: seconds between replays while the server does not answer.
    """

    def __init__(
        self,
        uri: str,
        run_id: str,
        spool: str | Path | None = None,
        queue_size: int = 256,
        retry_s: float = 5.0,
    ) -> None:
        self.client = MlflowClient(uri)
        self.uri, self.run_id, self.retry_s = uri, run_id, retry_s
        self.spool = Path(spool) if spool is not None else None
        self._queue: queue.Queue[list[Metric]] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()  # the pending points (file or list); never held on the network
        self._replaying = threading.Lock()  # one replay at a time (sender, flush, close)
        self._unsent = 0  # batches queued or being sent
        self._memory: list[Metric] = []
        self._last_step: dict[str, int] = {}
        self._server_last: dict[str, int] | None = None  # the server's last step per key; None: ask
        self._down = False  # warned about an outage that has not ended
        self._last_try = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "MetricLogger":
        """Learn the last logged step per key (server and pending file), replay what a previous
        process left pending, and start the sender; returns self."""
        for point in self._read_pending()[0]:
            self._last_step[point.key] = max(self._last_step.get(point.key, -1), point.step)
        try:
            self._server_last = self._server_last_steps()
            for key, step in self._server_last.items():
                self._last_step[key] = max(self._last_step.get(key, -1), step)
        except Exception as exc:  # noqa: BLE001  (unreachable: every point is kept until it answers)
            self._went_down(exc)
        if self._server_last is not None and self._has_pending():
            self._replay()
        self._thread = threading.Thread(target=self._send_loop, name="mlflow-metrics", daemon=True)
        self._thread.start()
        return self

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Queue ``metrics`` at ``step`` (keys already logged at ``step`` or later are skipped);
        never waits on the network. A full queue goes, with this batch, to the pending file."""
        now = int(time.time() * 1000)
        batch = [
            Metric(k, float(v), now, step) for k, v in metrics.items() if step > self._last_step.get(k, -1)
        ]
        for metric in batch:
            self._last_step[metric.key] = step
        if not batch:
            return
        with self._lock:
            self._unsent += 1
        try:
            self._queue.put_nowait(batch)
        except queue.Full:
            with self._lock:
                self._unsent -= 1
            self.persist()
            self._append(batch)

    def persist(self) -> None:
        """Move what is queued to the pending file (local disk), and wait for the batch the sender
        has in hand to be there too: call it before a checkpoint, so a worker killed after the
        checkpoint has lost no point of the steps before it."""
        points, taken = [], 0
        while True:
            try:
                points += self._queue.get_nowait()
            except queue.Empty:
                break
            taken += 1
            with self._lock:
                self._unsent -= 1
        if points:
            self._append(points)
        for _ in range(taken):
            self._queue.task_done()
        self._queue.join()  # a batch the sender took off the queue is in the file too

    def flush(self, timeout: float = 60.0) -> int:
        """Wait (up to ``timeout``) until the queue is sent and a replay was tried; returns the
        points still pending."""
        deadline = time.monotonic() + timeout
        while self._unsent > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.pending():
            self._replay()
        return self.pending()

    def wait_sent(self, timeout: float) -> bool:
        """Wait (up to ``timeout``; the caller never touches the network) until the sender has
        uploaded every queued and pending point; False at once while the server does not answer,
        or when the time runs out (the points stay pending)."""
        deadline = time.monotonic() + timeout
        while not self._down and time.monotonic() < deadline:
            if self._unsent == 0 and not self._has_pending():
                return True
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 60.0) -> int:
        """Stop the sender, move what is queued to the pending file and replay it once; returns
        the points still pending (they stay in the file for the next ``start``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self.persist()
        if self.pending() and self._replay() is False:
            where = f"in {self.spool}" if self.spool else "in memory: they are lost"
            LOG.warning(
                "MLflow at %s: %d metric points are still pending %s (replayed when the run resumes)",
                redact(self.uri),
                self.pending(),
                where,
            )
        return self.pending()

    def pending(self) -> int:
        return len(self._read_pending()[0])

    def tag(self, key: str, value: str) -> None:
        """Set a run tag; when the server does not answer, warn and go on (tags are notes)."""
        try:
            self.client.set_tag(self.run_id, key, value[:5000])  # MLflow's tag value limit
        except Exception as exc:  # noqa: BLE001
            LOG.warning("MLflow at %s: could not set tag %s=%r: %s", redact(self.uri), key, value, exc)

    def _send_loop(self) -> None:
        while not (self._stop.is_set() and self._queue.empty()):
            try:
                batch = self._queue.get(timeout=min(self.retry_s, 0.5))
            except queue.Empty:
                batch = None
            if batch is not None:
                try:
                    self._append(batch)  # on disk before its request leaves
                finally:
                    self._queue.task_done()  # what ``persist`` waits for
            try:
                self._send_pending()
            finally:
                if batch is not None:
                    with self._lock:
                        self._unsent -= 1

    def _send_pending(self) -> None:
        """Upload what is pending (while the server does not answer, every ``retry_s``)."""
        due = not self._down or time.monotonic() - self._last_try >= self.retry_s
        if due and self._has_pending():
            self._replay()

    def _upload(self, points: list[Metric]) -> None:
        for start in range(0, len(points), BATCH_LIMIT):
            self.client.log_batch(self.run_id, metrics=points[start : start + BATCH_LIMIT], synchronous=True)

    def _server_last_steps(self) -> dict[str, int]:
        run = self.client.get_run(self.run_id)
        # A run's latest metric per key is the one at its largest step (MLflow's own
        # SystemMetricsMonitor reads the steps here too; data.metrics keeps only the values).
        return {m.key: m.step for m in run.data._metric_objs}

    def _replay(self) -> bool:
        """Upload the pending points above the server's last step of their key, by step; drop
        them from the pending file. False when the server does not answer."""
        with self._replaying:
            self._last_try = time.monotonic()
            points, marker = self._read_pending()
            try:
                server = self._server_last if self._server_last is not None else self._server_last_steps()
                todo = sorted((p for p in points if p.step > server.get(p.key, -1)), key=lambda p: p.step)
                self._server_last = None  # unknown until this upload is known to have gone through
                self._upload(todo)
            except Exception as exc:  # noqa: BLE001  (any transport or server error: keep the points)
                self._went_down(exc)
                return False
            for p in todo:
                server[p.key] = max(server.get(p.key, -1), p.step)
            self._server_last = server
            self._drop_pending(marker)
        if self._down:
            LOG.warning(
                "MLflow at %s answers again: uploaded %d pending metric points (%d were there already)",
                redact(self.uri),
                len(todo),
                len(points) - len(todo),
            )
            self._down = False
        return True

    def _went_down(self, exc: Exception) -> None:
        self._last_try = time.monotonic()
        if self._down:
            return
        self._down = True
        where = f"; every point is kept in {self.spool}" if self.spool else ""
        LOG.warning(
            "MLflow at %s is unreachable (%s): training continues, metric points are kept to upload "
            "when it answers%s",
            redact(self.uri),
            str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            where,
        )

    def _has_pending(self) -> bool:
        with self._lock:
            if self.spool is None:
                return bool(self._memory)
            return self.spool.is_file() and self.spool.stat().st_size > 0

    def _append(self, points: list[Metric]) -> None:
        with self._lock:
            if self.spool is None:
                self._memory += points
                return
            self._write_lines(points)

    def _write_lines(self, points: list[Metric]) -> None:
        lines = "".join(
            json.dumps(
                {
                    "run_id": self.run_id,
                    "key": m.key,
                    "value": m.value,
                    "step": m.step,
                    "timestamp": m.timestamp,
                }
            )
            + "\n"
            for m in points
        )
        self.spool.parent.mkdir(parents=True, exist_ok=True)
        with open(self.spool, "a") as f:  # one write: a killed process leaves whole lines
            f.write(lines)
            f.flush()

    def _read_pending(self) -> tuple[list[Metric], int]:
        """(points in the order they were kept, a marker for ``_drop_pending``)."""
        with self._lock:
            if self.spool is None:
                points = list(self._memory)
                return points, len(points)
            if not self.spool.is_file():
                return [], 0
            data = self.spool.read_bytes()
        end = data.rfind(b"\n") + 1  # a line cut by a kill mid-write is left for later
        points = []
        for line in data[:end].decode().splitlines():
            p = json.loads(line)
            if p["run_id"] == self.run_id:
                points.append(Metric(p["key"], p["value"], p["timestamp"], p["step"]))
        return points, end

    def _drop_pending(self, marker: int) -> None:
        """Forget the first ``marker`` pending points (bytes of the file), keeping any appended
        since they were read."""
        with self._lock:
            if self.spool is None:
                del self._memory[:marker]
                return
            rest = self.spool.read_bytes()[marker:]
            tmp = self.spool.with_name(self.spool.name + ".tmp")
            tmp.write_bytes(rest)
            tmp.replace(self.spool)
