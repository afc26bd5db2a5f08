"""The paper-scale sweep tasks (issue 24): each dataset written small in its real on-disk format
(idx files, CIFAR-10 python batches as Python 2 wrote them, ImageFolder PNGs/JPEGs, image + mask
pairs, VOC's layout), read back, refused when hostile or truncated, and every task trained end to
end for one or two epochs on the CPU (VGG16 and ResNet-50 at 32×32 pixels, 4 images)."""

from __future__ import annotations

import gzip
import json
import os
import pickle
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hostile import run
from PIL import Image
from torch import nn

from entropyflow import analyze
from entropyflow.errors import InputUnreadableError, OptionError, UnsafePickleError
from entropyflow.report import analysis_json
from entropyflow.sweep import datasets, paper_tasks
from entropyflow.sweep.runner import SweepRequest, pilot, task_spec
from entropyflow.sweep.spec import Cell, Rule
from entropyflow.sweep.tasks import TASKS

RNG = np.random.default_rng(7)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core machine two threads spin-wait for each other (measured 30× slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def collect(train, config):
    rows = []
    train(config, lambda *, epoch, **m: rows.append((epoch, m)))
    return rows


def trial(name, params, lam=0.0, placement="first", seed=0, epochs=1):
    """A trial config as the sweep builds it: the baseline, or ``placement`` (a rule) at ``lam``."""
    if placement is None:
        cell = Cell("baseline", 0.0, None, None)
    else:
        cell = Cell(f"{placement} λ={lam:g}", lam, placement, None, Rule(placement, 2))
    return cell.trial_config(seed, epochs, params)


# --- the formats, written as the real files are ------------------------------------------------------


def write_idx(path, array, gz=False):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", 40), ("t10k", 12)):
        images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = RNG.integers(0, 10, n, dtype=np.uint8)
        write_idx(raw / f"{split}-images-idx3-ubyte", images, gz=split == "train")  # torchvision keeps both forms
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
        arrays[split] = (images, labels)
    return root, arrays


class _Python2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles as the real CIFAR-10 batches were written (Python 2's cPickle, protocol 2, numpy 1):
    strings as BINSTRING opcodes, numpy's reconstructor as ``numpy.core.multiarray``."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_bytes(self, obj):
        n = len(obj)
        op = pickle.SHORT_BINSTRING + bytes([n]) if n < 256 else pickle.BINSTRING + struct.pack("<i", n)
        self.write(op + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes

    def save_global(self, obj, name=None):
        if getattr(obj, "__name__", "") == "_reconstruct":
            self.write(pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def python2_pickle(obj, path):
    with open(path, "wb") as f:
        _Python2Pickler(f, protocol=2).dump(obj)


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = RNG.integers(0, 256, (8, 3072), dtype=np.uint8)
        labels = [int(v) for v in RNG.integers(0, 10, 8)]
        doc = {
            b"batch_label": f"{name} of 6".encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [f"img_{k}.png".encode() for k in range(8)],
        }
        python2_pickle(doc, folder / name)
        written[name] = (data, labels)
    return root, written


def png(path, size=(40, 48), mode="RGB", array=None):
    if array is None:
        shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
        array = RNG.integers(0, 256, shape, dtype=np.uint8)
    Image.fromarray(array, mode=None if mode != "P" else "P").save(path)


@pytest.fixture(scope="module")
def imagenette_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenette")
    for split, n in (("train", 4), ("val", 2)):
        for cls in ("n01440764", "n02102040"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for k in range(n):
                png(folder / f"{cls}_{k}.png", size=(40 + 4 * k, 36))
            Image.fromarray(RNG.integers(0, 256, (30, 50, 3), dtype=np.uint8)).save(folder / f"{cls}_j.JPEG")
    return root


@pytest.fixture(scope="module")
def masks_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for k in range(12):
        png(root / "images" / f"im{k:02d}.jpg" if k % 2 else root / "images" / f"im{k:02d}.png", size=(48, 40))
        mask = np.zeros((40, 48), np.uint8)
        mask[8 + k : 24 + k, 10:30] = 1 + k % 3
        png(root / "masks" / f"im{k:02d}.png", array=mask, mode="L")
    png(root / "images" / "orphan.png")  # an image without a mask is not used
    return root


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("voc")
    voc = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    ids = [f"2007_{k:06d}" for k in range(6)]
    for k, stem in enumerate(ids):
        Image.fromarray(RNG.integers(0, 256, (32, 40, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{stem}.jpg")
        mask = np.zeros((32, 40), np.uint8)
        mask[4:20, 5 + k : 25 + k] = 15  # a person
        mask[3, :] = 255  # VOC's void boundary
        img = Image.fromarray(mask, mode="L").convert("P")
        img.putpalette([v for i in range(256) for v in (i, i, i)])
        img.save(voc / "SegmentationClass" / f"{stem}.png")
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:4]) + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    return root


# --- readers ------------------------------------------------------------------------------------------


def test_mnist_idx_files_read_back(mnist_root):
    root, arrays = mnist_root
    xtr, ytr, xte, yte = datasets.mnist(root)
    assert xtr.dtype == torch.uint8 and xtr.shape == (40, 28, 28) and xte.shape == (12, 28, 28)
    assert np.array_equal(xtr.numpy(), arrays["train"][0]) and np.array_equal(ytr.numpy(), arrays["train"][1])
    assert np.array_equal(xte.numpy(), arrays["t10k"][0]) and np.array_equal(yte.numpy(), arrays["t10k"][1])


def test_a_truncated_or_foreign_idx_file_is_one_line(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte"
    write_idx(path, RNG.integers(0, 256, (10, 28, 28), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-100])  # the header says 7840 bytes of data
    with pytest.raises(InputUnreadableError) as exc:
        datasets.read_idx(path, 3)
    assert "7,840 bytes of data, the file has 7,740" in str(exc.value) and "\n" not in str(exc.value)
    path.write_bytes(b"\x00\x00\x0d\x03" + bytes(12))  # float idx: not the unsigned bytes MNIST holds
    with pytest.raises(InputUnreadableError, match="magic 0x00000d03, expected 0x00000803"):
        datasets.read_idx(path, 3)
    # a header claiming 4 × 10⁹ bytes in a 16-byte file is refused from its length, before any allocation
    path.write_bytes(struct.pack(">HBBIII", 0, 8, 3, 4_000_000, 1000, 1000))
    with pytest.raises(InputUnreadableError, match="truncated"):
        datasets.read_idx(path, 3)


def test_cifar_python_batches_read_back(cifar_root):
    root, written = cifar_root
    raw = (root / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    assert (
        b"numpy.core.multiarray\n_reconstruct" in raw and b"U\x04data" in raw
    )  # Python 2's opcodes, as the real files
    xtr, ytr, xte, yte = datasets.cifar10(root)
    assert xtr.shape == (40, 3, 32, 32) and xte.shape == (8, 3, 32, 32) and xtr.dtype == torch.uint8
    expected = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)]).reshape(-1, 3, 32, 32)
    assert np.array_equal(xtr.numpy(), expected)
    assert ytr.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert yte.tolist() == written["test_batch"][1]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_cifar_pickle_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    python2_pickle({b"data": _Exploit(marker), b"labels": []}, path)  # a batch's own opcodes, one global added
    with pytest.raises(UnsafePickleError) as exc:
        datasets.read_cifar_batch(path)
    assert f"names {os.system.__module__}.system: refused" in str(exc.value)
    assert not marker.exists()
    with open(path, "wb") as f:  # Python 3's protocol 2 writes bytes through _codecs.encode: refused too
        pickle.dump({b"data": b"", b"labels": []}, f, protocol=2)
    with pytest.raises(UnsafePickleError, match="_codecs.encode"):
        datasets.read_cifar_batch(path)
    # the right structure with the wrong content: a float array
    with open(path, "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3072)), b"labels": [0, 1]}, f, protocol=4)
    with pytest.raises(InputUnreadableError, match="not a uint8 array"):
        datasets.read_cifar_batch(path)


def test_missing_datasets_are_one_line_naming_the_folder_and_how_to_get_it(tmp_path):
    with pytest.raises(OptionError) as exc:
        datasets.mnist(tmp_path)
    message = str(exc.value)
    assert str(tmp_path / "MNIST" / "raw") in message and "datasets.MNIST('ROOT', download=True)" in message
    assert "\n" not in message
    with pytest.raises(OptionError, match="imagenette2.tgz"):
        datasets.image_folder(tmp_path)
    with pytest.raises(OptionError, match="cifar-10-batches-py"):
        task_spec("cifar10-cnn", seeds=1, params={"data": str(tmp_path)})  # before Ray starts
    with pytest.raises(OptionError, match="needs data=ROOT"):
        task_spec("segmentation-unet", seeds=1)


def test_image_folder_and_its_preprocessing(imagenette_root):
    train, val = datasets.image_folder(imagenette_root)
    assert train.classes == ("n01440764", "n02102040") and len(train.paths) == 10 and len(val.paths) == 6
    assert train.labels.tolist() == [0] * 5 + [1] * 5
    assert [p.name for p in train.paths[:5]] == [f"n01440764_{k}.png" for k in range(4)] + ["n01440764_j.JPEG"]
    x = datasets.load_images(train.paths[:2], 16)
    assert x.shape == (2, 3, 16, 16) and float(x.min()) >= 0 and float(x.max()) <= 1
    # a constant image stays constant through resize and crop
    flat = torch.full((3, 36, 40), 200, dtype=torch.uint8)
    assert torch.allclose(datasets.resize_crop(flat, 16, 18), torch.full((3, 16, 16), 200.0))


def test_segmentation_pairs_and_voc(masks_root, voc_root):
    train, val = datasets.segmentation(masks_root)
    assert len(train.images) == 10 and len(val.images) == 2  # the last sixth of 12 pairs; the orphan dropped
    assert [p.stem for p in val.images] == ["im10", "im11"] and all(m.suffix == ".png" for m in train.masks)
    x, t = datasets.load_pairs(train, [0], 48)
    mask = np.zeros((40, 48), np.float32)
    mask[8:24, 10:30] = 1
    fg = F.interpolate(torch.from_numpy(mask)[None, None], size=(48, 48), mode="nearest")[0, 0]
    assert torch.equal(t[0, 0], fg) and bool((t[0, 1] == 1).all())  # every pixel valid outside VOC
    vtrain, vval = datasets.segmentation(voc_root)
    assert [p.stem for p in vval.images] == ["2007_000004", "2007_000005"]
    x, t = datasets.load_pairs(vtrain, [0], 32)
    raw = np.asarray(Image.open(vtrain.masks[0]))
    assert raw[3, 0] == 255 and raw[10, 10] == 15
    expected = F.interpolate(torch.from_numpy(raw.astype(np.float32))[None, None], size=(32, 32), mode="nearest")[0, 0]
    assert torch.equal(t[0, 1], (expected != 255).float())  # void pixels excluded
    assert torch.equal(t[0, 0], ((expected != 0) & (expected != 255)).float())


# --- the tasks, end to end on the CPU ---------------------------------------------------------------


def test_mnist_autoencoder_trains_as_an_independent_loop_does(mnist_root):
    root, arrays = mnist_root
    params = {"data": str(root), "subset": 16, "latent": 20, "batch": 8}
    rows = collect(TASKS["mnist-autoencoder"].train, trial("mnist", params, placement=None, epochs=2))
    assert [e for e, _ in rows] == [1, 2]
    # the same run written out by hand: the subset's permutation, seed 0, Adam 1e-3, batches of 8
    keep = torch.randperm(40, generator=torch.Generator().manual_seed(paper_tasks.SUBSET_SEED))[:16]
    keep_te = torch.randperm(12, generator=torch.Generator().manual_seed(paper_tasks.SUBSET_SEED))[:12]
    x = torch.from_numpy(arrays["train"][0].reshape(40, 784)).float()[keep] / 255
    xv = torch.from_numpy(arrays["t10k"][0].reshape(12, 784)).float()[keep_te] / 255
    torch.manual_seed(0)
    order = torch.Generator().manual_seed(0)
    enc, dec = nn.Linear(784, 20), nn.Linear(20, 784)
    model = nn.Sequential(enc, nn.Sigmoid(), dec, nn.Sigmoid())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for epoch in range(2):
        perm = torch.randperm(16, generator=order)
        for i in range(0, 16, 8):
            opt.zero_grad()
            F.mse_loss(model(x[perm[i : i + 8]]), x[perm[i : i + 8]]).backward()
            opt.step()
        with torch.no_grad():
            assert rows[epoch][1]["val_loss"] == pytest.approx(float(F.mse_loss(model(xv), xv)), rel=1e-5)


def test_the_same_seed_gives_the_same_rows_and_lambda_zero_changes_no_bit(cifar_root):
    root, _ = cifar_root
    params = {"data": str(root), "widths": "8,8", "batch": 8}
    train = TASKS["cifar10-cnn"].train
    a = collect(train, trial("cifar10-cnn", params, placement=None, epochs=2))
    assert a == collect(train, trial("cifar10-cnn", params, placement=None, epochs=2))
    zero = collect(train, trial("cifar10-cnn", params, lam=0.0, placement="first", epochs=2))
    assert [(e, {k: v for k, v in m.items() if k != "entropy_term"}) for e, m in zero] == a
    term = collect(train, trial("cifar10-cnn", params, lam=1.0, placement="first", epochs=2))
    assert term[1][1]["train_loss"] != a[1][1]["train_loss"] and term[0][1]["entropy_term"] != 0
    assert collect(train, trial("cifar10-cnn", params, placement=None, seed=1, epochs=2)) != a
    assert all(m["val_acc"] * 8 == round(m["val_acc"] * 8) for _, m in a)  # a count over the 8 test images


def test_cifar10_autoencoder_one_epoch(cifar_root):
    root, _ = cifar_root
    rows = collect(
        TASKS["cifar10-autoencoder"].train,
        trial("cifar", {"data": str(root), "subset": 10, "latent": 20}, 1e-2, "dense-first"),
    )
    assert len(rows) == 1 and 0 < rows[0][1]["val_loss"] < 0.5 and rows[0][1]["entropy_term"] != 0


@pytest.mark.parametrize(
    ("name", "placement", "augment"),
    [("imagenette-vgg16", "first-k", False), ("imagenette-resnet50", "pre-skip", True)],
)
def test_imagenette_tasks_one_epoch_at_32_pixels(imagenette_root, name, placement, augment):
    params = {"data": str(imagenette_root), "subset": 4, "size": 32, "batch": 4, "augment": augment, "dropout": True}
    rows = collect(TASKS[name].train, trial(name, params, 1e-3, placement))
    assert len(rows) == 1 and rows[0][1]["val_acc"] in (0, 0.25, 0.5, 0.75, 1.0)  # 4 validation images
    assert rows[0][1]["entropy_term"] != 0 and np.isfinite(rows[0][1]["train_loss"])


@pytest.mark.parametrize("layout", ["masks", "voc"])
def test_segmentation_unet_two_epochs(masks_root, voc_root, layout):
    root = masks_root if layout == "masks" else voc_root
    params = {"data": str(root), "width": 4, "size": 32, "batch": 4}
    rows = collect(TASKS["segmentation-unet"].train, trial("unet", params, 1e-2, "pre-skip", epochs=2))
    assert [e for e, _ in rows] == [1, 2]
    m = rows[1][1]
    assert 0 <= m["val_iou"] <= 1 and 0 <= m["val_acc"] <= 1 and 0 < m["val_loss"] < 1


def test_the_unet_stops_by_the_papers_rule():
    stop = paper_tasks.EarlyStopping(3, "min", 0.01)
    # Keras's rule: an improvement counts when it beats the best by more than 0.01 (0.485 does, on 0.5);
    # after 0.485, three epochs within 0.01 of it end training
    values = (0.5, 0.495, 0.492, 0.485, 0.48, 0.479, 0.476)
    assert [stop.update(v) for v in values] == [False, False, False, False, False, False, True]


def test_grids_pilots_and_placements(imagenette_root, cifar_root):
    params = {"data": str(imagenette_root)}
    spec = task_spec("imagenette-resnet50", seeds=2, params=params)
    assert [p.name for p in spec.placements] == ["first", "first-k", "pre-skip"]
    assert all(p.rule is not None for p in spec.placements) and spec.placements[1].rule.k == 2  # [1, 5]
    assert spec.lambdas == (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0) and spec.patience == 25
    with pytest.raises(OptionError, match="empirical ranks the layers of a trained network: give reference="):
        task_spec("imagenette-resnet50", seeds=1, placement_names=("empirical",), params=params)
    request = pilot(SweepRequest(task="cifar10-cnn", data=str(cifar_root[0]), subset=100, max_epochs=2))
    assert request.params == {"data": str(cifar_root[0].resolve()), "subset": 100}
    spec = task_spec("cifar10-cnn", seeds=1, params=request.params, max_epochs=request.max_epochs)
    assert spec.epochs == 2 and spec.params["subset"] == 100
    assert task_spec("cifar10-cnn", seeds=1, params=request.params, epochs=5, max_epochs=3).epochs == 3
    with pytest.raises(OptionError, match="^subset must be at least 1"):
        pilot(SweepRequest(task="cifar10-cnn", subset=0))


# --- through the command line -------------------------------------------------------------------------


def test_the_command_line_names_a_missing_dataset_in_one_line(cli, tmp_path):
    r = cli("sweep", "--task", "imagenette-vgg16", "--data", tmp_path / "nowhere", "-o", tmp_path / "out")
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert line.startswith("error: no imagenette data at ") and "nowhere/train" in line and "imagenette2.tgz" in line
    assert "\n" not in line and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_a_paper_task_sweep_on_ray_with_data_subset_and_max_epochs(cifar_root, tmp_path):
    out = tmp_path / "report"
    args = ["sweep", "--task", "cifar10-cnn", "--data", cifar_root[0], "--subset", "16", "--max-epochs", "1"]
    args += ["--seeds", "2", "--lambdas", "1e-2", "--placements", "first", "--param", "widths=8", "--cpus", "2"]
    r = run(*args, "-o", out, timeout=300)
    assert r.rc == 0, r.err[-2000:]
    rows = (out / "trials.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2  # 2 cells × 2 seeds × 1 epoch (--max-epochs 1 of the task's 30)
    header = rows[0].split(",")
    layers = {r.split(",")[0]: r.split(",")[header.index("layers")] for r in rows[1:]}
    assert layers == {"baseline": "", "first λ=0.01": "features.0"}  # resolved in the trial on the live model
    spec = json.loads((out / "summary.json").read_text())["spec"]
    assert spec["epochs"] == 1 and spec["params"]["subset"] == 16
    assert spec["params"]["data"] == str(cifar_root[0].resolve())


def test_a_reference_adds_the_placements_that_read_weights(masks_root, tmp_path):
    torch.manual_seed(3)
    reference = tmp_path / "unet-analysis.json"
    unet = paper_tasks.unet({"width": 4})
    reference.write_bytes(analysis_json(analyze(unet, hash_files=False, input_size=(3, 32, 32))))
    params = {"data": str(masks_root), "width": 4, "size": 32, "batch": 4}
    spec = task_spec("segmentation-unet", seeds=1, epochs=1, lambdas=(0, 1e-2), params=params, reference=str(reference))
    assert [p.name for p in spec.placements] == ["pre-skip", "largest-change"]
    # the structural placement is still resolved in the trial; the one that reads weights came from the reference
    assert spec.placements[0].rule is not None and spec.placements[1].config is not None
    cell = spec.cells[2]
    assert cell.placement == "largest-change" and cell.config is not None
    convs = {n for n, m in unet.named_modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)}
    assert {layer.name for layer in cell.config.layers} <= convs
    rows = collect(TASKS["segmentation-unet"].train, cell.trial_config(0, 1, params))
    assert len(rows) == 1 and rows[0][1]["entropy_term"] != 0
