"""Serving the pipeline as a scheduled deployment on this machine (``flow.serve``).

For other machines use ``deployments/prefect.yaml`` with a process (or Docker/Kubernetes) work
pool; see the README.
"""

from __future__ import annotations

from pathlib import Path

from flows.pipeline import pipeline_flow


def serve_pipeline(
    config: Path, name: str = "pst-pipeline", cron: str | None = "0 3 * * *",
    interval: int | None = None,
) -> None:
    """Register ``pst-pipeline/<name>`` with a schedule and default parameters, then serve it.

    The config path is made absolute: served runs start in their own working directory.
    """
    pipeline_flow.serve(
        name=name,
        cron=cron,
        interval=interval,
        parameters={"config_path": str(Path(config).resolve())},
        tags=["pst"],
        description="Peer-Predictive Self-Training: round 0 evaluation, then R rounds.",
    )
