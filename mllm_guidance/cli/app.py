"""The ``mllm-guidance`` command: a typer app, and the project's error manners for every command.

Exit statuses, the same for every command: 0 done; 1 a bug (the traceback is printed); 2 a usage
or input error, nothing was run; 3 the command ran but did not deliver everything (a run that ended
without its image, which ``--resume`` continues; a benchmark with failed items, which the same
command retries); 130 interrupted (Ctrl-C); 141 the output pipe closed.

Errors print one line that says what to do (``--debug`` adds the traceback); a closed pipe
(``... | head``) ends the command quietly; Ctrl-C during a run says how to resume it. Everything a
command prints goes through ``echo`` (or the progress renderer), which masks secrets
(``redact``), and so do error lines and tracebacks.
"""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import typer

from mllm_guidance import __version__
from mllm_guidance.errors import GuidanceError
from mllm_guidance.redact import redact_text

app = typer.Typer(
    name="mllm-guidance", help="MLLM Guidance for text-to-image generation.", no_args_is_help=True,
    add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None,
)
#: The run directory of the command in progress, for the Ctrl-C hint.
current: dict[str, str | None] = {"run_dir": None}


def _version(value: bool) -> None:
    if value:
        print(f"mllm-guidance {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                        help="Print the version and exit.")) -> None:
    """MLLM Guidance: a multimodal LLM plans, checks and re-plans the layout a grounded diffusion
    model draws, until the image shows what the prompt says."""


def echo(text: str, *, err: bool = False) -> None:
    """Print one result line (stdout, or stderr with ``err``), secrets masked."""
    print(redact_text(str(text)), file=sys.stderr if err else sys.stdout)


def manners(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A command's failures as exit statuses: 2 with one line for our errors and for files and
    directories the system refuses (``OSError``), 3 for ``RunIncomplete``, 130 for Ctrl-C (with the resume hint), 141 and
    silence for a closed pipe. Tracebacks (``--debug``, or a bug) are printed with secrets masked."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (GuidanceError, OSError) as exc:
            if isinstance(exc, BrokenPipeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                raise SystemExit(141) from None
            if kwargs.get("debug"):
                echo(traceback.format_exc().rstrip(), err=True)
            echo(f"error: {exc if isinstance(exc, GuidanceError) else os_error_line(exc)}", err=True)
            raise SystemExit(getattr(exc, "exit_code", 2)) from None
        except KeyboardInterrupt:
            run_dir = current["run_dir"]
            hint = f"; continue with: mllm-guidance generate --resume {run_dir}" if run_dir else ""
            print(f"\ninterrupted{hint}", file=sys.stderr)
            raise SystemExit(130) from None
        except (typer.TyperException, typer.Exit, typer.Abort):  # usage errors: typer's own manners
            raise
        except Exception:  # a bug: the traceback is for the report, without the keys
            echo(traceback.format_exc().rstrip(), err=True)
            raise SystemExit(1) from None

    return command


def os_error_line(exc: OSError) -> str:
    """``OSError`` as the system says it, with the file it is about."""
    where = f"{exc.filename}: " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 a usage or input error)."""
    from mllm_guidance.cli import bench, mvae, run_commands, serve_generator, tools  # noqa: F401  (registers the commands)

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        app(args=args, prog_name="mllm-guidance")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    return 0
