"""Reading the text files users give (datasets, templates, recordings): one clear line for each way
such a file can be unusable, instead of a traceback from deep inside a parser."""

from __future__ import annotations

from pathlib import Path

from mllm_guidance.errors import InputError


def read_user_text(path: Path, what: str) -> str:
    """A text file a user gave (a dataset, a template, a recording), or one ``InputError`` line
    saying why it cannot be read: missing, a directory, unreadable, or not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InputError(f"{what} {path} is a directory; give a file") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
