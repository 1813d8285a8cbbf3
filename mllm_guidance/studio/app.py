"""The studio's three tabs, each a thin view over the project's own API:

- Generate: plan (``api.aplan``), edit the boxes on a canvas (``gradio_image_annotation``), then
  run the loop from that layout (``api.aguide`` with a reviewer that answers the plan review with
  the edited boxes), each round shown as it finishes from the run's events; Stop ends the run (its
  checkpoint stays, ``--resume`` continues it).
- Runs: open a run under the runs root (rounds, scores, calls, cost) and render it again with
  another generator by replaying its MLLM answers (``replay:``).
- Bench: open benchmark output directories under the bench root: the summary, the score
  distribution, and the images of several runs side by side per prompt, filtered.

Every browser session has its own state (``gr.State``); every file the studio writes goes to a new
directory under the runs root (a plan's under ``plans/``, kept apart from the runs the Runs tab lists).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from pathlib import Path
from typing import Any

import gradio as gr
from gradio_image_annotation import image_annotator

from mllm_guidance.api import aguide, aplan, default_run_dir
from pydantic import BaseModel, ValidationError

from mllm_guidance.config import GuidanceConfig, make_config
from mllm_guidance.errors import GuidanceError, InputError, first_problem
from mllm_guidance.knobs import KNOBS, PAUSING, KnobLimits, knob_model, schema_bounds, to_config
from mllm_guidance.events import event_line
from mllm_guidance.layout import Layout
from mllm_guidance.review import ReviewDecision
from mllm_guidance.run_settings import RunSettings, split_recorded
from mllm_guidance.run import PendingReview
from mllm_guidance.studio.paths import bench_dirs, inside, run_dirs
from mllm_guidance.studio.views import _short, bench_view, read_record, run_view

logger = logging.getLogger("mllm_guidance.studio")
#: Page styles: tables keep words whole (a wide table scrolls), pictures are never cropped.
STUDIO_CSS = """
#bench-summary table, #run-info table { display:block; overflow-x:auto; }
#bench-summary td, #bench-summary th, #run-info td, #run-info th { word-break:normal !important;
  overflow-wrap:normal !important; hyphens:none; white-space:normal; min-width:4em; }
#plan-status p { margin:0; }
"""
#: The subdirectory of the runs root that plans are written to.
PLANS = "plans"


class Stopped(GuidanceError):
    """The person pressed Stop."""


def boxes_of(layout: Layout, size: tuple[int, int]) -> list[dict[str, Any]]:
    """A layout as the canvas's pixel boxes."""
    w, h = size
    return [{"label": o.name, "xmin": round(o.box.x1 * w), "ymin": round(o.box.y1 * h),
             "xmax": round(o.box.x2 * w), "ymax": round(o.box.y2 * h)} for o in layout.objects]


def layout_of(boxes: list[dict[str, Any]], size: tuple[int, int]) -> Layout:
    """The canvas's pixel boxes as a layout (checked like any layout)."""
    w, h = size
    pairs = [(str(b.get("label") or "object"), [b["xmin"] / w, b["ymin"] / h, b["xmax"] / w, b["ymax"] / h]) for b in boxes]
    if not pairs:
        raise InputError("the canvas has no boxes: plan again or draw at least one")
    return Layout.from_pairs(pairs)


def knob_controls(knobs: type[BaseModel], base: GuidanceConfig, names: list[str]) -> dict[str, Any]:
    """One control per client knob named (``knobs.py``): its bounds, choices and help from the
    shared knob model, its starting value from the studio's config. Made inside the page's layout."""
    controls: dict[str, Any] = {}
    properties = knobs.model_json_schema()["properties"]
    for name in names:
        field = knobs.model_fields[name]
        low, high, choices = schema_bounds(properties[name])
        value = getattr(base, KNOBS[name])
        label = LABELS.get(name, name.replace("_", " "))
        if choices is not None:
            controls[name] = gr.Dropdown(list(choices), value=value, label=label, info=field.description,
                                         elem_id=name.replace("_", "-"))
        elif name in ("seed", "width", "height") or high is None or high - low > 64:
            controls[name] = gr.Number(value=value, minimum=low, maximum=high, precision=0, label=label,
                                       info=field.description, elem_id=name.replace("_", "-"))
        else:
            start = value if isinstance(value, int) else (base.correct_limit if name == "correct_rounds" else low)
            controls[name] = gr.Slider(low, high, value=min(start, high), step=1, label=label, info=field.description,
                                       elem_id=name.replace("_", "-"))
    return controls


