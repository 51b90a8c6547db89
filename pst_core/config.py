"""One typed experiment config, loaded from YAML and validated at load time.

Every field has a type, a default and a description (the README's config reference is generated
from these descriptions, see ``describe_fields``). Unknown keys are errors, and every error names
the field path and the file: ``data/configs/demo.yaml: pmi.beta: Input should be greater than or
equal to 0 (got -1)``. Stages receive only their own section, never the root config.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pst_core.errors import ConfigError

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnMap(_Section):
    """Where the fields of a local data file live (dotted paths reach into nested JSON)."""

    question: str | list[str] = Field(
        "question", description="Column holding the question text; a list is joined with spaces."
    )
    answer: str | None = Field(
        "answer", description="Column holding the gold answer (null for unlabeled data)."
    )
    id: str | None = Field(None, description="Column holding a stable row id; default: row number.")
    all_answers: str | None = Field(
        None, description="Column holding a list of every accepted gold answer (e.g. SimulEq)."
    )


class SyntheticConfig(_Section):
    n: int = Field(300, gt=0, description="Number of generated two-step word problems.")
    seed: int = Field(0, description="Seed of the problem generator (same seed, same problems).")


class DatasetConfig(_Section):
    name: str = Field(
        ..., pattern=_NAME, description="Name of the dataset; its table is data/<name>.parquet."
    )
    benchmark: str | None = Field(
        None,
        description="Registry benchmark (multiarith, simuleq, math500, gsm8k, addsub, singleeq, "
        "svamp) or 'synthetic'. Without `path` a registry benchmark is loaded from the Hub.",
    )
    path: str | None = Field(
        None, description="Local JSONL / JSON / CSV / Parquet file to read instead of the Hub."
    )
    columns: ColumnMap | None = Field(
        None, description="Column mapping for `path`; default: the benchmark's, else ColumnMap()."
    )
    split: Literal["train", "eval", "all"] | None = Field(
        None,
        description="Which rows this dataset contributes: train, eval or all; default: train "
        "for the pool, eval for data.eval[].",
    )
    eval_fraction: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="Share of questions put in the eval split when the source has no split "
        "(by hash of the normalized question, so duplicates never straddle it).",
    )
    limit: int | None = Field(
        None, gt=0, description="Keep only the first N rows of the chosen split (after splitting)."
    )
    synthetic: SyntheticConfig = Field(
        default_factory=SyntheticConfig, description="Options when benchmark is 'synthetic'."
    )

    @model_validator(mode="after")
    def _has_source(self) -> DatasetConfig:
        if self.benchmark is None and self.path is None:
            raise ValueError("set `benchmark` (a registry name or 'synthetic') or `path`")
        return self


class DataConfig(_Section):
    pool: DatasetConfig = Field(
        ..., description="The unlabeled question pool that training rounds sample from."
    )
    eval: list[DatasetConfig] = Field(
        default_factory=list, description="Held-out benchmarks evaluated after every round."
    )


class PeerConfig(_Section):
    name: str = Field(..., pattern=_NAME, description="Short name used in tables and paths.")
    source: str = Field(
        ...,
        description="Model source: an offline packaged model (`pst models list`), a Hub id "
        "(org/name), a local model directory, or a .gguf file.",
    )
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    prompt_format: Literal["auto", "chat", "fewshot"] = Field(
        "auto",
        description="chat: the model's chat template; fewshot: a plain few-shot prompt for base "
        "models; auto: chat when the tokenizer has a chat template.",
    )
    backend: Literal["transformers", "vllm"] = Field(
        "transformers", description="Inference backend (vllm needs a GPU and the gpu extra)."
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weights dtype; auto: bf16 where the device supports it, else fp32."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to run the model; auto: cuda when available."
    )
    batch_size: int = Field(16, gt=0, description="Prompts per generation/scoring batch.")
    max_new_tokens: int | None = Field(
        None,
        gt=0,
        description="This peer's token budget, overriding generation.max_new_tokens and "
        "eval.max_new_tokens (cut a weak model that rambles shorter).",
    )
    trust_remote_code: bool = Field(
        False, description="Allow Hub models to run their own code (off unless set)."
    )


class GenerationConfig(_Section):
    max_new_tokens: int = Field(256, gt=0, description="Token budget of one response.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")
    order: Literal["config", "rotate", "consistency"] = Field(
        "config",
        description="Peer order: config order; rotate per question; or consistency (most "
        "self-consistent peer first, a label-free ranking).",
    )
    consistency_questions: int = Field(
        16, gt=0, description="Pool questions used to rank peers when order is consistency."
    )
    consistency_samples: int = Field(
        4, ge=2, description="Samples per question used to rank peers when order is consistency."
    )


class AnswersConfig(_Section):
    rules: list[Literal["boxed", "answer_is", "hash", "last_number"]] = Field(
        default_factory=lambda: ["boxed", "answer_is", "hash", "last_number"],
        min_length=1,
        description="Extraction rules tried in order; the first that matches gives the answer.",
    )
    multi_answer: Literal["any", "first"] = Field(
        "any",
        description="For golds with several answers (SimulEq): accept any of them, or only the "
        "first.",
    )


class AggregateConfig(_Section):
    method: Literal["vote", "final"] = Field(
        "vote",
        description="vote: majority over the peers' extracted answers, ties to the later peer; "
        "final: the last peer's response.",
    )
    representative: Literal["latest", "earliest"] = Field(
        "latest",
        description="vote: which response carrying the winning answer becomes the target: the "
        "latest (DESIGN.md) or the earliest (keeps the first solver's full working when later "
        "peers only restate its answer).",
    )


class PMIConfig(_Section):
    scorer: str | None = Field(
        None, description="Model source of a fixed scorer; null: each peer scores itself."
    )
    reduction: Literal["mean", "sum"] = Field(
        "mean", description="Reduce the aggregate's token log-probs by mean or sum."
    )
    beta: float = Field(1.0, ge=0, description="Weight temperature; 0 gives uniform weights.")
    standardize: Literal["z", "raw"] = Field(
        "z", description="z: standardize PMI per peer and round before weighting; raw: use PMI."
    )
    w_min: float = Field(0.2, gt=0, description="Lower clip of a weight (before normalizing).")
    w_max: float = Field(5.0, gt=0, description="Upper clip of a weight (before normalizing).")

    @model_validator(mode="after")
    def _clip_order(self) -> PMIConfig:
        if self.w_min > self.w_max:
            raise ValueError(f"w_min ({self.w_min}) must be <= w_max ({self.w_max})")
        return self


class TrainConfig(_Section):
    method: Literal["lora", "full"] = Field("lora", description="LoRA adapters or full fine-tuning.")
    lora_r: int = Field(16, gt=0, description="LoRA rank.")
    lora_alpha: int = Field(32, gt=0, description="LoRA scaling numerator (alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    lora_target_modules: str | list[str] = Field(
        "all-linear", description="Modules that get adapters (peft's names, or all-linear)."
    )
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate (AdamW).")
    num_epochs: int = Field(2, gt=0, description="Passes over a round's training examples.")
    batch_size: int = Field(4, gt=0, description="Examples per micro-batch.")
    gradient_accumulation_steps: int = Field(2, gt=0, description="Micro-batches per step.")
    max_length: int = Field(512, gt=0, description="Longest prompt+target, in tokens.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float | None = Field(
        1.0, ge=0, description="Clip each step's gradient to this global L2 norm (null or 0: "
        "no clipping).")
    warmup_ratio: float = Field(
        0.0, ge=0, lt=1, description="Share of the optimizer steps spent warming the learning "
        "rate up linearly from 0, before its linear decay to 0.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")


class EvalConfig(_Section):
    max_new_tokens: int = Field(256, gt=0, description="Token budget of an eval response.")
    n_samples: int = Field(
        4, ge=2, description="Sampled responses per question for the generator-verifier gap."
    )
    temperature: float = Field(0.7, gt=0, description="Temperature of the gap's samples.")
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N eval questions.")
    gap_limit: int | None = Field(
        None, gt=0, description="Sample the gap's responses for only the first N questions of "
        "each benchmark (the gap costs n_samples generations per question; EM uses them all).")
    initial: bool = Field(
        True, description="Evaluate the untuned peers as round 0. Off for a method run whose "
        "round 0 comes from a `base` run on the same eval set (`pst compare` takes it there).")


class SePTConfig(_Section):
    temperature: float = Field(
        0.3, ge=0, description="SePT: temperature of the model's own training responses "
        "(low, and decoupled from eval.temperature).")


class MajorityConfig(_Section):
    n_samples: int = Field(4, ge=2, description="majority: samples per question.")
    temperature: float = Field(0.7, gt=0, description="majority: sampling temperature.")
    min_agreement: float = Field(
        0.5, gt=0, le=1, description="majority: skip questions whose majority answer has a "
        "smaller share of the samples.")
    responses_per_question: int = Field(
        1, ge=1, description="majority: training responses per question, taken from the "
        "samples carrying the majority answer (1 keeps the budget equal to the other methods).")


class BaseConfig(_Section):
    temperatures: list[float] = Field(
        default_factory=lambda: [0.0, 0.3, 0.6, 1.0], min_length=1,
        description="base: decoding temperatures swept; the best is reported (as SePT does).")


METHODS = ("pst", "pst-uniform", "sept", "majority", "base")


class ExperimentConfig(_Section):
    """The whole experiment: data, peers, the stages' sections, rounds, seed and output dir."""

    experiment: str = Field(..., pattern=_NAME, description="Experiment name (runs/<experiment>).")
    method: Literal["pst", "pst-uniform", "sept", "majority", "base"] = Field(
        "pst",
        description="pst; pst-uniform (PST with uniform weights, no PMI scoring); sept (each "
        "model trains on its own low-temperature responses); majority (each model trains on its "
        "samples carrying its majority answer); base (no training: a temperature sweep).",
    )
    run: str | None = Field(
        None,
        pattern=_NAME,
        description="Run name (runs/<experiment>/<run>); default: a hash of the config, so the "
        "same config resumes the same run.",
    )
    learners: list[str] | None = Field(
        None,
        description="Peers that are trained and evaluated; default: all. The others still answer "
        "their turns (PST) but stay untuned and unevaluated (a cheap way to study one learner).",
    )
    seed: int = Field(0, description="Seed of sampling, shuffling and training.")
    output_dir: str = Field("runs", description="Root directory of all runs.")
    rounds: int = Field(2, ge=0, description="Training rounds after the round 0 evaluation.")
    questions_per_round: int = Field(
        64, gt=0, description="Fresh pool questions sampled for each round."
    )
    data: DataConfig
    peers: list[PeerConfig] = Field(..., min_length=1, description="Peers, in answering order.")
    generation: GenerationConfig = Field(default_factory=GenerationConfig)
    answers: AnswersConfig = Field(default_factory=AnswersConfig)
    aggregate: AggregateConfig = Field(default_factory=AggregateConfig)
    pmi: PMIConfig = Field(default_factory=PMIConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    sept: SePTConfig = Field(default_factory=SePTConfig)
    majority: MajorityConfig = Field(default_factory=MajorityConfig)
    base: BaseConfig = Field(default_factory=BaseConfig)

    @field_validator("peers")
    @classmethod
    def _unique_peer_names(cls, peers: list[PeerConfig]) -> list[PeerConfig]:
        names = [p.name for p in peers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"peer names must be unique, repeated: {', '.join(duplicates)}")
        return peers

    @model_validator(mode="after")
    def _method_needs(self) -> ExperimentConfig:
        if self.method in ("pst", "pst-uniform") and len(self.peers) < 2:
            raise ValueError(f"method {self.method} needs at least 2 peers, got {len(self.peers)}")
        if self.method == "base" and self.rounds != 0:
            raise ValueError("method base trains nothing: set rounds: 0")
        if self.method == "base" and not self.eval.initial:
            raise ValueError("method base is its round 0 evaluation: set eval.initial: true")
        unknown = sorted(set(self.learners or []) - {p.name for p in self.peers})
        if unknown:
            raise ValueError(f"learners {', '.join(unknown)} are not peer names")
        return self

    @property
    def learner_names(self) -> list[str]:
        """The trained and evaluated peers, in peer order."""
        return [p.name for p in self.peers if self.learners is None or p.name in self.learners]

    @property
    def first_round(self) -> int:
        """0 when the untuned peers are evaluated here, else 1."""
        return 0 if self.eval.initial else 1

    @property
    def run_name(self) -> str:
        """The run directory name: `run`, or a stable hash of everything that shapes results."""
        if self.run:
            return self.run
        payload = self.model_dump(mode="json", exclude={"run", "output_dir"})
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"run-{digest[:10]}"


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``key.path=value`` overrides, and validate it.

    Raises:
        ConfigError: one line naming the file, the field path and what is wrong.
    """
    path = Path(path)
    raw = _read_yaml(path)
    for override in overrides:
        _apply_override(raw, override, path)
    return parse_config(raw, source=str(path))


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping, merged over the file its ``include:`` names (relative to it).

    A config set (one experiment, several methods) keeps the shared fields in one file and
    each variant's differences in its own; sections merge key by key, lists are replaced.
    """
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        where = f" (included by {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: config file not found{where}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of fields")
    include = raw.pop("include", None)
    if include is None:
        return raw
    parent = path.parent / str(include)
    if parent.resolve() in {p.resolve() for p in (*chain, path)}:
        raise ConfigError(f"{path}: include: {include} includes itself")
    return _merge(_read_yaml(parent, (*chain, path)), raw)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        both_dicts = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merge(out[key], value) if both_dicts else value
    return out


