"""The paper's datasets from the formats people have on disk, never downloaded.

* MNIST: torchvision's folder ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  (or the same names with ``.gz``), parsed here: the idx header (magic, dimensions) is checked
  against the file's length before anything is allocated.
* CIFAR-10: ``ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch}``, Python pickles read by an
  unpickler that builds nothing but dicts, lists, bytes, numbers and numpy arrays (its
  ``find_class`` allows ``_reconstruct``, ``ndarray`` and ``dtype`` and nothing else), after the
  size and the opcodes were checked (:func:`entropyflow.load.pickle_scan.check_pickles`).
* ImageNette: an ImageFolder tree ``ROOT/{train,val}/<class>/*.JPEG|*.jpg|*.png``, decoded lazily
  per batch (the resize and crop are in :func:`load_images`).
* Segmentation: ``ROOT/images/*.png|*.jpg`` with ``ROOT/masks/<stem>.png``, or torchvision's
  VOCSegmentation layout ``ROOT/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,
  ImageSets/Segmentation/{train,val}.txt}``.

A missing dataset raises :class:`~entropyflow.errors.OptionError` naming the folder expected and
how to get it on a machine with internet; a malformed file raises
:class:`~entropyflow.errors.InputUnreadableError`, a pickle that would build anything else
:class:`~entropyflow.errors.UnsafePickleError`, each with a one-line message.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import CheckpointFormatError, InputUnreadableError, OptionError, UnsafePickleError
from ..load.pickle_scan import check_pickles
from ..text import printable
from ..words import arg

#: bytes of one dataset file read at most (a CIFAR-10 batch is 31 MB; MNIST's train images 47 MB)
MAX_FILE_BYTES = 256 << 20
#: images of one ImageFolder / segmentation split read at most (ImageNette has 9,469 train images, COCO 118k)
MAX_IMAGES = 2_000_000
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")

HOW_TO_GET = {
    "mnist": "python -c \"import torchvision; torchvision.datasets.MNIST('ROOT', download=True)\"",
    "cifar10": "python -c \"import torchvision; torchvision.datasets.CIFAR10('ROOT', download=True)\"",
    "imagenette": "curl -L https://s3.amazonaws.com/fast-ai-imageclas/imagenette2.tgz | tar xz "
    "(then --data imagenette2)",
    "segmentation": "python -c \"import torchvision; torchvision.datasets.VOCSegmentation('ROOT', download=True)\" "
    "or COCO masks exported as ROOT/images + ROOT/masks",
}


def missing(what: str, expected: Path) -> OptionError:
    """The one-line error for a dataset that is not where it is expected."""
    return OptionError(
        f"no {what} data at {printable(expected, 120)} (nothing is downloaded here; on a machine with internet: "
        f"{HOW_TO_GET[what]})"
    )


def _root(root: str | Path | None, what: str) -> Path:
    if root is None or not str(root).strip():
        raise OptionError(
            f"the {what} task needs {arg('data', 'ROOT', quote=False)} (the folder that holds the dataset)"
        )
    return Path(root).expanduser()


def where(path: Path | str, limit: int = 200) -> str:
    """A file's full path for a one-line message, shortened from the left (the file name is kept)."""
    text = printable(path)
    return text if len(text) <= limit else "…" + text[-(limit - 1) :]


