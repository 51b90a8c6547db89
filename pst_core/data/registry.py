"""The benchmarks this project knows by name: where they live on the Hub and how to read them.

Hub ids, configs and columns come from the dataset cards (see the benchmark folder's SOURCES.md);
entries marked ``verified=False`` were not loadable from this project's offline machines and
should be checked the first time they are used. Each benchmark can also be read from a local
JSONL in the project's normalized format (id, question, answer, meta.all_answers).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pst_core.data.spec import ColumnMap


@dataclass(frozen=True)
class Benchmark:
    """A named benchmark.

    Attributes:
        hub_id: Hugging Face dataset id loaded with ``datasets.load_dataset``.
        hub_config: the dataset config name (None for the default).
        hub_splits: Hub split -> our split (``train`` or ``eval``); several Hub splits may map to
            one of ours. Benchmarks whose Hub version has one split get a hash split instead.
        hub_columns: where question/answer live in the Hub rows.
        answer_format: ``plain``, or ``gsm8k`` (the gold is the text after ``####``).
        hub_filter: (column, value) that selects this benchmark's rows (LILA mixes several).
        local_columns: the columns of the project's normalized JSONL format.
    """

    name: str
    hub_id: str
    hub_config: str | None
    hub_splits: dict[str, str]
    hub_columns: ColumnMap
    license: str
    answer_format: str = "plain"
    hub_filter: tuple[str, str] | None = None
    verified: bool = True
    local_columns: ColumnMap = field(
        default_factory=lambda: ColumnMap(id="id", all_answers="meta.all_answers")
    )


_LILA = ColumnMap(question="input", answer="output_answer")

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in [
        Benchmark(
            name="gsm8k",
            hub_id="openai/gsm8k",
            hub_config="main",
            hub_splits={"train": "train", "test": "eval"},
            hub_columns=ColumnMap(question="question", answer="answer"),
            answer_format="gsm8k",
            license="MIT",
        ),
        Benchmark(
            name="math500",
            hub_id="HuggingFaceH4/MATH-500",
            hub_config=None,
            hub_splits={"test": "eval"},
            hub_columns=ColumnMap(question="problem", answer="answer", id="unique_id"),
            license="MIT",
        ),
        Benchmark(
            name="multiarith",
            hub_id="ChilleD/MultiArith",
            hub_config=None,
            hub_splits={"train": "train", "test": "eval"},
            hub_columns=ColumnMap(question="question", answer="final_ans"),
            license="not stated (Roy & Roth 2015, via MAWPS)",
            verified=False,
        ),
        Benchmark(
            name="simuleq",
            hub_id="allenai/lila",
            hub_config="simuleq",
            hub_splits={"train": "train", "validation": "train", "test": "eval"},
            hub_columns=_LILA,
            license="CC BY 4.0 (LILA); original not stated (Kushman et al. 2014)",
            verified=False,
        ),
        Benchmark(
            name="addsub",
            hub_id="allenai/lila",
            hub_config="addsub",
            hub_splits={"train": "train", "validation": "train", "test": "eval"},
            hub_columns=_LILA,
            license="CC BY 4.0 (LILA); original not stated (Hosseini et al. 2014)",
            verified=False,
        ),
        Benchmark(
            name="singleeq",
            hub_id="allenai/lila",
            hub_config="singleq",
            hub_splits={"train": "train", "validation": "train", "test": "eval"},
            hub_columns=_LILA,
            license="CC BY 4.0 (LILA); original not stated (Koncel-Kedziorski et al. 2015)",
            verified=False,
        ),
        Benchmark(
            name="svamp",
            hub_id="ChilleD/SVAMP",
            hub_config=None,
            hub_splits={"train": "train", "test": "eval"},
            hub_columns=ColumnMap(question=["Body", "Question"], answer="Answer", id="ID"),
            license="MIT",
            verified=False,
        ),
    ]
}


def get_benchmark(name: str) -> Benchmark:
    from pst_core.errors import DataError

    try:
        return BENCHMARKS[name]
    except KeyError:
        known = ", ".join(sorted(BENCHMARKS) + ["synthetic"])
        raise DataError(f"unknown benchmark {name!r}; known: {known}") from None
