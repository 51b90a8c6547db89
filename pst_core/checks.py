"""Checks of a config's inputs that validation cannot make: do the files and models it names exist?

``pst validate``, ``pst run`` and ``Runner.setup`` call :func:`check_inputs` so that a typo in
a path, a column or a model source fails before anything is written, not an hour into a run. It
is cheap: no model is loaded, a data file is read up to its first record, a GGUF up to its magic
bytes, and nothing is fetched (a Hub id is only checked for its ``org/name`` shape).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pst_core.errors import ConfigError, PSTError

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig


def check_inputs(cfg: ExperimentConfig, where: str = "") -> None:
    """Check the run's output directory, data files and model sources; report every problem.

    A dataset the run has already ingested (``data/<name>.parquet`` in its directory) is not
    checked again: a resumed run reads that copy, not the source.

    Args:
        cfg: the experiment config.
        where: the config file, to prefix the message with (``data/configs/demo.yaml: ``).

    Raises:
        ConfigError: one line, every problem as ``field.path: what is wrong``.
    """
    from pst_core.data.ingest import check_dataset
    from pst_core.models.source import check_source
    from pst_core.store import RunLayout, check_output_dir

    layout = RunLayout.for_run(cfg.output_dir, cfg.experiment, cfg.run_name)
    checks = [("output_dir", lambda: check_output_dir(layout.root, "run directory"))]
    for field, spec in [("data.pool", cfg.data.pool),
                        *[(f"data.eval.{i}", s) for i, s in enumerate(cfg.data.eval)]]:
        if not layout.dataset(spec.name).is_file():
            checks.append((field, lambda spec=spec: check_dataset(spec)))
    for i, peer in enumerate(cfg.peers):
        checks.append((f"peers.{i}.source",
                       lambda peer=peer: check_source(peer.source, peer.revision)))
    scorer = getattr(getattr(cfg.method, "pmi", None), "scorer", None)
    if scorer is not None:
        checks.append(("method.pmi.scorer", lambda: check_source(scorer)))
    problems = []
    for field, check in checks:
        try:
            check()
        except PSTError as e:
            problems.append(f"{field}: {e}")
    if problems:
        prefix = f"{where}: " if where else ""
        raise ConfigError(prefix + "; ".join(problems))
