"""The multimodal ELBO's terms (eqs. 3.2, 3.6) and every weighting strategy's update on a tiny model."""

import math
import random

import pytest

torch = pytest.importorskip("torch")

from weighted_mvae import nets  # noqa: E402
from weighted_mvae.divergence import js_bernoulli, js_discrete, js_histogram  # noqa: E402
from weighted_mvae.model import Modality, MultimodalVAE, build_model, kl_standard_normal, log_likelihood  # noqa: E402
from weighted_mvae.train import Settings, train  # noqa: E402
from weighted_mvae.weighting import AUTO, Auto, Fixed, Weighting, generation_divergences, make_weighting  # noqa: E402


def tiny_image_label(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    images = (torch.rand(n, 16, generator=g) * 0.3 + 0.7 * (torch.arange(16) % 10 == labels[:, None]).float())
    return {"image": images, "text": torch.nn.functional.one_hot(labels, 10).float()}


def tiny_model(expert="gpoe", latent=3):
    return MultimodalVAE([Modality("image", nets.MLPEncoder(16, (8,), latent), nets.MLPDecoder(latent, (8,), 16)),
                          Modality("text", *nets.label_nets(latent, (8,)))], expert)


def test_kl_and_likelihoods_by_hand():
    assert torch.allclose(kl_standard_normal(torch.zeros(1, 2), torch.zeros(1, 2)), torch.zeros(1))
    mu, logvar = torch.tensor([[1.0]]), torch.log(torch.tensor([[2.0]]))
    assert torch.allclose(kl_standard_normal(mu, logvar), torch.tensor([0.5 * (1 + 2 - 1 - math.log(2))]))
    # Bernoulli: logit 0 is p = 0.5 for each of 3 entries -> 3 ln 2
    assert torch.allclose(log_likelihood("bernoulli", torch.zeros(1, 3), torch.ones(1, 3)), torch.tensor([-3 * math.log(2)]))
    # Gaussian N(0, 1) at x = 1: -0.5 (ln 2pi + 1)
    assert torch.allclose(log_likelihood("gaussian", torch.zeros(1, 2), torch.ones(1, 1)),
                          torch.tensor([-0.5 * (math.log(2 * math.pi) + 1)]))


def test_elbo_has_the_single_and_joint_terms_for_two_modalities():
    model = tiny_model()
    assert model.terms() == [(0,), (1,), (0, 1)]  # eq. 3.2
    terms = model.elbo_terms(tiny_image_label())
    assert set(terms[(0,)]) == {"image", "kl"} and set(terms[(1,)]) == {"text", "kl"}
    assert set(terms[(0, 1)]) == {"image", "text", "kl"}
    assert all(float(t["kl"].detach()) >= 0 for t in terms.values())


def test_loss_is_minus_the_sum_of_the_terms_with_scales():
    torch.manual_seed(0)
    model = tiny_model()
    model.scales["text"] = 5.0
    batch = tiny_image_label()
    torch.manual_seed(3)
    loss = model.loss(batch)
    torch.manual_seed(3)
    terms = model.elbo_terms(batch, model.terms())
    by_hand = -sum(sum((5.0 if n == "text" else 1.0) * t[n] for n in ("image", "text") if n in t) - t["kl"]
                   for t in terms.values())
    assert torch.allclose(loss, by_hand)


def test_three_modalities_have_every_subset_or_a_sample_of_them():
    mods = [Modality(f"m{i}", *nets.scalar_nets(), likelihood="gaussian") for i in (1, 2, 3)]
    model = MultimodalVAE(mods, "gpoe")
    assert model.terms() == [(0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]  # eq. 3.6
    model.subsets = 1
    terms = model.terms(random.Random(0))
    assert len(terms) == 5 and terms[-1] == (0, 1, 2) and len(terms[3]) == 2


def test_fixed_weightings():
    assert make_weighting("image-x2").initial(["image", "text"]).tolist() == pytest.approx([2 / 3, 1 / 3])
    assert make_weighting("text-x3").initial(["image", "text"]).tolist() == pytest.approx([1 / 4, 3 / 4])
    assert make_weighting("m2-x2").initial(["m1", "m2", "m3"]).tolist() == pytest.approx([0.25, 0.5, 0.25])
    assert make_weighting("equal").initial(["a", "b", "c"]).tolist() == pytest.approx([1 / 3] * 3)
    assert make_weighting("image-x2").update(None, {}) is None
    with pytest.raises(ValueError, match="unknown weighting"):
        make_weighting("image-twice")
    with pytest.raises(ValueError, match="no modality 'm4'"):
        make_weighting("m4-x2", ["m1", "m2", "m3"])


@pytest.mark.parametrize("name,expected_first_up", [
    ("auto:generates-worst", True), ("auto:generates-best", False),
    ("auto:generated-worst", False), ("auto:generated-best", True),
])
def test_auto_update_by_hand(name, expected_first_up):
    # D[i, j]: modality 0 generates badly (row 0 large), modality 1 is generated badly (column 1 large)
    d = torch.tensor([[0.2, 0.6], [0.1, 0.3]])
    w = make_weighting(name)
    w.initial(["image", "text"])
    new = w.step(d)
    assert float(new.sum()) == pytest.approx(1.0)
    assert (new[0] > 0.5) == expected_first_up
    s = d.sum(1) if "generates" in name else d.sum(0)
    s = s / s.sum()
    if name.endswith("best"):
        s = (1 - s) / (1 - s).sum()
    assert new.tolist() == pytest.approx(((torch.tensor([0.5, 0.5]) + s) / 2).tolist())


@pytest.mark.parametrize("name", ["equal", "image-x3", *AUTO])
def test_each_weighting_trains_a_tiny_model(name):
    model = tiny_model()
    weighting = make_weighting(name, model.names)
    settings = Settings(epochs=3, batch_size=20, probe_size=20, latent=3)
    history = train(model, tiny_image_label(), weighting, settings, seed=0)
    assert len(history["loss"]) == 3 and all(math.isfinite(v) for v in history["loss"])
    final = history["weights"][-1]
    assert sum(final) == pytest.approx(1.0)
    if name == "image-x3":
        assert final == pytest.approx([0.75, 0.25])
    if name in AUTO:
        assert isinstance(weighting, Auto) and len(weighting.history) == 3  # initial + 2 updates (not after the last)
        assert final != pytest.approx([0.5, 0.5])
        assert final == pytest.approx(weighting.history[-1])


def test_generation_divergences_are_js_between_generated_and_real():
    model = tiny_model()
    batch = tiny_image_label()
    d = generation_divergences(model, batch)
    assert d.shape == (2, 2) and bool((d >= 0).all()) and bool((d <= math.log(2) + 1e-6).all())
    with torch.no_grad():
        mu, _ = model.posterior(batch, ["text"])
        expected = float(js_bernoulli(model.mean_output(mu, "image"), batch["image"]))
    assert float(d[1, 0]) == pytest.approx(expected, rel=1e-5)


def test_js_estimates():
    p = torch.tensor([0.5, 0.5])
    assert float(js_discrete(p, p)) == pytest.approx(0.0, abs=1e-6)
    assert float(js_discrete(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]))) == pytest.approx(math.log(2), abs=1e-5)
    assert float(js_bernoulli(torch.ones(4), torch.zeros(4))) == pytest.approx(math.log(2), abs=1e-5)
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5000, generator=g), torch.randn(5000, generator=g)
    assert float(js_histogram(a, b)) < 0.01
    assert float(js_histogram(a + 3, b)) > 0.4


