"""The project's own DiT layout pipelines (torch and diffusers are imported by these modules, so only
the generator backends that need them import them)."""
