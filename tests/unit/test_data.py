"""Tests of neurodfc.data: IDX files, verification, locating, downloads, splits, teacher-student.

The IDX files come from NEURODFC_TEST_DATA (default ../shared/data beside the repository); tests
needing them are skipped when absent. Nothing here touches the internet: downloads are forbidden
(``NEURODFC_NO_DOWNLOAD``, set by conftest) except in the tests that serve files from a local
http.server, and the built-in mirrors are replaced by an unreachable local address.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from neurodfc.data import (
    DatasetError,
    DataSplits,
    Split,
    datasets,
    load_dataset,
    locate,
    random_inputs,
    read_idx,
    sources,
    teacher_student,
)
from neurodfc.data.idx import sha256_of_decompressed

Server = Callable[[Path], str]
"""Serve a folder on 127.0.0.1 and return its base URL (see the ``http_server`` fixture)."""
HITS: list[str] = []
"""Paths requested from the local servers during the current test."""

DATA_ROOT = Path(
    os.environ.get("NEURODFC_TEST_DATA")
    or Path(__file__).resolve().parents[2].parent / "shared" / "data"
)
FOLDERS = {"mnist": DATA_ROOT / "mnist", "fashion_mnist": DATA_ROOT / "fashion-mnist"}
HAVE = {k: sources.find_files(v) is not None for k, v in FOLDERS.items()}
needs_mnist = pytest.mark.skipif(
    not HAVE["mnist"], reason=f"MNIST IDX files not in {FOLDERS['mnist']} (set NEURODFC_TEST_DATA)"
)
needs_both = pytest.mark.skipif(
    not all(HAVE.values()),
    reason=f"MNIST/Fashion-MNIST IDX files not in {DATA_ROOT} (set NEURODFC_TEST_DATA)",
)
T10K_LABELS = "t10k-labels-idx1-ubyte"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user data dir, a private cache, no system folders, no reachable default mirror."""
    monkeypatch.delenv("NEURODFC_DATA", raising=False)
    monkeypatch.delenv("NEURODFC_CACHE", raising=False)
    monkeypatch.setenv("NEURODFC_NO_DOWNLOAD", "1")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    HITS.clear()
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    for key, src in sources.SOURCES.items():
        safe = replace(src, system_dirs=(), mirrors=("http://127.0.0.1:9/",))
        monkeypatch.setitem(sources.SOURCES, key, safe)


def link_copy(src: Path, dest: Path) -> Path:
    """Make ``dest`` hold symlinks to the four IDX files of ``src``."""
    dest.mkdir(parents=True, exist_ok=True)
    files = sources.find_files(src)
    assert files is not None
    for path in files.values():
        (dest / path.name).symlink_to(path)
    return dest


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        HITS.append(self.path)
        super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        HITS.append(self.path)
        super().do_HEAD()


@pytest.fixture
def allow_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lift the test suite's download ban (the tests using it serve files locally)."""
    monkeypatch.delenv("NEURODFC_NO_DOWNLOAD")


