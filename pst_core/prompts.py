"""Prompt templates: solo, peer and self-verification prompts, chat or few-shot.

The solo instruction is the one measured to work on these models (docs/decisions.md): with a "careful
tutor" system prompt Qwen-0.5B skipped its working and scored 0/30; with this instruction it
scored 24/30. Base models without a chat template (Gemma-3-270M) get a few-shot prompt whose
worked examples are written for this project (not taken from any benchmark) and stop at the
next ``Question:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Style = Literal["chat", "fewshot"]

SOLO_INSTRUCTION = "{question} Think step by step. Then write the final line as 'The answer is N'."

FEWSHOT_EXAMPLES = (
    (
        "A baker made 50 rolls. She sold 18 rolls in the morning and 15 in the afternoon. "
        "How many rolls are left?",
        "She sold 18 + 15 = 33 rolls. 50 - 33 = 17 rolls are left. The answer is 17.",
    ),
    (
        "A train has 42 passengers. At the first stop 9 people get off and 16 get on. "
        "How many passengers are on the train now?",
        "After 9 get off there are 42 - 9 = 33. Then 33 + 16 = 49. The answer is 49.",
    ),
    (
        "Omar saves 5 dollars every week for 6 weeks. Then he spends 12 dollars on a book. "
        "How many dollars does he have left?",
        "He saves 5 * 6 = 30 dollars. 30 - 12 = 18 dollars are left. The answer is 18.",
    ),
)

# Where a few-shot completion ends: the model starting the next example.
FEWSHOT_STOP = ("\nQuestion:",)


@dataclass(frozen=True)
class Prompt:
    """A prompt before rendering: a user message (chat) or the complete text (few-shot)."""

    text: str
    style: Style


def solo_prompt(question: str, style: Style) -> Prompt:
    """The prompt of a model answering alone."""
    if style == "chat":
        return Prompt(SOLO_INSTRUCTION.format(question=question), "chat")
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEWSHOT_EXAMPLES)
    return Prompt(f"{shots}Question: {question}\nAnswer:", "fewshot")


PEER_INSTRUCTION = (
    "{question}\n\nOther students already answered this question. Their answers may be wrong.\n\n"
    "{earlier}\n\nSolve the problem yourself. Think step by step. Then write the final line as "
    "'The answer is N'."
)

VERIFY_INSTRUCTION = (
    "Question: {question}\n\nProposed solution: {response}\n\n"
    "Is the proposed solution's final answer correct? Reply with Yes or No."
)


def peer_prompt(question: str, earlier: list[str], style: Style) -> Prompt:
    """The prompt of a peer that sees the earlier peers' responses (docs/methods.md, step 1).

    With no earlier responses it is the solo prompt, so the first peer of a chain answers alone.
    Earlier responses are shown as "Student 1", "Student 2"... in answering order; model names
    are not shown, so a peer cannot defer to a famous name.
    """
    if not earlier:
        return solo_prompt(question, style)
    shown = "\n\n".join(f"Student {i}: {text.strip()}" for i, text in enumerate(earlier, 1))
    if style == "chat":
        return Prompt(PEER_INSTRUCTION.format(question=question, earlier=shown), "chat")
    shots = solo_prompt(question, "fewshot").text.rsplit("Question: ", 1)[0]
    return Prompt(f"{shots}{shown}\n\nQuestion: {question}\nAnswer:", "fewshot")


def verify_prompt(question: str, response: str, style: Style) -> Prompt:
    """The self-verification prompt: the model judges one of its own responses.

    Its score is log p("Yes") - log p("No") as the continuation (see ``evaluate``), a
    likelihood-based self-verification in the spirit of Song et al. ("Mind the Gap", 2024).
    """
    text = VERIFY_INSTRUCTION.format(question=question, response=response.strip())
    if style == "chat":
        return Prompt(text, "chat")
    return Prompt(f"{text}\nReply:", "fewshot")


def verify_choices(style: Style) -> tuple[str, str]:
    """The (yes, no) continuations scored after a verification prompt."""
    return ("Yes", "No") if style == "chat" else (" Yes", " No")


def stop_strings(style: Style) -> tuple[str, ...]:
    return FEWSHOT_STOP if style == "fewshot" else ()
