"""`superposition train | show | run | reproduce | report | sweep`: a thin shell over the Python API,
and the only module that prints.

User errors (bad values, unusable run directories) print one line, ``superposition: error: ...``,
and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import atexit
import json
import math
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import torch

from . import __version__
from .analysis import summarize
from .config import ConfigError, RunConfig
from .errors import handle_errors, parse_json, read_bytes
from .options import add_config_options, config_from_options
from .run import Run, RunDirError, load_run
from .train import train


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        prog = self.prog.split()
        _fail(f"{prog[-1]}: {message}" if len(prog) > 1 else message)


def _fail(message: str) -> None:
    print(f"superposition: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _interrupted() -> None:
    print("\ninterrupted: run the same command again to resume from the last checkpoint", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(list_recipes=not argv or argv[0] in ("run", "-h", "--help"))
    if not argv:  # no command: the usage, once, and the list of commands
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    return handle_errors(lambda: args.handler(args), _fail, _interrupted)


FAST_EXIT_ENV = "SUPERPOSITION_FAST_EXIT"
"""Set to 0 for Python's full teardown at the end of a command (`entry`)."""


def entry() -> NoReturn:
    """The console script and ``python -m superposition``: `main`, then exit without tearing the
    interpreter down. That teardown is torch's modules being destroyed one by one: `import torch`
    alone takes 1.5 s as a command, 1.0 s of it the import (measured on 2 Xeon cores), so a warm
    10,000-step 5 → 2 run spent a quarter of its 2 s leaving. The atexit handlers still run (logging,
    tqdm, Ray, coverage) and the standard streams are flushed; every file a command writes is closed
    before `main` returns. With a live non-daemon thread, or `FAST_EXIT_ENV` = 0, Python exits as usual."""
    code = main()
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    if others or os.environ.get(FAST_EXIT_ENV, "1") == "0":
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream
            pass
    os._exit(code)


