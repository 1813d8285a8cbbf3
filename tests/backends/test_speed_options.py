"""The speed options of the diffusers generators (--scheduler, --vae-tiling, --compile) on tiny
random-weight pipelines: each changes what it says and nothing else, and a choice that does not fit
the model is one clear error."""

import numpy as np
import pytest

pytest.importorskip("diffusers")

from mllm_guidance.backends.generator import GenerationRequest  # noqa: E402
from mllm_guidance.backends.gligen import GligenGenerator  # noqa: E402
from mllm_guidance.backends.regional_flux import RegionalFluxGenerator  # noqa: E402
from mllm_guidance.errors import BackendError  # noqa: E402
from mllm_guidance.layout import Layout  # noqa: E402
from tests.backends.tiny_diffusion import build_tiny_gligen  # noqa: E402
from tests.backends.tiny_dit import build_tiny_flux  # noqa: E402

CAT = Layout.from_pairs([("a cat", [0.1, 0.1, 0.6, 0.7])])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(build_tiny_gligen(tmp_path_factory.mktemp("gligen")))


def render(generator, seed=3, layout=CAT):
    image = generator.generate(GenerationRequest(prompt="a cat", layout=layout, seed=seed, width=64, height=64)).image
    return np.asarray(image, dtype=np.float32)


def test_a_scheduler_replaces_the_models_own_and_keeps_its_training_schedule(tiny):
    own = GligenGenerator(tiny, steps=4)
    dpm = GligenGenerator(tiny, steps=4, scheduler="dpm++")
    assert type(dpm.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert dpm.pipe.scheduler.config.algorithm_type == "dpmsolver++"
    for key in ("beta_start", "beta_end", "beta_schedule", "num_train_timesteps", "prediction_type"):
        assert dpm.pipe.scheduler.config[key] == own.pipe.scheduler.config[key]
    assert render(dpm).shape == render(own).shape and np.abs(render(dpm) - render(own)).max() > 0
    assert np.abs(render(dpm, layout=Layout()) - render(own, layout=Layout())).max() > 0  # renders without grounding too


def test_a_scheduler_that_does_not_fit_the_model_is_refused(tiny, tmp_path):
    with pytest.raises(BackendError, match="does not fit this UNet.*dpm\\+\\+"):
        GligenGenerator(tiny, scheduler="flow-euler")
    with pytest.raises(BackendError, match="does not fit this flow-matching.*flow-euler"):
        RegionalFluxGenerator(str(build_tiny_flux(tmp_path)), steps=2, max_sequence_length=32, scheduler="dpm++")


def test_vae_tiling_changes_nothing_at_small_sizes(tiny):
    tiled = GligenGenerator(tiny, steps=3, vae_tiling=True)
    assert tiled.pipe.vae.use_tiling and tiled.pipe.vae.use_slicing
    assert np.abs(render(tiled) - render(GligenGenerator(tiny, steps=3))).max() == 0


def test_compile_compiles_the_denoiser_in_place_and_renders_the_same_image(tiny):
    # a recording backend sees the graphs TorchDynamo captured, without a C compiler; --compile uses inductor
    captured = []

    def backend(graph, example_inputs):
        captured.append(graph)
        return graph.forward

    compiled = GligenGenerator(tiny, steps=2, compile=backend)
    assert type(compiled.pipe.unet).__name__ == "UNet2DConditionModel"  # compiled in place, still the pipeline's UNet
    assert np.abs(render(compiled) - render(GligenGenerator(tiny, steps=2))).max() <= 1.0  # uint8, float rounding
    assert captured  # the renders ran through the compiled denoiser
