"""Unit tests for lrdynamics.engine.data (raw formats, preparation, loading) and the batch
augmentation of lrdynamics.engine.batches."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cifar_batch, idx_bytes, write_cifar_archive, write_cifar_folder, write_idx
from lrdynamics.engine import batches, data
from lrdynamics.engine.data import DatasetError

DEBIAN_TRAIN_IMAGES = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


# --- helpers: writing the published formats -------------------------------------------


# The four IDX files of MNIST and Fashion-MNIST, as published (names of the .gz downloads).
IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
CLASSES = {
    "mnist": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
    "fashion_mnist": [
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ],
}  # fmt: skip
IDX_SOURCES = ["fashion_mnist", "mnist"]
# where torchvision's MNIST/FashionMNIST(root=<data_dir>/raw, download=True) put the files
TORCHVISION_FOLDER = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST"}


def make_idx_dataset(folder: Path, n_train: int = 50, n_test: int = 20, seed: int = 0, gz: bool = True) -> dict:
    """Write the four IDX files of MNIST/Fashion-MNIST into ``folder``; return the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train": (
            rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            (np.arange(n_train) % 10).astype(np.uint8),
        ),
        "test": (
            rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            ((np.arange(n_test) * 3) % 10).astype(np.uint8),
        ),
    }
    suffix = ".gz" if gz else ""
    for split, (images_stem, labels_stem) in IDX_NAMES.items():
        x, y = arrays[split]
        write_idx(folder / (images_stem + suffix), x)
        write_idx(folder / (labels_stem + suffix), y)
    return arrays


def cifar_members(source: str) -> dict[str, dict]:
    """Pickled-dict contents of the CIFAR "python version", keyed by member name."""
    if source == "cifar10":
        members = {f"data_batch_{i}": cifar_batch(4, "labels", i, f"training batch {i} of 5") for i in range(1, 6)}
        members["test_batch"] = cifar_batch(3, "labels", 99, "testing batch 1 of 1")
        # image 0 of the first training batch: R plane all 7s, G plane a row-major ramp, B all 200s
        members["data_batch_1"]["data"][0] = np.concatenate(
            [np.full(1024, 7), np.arange(1024) % 251, np.full(1024, 200)]
        ).astype(np.uint8)
        members["batches.meta"] = {
            "label_names": [f"c10_{i}" for i in range(10)],
            "num_cases_per_batch": 4,
            "num_vis": 3072,
        }
    else:
        members = {
            "train": cifar_batch(12, "fine_labels", 1, "training batch 1 of 1"),
            "test": cifar_batch(5, "fine_labels", 2, "testing batch 1 of 1"),
            "meta": {
                "fine_label_names": [f"c100_{i}" for i in range(100)],
                "coarse_label_names": [f"super_{i}" for i in range(20)],
            },
        }
        members["train"]["data"][0, :1024] = 7
    return members


