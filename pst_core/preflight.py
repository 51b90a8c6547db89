"""Pre-flight: before any training, is this group of peers a better teacher than each learner?

PST's premise is an aggregate more reliable than the learner alone; measured here, with two
peers far weaker than the learner, it was not, and PST fell below the untuned model. The
pre-flight runs round 1's sample and peer turns on a few questions (a run directory of its own
under ``<output_dir>/preflight/``, resumable like any run) and reports, without reading gold:
each peer's estimated reliability and agreement, the pairwise agreement matrix, the share of
questions with a strict majority, and the estimated accuracy of the reliability-weighted
aggregate against each learner's own. Where the pool has gold answers, the audited accuracies
stand beside the estimates, so a user sees whether the estimates can be trusted.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pyarrow as pa

from pst_core.aggregate import aggregate_responses, audit_gold
from pst_core.answers import group_answers, is_equivalent
from pst_core.config import ExperimentConfig
from pst_core.errors import ConfigError
from pst_core.generate import RESPONSES_SCHEMA
from pst_core.methods.pst import PeerRounds
from pst_core.reliability import RELIABILITY_SCHEMA, answer_posteriors
from pst_core.runner import Runner
from pst_core.steps import SampleQuestions
from pst_core.store import RunLayout, read_table


@dataclass(frozen=True)
class Preflight:
    """What the pre-flight found (``gold_*`` are audits: None without gold answers)."""

    run_dir: str
    n_questions: int
    peers: list[dict]  # RELIABILITY_SCHEMA rows, in answering order
    agreement: dict[tuple[str, str], float]  # (a, b): share of a's answers b gave too
    majority_share: float  # questions where more than half the peers agree
    reliable_estimate: float  # mean posterior of the reliable aggregate's answers (label-free)
    reliable_gold: float | None
    vote_gold: float | None
    learners: list[str]

    def verdicts(self) -> list[str]:
        """One line per learner: does the group look like a better teacher than it alone?"""
        estimates = {p["peer"]: p["estimated_accuracy"] for p in self.peers}
        lines = []
        for learner in self.learners:
            own, group = estimates[learner], self.reliable_estimate
            if group > own + 0.05:
                lines.append(f"{learner}: the group looks like a better teacher than {learner} "
                             f"alone (estimated {group:.0%} vs {own:.0%}): PST's premise holds.")
            else:
                lines.append(f"{learner}: the group does not look better than {learner} alone "
                             f"(estimated {group:.0%} vs {own:.0%}): plain vote would teach it "
                             "its weaker peers' answers; use pst-robust or sept.")
        return lines


def preflight_config(cfg: ExperimentConfig, questions: int) -> ExperimentConfig:
    """The pre-flight's own experiment: round 1 of ``cfg`` on ``questions`` pool questions."""
    if not isinstance(cfg.method, PeerRounds):
        raise ConfigError(f"pst preflight needs a method whose peers answer in turn (pst, "
                          f"pst-uniform, pst-paper, pst-robust), got {cfg.method.name}")
    return cfg.model_copy(update={"questions_per_round": questions, "rounds": 1, "run": None,
                                  "output_dir": f"{cfg.output_dir}/preflight"})


def run_preflight(cfg: ExperimentConfig, questions: int = 32) -> Preflight:
    """Generate round 1's peer turns on a small sample (resumable) and report on them."""
    pre = preflight_config(cfg, questions)
    runner = Runner(pre)
    runner.setup()
    waves = [*pre.method.before_sample(pre, 1), [SampleQuestions(round=1)],
             *pre.method.response_steps(pre, 1)]
    for wave in waves:
        runner.run_wave(runner.ctx, wave)
    return report(runner.layout, runner.ctx.dataset(pre.data.pool), pre)


def report(layout: RunLayout, pool: pa.Table, cfg: ExperimentConfig) -> Preflight:
    """The pre-flight's findings from round 1's responses and ``peers.parquet``."""
    responses = read_table(layout.responses(1), RESPONSES_SCHEMA)
    reliability = read_table(layout.round_dir(1) / "peers.parquet", RELIABILITY_SCHEMA)
    by_question: dict[str, dict[str, str | None]] = {}
    for row in responses.to_pylist():
        by_question.setdefault(row["question_id"], {})[row["peer"]] = row["answer"]
    peers = reliability.column("peer").to_pylist()
    agreement = {
        (a, b): _mean([is_equivalent(q.get(a), q.get(b)) for q in by_question.values()
                       if q.get(a) is not None])
        for a, b in itertools.permutations(peers, 2)}
    majority = _mean([max((len(g) for g in group_answers(list(q.values()))), default=0)
                      > len(q) / 2 for q in by_question.values()])
    winners = [max(c, key=lambda x: x.posterior).posterior
               for c in answer_posteriors(responses, reliability).values() if c]
    audits = {rule: audit_gold(aggregate_responses(responses, rule, reliability=reliability)[0],
                               pool, cfg.answers.multi_answer).column("gold_match").to_pylist()
              for rule in ("vote", "reliable")}
    gold = {rule: _mean([m for m in matches if m is not None]) if any(
        m is not None for m in matches) else None for rule, matches in audits.items()}
    return Preflight(
        run_dir=str(layout.root), n_questions=len(by_question), peers=reliability.to_pylist(),
        agreement=agreement, majority_share=majority, reliable_estimate=_mean(winners),
        reliable_gold=gold["reliable"], vote_gold=gold["vote"], learners=cfg.learner_names)


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else float("nan")
