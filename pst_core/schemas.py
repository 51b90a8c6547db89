"""Every table's schema, in one place: the run's data contract.

A run directory holds these tables (``pst_core.store.RunLayout`` says where): the ingested
datasets, and per round the questions, responses, reliability, aggregates, PMI, targets,
training log, evaluation and metrics; ``pst compare`` and ``pst weights`` write the last two.
Every write checks its table against its schema (``pst_core.store.write_table``), every read
too, so a column added, renamed or retyped here is one change seen everywhere. Nullable columns
are the audit columns (gold never reaches training) and values a row may lack.
"""

import pyarrow as pa

DATASET_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("answer", pa.string()),  # gold; null for unlabeled data; never a training input
        pa.field("all_answers", pa.list_(pa.string())),  # every accepted gold (SimulEq)
        pa.field("source", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # train | eval
    ]
)

QUESTIONS_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        # The answering order of the peers (PST); empty for methods whose models answer alone.
        pa.field("order", pa.list_(pa.string()), nullable=False),
    ]
)

RESPONSES_SCHEMA = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("peer", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),  # 0-based turn in the peer chain
        pa.field("sample", pa.int32(), nullable=False),  # index among n samples
        pa.field("prompt", pa.string(), nullable=False),  # exactly what the model saw
        pa.field("response", pa.string(), nullable=False),
        pa.field("answer", pa.string()),  # extracted final answer; null if none
        pa.field("answer_rule", pa.string()),  # which extraction rule fired
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("finish_reason", pa.string(), nullable=False),  # stop | length
    ]
)

RELIABILITY_SCHEMA = pa.schema(
    [
        pa.field("peer", pa.string(), nullable=False),
        pa.field("estimated_accuracy", pa.float64(), nullable=False),  # label-free, in [0, 1]
        pa.field("agreement", pa.float64(), nullable=False),  # mean share of others agreeing
        pa.field("answer_rate", pa.float64(), nullable=False),  # share with an extracted answer
        pa.field("n_questions", pa.int32(), nullable=False),
        pa.field("gold_accuracy", pa.float64()),  # audit only; null without gold
    ]
)

CONSISTENCY_SCHEMA = pa.schema([pa.field("peer", pa.string(), nullable=False),
                                pa.field("consistency", pa.float64(), nullable=False)])

AGGREGATES_SCHEMA = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("response", pa.string(), nullable=False),  # the training target a*
        pa.field("answer", pa.string(), nullable=False),  # a*'s extracted answer
        pa.field("method", pa.string(), nullable=False),  # vote | last | reliable
        pa.field("source_peer", pa.string(), nullable=False),  # whose response a* is
        pa.field("votes", pa.int32(), nullable=False),  # responses carrying a*'s answer
        pa.field("n_peers", pa.int32(), nullable=False),
        pa.field("agreement", pa.float64(), nullable=False),  # votes / n_peers
        pa.field("gold_match", pa.bool_()),  # audit only; null without gold
    ]
)

REJECTED_SCHEMA = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

PMI_SCHEMA = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("peer", pa.string(), nullable=False),
        pa.field("scorer", pa.string(), nullable=False),
        pa.field("logp_cond", pa.float64(), nullable=False),  # log p(a* | x, y_k), reduced
        pa.field("logp_uncond", pa.float64(), nullable=False),  # log p(a* | x), reduced
        pa.field("n_target_tokens", pa.int32(), nullable=False),
        pa.field("pmi", pa.float64(), nullable=False),
        pa.field("z", pa.float64(), nullable=False),  # PMI standardized per peer and round
        pa.field("weight", pa.float64(), nullable=False),  # mean 1 per peer and round
    ]
)

TARGETS_SCHEMA = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("peer", pa.string(), nullable=False),  # the model trained on this target
        pa.field("response", pa.string(), nullable=False),
        pa.field("answer", pa.string()),  # the target's extracted answer
        pa.field("weight", pa.float64(), nullable=False),
        pa.field("gold_match", pa.bool_()),  # audit only; null without gold
    ]
)

TRAIN_LOG_SCHEMA = pa.schema(
    [
        pa.field("peer", pa.string(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),  # optimizer step, from 1
        pa.field("epoch", pa.int32(), nullable=False),
        # Means over the step's examples of each example's mean token NLL: unweighted, and
        # weighted (sum_x w(x) NLL(x) / N, the objective the step optimized).
        pa.field("loss", pa.float64(), nullable=False),
        pa.field("weighted_loss", pa.float64(), nullable=False),
        pa.field("lr", pa.float64(), nullable=False),  # the step's learning rate
        pa.field("n_examples", pa.int32(), nullable=False),
        pa.field("n_target_tokens", pa.int32(), nullable=False),
    ]
)

EVAL_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # the peer
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # greedy | sample | t=<temperature>
        pa.field("sample", pa.int32(), nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("answer", pa.string()),
        pa.field("correct", pa.bool_(), nullable=False),
        pa.field("n_tokens", pa.int32(), nullable=False),
        pa.field("finish_reason", pa.string(), nullable=False),
        pa.field("verify_score", pa.float64()),  # log p(Yes) - log p(No); samples only
    ]
)

METRICS_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("peer", pa.string()),  # null for round-wide metrics
        pa.field("benchmark", pa.string()),  # null for training-side metrics
        pa.field("name", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
    ]
)

COMPARISON_SCHEMA = pa.schema(
    [
        pa.field("experiment", pa.string(), nullable=False),  # the config set
        pa.field("seed", pa.int64(), nullable=False),  # its trained runs' seed (base is shared)
        pa.field("rounds", pa.int64(), nullable=False),  # its trained runs' number of rounds
        pa.field("method", pa.string(), nullable=False),
        pa.field("run", pa.string(), nullable=False),
        pa.field("peer", pa.string(), nullable=False),
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("round", pa.int32(), nullable=False),
        pa.field("n_questions", pa.int32(), nullable=False),
        pa.field("em", pa.float64()),
        pa.field("gv_gap_abs", pa.float64()),
        pa.field("gv_gap_rel", pa.float64()),
        pa.field("decoding", pa.string(), nullable=False),  # greedy | t=<best temperature>
        pa.field("delta_em", pa.float64()),  # vs base at its best temperature, same questions
        pa.field("delta_lo", pa.float64()),  # paired bootstrap 95% interval
        pa.field("delta_hi", pa.float64()),
        pa.field("mcnemar_p", pa.float64()),
        pa.field("mean_tokens", pa.float64()),  # the scored responses' length
        pa.field("truncated", pa.float64()),  # their share that hit max_new_tokens
        pa.field("n_targets", pa.float64()),  # training side of the round (null at round 0)
        pa.field("pseudo_label_acc", pa.float64()),
        pa.field("weighted_label_acc", pa.float64()),  # share of training weight on right targets
    ]
)

AUDIT_SCHEMA = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("peer", pa.string(), nullable=False),
        pa.field("n_targets", pa.int32(), nullable=False),
        pa.field("n_right", pa.int32(), nullable=False),  # gold audit
        pa.field("n_copied", pa.int32(), nullable=False),  # restated an earlier peer verbatim
        pa.field("auroc_right", pa.float64()),  # weight separating right from wrong targets
        pa.field("auroc_copied", pa.float64()),  # weight separating copied from other targets
        pa.field("weight_right", pa.float64()),  # mean weight of each kind
        pa.field("weight_wrong", pa.float64()),
        pa.field("weight_copied", pa.float64()),
        pa.field("weight_other", pa.float64()),
    ]
)
