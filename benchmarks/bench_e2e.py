"""Time to result, end to end: whole commands as a user runs them, on the same work.

For each work item (n features → m hidden, one instance per feature probability
p = 20**-linspace(0, 1, inst), importance 1, batch 1024, the same number of steps) this times, as
subprocesses and interleaved (ours cold, ours warm, notebook loop, tms-kit, occhio, then again):

- **ours, empty cache**: `superposition train --features N --hidden M --p-grid 1 0.05 INST
  --importance-decay 1 --steps S --out TMP --quiet` with a fresh, empty TORCHINDUCTOR_CACHE_DIR;
- **ours, warm cache**: the same command with a cache dir that one untimed run of it prepared
  (with what it compiled in the background when it chose the eager path: the benchmark waits for
  those background compiles after every command of ours, and logs the wait);
- **notebook loop**: `../shared/bench/baseline.py` (beside the repository root; `--baseline`);
- **tms-kit 0.4.1** and **occhio 0.2.3**, when `--peer-python` can import them, through the small
  runners in benchmarks/peers/ that use each library's own model, data and training API.

It prints markdown tables: median wall seconds (min–max) with each side's speedup over the
notebook loop's median, the 1-minute load average before/after each command, the final losses
(mean over instances) and, for ours, the `compile_choice` its provenance.json records.

    python benchmarks/bench_e2e.py --peer-python /work/bench-venv/bin/python
    python benchmarks/bench_e2e.py --work all --repeats 3 --json e2e.json
    python benchmarks/bench_e2e.py --work 5/2x10@200 --repeats 1 --allow-load     # a quick check

It refuses to measure (exit 2) when the load average is above --max-load (1.5) unless
--allow-load; rows with a command measured above it are marked.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BASELINE = ROOT.parent / "shared/bench/baseline.py"
PEERS = {"tms-kit": ("tms_kit", ROOT / "benchmarks/peers/tmskit_run.py"),
         "occhio": ("occhio", ROOT / "benchmarks/peers/occhio_run.py")}
SIDES = ("ours-cold", "ours-warm", "baseline", "tms-kit", "occhio")  # also the order within a repeat
TITLES = {"baseline": "notebook loop", "tms-kit": "tms-kit", "occhio": "occhio",
          "ours-warm": "ours, warm cache", "ours-cold": "ours, empty cache"}
COLUMNS = ("baseline", "tms-kit", "occhio", "ours-warm", "ours-cold")  # the order of the table's columns
DEFAULT_WORK = ("5/2x10@10000", "20/5x7@10000", "400/30x10@1000")
LONG_WORK = ("400/30x10@10000",)
SPEC = re.compile(r"^(\d+)/(\d+)x(\d+)@(\d+)$")


@dataclass(frozen=True)
class Work:
    """One work item: the same training on every side."""

    features: int
    """n, input features."""
    hidden: int
    """m, hidden dimensions."""
    instances: int
    """models trained at once, one per feature probability of the notebook's grid."""
    steps: int
    """training steps of batch 1024."""

    @property
    def name(self) -> str:
        return f"{self.features}/{self.hidden}x{self.instances}@{self.steps}"

    @property
    def label(self) -> str:
        return f"{self.features} → {self.hidden}, {self.instances} instances, {self.steps:,} steps"


