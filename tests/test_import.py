import subprocess
import sys


def test_import_is_light():
    code = (
        "import sys, mllm_guidance; from mllm_guidance import guide, build_graph, Layout; "
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unknown_attribute():
    import mllm_guidance
    import pytest

    with pytest.raises(AttributeError):
        mllm_guidance.nope  # noqa: B018


def test_help_imports_no_langchain_langgraph_or_torch():
    """`--help` of every command answers before any of the run's machinery is imported
    (benchmarks/startup.py times it)."""
    code = (
        "import sys\n"
        "from mllm_guidance.cli import main\n"
        "for command in ([], ['generate'], ['plan'], ['bench'], ['templates'], ['trace'], ['mcp'], ['studio']):\n"
        "    assert main(command + ['--help']) == 0, command\n"
        "heavy = sorted(m for m in ('langchain', 'langchain_core', 'langsmith', 'langgraph', 'torch', 'gradio', 'mcp')\n"
        "               if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_import_is_declared():
    """Every third-party package a module of ours imports is declared in pyproject.toml (the base
    install or an extra): `click` came in through typer once, and left with typer 0.29."""
    import ast
    import re
    import tomllib
    from importlib.metadata import packages_distributions
    from pathlib import Path

    import mllm_guidance

    root = Path(mllm_guidance.__file__).parent
    project = tomllib.loads((root.parent / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    declared = {norm(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in requirements}
    providers = packages_distributions()
    undeclared = {}
    for path in [*root.rglob("*.py"), *(root.parent / "weighted_mvae").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("mllm_guidance", "weighted_mvae", "__future__"):
                    continue
                dists = {norm(d) for d in providers.get(top, [])}
                if not dists & declared:
                    undeclared.setdefault(top, set()).add(str(path.relative_to(root.parent)))
    # imported only where the user has them, never required: the authors' code inside a user's own checkout
    # (research_code.py), torchvision's dataset classes (weighted_mvae/data.py reads the files itself otherwise),
    # ModelScope for DPG-Bench's reference VQA (eval/dpg_bench.py; its own stack, ELLA's requirements-for-dpg_bench.txt)
    for optional in ("ldm", "torchvision", "modelscope"):
        undeclared.pop(optional, None)
    assert not undeclared, undeclared
