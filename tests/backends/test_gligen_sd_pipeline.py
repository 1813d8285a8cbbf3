"""The project's SD GLIGEN pipeline (``layout_pipelines/gligen_sd_pipeline.py``) side by side with diffusers'
deprecated ``StableDiffusionGLIGENPipeline`` on one tiny seeded model, for as long as diffusers ships that
class (skipped once it is gone: the goldens in ``test_goldens.py`` keep checking then), and its own inputs."""

import subprocess
import sys
import warnings

import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from mllm_guidance.backends.layout_pipelines.gligen_sd_pipeline import StableDiffusionGLIGENPipeline  # noqa: E402
from tests.backends.tiny_diffusion import build_tiny_gligen  # noqa: E402

PHRASES, BOXES = ["a cat", "a dog"], [[0.1, 0.2, 0.5, 0.9], [0.5, 0.4, 0.95, 0.95]]
MANY = [f"thing {i}" for i in range(31)], [[0.02 * i, 0.02 * i, 0.02 * i + 0.3, 0.02 * i + 0.3] for i in range(31)]


def diffusers_class():
    try:
        from diffusers import StableDiffusionGLIGENPipeline as Theirs
    except (ImportError, AttributeError):
        pytest.skip("this diffusers no longer ships StableDiffusionGLIGENPipeline")
    return Theirs


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_tiny_gligen(tmp_path_factory.mktemp("sd-gligen"))


@pytest.fixture(scope="module")
def ours(folder):
    pipe = StableDiffusionGLIGENPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def theirs(folder, tmp_path_factory):
    """diffusers' class, from a folder it saved itself (as hub checkpoints are: no ``image_encoder``)."""
    cls = diffusers_class()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = cls.from_pretrained(folder)
        saved = tmp_path_factory.mktemp("saved-by-diffusers")
        pipe.save_pretrained(saved)
        pipe = cls.from_pretrained(saved)
    pipe.set_progress_bar_config(disable=True)
    pipe.saved_folder = saved
    return pipe


def latents(pipe, prompt="a cat and a dog", phrases=PHRASES, boxes=BOXES, seed=0, **kw):
    generator = [torch.Generator("cpu").manual_seed(s) for s in seed] if isinstance(seed, list) else \
        torch.Generator("cpu").manual_seed(seed)
    return pipe(prompt, height=64, width=64, num_inference_steps=kw.pop("steps", 4), gligen_phrases=phrases,
                gligen_boxes=boxes, generator=generator, output_type="latent", **kw).images


