"""``eligen-qwen``: EliGen entity control on Qwen-Image, with this project's own pipeline.

Models: ``Qwen/Qwen-Image`` (default; a 20B MMDiT with a Qwen2.5-VL-7B text encoder) and the LoRA
``DiffSynth-Studio/Qwen-Image-EliGen-V2`` (file ``model.safetensors``; published on ModelScope, where
DiffSynth's examples fetch it: a hub id is looked up on the Hugging Face hub, so without a copy there
pass the downloaded file or its folder as ``lora``), fused into the transformer on load. Both are under Apache-2.0, so unlike the FLUX.1-dev and SD3 backends this one may be deployed
commercially. ``lora="auto"`` (the default) fuses EliGen-V2 when the transformer has Qwen-Image's
shape (60 blocks, 3072 wide) and nothing otherwise (a toy or other-sized model); a path, folder or
hub id names another LoRA, ``None`` renders without one (the regional attention still applies, but
the base model was not trained for it). Any local ``QwenImagePipeline.save_pretrained`` folder works
as ``--model-path``.

Native box format: normalized corners ``[x1, y1, x2, y2]`` with a phrase each, the project's own;
DiffSynth-Studio takes one mask image per entity, and a box is drawn as one (``entity_token_masks``
says how it reaches the 16 x 16-pixel transformer tokens; a box missing every token centre covers no
token, as in theirs). At most 16 entities (the largest are kept; the project's cap, DiffSynth sets
none: each adds its phrase's tokens to every attention). The recipe is ``layout_pipelines/eligen_qwen_pipeline.py``.

Defaults are DiffSynth-Studio's for EliGen-V2 (``QwenImagePipeline.__call__`` and the EliGen
examples): 1328 x 1328, 30 steps, true classifier-free guidance 4.0 against the empty negative prompt
without the norm rescale diffusers' ``QwenImagePipeline`` adds (``cfg_normalize``), entity masks on
the positive pass only (``eligen_on_negative``). A request's guidance scale is the CFG scale; 1 turns
guidance off. Sizes are rounded down to multiples of 16.

Memory: the weights alone, in bfloat16, are about 41 GB for the transformer and 16.6 GB for the text
encoder (20.4B and 8.3B parameters), so a whole-GPU render wants an 80 GB card; ``--cpu-offload``
keeps one component on the GPU at a time (the transformer's 41 GB plus activations). Entity control
adds a dense (text + image)^2 attention mask per sample and one text pass per entity phrase. Neither
Qwen nor DiffSynth-Studio publish speed figures for EliGen.

Checked against DiffSynth-Studio (``diffsynth`` 2.1.12) on a tiny random Qwen-Image
(``scripts/compare_eligen_diffsynth.py``): final latents agree to 2.2e-6 in fp32 when both sides use
diffusers' tanh GELU in the feed-forward; DiffSynth's own DiT uses ``x * sigmoid(1.702 x)`` there, a
difference of the base model (1.4e-3 on the same case), not of EliGen. CI re-checks against golden
latents of their code (``tests/backends/test_goldens.py``).

Batches (``generate_batch``): requests that share size, steps, guidance, negative prompt and whether
they are grounded render in one call, each equal to its lone render to float rounding.

Repair (``supports_repair``): ``repair_image`` / ``repair_boxes`` repaint only that mask
(flow-matching blended latents on the token grid, ``backends.latent_blend.FlowBlend``).
"""

from __future__ import annotations

from typing import Any

from mllm_guidance.backends.batching import in_groups
from mllm_guidance.backends.diffusers_base import load_pipeline, quiet
from mllm_guidance.backends.generator import Generated, GenerationRequest, shared_settings
from mllm_guidance.backends.grounding import fit_size, grounding_inputs
from mllm_guidance.backends.torch_device import seeded_generator
from mllm_guidance.errors import BackendError

DEFAULT_MODEL = "Qwen/Qwen-Image"
ELIGEN_LORA = "DiffSynth-Studio/Qwen-Image-EliGen-V2"
MAX_ENTITIES = 16
#: Qwen-Image's transformer (blocks, width): the shape the EliGen-V2 LoRA was trained on.
QWEN_IMAGE_SHAPE = (60, 3072)


def qwen_image_license(model: str, lora: str | None) -> str:
    name = model.lower()
    base = "Apache-2.0 (Qwen-Image)" if "qwen/qwen-image" in name else f"unknown: see the license of {model}"
    if lora == ELIGEN_LORA:
        return f"{base}; LoRA {ELIGEN_LORA}: Apache-2.0"
    return base if lora is None else f"{base}; LoRA {lora}: see its license"


