"""A sweep directory's files and reading its results back: sweep.json, the index (index.parquet),
one model's weights (`load_model`), and a grid of one measure (`pivot_grid`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from ..atomic import atomic_write_to, remove_temporaries
from ..config import ConfigError, RunConfig
from ..errors import read_json
from ..models import Params, ToyModel
from ..run import RunDirError, load_run
from .chunks import Chunk, plan
from .job import read_models
from .spec import SweepSpec, _jsonable

SPEC_FILE, INDEX_FILE, CHUNKS_DIR = "sweep.json", "index.parquet", "chunks"
FORMAT = "superposition-sweep"


class SweepError(RunDirError):
    """A sweep directory cannot be used as asked (different spec, unfinished, not a sweep)."""


def build_index(spec: SweepSpec, chunks: list[Chunk], rows: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per model of the done chunks: point, swept values, seed, restart, final loss,
    represented, dims_per_feature (D*), mean_interference, and chunk + instance (its weights)."""
    points = list(spec.points())
    seed = spec.base.train.seed
    records = [{"point": r["point"], **_jsonable(points[r["point"]]),
                "seed": points[r["point"]].get("seed", seed),
                **{k: r[k] for k in ("restart", "final_loss", "represented", "dims_per_feature",
                                     "mean_interference")},
                "chunk": f"{CHUNKS_DIR}/{c.id}", "instance": r["instance"]}
               for c in chunks if c.id in rows for r in rows[c.id]]
    if not records:
        return pd.DataFrame(columns=["point", *(a.field for a in spec.axis_list), "seed", "restart"])
    return pd.DataFrame.from_records(records).sort_values(["point", "restart"], kind="stable").reset_index(drop=True)


def _write_index(path: Path, index: pd.DataFrame) -> None:
    """Write the index atomically (temporary file, fsync, rename); call it holding the sweep's lock."""
    remove_temporaries(path.parent, [path.name])  # left by a killed run
    atomic_write_to(path, lambda tmp: index.to_parquet(tmp, index=False))


def read_sweep_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The sweep.json of a sweep directory, its fields checked."""
    file = Path(path) / SPEC_FILE
    try:
        stored = read_json(file, SweepError)
    except FileNotFoundError:
        raise SweepError(f"{path}: not a sweep directory (no {SPEC_FILE})") from None
    if not isinstance(stored, dict) or stored.get("format") != FORMAT:
        raise SweepError(f"{file}: not a superposition sweep")
    for key in ("chunk_size", "chunks", "models"):
        value = stored.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SweepError(f"{file}: {key} = {value!r} is invalid: must be an integer >= 1")
    if not isinstance(stored.get("spec"), dict):
        raise SweepError(f"{file}: spec must be an object")
    return stored


def stored_spec(path: str | os.PathLike[str], stored: dict[str, Any] | None = None) -> SweepSpec:
    """The spec recorded in a sweep directory's sweep.json (a SweepError naming it when invalid)."""
    stored = stored if stored is not None else read_sweep_json(path)
    try:
        return SweepSpec.from_dict(stored["spec"])
    except ConfigError as exc:
        raise SweepError(f"{Path(path) / SPEC_FILE}: spec is invalid ({exc})") from None


_INDEX_COLUMNS = {"point": "i", "restart": "i", "final_loss": "f", "represented": "i", "dims_per_feature": "f",
                  "mean_interference": "f", "chunk": "O", "instance": "i"}


def read_index(path: Path, spec: SweepSpec) -> pd.DataFrame:
    """index.parquet, checked: readable, the columns and types it must have, points on the grid."""
    file = path / INDEX_FILE
    try:
        index = pd.read_parquet(file)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise SweepError(f"{file}: unreadable ({exc.__class__.__name__}: {' '.join(str(exc).split())[:200]}); "
                         "delete it and run the sweep command again to rebuild it") from None
    for column, kind in _INDEX_COLUMNS.items():
        if column not in index.columns:
            raise SweepError(f"{file}: has no column {column!r}; delete it to rebuild it")
        if len(index) and index[column].dtype.kind not in (kind, "u" if kind == "i" else kind):
            raise SweepError(f"{file}: column {column!r} has type {index[column].dtype}; delete it to rebuild it")
    if len(index) and not index["point"].between(0, spec.n_points - 1).all():
        raise SweepError(f"{file}: points outside the grid of {spec.n_points}; delete it to rebuild it")
    if len(index) and not index["chunk"].map(lambda c: isinstance(c, str) and c.startswith(f"{CHUNKS_DIR}/")
                                             and "/" not in c[len(CHUNKS_DIR) + 1:] and ".." not in c).all():
        raise SweepError(f"{file}: chunk column names paths outside {CHUNKS_DIR}/; refused")
    return index


def load_sweep(path: str | os.PathLike[str], partial: bool = False) -> pd.DataFrame:
    """The index of the sweep in `path` as a DataFrame, one row per model (see `build_index`).

    An unfinished sweep is an error unless `partial`, which indexes the chunks done so far.
    ``index.attrs["sweep"]`` is `path`, for `load_model`.
    """
    path = Path(path)
    stored = read_sweep_json(path)
    spec = stored_spec(path, stored)
    if (path / INDEX_FILE).is_file():
        index = read_index(path, spec)
    else:
        chunks = plan(spec, stored["chunk_size"])
        rows = {c.id: r for c in chunks if (r := read_models(path / CHUNKS_DIR / c.id, c.points)) is not None}
        if len(rows) < len(chunks) and not partial:
            raise SweepError(f"{path}: the sweep is not finished ({len(rows)}/{len(chunks)} chunks done); run the "
                             "same sweep command again to finish it, or load it with partial=True")
        index = build_index(spec, chunks, rows)
    index.attrs["sweep"] = str(path)
    return index


class SweepModel(NamedTuple):
    """One model of a sweep, rebuilt from its chunk's weights."""

    config: RunConfig
    """The point's standalone config: training it alone gives this model."""
    params: Params
    """Each parameter with an instance axis of 1: ``W [1, feat, hidden]``, ``b [1, feat]``."""
    row: pd.Series

    @property
    def model(self) -> ToyModel:
        return ToyModel(self.config.model, self.params)


def load_model(path: str | os.PathLike[str], row: int | pd.Series) -> SweepModel:
    """Rebuild the model of index row `row` (a position in `load_sweep(path)`, or the row itself)."""
    path = Path(path)
    if not isinstance(row, pd.Series):
        row = load_sweep(path).iloc[int(row)]
    spec = stored_spec(path)
    run = load_run(path / row["chunk"])
    k = int(row["instance"])
    if not 0 <= k < run.n_instances:
        raise SweepError(f"{path / INDEX_FILE}: instance {k} is not in {row['chunk']} ({run.n_instances} instances)")
    return SweepModel(spec.config(int(row["point"])), {n: t[k:k + 1].clone() for n, t in run.params.items()}, row)


def pivot_grid(index: pd.DataFrame, value: str, rows: str, columns: str | None = None,
               agg: str | Callable = "mean") -> pd.DataFrame:
    """`value` on the grid of `rows` × `columns` (axis columns of the index), aggregated over
    everything else (seeds, restarts) with `agg`; sorted ascending. ``.to_numpy()`` gives the array
    a phase diagram draws: ``[len(rows), len(columns)]``."""
    if columns is None:
        return index.groupby(rows, sort=True)[[value]].agg(agg)
    return index.pivot_table(index=rows, columns=columns, values=value, aggfunc=agg, sort=True)