@pytest.mark.parametrize("kw", [
    {"guidance_scale": 7.5, "gligen_scheduled_sampling_beta": 0.5},
    {"guidance_scale": 1.0, "gligen_scheduled_sampling_beta": 0.3},  # no classifier-free guidance
    {"guidance_scale": 7.5, "gligen_scheduled_sampling_beta": 0.0},  # never grounded
    {"guidance_scale": 5.0, "gligen_scheduled_sampling_beta": 1.0, "num_images_per_prompt": 2, "negative_prompt": "blurry"},
    {"guidance_scale": 7.5, "gligen_scheduled_sampling_beta": 0.5, "phrases": MANY[0], "boxes": MANY[1]},  # the first 30
], ids=["cfg", "no-cfg", "beta-0", "two-per-prompt", "31-objects"])
def test_bit_identical_to_diffusers_deprecated_pipeline(ours, theirs, kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # theirs warns about the 31st object
        a, b = latents(ours, **dict(kw)), latents(theirs, **dict(kw))
    assert a.shape == b.shape and torch.equal(a, b), (a - b).abs().max().item()


@pytest.mark.parametrize("scheduler", ["pndm", "euler-a", "dpm++"])
def test_bit_identical_under_other_schedulers(ours, theirs, scheduler):
    """``--scheduler`` swaps: beta counts the scheduler's timesteps (PNDM has one more than steps), and
    an ancestral sampler draws from the same generator in both."""
    from mllm_guidance.backends.diffusers_base import make_scheduler

    saved = ours.scheduler, theirs.scheduler
    ours.scheduler = make_scheduler(ours.scheduler, scheduler)
    theirs.scheduler = make_scheduler(theirs.scheduler, scheduler)
    try:
        a, b = (latents(p, guidance_scale=7.5, gligen_scheduled_sampling_beta=0.6, steps=4) for p in (ours, theirs))
    finally:
        ours.scheduler, theirs.scheduler = saved
    assert torch.equal(a, b), (a - b).abs().max().item()


def test_loads_a_checkpoint_saved_by_diffusers_class(theirs):
    pipe = StableDiffusionGLIGENPipeline.from_pretrained(theirs.saved_folder)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.position_net is not None and pipe.image_encoder is None
    assert torch.equal(latents(pipe), latents(theirs))


def test_a_layout_per_prompt_is_each_prompts_lone_render_in_diffusers(ours, theirs):
    """diffusers' class grounds every sample of a call on one layout; this one takes one per prompt, and
    each sample is diffusers' lone render of that prompt, layout and seed to float rounding."""
    prompts = ["a cat and a dog", "a red ball"]
    layouts = [(PHRASES, BOXES), (["a red ball"], [[0.3, 0.2, 0.9, 0.6]])]
    batch = latents(ours, prompts, [p for p, _ in layouts], [b for _, b in layouts], seed=[0, 5])
    for i, (prompt, (phrases, boxes)) in enumerate(zip(prompts, layouts, strict=True)):
        alone = latents(theirs, prompt, phrases, boxes, seed=i * 5)[0]
        assert (batch[i] - alone).abs().max().item() <= 1e-4  # 0 with diffusers 0.42.1; 2.3e-5 with 0.35.0


def test_the_fusers_are_on_again_after_a_call_and_inputs_are_checked(ours):
    latents(ours, gligen_scheduled_sampling_beta=0.25)
    assert all(m.enabled for m in ours.unet.modules() if type(m).__name__ == "GatedSelfAttentionDense")
    with pytest.raises(ValueError, match="2 phrases for 1 boxes"):
        latents(ours, boxes=BOXES[:1])
    with pytest.raises(ValueError, match="2 prompts but 1 phrase lists"):
        latents(ours, ["a", "b"], [PHRASES], [BOXES])
    with pytest.raises(ValueError, match="some prompts have boxes and some have none"):
        latents(ours, ["a", "b"], [PHRASES, []], [BOXES, []])
    with pytest.raises(ValueError, match="repair_image needs repair_boxes"):
        latents(ours, repair_image=object())


def test_the_gligen_backend_never_imports_diffusers_deprecated_namespace(folder):
    """What lets diffusers go unpinned: a fresh process loads and renders through ``gligen`` (boxes,
    no boxes, a repair) without ``diffusers.pipelines.deprecated`` being imported."""
    code = f"""
import sys
from mllm_guidance.backends.generator import GenerationRequest
from mllm_guidance.backends.gligen import GligenGenerator
from mllm_guidance.layout import Layout
from mllm_guidance.repair import RepairInput
gen = GligenGenerator({str(folder)!r}, steps=1)
cat = Layout.from_pairs([("a cat", [0.1, 0.1, 0.5, 0.5])])
image = gen.generate(GenerationRequest(prompt="a cat", layout=cat, seed=0, width=64, height=64)).image
gen.generate(GenerationRequest(prompt="a cat", layout=Layout(), seed=0, width=64, height=64))
gen.generate(GenerationRequest(prompt="a cat", layout=cat, seed=0, width=64, height=64,
                               repair=RepairInput(image=image, boxes=((0.0, 0.0, 0.5, 0.5),), key="k")))
print(sorted(m for m in sys.modules if m.startswith("diffusers.pipelines.deprecated")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
