"""``mllm-guidance studio``: a browser app to plan, steer and inspect runs (Gradio; the ``studio``
extra). ``app.build_studio`` makes the app; ``paths`` keeps every file it writes or reads inside
its roots."""
