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
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from pst_core.data.spec import ColumnMap, DatasetConfig, SyntheticConfig
from pst_core.errors import ConfigError
from pst_core.methods import REGISTRY, MethodConfig
from pst_core.methods.pst import PST
from pst_core.models.spec import PeerConfig
from pst_core.section import NAME_MAX, NAME_PATTERN, Section

__all__ = ["ColumnMap", "DatasetConfig", "ExperimentConfig", "PeerConfig", "SyntheticConfig",
           "load_config", "load_recorded", "parse_config"]


class DataConfig(Section):
    pool: DatasetConfig = Field(
        ..., description="The unlabeled question pool that training rounds sample from."
    )
    eval: list[DatasetConfig] = Field(
        default_factory=list, description="Held-out benchmarks evaluated after every round."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> DataConfig:
        """Each dataset is stored as data/<name>.parquet: a repeated name would overwrite."""
        names = [self.pool.name, *(spec.name for spec in self.eval)]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"dataset names must be unique across data.pool and data.eval "
                             f"(each is stored as data/<name>.parquet), repeated: "
                             f"{', '.join(repeated)}")
        return self


class GenerationConfig(Section):
    max_new_tokens: int = Field(256, gt=0, description="Token budget of one response.")
    temperature: float = Field(0.0, ge=0, description="Sampling temperature; 0 is greedy.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass.")


class AnswersConfig(Section):
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


class TrainConfig(Section):
    finetune: Literal["lora", "full"] = Field(
        "lora", description="What is trained: LoRA adapters, or all weights (full).")
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
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute activations in the backward pass (less memory, about a third "
        "more compute); null: on for models above 1B parameters, or when a micro-batch's "
        "activations would take over a quarter of the free memory; off otherwise.",
    )
    engine: Literal["loop", "trainer"] = Field(
        "loop", description="What runs the training: the project's loop, or the Hugging Face "
        "Trainer (pst_core/trainer.py: the same weights on one device, the same time and "
        "memory, measured; Trainer's report_to and accelerate). Not part of the run's identity.")
    report_to: str = Field(
        "none", description="engine trainer: Trainer's report_to (e.g. mlflow: its loss curve "
        "per training step, beside the pipeline's own tracking). Not part of the run's identity.")


class EvalConfig(Section):
    max_new_tokens: int = Field(256, gt=0, description="Token budget of an eval response.")
    n_samples: int = Field(
        4, ge=2, description="Sampled responses per question for the generator-verifier gap."
    )
    temperature: float = Field(0.7, gt=0, description="Temperature of the gap's samples.")
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N eval questions.")
    gap_limit: int | None = Field(
        None, gt=0, description="Sample the gap's responses for only the first N questions of "
        "each benchmark (the gap costs n_samples generations per question; EM uses them all).")
    gap_rounds: Literal["all", "last", "none"] = Field(
        "all", description="Rounds whose evaluation samples the GV gap's responses: every "
        "round, only the last (greedy EM stays every round: the gap's samples and their "
        "verification are most of an evaluation's cost), or none.")
    gap_benchmarks: list[str] | None = Field(
        None, description="Benchmarks (data.eval names) whose evaluation samples the GV gap; "
        "null: all of them.")
    initial: bool = Field(
        True, description="Evaluate the untuned peers as round 0. Off for a method run whose "
        "round 0 comes from a `base` run on the same eval set (`pst compare` takes it there).")


