"""``ranp-onnx prune``, ``apply`` and ``search-sparsity``."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import click

from ..analysis.costs import CONVENTIONS, Convention, count_costs
from ..analysis.shapes import analyse, parse_input_shapes
from ..errors import PlanError
from ..ir.graph import GraphAnalysis
from ..ir.save import check_output_path, data_path, external_data_files, save_model, write_text
from ..ir.units import parse_size
from ..pipeline import PruneOptions, PruneResult, apply_plan, prune_scored, score_model
from ..reporting.tables import comparison_json, format_comparison
from ..scoring.distributed import is_main_process
from ..selection.criteria import default_lambda
from ..selection.plan import PrunePlan
from ..selection.search import predicted_costs, search_max_sparsity
from .options import (
    input_shape_option,
    json_option,
    output_options,
    plot_option,
    scoring_options,
    selection_options,
    tolerance_option,
    training_options,
)
from .plotting import check_plot_path, prune_figure, write_plot
from .training import FitReport

#: ``--no-memory-check``: score even where the estimate exceeds the memory available.
_memory_check_option = click.option(
    "--no-memory-check",
    is_flag=True,
    help="Score even where the memory estimate exceeds the memory available.",
)


def stderr_is_terminal() -> bool:
    """True if stderr is a terminal (progress lines are shown only then)."""
    return sys.stderr.isatty()


def _progress(enabled: bool, label: str) -> Callable[[int, int | None], None] | None:
    """A progress line on stderr, rewritten in place; None unless stderr is a terminal."""
    if not enabled or not stderr_is_terminal():
        return None

    def report(done: int, total: int | None) -> None:
        of = f"/{total}" if total else ""
        click.echo(f"\r{label} {done}{of}", err=True, nl=total is not None and done == total)

    return report


def _options(model: GraphAnalysis, params: dict[str, Any], **extra: Any) -> PruneOptions:
    lam = params["lam"] if params["lam"] is not None else default_lambda(model)
    return PruneOptions(
        method=params["method"],
        importance=params["importance"],
        lam=lam,
        group_reduction=params["group_reduction"],
        seed=params["seed"],
        min_channels=params["min_channels"],
        round_to=params["round_to"],
        keep=tuple(params["keep"]),
        ignore=tuple(params["ignore"]),
        loss=params["loss"],
        ignore_index=params["ignore_index"],
        device=params["device"],
        batchnorm=params["batchnorm"],
        convention=params["convention"],
        memory_check=not params.get("no_memory_check", False),
        **extra,
    )


def _open(model: str, params: dict[str, Any]) -> tuple[GraphAnalysis, Any]:
    from ..scoring.data import open_data

    shapes = parse_input_shapes(params["input_shapes"])
    graph = analyse(model, shapes, batch_size=params["batch_size"])
    data = None
    if params["data"] is not None:
        data = open_data(
            params["data"],
            graph,
            batch_size=params["batch_size"],
            batches=params["batches"],
            seed=params["seed"],
            loss=params["loss"],
            ignore_index=params["ignore_index"],
        )
    return graph, data


def _check_outputs(
    model: str, output: str, plan_path: str | None, force: bool, inputs: list[str]
) -> tuple[Path, Path | None]:
    """Check every path the command will write before any work is done."""
    external = bool(external_data_files(model))
    out = check_output_path(output, force=force, inputs=inputs, external_data=external)
    if plan_path is None:
        return out, None
    plan_out = check_output_path(plan_path, force=force, inputs=inputs)
    written = {out.resolve(), data_path(out).resolve()} if external else {out.resolve()}
    if plan_out.resolve() in written:
        raise PlanError(f"--plan {plan_path}: the same file as the model output")
    return out, plan_out


def _write(
    result: PruneResult,
    graph: GraphAnalysis,
    output: Path,
    plan_path: Path | None,
    *,
    force: bool,
    inputs: list[str],
) -> None:
    save_model(
        result.model,
        output,
        external_data=graph.model.external_data,
        force=force,
        inputs=inputs,
    )
    if plan_path is not None:
        write_text(plan_path, result.plan.dumps() + "\n")


def _render(
    result: PruneResult, as_json: bool, output: Path, training: FitReport | None = None
) -> None:
    result = dataclasses.replace(result, after=dataclasses.replace(result.after, model=output.name))
    if as_json:
        document = comparison_json(result.before, result.after)
        document["plan"] = result.plan.to_json()
        document["output"] = str(output)
        document["validation"] = result.validation.to_json() if result.validation else None
        if training is not None:
            document["training"] = training.to_json()
        click.echo(json.dumps(document, sort_keys=True))
        return
    achieved = result.plan.achieved
    click.echo(format_comparison(result.before, result.after))
    click.echo("")
    click.echo(
        f"neurons       {achieved['neurons_kept']} of {achieved['neurons']} kept "
        f"(sparsity {100 * achieved['neuron_sparsity']:.2f}%)"
    )
    _render_budget(result.plan.settings, achieved)
    if training is not None:
        for line in training.lines():
            click.echo(line)
    if result.selection.emptied_groups:
        click.echo(
            f"note          the ranking emptied {len(result.selection.emptied_groups)} group(s); "
            "--min-channels kept their best channels"
        )
    if result.plan.settings.get("scored_on"):
        click.echo(f"scored        on {result.plan.settings['scored_on']}")
    if result.validation is not None:
        click.echo(f"validated     {result.validation.describe()}")
        if result.validation.unchecked is not None:
            click.echo(
                "note          only the outputs were compared, which proves little at "
                "initialization: a wrong channel deep inside hardly moves them"
            )
        elif result.validation.degenerate:
            zero = result.validation.degenerate
            click.echo(
                f"note          {len(zero)} of the tensors compared are all zero in the masked "
                f"original (first: '{zero[0]}'), so their nodes' check proves nothing"
            )
    unprunable = [g for g in result.plan.groups if not g["prunable"]]
    for group in unprunable:
        click.echo(f"kept whole    {', '.join(group['layers'])}: {group['reason']}")
    click.echo(f"wrote         {output}")


def _render_budget(settings: Mapping[str, Any], achieved: Mapping[str, Any]) -> None:
    """The budget asked for and what the search achieved."""
    kept = achieved.get("fraction_kept", {})
    for option, key, label in (
        ("target_flops", "flops", "FLOPs"),
        ("target_memory", "memory_mb", "memory"),
    ):
        target = settings.get(option)
        if target is not None and kept.get(key) is not None:
            click.echo(
                f"budget        {label} at most {target:g} of the full model: achieved "
                f"{kept[key]:.4f} at sparsity {settings['sparsity']:.4f}"
            )


@click.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@output_options
@input_shape_option
@scoring_options
@selection_options
@click.option(
    "--sparsity",
    type=click.FloatRange(0, 1, max_open=True),
    help="Neuron sparsity (fraction of neurons removed).",
)
@click.option(
    "--target-flops",
    type=click.FloatRange(0, 1, min_open=True),
    help="Keep at most this fraction of the FLOPs.",
)
@click.option(
    "--target-memory",
    type=click.FloatRange(0, 1, min_open=True),
    help="Keep at most this fraction of the activation memory.",
)
@click.option(
    "--fit-training",
    metavar="SIZE",
    help="Prune as little as needed for a torch training step to fit in SIZE (e.g. 11GB; "
    "K, M, G are powers of 1024), as the training-memory model predicts it.",
)
@training_options
@click.option(
    "--train-input-shape",
    "train_shapes",
    multiple=True,
    metavar="NAME=DIMS",
    help="The training patch for --fit-training (default: --input-shape; the batch axis is "
    "--train-batch).",
)
@click.option(
    "--train-device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="Where --fit-training's training runs (auto: CUDA when torch sees a GPU).",
)
@click.option(
    "--reinit", is_flag=True, help="Re-initialise kept weights (the paper trains from scratch)."
)
@click.option(
    "--no-validate",
    "skip_validation",
    is_flag=True,
    help="Skip the onnxruntime proof of the rewrite.",
)
@tolerance_option
@click.option(
    "--plan", "plan_path", type=click.Path(dir_okay=False), help="Also write the plan as JSON."
)
@plot_option
@json_option
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@_memory_check_option
def prune_command(
    model: str, output: str, force: bool, plan_path: str | None, plot: str | None, **params: Any
) -> None:
    """Prune a 3D CNN at initialization with RANP (or a baseline) and prove the rewrite.

    \b
    ranp-onnx prune unet.onnx --data train.npz --sparsity 0.8 --method ranp-f -o slim.onnx
    ranp-onnx prune unet.onnx --data random --target-flops 0.1 -o slim.onnx --plan plan.json
    ranp-onnx prune unet.onnx --data random --fit-training 11GB --train-batch 2 -o slim.onnx
    """
    targets = ("sparsity", "target_flops", "target_memory", "fit_training")
    if sum(params[k] is not None for k in targets) != 1:
        raise PlanError(
            "give exactly one of --sparsity, --target-flops, --target-memory and --fit-training"
        )
    budget = parse_size(params["fit_training"]) if params["fit_training"] is not None else None
    out, plan_out = _check_outputs(model, output, plan_path, force, [model])
    taken = [out] if plan_out is None else [out, plan_out]
    plot_out = check_plot_path(plot, force=force, inputs=[model], taken=taken)
    graph, data = _open(model, params)
    options = _options(
        graph,
        params,
        sparsity=0.0 if budget is not None else params["sparsity"],
        target_flops=params["target_flops"],
        target_memory=params["target_memory"],
        validate=not params["skip_validation"],
        tolerance=params["tolerance"],
        reinit=params["reinit"],
    )
    show = not (params["as_json"] or params["quiet"]) and stderr_is_terminal()
    if show and data is not None:
        click.echo(f"scoring on {data.describe()}", err=True)
    scoring = score_model(
        graph,
        data,
        options,
        total_batches=len(data) if data is not None else None,
        progress=_progress(show, "scoring batch"),
    )
    if not is_main_process():
        return  # under torchrun only rank 0 selects, validates and writes
    search = _progress(show, "budget search step")
    fit = None
    if budget is not None:
        fit = FitReport.search(model, scoring, options, budget, params, search)
        options = dataclasses.replace(options, sparsity=fit.sparsity)
    result = prune_scored(graph, scoring, options, progress=search)
    if fit is not None:
        fit, result = fit.with_result(result)
    _write(result, graph, out, plan_out, force=force, inputs=[model])
    _render(result, params["as_json"], out, fit)
    if plot_out is not None:
        figure = prune_figure(graph, scoring, result, options)
        write_plot(figure, plot_out, quiet=params["as_json"])


@click.command("apply")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--plan",
    "plan_path",
    required=True,
    type=click.Path(exists=False, dir_okay=False),
    help="A plan written by prune --plan.",
)
@output_options
@input_shape_option
@click.option("--convention", type=click.Choice(CONVENTIONS), default="standard", show_default=True)
@click.option("--reinit", is_flag=True, help="Re-initialise kept weights.")
@click.option("--no-validate", "skip_validation", is_flag=True, help="Skip the onnxruntime proof.")
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True
)
@json_option
def apply_command(
    model: str,
    plan_path: str,
    output: str,
    force: bool,
    input_shapes: tuple[str, ...],
    convention: str,
    reinit: bool,
    skip_validation: bool,
    device: str,
    as_json: bool,
) -> None:
    """Re-apply a saved plan, also to an export of the same network at a larger input.

    \b
    ranp-onnx apply unet128.onnx --plan plan.json -o slim128.onnx
    """
    plan = read_plan(plan_path)
    out, _ = _check_outputs(model, output, None, force, [model, plan_path])
    graph = analyse(model, parse_input_shapes(input_shapes))
    options = PruneOptions(
        convention=cast(Convention, convention),
        reinit=reinit,
        validate=not skip_validation,
        device=device,
    )
    result = apply_plan(graph, plan, options=options)
    _write(result, graph, out, None, force=force, inputs=[model, plan_path])
    _render(result, as_json, out)


def read_plan(path: str) -> PrunePlan:
    """Read a plan file written by ``prune --plan``.

    Raises:
        PlanError: The file is missing or not a JSON plan.
    """
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise PlanError(f"{path}: no such file") from error
    except (OSError, ValueError) as error:
        raise PlanError(f"{path}: not a JSON plan ({error})") from error
    return PrunePlan.from_json(document)


@click.command("search-sparsity")
@click.argument("model", type=click.Path(dir_okay=False))
@input_shape_option
@scoring_options
@selection_options
@json_option
@click.option("--quiet", is_flag=True, help="No progress on stderr.")
@_memory_check_option
def search_command(model: str, **params: Any) -> None:
    """Find the largest feasible neuron sparsity (the paper's Algorithm 2).

    Bisects the sparsity until the interval is below 1e-4; feasible means the ranking
    leaves every layer at least one neuron.

    \b
    ranp-onnx search-sparsity unet.onnx --data train.npz --method ranp-f
    """
    graph, data = _open(model, params)
    options = _options(graph, params)
    show = not (params["as_json"] or params["quiet"])
    scoring = score_model(
        graph,
        data,
        options,
        total_batches=len(data) if data is not None else None,
        progress=_progress(show, "scoring batch"),
    )
    if not is_main_process():
        return  # under torchrun only rank 0 reports
    sparsity, selection = search_max_sparsity(
        scoring, options.selection, progress=_progress(show, "search step")
    )
    full = count_costs(graph, options.convention)
    after = predicted_costs(scoring, selection.keep, options.convention)
    after = dataclasses.replace(after, model=f"at {100 * sparsity:.2f}%")
    kept = int(scoring.channels.unit_neurons[selection.keep].sum())
    document = {
        "model": graph.model.name,
        "method": options.method,
        "max_feasible_sparsity": sparsity,
        "neurons": scoring.channels.neuron_count,
        "neurons_kept": kept,
        "comparison": comparison_json(full, after),
    }
    if params["as_json"]:
        click.echo(json.dumps(document, sort_keys=True))
        return
    click.echo(f"largest feasible neuron sparsity with {options.method}: {100 * sparsity:.2f}%")
    click.echo("")
    click.echo(format_comparison(full, after))
