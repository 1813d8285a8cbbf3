"""diffusers' habit for copied code: a copy marked ``# Copied from mllm_guidance.<module>.<name>`` must
match its original (``scripts/check_copies.py``), so a change to one is carried to every copy."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("check_copies", ROOT / "scripts" / "check_copies.py")
check_copies = sys.modules.setdefault("check_copies", importlib.util.module_from_spec(spec))
spec.loader.exec_module(check_copies)

ORIGINAL = '''class Pipe:
    def set_fusers(self, enabled: bool) -> None:
        """Switch the fusers."""
        for module in self.unet.modules():
            module.enabled = enabled
'''
COPY = '''from typing import Any


# Copied from mllm_guidance.pipe.Pipe.set_fusers with self.unet->unet
def set_fusers(unet: Any, enabled: bool) -> None:
    """Switch the fusers."""
    for module in unet.modules():
        module.enabled = enabled


def after() -> int:
    return 1
'''


@pytest.fixture
def tree(tmp_path):
    package = tmp_path / "mllm_guidance"
    package.mkdir()
    (package / "pipe.py").write_text(ORIGINAL)
    (package / "copied.py").write_text(COPY)
    return tmp_path


def test_every_marked_copy_in_the_package_matches_its_original():
    """The one marked copy (gligen.set_fusers) became a shared helper (gligen_grounding.py) when the SD
    GLIGEN pipeline was owned; the check stays for the next copy (the throwaway-package tests below
    show it fails on drift)."""
    assert check_copies.check() == []


def test_a_copy_that_matches_after_its_replacements_passes(tree):
    assert check_copies.check(tree) == []


def test_a_change_to_the_original_fails_until_carried_to_the_copy(tree):
    original = tree / "mllm_guidance" / "pipe.py"
    original.write_text(ORIGINAL.replace("module.enabled = enabled", "module.enabled = bool(enabled)"))
    assert check_copies.check(tree) == [
        "mllm_guidance/copied.py:4: the copy of mllm_guidance.pipe.Pipe.set_fusers differs from it"]
    assert check_copies.check(tree, fix=True)  # reports what it rewrote
    fixed = (tree / "mllm_guidance" / "copied.py").read_text()
    assert "        module.enabled = bool(enabled)\n" in fixed and "for module in unet.modules():" in fixed
    assert fixed.endswith("def after() -> int:\n    return 1\n")  # nothing else moved
    assert check_copies.check(tree) == []


def test_an_edit_of_the_copy_alone_fails(tree):
    copy = tree / "mllm_guidance" / "copied.py"
    copy.write_text(COPY.replace('"""Switch the fusers."""', '"""Switch them."""'))
    assert len(check_copies.check(tree)) == 1


def test_bad_markers_are_clear_errors(tree):
    copy = tree / "mllm_guidance" / "copied.py"
    copy.write_text(COPY.replace("pipe.Pipe.set_fusers", "pipe.Pipe.gone"))
    with pytest.raises(LookupError, match="defines no 'gone'"):
        check_copies.check(tree)
    copy.write_text(COPY.replace("with self.unet->unet", "with self.unet to unet"))
    with pytest.raises(ValueError, match="not written as old->new"):
        check_copies.check(tree)
    copy.write_text(COPY.replace("def set_fusers", "\ndef set_fusers"))
    with pytest.raises(ValueError, match="right above a def or class"):
        check_copies.check(tree)


def test_the_command_exits_1_on_a_drifted_copy(tree, monkeypatch, capsys):
    monkeypatch.setattr(check_copies, "ROOT", tree)
    assert check_copies.main([]) == 0
    (tree / "mllm_guidance" / "pipe.py").write_text(ORIGINAL.replace("Switch the fusers.", "Switch."))
    assert check_copies.main([]) == 1
    assert "copied.py:4" in capsys.readouterr().out
