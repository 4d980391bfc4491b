"""The folder dataset: your own images decoded once into a prepared file, read back memory-mapped, and
every bad input a clear line or a counted skip (a folder, a zip, an unreachable bucket)."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
import torch
from PIL import Image

from gan_ray.cli import main
from gan_ray.config import DataConfig, GanConfig, validate_config
from gan_ray.data.batches import HostSource, TensorSource
from gan_ray.data.prepared import Preprocessing, load_prepared, prepare, read_prepared
from gan_ray.data.sources import check_available, data_shape, make_source
from gan_ray.errors import ConfigError, DatasetNotFoundError
from gan_ray.training.preflight import check_components


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _grey_folder(root, classes=("a", "b"), per_class=4, size=8):
    """Class folders of constant grey squares: class i's images are all of value 40 * (i + 1)."""
    for i, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for j in range(per_class):
            Image.new("L", (size, size), 40 * (i + 1)).save(root / cls / f"{j}.png")
    return root


def _cfg(root, **data) -> GanConfig:
    return validate_config(
        {
            "data": {"name": "folder", "root": str(root), "image_size": 28, "channels": 1, **data},
            "train": {"batch_size": 4},
        }
    )


def _quiet(_line: str) -> None:
    pass


# --- real images: Fashion-MNIST exported as PNG files in class folders, and as a zip ---------------------