def parse_work(text: str) -> list[Work]:
    """`default`, `all`, or comma-separated `N/MxINST@STEPS` specs (names may be mixed in)."""
    works: list[Work] = []
    for item in (t.strip() for t in text.split(",")):
        specs = {"default": DEFAULT_WORK, "all": DEFAULT_WORK + LONG_WORK}.get(item, (item,))
        for spec in specs:
            match = SPEC.match(spec)
            if not match:
                raise ValueError(f"--work {item!r}: expected default, all or N/MxINST@STEPS (e.g. 5/2x10@10000)")
            work = Work(*(int(g) for g in match.groups()))
            if min(work.features, work.hidden, work.instances, work.steps) < 1:
                raise ValueError(f"--work {item!r}: every number must be >= 1")
            if work not in works:
                works.append(work)
    return works


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="default",
                    help=f"default ({', '.join(DEFAULT_WORK)}), all (adds {', '.join(LONG_WORK)}) "
                         "or comma-separated N/MxINST@STEPS")
    ap.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated subset of {', '.join(SIDES)}")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each side per work item (median)")
    ap.add_argument("--threads", type=int, default=1,
                    help="OMP_NUM_THREADS / --threads for every side (default 1); 0 keeps torch's default")
    ap.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N], for ours and the peers "
                                                   "(the notebook loop has no device option: it stays on the CPU)")
    ap.add_argument("--baseline", type=Path, default=DEFAULT_BASELINE, help="path to the notebook loop, baseline.py")
    ap.add_argument("--peer-python", type=Path, default=Path(sys.executable),
                    help="python of an environment with tms-kit and occhio (default: this one)")
    ap.add_argument("--ours-args", default="", help="extra flags for `superposition train`, e.g. '--compile on'")
    ap.add_argument("--max-load", type=float, default=1.5, help="1-minute load average above which it refuses")
    ap.add_argument("--allow-load", action="store_true", help="measure even when the load is above --max-load")
    ap.add_argument("--json", type=Path, default=None, help="also write every raw timing to this JSON file")
    args = ap.parse_args(argv)
    try:
        args.work = parse_work(args.work)
    except ValueError as err:
        ap.error(str(err))
    args.sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if not args.sides or any(s not in SIDES for s in args.sides):
        ap.error(f"--sides {','.join(args.sides)}: choose from {', '.join(SIDES)}")
    if args.repeats < 1 or args.threads < 0:
        ap.error(f"--repeats = {args.repeats} must be >= 1 and --threads = {args.threads} >= 0")
    if "baseline" in args.sides and not args.baseline.is_file():
        ap.error(f"--baseline {args.baseline}: no such file (the notebook loop, shared/bench/baseline.py)")
    if not shutil.which(str(args.peer_python)):
        ap.error(f"--peer-python {args.peer_python}: not an executable")
    return args