def expected_cifar(source: str, members: dict[str, dict]):
    if source == "cifar10":
        train, test, label_key = [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"
        classes = members["batches.meta"]["label_names"]
    else:
        train, test, label_key = ["train"], ["test"], "fine_labels"
        classes = members["meta"]["fine_label_names"]

    def split(names):
        x = np.concatenate([members[m]["data"] for m in names]).reshape(-1, 3, 32, 32)
        y = np.concatenate([np.asarray(members[m][label_key], dtype=np.int64) for m in names])
        return x, y

    return split(train), split(test), classes


def spec(source: str, **kw) -> dict:
    base = {
        "source": source,
        "train_subset": None,
        "test_subset": None,
        "subset_seed": 0,
        "resize": None,
        "download": False,
    }
    base.update(kw)
    return base


@pytest.fixture
def no_debian(monkeypatch, tmp_path):
    """Point the Debian Fashion-MNIST location at a path that does not exist."""
    missing = tmp_path / "no-such-debian-dir" / "fashion-mnist"
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", missing)
    return missing


# --- read_idx ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["images-idx3-ubyte", "images-idx3-ubyte.gz"])
def test_read_idx_roundtrip(tmp_path, name):
    array = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    path = write_idx(tmp_path / name, array)
    out = data.read_idx(path)
    assert out.dtype == np.uint8
    assert out.shape == (7, 5, 3)
    np.testing.assert_array_equal(out, array)
    np.testing.assert_array_equal(data.read_idx(str(path)), array)  # a str path works too


def test_read_idx_one_dimensional(tmp_path):
    labels = np.array([3, 1, 4, 1, 5, 9, 2, 6], dtype=np.uint8)
    out = data.read_idx(write_idx(tmp_path / "labels-idx1-ubyte.gz", labels))
    assert out.shape == (8,)
    np.testing.assert_array_equal(out, labels)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated_payload(tmp_path, gz):
    payload = idx_bytes(np.zeros((4, 6, 6), dtype=np.uint8))[:-10]
    path = tmp_path / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte")
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    with pytest.raises(DatasetError, match="truncated"):
        data.read_idx(path)


def test_read_idx_extra_bytes_rejected(tmp_path):
    path = tmp_path / "x-idx1-ubyte"
    path.write_bytes(idx_bytes(np.arange(5, dtype=np.uint8)) + b"\x00\x01")
    with pytest.raises(DatasetError):
        data.read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    # The header promises three dimensions but the file ends inside the first one.
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3, 0, 0]))
    with pytest.raises(DatasetError):
        data.read_idx(path)


def test_read_idx_truncated_gzip_stream(tmp_path):
    # A download cut short: the gzip stream itself ends early.
    full = tmp_path / "full-idx3-ubyte.gz"
    write_idx(full, np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8))
    cut = tmp_path / "cut-idx3-ubyte.gz"
    raw = full.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError):
        data.read_idx(cut)


@pytest.mark.parametrize(
    "content",
    [
        b"hello, this is not an IDX file\n",
        bytes([0, 0, 0x0D, 1, 0, 0, 0, 1, 0, 0, 0, 0]),  # IDX of float32, not unsigned bytes
        b"",
        b"\x00\x00",
    ],
)
def test_read_idx_not_idx(tmp_path, content):
    path = tmp_path / "not-idx"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match="not an IDX"):
        data.read_idx(path)


def test_read_idx_gz_name_not_gzip(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(b"<html>404 not found</html>")  # an error page saved under the file's name
    with pytest.raises(DatasetError):
        data.read_idx(path)


def test_read_idx_gzipped_non_idx(tmp_path):
    path = tmp_path / "text.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"<html>404 not found</html>")
    with pytest.raises(DatasetError, match="not an IDX"):
        data.read_idx(path)


# --- MNIST and Fashion-MNIST (the same IDX files) ------------------------------------------


@pytest.mark.parametrize("source", IDX_SOURCES)
@pytest.mark.parametrize("gz", [True, False])
def test_read_raw_idx_dataset(tmp_path, no_debian, source, gz):
    written = make_idx_dataset(tmp_path / "raw" / source, gz=gz)
    raw = data.read_raw(source, tmp_path)
    assert raw["classes"] == CLASSES[source]
    for split in ("train", "test"):
        x, y = raw[split]
        assert x.shape == (len(written[split][0]), 1, 28, 28)
        assert x.dtype == np.uint8
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x[:, 0], written[split][0])
        np.testing.assert_array_equal(y, written[split][1])


@pytest.mark.parametrize("source", IDX_SOURCES)
def test_read_raw_idx_dataset_torchvision_layout(tmp_path, no_debian, source):
    # torchvision's download lands in raw/<Class>/raw; that is the second location searched.
    written = make_idx_dataset(tmp_path / "raw" / TORCHVISION_FOLDER[source] / "raw", n_train=10, n_test=10)
    raw = data.read_raw(source, tmp_path)
    np.testing.assert_array_equal(raw["train"][0][:, 0], written["train"][0])
    assert raw["classes"] == CLASSES[source]


