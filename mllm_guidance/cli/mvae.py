"""Registers ``mllm-guidance mvae`` (the thesis's chapter-3 system, package ``weighted_mvae``).

The sub-app module imports only typer, so ``mllm-guidance --help`` stays fast and torch-free;
without the package (an install that left it out) the command is simply absent."""

from mllm_guidance.cli.app import app

try:
    from weighted_mvae.cli import app as mvae_app
except ImportError:  # pragma: no cover - the package ships in the same distribution
    mvae_app = None

if mvae_app is not None:
    app.add_typer(mvae_app, name="mvae")