@pytest.fixture
def http_server() -> Iterator[Server]:
    """Factory: serve a folder on 127.0.0.1 (port 0) in a thread; returns its base URL.
    Every request is recorded in :data:`HITS`."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- IDX reading


@needs_both
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_read_idx_shapes_dtypes_labels(name: str) -> None:
    folder = FOLDERS[name]
    for part, n in (("train", 60000), ("t10k", 10000)):
        images = read_idx(folder / f"{part}-images-idx3-ubyte.gz")
        labels = read_idx(folder / f"{part}-labels-idx1-ubyte.gz")
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8
        assert set(np.unique(labels).tolist()) == set(range(10))
        assert images.flags.writeable


@needs_both
@pytest.mark.parametrize(
    ("name", "mean", "std"), [("mnist", 0.1307, 0.3081), ("fashion_mnist", 0.2860, 0.3530)]
)
def test_pixel_statistics(name: str, mean: float, std: float) -> None:
    images = read_idx(FOLDERS[name] / "train-images-idx3-ubyte.gz")
    counts = np.bincount(images.ravel(), minlength=256)  # exact statistics from a histogram
    levels = np.arange(256) / 255.0
    m = float((counts * levels).sum() / counts.sum())
    s = float(np.sqrt((counts * (levels - m) ** 2).sum() / counts.sum()))
    assert abs(m - mean) < 1e-3
    assert abs(s - std) < 1e-3


@needs_both
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_checksums_pass_on_shared_data(name: str) -> None:
    files = sources.find_files(FOLDERS[name])
    assert files is not None
    sources.verify_files(name, files)  # raises on mismatch
    assert locate(name, FOLDERS[name], download=False) == FOLDERS[name]


@needs_mnist
def test_truncated_gzip_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "train-labels-idx1-ubyte.gz"
    bad.write_bytes((FOLDERS["mnist"] / "train-labels-idx1-ubyte.gz").read_bytes()[:1000])
    for fn in (read_idx, sha256_of_decompressed):
        with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz"):
            fn(bad)


def test_malformed_plain_idx(tmp_path: Path) -> None:
    good = bytes([0, 0, 0x08, 1]) + (5).to_bytes(4, "big") + bytes(range(5))
    path = tmp_path / "labels.idx"  # no .gz in the name: compression is sniffed, not assumed
    path.write_bytes(good)
    assert read_idx(path).tolist() == [0, 1, 2, 3, 4]
    path.with_suffix(".gz").write_bytes(gzip.compress(good))
    assert read_idx(path.with_suffix(".gz")).tolist() == [0, 1, 2, 3, 4]
    cases = {
        "truncated": (good[:-1], "payload"),
        "padded": (good + b"\0", "payload"),
        "magic": (b"\1" + good[1:], "magic"),
        "dtype": (good[:2] + b"\x07" + good[3:], "dtype code"),
        "short": (good[:6], "header"),
    }
    for label, (content, msg) in cases.items():
        bad = tmp_path / f"{label}.idx"
        bad.write_bytes(content)
        with pytest.raises(DatasetError, match=msg) as err:
            read_idx(bad)
        assert str(bad) in str(err.value)


def test_read_idx_big_endian_float(tmp_path: Path) -> None:
    values = np.array([[1.5, -2.0, 3.25]], dtype=">f4")
    path = tmp_path / "f.idx"
    path.write_bytes(
        bytes([0, 0, 0x0D, 2]) + b"".join(d.to_bytes(4, "big") for d in (1, 3)) + values.tobytes()
    )
    out = read_idx(path)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


@needs_mnist
def test_corrupted_file_fails_checksum_and_cache_tracks_mtime(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    link_copy(FOLDERS["mnist"], folder)
    (folder / f"{T10K_LABELS}.gz").unlink()
    plain = folder / T10K_LABELS  # uncompressed copy: same checksum as the .gz
    plain.write_bytes(gzip.decompress((FOLDERS["mnist"] / f"{T10K_LABELS}.gz").read_bytes()))
    assert locate("mnist", folder, download=False) == folder
    hits = sources._digest.cache_info().hits
    assert locate("mnist", folder, download=False) == folder
    assert sources._digest.cache_info().hits >= hits + 4  # verdicts reused, nothing re-hashed

    data = bytearray(plain.read_bytes())
    data[100] = (data[100] + 1) % 10  # still a valid label file, wrong content
    plain.write_bytes(bytes(data))
    st = plain.stat()
    os.utime(plain, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert read_idx(plain).shape == (10000,)  # structure is fine
    expected = sources.SOURCES["mnist"].sha256[T10K_LABELS]
    actual = hashlib.sha256(bytes(data)).hexdigest()
    with pytest.raises(DatasetError) as err:
        locate("mnist", folder, download=False)
    msg = str(err.value)
    assert str(plain) in msg and expected in msg and actual in msg


@needs_both
def test_wrong_dataset_in_folder_fails_checksum() -> None:
    with pytest.raises(DatasetError, match="checksum mismatch"):
        locate("fashion_mnist", FOLDERS["mnist"], download=False)


# --------------------------------------------------------------------------- locating


@needs_mnist
def test_locate_search_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = link_copy(FOLDERS["mnist"], tmp_path / "explicit")
    env = link_copy(FOLDERS["mnist"], tmp_path / "env")
    monkeypatch.setenv("NEURODFC_DATA", str(env))
    assert locate("mnist", explicit, download=False) == explicit
    assert locate("mnist", download=False) == env
    assert locate("mnist", tmp_path / "empty", download=False) == env  # falls through
    # subfolder rule, for data_dir and for the env var
    nested = link_copy(FOLDERS["mnist"], tmp_path / "root" / "mnist")
    assert locate("mnist", tmp_path / "root", download=False) == nested
    monkeypatch.setenv("NEURODFC_DATA", str(tmp_path / "root"))
    assert locate("mnist", download=False) == nested
    # the user cache comes last
    monkeypatch.delenv("NEURODFC_DATA")
    cached = link_copy(FOLDERS["mnist"], sources.cache_dir("mnist"))
    assert cached == tmp_path / "xdg-cache" / "neurodfc" / "mnist"
    assert locate("mnist", download=False) == cached


@needs_both
def test_locate_fashion_alias_and_system_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert locate("fashion-mnist", DATA_ROOT, download=False) == FOLDERS["fashion_mnist"]
    system = link_copy(FOLDERS["fashion_mnist"], tmp_path / "usr-share")
    src = sources.SOURCES["fashion_mnist"]
    monkeypatch.setitem(sources.SOURCES, "fashion_mnist", replace(src, system_dirs=(system,)))
    assert locate("fashion_mnist", download=False) == system


def test_locate_missing_without_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="searched") as err:
        locate("mnist", tmp_path / "nothing", download=False)
    assert str(tmp_path / "nothing") in str(err.value)
    with pytest.raises(ValueError, match="name must be one of"):
        locate("cifar10", download=False)


# --------------------------------------------------------------------------- downloading


@needs_mnist
@pytest.mark.usefixtures("allow_download")
def test_download_verified_and_atomic(
    tmp_path: Path, http_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = http_server(FOLDERS["mnist"])
    moves: list[tuple[Path, Path]] = []
    real_move = shutil.move

    def spy(src: Any, dst: Any) -> Any:
        moves.append((Path(src), Path(dst)))
        return real_move(src, dst)

    monkeypatch.setattr(shutil, "move", spy)
    dead = "http://127.0.0.1:1/"  # refused: the next mirror must be tried
    folder = locate("mnist", mirrors=[dead, url])
    assert folder == sources.cache_dir("mnist") == tmp_path / "xdg-cache" / "neurodfc" / "mnist"
    # stored decompressed under the registry's names, nothing else left behind
    assert sorted(p.name for p in folder.iterdir()) == sorted(sources.FILES)
    assert sorted(dst.name for _, dst in moves) == sorted(sources.FILES)
    for src, dst in moves:  # written beside the target under a temp name, then moved
        assert src.parent == dst.parent == folder and src.name != dst.name
    for stem, path in sources.find_files(folder).items():  # type: ignore[union-attr]
        assert sha256_of_decompressed(path) == sources.SOURCES["mnist"].sha256[stem]
    assert sorted(HITS) == sorted(f"/{s}.gz" for s in sources.FILES)
    # now found in the cache, no server needed
    HITS.clear()
    assert locate("mnist", download=False) == folder
    assert HITS == []


@pytest.mark.usefixtures("allow_download")
@pytest.mark.parametrize("payload", ["wrong_gzip", "not_gzip", "missing"])
def test_download_bad_file_leaves_nothing(
    tmp_path: Path, http_server: Server, payload: str
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    first = sources.FILES[0]
    content = b"not an mnist file"
    if payload == "wrong_gzip":
        (served / f"{first}.gz").write_bytes(gzip.compress(content))
    elif payload == "not_gzip":
        (served / f"{first}.gz").write_bytes(b"<html>oops</html>")
    url = http_server(served)
    with pytest.raises(DatasetError, match=first) as err:
        locate("mnist", mirrors=[url])
    msg = str(err.value)
    assert "\n" not in msg
    if payload == "wrong_gzip":
        assert sources.SOURCES["mnist"].sha256[first] in msg
        assert hashlib.sha256(content).hexdigest() in msg
    elif payload == "not_gzip":
        assert "gzip" in msg
    else:
        assert "404" in msg
    assert list(sources.cache_dir("mnist").iterdir()) == []


@needs_mnist
@pytest.mark.usefixtures("allow_download")
def test_download_fetches_only_the_missing_files_into_the_cache(
    tmp_path: Path, http_server: Server
) -> None:
    # three files in the cache already; only the missing one is fetched (from a one-file server)
    cache = link_copy(FOLDERS["mnist"], sources.cache_dir("mnist"))
    (cache / f"{T10K_LABELS}.gz").unlink()
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(FOLDERS["mnist"] / f"{T10K_LABELS}.gz", served)
    assert locate("mnist", mirrors=[http_server(served)]) == cache
    assert HITS == [f"/{T10K_LABELS}.gz"]
    assert (cache / T10K_LABELS).is_file() and not (cache / T10K_LABELS).is_symlink()
    assert all((cache / f"{s}.gz").is_symlink() for s in sources.FILES if s != T10K_LABELS)


# --------------------------------------------------------------------------- missing files


@needs_mnist
@pytest.mark.usefixtures("allow_download")
@pytest.mark.parametrize("how", ["data_dir", "env", "load_dataset"])
def test_missing_file_is_named_and_nothing_downloaded(
    tmp_path: Path, http_server: Server, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    folder = link_copy(FOLDERS["mnist"], tmp_path / "data" / "mnist")
    (folder / f"{T10K_LABELS}.gz").unlink()
    url = http_server(FOLDERS["mnist"])  # would serve the file: it must not be asked
    with pytest.raises(DatasetError) as err:
        if how == "env":
            monkeypatch.setenv("NEURODFC_DATA", str(tmp_path / "data"))
            locate("mnist", mirrors=[url])
        elif how == "data_dir":
            locate("mnist", tmp_path / "data", mirrors=[url])
        else:
            load_dataset("mnist", data_dir=tmp_path / "data")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{folder}: mnist file {T10K_LABELS}(.gz) is missing;")
    assert "train-images" not in msg.split(";")[0]
    assert "no download is attempted" in msg
    assert HITS == []
    assert not sources.cache_dir("mnist").exists()


@pytest.mark.usefixtures("allow_download")
@pytest.mark.parametrize("how", ["data_dir", "env"])
def test_no_download_when_a_folder_is_given(
    tmp_path: Path, http_server: Server, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    url = http_server(FOLDERS["mnist"])
    if how == "env":
        monkeypatch.setenv("NEURODFC_DATA", str(empty))
    with pytest.raises(DatasetError) as err:
        locate("mnist", empty if how == "data_dir" else None, mirrors=[url])
    msg = str(err.value)
    origin = "data_dir" if how == "data_dir" else "NEURODFC_DATA"
    assert "\n" not in msg
    assert msg.startswith(f"mnist: {sources.FILES[0]}(.gz) not found in {empty} ({origin})")
    assert f"no download is attempted when a data folder is given ({origin})" in msg
    assert HITS == []
    assert not sources.cache_dir("mnist").exists()


def test_no_download_while_forbidden(tmp_path: Path, http_server: Server) -> None:
    url = http_server(tmp_path)  # NEURODFC_NO_DOWNLOAD=1 (the suite's default) is in force
    with pytest.raises(DatasetError, match="downloads are disabled by NEURODFC_NO_DOWNLOAD"):
        locate("mnist", mirrors=[url])
    with pytest.raises(DatasetError, match="NEURODFC_NO_DOWNLOAD='1'"):
        sources.download_dataset("mnist", mirrors=[url])
    assert HITS == []
    assert not sources.cache_dir("mnist").exists()


@needs_mnist
def test_partial_cache_without_download_names_the_missing_file() -> None:
    cache = link_copy(FOLDERS["mnist"], sources.cache_dir("mnist"))
    (cache / f"{T10K_LABELS}.gz").unlink()
    with pytest.raises(DatasetError, match=f"{T10K_LABELS}.*is missing.*download=False"):
        locate("mnist", download=False)


@needs_both
@pytest.mark.parametrize(
    ("name", "folder"), [("mnist", "mnist"), ("fashion-mnist", "fashion-mnist")]
)
def test_pooch_registry_equals_the_shared_checksums(name: str, folder: str) -> None:
    sums = (DATA_ROOT / folder / "SHA256SUMS.uncompressed").read_text().split()
    expected = {
        fname: f"sha256:{digest}" for digest, fname in zip(sums[::2], sums[1::2], strict=True)
    }
    assert sorted(expected) == sorted(sources.FILES)
    fetcher = sources.make_pooch(name, "http://127.0.0.1:9/base")
    assert fetcher.registry == expected == sources.registry(name)
    assert fetcher.get_url(sources.FILES[0]) == f"http://127.0.0.1:9/base/{sources.FILES[0]}.gz"
    assert Path(fetcher.path) == sources.cache_dir(name)


def test_cache_dir_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURODFC_CACHE", str(tmp_path / "my-cache"))
    assert sources.cache_dir("fashion-mnist") == tmp_path / "my-cache" / "fashion_mnist"
    assert Path(sources.make_pooch("mnist", "http://x/").path) == tmp_path / "my-cache" / "mnist"
    assert sources.candidate_dirs("mnist")[-1] == tmp_path / "my-cache" / "mnist"


# --------------------------------------------------------------------------- splits


def test_split_indices() -> None:
    train, val = datasets.split_indices(60000, 5000, seed=42)
    assert len(train) == 55000 and len(val) == 5000
    assert torch.cat([train, val]).sort().values.equal(torch.arange(60000))
    assert train.equal(datasets.split_indices(60000, 5000, seed=42)[0])
    assert not val.equal(datasets.split_indices(60000, 5000, seed=43)[1])
    ref = torch.utils.data.random_split(
        torch.utils.data.TensorDataset(torch.arange(60000)),
        [55000, 5000],
        generator=torch.Generator().manual_seed(42),
    )
    assert list(ref[1].indices) == val.tolist()


@needs_mnist
def test_mnist_default_splits() -> None:
    d = load_dataset("mnist", data_dir=DATA_ROOT, download=False)
    assert isinstance(d, DataSplits)
    assert (len(d.train), len(d.val), len(d.test)) == (55000, 5000, 10000)
    assert (d.task, d.n_in, d.n_out, d.name) == ("classification", 784, 10, "mnist")
    assert d.train.x.dtype == torch.float64 and d.train.y.dtype == torch.int64
    assert d.train.x.shape == (55000, 784)
    assert abs(d.train.x.mean().item()) < 0.01 and abs(d.train.x.std().item() - 1) < 0.01
    # val rows are exactly the standardised training images at the split indices
    _, val_idx = datasets.split_indices(60000, 5000, 42)
    raw = read_idx(FOLDERS["mnist"] / "train-images-idx3-ubyte.gz")[val_idx[:50].numpy()]
    expected = (torch.tensor(raw.reshape(50, 784), dtype=torch.float64) / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(d.val.x[:50], expected)


@needs_mnist
def test_split_reproducible_by_seed() -> None:
    kw: dict[str, Any] = {
        "data_dir": DATA_ROOT,
        "download": False,
        "max_train_samples": 200,
        "max_test_samples": 30,
        "val_size": 300,
        "dtype": torch.float32,
    }
    a, b, c = (load_dataset("mnist", seed=s, **kw) for s in (1, 1, 2))
    assert (len(a.train), len(a.val), len(a.test)) == (200, 300, 30)
    assert a.train.x.dtype == torch.float32
    assert a.train.x.equal(b.train.x) and a.val.y.equal(b.val.y)
    assert not a.val.x.equal(c.val.x)
    assert a.test.x.equal(c.test.x)  # test set does not depend on the seed


@needs_both
def test_fashion_and_autoencoder() -> None:
    f = load_dataset(
        "fashion_mnist", data_dir=DATA_ROOT, download=False, max_train_samples=100, val_size=10
    )
    assert f.name == "fashion_mnist" and f.n_out == 10
    assert f.train.x.min() >= 0 and f.train.x.max() <= 1  # x/255, not standardised
    ae = load_dataset(
        "mnist_autoencoder",
        data_dir=DATA_ROOT,
        download=False,
        max_train_samples=50,
        val_size=10,
        max_test_samples=20,
    )
    assert (ae.task, ae.n_in, ae.n_out) == ("regression", 784, 784)
    assert ae.train.y.shape == (50, 784) and ae.train.y.equal(ae.train.x)
    assert ae.train.x.min() < -0.4  # standardised


@needs_mnist
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"val_size": -1}, "val_size"),
        ({"val_size": 60000}, "val_size"),
        ({"max_train_samples": 0}, "max_train_samples"),
        ({"max_test_samples": -5}, "max_test"),
        ({"dtype": torch.int64}, "dtype"),
        ({"hidden": (3,)}, "unexpected arguments"),
        ({"seed": 1.5}, "seed"),
    ],
)
def test_load_dataset_argument_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_dataset("mnist", data_dir=DATA_ROOT, download=False, **kwargs)


def test_load_dataset_unknown_name() -> None:
    with pytest.raises(ValueError, match="name must be one of"):
        load_dataset("cifar10")  # type: ignore[arg-type]


def test_split_validation() -> None:
    with pytest.raises(ValueError, match="rows"):
        Split(torch.zeros(3, 2), torch.zeros(4))
    s = Split(torch.zeros(3, 2), torch.zeros(3))  # float labels: not classification
    with pytest.raises(ValueError, match="inconsistent"):
        DataSplits(s, s, s, "classification", 2, 10, "x")


# --------------------------------------------------------------------------- teacher-student


def test_teacher_student_defaults() -> None:
    before = torch.get_rng_state()
    d = teacher_student()
    assert torch.get_rng_state().equal(before)  # global RNG untouched
    assert (len(d.train), len(d.val), len(d.test)) == (5000, 1000, 1000)
    assert d.train.x.shape == (5000, 15) and d.train.y.shape == (5000, 5)
    assert (d.task, d.n_in, d.n_out, d.name) == ("regression", 15, 5, "teacher_student")
    assert d.train.x.dtype == torch.float64
    assert d.train.x.abs().max() <= 1
    assert d.train.y.std() > 1


def test_teacher_student_determinism_and_dtype() -> None:
    kw: dict[str, Any] = {"n_train": 64, "n_val": 8, "n_test": 16, "hidden": (32, 32)}
    a, b, c = teacher_student(seed=3, **kw), teacher_student(seed=3, **kw), teacher_student(**kw)
    assert a.train.x.equal(b.train.x) and a.test.y.equal(b.test.y)
    assert not a.train.y.equal(c.train.y)
    f32 = teacher_student(seed=3, dtype=torch.float32, **kw)
    assert f32.train.y.dtype == torch.float32
    assert f32.train.y.equal(a.train.y.float())  # float64 math, cast at the end
    linear = teacher_student(n_train=4, n_val=0, n_test=0, hidden=())
    assert len(linear.val) == 0 and linear.train.y.shape == (4, 5)
    with pytest.raises(ValueError, match="gain"):
        teacher_student(gain=0.0)
    with pytest.raises(ValueError, match="n_train"):
        teacher_student(n_train=0)


def test_teacher_student_through_load_dataset() -> None:
    d = load_dataset(
        "teacher_student",
        seed=5,
        val_size=7,
        hidden=(16,),
        n_train=40,
        max_train_samples=30,
        dtype=torch.float32,
    )
    ref = teacher_student(seed=5, n_val=7, hidden=(16,), n_train=40, dtype=torch.float32)
    assert (len(d.train), len(d.val)) == (30, 7)
    assert d.train.y.equal(ref.train.y[:30])
    with pytest.raises(ValueError, match="n_val"):
        load_dataset("teacher_student", val_size=3, n_val=4)


def test_random_inputs() -> None:
    x = random_inputs(1000, 7, seed=1, dtype=torch.float32)
    assert x.shape == (1000, 7) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.99
    assert x.equal(random_inputs(1000, 7, seed=1, dtype=torch.float32))
    assert not x.equal(random_inputs(1000, 7, seed=2, dtype=torch.float32))


def test_cache_dir_respects_xdg(tmp_path: Path) -> None:
    assert sources.cache_dir("fashion-mnist") == tmp_path / "xdg-cache" / "neurodfc" / (
        "fashion_mnist"
    )
