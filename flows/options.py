"""`pst ingest` and `pst generate` options as config sections, validated like configs.

Option values become ``DatasetConfig`` / ``PeerConfig`` (plus the decoding options no config
field holds), and every bad value is reported at once as one ``ConfigError`` line that names the
option the user typed, not the field behind it: ``--dtype: Input should be 'auto', 'bfloat16',
'float16' or 'float32' (got 'float64')``. Only the standard library at import time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def validated(model, values: dict[str, Any], labels: dict[str, str]):
    """``model`` validated from ``values``, with errors that name the CLI's options.

    Args:
        model: a pydantic model (a config section such as ``PeerConfig``).
        values: its field values, from options and ``key=value`` arguments.
        labels: field path -> what the user typed (``{"dtype": "--dtype"}``); a field not
            listed keeps its path, which is the key of a ``key=value`` argument.

    Raises:
        ConfigError: one line, e.g. ``--dtype: Input should be 'auto', 'bfloat16', 'float16'
            or 'float32' (got 'float64')`` (``pst_core.config.format_validation_error``).
    """
    from pydantic import ValidationError

    from pst_core.config import format_validation_error
    from pst_core.errors import ConfigError

    try:
        return model.model_validate(values)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            path = ".".join(str(x) for x in err["loc"])
            errors.append({**err, "loc": (labels[path],) if path in labels else err["loc"]})
        relabelled = ValidationError.from_exception_data(e.title, errors)
        raise ConfigError(format_validation_error(relabelled)) from None


def all_valid(*builders):
    """Each builder's result; if some raise a PSTError, one ConfigError with all their
    messages (every bad option reported at once)."""
    from pst_core.errors import ConfigError, PSTError

    results, problems = [], []
    for build in builders:
        try:
            results.append(build())
        except PSTError as e:
            problems.append(str(e))
    if problems:
        raise ConfigError("; ".join(problems))
    return results


def option_labels(**values: Any) -> dict[str, str]:
    """Labels for ``validated``: each field named by its option (``batch_size`` ->
    ``--batch-size``)."""
    return {name: "--" + name.replace("_", "-") for name in values}


def dataset_spec(
    source: str,
    name: str | None,
    question_col: str | None,
    answer_col: str | None,
    id_col: str | None,
    eval_fraction: float,
    split: str = "all",
    limit: int | None = None,
):
    """A DatasetConfig from a CLI source: a registry benchmark, 'synthetic', or a file."""
    from pst_core.config import ColumnMap, DatasetConfig
    from pst_core.data.registry import BENCHMARKS

    is_file = Path(source).suffix != "" or Path(source).exists()
    benchmark = None if is_file else source
    if is_file:
        stem = Path(source).stem
        benchmark = stem if stem in BENCHMARKS else None
    columns = None
    if question_col or answer_col or id_col:
        columns = ColumnMap(
            question=question_col or "question", answer=answer_col or "answer", id=id_col
        )
    elif is_file and benchmark is None and Path(source).suffix == ".parquet":
        # A table `pst ingest` wrote keeps its ids and accepted answers; another has neither.
        present = _parquet_columns(source)
        columns = ColumnMap(id="id" if "id" in present else None,
                            all_answers="all_answers" if "all_answers" in present else None)
    options = {"eval_fraction": eval_fraction, "split": split, "limit": limit}
    values = {"name": name or (benchmark or Path(source).stem), "benchmark": benchmark,
              "path": source if is_file else None, "columns": columns, **options}
    labels = {"name": "--name" if name else "SOURCE", "benchmark": "SOURCE", "path": "SOURCE",
              **option_labels(**options)}
    return validated(DatasetConfig, values, labels)


def _parquet_columns(path: str) -> list[str]:
    """The column names of a Parquet file; none when unreadable (the loader says why, later)."""
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(path).names
    except Exception:  # noqa: BLE001 - a missing or damaged file is reported by the loader
        return []


def peer_config(model: str, options: dict[str, Any], fields: list[str]):
    """`pst generate`'s PeerConfig: its options, then ``key=value`` peer fields parsed like
    config overrides (YAML values), which win over the options (``name=...`` included)."""
    from pst_core.config import PeerConfig, apply_override
    from pst_core.errors import ConfigError

    path = Path(model)
    if model.endswith(".gguf") or path.is_dir():  # a local model: named by its file or folder
        name = path.stem if model.endswith(".gguf") else path.resolve().name
    else:  # an offline model's name, or a Hub id org/name
        name = model.replace("/", "--")
    raw = {"name": name, "source": model, **options}
    labels = {"name": "--model", "source": "--model", **option_labels(**options)}
    for field in fields:
        key, sep, _ = field.partition("=")
        if not (key and sep):
            raise ConfigError(f"{field!r}: expected a peer field as key=value, e.g. batch_size=8")
        apply_override(raw, field, Path("pst generate"))
        labels.pop(key.split(".")[0], None)  # an error in it names its key, as typed
    return validated(PeerConfig, raw, labels)


def check_sampling(temperature: float, n: int) -> None:
    """`pst generate`'s decoding options that no config field holds, checked like fields."""
    from pydantic import Field, create_model

    options = {"temperature": temperature, "n": n}
    checks = create_model("SamplingOptions",
                          temperature=(float, Field(ge=0, allow_inf_nan=False)),
                          n=(int, Field(ge=1)))
    validated(checks, options, option_labels(**options))
