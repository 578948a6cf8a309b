"""Shared fixtures: small datasets written in the real on-disk formats, tiny configs
built from the test config (config/test.yaml)."""

from __future__ import annotations

import copy
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from lrdynamics.config import load_config, schema_defaults

REPO = Path(__file__).resolve().parents[1]
TEST_CONFIG = REPO / "config" / "test.yaml"


def test_config() -> dict:
    """The test config as a raw config (a fresh copy)."""
    return yaml.safe_load(TEST_CONFIG.read_text())


test_config.__test__ = False  # a helper, not a test


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of unsigned bytes: 0, 0, 0x08, ndim, big-endian uint32 dims, payload."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an IDX file (the MNIST format), gzipped if the name ends in .gz."""
    payload = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
    return path


def synthetic_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable 28x28 images: class k has a bright horizontal band at rows 2k..2k+4."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, 28, 28))
    for i, k in enumerate(labels):
        images[i, 2 * k + 2 : 2 * k + 6, :] += 150
    return images.astype(np.uint8), labels.astype(np.uint8)


def write_fake_fashion_mnist(folder: Path, n_train: int = 600, n_test: int = 200) -> Path:
    """Synthetic data in Fashion-MNIST's IDX files, where the workflow looks first."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = synthetic_images(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", y)
    return folder


def cifar_batch(n: int, label_key: str, seed: int, batch_label: str) -> dict:
    rng = np.random.default_rng(seed)
    n_classes = 10 if label_key == "labels" else 100
    batch = {
        "batch_label": batch_label,
        label_key: [int(v) for v in rng.integers(0, n_classes, n)],
        "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        "filenames": [f"image_{seed}_{i}.png" for i in range(n)],
    }
    if label_key == "fine_labels":
        batch["coarse_labels"] = [v // 5 for v in batch[label_key]]
    return batch


def write_cifar_folder(folder: Path, members: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in members.items():
        with open(folder / name, "wb") as f:
            pickle.dump(content, f, protocol=2)
    return folder


def write_cifar_archive(path: Path, folder_name: str, members: dict[str, dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(folder_name)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        tar.addfile(info)
        for name, content in members.items():
            payload = pickle.dumps(content, protocol=2)
            info = tarfile.TarInfo(f"{folder_name}/{name}")
            info.size = len(payload)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(payload))
    return path


def write_fake_cifar10(path: Path, per_batch: int, n_test: int) -> Path:
    """Random images in CIFAR-10's "python version" archive (cifar-10-python.tar.gz): five
    training batches of ``per_batch`` images, a test batch, batches.meta."""
    members = {f"data_batch_{i}": cifar_batch(per_batch, "labels", i, f"training batch {i} of 5") for i in range(1, 6)}
    members["test_batch"] = cifar_batch(n_test, "labels", 99, "testing batch 1 of 1")
    members["batches.meta"] = {"label_names": [f"c10_{i}" for i in range(10)], "num_cases_per_batch": per_batch,
                               "num_vis": 3072}  # fmt: skip
    return write_cifar_archive(path, "cifar-10-batches-py", members)


def write_fake_mnist(folder: Path, n_train: int, n_test: int) -> Path:
    """Synthetic digits in MNIST's four gzipped IDX files (``folder``: <data_dir>/raw/mnist)."""
    for split, n, seed in (("train", n_train, 2), ("t10k", n_test, 3)):
        x, y = synthetic_images(n, seed)
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", y)
    return folder


def schedule_spec(keys: dict) -> dict:
    """A resolved ``schedule`` entry: the schema's defaults with ``keys`` set."""
    return {**schema_defaults({"$ref": "#/$defs/run/properties/schedule"}), **keys}


def tiny_config(data_dir: Path, **experiment) -> dict:
    """A raw config with the test config's dataset and run defaults and one experiment
    ``tiny`` (its keys given here), drawn by training_curves."""
    base = test_config()
    return {
        "device": base["device"],
        "data_dir": str(data_dir),
        "datasets": base["datasets"],
        "run_defaults": base["run_defaults"],
        "experiments": {"tiny": experiment},
        "figures": {"training_curves": {"experiment": "tiny"}},
    }


def resolve(config: dict) -> dict:
    return load_config(copy.deepcopy(config))


@pytest.fixture(scope="session")
def synth_data_dir(tmp_path_factory) -> Path:
    """A data dir with synthetic Fashion-MNIST-format raw files, prepared as 'synth'."""
    from lrdynamics.engine.data import prepare_dataset

    data_dir = tmp_path_factory.mktemp("data")
    write_fake_fashion_mnist(data_dir / "raw" / "fashion_mnist")
    spec = resolve(tiny_config(data_dir))["datasets"]["synth"]
    prepare_dataset(spec, data_dir, data_dir / "synth")
    return data_dir
