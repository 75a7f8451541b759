"""Checks that run before anything is computed or written.

:func:`preflight` is called by the ``neurodfc`` command and at the top of
:func:`neurodfc.training.train` and :func:`neurodfc.experiment.simulate_experiment`. It refuses,
with one line naming the field, its value and what is allowed:

- a device that this machine lacks (``device = "cuda"`` without CUDA, ``cuda:3`` with one GPU);
- data that does not fit the network or the loss (input/output sizes, a classification loss on
  a regression task, ``data.val_size`` that leaves no training images, ``--samples`` above the
  training samples);
- a config whose memory, estimated from the network weights, the data set, the batch
  activations and the recorded trajectories, exceeds what the device has available (the
  numbers are in the message; set ``NEURODFC_SKIP_MEMORY_CHECK=1`` to skip this check);
- an output path that cannot be written (a folder where a file is needed or the reverse, a
  parent that is a file, a folder without write permission).

The memory estimate counts only buffers a run certainly allocates, so it is a lower bound: a
config it refuses cannot run; one it passes may still need more.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from neurodfc.config import ConfigError, ExperimentConfig

Job = Literal["simulate", "train"]
"""What the config is checked for: a dynamics study or a training."""
IMAGE_DATA = {
    "mnist": (784, 10, "classification"),
    "fashion_mnist": (784, 10, "classification"),
    "mnist_autoencoder": (784, 784, "regression"),
}
"""``(n_in, n_out, task)`` of the image data sets (see :mod:`neurodfc.data.datasets`)."""
IMAGE_TRAIN, IMAGE_TEST = 60_000, 10_000
"""Training and test images of MNIST and Fashion-MNIST."""
TEACHER_WIDTH = 1000
"""Hidden width of the teacher network of the teacher-student task."""
SKIP_MEMORY_ENV = "NEURODFC_SKIP_MEMORY_CHECK"
"""Environment variable that turns the memory check off (``1``)."""


class PreflightError(ConfigError):
    """The config cannot run here (device, data, memory or output path); one line."""


def _at(source: str | None) -> str:
    return f"{source}: " if source else ""


# ----------------------------------------------------------------------- device
def check_device(cfg: ExperimentConfig, source: str | None = None) -> None:
    """Refuse a ``device`` this machine does not have.

    Args:
        cfg: the config (its ``device``).
        source: the config file, put first in the message.
    """
    dev = cfg.device
    if dev == "cpu":
        return
    import torch  # only here: a bad config is answered without loading torch

    where = f"{_at(source)}device = {json.dumps(dev)}"
    if dev.startswith("cuda"):
        if not torch.cuda.is_available():
            why = "torch was built without CUDA" if torch.version.cuda is None else "no GPU found"
            raise PreflightError(
                f'{where}: CUDA is not available on this machine ({why}); use device = "cpu" '
                "(or --device cpu)"
            )
        index, count = (int(dev.split(":")[1]) if ":" in dev else 0), torch.cuda.device_count()
        if index >= count:
            raise PreflightError(
                f"{where}: this machine has {count} CUDA device(s), cuda:0 .. cuda:{count - 1}"
            )
    elif dev == "mps" and not torch.backends.mps.is_available():
        raise PreflightError(f'{where}: MPS is not available on this machine; use device = "cpu"')


# ----------------------------------------------------------------------- data
def data_shape(cfg: ExperimentConfig) -> tuple[int, int, str]:
    """``(n_in, n_out, task)`` of ``cfg.data``'s data set, known without loading it.

    Args:
        cfg: the config (``data.dataset`` and, for the synthetic sets, ``network.sizes``).
    """
    if cfg.data.dataset in IMAGE_DATA:
        return IMAGE_DATA[cfg.data.dataset]
    return cfg.network.sizes[0], cfg.network.sizes[-1], "regression"


def training_samples(cfg: ExperimentConfig) -> int:
    """Number of training samples ``cfg.data`` yields.

    Args:
        cfg: the config (``data``).
    """
    d = cfg.data
    if d.dataset == "random":
        return d.n_train
    n = IMAGE_TRAIN - d.val_size if d.dataset in IMAGE_DATA else d.n_train
    return min(n, d.max_train_samples) if d.max_train_samples is not None else n


def check_data(
    cfg: ExperimentConfig, samples: int | None = None, source: str | None = None
) -> None:
    """Refuse data that does not fit the network or the loss, before any data is read.

    Args:
        cfg: the config (``data``, ``network.sizes``, ``loss.loss``).
        samples: samples a dynamics study takes from the training set (None: no study).
        source: the config file, put first in the message.

    Raises:
        PreflightError: naming the fields that disagree.
    """
    d, at = cfg.data, _at(source)
    n_in, n_out, task = data_shape(cfg)
    sizes = cfg.network.sizes
    if (sizes[0], sizes[-1]) != (n_in, n_out):
        raise PreflightError(
            f"{at}network.sizes = {sizes} does not fit data.dataset = {json.dumps(d.dataset)}: "
            f"the input size must be {n_in} and the output size {n_out}"
        )
    wanted = "classification" if cfg.loss.loss == "cross_entropy" else "regression"
    if task != wanted:
        raise PreflightError(
            f"{at}loss.loss = {json.dumps(cfg.loss.loss)} needs a {wanted} data set, but "
            f"data.dataset = {json.dumps(d.dataset)} is a {task} task"
        )
    if d.dataset in IMAGE_DATA and d.val_size >= IMAGE_TRAIN:
        raise PreflightError(
            f"{at}data.val_size = {d.val_size} leaves no training images: must be < {IMAGE_TRAIN}"
        )
    if samples is not None and samples > training_samples(cfg):
        raise PreflightError(
            f"{at}samples = {samples} (--samples) exceeds the {training_samples(cfg)} training "
            f"samples of data.dataset = {json.dumps(d.dataset)}"
        )


# ----------------------------------------------------------------------- memory
@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run certainly allocates, by part; each part names the fields that size it."""

    parts: dict[str, tuple[int, str]]
    """``{part: (bytes, fields)}``, e.g. ``{"data set": (n, "data.n_train")}``."""

    @property
    def total(self) -> int:
        """Sum of the parts in bytes."""
        return sum(b for b, _ in self.parts.values())

    def largest(self) -> tuple[str, int, str]:
        """``(part, bytes, fields)`` of the biggest part."""
        name = max(self.parts, key=lambda k: self.parts[k][0])
        return name, *self.parts[name]