class ExperimentConfig(Section):
    """The whole experiment: data, peers, the stages' sections, rounds, seed and output dir."""

    experiment: str = Field(..., pattern=NAME_PATTERN, max_length=NAME_MAX,
                            description="Experiment name (runs/<experiment>).")
    method: MethodConfig = Field(
        default_factory=PST,
        description="The method and its own settings, told apart by `name` (docs/methods.md); "
        "`method: sept` is short for `method: {name: sept}`.",
    )
    run: str | None = Field(
        None,
        pattern=NAME_PATTERN, max_length=NAME_MAX,
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
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @field_validator("method", mode="before")
    @classmethod
    def _method_by_name(cls, value: Any) -> Any:
        """``method: sept`` means ``{name: sept}``; a section without a name is PST's."""
        if isinstance(value, str):
            return {"name": value}
        if isinstance(value, dict) and "name" not in value:
            return {"name": PST().name, **value}
        return value

    @field_validator("learners")
    @classmethod
    def _some_learners(cls, learners: list[str] | None) -> list[str] | None:
        if learners is not None and not learners:
            raise ValueError("name at least one peer, or leave learners unset (all peers learn)")
        return learners

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
        problem = self.method.check([p.name for p in self.peers], self.learner_names,
                                    self.rounds, self.eval.initial)
        if problem:
            raise ValueError(problem)
        unknown = sorted(set(self.learners or []) - {p.name for p in self.peers})
        if unknown:
            raise ValueError(f"learners {', '.join(unknown)} are not peer names")
        benchmarks = {spec.name for spec in self.data.eval}
        unknown = sorted(set(self.eval.gap_benchmarks or []) - benchmarks)
        if unknown:
            raise ValueError(f"eval.gap_benchmarks {', '.join(unknown)} are not data.eval names "
                             f"({', '.join(sorted(benchmarks)) or 'none'})")
        return self

    def samples_gap(self, r: int, benchmark: str) -> bool:
        """Whether round r's evaluation on ``benchmark`` samples the GV gap's responses."""
        rounds = {"all": True, "last": r == self.rounds, "none": False}[self.eval.gap_rounds]
        return rounds and (self.eval.gap_benchmarks is None or benchmark in self.eval.gap_benchmarks)

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
        """The run directory name: `run`, or a stable hash of what shapes the trained models.

        Evaluation settings (``eval``, ``data.eval``) are not part of it: raising ``eval.limit``
        or adding a benchmark resumes the same run and evaluates only what is missing. Nor is
        what runs the training (``train.engine``, ``train.report_to``), which trains the same
        weights.
        """
        if self.run:
            return self.run
        payload = self.model_dump(mode="json", exclude={
            "run": True, "output_dir": True, "eval": True, "data": {"eval"},
            "train": {"engine", "report_to"}})
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"run-{digest[:10]}"


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML config, apply ``key.path=value`` overrides, and validate it.

    Raises:
        ConfigError: one line naming the file, the field path and what is wrong.
    """
    path = Path(path)
    raw = upgrade_config(_read_yaml(path))
    for override in overrides:
        if isinstance(raw.get("method"), str):  # so that method.<field>=... finds a section
            raw["method"] = {"name": raw["method"]}
        apply_override(raw, override, path)
    return parse_config(raw, source=str(path))


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file's mapping, merged over the file its ``include:`` names (relative to it).

    A config set (one experiment, several methods) keeps the shared fields in one file and
    each variant's differences in its own; sections merge key by key, lists are replaced.
    """
    try:
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a config is a few KB "
                              f"(at most {MAX_CONFIG_BYTES:,}): is it a config?")
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        where = f" (included by {chain[-1]})" if chain else ""
        raise ConfigError(f"{path}: config file not found{where}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give an experiment YAML file, e.g. "
                          f"data/configs/demo.yaml") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to read") from None
    check_bounds(raw, str(path))
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


def load_recorded(path: str | Path) -> ExperimentConfig:
    """A run's recorded ``config.yaml`` (what ``pst run`` wrote), read as a config file is.

    Raises:
        ConfigError: unreadable, not YAML, not a mapping, or not a valid config.
    """
    return parse_config(_read_yaml(Path(path)), source=str(path))


MAX_CONFIG_BYTES = 2**20
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_DEPTH = 32


