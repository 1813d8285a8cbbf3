"""Issue 26, item 1: every face exposes the client knobs under one set of names and bounds, made
from one declaration (knobs.py), and an operator's limits narrow them on every face alike."""

from __future__ import annotations

import asyncio

import pytest

from mllm_guidance.errors import InputError
from mllm_guidance.knobs import KNOBS, PAUSING, UNLIMITED, KnobLimits, bounds, knob_model, schema_bounds

NARROW = KnobLimits(max_rounds=3, max_candidates=2, max_side=512, modes=("full", "place"))


def expected(limits: KnobLimits, without=PAUSING) -> dict:
    return bounds(knob_model(limits, frozenset(without)))


def test_the_model_takes_its_bounds_from_the_config_and_the_limits():
    wide, narrow = expected(UNLIMITED, ()), expected(NARROW, ())
    assert set(wide) == set(KNOBS)
    assert wide["max_rounds"][:2] == (0, 50) and narrow["max_rounds"][:2] == (0, 3)
    assert wide["candidates"][:2] == (1, 16) and narrow["candidates"][:2] == (1, 2)
    assert narrow["width"][:2] == (64, 512) and wide["is_good"][:2] == (1, 5)
    assert narrow["mode"][2] == ("place", "full")
    with pytest.raises(ValueError, match="extra"):
        knob_model(NARROW)(max_align_rounds=2)  # config names are not client names


@pytest.mark.parametrize("limits", [KnobLimits(), NARROW], ids=["default", "narrowed"])
def test_mcp_tool_and_server_expose_the_same_knobs(limits, monkeypatch):
    pytest.importorskip("mcp")
    from mllm_guidance.mcp_server import create_server
    from mllm_guidance.server import ServerInput, client_knobs
    from mllm_guidance.tool import as_tool

    tools = {t.name: t for t in asyncio.run(create_server(generator="sketch", limits=limits).list_tools())}
    mcp = {k: schema_bounds(v) for k, v in tools["generate_image"].inputSchema["properties"].items() if k != "prompt"}
    assert mcp == expected(limits)
    assert {k: schema_bounds(v) for k, v in tools["plan_layout"].inputSchema["properties"].items()
            if k != "prompt"} == {"correct_rounds": expected(limits)["correct_rounds"]}

    agent_tool = as_tool(generator="sketch", limits=limits)
    assert {k: schema_bounds(v) for k, v in agent_tool.args.items() if k != "prompt"} == expected(limits)

    monkeypatch.setenv("MLLM_GUIDANCE_CLIENT_MAX_ROUNDS", str(limits.max_rounds))
    monkeypatch.setenv("MLLM_GUIDANCE_CLIENT_MAX_CANDIDATES", str(limits.max_candidates))
    monkeypatch.setenv("MLLM_GUIDANCE_CLIENT_MAX_SIDE", str(limits.max_side))
    monkeypatch.setenv("MLLM_GUIDANCE_CLIENT_MODES", ",".join(limits.modes))
    server = bounds(client_knobs())  # configurable; the seed is the graph's input
    server["seed"] = schema_bounds(ServerInput.model_json_schema()["properties"]["seed"])
    assert server == expected(limits, ())


def test_the_studio_offers_the_same_knobs():
    pytest.importorskip("gradio")
    from mllm_guidance.studio.app import build_studio

    for limits in (KnobLimits(), NARROW):
        app = build_studio(limits=limits)
        found = {}
        for block in app.blocks.values():
            name = (getattr(block, "elem_id", None) or "").replace("-", "_")
            if name in KNOBS:
                choices = getattr(block, "choices", None)
                found[name] = ((None, None, tuple(c[1] for c in choices)) if choices is not None
                               else (block.minimum, block.maximum, None))
        assert found == expected(limits)


def test_the_command_line_refuses_past_the_same_bounds():
    """The CLI's user is its operator: its flags take the config's own bounds (UNLIMITED)."""
    from mllm_guidance.cli.options import CONFIG_FLAGS, make_cli_config

    wide = expected(UNLIMITED, ())
    flags = {**CONFIG_FLAGS, "width": ("--size",), "height": ("--size",), "review": ("--review",)}
    for knob, field in KNOBS.items():
        assert field in flags, f"knob {knob} has no command-line flag"
        low, high, choices = wide[knob]
        if choices is not None:
            make_cli_config({field: choices[-1]} | ({"mode": "full"} if field == "judge_mode" else {}))
            continue
        needs = {"verifier": "clip"} if knob == "candidates" else {}
        make_cli_config({field: high} | needs)
        with pytest.raises(InputError, match="|".join(flags[field])):
            make_cli_config({field: high + 1} | needs)


def test_a_refused_combination_on_the_command_line_reads_as_one_sentence():
    from mllm_guidance.cli.options import make_cli_config

    with pytest.raises(InputError) as refused:
        make_cli_config({"candidates": 2})
    assert str(refused.value).startswith("candidates > 1 needs a verifier")
