"""The project's own diffusers pipelines: GLIGEN on SD 1.x/2.x and SDXL, regional prompting on FLUX, CreatiLayout's
SiamLayout on SD3 and FLUX. Each module imports torch and diffusers at its top, so only the
generator backends that need one import it (``import mllm_guidance`` stays light)."""
