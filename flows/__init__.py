"""Orchestration above pst_core: the CLI, Prefect flows and tasks."""
