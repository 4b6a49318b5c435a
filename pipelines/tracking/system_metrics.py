"""MLflow's system metrics (CPU, memory, disk, network, GPU: ``system/*``) for a run, from one process."""

import logging

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

LOG = logging.getLogger(__name__)


class RunSystemMetrics(SystemMetricsMonitor):
    """MLflow's monitor (a thread sampling every ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` s,
    default 10) against ``run_id``, continuing the step count of a resumed run; ``finish``
    publishes one sample when none was (a job shorter than the interval still shows its machine).
    The thread stops by itself once the run is not RUNNING or the server does not answer."""

    def __init__(self, uri: str, run_id: str) -> None:
        super().__init__(run_id, resume_logging=True, tracking_uri=uri)
        self.published = 0

    def publish_metrics(self, metrics: dict) -> None:
        super().publish_metrics(metrics)
        self.published += 1

    def finish(self) -> None:
        if self.published == 0:
            try:
                self.collect_metrics()
                self.publish_metrics(self.aggregate_metrics())
            except Exception as exc:  # noqa: BLE001  (notes about the machine: never fail the job)
                LOG.warning("system metrics: could not log a sample: %s", exc)
        super().finish()
