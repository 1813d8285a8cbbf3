"""The ``mllm-guidance`` command line.

    mllm-guidance generate PROMPT [--mllm SPEC] [--generator SPEC] [-k N] [--mode M] [--out DIR]
    mllm-guidance generate --resume DIR
    mllm-guidance plan PROMPT [--mllm SPEC]          the layout only (with a sketch preview)
    mllm-guidance templates show [STEP] | export DIR
    mllm-guidance trace show RUN_DIR                 the rounds as a table
    mllm-guidance bench --dataset rls300 --method full --out results/NAME   a benchmark
    mllm-guidance mcp [--http]                       an MCP server (generate_image, plan_layout)
    mllm-guidance serve-generator --generator SPEC   a generator pool on Ray Serve (--generator serve:URL)

Flags for the method's knobs and the MLLM options come from the settings' field definitions
(``cli.options``); one progress renderer shows runs and benchmarks (``cli.progress``).
"""

from mllm_guidance.cli.app import app, main

__all__ = ["app", "main"]
