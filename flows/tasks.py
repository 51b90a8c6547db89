"""Prefect tasks: one task per step kind (``ingest``, ``generate-turn``, ``train``, ...), each
run named after its step (``generate turn 1 qwen-0.5b``) and retried as its kind allows (a
training step once, a collect step never), but never after a user error (``PSTError``).

Tasks receive the experiment config as a JSON dict and the step (a small frozen dataclass), and
return the path the step wrote: no tables or models cross a task boundary (Prefect would hold
them in memory and pickle them). Whether a step is skipped is decided by the step's own output
(``pst_core.runner.run_step``), not by Prefect's input-hash cache (which hashes a path string,
not the file behind it): caching is off.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from pst_core.config import parse_config
from pst_core.context import RunContext
from pst_core.errors import PSTError
from pst_core.runner import Wave, run_step
from pst_core.steps import Step


def _retry_unless_user_error(task, task_run, state) -> bool:
    """Retry a failed step unless the user caused it (a bad input or a full disk): trying again
    would only repeat the error and its traceback."""
    try:
        state.result()
    except PSTError:
        return False
    except Exception:  # noqa: BLE001 - any other failure may be transient
        return True
    return True


@task(name="step", retry_delay_seconds=10, cache_policy=NO_CACHE,
      retry_condition_fn=_retry_unless_user_error)
def step_task(config: dict[str, Any], step: Step) -> str:
    """Run one step of the plan (``pst_core.runner.plan_round``)."""
    return str(run_step(RunContext(parse_config(config, source="flow parameter")), step))


def task_for(step: Step):
    """The task of ``step``'s kind, with its run name and retries."""
    return step_task.with_options(name=step.kind, task_run_name=step.title, retries=step.retries)


def prefect_waves(config: dict[str, Any], parallel: bool) -> Callable[[RunContext, Wave], None]:
    """A wave executor for ``pst_core.runner.Runner``: each step as a task; with ``parallel``,
    a wave's steps are submitted together (a Dask or Ray task runner places them)."""

    def run_wave(ctx: RunContext, wave: Wave) -> None:
        if parallel and len(wave) > 1:
            for future in [task_for(step).submit(config, step) for step in wave]:
                future.result()
        else:
            for step in wave:
                task_for(step)(config, step)

    return run_wave