def test_a_folder_of_real_pngs_is_decoded_to_its_exact_pixels_and_class_labels(
    fashion_mnist_folder, tmp_path
):
    folder, _, expected, labels = fashion_mnist_folder
    prepared = prepare(str(folder), Preprocessing(28, 1), cache_dir=tmp_path, say=_quiet)
    assert prepared.images.dtype == np.uint8 and isinstance(prepared.images, np.memmap)
    assert torch.equal(torch.from_numpy(np.array(prepared.images)), expected)
    assert torch.equal(torch.from_numpy(prepared.labels), labels)
    assert prepared.classes == [f"class_{i}" for i in range(10)]
    assert set(prepared.manifest["per_class"].values()) == {len(labels) // 10}
    assert prepared.manifest["skipped"] == {}
    # The prepared file is an .npy of the images: numpy reads it as one.
    assert np.load(prepared.path, mmap_mode="r").shape == tuple(expected.shape)


def test_the_zip_of_the_same_tree_gives_the_same_images_and_labels(fashion_mnist_folder, tmp_path):
    _, archive, expected, labels = fashion_mnist_folder
    prepared = prepare(str(archive), Preprocessing(28, 1), cache_dir=tmp_path, say=_quiet)
    assert prepared.classes == [f"class_{i}" for i in range(10)]  # the zip's wrapping folder looked through
    assert torch.equal(torch.from_numpy(np.array(prepared.images)), expected)
    assert torch.equal(torch.from_numpy(prepared.labels), labels)


def test_a_folder_run_keeps_uint8_on_the_device_and_draws_floats_in_the_unit_range(fashion_mnist_folder):
    folder, _, expected, _ = fashion_mnist_folder
    cfg = _cfg(folder)
    source = make_source(cfg.data)
    assert isinstance(source, TensorSource) and source.data.dtype == torch.uint8
    assert source.data.shape == expected.shape and data_shape(cfg.data) == (1, 28, 28)
    batch = source.sample(256, generator=torch.Generator().manual_seed(0))
    assert batch.dtype == torch.float32 and batch.min() >= -1 and batch.max() <= 1
    rows = {tuple(r) for r in (expected.float() / 127.5 - 1).flatten(1).tolist()}
    assert all(tuple(r) in rows for r in batch.flatten(1).tolist())


@pytest.mark.slow
def test_a_labelled_folder_gets_the_classifier_distance_and_class_coverage(fashion_mnist_folder, one_thread):
    from gan_ray.metrics.frechet import FrechetEvaluator

    folder, _, expected, labels = fashion_mnist_folder
    cfg = _cfg(folder)
    evaluator = FrechetEvaluator(cfg.data, num_real=1000)
    assert evaluator.num_classes == 10 and evaluator.classifier_accuracy > 0.7
    real = expected[labels == 3][:200].float() / 127.5 - 1  # one class only: a collapsed "generator"
    scores = evaluator.scores(real)
    assert scores["class_reverse_kl"] > 1.0 and scores["fid_classifier"] > 0  # log(10) = 2.3 for one class
    everything = evaluator.scores(expected[torch.randperm(len(expected))[:1000]].float() / 127.5 - 1)
    assert everything["classes_covered"] == 10 and everything["class_reverse_kl"] < 0.2
    assert everything["fid_classifier"] < scores["fid_classifier"] / 5


# --- decoding: modes, sizes, crops -----------------------------------------------------------------------


def test_grey_rgba_palette_and_16_bit_images_are_converted_as_channels_says(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    Image.new("RGB", (40, 20), (255, 0, 0)).save(root / "wide_red.jpg", quality=100)
    Image.new("RGBA", (16, 16), (0, 0, 255, 0)).save(root / "transparent.png")  # laid over white
    palette = Image.new("P", (16, 16), 0)
    palette.putpalette([0, 255, 0] + [0] * 765)
    palette.save(root / "palette.png")
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(root / "white16.png")
    Image.new("L", (30, 50), 100).save(root / "tall_grey.webp", lossless=True)
    rgb = prepare(str(root), Preprocessing(8, 3), cache_dir=tmp_path / "c", say=_quiet)
    grey = prepare(str(root), Preprocessing(8, 1), cache_dir=tmp_path / "c", say=_quiet)
    assert rgb.images.shape == (5, 3, 8, 8) and grey.images.shape == (5, 1, 8, 8)
    names = [p for p, _, _ in rgb.manifest["files"]]
    px = {n: rgb.images[i, :, 4, 4].tolist() for i, n in enumerate(names)}
    assert px["palette.png"] == [0, 255, 0] and px["transparent.png"] == [255, 255, 255]
    assert px["white16.png"] == [255, 255, 255] and px["tall_grey.webp"] == [100, 100, 100]
    assert abs(px["wide_red.jpg"][0] - 255) <= 2 and max(px["wide_red.jpg"][1:]) <= 2
    assert rgb.num_classes == 0 and rgb.manifest["upscaled"] == 0
    assert len(rgb.manifest["source_modes"]) >= 4  # mixed modes are counted in the manifest
    assert "modes" in rgb.summary()


def test_the_short_side_is_resized_and_the_centre_cropped(tmp_path):
    root = tmp_path / "crop"
    root.mkdir()
    wide = np.zeros((10, 30), dtype=np.uint8)
    wide[:, 10:20] = 255  # a white centre third: after the crop, all of the image
    Image.fromarray(wide).save(root / "wide.png")
    out = prepare(str(root), Preprocessing(10, 1), cache_dir=tmp_path / "c", say=_quiet).images
    assert out.shape == (1, 1, 10, 10) and out.min() >= 250


# --- bad input: one line before any work, or a counted skip ---------------------------------------------


def test_corrupt_truncated_and_non_image_files_are_counted_skips_with_reasons(tmp_path):
    root = _grey_folder(tmp_path / "src")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    good = _png(Image.fromarray(noise))  # noise: its pixel data is most of the file
    (root / "a" / "truncated.png").write_bytes(good[: len(good) * 3 // 4])
    (root / "a" / "text.png").write_bytes(b"not an image at all")
    (root / "b" / "empty.jpg").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("a note")
    (root / "stray.png").write_bytes(good)  # beside the class folders: skipped, never given a class
    prepared = prepare(str(root), Preprocessing(28, 1), cache_dir=tmp_path / "c", say=_quiet)
    skipped = prepared.manifest["skipped"]
    assert prepared.images.shape[0] == 8 and prepared.labels.tolist() == [0] * 4 + [1] * 4
    assert skipped == {
        "corrupt or truncated (OSError)": 1,
        "not an image (Pillow cannot identify it)": 1,
        "empty file": 1,
        "not a PNG, JPEG or WebP file": 1,
        "beside the class folders, in none of them": 1,
    }
    assert prepared.manifest["skipped_examples"]["empty file"] == ["b/empty.jpg"]
    assert "skipped 5" in prepared.summary()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "no files in it"),
        (lambda root: (root.mkdir(), (root / "x.csv").write_text("1,2")), "no PNG, JPEG or WebP image"),
        (lambda root: (root.mkdir(), (root / "x.png").write_bytes(b"junk")), "none of its 1 file"),
    ],
    ids=["empty", "no-images", "nothing-decodes"],
)
def test_a_folder_without_usable_images_is_one_line(tmp_path, make, message):
    make(tmp_path / "src")
    cfg = _cfg(tmp_path / "src")
    with pytest.raises(DatasetNotFoundError, match=message) as err:
        check_available(cfg.data)  # what api.train and api.sweep run first, then the preflight
        check_components(cfg)
    assert "\n" not in str(err.value)


def test_a_missing_folder_a_zip_that_is_not_a_zip_and_an_unreachable_bucket_are_one_line(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"PK but not really")
    cases = {
        str(tmp_path / "nowhere"): "no such folder",
        str(tmp_path / "fake.zip"): "not a zip file",
        # A closed port on this machine: no network needed, the same error path as a bucket out of reach.
        "s3://bucket/prefix?endpoint_override=127.0.0.1:9&scheme=http": "cannot reach it",
    }
    for root, message in cases.items():
        with pytest.raises(DatasetNotFoundError, match=message) as err:
            check_available(_cfg(root).data)
        assert "\n" not in str(err.value)
        assert main(["prepare", root, "--size", "28"]) == 2


def test_fewer_images_than_one_batch_and_one_class_only_fail_before_training(tmp_path):
    few = _grey_folder(tmp_path / "few", per_class=1)
    with pytest.raises(ConfigError, match=r"2 image\(s\), fewer than one batch \(train.batch_size 4\)"):
        check_components(_cfg(few))
    one = _grey_folder(tmp_path / "one", classes=("cats",))
    with pytest.raises(ConfigError, match="one class folder \\('cats'\\).*inception"):
        check_components(_cfg(one))
    flat = tmp_path / "flat"
    flat.mkdir()
    for j in range(4):
        Image.new("L", (8, 8), j).save(flat / f"{j}.png")
    with pytest.raises(ConfigError, match="no class subfolders"):
        check_components(_cfg(flat))


def test_a_size_the_model_cannot_build_fails_before_anything_is_decoded(tmp_path):
    from gan_ray.settings import cache_dir

    root = _grey_folder(tmp_path / "src")
    with pytest.raises(ConfigError, match=r"builds images of side \[8, 28, 32, 64\], not 128"):
        validate_config({"data": {"name": "folder", "root": str(root), "image_size": 128}})
    assert not list((cache_dir() / "prepared").glob("folder-*-3x128x128-*"))


def test_an_unlabelled_folder_without_inception_weights_says_so_before_training(tmp_path, monkeypatch):
    from gan_ray.errors import FeatureExtractorUnavailable

    monkeypatch.setenv("GAN_RAY_INCEPTION_WEIGHTS", str(tmp_path / "absent.pth"))
    root = _grey_folder(tmp_path / "src")
    cfg = validate_config(
        {
            "data": {"name": "folder", "root": str(root), "image_size": 28, "labels": "none"},
            "metrics": {"features": "inception"},
        }
    )
    with pytest.raises(FeatureExtractorUnavailable, match="inception"):
        check_components(cfg)


def test_a_source_changed_after_it_was_prepared_is_decoded_again_and_the_change_said(tmp_path):
    root = _grey_folder(tmp_path / "src")
    lines: list[str] = []
    first = prepare(str(root), Preprocessing(28, 1), cache_dir=tmp_path / "c", say=lines.append)
    again = prepare(str(root), Preprocessing(28, 1), cache_dir=tmp_path / "c", say=lines.append)
    assert again.path == first.path and not any(line.startswith("decoding") for line in lines[2:])
    time.sleep(0.01)
    Image.new("L", (8, 8), 200).save(root / "a" / "0.png")  # modified
    Image.new("L", (8, 8), 201).save(root / "b" / "new.png")  # added
    (root / "b" / "3.png").unlink()  # removed
    lines.clear()
    changed = prepare(str(root), Preprocessing(28, 1), cache_dir=tmp_path / "c", say=lines.append)
    assert changed.path != first.path and changed.images[0, 0, 0, 0] == 200
    assert any("changed since it was prepared (1 added, 1 removed, 1 modified)" in line for line in lines)
    assert read_prepared(first.path).images[0, 0, 0, 0] == 40  # the earlier file is left whole


def test_a_prepared_file_with_other_preprocessing_is_refused(tmp_path):
    root = _grey_folder(tmp_path / "src")
    out = tmp_path / "set.npy"
    assert main(["prepare", str(root), "--size", "28", "--channels", "1", "--out", str(out)]) == 0
    spec = DataConfig(name="folder", prepared=str(out), image_size=32, channels=1)
    with pytest.raises(DatasetNotFoundError, match="prepared with another size 28 \\(config: 32\\)"):
        load_prepared(spec)
    ok = load_prepared(DataConfig(name="folder", prepared=str(out), image_size=28, channels=1))
    assert ok.images.shape == (8, 1, 28, 28)
    (tmp_path / "cut.npy").write_bytes(out.read_bytes()[:-10])
    with pytest.raises(DatasetNotFoundError, match="not a prepared image file"):
        read_prepared(tmp_path / "cut.npy")


def test_folder_fields_are_checked_in_the_config():
    with pytest.raises(ConfigError, match="data.image_size is required for dataset 'folder'"):
        validate_config({"data": {"name": "folder", "root": "/x"}})
    with pytest.raises(ConfigError, match="data.root is required for dataset 'folder'"):
        validate_config({"data": {"name": "folder", "image_size": 64}})
    with pytest.raises(ConfigError, match="data.channels applies to dataset 'folder' only"):
        validate_config({"data": {"name": "digits", "channels": 1}})
    with pytest.raises(ConfigError, match="trains on the labels of 'folder', which has none"):
        validate_config({"data": {"name": "folder", "root": "/x", "image_size": 64, "labels": "none"}})
    big = validate_config(
        {"data": {"name": "folder", "root": "/x", "image_size": 128}, "model": {"name": "resnet"}}
    )
    assert data_shape(big.data) == (3, 128, 128)


# --- batches: mirror, and the host-memory stream --------------------------------------------------------


def test_mirror_flips_about_half_of_the_drawn_images():
    left = torch.zeros(1, 1, 2, 2, dtype=torch.uint8)
    left[..., 0] = 255  # white left column: flipped, a white right column
    batch = TensorSource(left, mirror=True).sample(2000, generator=torch.Generator().manual_seed(0))
    flipped = (batch[:, 0, 0, 1] == 1).float().mean().item()
    assert 0.45 < flipped < 0.55
    assert torch.equal(TensorSource(left).sample(8)[:, 0, 0, 0], torch.ones(8))


def test_a_host_source_draws_rows_of_the_data_as_floats():
    data = torch.arange(50 * 4, dtype=torch.uint8).reshape(50, 1, 2, 2)
    source = HostSource(data, "cpu")
    assert not source.graph_safe
    first, second = source.sample(64), source.sample(64)
    rows = {tuple(r) for r in (data.float() / 127.5 - 1).flatten(1).tolist()}
    assert all(tuple(r) in rows for r in torch.cat([first, second]).flatten(1).tolist())
    assert not torch.equal(first, second)  # the staging buffers do not alias the batches handed out


# --- class-conditional training on a folder's class subfolders ----------------------------------------------


def test_a_conditional_model_on_a_folder_gets_its_classes_and_their_right_labels(tmp_path):
    """The folder's class subfolders are the conditional model's classes: G and D are built for their
    count, and each drawn real image comes with its own folder's label (class i's squares are 40 (i + 1)
    grey), kept as uint8 on the device and made floats per batch."""
    from gan_ray.data.labelled import make_labelled_source
    from gan_ray.training.loop import build_training, run_loop

    root = _grey_folder(tmp_path / "src", classes=("a", "b", "c"))
    cfg = _cfg(root).with_overrides(
        {"model.name": "dcgan", "model.conditional": True, "train.steps": 2, "train.eval_every": 2}
    )
    check_components(cfg)
    assert cfg.num_classes == 3
    source = make_labelled_source(cfg.data)
    assert source.data.dtype == torch.uint8
    images, labels = source.sample_labelled(64, torch.Generator().manual_seed(0))
    assert images.dtype == torch.float32 and set(labels.tolist()) == {0, 1, 2}
    expected = (40.0 * (labels + 1)) / 127.5 - 1.0
    assert torch.allclose(images.mean(dim=(1, 2, 3)), expected, atol=1e-5)
    training = build_training(cfg)
    (report,) = list(run_loop(training))
    assert report.step == 2
    samples = training.sample()
    assert samples.shape[1:] == (1, 28, 28)


def test_a_conditional_model_on_a_folder_without_classes_is_one_line(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for j in range(4):
        Image.new("L", (8, 8), j).save(flat / f"{j}.png")
    cfg = _cfg(flat).with_overrides({"model.name": "dcgan", "model.conditional": True})
    with pytest.raises(ConfigError, match="model.conditional true: .* no class subfolders"):
        check_components(cfg)
    with pytest.raises(ConfigError, match="data.labels 'none' drops the folder's"):
        validate_config(
            {
                "data": {"name": "folder", "root": str(flat), "image_size": 28, "labels": "none"},
                "model": {"name": "dcgan", "conditional": True},
                "metrics": {"features": "inception"},
            }
        )
