"""Generation stage: a model answers questions; responses and their extracted answers are kept.

The output table records everything needed to audit a response later: the exact rendered prompt,
the raw response, the extracted answer and the rule that found it, the tokens it cost and why it
ended. The gold answer is not an input of this stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pyarrow as pa

from pst_core.answers import RULES, extract_answer
from pst_core.errors import DataError
from pst_core.models.backend import Backend, PromptTooLong, SamplingParams, per_prompt
from pst_core.prompts import Prompt, solo_prompt, stop_strings
from pst_core.schemas import RESPONSES_SCHEMA


def generate_responses(
    question_ids: Sequence[str],
    prompts: Sequence[Prompt],
    backend: Backend,
    params: SamplingParams | Sequence[SamplingParams],
    *,
    peer: str,
    model: str,
    position: int = 0,
    rules: Sequence[str] = RULES,
) -> pa.Table:
    """Render ``prompts``, generate ``n`` responses each (``params``: one for all prompts, or one
    per prompt), extract their answers.

    Returns:
        A ``RESPONSES_SCHEMA`` table, rows in question order then sample order.
    """
    rendered = [backend.render(p) for p in prompts]
    style_stops = {s for p in prompts for s in stop_strings(p.style)}
    per = [replace(p, stop=tuple(sorted(set(p.stop) | style_stops)))
           for p in per_prompt(params, len(prompts))]
    try:
        outputs = backend.generate(rendered, per)
    except PromptTooLong as e:
        raise DataError(f"question {question_ids[e.index]!r} ({peer}): {e}") from None
    rows: dict[str, list] = {name: [] for name in RESPONSES_SCHEMA.names}
    for qid, prompt_text, generations in zip(question_ids, rendered, outputs, strict=True):
        for sample, gen in enumerate(generations):
            extraction = extract_answer(gen.text, rules)
            rows["question_id"].append(qid)
            rows["peer"].append(peer)
            rows["model"].append(model)
            rows["position"].append(position)
            rows["sample"].append(sample)
            rows["prompt"].append(prompt_text)
            rows["response"].append(gen.text)
            rows["answer"].append(extraction.answer)
            rows["answer_rule"].append(extraction.rule)
            rows["n_tokens"].append(gen.n_tokens)
            rows["finish_reason"].append(gen.finish_reason)
    return pa.table(rows, schema=RESPONSES_SCHEMA)


def generate_solo(
    questions: pa.Table,
    backend: Backend,
    params: SamplingParams | Sequence[SamplingParams],
    *,
    peer: str,
    model: str,
    prompt_format: str = "auto",
    rules: Sequence[str] = RULES,
) -> pa.Table:
    """Each question answered by one model alone (the solo prompt), ``n`` times (``params``:
    one for all questions, or one per question)."""
    style = backend.prompt_style(prompt_format)
    prompts = [solo_prompt(q, style) for q in questions.column("question").to_pylist()]
    return generate_responses(
        questions.column("id").to_pylist(), prompts, backend, params,
        peer=peer, model=model, rules=rules,
    )
