"""``neurodfc report``: PNG figures of every metric in a results file and a ``report.md``.

:func:`report` reads ``RUN_DIR/metrics.nc`` (or any ``.nc`` written by neurodfc) and writes,
into ``RUN_DIR/report/`` (or ``<file>_report/`` next to a ``.nc`` file):

* ``losses.png`` / ``accuracy.png`` / ``status.png``: per-epoch training curves (when present);
* one ``<metric>.png`` per analysis metric logged over training (dim ``step``), rolling mean
  +- std as in the paper's Fig. 3 (the batch std ``<metric>_std`` stays in the file);
* ``fig3_panels.png``: the paper's Fig. 3 panels, when their metrics are present;
* ``dynamics.png`` / ``error_norm.png`` for a simulation or convergence Dataset;
* ``report.md``: the key numbers, every figure, and the run's config as a TOML block.

Figures are drawn from the Dataset only (:mod:`neurodfc.figures`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import xarray as xr

from neurodfc import figures
from neurodfc.config import ExperimentConfig, to_toml
from neurodfc.runs.files import atomic_write_text
from neurodfc.runs.folder import METRICS, read_results

METRICS_FILE = METRICS
"""The results file that :func:`report` reads in a run folder."""


class ReportWriteError(ValueError):
    """The report's output folder cannot be written (one line naming it)."""


def resolve(path: str | Path, out: str | Path | None = None) -> tuple[Path, Path]:
    """``(netCDF file, output folder)`` of a report.

    Args:
        path: a run folder (its ``metrics.nc`` is read) or a ``.nc`` file.
        out: the output folder (default: ``<run>/report`` or ``<file>_report`` beside the
            file).

    Raises:
        FileNotFoundError: when there is no results file at ``path``.
    """
    p = Path(path)
    if p.is_dir():
        nc = p / METRICS_FILE
        default_out = p / "report"
    else:
        nc = p
        default_out = p.with_name(f"{p.stem}_report")
    if not nc.is_file():
        raise FileNotFoundError(f"no results file at {nc} (expected a run folder or a .nc file)")
    return nc, Path(out) if out is not None else default_out


def config_toml(ds: xr.Dataset) -> tuple[str, str]:
    """The config stored in the result ``ds`` (``ds.attrs['config']``) as
    ``(text, language)``: TOML when it validates against the current
    :class:`~neurodfc.config.ExperimentConfig`, else the JSON as stored."""
    raw = ds.attrs.get("config")
    if raw is None:
        return "(no config stored in this file)", "text"
    try:
        return to_toml(ExperimentConfig.model_validate_json(str(raw))), "toml"
    except ValueError:
        return json.dumps(json.loads(str(raw)), indent=2), "json"


def _fmt(v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.4g}"


def step_metrics(ds: xr.Dataset) -> list[str]:
    """Names of the metrics of ``ds`` logged over training (dim ``step``), batch stds
    excluded."""
    return [
        str(n)
        for n, da in ds.data_vars.items()
        if "step" in da.dims and not str(n).endswith("_std") and len(da.dims) <= 3
    ]


def key_numbers(ds: xr.Dataset) -> list[tuple[str, str]]:
    """``(quantity, value)`` rows of the report's table for the results ``ds``: final losses
    and accuracies, the best-validation numbers and each step metric's mean over the last 10 %
    of its logs (one block per run when ``ds`` has a ``run`` dim)."""
    if "run" in ds.dims:  # several runs stacked (the analyses/ scripts): one block per run
        rows: list[tuple[str, str]] = []
        for run in ds["run"].values:
            sub = ds.sel(run=run)
            sub = sub.dropna("epoch", how="all") if "epoch" in sub.dims else sub
            rows += [(f"{run}: {q}", v) for q, v in key_numbers(sub)]
        return rows
    rows = []
    if "epoch" in ds.dims and ds.sizes["epoch"] > 0:
        last = ds.isel(epoch=-1)
        rows.append(("epochs trained", str(int(ds["epoch"].values[-1]))))
        for k in ("train_loss", "val_loss", "test_loss"):
            if k in ds:
                rows.append((f"final {k}", _fmt(float(last[k]))))
        for k in ("train_accuracy", "test_accuracy"):
            if k in ds and np.isfinite(float(last[k])):
                rows.append((f"final {k} [%]", _fmt(100 * float(last[k]))))
    for k in ("best_val_epoch", "test_loss_at_best_val", "test_error_percent_at_best_val"):
        if k in ds.attrs:
            rows.append((k, _fmt(float(ds.attrs[k]))))
    for name in step_metrics(ds):
        da = ds[name].dropna("step", how="all")
        if da.sizes["step"] == 0:
            continue
        n = max(1, int(math.ceil(0.1 * da.sizes["step"])))
        tail = da.isel(step=slice(-n, None)).mean("step", skipna=True)
        if tail.ndim == 0:
            rows.append((f"{name} (last 10 % of logs)", _fmt(float(tail))))
        elif tail.ndim == 1:
            d = tail.dims[0]
            for c in tail[d].values:
                val = float(tail.sel({d: c}))
                rows.append((f"{name}[{d}={c}] (last 10 % of logs)", _fmt(val)))
    return rows


