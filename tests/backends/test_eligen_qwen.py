"""eligen-qwen on a tiny random-weight Qwen-Image: the entity masks as DiffSynth-Studio builds them, the
attention mask, the LoRA, the pipeline against diffusers' own and the command line."""

import numpy as np
import pytest

pytest.importorskip("diffusers")

import torch  # noqa: E402

from mllm_guidance.backends.eligen_qwen import ELIGEN_LORA, EliGenQwenGenerator, qwen_image_license  # noqa: E402
from mllm_guidance.backends.generator import GenerationRequest  # noqa: E402
from mllm_guidance.backends.layout_pipelines.eligen import eligen_attention_mask, entity_token_masks, fuse_lora  # noqa: E402
from mllm_guidance.backends.layout_pipelines.eligen_qwen_pipeline import EliGenQwenImagePipeline  # noqa: E402
from mllm_guidance.backends.registry import create_generator  # noqa: E402
from mllm_guidance.cli import main  # noqa: E402
from mllm_guidance.errors import BackendError  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.backends.tiny_qwen_image import build_tiny_qwen_image  # noqa: E402

LAYOUT = Layout.from_pairs([("a cat", [0.05, 0.1, 0.5, 0.6]), ("a dog", [0.5, 0.4, 0.95, 0.95])])
FAST = {"steps": 2}


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return build_tiny_qwen_image(tmp_path_factory.mktemp("tiny-qwen-image"))


@pytest.fixture(scope="module")
def backend(qwen_dir):
    return EliGenQwenGenerator(str(qwen_dir), **FAST)