@pytest.mark.parametrize("source", IDX_SOURCES)
def test_read_raw_idx_dataset_incomplete_folder_not_used(tmp_path, no_debian, source):
    folder = tmp_path / "raw" / source
    make_idx_dataset(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="not found"):
        data.read_raw(source, tmp_path)


@pytest.mark.parametrize(("wanted", "other"), [("mnist", "fashion_mnist"), ("fashion_mnist", "mnist")])
def test_idx_sources_do_not_read_each_others_files(tmp_path, no_debian, wanted, other):
    # Same file names, different datasets: MNIST is never read from Fashion-MNIST's folders.
    make_idx_dataset(tmp_path / "raw" / other)
    make_idx_dataset(tmp_path / "raw" / TORCHVISION_FOLDER[other] / "raw")
    with pytest.raises(DatasetError, match=f"dataset '{wanted}' not found"):
        data.read_raw(wanted, tmp_path)


@pytest.mark.parametrize("source", IDX_SOURCES)
def test_prepare_idx_dataset(tmp_path, no_debian, source):
    written = make_idx_dataset(tmp_path / "raw" / source, n_train=50, n_test=20)
    out = tmp_path / "out"
    summary = data.prepare_dataset(spec(source), tmp_path, out)
    assert summary["train"]["n"] == 50 and summary["test"]["n"] == 20
    assert summary["train"]["shape"] == [1, 28, 28]

    train_x = written["train"][0].astype(np.float64) / 255.0
    for split, n in (("train", 50), ("test", 20)):
        rec = data.load_prepared(out / f"{split}.pt")
        assert rec["split"] == split
        assert rec["images"].dtype == torch.uint8
        assert tuple(rec["images"].shape) == (n, 1, 28, 28)
        np.testing.assert_array_equal(rec["images"][:, 0].numpy(), written[split][0])
        assert rec["labels"].dtype == torch.int64
        np.testing.assert_array_equal(rec["labels"].numpy(), written[split][1].astype(np.int64))
        assert rec["classes"] == CLASSES[source]
        assert isinstance(rec["sha256"], str) and len(rec["sha256"]) == 64
        assert rec["sha256"] == summary[split]["sha256"]
        assert rec["sha256"] == data.checksum(rec["images"], rec["labels"])
        # mean/std are those of the *training* images, in both splits
        assert isinstance(rec["mean"], list) and len(rec["mean"]) == 1
        assert isinstance(rec["std"], list) and len(rec["std"]) == 1
        assert rec["mean"][0] == pytest.approx(train_x.mean(), rel=1e-9)
        assert rec["std"][0] == pytest.approx(train_x.std(ddof=1), rel=1e-9)
        assert rec["spec"]["source"] == source
    assert not list(out.glob(".*tmp*")), "temporary files left behind"


@pytest.mark.parametrize("source", IDX_SOURCES)
def test_download_uses_torchvision_class_and_layout(tmp_path, no_debian, monkeypatch, source):
    """download: true asks torchvision's own class for both splits, then reads its folder."""
    torchvision_datasets = pytest.importorskip("torchvision.datasets")
    calls = []
    written = {}

    class FakeDownload:  # stands in for torchvision.datasets.MNIST / FashionMNIST (no network)
        def __init__(self, root, train, download):
            calls.append((Path(root), train, download))
            folder = Path(root) / TORCHVISION_FOLDER[source] / "raw"
            if not written:
                written.update(make_idx_dataset(folder, n_train=12, n_test=6, gz=False))

    monkeypatch.setattr(torchvision_datasets, TORCHVISION_FOLDER[source], FakeDownload)
    raw = data.read_raw(source, tmp_path, download=True)
    assert calls == [(tmp_path / "raw", True, True), (tmp_path / "raw", False, True)]
    np.testing.assert_array_equal(raw["test"][0][:, 0], written["test"][0])
    assert raw["classes"] == CLASSES[source]


# --- CIFAR ----------------------------------------------------------------------------------


