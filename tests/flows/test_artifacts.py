"""The per-round Prefect table artifact: its rows from metrics.parquet, its key, and the artifact
itself created inside a flow run and read back through the Prefect API."""

import json
import re
from pathlib import Path

from prefect import flow
from prefect.artifacts import Artifact

from flows.artifacts import PrefectArtifacts, artifact_key, round_table
from pst_core.store import RunLayout
from tests.unit.test_tracking import write_run


def test_round_table_has_one_row_per_peer_and_benchmark(tmp_path):
    _, layout = write_run(tmp_path)
    # Greedy: q1 right, q2 wrong (EM 50%); samples: one right of two each, the verified pick
    # too (gap 0); pseudo-label accuracy 0.5 on the training side only.
    assert round_table(layout, 1) == [
        {"round": 1, "peer": peer, "benchmark": "synthetic-eval", "EM (%)": 50.0,
         "GV-gap abs (pts)": 0.0, "GV-gap rel (%)": 0.0, "pseudo-label acc (%)": 50.0}
        for peer in ("llama", "qwen")]
    assert [row["pseudo-label acc (%)"] for row in round_table(layout, 0)] == [None, None]


def test_artifact_key_uses_only_what_prefect_allows():
    key = artifact_key(RunLayout(Path("runs") / "GSM8K_Pilot" / "run.v2--b"), 3)
    assert key == "pst-gsm8k-pilot-run-v2-b-round-3"
    assert re.fullmatch(r"[a-z0-9-]+", key)


def test_artifact_created_in_a_flow_run(tmp_path, prefect_harness):
    _, layout = write_run(tmp_path)

    @flow
    def log_round_one():
        tracker = PrefectArtifacts()
        tracker.log_round(layout, 1)
        tracker.close()

    log_round_one()
    artifact = Artifact.get(artifact_key(layout, 1))
    assert artifact is not None and artifact.type == "table"
    assert artifact.flow_run_id is not None
    assert json.loads(artifact.data) == round_table(layout, 1)
    assert "Round 1" in artifact.description
