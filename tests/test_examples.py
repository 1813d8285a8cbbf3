"""The committed recording is what examples/make_recording.py writes, byte for byte, every time."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_make_recording_is_reproducible(tmp_path):
    spec = importlib.util.spec_from_file_location("make_recording", ROOT / "examples" / "make_recording.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    first = module.main(tmp_path / "a.json").read_bytes()
    second = module.main(tmp_path / "b.json").read_bytes()
    assert first == second
    assert first == (ROOT / "examples" / "recordings" / "man-under-tree.json").read_bytes()
