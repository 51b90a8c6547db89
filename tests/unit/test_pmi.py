"""PMI weights: direction, clipping, normalization, the uniform beta = 0 ablation."""

import math

import pytest

from pst_core.pmi import pmi_weights


def test_high_pmi_gets_small_weight():
    z, w = pmi_weights([-0.5, 0.0, 0.8], beta=1.0, w_min=0.01, w_max=100)
    assert w[0] > w[1] > w[2]
    assert z[2] > z[1] > z[0]


def test_weights_have_mean_one_per_peer_and_round():
    _, w = pmi_weights([0.1, 0.3, -0.2, 0.05], beta=2.0, w_min=0.2, w_max=5.0)
    assert sum(w) / len(w) == pytest.approx(1.0)


def test_beta_zero_is_uniform():
    assert pmi_weights([0.1, 3.0, -2.0], beta=0.0, w_min=0.2, w_max=5.0)[1] == [1.0, 1.0, 1.0]


def test_clipping_bounds_the_ratio():
    _, w = pmi_weights([0.0] * 9 + [10.0], beta=5.0, w_min=0.5, w_max=2.0)
    assert max(w) / min(w) == pytest.approx(4.0)


def test_z_scores_make_beta_unit_free():
    small = pmi_weights([0.01, 0.02, 0.03], beta=1.0, w_min=0.01, w_max=100)[1]
    large = pmi_weights([10.0, 20.0, 30.0], beta=1.0, w_min=0.01, w_max=100)[1]
    assert small == pytest.approx(large)
    raw = pmi_weights([0.01, 0.02, 0.03], beta=1.0, w_min=0.01, w_max=100, standardize="raw")[1]
    assert max(raw) - min(raw) < 0.03  # raw PMI of 0.01 barely moves exp(-PMI)


def test_constant_pmi_gives_uniform_weights():
    z, w = pmi_weights([0.4, 0.4], beta=3.0, w_min=0.2, w_max=5.0)
    assert z == [0.0, 0.0] and w == [1.0, 1.0]
    assert not any(math.isnan(x) for x in w)


def test_sigmoid_gives_one_at_beta_zero_and_falls_as_pmi_rises():
    assert pmi_weights([0.3, -1.0, 2.0], beta=0.0, w_min=0.2, w_max=5.0,
                       transform="sigmoid")[1] == [1.0, 1.0, 1.0]
    z, w = pmi_weights([-0.5, 0.0, 0.8], beta=2.0, w_min=0.2, w_max=5.0, transform="sigmoid")
    assert w[0] > w[1] > w[2] and sum(w) / 3 == pytest.approx(1.0)
    # Bounded by 2 before normalizing, hence never clipped: a huge PMI gap stays finite.
    _, extreme = pmi_weights([-1000.0, 1000.0], beta=1.0, w_min=0.9, w_max=1.1,
                             standardize="raw", transform="sigmoid")
    assert extreme == pytest.approx([2.0, 0.0])