#: Short labels of the knobs on the page (the help under each is the knob's own description).
LABELS = {"max_rounds": "K (most redesign rounds)", "is_good": "good at score", "repair": "Repair changed regions",
          "candidates": "Candidates per render (N)", "correct_rounds": "Self-correct rounds"}
#: The knobs in the first row; the rest sit under "More options".
FIRST_ROW = ("max_rounds", "is_good", "repair", "candidates")


def build_studio(*, runs_dir: str | Path = "runs/studio", bench_dir: str | Path = ".", mllm: str | None = None,
                 generator: str | None = None, config: Any = None, mllm_options: dict[str, Any] | None = None,
                 generator_options: dict[str, Any] | None = None, limits: KnobLimits | None = None,
                 settings: RunSettings | dict[str, Any] | None = None) -> gr.Blocks:
    runs_root, bench_root = Path(runs_dir).resolve(), Path(bench_dir).resolve()
    base = make_config(config)
    knobs = knob_model(limits or KnobLimits(), PAUSING)

    def new_run_dir(prompt: str, plan: bool = False) -> Path:
        parent = runs_root / PLANS if plan else runs_root
        parent.mkdir(parents=True, exist_ok=True)
        return parent / default_run_dir(prompt).name

    # -- Generate ---------------------------------------------------------------------------------

    def plan(prompt: str, mllm_spec: str) -> tuple[Any, Any, Any, str]:
        """The planned layout on the canvas; a failure is said on the page, the canvas left as it was."""
        try:
            planned = asyncio.run(aplan(prompt, mllm_spec or mllm, config=base, run_dir=new_run_dir(prompt, plan=True),
                                        mllm_options=mllm_options, settings=settings))
        except (GuidanceError, OSError) as exc:
            message = " ".join((str(exc) if isinstance(exc, GuidanceError) else f"{exc.strerror or exc}").split())
            logger.warning("studio: plan failed: %s", message)
            gr.Warning(f"Plan failed: {message}")
            return gr.update(), gr.update(), gr.update(), f"**Plan failed:** {message}"
        from PIL import Image

        size = Image.open(planned.preview_path).size
        layout = planned.layout or Layout()
        # the canvas draws the editable boxes itself: under them a blank page of the image's size
        blank = Path(planned.run_dir) / "canvas.png"
        Image.new("RGB", size, (246, 246, 240)).save(blank)
        value = {"image": str(blank), "boxes": boxes_of(layout, size)}
        note = f"planned {len(layout)} object(s): move, resize or rename the boxes, then Generate"
        return value, {"size": list(size), "planned": layout.model_dump(mode="json")}, layout.to_lines(), note

    def canvas_layout(canvas: Any, planned: dict[str, Any]) -> str:
        """The layout text, following the canvas as boxes are dragged (one layout on the page)."""
        if not planned or not canvas or not canvas.get("boxes"):
            return ""
        try:
            return layout_of(canvas["boxes"], tuple(planned["size"])).to_lines()
        except GuidanceError as exc:
            return f"(not a layout yet: {exc})"

    def generate(prompt: str, mllm_spec: str, generator_spec: str, canvas: Any, planned: dict[str, Any], *values: Any):
        given = {name: (int(v) if isinstance(v, float) else v) for name, v in zip(knobs.model_fields, values)
                 if v not in (None, "")}
        try:
            chosen = to_config(knobs(**given))
            if chosen.get("candidates", 1) > 1 and not chosen.get("verifier") and base.verifier is None:
                chosen["verifier"] = "clip"  # N > 1 needs a verifier: the configured one, else CLIP
            cfg = make_config(base, **chosen)
        except (ValidationError, GuidanceError) as exc:
            message = first_problem(exc) if isinstance(exc, ValidationError) else str(exc)
            raise user_error(InputError(message)) from None
        edited = None
        if planned and canvas and canvas.get("boxes"):
            edited = layout_of(canvas["boxes"], tuple(planned["size"]))
        events: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        run_path = new_run_dir(prompt)

        def on_event(event: dict[str, Any]) -> None:
            if stop.is_set():
                raise Stopped("stopped in the studio; continue with: mllm-guidance generate --resume RUN_DIR")
            events.put(("event", event))

        def reviewer(request: Any) -> ReviewDecision:
            return ReviewDecision.edit(edited) if request.stage == "plan" else ReviewDecision.approve()

        def work() -> None:
            try:
                result = asyncio.run(aguide(
                    prompt, mllm=mllm_spec or mllm, generator=generator_spec or generator, config=cfg,
                    run_dir=run_path, on_event=on_event, mllm_options=mllm_options, settings=settings,
                    generator_options=generator_options, review=reviewer if edited is not None else None))
                events.put(("done", result))
            except Exception as exc:  # shown in the page, never lost in a thread
                events.put(("error", exc))

        threading.Thread(target=work, daemon=True).start()
        gallery: list[tuple[str, str]] = []
        log: list[str] = []
        shown: dict[int, int] = {}  # round -> its place in the gallery
        try:
            while True:
                kind, item = events.get()
                if kind == "event":
                    line = event_line(item)
                    k = item.get("round")
                    if item.get("event") == "step" and item.get("step") == "generate":
                        shown[k] = len(gallery)
                        gallery.append((str(run_path / item.get("image", f"round-{k}.png")), f"round {k}: judging…"))
                    elif item.get("event") == "step" and item.get("step") == "reason" and k in shown:
                        gallery[shown[k]] = (gallery[shown[k]][0], f"round {k}: {item.get('score')}/5")
                    if line:
                        log.append(line)
                    # a round's file is written while the MLLM judges it: shown once it is there
                    yield [g for g in gallery if Path(g[0]).exists()], "\n".join(log), None, ""
                elif kind == "error":
                    raise user_error(item) if isinstance(item, GuidanceError) else gr.Error(str(item))
                else:
                    result = item
                    if isinstance(result, PendingReview):
                        raise gr.Error("the run paused for review; use --review on the command line")
                    gallery = [(str(run_path / r.image.path),
                                f"round {r.index}: {r.score if r.score is not None else '–'}/5"
                                + (f" · repaired {r.repair.share:.0%}" if r.repair and r.repair.repaired else ""))
                               for r in result.rounds]
                    summary = (f"**best: round {result.best_round}, score {result.score}/5** (stop: {result.stop_reason})  \n"
                               f"run directory: `{run_path.name}`")
                    yield gallery, "\n".join(log), str(result.image_path), summary
                    return
        finally:
            stop.set()  # Stop (or a closed page) ends the run at its next step

    # -- Runs -----------------------------------------------------------------------------------

    def open_run(name: str) -> tuple[list[tuple[str, str]], str]:
        return run_view(runs_root, name)

    def rerun(name: str, generator_spec: str) -> tuple[list[tuple[str, str]], str]:
        path = inside(runs_root, name, "run")
        record = read_record(path, name)
        try:
            recorded, how = split_recorded(record["config"], record.get("settings"))
            result = asyncio.run(aguide(record["prompt"], mllm=f"replay:{path}", generator=generator_spec or generator,
                                        config={**recorded, "seed": record["seed"]}, settings=how,
                                        run_dir=new_run_dir(record["prompt"]), generator_options=generator_options))
        except GuidanceError as exc:
            raise user_error(exc) from None
        except (KeyError, TypeError):
            raise user_error(InputError(f"run {_short(name)}: its run.json is not a run record this version reads")) from None
        return open_run(Path(result.run_dir).name)

    # -- Bench ----------------------------------------------------------------------------------

    def open_bench(names: list[str] | str | None, failed_only: bool, lowest_first: bool) -> tuple[str, list[tuple[str, str]]]:
        return bench_view(bench_root, names, failed_only, lowest_first)

    with gr.Blocks(title="mllm-guidance studio") as app:
        gr.Markdown("# mllm-guidance studio\nPlan the boxes, move them, and watch the loop draw, judge and redesign.")
        with gr.Tab("Generate"):
            planned = gr.State({})
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", elem_id="prompt", scale=3,
                                    value="A man is sitting under a tree while a bird is in the tree.")
                mllm_box = gr.Textbox(label="MLLM", value=mllm or "", elem_id="mllm")
                generator_box = gr.Textbox(label="Generator", value=generator or "", elem_id="generator")
            with gr.Row():
                first = knob_controls(knobs, base, [n for n in knobs.model_fields if n in FIRST_ROW])
            with gr.Accordion("More options", open=False):
                rest = knob_controls(knobs, base, [n for n in knobs.model_fields if n not in FIRST_ROW])
            controls = {name: (first | rest)[name] for name in knobs.model_fields}  # the order generate() reads
            with gr.Row():
                plan_btn = gr.Button("Plan", elem_id="plan")
                generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                stop_btn = gr.Button("Stop", elem_id="stop")
            plan_status = gr.Markdown(elem_id="plan-status")
            with gr.Row():
                canvas = image_annotator(label="Boxes (drag, resize, rename, add, delete)", elem_id="canvas",
                                         image_type="filepath", sources=[], interactive=True, height=440, scale=2)
                layout_text = gr.Textbox(label="Layout (follows the canvas)", lines=12, interactive=False,
                                         elem_id="layout-text", scale=1)
            with gr.Row():  # the best image beside the rounds, so it stays in view however many rounds ran
                with gr.Column(scale=1):
                    best = gr.Image(label="Best image", elem_id="best", type="filepath", height=300)
                    result_md = gr.Markdown(elem_id="result")
                rounds = gr.Gallery(label="Rounds (score under each)", elem_id="rounds", columns=3, height=300,
                                    object_fit="contain", scale=2)
            log = gr.Textbox(label="Steps", lines=10, elem_id="log")
            plan_btn.click(plan, [prompt, mllm_box], [canvas, planned, layout_text, plan_status])
            canvas.change(canvas_layout, [canvas, planned], layout_text)
            running = generate_btn.click(generate, [prompt, mllm_box, generator_box, canvas, planned, *controls.values()],
                                         [rounds, log, best, result_md])
            stop_btn.click(None, None, None, cancels=[running])
        with gr.Tab("Runs"):
            with gr.Row():
                run_name = gr.Dropdown(choices=run_dirs(runs_root), label="Run", allow_custom_value=True, elem_id="run-name")
                refresh = gr.Button("Refresh")
                open_btn = gr.Button("Open", elem_id="open-run")
            with gr.Row():
                other = gr.Textbox(label="Render again with generator (replays the MLLM's answers)", value="sketch")
                rerun_btn = gr.Button("Re-run")
            run_gallery = gr.Gallery(label="Rounds", columns=4, height=300, elem_id="run-rounds", object_fit="contain")
            run_md = gr.Markdown(elem_id="run-info")
            refresh.click(lambda: gr.Dropdown(choices=run_dirs(runs_root)), None, run_name)
            open_btn.click(_errors(open_run), run_name, [run_gallery, run_md])
            rerun_btn.click(_errors(rerun), [run_name, other], [run_gallery, run_md])
        with gr.Tab("Bench"):
            with gr.Row():
                bench_names = gr.Dropdown(choices=bench_dirs(bench_root), multiselect=True, allow_custom_value=True,
                                          label="Benchmark directories under the bench root (pick one or more to compare)",
                                          elem_id="bench-dirs", scale=3)
                bench_refresh = gr.Button("Refresh")
                failed_only = gr.Checkbox(label="failed only")
                lowest_first = gr.Checkbox(label="lowest scores first", value=True)
                bench_btn = gr.Button("Open", elem_id="open-bench")
            bench_md = gr.Markdown(elem_id="bench-summary")
            bench_gallery = gr.Gallery(label="Per prompt, side by side", columns=4, height=400, elem_id="bench-images",
                                       object_fit="contain")
            bench_refresh.click(lambda: gr.Dropdown(choices=bench_dirs(bench_root)), None, bench_names)
            bench_btn.click(_errors(open_bench), [bench_names, failed_only, lowest_first], [bench_md, bench_gallery])
    return app


def user_error(exc: GuidanceError) -> gr.Error:
    """A user's mistake as the page's one-line error toast, and one line in the terminal (no traceback)."""
    message = " ".join(str(exc).split())
    logger.warning("studio: %s", message)
    return gr.Error(message, print_exception=False)


def _errors(fn: Any) -> Any:
    """Our errors as the page's error toast, not a traceback."""

    def wrapped(*args: Any) -> Any:
        try:
            return fn(*args)
        except GuidanceError as exc:
            raise user_error(exc) from None

    return wrapped


def launch(app: gr.Blocks, **options: Any) -> None:
    """Serve the studio with its styles, without Gradio's own banner (the command line says where it
    is and how to reach it safely from another machine)."""
    app.launch(css=STUDIO_CSS, quiet=True, show_error=True, **options)