def load_eligen(model: str, lora: str | None, lora_scale: float, torch_dtype: Any) -> tuple[Any, str | None]:
    """The project's pipeline with the LoRA fused (``lora="auto"``: EliGen-V2 on Qwen-Image's shape);
    returns the pipeline and the LoRA actually fused."""
    from mllm_guidance.backends.layout_pipelines.eligen_qwen_pipeline import EliGenQwenImagePipeline

    pipe = EliGenQwenImagePipeline.from_pretrained(model, torch_dtype=torch_dtype)
    if lora == "auto":
        config = pipe.transformer.config
        shape = (config.num_layers, config.num_attention_heads * config.attention_head_dim)
        lora = ELIGEN_LORA if shape == QWEN_IMAGE_SHAPE else None
    if lora:
        try:
            pipe.fuse_eligen_lora(lora, lora_scale)
        except (OSError, ValueError) as exc:
            raise ValueError(f"the LoRA {lora!r} did not load: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return pipe, lora


class EliGenQwenGenerator:
    name = "eligen-qwen"
    default_size = (1328, 1328)
    supports_repair = True

    def __init__(self, model: str = DEFAULT_MODEL, *, lora: str | None = "auto", lora_scale: float = 1.0,
                 device: str | None = None, dtype: str | None = None, cpu_offload: bool = False,
                 attention_slicing: bool = False, scheduler: str | None = None, compile: bool | str = False,
                 vae_tiling: bool = False, steps: int | None = None, guidance_scale: float = 4.0,
                 negative_prompt: str = "", cfg_normalize: bool = False, eligen_on_negative: bool = False,
                 max_entities: int = MAX_ENTITIES, max_sequence_length: int = 512) -> None:
        fused: list[str | None] = []

        def load(torch_dtype: Any) -> Any:
            pipe, used = load_eligen(model, lora, lora_scale, torch_dtype)
            fused.append(used)
            return pipe

        self.model = model
        self.pipe, self.device, self.dtype = load_pipeline("eligen-qwen", model, load, device=device, dtype=dtype,
                                                           cpu_offload=cpu_offload, attention_slicing=False,
                                                           scheduler=scheduler, compile=compile, vae_tiling=vae_tiling)
        self.lora = fused[0]
        self.steps = steps or 30
        self.guidance_scale, self.negative_prompt = guidance_scale, negative_prompt
        self.cfg_normalize, self.eligen_on_negative = cfg_normalize, eligen_on_negative
        self.max_entities, self.max_sequence_length = max_entities, max_sequence_length
        self.weights_license = qwen_image_license(model, self.lora)
        self.attention_slicing_ignored = attention_slicing

    def generate(self, request: GenerationRequest) -> Generated:
        return self._render_group([request])[0]

    def batch_key(self, request: GenerationRequest) -> tuple[Any, ...]:
        return shared_settings(request, negative="text", grounding=True)

    def generate_batch(self, requests: list[GenerationRequest]) -> list[Generated]:
        """One pipeline call for requests that share ``batch_key``: each prompt on its own entities."""
        return in_groups(requests, self.batch_key, self._render_group)

    def _render_group(self, requests: list[GenerationRequest]) -> list[Generated]:
        first, single = requests[0], len(requests) == 1
        width, height, size_notes = fit_size(first.width, first.height, 16)
        inputs = [grounding_inputs(r.layout, [self.pipe.tokenizer], max_objects=self.max_entities,
                                   token_limit=self.max_sequence_length, specials=0) for r in requests]
        after: list[str] = []
        if self.attention_slicing_ignored:
            after.append("attention slicing does not apply to Qwen-Image; use --cpu-offload to save memory")
        entities = [list(zip(phrases, boxes, strict=True)) for phrases, boxes, _ in inputs]
        scale = first.guidance_scale if first.guidance_scale is not None else self.guidance_scale
        negative = first.negative_prompt if first.negative_prompt is not None else self.negative_prompt
        try:
            with quiet():
                images = self.pipe(
                    first.prompt if single else [r.prompt for r in requests], entities[0] if single else entities,
                    negative_prompt=negative if scale > 1 else None, true_cfg_scale=scale,
                    cfg_normalize=self.cfg_normalize, eligen_on_negative=self.eligen_on_negative,
                    height=height, width=width, num_inference_steps=first.steps or self.steps,
                    generator=seeded_generator(first.seed) if single else [seeded_generator(r.seed) for r in requests],
                    max_sequence_length=self.max_sequence_length,
                    **({"repair_image": first.repair.image, "repair_boxes": [list(b) for b in first.repair.boxes]}
                       if first.repair is not None else {}),
                ).images
        except ValueError as exc:
            raise BackendError(f"eligen-qwen could not render: {exc}") from exc
        return [Generated(image=image, notes=size_notes + notes + after) for image, (_, _, notes) in zip(images, inputs, strict=True)]
