"""Models: where they come from (sources, offline packages) and how they run (backends)."""
