"""``mllm-guidance mvae``: train one weighted multimodal VAE, or reproduce a table of chapter 3.

This module imports only typer at load time (the ``mllm-guidance`` command registers it, and
``mllm-guidance --help`` must not import torch); the work is imported inside the commands.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(name="mvae", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Multimodal VAEs with modality weighting (thesis chapter 3): train one, or reproduce a table.")

DATA_CHOICES = ("gaussian", "mnist", "fashion-mnist")


def _errors_as_lines(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input (ValueError, a missing file) ends with one ``error:`` line and status 2."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except ImportError as exc:
            print(f"error: {exc.name or exc} is missing; install the extra: pip install 'mllm-guidance[mvae]'", file=sys.stderr)
            raise typer.Exit(2) from None

    return command


def _device(name: str, threads: int | None) -> str:
    import torch

    if threads:
        torch.set_num_threads(threads)
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: torch sees no CUDA device here; use --device cpu")
    if not (name == "cpu" or name.startswith("cuda")):
        raise ValueError(f"--device {name!r}: use cpu or cuda (cuda:N)")
    return name


@app.command()
@_errors_as_lines
def train(
    data: str = typer.Option(..., "--data", help="gaussian, mnist or fashion-mnist."),
    expert: str = typer.Option("poe", "--expert", help="poe or moe (weighted as gpoe / gmoe unless --weighting equal)."),
    weighting: str = typer.Option("equal", "--weighting", help="equal, image-x2, text-x3, m1-x2, ... or auto:generates-best|worst, auto:generated-best|worst."),
    train_size: int = typer.Option(None, "--train-size", help="Training samples (default 1000 for images, 10000 synthetic)."),
    seed: int = typer.Option(0, "--seed", help="Draws the training set and the initial weights."),
    data_dir: Path = typer.Option(None, "--data-dir", help="Folder with the IDX files or an .npz (images + labels), or the .npz itself."),
    out: Path = typer.Option(..., "--out", help="Where the checkpoint, errors.json and grid.png go."),
    epochs: int = typer.Option(None, "--epochs", help="Override the chosen number of epochs."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads; 1 (the default) is fastest for these small nets on a busy machine."),
) -> None:
    """Train one model with progress; write model.pt, errors.json and (image data) grid.png."""
    if data not in DATA_CHOICES:
        raise ValueError(f"--data {data!r}: use one of {', '.join(DATA_CHOICES)}")
    if expert not in ("poe", "moe"):
        raise ValueError(f"--expert {expert!r}: use poe or moe")
    dev = _device(device, threads)
    import torch

    from weighted_mvae.data import load_image_labels
    from weighted_mvae.train import default_settings, run_once
    from weighted_mvae.weighting import make_weighting

    make_weighting(weighting)  # a bad name fails before any loading
    settings = default_settings(data, train_size=train_size, epochs=epochs)
    source = None if data == "gaussian" else load_image_labels(data, data_dir)

    def progress(epoch: int, loss: float, weights: list[float]) -> None:
        print(f"epoch {epoch}/{settings.epochs}  loss {loss:.3f}  weights "
              + " ".join(f"{w:.3f}" for w in weights), file=sys.stderr)

    model, metrics, history = run_once(data, expert, weighting, seed, settings, source=source, device=dev,
                                       progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "names": model.names, "rule": model.experts.rule,
                "settings": settings.to_dict(), "weighting": weighting, "seed": seed, "data": data}, out / "model.pt")
    record = {"data": data, "expert": expert, "weighting": weighting, "seed": seed, "errors": metrics,
              "final_weights": history["weights"][-1], "loss": history["loss"], "seconds": round(history["seconds"], 2)}
    if data != "gaussian":
        record["labels_read_back"] = _grid(model, source, settings, seed, out / "grid.png", dev)
    (out / "errors.json").write_text(json.dumps(record, indent=1) + "\n")
    for name, value in metrics.items():
        print(f"{name:6s} {value:.4f}")
    print(f"wrote {out}")


def _grid(model: Any, source: Any, settings: Any, seed: int, path: Path, device: str) -> list[int]:
    """Real test images, their reconstructions, an image generated from each label 0-9, and the
    image generated from the label read back from each real image; returns the read labels."""
    import torch

    from weighted_mvae.data import split
    from weighted_mvae.plots import image_grid

    _, test = split(source, settings.train_size, settings.test_size, seed)
    batch = {k: v[:10].to(device) for k, v in test.items()}
    with torch.no_grad():
        mu, _ = model.posterior(batch, ["image"])
        recon = model.mean_output(mu, "image")
        read = model.mean_output(mu, "text").argmax(1)
        labels = {"text": torch.eye(10, device=device)}
        from_label = model.mean_output(model.posterior(labels, ["text"])[0], "image")
        back = {"text": torch.nn.functional.one_hot(read, 10).float()}
        from_read = model.mean_output(model.posterior(back, ["text"])[0], "image")
    rows = [batch["image"].cpu(), recon.cpu(), from_label.cpu(), from_read.cpu()]
    image_grid([list(r.numpy()) for r in rows], ["real", "reconstructed", "from labels 0-9", "from label read"]).save(path)
    return read.cpu().tolist()


@app.command()
@_errors_as_lines
def reproduce(
    table: str = typer.Option(..., "--table", help="3.1 3.2 (synthetic PoE/MoE), 3.3 3.5 (MNIST), 3.4 3.6 (Fashion-MNIST)."),
    runs: int = typer.Option(10, "--runs", help="Random training sets per row (the thesis: 10)."),
    data_dir: Path = typer.Option(None, "--data-dir", help="For 3.3-3.6: the folder with the IDX files or .npz archives."),
    out: Path = typer.Option(..., "--out", help="Writes table-3.X.csv, .md, .png; resumes the runs already there."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads; 1 (the default) is fastest for these small nets on a busy machine."),
    epochs: int = typer.Option(None, "--epochs", help="Override the chosen number of epochs (changes the settings)."),
    jobs: int = typer.Option(1, "--jobs", help="Train this many runs at once (processes of --threads threads each); 2 uses both cores of an idle 2-core machine."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress lines."),
) -> None:
    """Every row of a thesis table over N training sets: CSV (row,metric,mean,std,n), markdown, plot."""
    if runs < 1:
        raise ValueError("--runs must be at least 1")
    from weighted_mvae.reproduce import run_table, write_outputs
    from weighted_mvae.tables import get_table
    from weighted_mvae.train import default_settings

    spec = get_table(table)
    dev = _device(device, threads)
    settings = default_settings(spec.dataset, epochs=epochs)
    if jobs < 1:
        raise ValueError("--jobs must be at least 1")
    run_table(table, runs, out, data_dir=str(data_dir) if data_dir else None, device=dev, settings=settings,
              jobs=jobs, threads=threads or 1, progress=None if quiet else (lambda line: print(line, file=sys.stderr)))
    paths = write_outputs(table, runs, out)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