def check_cifar(raw: dict, source: str, members: dict) -> None:
    (train_x, train_y), (test_x, test_y), classes = expected_cifar(source, members)
    assert raw["classes"] == list(classes)
    for split, (ex, ey) in (("train", (train_x, train_y)), ("test", (test_x, test_y))):
        x, y = raw[split]
        assert x.shape == ex.shape and x.shape[1:] == (3, 32, 32)
        assert x.dtype == np.uint8
        assert y.dtype == np.int64
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)
    assert (raw["train"][0][0, 0] == 7).all()  # R plane of image 0


@pytest.mark.parametrize("where", ["archive_in_data_dir", "archive_in_raw", "folder_in_raw", "folder_in_data_dir"])
def test_read_raw_cifar10(tmp_path, where):
    members = cifar_members("cifar10")
    if where == "archive_in_data_dir":
        write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    elif where == "archive_in_raw":
        write_cifar_archive(tmp_path / "raw" / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    elif where == "folder_in_raw":
        write_cifar_folder(tmp_path / "raw" / "cifar-10-batches-py", members)
    else:
        write_cifar_folder(tmp_path / "cifar-10-batches-py", members)
    raw = data.read_raw("cifar10", tmp_path)
    check_cifar(raw, "cifar10", members)
    x = raw["train"][0]
    assert x.shape == (20, 3, 32, 32) and raw["test"][0].shape == (3, 3, 32, 32)
    # channel planes are row-major 32x32: G of image 0 is the ramp 0, 1, 2, ... along each row
    np.testing.assert_array_equal(x[0, 1], (np.arange(1024) % 251).reshape(32, 32))
    assert x[0, 1, 0, 1] == 1 and x[0, 1, 1, 0] == 32
    assert (x[0, 2] == 200).all()


def test_read_cifar_folder_and_archive_agree(tmp_path):
    members = cifar_members("cifar10")
    folder = write_cifar_folder(tmp_path / "a" / "cifar-10-batches-py", members)
    archive = write_cifar_archive(tmp_path / "b" / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    a, b = data.read_cifar(folder, "cifar10"), data.read_cifar(archive, "cifar10")
    for split in ("train", "test"):
        np.testing.assert_array_equal(a[split][0], b[split][0])
        np.testing.assert_array_equal(a[split][1], b[split][1])
    assert a["classes"] == b["classes"]


def test_prepare_cifar10_from_archive(tmp_path):
    members = cifar_members("cifar10")
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    out = tmp_path / "out"
    data.prepare_dataset(spec("cifar10"), tmp_path, out)
    (train_x, train_y), (test_x, test_y), classes = expected_cifar("cifar10", members)
    rec = data.load_prepared(out / "train.pt")
    assert tuple(rec["images"].shape) == (20, 3, 32, 32) and rec["images"].dtype == torch.uint8
    np.testing.assert_array_equal(rec["images"].numpy(), train_x)
    np.testing.assert_array_equal(rec["labels"].numpy(), train_y)
    assert rec["classes"] == classes
    assert (rec["images"][0, 0] == 7).all()
    x = train_x.astype(np.float64) / 255.0
    np.testing.assert_allclose(rec["mean"], x.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(rec["std"], x.std(axis=(0, 2, 3), ddof=1), rtol=1e-9)
    test = data.load_prepared(out / "test.pt")
    np.testing.assert_array_equal(test["labels"].numpy(), test_y)
    assert test["mean"] == rec["mean"] and test["std"] == rec["std"]


@pytest.mark.parametrize("form", ["folder", "archive"])
def test_read_raw_cifar100(tmp_path, form):
    members = cifar_members("cifar100")
    if form == "folder":
        write_cifar_folder(tmp_path / "raw" / "cifar-100-python", members)
    else:
        write_cifar_archive(tmp_path / "cifar-100-python.tar.gz", "cifar-100-python", members)
    raw = data.read_raw("cifar100", tmp_path)
    check_cifar(raw, "cifar100", members)
    assert len(raw["classes"]) == 100 and raw["classes"][42] == "c100_42"
    assert raw["train"][0].shape == (12, 3, 32, 32) and raw["test"][0].shape == (5, 3, 32, 32)
    np.testing.assert_array_equal(raw["train"][1], members["train"]["fine_labels"])  # fine, not coarse


def test_read_cifar_folder_missing_member(tmp_path):
    members = cifar_members("cifar10")
    del members["data_batch_3"]
    folder = write_cifar_folder(tmp_path / "cifar-10-batches-py", members)
    with pytest.raises(DatasetError, match="cifar10"):
        data.read_cifar(folder, "cifar10")


def test_read_cifar_archive_missing_member(tmp_path):
    members = cifar_members("cifar10")
    del members["batches.meta"]
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", members)
    with pytest.raises(DatasetError):
        data.read_cifar(archive, "cifar10")


def test_read_cifar_truncated_archive(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py", cifar_members("cifar10"))
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError):
        data.read_cifar(archive, "cifar10")


def test_read_cifar_archive_not_gzip(tmp_path):
    # e.g. an HTML error page saved under the archive's name
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(b"<html><body>403 Forbidden</body></html>\n")
    with pytest.raises(DatasetError):
        data.read_cifar(archive, "cifar10")


# --- missing datasets ----------------------------------------------------------------------


@pytest.mark.parametrize("source", ["fashion_mnist", "mnist", "cifar10", "cifar100"])
def test_missing_dataset_message(tmp_path, no_debian, source):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    locations = data.raw_locations(source, data_dir)
    assert len(locations) >= (2 if source == "mnist" else 3)
    if source == "fashion_mnist":
        assert no_debian in locations
    for call in (
        lambda: data.read_raw(source, data_dir, download=False),
        lambda: data.prepare_dataset(spec(source), data_dir, tmp_path / "out"),
    ):
        with pytest.raises(DatasetError) as info:
            call()
        message = str(info.value)
        assert source in message
        for location in locations:
            assert str(location) in message
        assert "download: true" in message
        if source in IDX_SOURCES:
            for stem in (name for pair in IDX_NAMES.values() for name in pair):
                assert stem in message
            assert str(data_dir / "raw" / source) in message
            assert ("apt-get install dataset-fashion-mnist" in message) == (source == "fashion_mnist")
        else:
            folder, archive = data.CIFAR[source][:2]
            assert archive in message
            assert folder in message
    assert not (tmp_path / "out" / "train.pt").exists()


def test_sources_are_declared_once_and_offered_by_the_schema():
    from lrdynamics.config import load_schema
    from lrdynamics.engine.facts import DATASET_SOURCES

    mnist = DATASET_SOURCES["mnist"]
    assert (mnist.n_train, mnist.n_test, mnist.channels, mnist.side, mnist.classes) == (60000, 10000, 1, 28, 10)
    assert load_schema()["$defs"]["dataset"]["properties"]["source"]["enum"] == list(DATASET_SOURCES)
    assert set(data.TORCHVISION_CLASS) == set(DATASET_SOURCES)  # every source can be downloaded


def test_raw_locations_order(tmp_path):
    assert data.raw_locations("cifar10", tmp_path) == [
        tmp_path / "raw" / "cifar-10-batches-py",
        tmp_path / "cifar-10-batches-py",
        tmp_path / "raw" / "cifar-10-python.tar.gz",
        tmp_path / "cifar-10-python.tar.gz",
    ]
    assert data.raw_locations("fashion_mnist", tmp_path)[:2] == [
        tmp_path / "raw" / "fashion_mnist",
        tmp_path / "raw" / "FashionMNIST" / "raw",
    ]
    # no Debian package of MNIST: only our folder and torchvision's
    assert data.raw_locations("mnist", tmp_path) == [tmp_path / "raw" / "mnist", tmp_path / "raw" / "MNIST" / "raw"]


# --- stratified_subset ------------------------------------------------------------------------


def imbalanced_labels(seed: int = 0) -> np.ndarray:
    counts = [100, 50, 30, 13, 7]
    labels = np.concatenate([np.full(c, k) for k, c in enumerate(counts)])
    return np.random.default_rng(seed).permutation(labels)


@pytest.mark.parametrize("n", [1, 7, 40, 77, 123, 199, 200])
def test_stratified_subset_size_and_proportions(n):
    labels = imbalanced_labels()
    idx = data.stratified_subset(labels, n, seed=3)
    assert len(idx) == n
    assert np.all(np.diff(idx) > 0), "indices must be sorted and unique"
    assert idx.min() >= 0 and idx.max() < len(labels)
    classes, counts = np.unique(labels, return_counts=True)
    picked = np.bincount(labels[idx], minlength=len(classes))
    for c, count in zip(classes, counts):
        share = count / len(labels)
        assert abs(picked[c] - n * share) <= 1, (c, picked[c], n * share)
        assert picked[c] <= count


def test_stratified_subset_balanced_exact():
    labels = np.repeat(np.arange(10), 20)
    idx = data.stratified_subset(labels, 50, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=10), np.full(10, 5))


def test_stratified_subset_remainder_goes_to_largest_fraction():
    # shares 0.5, 0.3, 0.2; n=5 -> exact 2.5, 1.5, 1.0 -> floors 2, 1, 1 and one left over,
    # tie between the fractional parts 0.5 and 0.5 goes to the smaller label.
    labels = np.array([0] * 10 + [1] * 6 + [2] * 4)
    idx = data.stratified_subset(labels, 5, seed=0)
    np.testing.assert_array_equal(np.bincount(labels[idx], minlength=3), [3, 1, 1])


def test_stratified_subset_deterministic():
    labels = imbalanced_labels()
    a = data.stratified_subset(labels, 60, seed=11)
    b = data.stratified_subset(labels.copy(), 60, seed=11)
    np.testing.assert_array_equal(a, b)
    c = data.stratified_subset(labels, 60, seed=12)
    assert not np.array_equal(a, c)
    np.testing.assert_array_equal(np.bincount(labels[a]), np.bincount(labels[c]))  # same class counts


def test_stratified_subset_full_and_too_large():
    labels = imbalanced_labels()
    np.testing.assert_array_equal(data.stratified_subset(labels, len(labels), seed=0), np.arange(len(labels)))
    with pytest.raises(DatasetError):
        data.stratified_subset(labels, len(labels) + 1, seed=0)


# --- subset and resize through prepare_dataset -----------------------------------------------


def test_prepare_subset(tmp_path, no_debian):
    written = make_idx_dataset(tmp_path / "raw" / "fashion_mnist", n_train=50, n_test=20)
    out = tmp_path / "out"
    summary = data.prepare_dataset(spec("fashion_mnist", train_subset=30, test_subset=10, subset_seed=5), tmp_path, out)
    assert summary["train"]["n"] == 30 and summary["test"]["n"] == 10
    train = data.load_prepared(out / "train.pt")
    assert tuple(train["images"].shape) == (30, 1, 28, 28)
    # labels are 0..9 five times each: the subset keeps 3 of each class
    np.testing.assert_array_equal(np.bincount(train["labels"].numpy(), minlength=10), np.full(10, 3))
    # each picked image/label pair is the one written at the subset's index
    idx = data.stratified_subset(written["train"][1].astype(np.int64), 30, seed=5)
    np.testing.assert_array_equal(train["images"][:, 0].numpy(), written["train"][0][idx])
    np.testing.assert_array_equal(train["labels"].numpy(), written["train"][1][idx])
    x = written["train"][0][idx].astype(np.float64) / 255.0
    assert train["mean"][0] == pytest.approx(x.mean(), rel=1e-9)  # stats of the subset actually used
    assert train["std"][0] == pytest.approx(x.std(ddof=1), rel=1e-9)
    test = data.load_prepared(out / "test.pt")
    assert tuple(test["images"].shape) == (10, 1, 28, 28)


def test_prepare_resize(tmp_path, no_debian):
    folder = tmp_path / "raw" / "fashion_mnist"
    written = make_idx_dataset(folder, n_train=20, n_test=10)
    images = written["train"][0].copy()
    images[0] = 123  # a constant image
    write_idx(folder / "train-images-idx3-ubyte.gz", images)
    out = tmp_path / "out"
    summary = data.prepare_dataset(spec("fashion_mnist", resize=32), tmp_path, out)
    assert summary["train"]["shape"] == [1, 32, 32]
    train = data.load_prepared(out / "train.pt")
    assert tuple(train["images"].shape) == (20, 1, 32, 32)
    assert train["images"].dtype == torch.uint8
    assert (train["images"][0] == 123).all()
    assert not (train["images"][1] == train["images"][1, 0, 0, 0]).all()
    test = data.load_prepared(out / "test.pt")
    assert tuple(test["images"].shape) == (10, 1, 32, 32)
    np.testing.assert_array_equal(train["labels"].numpy(), written["train"][1])


def test_resize_images_properties():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 3, 28, 28), dtype=np.uint8)
    images[1, 2] = 0
    images[2, 0] = 255
    np.testing.assert_array_equal(data.resize_images(images, 28), images)  # same size: unchanged
    for side in (14, 20, 56):
        out = data.resize_images(images, side)
        assert out.shape == (3, 3, side, side) and out.dtype == np.uint8
        assert (out[1, 2] == 0).all() and (out[2, 0] == 255).all()
        # bilinear weights are a convex combination: no value leaves the input's range
        assert out[0].min() >= images[0].min() and out[0].max() <= images[0].max()
    assert abs(data.resize_images(images, 56).astype(float).mean() - images.mean()) < 1.0
    # geometry is kept: left half black, right half white, top-left pixel marked
    edge = np.zeros((1, 1, 28, 28), dtype=np.uint8)
    edge[..., 14:] = 255
    small = data.resize_images(edge, 14)
    assert (small[..., :6] == 0).all() and (small[..., 8:] == 255).all()
    tall = np.zeros((1, 1, 28, 28), dtype=np.uint8)
    tall[..., 14:, :] = 255
    small = data.resize_images(tall, 14)
    assert (small[..., :6, :] == 0).all() and (small[..., 8:, :] == 255).all()