def req(layout=LAYOUT, seed=0, w=64, h=64, **kw):
    return GenerationRequest(prompt="a cat and a dog", layout=layout, seed=seed, width=w, height=h, **kw)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def diffsynth_style_token_mask(box, height, width):
    """What DiffSynth-Studio does with a mask image: resize to the latent grid (nearest), threshold the
    channel mean of the [-1, 1] image at 0, then a token is in when any of its 2 x 2 cells is."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height))
    x1, y1, x2, y2 = round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height)
    ImageDraw.Draw(image).rectangle([x1, y1, x2 - 1, y2 - 1], fill=(255, 255, 255))
    small = np.asarray(image.resize((width // 8, height // 8), resample=Image.NEAREST), dtype=np.float32)
    cells = torch.from_numpy((small * (2 / 255) - 1).mean(-1) > 0)
    return cells.view(height // 16, 2, width // 16, 2).any(3).any(1).flatten()


@pytest.mark.parametrize("box", [[0.0, 0.25, 0.625, 1.0], [0.1, 0.13, 0.52, 0.9], [0.33, 0.0, 0.36, 0.2], [0.0, 0.0, 1.0, 1.0]])
def test_entity_token_masks_are_diffsynths_mask_images(box):
    ours = entity_token_masks([box], 96, 128)[0]
    assert torch.equal(ours, diffsynth_style_token_mask(box, 96, 128)), box


def test_the_attention_mask_keeps_entities_to_their_tokens_and_texts_apart():
    masks = entity_token_masks([[0.0, 0.0, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0]], 64, 64)  # 4 x 4 tokens
    mask = eligen_attention_mask(masks, [2, 3, 4])  # [entity 0 (2), entity 1 (3), prompt (4), 16 image tokens]
    image = slice(9, 25)
    assert mask.shape == (25, 25) and mask[image, image].all()
    for block, region in ((slice(0, 2), masks[0]), (slice(2, 5), masks[1]), (slice(5, 9), torch.ones(16, dtype=torch.bool))):
        assert mask[block, block].all()
        assert torch.equal(mask[block, image], region.expand(mask[block, image].shape))
        assert torch.equal(mask[image, block], region[:, None].expand(mask[image, block].shape))
    assert not mask[0:2, 2:9].any() and not mask[2:5, 0:2].any() and not mask[5:9, 0:5].any()  # no text sees another
    padded = eligen_attention_mask(masks, [2, 3, 4], [2, 1, 4])  # entity 1 has one real token, two of padding
    assert not padded[:, 3:5].any(1)[[i for i in range(25) if i not in (3, 4)]].any()  # nobody else sees the padding
    assert padded[3, 3] and padded[4, 4] and torch.equal(padded[:, :3], mask[:, :3])
    with pytest.raises(ValueError, match="2 entity masks need 3 text lengths"):
        eligen_attention_mask(masks, [2, 3])


def test_renders_seeded_and_grounded(backend):
    a, b, c = backend.generate(req()), backend.generate(req()), backend.generate(req(seed=1))
    assert a.image.size == (64, 64) and a.notes == []
    assert (pixels(a.image) == pixels(b.image)).all() and not (pixels(a.image) == pixels(c.image)).all()
    empty = backend.generate(req(layout=Layout()))
    moved = backend.generate(req(layout=Layout.from_pairs([("a cat", [0.5, 0.4, 0.95, 0.95]), ("a dog", [0.05, 0.1, 0.5, 0.6])])))
    assert empty.notes == ["empty layout: rendered without grounding"]
    assert np.abs(pixels(a.image) - pixels(empty.image)).sum() > 0  # the entities have an effect
    assert np.abs(pixels(a.image) - pixels(moved.image)).sum() > 0  # and it follows the boxes


def test_what_the_model_cannot_take_is_fitted_and_noted(qwen_dir):
    gen = EliGenQwenGenerator(str(qwen_dir), steps=1, max_entities=3, max_sequence_length=64)
    objects = [(f"thing {i}", [0.05 * i, 0.05 * i, 0.1 * i + 0.3, 0.1 * i + 0.3]) for i in range(3)]
    out = gen.generate(req(layout=Layout.from_pairs(objects + [("tiny", [0.0, 0.0, 0.05, 0.05]), (" ".join(["blue"] * 30), [0.1, 0.1, 0.9, 0.9])]),
                           w=70, h=90))
    assert out.image.size == (64, 80) and "size 70x90 rounded to 64x80" in out.notes[0]
    assert any("5 objects: kept the 3 largest, dropped thing 0, tiny" in n for n in out.notes), out.notes
    assert any("cut to the text encoder's 64 tokens" in n for n in out.notes), out.notes


def test_a_batch_is_each_request_alone(backend):
    requests = [req(seed=0), req(layout=Layout.from_pairs([("a red ball", [0.3, 0.2, 0.9, 0.6])]), seed=5)]
    batch = backend.generate_batch(requests)
    for request, got in zip(requests, batch, strict=True):
        assert np.abs(pixels(got.image) - pixels(backend.generate(request).image)).max() <= 1


def test_without_entities_it_is_diffusers_qwen_image(qwen_dir):
    """No entities: the same computation as diffusers' ``QwenImagePipeline`` (its own processor runs)."""
    from diffusers import QwenImagePipeline

    ours = EliGenQwenImagePipeline.from_pretrained(qwen_dir)
    common = dict(negative_prompt="ugly", true_cfg_scale=3.0, height=64, width=64, num_inference_steps=2, output_type="latent")
    got = ours("a cat", generator=torch.Generator().manual_seed(2), **common).images
    plain = QwenImagePipeline(**ours.components)("a cat", generator=torch.Generator().manual_seed(2), **common).images
    assert torch.equal(got, plain)


def test_guidance_off_and_eligen_on_the_negative_pass(qwen_dir):
    pipe = EliGenQwenImagePipeline.from_pretrained(qwen_dir)
    entities = [("a cat", [0.0, 0.0, 0.5, 1.0])]

    def run(**kw):
        kw = {"height": 64, "width": 64, **kw}
        return pipe("a cat", entities, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="latent",
                    **kw).images

    assert torch.equal(run(negative_prompt=None), run(negative_prompt="", true_cfg_scale=1.0))  # no guidance either way
    guided = run(negative_prompt="", cfg_normalize=False)
    assert not torch.allclose(guided, run(negative_prompt="", cfg_normalize=False, eligen_on_negative=True))
    assert not torch.allclose(guided, run(negative_prompt="", cfg_normalize=True))
    with pytest.raises(ValueError, match="multiples of 16"):
        run(negative_prompt=None, height=72)


