"""Serve the PST pipeline with a schedule on this machine: ``python deployments/serve.py``.

Same as ``pst serve``. Options: ``--config PATH`` (default data/configs/demo.yaml),
``--cron "0 3 * * *"`` or ``--interval SECONDS``, ``--name NAME``. Trigger a run now with
``prefect deployment run pst-pipeline/pst-pipeline --param overrides='["rounds=1"]'``.
"""

import sys

from flows.cli import app

if __name__ == "__main__":
    sys.exit(app(["serve", *sys.argv[1:]]))
