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