def lora_for(transformer, rank=2, style="peft"):
    """A random LoRA on two of the transformer's layers, keyed as DiffSynth-Studio's files are (``peft``)
    or in kohya's ``lora_down``/``lora_up`` style with alphas."""
    generator = torch.Generator().manual_seed(0)
    out = {}
    for layer in ("transformer_blocks.0.attn.to_q", "transformer_blocks.0.img_mlp.net.2"):
        weight = transformer.get_submodule(layer).weight
        down = torch.randn(rank, weight.shape[1], generator=generator)
        up = torch.randn(weight.shape[0], rank, generator=generator)
        if style == "peft":
            out[f"{layer}.lora_A.default.weight"], out[f"{layer}.lora_B.default.weight"] = down, up
        else:
            out[f"diffusion_model.{layer}.lora_down.weight"], out[f"diffusion_model.{layer}.lora_up.weight"] = down, up
            out[f"diffusion_model.{layer}.alpha"] = torch.tensor(1.0)
    return out


def test_a_lora_is_fused_as_diffsynth_fuses_it(qwen_dir, tmp_path):
    from safetensors.torch import save_file

    pipe = EliGenQwenImagePipeline.from_pretrained(qwen_dir)
    before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    lora = lora_for(pipe.transformer)
    save_file(lora, str(tmp_path / "model.safetensors"))
    assert pipe.fuse_eligen_lora(str(tmp_path), scale=0.5) == 2  # a folder holding model.safetensors
    after = pipe.transformer.state_dict()
    layer = "transformer_blocks.0.attn.to_q"
    expected = before[f"{layer}.weight"] + 0.5 * lora[f"{layer}.lora_B.default.weight"] @ lora[f"{layer}.lora_A.default.weight"]
    assert torch.allclose(after[f"{layer}.weight"], expected, atol=1e-6)
    assert sum(not torch.equal(before[k], after[k]) for k in before) == 2
    kohya = lora_for(pipe.transformer, style="kohya")  # alpha 1, rank 2: each update halved
    weight = pipe.transformer.get_submodule(layer).weight.clone()
    fuse_lora(pipe.transformer, kohya)
    delta = kohya[f"diffusion_model.{layer}.lora_up.weight"] @ kohya[f"diffusion_model.{layer}.lora_down.weight"] / 2
    assert torch.allclose(pipe.transformer.get_submodule(layer).weight, weight + delta, atol=1e-5)
    with pytest.raises(ValueError, match="names 'single_transformer_blocks.0.attn.to_q', which this transformer does not have"):
        fuse_lora(pipe.transformer, {"single_transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(2, 32),
                                     "single_transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 2)})
    with pytest.raises(ValueError, match="no LoRA weights"):
        fuse_lora(pipe.transformer, {"transformer_blocks.0.attn.to_q.weight": torch.zeros(32, 32)})


def test_the_generator_fuses_only_what_fits(qwen_dir, tmp_path):
    from safetensors.torch import save_file

    plain = EliGenQwenGenerator(str(qwen_dir), **FAST)
    assert plain.lora is None  # "auto": EliGen-V2 fits Qwen-Image's 60 x 3072 transformer, not a toy
    save_file(lora_for(plain.pipe.transformer), str(tmp_path / "mine.safetensors"))
    fused = EliGenQwenGenerator(str(qwen_dir), lora=str(tmp_path / "mine.safetensors"), **FAST)
    assert fused.lora == str(tmp_path / "mine.safetensors") and "see its license" in fused.weights_license
    assert np.abs(pixels(fused.generate(req()).image) - pixels(plain.generate(req()).image)).sum() > 0
    with pytest.raises(BackendError, match="cannot load the eligen-qwen model .*the LoRA .*did not load"):
        EliGenQwenGenerator(str(qwen_dir), lora=str(tmp_path / "absent.safetensors"), **FAST)


def test_licenses_and_registry(qwen_dir, tmp_path):
    assert qwen_image_license("Qwen/Qwen-Image", ELIGEN_LORA) == "Apache-2.0 (Qwen-Image); LoRA DiffSynth-Studio/Qwen-Image-EliGen-V2: Apache-2.0"
    assert qwen_image_license("/some/folder", None).startswith("unknown")
    gen = create_generator(f"eligen-qwen:{qwen_dir}", **FAST)
    assert create_generator(f"eligen-qwen:{qwen_dir}", **FAST) is gen and gen.name == "eligen-qwen"
    assert gen.default_size == (1328, 1328) and gen.steps == 2 and gen.supports_repair
    with pytest.raises(BackendError, match="cannot load the eligen-qwen model"):
        EliGenQwenGenerator(str(tmp_path / "nothing-here"))


def test_cli_generate_with_the_saved_tiny_qwen_image(qwen_dir, tmp_path, capsys):
    from tests.cli.test_cli import PROMPT, RECORDING

    code = main(["generate", PROMPT, "--mllm", f"replay:{RECORDING}", "--generator", "eligen-qwen", "--model-path", str(qwen_dir),
                 "--size", "64", "--steps", "2", "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    assert "best: round 2, score 5/5" in capsys.readouterr().out
    assert (tmp_path / "run" / "round-2.png").exists() and '<svg class="boxes"' in (tmp_path / "run" / "report.html").read_text()


def test_a_repair_keeps_the_images_own_latents_outside_its_mask(qwen_dir):
    """The repair's image latents are normalized as the pipeline un-normalizes them to decode: the final
    latents outside the mask decode to what the VAE itself makes of the image."""
    from PIL import Image

    pipe = EliGenQwenImagePipeline.from_pretrained(qwen_dir)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    packed = pipe("a cat", [("a cat", [0.0, 0.0, 0.5, 0.5])], height=64, width=64, num_inference_steps=3, output_type="latent",
                  generator=torch.Generator().manual_seed(0), repair_image=image, repair_boxes=[[0.0, 0.0, 0.5, 0.5]]).images
    unpacked = pipe._unpack_latents(packed, 64, 64, pipe.vae_scale_factor)  # (1, 16, 1, 8, 8)
    z = pipe.vae.config.z_dim
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, z, 1, 1, 1)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, z, 1, 1, 1)
    pixels_in = pipe.image_processor.preprocess(image, height=64, width=64)[:, :, None]
    own = pipe.vae.encode(pixels_in).latent_dist.mean
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[:4, :4] = False  # the top-left token quarter is repainted
    assert torch.allclose((unpacked * std + mean)[..., outside], own[..., outside], atol=1e-5)
    assert not torch.allclose((unpacked * std + mean)[..., ~outside], own[..., ~outside], atol=1e-2)


def test_scheduler_and_compile_options(qwen_dir):
    """--scheduler flow-euler rebuilds Qwen-Image's own Euler scheduler from its config (same image);
    --compile runs the renders, entity mask and all, through TorchDynamo (a recording backend here:
    no C compiler needed; the CLI's --compile uses inductor)."""
    captured = []

    def backend(graph, example_inputs):
        captured.append(graph)
        return graph.forward

    own = EliGenQwenGenerator(str(qwen_dir), **FAST)
    euler = EliGenQwenGenerator(str(qwen_dir), scheduler="flow-euler", **FAST)
    assert euler.pipe.scheduler is not own.pipe.scheduler and euler.pipe.scheduler.config.shift_terminal == 0.02
    assert (pixels(euler.generate(req()).image) == pixels(own.generate(req()).image)).all()
    with pytest.raises(BackendError, match="does not fit this flow-matching"):
        EliGenQwenGenerator(str(qwen_dir), scheduler="dpm++", **FAST)
    compiled = EliGenQwenGenerator(str(qwen_dir), compile=backend, **FAST)
    assert np.abs(pixels(compiled.generate(req()).image) - pixels(own.generate(req()).image)).max() <= 1
    assert captured