def make_figures(ds: xr.Dataset, out: Path) -> list[tuple[str, Path]]:
    """Draw every figure the Dataset ``ds`` supports into the folder ``out``.

    Returns:
        ``(caption, path)`` per figure written (see the module docstring for the list).
    """
    figs: list[tuple[str, Path]] = []
    if "epoch" in ds.dims and ds.sizes["epoch"] > 0:
        if any(k in ds for k in ("train_loss", "val_loss", "test_loss")):
            figs.append(("Loss over epochs", figures.plot_losses(ds, out / "losses.png")))
        acc = [k for k in ("train_accuracy", "test_accuracy") if k in ds]
        if acc and any(np.any(np.isfinite(ds[k].values)) for k in acc):
            figs.append(("Accuracy over epochs", figures.plot_accuracy(ds, out / "accuracy.png")))
        stat = [k for k in ("n_converged", "n_diverged", "n_max_steps") if k in ds]
        if stat and any(np.nansum(ds[k].values) > 0 for k in stat):
            figs.append(
                ("Simulation status per epoch", figures.plot_status(ds, out / "status.png"))
            )
    names = step_metrics(ds)
    if names:
        have = {p[0] for p in figures.FIG3_PANELS if p[0] in ds}
        if len(have) >= 2:
            figs.append(
                (
                    "The paper's Fig. 3 panels (rolling mean +- std)",
                    figures.plot_fig3_panels(ds, out / "fig3_panels.png"),
                )
            )
        for name in names:
            cap = f"{name}: {ds[name].attrs.get('long_name', name)} (rolling mean +- std)"
            figs.append((cap, figures.plot_step_metric(ds, name, out / f"{name}.png")))
    if "time" in ds.dims and "r_L" in ds and "u" in ds:
        from neurodfc.plotting import plot_dynamics

        figs.append(("Dynamics of r_L(t) and u(t)", plot_dynamics(ds, out / "dynamics.png")))
    if "time" in ds.dims and "e_norm" in ds and "sample" in ds.dims:
        figs.append(("|e(t)| per sample", figures.plot_error_norm(ds, out / "error_norm.png")))
    return figs


def report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write the figures and ``report.md`` of a run (see the module docstring).

    Args:
        path: a run folder (with ``metrics.nc``) or any ``.nc`` file written by neurodfc.
        out: the output folder (default: ``<run>/report`` or ``<file>_report``).

    Returns:
        The path of ``report.md``.

    Raises:
        FileNotFoundError: there is no results file at ``path``.
        neurodfc.runs.folder.ResultsFileError: the results file is damaged or not netCDF (one
            line naming it).
        ReportWriteError: the output folder cannot be written (read-only, full disk).
    """
    nc, outdir = resolve(path, out)
    ds = read_results(nc)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        return _write_report(ds, nc, outdir)
    except OSError as err:
        raise ReportWriteError(
            f"cannot write the report into {outdir}: {err.strerror or err}; choose another "
            "--out or fix the folder's permissions"
        ) from None


def _write_report(ds: xr.Dataset, nc: Path, outdir: Path) -> Path:
    figs = make_figures(ds, outdir)
    cfg = json.loads(ds.attrs["config"]) if "config" in ds.attrs else {}
    name = cfg.get("name", nc.stem) if isinstance(cfg, dict) else nc.stem
    method = ds.attrs.get("method", (cfg.get("method") or {}).get("name", "?"))
    lines = [f"# Report: {name}", "", f"- source: `{nc}`", f"- method: `{method}`"]
    if "step" in ds.dims:
        lines.append(
            f"- {ds.sizes['step']} logged minibatches; per-step values are batch means "
            "(batch stds as `<metric>_std` in the file)"
        )
    lines += ["", "## Key numbers", "", "| quantity | value |", "|---|---|"]
    lines += [f"| {q} | {v} |" for q, v in key_numbers(ds)]
    lines += ["", "## Figures", ""]
    for caption, p in figs:
        lines += [f"### {caption}", "", f"![{caption}]({p.name})", ""]
    text, lang = config_toml(ds)
    lines += ["## Config", "", f"```{lang}", text.rstrip(), "```", ""]
    return atomic_write_text("\n".join(lines), outdir / "report.md")