def load_average() -> float:
    """The 1-minute load average from /proc/loadavg (os.getloadavg where there is none)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]


def child_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], env: dict[str, str]) -> dict:
    """Run `cmd` once: wall and CPU seconds, the load average before and after, exit status, output."""
    load_before, cpu0 = load_average(), child_cpu_seconds()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    return {"cmd": cmd, "wall_s": wall, "cpu_s": child_cpu_seconds() - cpu0, "load_before": load_before,
            "load_after": load_average(), "returncode": proc.returncode,
            "stdout_tail": proc.stdout[-2000:], "stderr_tail": proc.stderr[-2000:]}


def base_env(threads: int) -> dict[str, str]:
    """The caller's environment less PYTHONDONTWRITEBYTECODE: a user's Python keeps the bytecode of
    the modules it imports (pip writes it for installed packages), and without it every command of
    ours recompiled this checkout's src/ (0.2 s of a 2 s run, measured), while the peers' and the
    notebook's torch is installed with its bytecode."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def ours_env(threads: int, cache: Path) -> dict[str, str]:
    """This checkout's package (not whatever the venv has installed), compiling into `cache`."""
    env = base_env(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src")] + [p for p in [env.get("PYTHONPATH")] if p])
    env["TORCHINDUCTOR_CACHE_DIR"] = str(cache)
    env["TRITON_CACHE_DIR"] = str(cache / "triton")
    return env


def ours_cmd(work: Work, out: Path, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "superposition.cli", "train", "--features", str(work.features),
           "--hidden", str(work.hidden), "--p-grid", "1", "0.05", str(work.instances), "--importance-decay", "1",
           "--steps", str(work.steps), "--out", str(out), "--quiet"]
    if args.device != "cpu":
        cmd += ["--device", args.device]
    return cmd + shlex.split(args.ours_args)


def shape_flags(work: Work) -> list[str]:
    return ["--features", str(work.features), "--hidden", str(work.hidden), "--instances", str(work.instances),
            "--steps", str(work.steps), "--batch", "1024"]


def last_json_line(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in its output")


def read_ours(out: Path) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    provenance = json.loads((out / "provenance.json").read_text())
    return {"final_loss": statistics.mean(metrics["final_loss"]), "compiled": metrics.get("compiled"),
            "train_seconds": metrics.get("train_seconds"), "torch": provenance.get("torch"),
            "compile_choice": provenance.get("compile_choice"), "step": provenance.get("step")}


def run_side(side: str, work: Work, args: argparse.Namespace, scratch: Path, warm_cache: Path | None) -> dict:
    """Time one command of `side` on `work`; the record carries its final loss (or its error)."""
    if side.startswith("ours"):
        out = Path(tempfile.mkdtemp(prefix="run-", dir=scratch))
        cache = warm_cache if side == "ours-warm" else Path(tempfile.mkdtemp(prefix="cold-cache-", dir=scratch))
        rec = timed(ours_cmd(work, out / "run", args), ours_env(args.threads, cache))
        rec["background_s"] = wait_for_background_compiles(cache)
        parse = lambda: read_ours(out / "run")
    elif side == "baseline":
        cmd = [sys.executable, str(args.baseline), *shape_flags(work), "--importance-decay", "1"]
        rec = timed(cmd + (["--threads", str(args.threads)] if args.threads else []), base_env(args.threads))
        parse = lambda: {"final_loss": statistics.mean(last_json_line(rec["stdout_tail"])["final_loss"])}
    else:
        cmd = [str(args.peer_python), str(PEERS[side][1]), *shape_flags(work), "--threads", str(args.threads),
               "--device", args.device]
        rec = timed(cmd, base_env(args.threads))
        parse = lambda: {"final_loss": statistics.mean(last_json_line(rec["stdout_tail"])["final_loss"])}
    rec.update(side=side, work=work.name)
    if rec["returncode"] == 0:
        try:
            rec.update(parse())
        except (OSError, ValueError, KeyError, TypeError, statistics.StatisticsError) as err:
            rec["error"] = f"could not read its result: {err}"
    else:
        rec["error"] = f"exit status {rec['returncode']}: {rec['stderr_tail'].strip().splitlines()[-1:]}"
    if side.startswith("ours"):
        shutil.rmtree(out, ignore_errors=True)
        if side == "ours-cold":
            shutil.rmtree(cache, ignore_errors=True)
    return rec


def wait_for_background_compiles(cache: Path, limit_s: float = 900.0) -> float:
    """Seconds spent waiting for the background compiles a run of ours left running in `cache`
    (`superposition.compiling.warm_in_background`), so that none of them shares the cores with the
    next timed command. They are part of preparing a warm cache, not of the command's own time."""
    t0 = time.perf_counter()
    while any(cache.glob("superposition-warming-*.json")) and time.perf_counter() - t0 < limit_s:
        time.sleep(0.5)
    return time.perf_counter() - t0


def peer_available(python: Path, module: str) -> bool:
    probe = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True, stdin=subprocess.DEVNULL)
    return probe.returncode == 0


def benchmark(args: argparse.Namespace, sides: list[str], scratch: Path) -> list[dict]:
    """Every timed command, interleaved: for each work item, one untimed warm-up, then the repeats."""
    records: list[dict] = []
    for work in args.work:
        warm_cache = None
        if "ours-warm" in sides:
            warm_cache = Path(tempfile.mkdtemp(prefix="warm-cache-", dir=scratch))
            out = Path(tempfile.mkdtemp(prefix="prepare-", dir=scratch))
            rec = timed(ours_cmd(work, out / "run", args), ours_env(args.threads, warm_cache))  # untimed in the table
            rec["background_s"] = wait_for_background_compiles(warm_cache)
            rec.update(side="prepare-warm", work=work.name, repeat=None)
            if rec["returncode"] != 0:
                rec["error"] = f"exit status {rec['returncode']}: the warm cache is not prepared"
            shutil.rmtree(out, ignore_errors=True)
            records.append(rec)
            log(rec)
        for repeat in range(args.repeats):
            for side in sides:
                rec = run_side(side, work, args, scratch, warm_cache)
                rec["repeat"] = repeat
                records.append(rec)
                log(rec)
        if warm_cache is not None:
            shutil.rmtree(warm_cache, ignore_errors=True)
    return records


def log(rec: dict) -> None:
    loss = f", loss {rec['final_loss']:.5f}" if "final_loss" in rec else ""
    err = f", {rec['error']}" if "error" in rec else ""
    waited = rec.get("background_s", 0)
    background = f", then {waited:.0f} s compiling in the background" if waited > 1 else ""
    print(f"{rec['work']} {rec['side']}: {rec['wall_s']:.1f} s wall, {rec['cpu_s']:.1f} s cpu, load "
          f"{rec['load_before']:.2f}→{rec['load_after']:.2f}{loss}{err}{background}", file=sys.stderr, flush=True)


def summarize(records: list[dict], works: list[Work], max_load: float) -> list[dict]:
    """One row per work item: each side's median wall and CPU seconds, range, loss and speedup."""
    rows = []
    for work in works:
        row: dict = {"work": work.name, "label": work.label, "sides": {}}
        mine = [r for r in records if r["work"] == work.name and r["side"] in SIDES]
        loads = [x for r in mine for x in (r["load_before"], r["load_after"])]
        row["load_min"], row["load_max"] = (min(loads), max(loads)) if loads else (None, None)
        row["loaded"] = bool(loads) and max(loads) > max_load
        for side in SIDES:
            ok = [r for r in mine if r["side"] == side and "error" not in r]
            failed = sum(1 for r in mine if r["side"] == side and "error" in r)
            if not ok:
                row["sides"][side] = {"failed": failed} if failed else None
                continue
            walls = [r["wall_s"] for r in ok]
            row["sides"][side] = {
                "wall_s": statistics.median(walls), "wall_min": min(walls), "wall_max": max(walls),
                "cpu_s": statistics.median(r["cpu_s"] for r in ok), "n": len(ok), "failed": failed,
                "final_loss": statistics.median(r["final_loss"] for r in ok)}
        base = row["sides"].get("baseline")
        for cell in row["sides"].values():
            if cell and "wall_s" in cell and base and "wall_s" in base:
                cell["speedup"] = base["wall_s"] / cell["wall_s"]
        rows.append(row)
    return rows


def _cell(cell: dict | None, key: str, fmt: str) -> str:
    if cell is None:
        return "—"
    if key not in cell:
        return f"failed ×{cell['failed']}"
    return format(cell[key], fmt)


def _wall(cell: dict | None) -> str:
    text = _cell(cell, "wall_s", ".1f")
    if cell and "wall_s" in cell:
        text += " s" if cell["n"] < 2 else f" s ({cell['wall_min']:.1f}–{cell['wall_max']:.1f})"
    return text


def tables(rows: list[dict], max_load: float) -> str:
    heads = [TITLES[c] for c in COLUMNS]
    ratio_heads = [f"{TITLES[c]} ×" for c in COLUMNS if c != "baseline"]
    out = ["Wall seconds, median (min–max); × = the notebook loop's median / that side's (> 1: faster).", "",
           "| work | " + " | ".join(heads + ratio_heads) + " | load |",
           "|---|" + "---:|" * (len(heads) + len(ratio_heads)) + "---:|"]
    for row in rows:
        cells = [_wall(row["sides"][c]) for c in COLUMNS]
        ratios = [_cell(row["sides"][c], "speedup", ".2f") + "×" if row["sides"][c] and "speedup" in row["sides"][c]
                  else "—" for c in COLUMNS if c != "baseline"]
        load = "—" if row["load_min"] is None else f"{row['load_min']:.1f}–{row['load_max']:.1f}"
        out.append(f"| {row['label']} | " + " | ".join(cells + ratios) + f" | {load}{' ⚠' if row['loaded'] else ''} |")
    if any(r["loaded"] for r in rows):
        out.append(f"\n⚠ measured with a 1-minute load average above {max_load:g}: these times are not quiet.")
    for title, key, fmt in (("Final loss (mean over instances), median over repeats:", "final_loss", ".5f"),
                            ("CPU seconds (user + sys of the command), median:", "cpu_s", ".1f")):
        out += ["", title, "", "| work | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
        out += [f"| {row['label']} | " + " | ".join(_cell(row["sides"][c], key, fmt) for c in COLUMNS) + " |"
                for row in rows]
    return "\n".join(out)


def describe_choice(choice: object) -> str:
    """A one-line reading of provenance.json's compile_choice (a dict of measured costs, or a string)."""
    if not isinstance(choice, dict):
        return str(choice)
    verdict = "compiled" if choice.get("compiled") else "eager"
    reason = choice.get("reason") or choice.get("why")
    rest = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in choice.items()
                     if k not in ("compiled", "reason", "why"))
    return verdict + (f": {reason}" if reason else "") + (f" ({rest})" if rest else "")


def choices(records: list[dict]) -> str:
    lines = []
    for rec in records:
        if rec["side"] in ("ours-cold", "ours-warm") and "error" not in rec:
            choice = rec.get("compile_choice")
            if rec.get("step") == "native":
                text = "native step (superposition.native)"
            else:
                text = "no compile_choice in provenance.json" if choice is None else describe_choice(choice)
            lines.append(f"- {rec['work']} {rec['side']} #{rec['repeat'] + 1}: {text}")
    return "\n".join(["ours, compile_choice (provenance.json):", *lines]) if lines else ""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start_load = load_average()
    if start_load > args.max_load and not args.allow_load:
        print(f"bench_e2e: the 1-minute load average is {start_load:.2f} > {args.max_load:g}: refusing to measure "
              "(pass --allow-load to measure anyway)", file=sys.stderr)
        return 2
    sides = []
    for side in args.sides:
        if side in PEERS and not peer_available(args.peer_python, PEERS[side][0]):
            print(f"bench_e2e: {side} is not importable by {args.peer_python}: skipped "
                  "(see benchmarks/README.md, --peer-python)", file=sys.stderr)
            continue
        sides.append(side)
    with tempfile.TemporaryDirectory(prefix="bench_e2e_") as tmp:
        records = benchmark(args, sides, Path(tmp))
    rows = summarize(records, args.work, args.max_load)
    torch_version = next((r["torch"] for r in records if r.get("torch")), "?")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{stamp}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch_version}, "
          f"threads {args.threads or 'default'}, device {args.device}"
          f"{' (the notebook loop on the CPU)' if args.device != 'cpu' else ''}, {args.repeats} repeats, "
          f"load {start_load:.2f} at start{', ours ' + args.ours_args if args.ours_args else ''}\n")
    print(tables(rows, args.max_load))
    text = choices(records)
    if text:
        print("\n" + text)
    if args.json is not None:
        report = {"date": stamp, "argv": sys.argv, "load_start": start_load, "threads": args.threads,
                  "device": args.device, "repeats": args.repeats, "ours_args": args.ours_args,
                  "peer_python": str(args.peer_python), "baseline": str(args.baseline), "summary": rows,
                  "runs": records}
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any("error" in r for r in records) else 0


if __name__ == "__main__":
    sys.exit(main())