def _read_bounded(path: Path) -> bytes:
    """A file's bytes (gunzipped for ``.gz``), at most :data:`MAX_FILE_BYTES` either way."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputUnreadableError(
                f"{where(path)}: {size:,} bytes (a dataset file is read up to {MAX_FILE_BYTES >> 20} MiB)"
            )
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        else:
            data = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputUnreadableError(f"cannot read {where(path)} ({printable(exc, 120)})") from exc
    if len(data) > MAX_FILE_BYTES:
        raise InputUnreadableError(f"{where(path)}: more than {MAX_FILE_BYTES >> 20} MiB once decompressed")
    return data


# --- MNIST (idx files) ------------------------------------------------------------------------------

IDX_UBYTE = 0x08


def _idx_header(name: str, head: bytes, length: int, ndim: int) -> tuple[int, ...]:
    """The shape an idx header states (magic ``0x0000 08 ndim``, then the dimensions as big-endian
    uint32), checked against the file's ``length`` before anything is allocated."""
    header = 4 + 4 * ndim
    if length < header:
        raise InputUnreadableError(f"{name}: {length} bytes, shorter than an idx header ({header} bytes)")
    zero, dtype, dims = struct.unpack(">HBB", head[:4])
    if zero != 0 or dtype != IDX_UBYTE or dims != ndim:
        raise InputUnreadableError(
            f"{name}: not an idx file of {ndim}-d unsigned bytes "
            f"(magic 0x{head[:4].hex()}, expected 0x000008{ndim:02x})"
        )
    shape = tuple(int(v) for v in struct.unpack(f">{ndim}I", head[4:header]))
    count = int(np.prod(shape, dtype=np.int64))
    if length != header + count:
        raise InputUnreadableError(
            f"{name}: the header says {' × '.join(map(str, shape))} = {count:,} bytes of data, the file has "
            f"{length - header:,} (truncated or not an idx file)"
        )
    return shape


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """An idx file of unsigned bytes with ``ndim`` dimensions, checked against the file's length."""
    data = _read_bounded(path)
    shape = _idx_header(where(path), data[: 4 + 4 * ndim], len(data), ndim)
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def idx_shape(path: Path, ndim: int) -> tuple[int, ...]:
    """An idx file's shape from its header, checked as :func:`read_idx` checks it without holding
    the data (a ``.gz`` is decompressed in chunks to count its length)."""
    name = where(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputUnreadableError(
                f"{name}: {size:,} bytes (a dataset file is read up to {MAX_FILE_BYTES >> 20} MiB)"
            )
        gz = path.suffix == ".gz"
        with gzip.open(path, "rb") if gz else open(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
            length = len(head) if gz else size
            while gz and (chunk := f.read(1 << 20)):
                length += len(chunk)
                if length > MAX_FILE_BYTES:
                    raise InputUnreadableError(f"{name}: more than {MAX_FILE_BYTES >> 20} MiB once decompressed")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise InputUnreadableError(f"cannot read {name} ({printable(exc, 120)})") from exc
    return _idx_header(name, head, length, ndim)


def _idx_path(raw: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (raw / name).is_file():
            return raw / name
    raise missing("mnist", raw / stem)


def mnist(root: str | Path | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels): uint8 N×28×28 and int64 labels."""
    raw = _root(root, "mnist") / "MNIST" / "raw"
    if not raw.is_dir():
        raise missing("mnist", raw)
    out = []
    for split in ("train", "t10k"):
        images = read_idx(_idx_path(raw, f"{split}-images-idx3-ubyte"), 3)
        labels = read_idx(_idx_path(raw, f"{split}-labels-idx1-ubyte"), 1)
        if len(images) != len(labels) or images.shape[1:] != (28, 28):
            raise InputUnreadableError(
                f"MNIST {split}: {len(images)} images of {images.shape[1:]} but {len(labels)} labels "
                "(expected N × 28 × 28 and N labels)"
            )
        if len(labels) and int(labels.max()) > 9:
            raise InputUnreadableError(f"MNIST {split}: a label of {int(labels.max())} (expected 0 … 9)")
        out += [torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))]
    return out[0], out[1], out[2], out[3]


# --- CIFAR-10 (restricted pickles) ------------------------------------------------------------------


def _numpy_globals() -> dict[tuple[str, str], Any]:
    core = getattr(np, "_core", None) or np.core
    reconstruct = core.multiarray._reconstruct
    return {
        # the real batches were pickled by numpy 1 (numpy.core); numpy 2 writes numpy._core
        ("numpy.core.multiarray", "_reconstruct"): reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class _CifarUnpickler(pickle.Unpickler):
    """Builds plain containers, bytes, numbers and numpy arrays; any other global is refused
    before it is imported, so no code named by the file runs."""

    allowed = _numpy_globals()

    def find_class(self, module: str, name: str) -> Any:
        found = self.allowed.get((module, name))
        if found is None:
            raise UnsafePickleError(
                f"a CIFAR-10 batch names {printable(module, 60)}.{printable(name, 60)}: refused (a real batch holds "
                "only dicts, lists, bytes and numpy arrays)"
            )
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("a CIFAR-10 batch with persistent ids: refused (not the real format)")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch: (uint8 N×3×32×32, int64 labels)."""
    name = where(path)
    data = _read_bounded(path)
    try:
        check_pickles(path, zipped=False)  # a pickle bomb is refused from its opcodes, before it is unpickled
    except CheckpointFormatError as exc:
        message, short = str(exc), printable(path.name)
        raise UnsafePickleError(name + message[len(short) :] if message.startswith(short) else message) from exc
    try:
        doc = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except UnsafePickleError as exc:
        raise UnsafePickleError(f"{name}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a malformed pickle raises many types; all mean 'not a batch'
        raise InputUnreadableError(f"{name}: not a CIFAR-10 python batch ({type(exc).__name__})") from exc
    if not isinstance(doc, dict):
        raise InputUnreadableError(f"{name}: not a CIFAR-10 python batch (a {type(doc).__name__}, not a dict)")
    images, labels = doc.get(b"data"), doc.get(b"labels")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        raise InputUnreadableError(f"{name}: b'data' is not a uint8 array of N × 3072 pixels")
    if not isinstance(labels, list) or len(labels) != len(images):
        raise InputUnreadableError(f"{name}: b'labels' is not a list of {len(images)} labels")
    if not all(type(v) is int and 0 <= v <= 9 for v in labels):
        raise InputUnreadableError(f"{name}: a label is not an integer 0 … 9")
    return images.reshape(-1, 3, 32, 32).copy(), np.asarray(labels, dtype=np.int64)


def cifar10(root: str | Path | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train images, train labels, test images, test labels): uint8 N×3×32×32 and int64 labels."""
    folder = _root(root, "cifar10") / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for n in names:
        if not (folder / n).is_file():
            raise missing("cifar10", folder / n)
    batches = [read_cifar_batch(folder / n) for n in names]
    xtr = np.concatenate([b[0] for b in batches[:5]])
    ytr = np.concatenate([b[1] for b in batches[:5]])
    xte, yte = batches[5]
    return torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte), torch.from_numpy(yte)


# --- image files (ImageNette, segmentation) ---------------------------------------------------------


def _images_in(folder: Path) -> list[Path]:
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if len(found) > MAX_IMAGES:
        raise InputUnreadableError(f"{printable(folder, 80)}: more than {MAX_IMAGES:,} images")
    return found


@dataclass(frozen=True)
class ImageFolder:
    """One split of an ImageFolder tree: the files (sorted by class, then name) and their labels."""

    paths: tuple[Path, ...]
    labels: torch.Tensor  # int64
    classes: tuple[str, ...]


def image_folder(root: str | Path | None) -> tuple[ImageFolder, ImageFolder]:
    """(train, val) of ``ROOT/{train,val}/<class>/*``; the classes are the train split's folders,
    sorted by name (torchvision's rule), and val must have the same ones."""
    base = _root(root, "imagenette")
    splits = []
    classes: tuple[str, ...] = ()
    for split in ("train", "val"):
        folder = base / split
        if not folder.is_dir():
            raise missing("imagenette", folder)
        names = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir()))
        if not names:
            raise missing("imagenette", folder / "<class>")
        if split == "train":
            classes = names
        elif names != classes:
            raise InputUnreadableError(f"{printable(folder, 80)}: its class folders differ from train's")
        paths: list[Path] = []
        labels: list[int] = []
        for k, name in enumerate(names):
            files = _images_in(folder / name)
            paths += files
            labels += [k] * len(files)
        if not paths:
            raise missing("imagenette", folder / "<class>" / "*.JPEG")
        splits.append(ImageFolder(tuple(paths), torch.tensor(labels, dtype=torch.int64), classes))
    return splits[0], splits[1]


def _open_image(path: Path, mode: str) -> np.ndarray:
    from PIL import Image  # Pillow comes with torchvision

    try:
        with Image.open(path) as img:
            img.draft("RGB", (1024, 1024))  # a large JPEG is decoded at a reduced scale where possible
            if img.width * img.height > 100_000_000:
                raise InputUnreadableError(f"{where(path)}: {img.width}×{img.height} pixels (too large)")
            if mode == "mask" and img.mode == "P":
                return np.asarray(img)  # VOC's palette indices are the class ids
            return np.asarray(img.convert("L" if mode == "mask" else "RGB"))
    except InputUnreadableError:
        raise
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a bad file
        raise InputUnreadableError(f"cannot decode {where(path)} ({type(exc).__name__})") from exc


def resize_crop(image: torch.Tensor, size: int, resize: int, nearest: bool = False) -> torch.Tensor:
    """C×H×W → C×size×size: the shorter side resized to ``resize`` (bilinear, antialiased; nearest
    for masks), then the centre ``size``×``size`` crop (the standard ImageNet evaluation transform)."""
    h, w = image.shape[-2:]
    scale = resize / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    x = image[None].float()
    if nearest:
        x = F.interpolate(x, size=(nh, nw), mode="nearest")
    else:
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[0, :, top : top + size, left : left + size]


def load_images(paths: Sequence[Path], size: int, resize: int | None = None) -> torch.Tensor:
    """RGB images as float N×3×size×size in [0, 1]: each resized (shorter side ``resize``, default
    ``size`` × 256/224) and centre-cropped."""
    resize = resize or round(size * 256 / 224)
    out = torch.empty(len(paths), 3, size, size)
    for i, path in enumerate(paths):
        rgb = torch.from_numpy(_open_image(path, "rgb").copy()).permute(2, 0, 1)
        out[i] = resize_crop(rgb, size, resize).clamp_(0, 255) / 255
    return out


# --- segmentation ------------------------------------------------------------------------------------

VOC_VOID = 255  # VOC's boundary pixels: neither object nor background, excluded from loss and metrics


@dataclass(frozen=True)
class SegmentationSplit:
    """Image files and their mask files (class ids per pixel; 0 background, 255 void in VOC)."""

    images: tuple[Path, ...]
    masks: tuple[Path, ...]


def segmentation(root: str | Path | None) -> tuple[SegmentationSplit, SegmentationSplit]:
    """(train, val): ``ROOT/images`` + ``ROOT/masks`` (pairs by stem, sorted; the last 1/6 of the
    sorted pairs, at least one, are the validation split: COCO's 60000/10000 of the paper), or VOC's
    own ``train.txt`` / ``val.txt``."""
    base = _root(root, "segmentation")
    voc = base / "VOCdevkit" / "VOC2012"
    if voc.is_dir():
        lists = voc / "ImageSets" / "Segmentation"
        out = []
        for split in ("train", "val"):
            listing = lists / f"{split}.txt"
            if not listing.is_file():
                raise missing("segmentation", listing)
            text = _read_bounded(listing).decode("utf-8", "replace")
            stems = [s.strip() for s in text.splitlines() if s.strip()]
            if len(stems) > MAX_IMAGES or any("/" in s or "\\" in s or s.startswith(".") for s in stems):
                raise InputUnreadableError(f"{where(listing)}: not a list of image ids")
            images = tuple(voc / "JPEGImages" / f"{s}.jpg" for s in stems)
            masks = tuple(voc / "SegmentationClass" / f"{s}.png" for s in stems)
            for p in images[:1] + masks[:1]:
                if not p.is_file():
                    raise missing("segmentation", p)
            out.append(SegmentationSplit(images, masks))
        return out[0], out[1]
    images_dir, masks_dir = base / "images", base / "masks"
    if not images_dir.is_dir() or not masks_dir.is_dir():
        raise missing("segmentation", images_dir if not images_dir.is_dir() else masks_dir)
    masks_by_stem = {p.stem: p for p in _images_in(masks_dir)}
    pairs = [(p, masks_by_stem[p.stem]) for p in _images_in(images_dir) if p.stem in masks_by_stem]
    if len(pairs) < 2:
        raise missing("segmentation", masks_dir / "<stem>.png")
    n_val = max(1, len(pairs) // 6)
    train, val = pairs[:-n_val], pairs[-n_val:]
    return (
        SegmentationSplit(tuple(p for p, _ in train), tuple(m for _, m in train)),
        SegmentationSplit(tuple(p for p, _ in val), tuple(m for _, m in val)),
    )


def load_pairs(split: SegmentationSplit, indices: Sequence[int], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (float N×3×size×size in [0, 1]) and binary targets with a validity mask (N×2×size×size:
    channel 0 foreground = any class id other than 0 and void, channel 1 = 1 where not void), each
    resized so that the whole image fits the square (no crop: the masks keep every object)."""
    images = torch.empty(len(indices), 3, size, size)
    targets = torch.empty(len(indices), 2, size, size)
    for i, k in enumerate(indices):
        rgb = torch.from_numpy(_open_image(split.images[k], "rgb").copy()).permute(2, 0, 1)[None].float()
        mask = torch.from_numpy(_open_image(split.masks[k], "mask").astype(np.int64))[None, None].float()
        if rgb.shape[-2:] != mask.shape[-2:]:
            raise InputUnreadableError(
                f"{where(split.masks[k])}: {tuple(mask.shape[-2:])} pixels, its image {tuple(rgb.shape[-2:])}"
            )
        images[i] = F.interpolate(rgb, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
        m = F.interpolate(mask, size=(size, size), mode="nearest")[0, 0]
        targets[i, 0] = ((m != 0) & (m != VOC_VOID)).float()
        targets[i, 1] = (m != VOC_VOID).float()
    return images.clamp_(0, 255) / 255, targets


def unpaired(root: str | Path | None) -> tuple[list[Path], list[Path]]:
    """For the ``ROOT/images`` + ``ROOT/masks`` layout: (images without a mask, masks without an
    image), matched by stem as :func:`segmentation` pairs them; both empty for VOC's layout."""
    base = _root(root, "segmentation")
    if (base / "VOCdevkit" / "VOC2012").is_dir():
        return [], []
    images, masks = _images_in(base / "images"), _images_in(base / "masks")
    image_stems, mask_stems = {p.stem for p in images}, {p.stem for p in masks}
    return [p for p in images if p.stem not in mask_stems], [p for p in masks if p.stem not in image_stems]


def _check_mnist(base: Path) -> None:
    raw = base / "MNIST" / "raw"
    for split in ("train", "t10k"):
        paths = [_idx_path(raw, f"{split}-{part}-ubyte") for part in ("images-idx3", "labels-idx1")]
        shape = idx_shape(paths[0], 3)
        labels = read_idx(paths[1], 1)  # 60 kB: read whole, every label checked
        if shape[0] != len(labels) or shape[1:] != (28, 28):
            raise InputUnreadableError(
                f"{where(raw)}: {split} has {shape[0]} images of {shape[1:]} but {len(labels)} labels "
                "(expected N × 28 × 28 and N labels)"
            )
        if len(labels) and int(labels.max()) > 9:
            raise InputUnreadableError(f"{where(paths[1])}: a label of {int(labels.max())} (expected 0 … 9)")


IMAGENETTE_CLASSES = 10  # the Table 2 models have 10 outputs


def _check_image_folder(base: Path) -> None:
    from PIL import Image

    train, val = image_folder(base)
    if len(train.classes) > IMAGENETTE_CLASSES:
        raise InputUnreadableError(
            f"{where(base / 'train')}: {len(train.classes)} class folders (ImageNette has {IMAGENETTE_CLASSES}; "
            "the models have 10 outputs)"
        )
    for split, folder in (("train", train), ("val", val)):
        labels = folder.labels.tolist()
        for k, cls in enumerate(folder.classes):
            if k not in labels:
                raise missing("imagenette", base / split / cls / "*.JPEG")
            first = folder.paths[labels.index(k)]
            try:  # the header of each class's first file (cheap: nothing is decoded)
                with Image.open(first) as img:
                    img.size  # noqa: B018 - read from the header
            except Exception as exc:  # noqa: BLE001 - Pillow raises many types for a bad file
                raise InputUnreadableError(f"cannot read {where(first)} as an image ({type(exc).__name__})") from exc
        _open_image(folder.paths[0], "rgb")  # one image of each split decoded whole


def _check_segmentation(base: Path) -> tuple[str, ...]:
    train, val = segmentation(base)
    for split in (train, val):
        lost = [p for p in split.images + split.masks if not p.is_file()]
        if lost:
            raise InputUnreadableError(f"{len(lost)} listed files are missing, e.g. {where(lost[0])}")
    load_pairs(train, [0], 16)  # the first pair decoded: image and mask readable, the same size
    images, masks = unpaired(base)
    notes = []
    if images:
        notes.append(
            f"{len(images)} image(s) in {where(base / 'images')} have no mask of the same name in "
            f"{where(base / 'masks')} and are left out, e.g. {where(images[0])}"
        )
    if masks:
        notes.append(f"{len(masks)} mask(s) have no image of the same name and are left out, e.g. {where(masks[0])}")
    if notes:
        notes.append(f"{len(train.images) + len(val.images)} image/mask pairs are used")
    return ("; ".join(notes),) if notes else ()


def check(kind: str, root: str | Path | None) -> tuple[str, ...]:
    """Before a sweep starts: the dataset a task reads is there and readable, checked cheaply in
    the driver (MNIST: the idx headers against the file lengths, the labels; CIFAR-10: every batch
    read by the restricted unpickler; ImageNette: the class folders, each one's first file's header,
    one image per split decoded; segmentation: the pairs, the first decoded). Raises the one-line
    error a trial would raise, naming the file's full path; returns notes for the run's output
    (segmentation images or masks left out for want of their pair)."""
    base = _root(root, kind)
    if kind == "mnist":
        _check_mnist(base)
    elif kind == "cifar10":
        folder = base / "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for n in names:
            if not (folder / n).is_file():
                raise missing(kind, folder / n)
        for n in names:
            read_cifar_batch(folder / n)  # 30 MB each: the check a trial makes, then dropped
    elif kind == "imagenette":
        for split in ("train", "val"):
            if not (base / split).is_dir():
                raise missing(kind, base / split)
        _check_image_folder(base)
    elif kind == "segmentation":
        return _check_segmentation(base)
    else:
        raise OptionError(f"unknown dataset kind '{printable(kind, 30)}'")
    return ()