def _records(n_steps: int, every: int) -> int:
    return (n_steps - 1) // every + 1 + (1 if (n_steps - 1) % every else 0)


def estimate_memory(cfg: ExperimentConfig, job: Job, samples: int = 3) -> MemoryEstimate:
    """A lower bound of the memory ``cfg`` needs for ``job``.

    Args:
        cfg: the config.
        job: ``simulate`` (a dynamics study of ``samples`` samples, trajectories recorded) or
            ``train``.
        samples: samples of a dynamics study.

    Examples:
        >>> from neurodfc.config import config_from_dict
        >>> cfg = config_from_dict({"network": {"sizes": [4, 3, 2]}, "data": {"n_train": 10}})
        >>> estimate_memory(cfg, "train").parts["network weights"]
        (816, 'network.sizes')
    """
    item = 8 if cfg.dtype == "float64" else 4
    sizes, d = cfg.network.sizes, cfg.data
    n_units, n_out = sum(sizes[1:]), sizes[-1]
    weights = sum(n * (m + 1) for m, n in zip(sizes[:-1], sizes[1:], strict=True))
    copies = 4 if job == "train" else 1  # weights, gradients, two Adam moments
    q_copies = 4 if job == "train" and cfg.feedback.learned else 1
    weight_bytes = (weights * copies + n_units * n_out * q_copies) * item
    parts = {"network weights": (weight_bytes, "network.sizes")}
    if d.dataset in IMAGE_DATA:
        n_total = IMAGE_TRAIN + IMAGE_TEST
        parts["data set"] = (n_total * 784 * (1 + item), "data.dataset")
    else:
        n_total = d.n_train + d.n_val + d.n_test
        teacher = max(d.n_train, d.n_val, d.n_test) * 2 * TEACHER_WIDTH * 8
        teacher = teacher if d.dataset == "teacher_student" else 0
        io = n_total * (sizes[0] + n_out) * 8 + teacher
        parts["data set"] = (io, "data.n_train, data.n_val, data.n_test")
    if job == "simulate":
        batch, batch_field = samples, "network.sizes, --samples"
    else:
        batch = min(cfg.training.batch_size, training_samples(cfg))
        batch_field = "network.sizes, training.batch_size"
    # the solvers keep at least 8 [batch, units] buffers (state, rates, stages, increments)
    parts["activations"] = (batch * (sizes[0] + n_units) * 8 * item, batch_field)
    n_rec = _records(cfg.simulation.n_steps, cfg.simulation.record_every)
    if job == "simulate":  # r_L, u, e and every v_i, in torch and again in the netCDF arrays
        per = (3 * n_out + n_units) * (item + 8)
        fields = "network.sizes, simulation.steps / simulation.record_every, --samples"
        parts["recorded trajectories"] = (n_rec * samples * per, fields)
    elif cfg.analysis.log_interval > 0 and "convergence" in cfg.analysis.metrics:
        logged = min(cfg.analysis.max_samples or batch, batch)
        fields = "simulation.steps / simulation.record_every, analysis.max_samples"
        parts["recorded trajectories"] = (n_rec * logged * 3 * n_out * item, fields)
    return MemoryEstimate(parts)


