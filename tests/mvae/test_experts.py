"""The expert rules against Gaussians computed by hand (eqs. 3.3-3.14, figure 3.1)."""

import pytest

torch = pytest.importorskip("torch")

from weighted_mvae.experts import Experts, gmoe, gpoe, moe, poe, row_owners  # noqa: E402


def _gauss(mu, var):
    return torch.tensor([[mu]]), torch.log(torch.tensor([[var]]))


def test_poe_with_the_prior_expert_by_hand():
    (m1, l1), (m2, l2) = _gauss(1.0, 0.5), _gauss(-2.0, 0.25)
    mu, logvar = poe([m1, m2], [l1, l2])
    # precisions: prior 1, expert 2, expert 4 -> 7; mean (0*1 + 1*2 + -2*4) / 7
    assert torch.allclose(logvar.exp(), torch.tensor([[1 / 7]]))
    assert torch.allclose(mu, torch.tensor([[-6 / 7]]))


def test_poe_without_the_prior():
    (m1, l1), (m2, l2) = _gauss(1.0, 0.5), _gauss(-2.0, 0.25)
    mu, logvar = poe([m1, m2], [l1, l2], prior=False)
    assert torch.allclose(logvar.exp(), torch.tensor([[1 / 6]]))
    assert torch.allclose(mu, torch.tensor([[-1.0]]))


def test_gpoe_by_hand_and_equal_weights_are_poe():
    (m1, l1), (m2, l2) = _gauss(1.0, 0.5), _gauss(-2.0, 0.25)
    # weights 3:1 -> exponents a_i * M = 1.5 and 0.5: precisions 1 + 3 + 2 = 6, mean (1*3 - 2*2) / 6
    mu, logvar = gpoe([m1, m2], [l1, l2], [0.75, 0.25])
    assert torch.allclose(logvar.exp(), torch.tensor([[1 / 6]]))
    assert torch.allclose(mu, torch.tensor([[-1 / 6]]))
    g = torch.Generator().manual_seed(0)
    mus = [torch.randn(5, 3, generator=g) for _ in range(3)]
    lvs = [torch.randn(5, 3, generator=g) for _ in range(3)]
    for a, b in zip(gpoe(mus, lvs, [1 / 3] * 3), poe(mus, lvs)):
        assert torch.allclose(a, b, atol=1e-6)
    for a, b in zip(gpoe(mus, lvs, [7.0, 7.0, 7.0]), poe(mus, lvs)):  # only the ratios matter
        assert torch.allclose(a, b, atol=1e-6)


def test_gpoe_of_one_expert_is_unweighted():
    (m1, l1) = _gauss(2.0, 1.0)
    mu, logvar = gpoe([m1], [l1], [0.75])  # renormalised over the observed: exponent 1, precision 1 + 1
    assert torch.allclose(logvar.exp(), torch.tensor([[0.5]])) and torch.allclose(mu, torch.tensor([[1.0]]))


def test_moe_takes_equal_row_shares_in_order():
    mus = [torch.full((6, 2), float(i)) for i in range(3)]
    lvs = [torch.full((6, 2), -float(i)) for i in range(3)]
    mu, logvar = moe(mus, lvs)
    assert mu[:, 0].tolist() == [0, 0, 1, 1, 2, 2]
    assert logvar[:, 1].tolist() == [0, 0, -1, -1, -2, -2]


@pytest.mark.parametrize("weights,expected", [
    ([0.5, 0.25, 0.25], [4, 2, 2]), ([0.2, 0.2, 0.6], [2, 2, 6]), ([2 / 3, 1 / 3], [20, 10]), ([0.25, 0.75], [2, 6]),
])
def test_gmoe_row_shares_follow_the_weights(weights, expected):
    rows = sum(expected)
    owners = row_owners(rows, weights, len(weights))
    assert torch.bincount(owners, minlength=len(weights)).tolist() == expected
    assert owners.tolist() == sorted(owners.tolist())  # contiguous, in modality order (figure 3.1)
    mus = [torch.full((rows, 1), float(i)) for i in range(len(weights))]
    mu, _ = gmoe(mus, [torch.zeros(rows, 1)] * len(weights), weights)
    assert mu[:, 0].tolist() == [float(o) for o in owners.tolist()]


def test_gmoe_with_equal_weights_is_moe():
    g = torch.Generator().manual_seed(1)
    mus = [torch.randn(9, 4, generator=g) for _ in range(3)]
    lvs = [torch.randn(9, 4, generator=g) for _ in range(3)]
    for a, b in zip(gmoe(mus, lvs, [1, 1, 1]), moe(mus, lvs)):
        assert torch.equal(a, b)


def test_experts_by_name_and_bad_input():
    assert Experts("poe", weighted=True).rule == "gpoe" and Experts("gmoe").family == "moe"
    with pytest.raises(ValueError, match="unknown expert rule"):
        Experts("sum")
    m, lv = _gauss(0.0, 1.0)
    with pytest.raises(ValueError, match="expected 2 weights"):
        gpoe([m, m], [lv, lv], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        gpoe([m, m], [lv, lv], [1.0, -1.0])
