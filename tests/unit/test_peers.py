"""Peer orders, self-consistency and the peer prompt."""

from pst_core.peers import majority_share, order_peers
from pst_core.prompts import peer_prompt, solo_prompt


def test_config_and_rotate_orders():
    peers, qids = ["a", "b", "c"], ["q0", "q1", "q2", "q3"]
    assert order_peers(peers, qids, "config", 1) == {q: peers for q in qids}
    rotated = order_peers(peers, qids, "rotate", 1)
    assert [rotated[q][-1] for q in qids] == ["a", "b", "c", "a"]  # each peer is sometimes last
    assert all(sorted(o) == peers for o in rotated.values())
    assert order_peers(peers, qids, "rotate", 2)["q0"] != rotated["q0"]


def test_consistency_order_uses_the_ranking():
    orders = order_peers(["a", "b"], ["q"], "consistency", 1, ranking=["b", "a"])
    assert orders == {"q": ["b", "a"]}


def test_majority_share_is_equivalence_aware():
    assert majority_share(["3", "3.0", "4", None]) == 0.5
    assert majority_share([None, None]) == 0.0


def test_peer_prompt_shows_earlier_answers_in_order():
    prompt = peer_prompt("What is 2+2?", ["I get 4.", "It is 5."], "chat")
    assert prompt.text.index("Student 1: I get 4.") < prompt.text.index("Student 2: It is 5.")
    assert "may be wrong" in prompt.text
    assert peer_prompt("What is 2+2?", [], "chat") == solo_prompt("What is 2+2?", "chat")
    fewshot = peer_prompt("What is 2+2?", ["I get 4."], "fewshot").text
    assert fewshot.endswith("Student 1: I get 4.\n\nQuestion: What is 2+2?\nAnswer:")