# --- load_prepared ---------------------------------------------------------------------------


@pytest.fixture
def prepared(tmp_path, no_debian):
    make_idx_dataset(tmp_path / "raw" / "fashion_mnist", n_train=20, n_test=10)
    out = tmp_path / "out"
    data.prepare_dataset(spec("fashion_mnist"), tmp_path, out)
    return out


def _flip_label(record):
    record["labels"][0] = (record["labels"][0] + 1) % 10  # the stored sha256 stays the old one


def _flip_pixel_bit(record):
    record["images"][3, 0, 5, 5] ^= 1


def _drop_checksum(record):
    del record["sha256"]


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("corrupt", [_flip_label, _flip_pixel_bit, _drop_checksum])
def test_load_prepared_detects_corruption(prepared, split, corrupt):
    path = prepared / f"{split}.pt"
    record = torch.load(path, weights_only=True)
    corrupt(record)
    torch.save(record, path)
    with pytest.raises(DatasetError, match="checksum"):
        data.load_prepared(path)


def test_load_prepared_truncated(prepared):
    path = prepared / "train.pt"
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DatasetError, match=str(path).replace("\\", "\\\\")):
        data.load_prepared(path)


def test_load_prepared_garbage(prepared):
    path = prepared / "train.pt"
    path.write_bytes(b"not a torch file at all")
    with pytest.raises(DatasetError):
        data.load_prepared(path)


