"""A run's closing summary in words, for someone who has not read the metrics' names yet.

Per round and evaluated peer: EM before and after the round (as counts: on a few questions a
percentage hides how few), what it trained on (the targets' audited accuracy) and how the PMI
weights spread; then one line of reading computed from the same numbers: which peers start too
weak to matter, how much one question is worth, and where numbers worth reading come from.
Every number comes from the run's metrics (``metrics.run_metrics``); nothing is read from a
model or claimed beyond them.
"""

from __future__ import annotations

import math

# Below this EM at the start, a peer's answers are mostly wrong: a poor teacher, little to learn.
WEAK_EM = 0.25
# Changes of up to this many questions are within noise at any sample size.
NOISE_QUESTIONS = 2


Score = tuple[int, int, float]  # questions right, questions asked, EM


def recap(rows: list[dict], peers: list[str] | None = None) -> list[str]:
    """Lines describing a run from its metrics rows (``METRICS_SCHEMA``, all rounds);
    ``peers``: every peer of the config, so that those that only answered are named too."""
    value = {(m["round"], m["peer"], m["benchmark"], m["name"]): m["value"] for m in rows}
    scores: dict[tuple[int, str, str], Score] = {}
    for m in rows:
        known = m["value"] is not None and not math.isnan(m["value"])
        if m["name"] == "em" and m["benchmark"] is not None and known:
            n = int(value[(m["round"], m["peer"], m["benchmark"], "n_questions")])
            scores[(m["round"], m["peer"], m["benchmark"])] = (round(m["value"] * n), n, m["value"])
    if not scores:
        return ["No round has been evaluated yet."]
    rounds = sorted({r for r, _, _ in scores})
    everyone = peers or []
    peers = list(dict.fromkeys(p for _, p, _ in scores))
    benchmarks = list(dict.fromkeys(b for _, _, b in scores))
    on = {b: f" on {b}" if len(benchmarks) > 1 else "" for b in benchmarks}

    lines = ["What happened (EM: the share of held-out questions answered exactly right, greedy):"]
    for previous, r in zip([None, *rounds], rounds):
        for peer in peers:
            said = []
            for b in benchmarks:
                now, before = scores.get((r, peer, b)), scores.get((previous, peer, b))
                if now is not None:
                    shown = f"{_count(before)} -> {_count(now)}" if before else _count(now)
                    said.append(f"EM{on[b]} {shown}")
            if said:
                line = f"round {r}, {peer}{' (untuned)' if r == 0 else ''}: {', '.join(said)}"
                training = _training(value, r, peer)
                lines.append(f"{line}, {training}" if training else line)
    reading = _reading(value, scores, rounds, peers, on)
    silent = [p for p in everyone if p not in peers]
    if silent:
        names = " and ".join([", ".join(silent[:-1]), silent[-1]] if len(silent) > 1 else silent)
        lines.append(f"{names} answered {'its' if len(silent) == 1 else 'their'} turns, untrained "
                     f"and unevaluated (`learners` names {', '.join(peers)}).")
    return [*lines, "Reading: " + " ".join(reading)]


def _reading(value: dict, scores: dict, rounds: list[int], peers: list[str],
             on: dict[str, str]) -> list[str]:
    """Weak starters, what one question is worth, the change per peer against that noise, and
    where numbers that mean something come from."""
    first, last = rounds[0], rounds[-1]
    out = []
    starts = {p: [s for b in on if (s := scores.get((first, p, b)))] for p in peers}
    weak = [p for p, ss in starts.items() if ss and all(s[2] < WEAK_EM for s in ss)]
    if weak:
        pool = next((v for (_, p, b, name), v in value.items()
                     if (p, b, name) == (None, None, "n_questions")), None)
        counts = ", ".join(f"{p} {_count(starts[p][0])}" for p in weak)
        if first == 0:
            verb = "starts" if len(weak) == 1 else "start"
        else:
            verb = "is" if len(weak) == 1 else "are"
        out.append(f"{_names(weak)} {verb} below {WEAK_EM:.0%} EM in round {first} ({counts}): "
                   "too weak to be a useful teacher or to learn much"
                   f"{f' on {int(pool)} questions a round' if pool else ''}.")
    sizes = sorted({s[1] for ss in starts.values() for s in ss})
    worth = " and ".join(f"{n} questions (one is {100 / n:.1f} points)" for n in sizes)
    out.append(f"EM is measured on {worth}: a change of one or two questions is noise.")
    if last != first:
        changes = [(f"{p}{on[b]}", scores[(last, p, b)][0] - scores[(first, p, b)][0])
                   for p in peers for b in on
                   if (first, p, b) in scores and (last, p, b) in scores]
        big = any(abs(k) > NOISE_QUESTIONS for _, k in changes)
        out.append(f"From round {first} to {last}, questions gained: "
                   f"{', '.join(f'{name} {k:+d}' for name, k in changes)}; " + (
                       "larger changes still need a paired interval (`pst compare` against a "
                       "base run)." if big else "all within that noise."))
    out.append("Numbers that mean something come from the MultiArith config sets "
               "(data/configs/offline-strong/ compares the methods; docs/usage.md).")
    return out


def _count(score: Score) -> str:
    right, n, share = score
    return f"{right}/{n} ({share:.0%})"


def _training(value: dict, r: int, peer: str) -> str:
    """What the peer trained on in round r and how its weights spread ('' without training)."""
    n = value.get((r, peer, None, "n_targets"))
    if n is None:
        return ""
    if n == 0:
        return "no training targets this round"
    acc = value.get((r, peer, None, "pseudo_label_acc"), math.nan)
    said = f"trained on {int(n)} targets " + (
        "(no gold answers to audit them)" if math.isnan(acc) else
        f"of which {acc:.0%} had the right answer (audited against gold, never used in training)")
    std, top = value.get((r, peer, None, "weight_std")), value.get((r, peer, None, "weight_max"))
    if (r, peer, None, "mean_pmi") in value:
        said += f", PMI weights (mean 1) spread {std:.2f} (std) up to {top:.1f}"
    elif std == 0:
        said += ", all weighted equally"
    return said


def _names(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
