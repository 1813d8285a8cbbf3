import pytest

from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.errors import ConfigError


def test_defaults_follow_the_thesis():
    cfg = GuidanceConfig()
    assert (cfg.mode, cfg.max_align_rounds, cfg.correct_limit, cfg.is_good) == ("full", 5, 5, 5)
    assert cfg.good(5, "") and not cfg.good(4, "")
    assert cfg.corrects and cfg.reasons and cfg.aligns and cfg.uses_layout


def test_is_good_threshold_or_callable():
    assert make_config(is_good=4).good(4, "")
    cfg = make_config(is_good=lambda score, why: score >= 3 and "bird" in why)
    assert cfg.good(3, "the bird is there") and not cfg.good(5, "no")
    assert cfg.describe()["is_good"].startswith("callable:")


@pytest.mark.parametrize("kwargs", [{"is_good": 0}, {"is_good": 6}, {"is_good": True}, {"max_align_rounds": -1},
                                    {"mode": "best"}, {"max_align_round": 3}, {"width": 10},
                                    {"mode": "place", "self_correct": True}])
def test_invalid_configs(kwargs):
    with pytest.raises(ConfigError):
        make_config(**kwargs)


def test_modes_imply_steps():
    assert not make_config(mode="place").corrects
    assert make_config(mode="place+correct").corrects and not make_config(mode="place+correct").aligns
    assert make_config(mode="align").aligns and not make_config(mode="align").reasons
    assert not make_config(mode="full", self_correct=False).corrects
    assert not make_config(mode="plain").uses_layout


def test_seed_policy():
    assert make_config().round_seed(7, 3) == 7
    assert make_config(seed_policy="increment").round_seed(7, 3) == 10


def test_configs_merge_and_a_misspelt_knob_is_refused():
    cfg = make_config(max_align_rounds=3)
    merged = make_config(cfg, mode="place")
    assert merged.mode == "place" and merged.max_align_rounds == 3
    assert make_config({"mode": "align"}).mode == "align"
    with pytest.raises(ConfigError, match="max_align_round"):  # once silently ignored: K stayed 5
        make_config(max_align_round=3)


def test_run_settings_are_apart_from_the_method_and_read_older_records():
    from mllm_guidance.run_settings import make_settings, split_recorded

    how = make_settings(structured_steps=True)
    assert how.structured_steps == {"place", "self_correct", "reason", "align", "compare"}
    with pytest.raises(ConfigError, match="judge"):
        make_settings(structured_steps=["judge"])
    with pytest.raises(ConfigError):
        make_config(structured_steps=True)  # not a knob of the method
    older = {"mode": "full", "max_align_rounds": 2, "mllm_image_side": 512, "structured_steps": ["place"]}
    config, settings = split_recorded(older)
    assert make_config(config).max_align_rounds == 2
    assert settings.mllm_image_side == 512 and settings.structured_steps == {"place"}
