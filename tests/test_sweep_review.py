"""Review fixes of `entropyflow sweep --task … --data ROOT`: bad dataset contents refused in the
driver before Ray starts (one line naming the file's full path), segmentation images without a
mask noted, --data refused for the digits tasks, piped summary tables without broken titles or
trailing blanks, and a readable learning-curve plot of a one-epoch pilot."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from torch import nn

import entropyflow
from entropyflow.errors import EXIT_USER, InputUnreadableError, OptionError, UnsafePickleError
from entropyflow.sweep import datasets, runner
from entropyflow.sweep.events import TrialOutcome
from entropyflow.sweep.output import learning_curves
from entropyflow.sweep.render import render_summary
from entropyflow.sweep.spec import SweepSpec, placements_from
from entropyflow.sweep.summary import summarize, trial_summary

RNG = np.random.default_rng(11)


def idx(path, array, gz=False):
    data = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def mnist(root, gz=False):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for split, n in (("train", 20), ("t10k", 6)):
        idx(raw / f"{split}-images-idx3-ubyte", RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz=gz)
        idx(raw / f"{split}-labels-idx1-ubyte", RNG.integers(0, 10, n, dtype=np.uint8))
    return raw


def png(path, size=(24, 20), array=None):
    if array is None:
        array = RNG.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(array).save(path)


# --- 1. dataset contents checked in the driver ------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_a_truncated_mnist_file_is_refused_before_launch_naming_its_path(tmp_path, gz):
    raw = mnist(tmp_path, gz=gz)
    assert datasets.check("mnist", tmp_path) == ()  # the good copy passes
    bad = raw / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    if gz:
        data = gzip.decompress(bad.read_bytes())[:3000]
        bad.write_bytes(gzip.compress(data))
    else:
        bad.write_bytes(bad.read_bytes()[:3000])
    with pytest.raises(InputUnreadableError) as exc:
        runner.task_spec("mnist-autoencoder", seeds=1, params={"data": str(tmp_path)})
    message = str(exc.value)
    # 20 × 28 × 28 = 15,680 bytes stated; 3000 - 16 of header left
    assert message.startswith(f"{bad}: the header says 20 × 28 × 28 = 15,680 bytes of data, the file has 2,984")
    assert "\n" not in message and exc.value.exit_code == EXIT_USER


def test_mnist_labels_that_disagree_with_the_images_are_refused(tmp_path):
    raw = mnist(tmp_path)
    idx(raw / "t10k-labels-idx1-ubyte", np.full(6, 12, dtype=np.uint8))
    with pytest.raises(InputUnreadableError, match=f"^{raw / 't10k-labels-idx1-ubyte'}: a label of 12"):
        datasets.check("mnist", tmp_path)
    idx(raw / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    with pytest.raises(InputUnreadableError, match="t10k has 6 images of \\(28, 28\\) but 5 labels"):
        datasets.check("mnist", tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("true",))


def test_a_refused_cifar_pickle_names_its_path_before_launch(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        doc = {b"data": RNG.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [1, 2]}
        (folder / name).write_bytes(pickle.dumps(doc, protocol=4))
    assert datasets.check("cifar10", tmp_path) == ()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": _Exploit(), b"labels": []}, protocol=4))
    with pytest.raises(UnsafePickleError) as exc:
        runner.task_spec("cifar10-cnn", seeds=1, params={"data": str(tmp_path)})
    assert str(exc.value).startswith(f"{folder / 'test_batch'}: a CIFAR-10 batch names posix.system: refused") or str(
        exc.value
    ).startswith(f"{folder / 'test_batch'}: a CIFAR-10 batch names {os.system.__module__}.system: refused")
    (folder / "data_batch_3").write_bytes(b"\x80\x04garbage")
    with pytest.raises(InputUnreadableError, match=f"^{folder / 'data_batch_3'}: not a CIFAR-10 python batch"):
        datasets.check("cifar10", tmp_path)


def test_imagenette_files_that_are_not_images_and_too_many_classes(tmp_path):
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            png(tmp_path / split / cls / f"{cls}1.png")
    assert datasets.check("imagenette", tmp_path) == ()
    fake = tmp_path / "val" / "b" / "b0.JPEG"  # sorted first in its class folder
    fake.write_bytes(b"<html>not an image</html>")
    with pytest.raises(InputUnreadableError, match=f"^cannot read {fake} as an image"):
        datasets.check("imagenette", tmp_path)
    fake.unlink()
    for k in range(10):
        for split in ("train", "val"):
            (tmp_path / split / f"c{k}").mkdir()
            png(tmp_path / split / f"c{k}" / "x.png")
    with pytest.raises(InputUnreadableError, match="train: 12 class folders \\(ImageNette has 10"):
        datasets.check("imagenette", tmp_path)


def test_the_command_line_refuses_bad_contents_in_one_line_before_any_trial(cli, tmp_path):
    raw = mnist(tmp_path / "data")
    (raw / "train-images-idx3-ubyte").write_bytes((raw / "train-images-idx3-ubyte").read_bytes()[:3000])
    out = tmp_path / "out"
    r = cli("sweep", "--task", "mnist-autoencoder", "--data", tmp_path / "data", "--seeds", "1", "-o", out)
    assert r.exit_code == 2
    line = r.stderr.strip()
    assert line.startswith("error: ") and str(raw / "train-images-idx3-ubyte") in line and "\n" not in line
    assert not out.exists()


# --- 2. segmentation leftovers ------------------------------------------------------------------------


def test_segmentation_images_without_a_mask_are_noted_with_their_count_and_an_example(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for k in range(12):
        png(tmp_path / "images" / f"im{k:02d}.png")
        if k % 2 == 0:
            png(tmp_path / "masks" / f"im{k:02d}.png", array=np.zeros((20, 24, 3), np.uint8))
    notes: list[str] = []
    runner.task_spec("segmentation-unet", seeds=1, params={"data": str(tmp_path)}, notes=notes)
    assert len(notes) == 1
    assert notes[0].startswith(
        f"6 image(s) in {tmp_path / 'images'} have no mask of the same name in {tmp_path / 'masks'} and are "
        f"left out, e.g. {tmp_path / 'images' / 'im01.png'}"
    )
    assert notes[0].endswith("; 6 image/mask pairs are used")
    train, val = datasets.segmentation(tmp_path)
    assert len(train.images) + len(val.images) == 6
    # a mask the size of another image is refused before launch, naming the mask
    png(tmp_path / "masks" / "im00.png", size=(10, 10))
    with pytest.raises(InputUnreadableError, match=f"^{tmp_path / 'masks' / 'im00.png'}: \\(10, 10\\) pixels"):
        datasets.check("segmentation", tmp_path)


# --- 3. --data with the digits tasks ------------------------------------------------------------------


def test_data_is_refused_for_the_digits_tasks(tmp_path):
    with pytest.raises(OptionError) as exc:
        runner.task_spec("digits-cnn", seeds=1, params={"data": str(tmp_path)})
    assert str(exc.value).startswith("the digits-cnn task trains on scikit-learn's bundled digits: it reads no data=")
    assert "mnist-autoencoder" in str(exc.value) and "digits-unet" not in str(exc.value)


# --- 4 and 5. the summary table and the learning curves of a one-epoch pilot ---------------------------


@pytest.fixture(scope="module")
def pilot_summary():
    analysis = entropyflow.analyze(nn.Sequential(nn.Conv2d(1, 2, 3)), input_size=(1, 5, 5))
    placement = replace(placements_from(analysis, ["first"])[0], name="first")
    spec = SweepSpec(lambdas=(0.0, 1e-3), placements=(placement,), seeds=(0,), epochs=1, metric="val_loss", patience=7)
    outcomes = [
        TrialOutcome(cell.name, 0, ({"epoch": 1, "val_loss": 0.5 + 0.1 * k},), None)
        for k, cell in enumerate(spec.cells)
    ]
    return summarize(spec, [trial_summary(o.cell, o.seed, o.rows, spec) for o in outcomes]), outcomes


def test_piped_tables_keep_each_title_on_one_line_and_no_trailing_blanks(pilot_summary):
    summary, _ = pilot_summary
    for width in (10_000, 80):
        stream = io.StringIO()
        render_summary(summary, Console(width=width, file=stream, color_system=None))
        lines = stream.getvalue().splitlines()
        assert all(line == line.rstrip() for line in lines), width
        assert all(len(line) <= width for line in lines)
        if width == 10_000:  # a pipe: every title whole on its own line, the header right below it
            titles = [k for k, line in enumerate(lines) if "(exploratory: estimates and intervals, no verdict)" in line]
            assert titles and all(lines[k + 1].startswith("cell") for k in titles)
            assert any(line.startswith("baseline") and "0.5 ± —" in line for line in lines)
        else:  # a terminal may wrap a title, between words
            k = lines.index("The early-stopping epoch (patience 7)  (exploratory: estimates and intervals, no")
            assert lines[k + 1] == "verdict)" and lines[k + 2].lstrip().startswith("mean ±")


def test_a_one_epoch_pilot_plots_points_on_whole_epochs(pilot_summary):
    summary, outcomes = pilot_summary
    fig = learning_curves(summary, outcomes)
    ax = fig.axes[0]
    assert ax.get_xlim() == (0.5, 1.5) and list(ax.get_xticks()) == [1]
    curves = [line for line in ax.get_lines() if line.get_label() in ("baseline", "first λ=0.001")]
    assert [line.get_marker() for line in curves] == ["o", "o"]
    assert [float(line.get_ydata()[0]) for line in curves] == [0.5, pytest.approx(0.6)]
    title = fig.get_suptitle().replace("\n", " ")
    assert "over 1 seed," in title and "seeds" not in title
