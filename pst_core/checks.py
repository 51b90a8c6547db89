"""Checks of a config's inputs that validation cannot make: do the files and models it names exist?

``pst validate``, ``pst run`` and ``Runner.setup`` call :func:`check_inputs` so that a typo in
a path, a column or a model source fails before anything is written, not an hour into a run,
and so that a run directory is only resumed under the config that made it. It
is cheap: no model is loaded, a local data file is read (they are small), a GGUF up to its magic
bytes and a safetensors file up to its header; a Hub model or dataset not in the local cache is
asked for once (seconds), so an offline machine fails here; a CUDA device is checked with torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pst_core.errors import ConfigError, HubUnavailable, PSTError

if TYPE_CHECKING:
    from pst_core.config import ExperimentConfig


def check_inputs(cfg: ExperimentConfig, where: str = "", hub: bool = True) -> list[str]:
    """Check the run's output directory, data files and model sources; report every problem.

    A dataset the run has already ingested (``data/<name>.parquet`` in its directory) is not
    checked again: a resumed run reads that copy, not the source.

    Args:
        cfg: the experiment config.
        where: the config file, to prefix the message with (``data/configs/demo.yaml: ``).
        hub: whether a Hub model or dataset that is not cached must be served by the Hub now
            (``pst run``); off, such problems are returned instead (``pst validate`` notes them
            on a machine without the Hub).

    Returns:
        The Hub problems found with ``hub`` off (``field.path: what is wrong``).

    Raises:
        ConfigError: one line, every problem as ``field.path: what is wrong``.
    """
    from pst_core.data.ingest import check_dataset
    from pst_core.models.source import check_hub_model, check_source, resolve_device
    from pst_core.store import RunLayout, check_output_dir

    def check_available(source: str, revision: str | None = None) -> None:
        if check_source(source, revision).kind == "hub":
            check_hub_model(source, revision)

    def only_offline(check):  # with hub off, a Hub problem is returned, not raised
        def run():
            try:
                check()
            except HubUnavailable as e:
                if hub:
                    raise
                notes.append(str(e))
        return run

    notes: list[str] = []

    layout = RunLayout.for_run(cfg.output_dir, cfg.experiment, cfg.run_name)
    checks = [("output_dir", lambda: check_output_dir(layout.root, "run directory")),
              ("run", lambda: check_same_run(cfg, layout.root))]
    for field, spec in [("data.pool", cfg.data.pool),
                        *[(f"data.eval.{i}", s) for i, s in enumerate(cfg.data.eval)]]:
        if not layout.dataset(spec.name).is_file():
            role, split = (("data.pool", "train") if field == "data.pool"
                           else ("evaluation set", "eval"))
            checks.append((field, only_offline(lambda spec=spec, role=role, split=split:
                                               check_dataset(spec, role, spec.split or split))))
    for i, peer in enumerate(cfg.peers):
        checks.append((f"peers.{i}.source", only_offline(
            lambda peer=peer: check_available(peer.source, peer.revision))))
        if peer.device.startswith("cuda"):
            checks.append((f"peers.{i}.device",
                           lambda peer=peer, i=i: resolve_device(peer.device, f"peers.{i}.device")))
    scorer = getattr(getattr(cfg.method, "pmi", None), "scorer", None)
    if scorer is not None:
        checks.append(("method.pmi.scorer", only_offline(lambda: check_available(scorer))))
    checks.append(("peers", lambda: check_prompt_lengths(cfg)))
    problems = []
    for field, check in checks:
        try:
            check()
        except PSTError as e:
            problems.append(f"{field}: {e}")
    if problems:
        prefix = f"{where}: " if where else ""
        raise ConfigError(prefix + "; ".join(problems))
    return notes


# What a resumed run may change: evaluation only (more questions, another benchmark), where to
# write, and how many rounds (a round's tables never depend on how many follow it).
_NOT_IDENTITY = {"run": True, "output_dir": True, "rounds": True, "eval": True,
                 "data": {"eval"}, "train": {"engine", "report_to"}}


def check_same_run(cfg: ExperimentConfig, root: Path) -> None:
    """Refuse to resume a run directory whose recorded config differs from ``cfg`` in anything
    that shaped its tables: the old tables would be kept under the new config's name.

    Raises:
        ConfigError: the differing fields, old -> new, and how to start fresh.
    """
    from pst_core.config import load_recorded
    from pst_core.store import RunLayout

    recorded = RunLayout(root).config
    if not recorded.is_file():
        return
    try:
        old = load_recorded(recorded)
    except ConfigError as e:
        raise ConfigError(f"{e}; move the run directory away to start fresh") from None
    before, after = (_flat(c.model_dump(mode="json", exclude=_NOT_IDENTITY)) for c in (old, cfg))
    changed = [f"{k} {before.get(k, '(unset)')!r} -> {after.get(k, '(unset)')!r}"
               for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)]
    if changed:
        fresh = ("set another `run:` name" if cfg.run else "the default run name follows "
                 "the config, so this directory was named with `run:` elsewhere")
        raise ConfigError(f"{root} was made with another config ({'; '.join(changed)}): its "
                          f"tables belong to that one. Restore those fields to resume it, or "
                          f"start fresh: {fresh}, or move the directory away")


def _flat(value, prefix: str = "") -> dict[str, object]:
    """A nested config dump as ``{"train.learning_rate": 0.0001, "peers.1.source": ...}``."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items()
                for k, v in _flat(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}{i}.").items()}
    return {prefix.rstrip("."): value}