def parse_config(raw: dict[str, Any], source: str = "<config>") -> ExperimentConfig:
    """Validate a config given as a dict (a Prefect form, a notebook) with the same messages."""
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e)}") from None


def format_validation_error(error: ValidationError) -> str:
    """All of pydantic's errors on one line, each as ``field.path: message (got value)``."""
    parts = []
    for err in error.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling; `pst validate --fields` lists them)"
        elif err["type"] != "missing" and not isinstance(err.get("input"), dict):
            msg += f" (got {err.get('input')!r})"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def _apply_override(raw: dict[str, Any], override: str, path: Path) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r}: expected key.path=value, e.g. pmi.beta=0.5")
    node: Any = raw
    parts = key.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not re.fullmatch(r"\d+", part) or int(part) >= len(node):
                raise ConfigError(f"override {override!r}: {part!r} is not an index of the list")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {'.'.join(parts[:i])} is not a section")
        if last:
            node[part] = yaml.safe_load(value)
        else:
            if isinstance(node, dict) and part not in node:
                node[part] = {}
            node = node[part]


def describe_fields(
    model: type[BaseModel] = ExperimentConfig, prefix: str = "", seen: dict | None = None
) -> list[tuple[str, str, str, str]]:
    """(field path, type, default, description) for every field, sections expanded once.

    A section type met again (each ``data.eval[]`` entry is a dataset like ``data.pool``) gets
    one row pointing at its first expansion.
    """
    seen = {} if seen is None else seen
    rows = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        ann = field.annotation
        inner = _section_type(ann)
        if inner is not None:
            path += "[]" if getattr(ann, "__origin__", None) is list else ""
            if inner in seen:
                rows.append((path, "list" if path.endswith("[]") else "section", "",
                             f"{field.description or ''} Same fields as `{seen[inner]}`.".strip()))
            else:
                seen[inner] = path
                rows.extend(describe_fields(inner, f"{path}.", seen))
            continue
        default = "required" if field.is_required() else _show_default(field)
        type_name = ann.__name__ if isinstance(ann, type) else str(ann)
        rows.append((path, type_name.replace("typing.", "").replace("NoneType", "None"),
                     default, field.description or ""))
    return rows


def _section_type(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    for c in candidates:
        if isinstance(c, type) and issubclass(c, _Section):
            return c
    return None


def _show_default(field: Any) -> str:
    value = field.default_factory() if field.default_factory else field.default
    return json.dumps(value)