def build_parser(list_recipes: bool = True) -> argparse.ArgumentParser:
    """The command line. `list_recipes` False skips importing the recipes (and matplotlib with them)
    just to list their names in `run`'s help, for every other command's start-up time."""
    parser = _Parser(prog="superposition", description="Toy models of superposition: train, analyse, reproduce.")
    parser.add_argument("--version", action="version", version=f"superposition {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train(sub.add_parser("train", help="train a batch of toy models and save the run"))
    show = sub.add_parser("show", help="per-instance table of a run directory")
    show.add_argument("run", type=Path, help="run directory")
    show.add_argument("--json", action="store_true", help="print the table as JSON lines")
    show.set_defaults(handler=cmd_show)
    _add_run(sub.add_parser("run", help="run one of the paper's experiments (trains, draws, checks claims)"),
             list_recipes)
    _add_reproduce(sub.add_parser("reproduce", help="run every experiment: claim scorecard and HTML report"))
    report = sub.add_parser("report", help="build a self-contained HTML report of runs or experiments")
    report.add_argument("dir", type=Path, help="a reproduce, experiment or run directory, or a folder of runs")
    report.add_argument("--out", type=Path, help="HTML file to write (default DIR/report.html)")
    report.set_defaults(handler=cmd_report)
    _add_sweep(sub.add_parser("sweep", help="train a grid of configurations × seeds in chunks (resumable)"))
    return parser


def _add_execution(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--compile", choices=["auto", "native", "on", "off"], default="auto",
                   help="how the training step runs: native (the C kernel of superposition.native), on "
                        "(torch.compile), off (eager torch); auto: native where it supports the run, "
                        "else torch.compile when its measured cost pays")
    p.add_argument("--overwrite", action="store_true", help="replace finished runs in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="a config.json to start from; flags given override it")
    p.add_argument("--p-grid", type=float, nargs=3, metavar=("HIGH", "LOW", "NUM"),
                   help="NUM log-spaced feature probabilities from HIGH down to LOW (instead of -p)")
    p.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="save a resumable checkpoint every STEPS steps (default: every 30 s)")
    p.add_argument("--out", type=Path, default=Path("runs/train"), help="run directory (default runs/train)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads (default: torch's); 1 on a machine busy with other work")
    _add_execution(p)
    add_config_options(p)
    p.set_defaults(handler=cmd_train)


def _add_run(p: argparse.ArgumentParser, list_recipes: bool) -> None:
    names = "see superposition run --help"
    if list_recipes:
        from .experiments import RECIPES

        names = ", ".join(RECIPES)
    p.add_argument("experiment", metavar="NAME", help=f"one of: {names}")
    p.add_argument("--quick", action="store_true", help="a smaller configuration that runs in about a minute")
    p.add_argument("--out", type=Path, help="output directory (default runs/NAME, or runs/NAME-quick)")
    _add_execution(p)
    p.set_defaults(handler=cmd_run)


def _add_reproduce(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quick", action="store_true", help="smaller configurations (minutes instead of hours)")
    p.add_argument("--out", type=Path, help="output directory (default runs/reproduce, or runs/reproduce-quick)")
    p.add_argument("--only", metavar="NAME,...", help="comma-separated experiments to run (default: all)")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="experiments run at once in worker processes (default: one per CPU core; 1 on a GPU)")
    _add_execution(p)
    p.set_defaults(handler=cmd_reproduce)


# --- train ------------------------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The RunConfig the flags describe (on top of --config when given)."""
    base = RunConfig.from_json(_read_text(args.config)) if args.config else RunConfig()
    grid = _p_grid(args)
    if grid is not None:
        if getattr(args, "data.feature_probability") is not None:
            raise ConfigError("--p-grid and -p/--feature-probability are exclusive: give one")
        setattr(args, "data.feature_probability", list(grid))
    return config_from_options(args, base)


def _read_text(path: Path) -> str:
    """The text of a --config file, checked to be UTF-8 JSON (the config's fields are checked later)."""
    try:
        data = read_bytes(path, what="--config")
    except FileNotFoundError:
        raise ConfigError(f"--config {path}: unreadable (no such file)") from None
    parse_json(data, f"--config {path}")
    return data.decode("utf-8")


MAX_GRID = 100_000  # configurations from --p-grid: a larger grid belongs in a sweep


def _p_grid(args: argparse.Namespace) -> tuple[float, ...] | None:
    if not args.p_grid:
        return None
    high, low, num = args.p_grid
    if not math.isfinite(num) or num != int(num) or not 1 <= num <= MAX_GRID:
        raise ConfigError(f"--p-grid NUM = {num:g} is invalid: must be an integer in [1, {MAX_GRID}]")
    if not (0 < low <= 1 and 0 < high <= 1):
        raise ConfigError(f"--p-grid = {high:g} {low:g} is invalid: HIGH and LOW must be in (0, 1]")
    grid = torch.logspace(math.log10(high), math.log10(low), int(num), dtype=torch.float64)
    return tuple(round(v, 8) for v in grid.tolist())


def cmd_train(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise ConfigError(f"--checkpoint-every = {args.checkpoint_every} is invalid: must be an integer >= 1")
    run = train(config, device=args.device, compile=_compile_mode(args.compile), progress=not args.quiet,
                out=args.out, overwrite=args.overwrite, checkpoint_every=args.checkpoint_every, threads=args.threads)
    m = run.metrics
    print(f"trained {config.n_instances} instances ({config.data.n_configs} configurations × "
          f"{config.train.restarts} restarts) for {config.train.steps} steps in {m.train_seconds:.1f} s "
          f"({m.steps_per_second:.0f} steps/s{_path_note(run)})")
    print(f"saved {args.out}")
    print(format_table(run))
    return 0


def _path_note(run: Run) -> str:
    step = run.provenance.get("step") if isinstance(run.provenance, dict) else None
    return f", {step} step" if step in ("native", "compiled") else ""


def _compile_mode(flag: str):
    return {"auto": "auto", "native": "native", "on": True, "off": False}[flag]


# --- show -------------------------------------------------------------------------------------


def instance_rows(run: Run) -> list[dict]:
    """One row per saved instance: p, restart, final loss and headline geometry."""
    geo = summarize(run.W.float())
    m = run.metrics
    return [{"instance": k, "p": m.feature_probability[k], "restart": m.restart[k], "loss": m.final_loss[k],
             "represented": int(geo.represented[k]), "n_features": geo.n_features,
             "dims_per_feature": float(geo.dimensions_per_feature[k]),
             "mean_interference": float(geo.mean_interference[k])} for k in range(run.n_instances)]


def format_table(run: Run) -> str:
    head = (f"{'inst':>4}  {'p':>9}  {'S':>7}  {'restart':>7}  {'loss':>10}  {'represented':>11}  {'D*':>6}  "
            f"{'interf.':>7}")
    lines = [head, "-" * len(head)]
    for r in instance_rows(run):
        p = r["p"]
        p_text = f"{p:9.4g}" if isinstance(p, float) else f"{'per-feat':>9}"
        s_text = f"{100 * (1 - p):6.1f}%" if isinstance(p, float) else f"{'':>7}"
        lines.append(f"{r['instance']:>4}  {p_text}  {s_text}  {r['restart']:>7}  {r['loss']:10.4g}  "
                     f"{r['represented']:>5} / {r['n_features']:<3}  {r['dims_per_feature']:6.3f}  "
                     f"{r['mean_interference']:7.3f}")
    return "\n".join(lines)


def _model_name(model) -> str:
    """The preset's name, or what differs from it (custom: the import path)."""
    if model.custom:
        return f"custom {model.custom}"
    from .config import PRESETS

    base = PRESETS[model.kind]
    changed = [f"{k}={v}" for k, v in model.parts._asdict().items() if getattr(base, k) != v]
    return model.kind + (f" ({', '.join(changed)})" if changed else "")


def cmd_show(args: argparse.Namespace) -> int:
    if (args.run / "sweep.json").is_file():
        return cmd_show_sweep(args)
    runs = sorted(p.parent for p in args.run.glob("*/config.json")) if args.run.is_dir() else []
    if runs and not (args.run / "config.json").exists():
        raise RunDirError(f"{args.run}: holds several runs; show one of: {', '.join(str(r) for r in runs)}")
    run = load_run(args.run)
    if args.json:
        for row in instance_rows(run):
            print(json.dumps(row))
        return 0
    c = run.config
    print(f"{args.run}: {_model_name(c.model)}, n = {c.model.n_features} features, m = {c.model.n_hidden} hidden, "
          f"{c.train.steps} steps, best of {c.train.restarts}")
    print(format_table(run))
    return 0


# --- sweep ------------------------------------------------------------------------------------


def _add_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", type=Path, nargs="?", help="sweep spec, JSON or YAML: a base config and axes (see "
                   "superposition.sweep)")
    p.add_argument("--example", metavar="NAME", help="instead of SPEC, a spec shipped with the package: phase (the "
                   "paper's n = 2, m = 1 phase diagram, 10,000 models) or small (30 models)")
    p.add_argument("--out", type=Path, help="sweep directory (default runs/NAME, NAME from the spec)")
    p.add_argument("--executor", choices=["local", "ray"],
                   help="where chunks run (default local; ray when --ray-address is given)")
    p.add_argument("--workers", type=int, help="local: chunks trained at once, one process and torch thread each "
                   "(default: one per CPU core, the extra processes starting once the work left is worth it)")
    p.add_argument("--ray-address", metavar="ADDR", help="ray: a running cluster (auto, ray://head:10001); --out must "
                   "be on a filesystem its nodes share (default: start a local Ray instance)")
    p.add_argument("--chunk-size", type=int, metavar="N", help="models per chunk (default: from the model size and "
                   "free memory); fixed when the sweep directory is created")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    p.add_argument("--compile", choices=["auto", "native", "on", "off"], default="auto",
                   help="how the training step runs: native (the C kernel of superposition.native), on "
                        "(torch.compile), off (eager torch); auto: native where it supports the run, "
                        "else torch.compile when its measured cost pays")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .sweep import INDEX_FILE, SweepSpec, run_sweep

    if (args.spec is None) == (args.example is None):
        raise ConfigError("sweep needs a spec file or --example NAME (exactly one)")
    if args.example is not None:
        from .examples import example_path

        args.spec = example_path(args.example)
    spec = SweepSpec.from_file(args.spec)
    if args.chunk_size is not None:
        spec = replace(spec, chunk_size=args.chunk_size)
    executor = args.executor or ("ray" if args.ray_address else "local")
    if args.workers is not None and executor != "local":
        raise ConfigError("--workers is for the local executor; a Ray cluster runs as many chunks as it has CPUs")
    out = args.out or Path("runs") / spec.name
    result = run_sweep(spec, out, executor=executor, workers=args.workers, ray_address=args.ray_address,
                       device=args.device, compile=_compile_mode(args.compile), progress=not args.quiet)
    before = result.chunks - result.trained
    print(f"sweep {spec.name}: {len(result.index)} models in {result.chunks} chunks ({result.trained} trained now, "
          f"{before} done before) in {result.seconds:.1f} s, {result.models_per_second:.1f} models/s")
    print(f"  index  {out / INDEX_FILE}")
    return 0


def cmd_show_sweep(args: argparse.Namespace) -> int:
    from .sweep import load_sweep, sweep_status

    status = sweep_status(args.run)
    index = load_sweep(args.run, partial=True)
    if args.json:
        for row in index.to_dict(orient="records"):
            print(json.dumps(row, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))
        return 0
    spec, c = status.spec, status.spec.base
    print(f"{args.run}: sweep {spec.name}, {c.model.kind}, n = {c.model.n_features} features, m = {c.model.n_hidden} "
          f"hidden, {c.train.steps} steps, best of {c.train.restarts}")
    for axis in spec.axis_list:
        print(f"  {axis.field:>16}  {len(axis.values)} values: {_span(axis.values)}")
    state = "finished" if status.finished else "unfinished: run the same sweep command again to finish it"
    print(f"  chunks {status.chunks_done}/{status.chunks_total} done (up to {status.chunk_size} models each), models "
          f"{status.models_done}/{status.models_total}; {state}")
    if len(index):
        print(format_sweep_table(index, spec.axis_list[0].field if spec.axis_list else None))
    return 0


def _span(values) -> str:
    text = [json.dumps(v) for v in values]
    return ", ".join(text) if len(text) <= 4 else f"{text[0]}, {text[1]}, … {text[-1]}"


def format_sweep_table(index, by: str | None) -> str:
    """Mean loss and geometry per value of axis `by` (over every other axis and seed)."""
    import pandas as pd

    if by is None or not pd.api.types.is_scalar(index[by].iloc[0]):
        by, index = "all", index.assign(all="")
    groups = index.groupby(by, sort=True)
    stats = groups[["final_loss", "represented", "dims_per_feature", "mean_interference"]].mean()
    head = f"{by:>16}  {'models':>6}  {'loss':>10}  {'represented':>11}  {'D*':>6}  {'interf.':>7}"
    lines = [head, "-" * len(head)]
    for (key, r), count in zip(stats.iterrows(), groups.size(), strict=True):
        label = f"{key:.4g}" if isinstance(key, float) else str(key)
        lines.append(f"{label:>16}  {count:>6}  {r.final_loss:10.4g}  {r.represented:11.2f}  "
                     f"{r.dims_per_feature:6.3f}  {r.mean_interference:7.3f}")
    return "\n".join(lines)


# --- run --------------------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from .experiments import get_recipe, run_recipe
    from .reproduce import check_out_dir

    recipe = get_recipe(args.experiment)
    out = args.out or Path("runs") / (recipe.name + ("-quick" if args.quick else ""))
    check_out_dir(out, "experiment")
    result = run_recipe(recipe, out, quick=args.quick, device=args.device, compile=_compile_mode(args.compile),
                        progress=not args.quiet, overwrite=args.overwrite)
    print(f"{recipe.name}: {recipe.summary}")
    for name, run in result.runs.items():
        note = " (reused)" if name in result.reused else f" ({run.metrics.train_seconds:.1f} s)"
        print(f"  run     {run.path}{note}")
    for path in result.figures.values():
        print(f"  figure  {path}")
    print(f"  claims  {result.out / 'claims.json'}")
    print(format_claims(result.claims))
    return 0


# --- reproduce and report ---------------------------------------------------------------------


def cmd_reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    only = None if args.only is None else [n.strip() for n in args.only.split(",") if n.strip()]
    if only == []:
        raise ConfigError(f"--only = {args.only!r} is invalid: name at least one experiment, comma-separated")
    out = args.out or Path("runs") / ("reproduce-quick" if args.quick else "reproduce")

    def announce(record) -> None:
        state = "done" if record.status == "done" else f"FAILED ({record.error})"
        print(f"{record.name}: {state} in {record.seconds:.0f} s", file=sys.stderr if args.quiet else sys.stdout)

    card = reproduce(out, quick=args.quick, only=only, device=args.device, compile=_compile_mode(args.compile),
                     progress=not args.quiet, overwrite=args.overwrite, jobs=args.jobs, on_experiment=announce)
    print(format_scorecard(card))
    print(f"scorecard  {out / 'scorecard.md'}")
    print(f"report     {out / 'report.html'}")
    return 0 if all(e.status == "done" for e in card.experiments) else 1


def format_scorecard(card) -> str:
    lines = []
    for r in card.rows:
        mark = {"held": "held    ", "not held": "NOT HELD", "error": "ERROR   "}[r.status]
        lines.append(f"[{mark}] {r.section} · {r.experiment}: {r.claim}\n"
                     f"           expected {r.expected}; measured {r.measured}")
    errors = [e.name for e in card.experiments if e.status == "error"]
    lines.append(f"{card.n_held}/{card.n_claims} claims held" + (f"; failed: {', '.join(errors)}" if errors else ""))
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import build_report

    print(f"report  {build_report(args.dir, args.out)}")
    return 0


def format_claims(claims) -> str:
    lines = []
    for c in claims:
        mark = "held    " if c.held else "NOT HELD"
        lines.append(f"  [{mark}] {c.claim}\n             expected {c.expected}; measured {c.measured}")
    held = sum(c.held for c in claims)
    lines.append(f"  {held}/{len(claims)} claims held")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    entry()