def check_prompt_lengths(cfg: ExperimentConfig) -> None:
    """Every question's solo prompt plus its token budget fits each local model directory's
    context (``max_position_embeddings``); only the tokenizer is loaded. Offline and Hub models
    (contexts of 8k-32k tokens) and chain prompts, which grow with the answers before them,
    are checked when generated (``pst_core.models.backend.check_context``).

    Raises:
        DataError: the dataset, question id, peer and the token counts.
    """
    import json

    from transformers import AutoTokenizer

    from pst_core.data.ingest import ingest_dataset
    from pst_core.errors import DataError
    from pst_core.models.backend import PromptTooLong, check_context
    from pst_core.models.source import check_source
    from pst_core.models.tokens import encode_prompt, prompt_style, render_prompt
    from pst_core.prompts import solo_prompt

    local = []
    for p in cfg.peers:
        try:
            source = check_source(p.source, p.revision)
        except PSTError:  # reported by the source check
            continue
        if source.kind == "local":
            local.append((p, Path(source.location)))
    contexts = {p.name: json.loads((d / "config.json").read_text()).get(
        "max_position_embeddings") for p, d in local}
    local = [(p, d) for p, d in local if isinstance(contexts[p.name], int)]
    if not local:
        return
    datasets = [(spec, cfg.generation.max_new_tokens) for spec in (cfg.data.pool,)
                if spec.path or spec.benchmark == "synthetic"]
    datasets += [(spec, cfg.eval.max_new_tokens) for spec in cfg.data.eval
                 if spec.path or spec.benchmark == "synthetic"]
    for peer, directory in local:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        style = prompt_style(tokenizer, peer.prompt_format)
        for spec, budget in datasets:
            table = ingest_dataset(spec)[0]
            lengths = [len(encode_prompt(tokenizer, render_prompt(tokenizer, solo_prompt(q, style))))
                       for q in table.column("question").to_pylist()]
            try:
                check_context(lengths, [peer.max_new_tokens or budget] * len(lengths),
                              contexts[peer.name], peer.name)
            except PromptTooLong as e:
                row = table.column("id")[e.index].as_py()
                raise DataError(f"{spec.path or spec.name}: question {row!r}: {e}") from None
