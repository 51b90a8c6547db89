"""pst_core: the PST library (data, answers, models, stages). No Prefect, no MLflow at import.

Peer-Predictive Self-Training: peers answer in turn, the aggregate answer is the training target,
and the PMI between each peer's response and the aggregate scales that peer's update.
"""

__version__ = "0.1.0"