def test_load_prepared_missing(tmp_path):
    with pytest.raises(DatasetError, match="missing"):
        data.load_prepared(tmp_path / "nope" / "train.pt")
    (tmp_path / "a_dir.pt").mkdir()
    with pytest.raises(DatasetError):
        data.load_prepared(tmp_path / "a_dir.pt")


def test_load_prepared_intact(prepared):
    rec = data.load_prepared(str(prepared / "test.pt"))  # str path accepted
    assert rec["sha256"] == data.checksum(rec["images"], rec["labels"])


# --- augment ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("hp", "wp", "size"), [(40, 40, 32), (12, 15, 9)])
def test_random_crop_matches_reference(hp, wp, size):
    n, c = 64, 3
    padded = torch.randint(0, 256, (n, c, hp, wp), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    out = batches.random_crop(padded, size, torch.Generator().manual_seed(1234))
    assert out.shape == (n, c, size, size)
    assert out.dtype == padded.dtype

    g = torch.Generator().manual_seed(1234)
    dy = torch.randint(0, hp - size + 1, (n,), generator=g)
    dx = torch.randint(0, wp - size + 1, (n,), generator=g)
    assert len(set(dy.tolist())) > 1 and len(set(dx.tolist())) > 1  # the offsets really vary
    expected = torch.stack([padded[i, :, dy[i] : dy[i] + size, dx[i] : dx[i] + size] for i in range(n)])
    assert torch.equal(out, expected)


def test_random_crop_float_and_determinism():
    padded = torch.randn(16, 1, 10, 10, generator=torch.Generator().manual_seed(3))
    a = batches.random_crop(padded, 6, torch.Generator().manual_seed(7))
    b = batches.random_crop(padded, 6, torch.Generator().manual_seed(7))
    c = batches.random_crop(padded, 6, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # every crop is a window of its own image
    for i in range(16):
        windows = padded[i, 0].unfold(0, 6, 1).unfold(1, 6, 1).reshape(-1, 6, 6)
        assert any(torch.equal(a[i, 0], w) for w in windows)


def test_random_crop_no_padding_is_identity():
    images = torch.rand(8, 3, 16, 16)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(batches.random_crop(images, 16, g), images)


def test_random_crop_consumes_generator():
    # two calls on one generator give different crops (the generator state advances)
    padded = torch.arange(2 * 1 * 20 * 20, dtype=torch.float32).reshape(2, 1, 20, 20).repeat(50, 1, 1, 1)
    g = torch.Generator().manual_seed(0)
    assert not torch.equal(batches.random_crop(padded, 8, g), batches.random_crop(padded, 8, g))


def test_random_flip():
    n = 2000
    images = torch.randint(0, 256, (n, 2, 5, 6), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    mirrored = images.flip(3)
    asymmetric = (images != mirrored).flatten(1).any(1)
    assert asymmetric.all()
    out = batches.random_flip(images, torch.Generator().manual_seed(42))
    assert out.shape == images.shape and out.dtype == images.dtype
    same = (out == images).flatten(1).all(1)
    flipped = (out == mirrored).flatten(1).all(1)
    assert (same | flipped).all(), "each image is either unchanged or mirrored left-right"
    assert not (same & flipped).any()
    assert 0.45 <= flipped.float().mean().item() <= 0.55
    again = batches.random_flip(images, torch.Generator().manual_seed(42))
    assert torch.equal(out, again)
    # the flip is left-right (last axis), never up-down
    assert not (out == images.flip(2)).flatten(1).all(1).any()


# --- the real Fashion-MNIST from Debian's package ----------------------------------------------


@pytest.mark.skipif(not DEBIAN_TRAIN_IMAGES.is_file(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist_debian(tmp_path):
    raw = data.read_raw("fashion_mnist", tmp_path / "empty")
    x, y = raw["train"]
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y, minlength=10), np.full(10, 6000))
    xt, yt = raw["test"]
    assert xt.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(yt, minlength=10), np.full(10, 1000))
    assert raw["classes"] == CLASSES["fashion_mnist"]
    assert 0.25 < x.mean() / 255 < 0.32  # Fashion-MNIST's well-known mean is about 0.286