def available_memory(device: str) -> int | None:
    """Bytes free on ``device`` (CPU: the available RAM; CUDA: free GPU memory); None if
    unknown.

    Args:
        device: a torch device name.
    """
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if device != "cpu":
        return None
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def human_bytes(n: float) -> str:
    """``n`` bytes as ``"1.5 GB"`` (powers of 1000).

    Args:
        n: a number of bytes.

    Examples:
        >>> human_bytes(1.5e9), human_bytes(512)
        ('1.5 GB', '512 B')
    """
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def check_memory(
    cfg: ExperimentConfig, job: Job, samples: int = 3, source: str | None = None
) -> None:
    """Refuse a config whose :func:`estimate_memory` exceeds :func:`available_memory`.

    Args:
        cfg: the config.
        job: ``simulate`` or ``train``.
        samples: samples of a dynamics study.
        source: the config file, put first in the message.
    """
    if os.environ.get(SKIP_MEMORY_ENV, "") not in ("", "0"):
        return
    est = estimate_memory(cfg, job, samples)
    free = available_memory(cfg.device)
    if free is None or est.total <= free:
        return
    part, size, fields = est.largest()
    what = "simulation" if job == "simulate" else "training"
    raise PreflightError(
        f"{_at(source)}the {what} needs at least {human_bytes(est.total)} of memory (largest: "
        f"{part}, {human_bytes(size)}, from {fields}) but device = {json.dumps(cfg.device)} has "
        f"{human_bytes(free)} available; make them smaller"
    )


# ----------------------------------------------------------------------- output paths
def check_output(path: str | Path, kind: Literal["file", "folder"], flag: str = "--out") -> None:
    """Refuse an output path that cannot be written, before anything is computed.

    Args:
        path: the file or folder to be written (it may not exist yet).
        kind: ``file`` (e.g. a netCDF file) or ``folder`` (a run folder).
        flag: the option that named it, for the message.
    """
    p = Path(path)
    where = f"{flag} {p}"
    try:
        if kind == "file" and p.is_dir():
            raise PreflightError(f"{where}: is a folder; give the path of a file to write")
        if kind == "folder" and p.exists() and not p.is_dir():
            raise PreflightError(f"{where}: is a file; give a folder (a new one, or a run folder)")
        if kind == "file" and p.exists() and not os.access(p, os.W_OK):
            raise PreflightError(f"{where}: the file exists and is not writable")
        anc = p.absolute() if kind == "folder" else p.absolute().parent
        while not anc.exists() and anc != anc.parent:
            anc = anc.parent
        if not anc.is_dir():
            raise PreflightError(f"{where}: cannot be created, {anc} is a file, not a folder")
        if not os.access(anc, os.W_OK | os.X_OK):
            raise PreflightError(f"{where}: cannot be written, the folder {anc} is not writable")
    except OSError as err:
        raise PreflightError(f"{where}: cannot be used ({err.strerror or err})") from None


# ----------------------------------------------------------------------- all together
def preflight(
    cfg: ExperimentConfig,
    job: Job,
    *,
    out: str | Path | None = None,
    samples: int = 3,
    source: str | None = None,
) -> None:
    """Every check of this module for ``job``; raises :class:`PreflightError` (one line).

    Args:
        cfg: the validated config.
        job: ``simulate`` (``out`` is a file) or ``train`` (``out`` is a run folder).
        out: the output path (None: not checked).
        samples: samples of a dynamics study (``simulate``).
        source: the config file, put first in config messages.
    """
    if samples < 1:
        raise PreflightError(f"--samples {samples}: must be an integer >= 1")
    check_device(cfg, source)
    check_data(cfg, samples if job == "simulate" else None, source)
    if out is not None:
        check_output(out, "file" if job == "simulate" else "folder")
    check_memory(cfg, job, samples, source)
