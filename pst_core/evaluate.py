"""Evaluate (docs/methods.md, step 5): exact match and the generator-verifier gap, per peer and round.

Exact match: one greedy response per question. Generator-verifier gap (Song et al., "Mind the
Gap", 2024): n sampled responses per question; the model scores each of its own responses with
a self-verification prompt, score = log p(Yes) - log p(No) for the first token of its reply; the gap is the
accuracy of the self-verified pick (the highest score; ties to the first sample) minus the mean
sample accuracy. Relative gap: divided by the headroom 1 - mean sample accuracy (NaN when the
samples are all right: there is nothing to gain).

This is the only stage that reads gold answers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pyarrow as pa

from pst_core.answers import matches_gold
from pst_core.generate import generate_solo
from pst_core.models.backend import Backend, SamplingParams
from pst_core.prompts import verify_choices, verify_prompt
from pst_core.schemas import EVAL_SCHEMA

if TYPE_CHECKING:
    from pst_core.config import EvalConfig

def evaluate_peer(
    questions: pa.Table,
    backend: Backend,
    cfg: EvalConfig,
    *,
    round_index: int,
    peer: str,
    benchmark: str,
    prompt_format: str,
    rules: Sequence[str],
    multi_answer: str,
    seed: int,
    sweep: Sequence[float] = (),
    gap_questions: pa.Table | None = None,
) -> pa.Table:
    """Greedy and sampled responses of one peer on one benchmark, judged and self-verified.

    ``sweep``: extra temperatures (the ``base`` method), each answered once per question and
    stored as kind ``t=<temperature>`` (temperature 0 is the greedy run itself).
    ``gap_questions``: the questions sampled for the GV gap; default: the first
    ``cfg.gap_limit`` of ``questions`` (a resumed evaluation passes only the missing ones).
    """
    if gap_questions is None:
        gap_questions = questions.slice(0, cfg.gap_limit)
    budget = cfg.max_new_tokens
    passes = [("greedy", questions, SamplingParams(max_new_tokens=budget)),
              *[(f"t={t:g}", questions,
                 SamplingParams(max_new_tokens=budget, temperature=t, seed=seed + 1))
                for t in sweep if t > 0],
              ("sample", gap_questions,
               SamplingParams(max_new_tokens=budget, temperature=cfg.temperature,
                              n=cfg.n_samples, seed=seed))]
    # One decode for every pass: the batch stays full while the short passes would run alone
    # at a few rows (the demo's 8 greedy and 16 sampled rows took two ~320-step passes).
    answered = generate_solo(
        pa.concat_tables([q.select(["id", "question"]) for _, q, _ in passes]), backend,
        [params for _, q, params in passes for _ in range(len(q))],
        peer=peer, model=peer, prompt_format=prompt_format, rules=rules).to_pylist()
    by_kind, start = {}, 0
    for kind, q, params in passes:
        size = len(q) * params.n
        by_kind[kind], start = answered[start : start + size], start + size
    gold = {r["id"]: r for r in (*questions.to_pylist(), *gap_questions.to_pylist())}
    style = backend.prompt_style(prompt_format)
    contexts = [backend.render(verify_prompt(gold[r["question_id"]]["question"], r["response"], style))
                for r in by_kind["sample"]]
    verdicts = backend.choice_logprobs(contexts, verify_choices(style))
    rows = []
    runs = [(kind, by_kind[kind], verdicts if kind == "sample" else None) for kind, *_ in passes]
    for kind, table, verify in runs:
        for i, r in enumerate(table):
            g = gold[r["question_id"]]
            rows.append({
                "round": round_index, "model": peer, "benchmark": benchmark,
                "question_id": r["question_id"], "kind": kind, "sample": r["sample"],
                "response": r["response"], "answer": r["answer"],
                "correct": matches_gold(r["answer"], g["answer"], g["all_answers"], multi_answer),
                "n_tokens": r["n_tokens"], "finish_reason": r["finish_reason"],
                "verify_score": None if verify is None else verify[i][0] - verify[i][1],
            })
    return pa.Table.from_pylist(rows, schema=EVAL_SCHEMA)


def eval_metrics(eval_table: pa.Table) -> list[dict]:
    """EM, mean sample accuracy, verified accuracy and the GV gap per (round, peer, benchmark)."""
    groups: dict[tuple, list[dict]] = {}
    for r in eval_table.to_pylist():
        groups.setdefault((r["round"], r["model"], r["benchmark"]), []).append(r)
    out = []
    for (round_index, peer, benchmark), rows in groups.items():
        greedy = [r for r in rows if r["kind"] == "greedy"]
        by_question: dict[str, list[dict]] = {}
        for r in rows:
            if r["kind"] == "sample":
                by_question.setdefault(r["question_id"], []).append(r)
        mean_acc = _mean([r["correct"] for s in by_question.values() for r in s])
        picks = [max(s, key=lambda r: (r["verify_score"], -r["sample"])) for s in by_question.values()]
        verified = _mean([p["correct"] for p in picks])
        gap = verified - mean_acc
        swept_kinds = sorted({r["kind"] for r in rows if r["kind"].startswith("t=")})
        sweep = {"0": _mean([r["correct"] for r in greedy])} | {
            kind[2:]: _mean([r["correct"] for r in rows if r["kind"] == kind]) for kind in swept_kinds
        }
        values = {
            "em": _mean([r["correct"] for r in greedy]),
            "mean_sample_acc": mean_acc,
            "verified_acc": verified,
            "gv_gap_abs": gap,
            "gv_gap_rel": gap / (1 - mean_acc) if mean_acc < 1 else math.nan,
            "n_questions": float(len(greedy)),
            "eval_tokens": float(sum(r["n_tokens"] for r in rows)),
        }
        if len(sweep) > 1:  # the base method: EM at each temperature, and the best of them
            best = max(sweep, key=lambda t: (sweep[t], -float(t)))
            values |= {f"em@t={t}": v for t, v in sweep.items()}
            values |= {"em_best": sweep[best], "best_temperature": float(best)}
        out += [{"round": round_index, "peer": peer, "benchmark": benchmark, "name": k, "value": v}
                for k, v in values.items()]
    return out


def _mean(values: Sequence[bool]) -> float:
    return sum(values) / len(values) if values else math.nan
