"""Pre-flight: before any training, is this group of peers a better teacher than each learner?

PST's premise is an aggregate more reliable than the learner alone; measured here, with two
peers far weaker than the learner, it was not, and PST fell below the untuned model. The
pre-flight runs round 1's sample and peer turns on a few questions (a run directory of its own
under ``<output_dir>/preflight/``, resumable like any run) and reports, without reading gold:
each peer's estimated reliability and agreement, the pairwise agreement matrix, the share of
questions with a strict majority, and the estimated accuracy of the reliability-weighted
aggregate against each learner's answering alone. Where the pool has gold answers, the audited
accuracies stand beside the estimates, so a user sees whether the estimates can be trusted.

The learner's own side is its *solo* greedy answers to the same questions, not its in-chain
ones: measured on the offline-strong set, Qwen-0.5B gave Qwen-1.5B's answer on every question,
so its in-chain accuracy was the group's and said nothing about what it knows alone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pyarrow as pa

from pst_core.aggregate import aggregate_responses, audit_gold
from pst_core.answers import group_answers, is_equivalent
from pst_core.config import ExperimentConfig
from pst_core.errors import ConfigError
from pst_core.methods.pst import PeerRounds
from pst_core.recipes.peers import response_waves
from pst_core.reliability import answer_posteriors
from pst_core.runner import Runner
from pst_core.schemas import RELIABILITY_SCHEMA, RESPONSES_SCHEMA
from pst_core.steps import GenerateSolo
from pst_core.store import RunLayout, read_table


@dataclass(frozen=True)
class Solo:
    """One learner answering alone (greedy) on the pre-flight's questions."""

    learner: str
    estimate: float  # mean posterior, under the group's reliabilities, that its answer is right
    gold: float | None  # audit
    changed: float  # share of questions where its in-chain answer differs from its solo one


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
    solos: list[Solo]

    def verdicts(self) -> list[str]:
        """One line per learner: does the group look like a better teacher than it alone?"""
        lines = []
        for solo in self.solos:
            learner, own, group = solo.learner, solo.estimate, self.reliable_estimate
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
    waves = [*response_waves(pre, 1),
             [GenerateSolo(round=1, peer=learner, temperature=0.0) for learner in pre.learner_names]]
    for wave in waves:
        runner.run_wave(runner.ctx, wave)
    solos = {learner: read_table(runner.ctx.part(1, f"self_{learner}"), RESPONSES_SCHEMA)
             for learner in pre.learner_names}
    return report(runner.layout, runner.ctx.dataset(pre.data.pool), pre, solos)


def report(layout: RunLayout, pool: pa.Table, cfg: ExperimentConfig,
           solos: dict[str, pa.Table]) -> Preflight:
    """The pre-flight's findings from round 1's responses, ``peers.parquet`` and each learner's
    solo responses (``solos``: learner -> its ``RESPONSES_SCHEMA`` table)."""
    responses = read_table(layout.responses(1), RESPONSES_SCHEMA)
    reliability = read_table(layout.peers(1), RELIABILITY_SCHEMA)
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
    posteriors = answer_posteriors(responses, reliability)
    winners = [max(c, key=lambda x: x.posterior).posterior for c in posteriors.values() if c]
    gold = {rule: _gold_share(aggregate_responses(responses, rule, reliability=reliability)[0],
                              pool, cfg.answers.multi_answer)
            for rule in ("vote", "reliable")}
    return Preflight(
        run_dir=str(layout.root), n_questions=len(by_question), peers=reliability.to_pylist(),
        agreement=agreement, majority_share=majority, reliable_estimate=_mean(winners),
        reliable_gold=gold["reliable"], vote_gold=gold["vote"],
        solos=[_solo(learner, table, by_question, posteriors, pool, cfg.answers.multi_answer)
               for learner, table in solos.items()])


def _solo(learner: str, table: pa.Table, by_question: dict[str, dict[str, str | None]],
          posteriors: dict, pool: pa.Table, multi_answer: str) -> Solo:
    """The learner alone: the group's posterior of its solo answers (an answer no peer gave in
    the chain counts 0), their gold audit, and how often the chain changed its answer."""
    estimate, changed = [], []
    for qid, answer in zip(table.column("question_id").to_pylist(),
                           table.column("answer").to_pylist()):
        estimate.append(next((c.posterior for c in posteriors.get(qid, [])
                              if answer is not None and is_equivalent(answer, c.answer)), 0.0))
        in_chain = by_question.get(qid, {}).get(learner)
        changed.append(not (answer is in_chain is None or is_equivalent(answer, in_chain)))
    answers = table.select(["question_id", "answer"])
    unaudited = answers.append_column("gold_match", pa.nulls(len(answers), pa.bool_()))
    return Solo(learner=learner, estimate=_mean(estimate),
                gold=_gold_share(unaudited, pool, multi_answer), changed=_mean(changed))


def _gold_share(answers: pa.Table, pool: pa.Table, multi_answer: str) -> float | None:
    """Share of ``answers`` (question_id, answer, gold_match) that match the pool's gold
    (``audit_gold``); None where no question has a gold answer."""
    matches = [m for m in audit_gold(answers, pool, multi_answer).column("gold_match").to_pylist()
               if m is not None]
    return _mean(matches) if matches else None


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else float("nan")