def check_bounds(raw: Any, source: str) -> None:
    """Refuse a config of more values or deeper nesting than any real one: YAML aliases can
    make a few lines expand to billions of values ("billion laughs"), which validation would
    then walk until memory runs out. Walks with an explicit stack, counting shared values each
    time they are reached, and stops at the first limit passed.

    Raises:
        ConfigError: which limit, in ``source``.
    """
    stack, seen = [(raw, 0)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_CONFIG_VALUES:
            raise ConfigError(f"{source}: more than {MAX_CONFIG_VALUES:,} values (do YAML "
                              "aliases repeat a section?); a config has a few hundred")
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{source}: nested deeper than {MAX_CONFIG_DEPTH} levels")
        children = value.values() if isinstance(value, dict) else (
            value if isinstance(value, list) else ())
        stack.extend((child, depth + 1) for child in children)


def parse_config(raw: dict[str, Any], source: str = "<config>") -> ExperimentConfig:
    """Validate a config given as a dict (a Prefect form, a notebook) with the same messages."""
    check_bounds(raw, source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of fields")
    try:
        return ExperimentConfig.model_validate(upgrade_config(raw))
    except ValidationError as e:
        raise ConfigError(f"{source}: {format_validation_error(e)}") from None


_MOVED = {"pmi": "method.pmi (method: {name: pst, pmi: ...})",
          "aggregate": "method.aggregate (method: {name: pst, aggregate: ...})",
          "sept": "method: {name: sept, ...}", "majority": "method: {name: majority, ...}",
          "base": "method: {name: base, ...}"}


def upgrade_config(raw: dict[str, Any]) -> dict[str, Any]:
    """A config recorded by an earlier version rewritten into this one, so that old runs still
    load (``pst compare``, ``pst track``) and mean what they ran."""
    return _representative_of_its_time(_from_layout_0_1(raw))


def _representative_of_its_time(raw: dict[str, Any]) -> dict[str, Any]:
    """Configs recorded before ``representative`` applied to rule ``reliable`` carry the old
    default ``latest`` there (and for ``last``, which ignores it); it meant the rule's own."""
    method = raw.get("method")
    aggregate = method.get("aggregate") if isinstance(method, dict) else None
    if (isinstance(aggregate, dict) and aggregate.get("rule") in ("reliable", "last")
            and aggregate.get("representative") == "latest"):
        raw = raw | {"method": method | {"aggregate": aggregate | {"representative": None}}}
    return raw


def _from_layout_0_1(raw: dict[str, Any]) -> dict[str, Any]:
    """A config in the 0.1 layout (run directories written before methods were sections)
    rewritten into this one, so that old runs still load (``pst compare``, ``pst track``).

    0.1 had ``method: <name>`` beside one section per method (``sept``, ``majority``, ``base``,
    PST's ``aggregate`` and ``pmi``, the peer order under ``generation``) and ``method`` fields
    in ``aggregate`` (now ``rule``) and ``train`` (now ``finetune``). Only the named method's
    sections are kept: the others never affected its results.
    """
    legacy = _MOVED.keys() & raw.keys()
    order_keys = {"order", "consistency_questions", "consistency_samples"}
    if isinstance(raw.get("method"), dict) or (
            not legacy and not order_keys & raw.get("generation", {}).keys()
            and "method" not in raw.get("train", {})):
        return raw
    raw = dict(raw)
    name = raw.pop("method", "pst")
    method: dict[str, Any] = {"name": name}
    sections = {name: raw.pop(name, {}) for name in ("sept", "majority", "base")}
    aggregate, pmi = raw.pop("aggregate", None), raw.pop("pmi", None)
    generation = dict(raw.get("generation", {}))
    moved = {k: generation.pop(k) for k in order_keys & generation.keys()}
    if "generation" in raw:
        raw["generation"] = generation
    if name in sections:
        method |= sections[name]
    if name in ("pst", "pst-uniform"):
        method |= moved
        if aggregate is not None:
            aggregate = dict(aggregate)
            if "method" in aggregate:
                rule = aggregate.pop("method")
                aggregate["rule"] = "last" if rule == "final" else rule
            method["aggregate"] = aggregate
        if name == "pst" and pmi is not None:
            method["pmi"] = pmi
    raw["method"] = method
    if "method" in raw.get("train", {}):
        raw["train"] = dict(raw["train"])
        raw["train"]["finetune"] = raw["train"].pop("method")
    return raw


def format_validation_error(error: ValidationError) -> str:
    """All of pydantic's errors on one line, each as ``field.path: message (got value)``."""
    parts = []
    for err in error.errors():
        path = list(err["loc"])
        if path[:1] == ["method"] and len(path) > 1 and path[1] in REGISTRY:
            del path[1]  # the union's tag: the user wrote method.pmi, not method.pst.pmi
        loc = ".".join(str(x) for x in path) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and len(path) == 1 and path[0] in _MOVED:
            msg = f"moved into the method section: write it as {_MOVED[path[0]]}"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling; `pst validate --fields` lists them)"
        elif err["type"] != "missing" and not isinstance(err.get("input"), dict):
            msg += f" (got {err.get('input')!r})"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


def apply_override(raw: dict[str, Any], override: str, path: Path) -> None:
    """Set ``key.path=value`` (the value read as YAML) in a raw config mapping, in place."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise ConfigError(
            f"override {override!r}: expected key.path=value, e.g. method.pmi.beta=0.5")
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


_METHOD_UNION = ExperimentConfig.model_fields["method"].annotation


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
        if ann is _METHOD_UNION:
            rows.extend(_describe_methods(path, field.description or ""))
            continue
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


def fields_markdown() -> str:
    """The configuration reference as a Markdown table (docs/configuration.md holds it)."""
    rows = ["| field | type | default | meaning |", "|---|---|---|---|"]
    for row in describe_fields():
        cells = [c.replace("|", "\\|") for c in row]
        rows.append(f"| `{cells[0]}` | {cells[1]} | `{cells[2]}` | {cells[3]} |")
    return "\n".join(rows)


def _describe_methods(path: str, description: str) -> list[tuple[str, str, str, str]]:
    """The method section: its ``name``, then each method's fields, labelled with the methods
    that have them."""
    owners: dict[tuple[str, str, str, str], list[str]] = {}
    for name, method in REGISTRY.items():
        for row in describe_fields(method, f"{path}.", {}):
            if row[0] != f"{path}.name":
                owners.setdefault(row, []).append(name)
    names = " | ".join(REGISTRY)
    return [(f"{path}.name", names, json.dumps(PST().name), description),
            *[(row[0], row[1], row[2], f"{', '.join(tags)}: {row[3]}")
              for row, tags in owners.items()]]


def _section_type(annotation: Any) -> type[BaseModel] | None:
    candidates = [annotation, *getattr(annotation, "__args__", ())]
    for c in candidates:
        if isinstance(c, type) and issubclass(c, Section):
            return c
    return None


def _show_default(field: Any) -> str:
    value = field.default_factory() if field.default_factory else field.default
    return json.dumps(value)
