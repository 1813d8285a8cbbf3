"""The command line as a new user meets it: the README's quick start, errors, resume."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mllm_guidance.cli import main

ROOT = Path(__file__).resolve().parents[2]
RECORDING = ROOT / "examples" / "recordings" / "man-under-tree.json"
PROMPT = "A man is sitting under a tree while a bird is in the tree."


def test_quick_start_writes_the_run_directory(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", "sketch", "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "best: round 2, score 5/5 (stop: good)" in printed.out
    assert "reason       round 0 · score 3/5" in printed.err
    for name in ["final.png", "round-0.png", "round-1.png", "round-2.png", "run.json", "report.html", "calls.jsonl", "spec.json"]:
        assert (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())
    assert run["template_set"]["version"].startswith("builtin-v1+") and run["usage"]["mllm_calls"] == 8
    assert all(c["request"] and c["reply"] for c in run["calls"])
    html = (out / "report.html").read_text()
    assert "Round 2 · best" in html and "base64" not in html
    assert html.count('<svg class="boxes"') == 3 and '<svg class="chart"' in html  # boxes over each round, scores
    assert not list(out.glob("*overlay*"))  # drawn in the page, not encoded as extra images


def test_console_script_runs_in_a_subprocess(tmp_path):
    exe = shutil.which("mllm-guidance") or f"{sys.executable} -m mllm_guidance.cli"
    cmd = exe.split() + ["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--out", str(tmp_path / "r"), "--json", "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout)["score"] == 5


def test_replay_with_another_prompt_is_a_clear_error(tmp_path, capsys):
    code = main(["generate", "A cat on a sofa", "--mllm", f"replay:{RECORDING}", "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "is for the prompt" in err and "Traceback" not in err


def test_replay_that_runs_out(tmp_path, capsys):
    code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--out", str(tmp_path / "r"), "--good", "5", "--seed-policy", "increment", "-k", "5", "--correct-rounds", "5", "--mode", "full", "--parse-retries", "0"])
    # the recording ends good at round 2, so the same flow fits; a stricter flow runs out:
    assert code == 0
    code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--out", str(tmp_path / "r2"), "--mode", "align"])
    err = capsys.readouterr().err
    assert code == 3 and "no more 'align' answers" in err and "--resume" in err  # it ran, and ended without an image


@pytest.mark.parametrize("argv,message", [
    (["generate", "   "], "give a prompt"),
    (["generate", "!!!", "--mllm", "replay:x.json"], "no words"),
    (["generate", "a" * 3000, "--mllm", "replay:x.json"], "limit is 2000"),
    (["generate", "a cat", "--mllm", "replay:/nowhere/run.json"], "no recording at"),
    (["generate", "a cat", "--mllm", "llama-3"], "provider:model"),
    (["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", "nope"], "unknown generator 'nope'"),
    (["generate", "a cat", "--size", "12x12", "--mllm", "replay:x"], "between 64 and 4096"),
    (["generate", "a cat", "--good", "9", "--mode", "plain"], "is_good"),
    (["generate", "--resume", "/nowhere"], "/nowhere does not exist"),
    (["generate", "a cat", "--good", "0", "--mllm", "replay:x"], "--good 0: is_good as a threshold must be an integer from 1 to 5"),
])
def test_bad_input_gets_one_actionable_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_no_key_tells_the_user_what_to_do(tmp_path, capsys, monkeypatch):
    from mllm_guidance.backends import mllm

    for var in ("OPENAI_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(mllm, "_accelerator", lambda: (None, 0.0))  # no torch: nothing local to fall back to
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a cat on a sofa"]) == 2
    err = capsys.readouterr().err
    assert "set OPENAI_API_KEY" in err and "--mllm" in err


def test_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a cat", "--mllm", "gpt-4o", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_resume_from_the_command_line(tmp_path, capsys, monkeypatch):
    from mllm_guidance.backends import registry
    from tests.fakes import CountingGenerator

    failing = CountingGenerator(fail_on=2)
    monkeypatch.setitem(registry.BUILTIN, "flaky", "tests.cli.test_cli:FLAKY")
    globals()["FLAKY"] = lambda: failing
    registry._cache.clear()
    out = tmp_path / "run"
    assert main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", "flaky", "--out", str(out)]) == 3
    assert "simulated crash" in capsys.readouterr().err
    failing.fail_on = None  # the "machine" is fixed
    assert main(["generate", "--resume", str(out)]) == 0
    assert "best: round 2, score 5/5" in capsys.readouterr().out
    registry._cache.clear()


def test_plan_prints_the_layout(tmp_path, capsys):
    assert main(["plan", PROMPT, "--mllm", f"replay:{RECORDING}", "--out", str(tmp_path / "p")]) == 0
    captured = capsys.readouterr()
    assert "- a man sitting [0.24, 0.56, 0.54, 0.96]" in captured.out and "preview:" in captured.err
    assert main(["plan", PROMPT, "--mllm", f"replay:{RECORDING}", "--out", str(tmp_path / "q"), "--json", "--correct-rounds", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["objects"][0]["name"] == "a man sitting"


def test_templates_show_and_export(tmp_path, capsys):
    assert main(["templates", "show", "reason"]) == 0
    assert "5: the image depicts all elements and all" in capsys.readouterr().out
    assert main(["templates", "export", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "align.examples.json").exists()
    assert main(["templates", "show", "judge"]) == 2


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert "mllm-guidance 0.1.0" in capsys.readouterr().out
    assert main([]) == 2


def test_every_option_of_every_command_says_what_it_does():
    """Help a user can act on: every option has text, none says Python's None, and --generator
    lists what the registry has (entry-point generators included)."""
    import typer

    from mllm_guidance.backends.registry import available_generators
    from mllm_guidance.cli import app
    from mllm_guidance.cli import bench, run_commands, tools  # noqa: F401  (registers the commands)

    def commands(group, path=()):
        for name, command in getattr(group, "commands", {}).items():
            yield path + (name,), command
            yield from commands(command, path + (name,))

    silent, none = [], []
    for path, command in commands(typer.main.get_command(app)):
        for param in command.params:
            if param.param_type_name != "option" or param.hidden:
                continue
            flag = f"{' '.join(path)} {param.opts[0]}"
            if not (param.help or "").strip():
                silent.append(flag)
            if "None" in (param.help or ""):
                none.append(flag)
            if param.opts[0] == "--generator":
                assert all(name in param.help for name in available_generators()), flag
    assert not silent, silent
    assert not none, none


def test_trace_show_wraps_reasoning_instead_of_cutting_it(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", "sketch", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["trace", "show", str(out)]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("step"))
    assert header.split() == ["step", "round", "change", "reasoning", "score", "tokens", "seconds"]
    words = " ".join(table.split())
    assert "the bird must be in the tree, so move it onto a branch at the edge of the crown." in words and "…" not in table


def test_bench_progress_is_a_bar_on_a_terminal_and_lines_when_piped():
    import io

    from rich.console import Console

    from mllm_guidance.cli.progress import Progress

    terminal = io.StringIO()
    progress = Progress(console=Console(file=terminal, force_terminal=True, width=140), total=4)
    for i in range(4):
        progress.show("waiting")  # a run's status line never fights the bar
        progress.record({"status": "ok" if i else "failed", "final_score": 4})
    assert "━" in terminal.getvalue() and "4/4" in terminal.getvalue() and "failed 1" in terminal.getvalue()
    piped = io.StringIO()
    progress = Progress(console=Console(file=piped, force_terminal=False, width=140), total=40)
    for _ in range(40):
        progress.record({"status": "ok", "final_score": 5})
    lines = piped.getvalue().splitlines()
    assert len(lines) == 20 and lines[-1].startswith("40/40 (100%)") and "mean score 5.00" in lines[-1]