def test_build_model_from_user_nets_trains_with_gpoe_and_a_weighting():
    enc = {"image": nets.MLPEncoder(16, (8,), 2), "text": nets.MLPEncoder(10, (8,), 2)}
    dec = {"image": nets.MLPDecoder(2, (8,), 16), "text": nets.MLPDecoder(2, (8,), 10)}
    model = build_model(enc, dec, scales={"text": 10.0}, expert="gpoe")
    before = [p.detach().clone() for p in model.parameters()]
    train(model, tiny_image_label(), make_weighting("auto:generates-best", model.names),
          Settings(epochs=2, batch_size=20, probe_size=20), seed=1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    with pytest.raises(ValueError, match="must name the same modalities"):
        build_model(enc, {"image": dec["image"]})
    with pytest.raises(ValueError, match="likelihood must be one of"):
        build_model(enc, dec, likelihoods={"text": "poisson"})


def test_weights_change_the_joint_posterior_only_through_the_rule():
    model = tiny_model()
    batch = tiny_image_label()
    equal = model.posterior(batch, ["image", "text"])
    model.set_weights([3, 1])
    weighted = model.posterior(batch, ["image", "text"])
    assert not torch.allclose(equal[0], weighted[0])
    classic = tiny_model("poe")
    classic.load_state_dict(model.state_dict())
    assert torch.allclose(classic.posterior(batch, ["image", "text"])[0], equal[0], atol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        model.set_weights([1, -1])
    assert isinstance(Weighting(), Weighting) and Fixed("image", 2).name == "image-x2"


def test_a_single_modality_posterior_ignores_the_weights():
    model = tiny_model()
    batch = tiny_image_label()
    alone = model.posterior(batch, ["image"])
    model.set_weights([3, 1])
    assert all(torch.equal(a, b) for a, b in zip(alone, model.posterior(batch, ["image"])))
