"""Image loading: every mode becomes the right RGB uint8 pixels; broken files fail naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from interpedit.data.image_io import ImageLoadError, load_image, read_image_info
from tests.segmented_folder_builders import write_image


def test_rgb_png_round_trips_exactly(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    loaded = load_image(write_image(tmp_path / "x.png", pixels))
    assert loaded.dtype == torch.uint8 and loaded.shape == (3, 7, 9)
    np.testing.assert_array_equal(loaded.permute(1, 2, 0).numpy(), pixels)


def test_grayscale_is_replicated_to_three_channels(tmp_path):
    gray = np.arange(60, dtype=np.uint8).reshape(6, 10) * 4
    loaded = load_image(write_image(tmp_path / "g.png", gray)).numpy()
    for channel in loaded:
        np.testing.assert_array_equal(channel, gray)
    assert any("grayscale" in note for note in read_image_info(tmp_path / "g.png").notes)


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32896, 65535, 65280]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    loaded = load_image(path)[0].numpy()
    # round(v * 255 / 65535): 1000 -> 4 (clipping would give 255), 32896 = 128 * 257 -> 128.
    np.testing.assert_array_equal(loaded, [[0, 1, 4, 128, 255, 254]])
    notes = read_image_info(path).notes
    assert any("16-bit" in note for note in notes) and any("grayscale" in note for note in notes)


def test_32_bit_integer_image_is_read_as_16_bit_and_out_of_range_values_fail(tmp_path):
    path = tmp_path / "int.tif"
    Image.fromarray(np.array([[0, 65535, 6554]], dtype=np.int32)).save(path)
    np.testing.assert_array_equal(load_image(path)[1].numpy(), [[0, 255, 26]])
    bad = tmp_path / "wide.tif"
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(bad)
    with pytest.raises(ImageLoadError, match=r"wide\.tif.*outside the 16-bit range"):
        load_image(bad)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.array([[[255, 0, 0, 255], [255, 0, 0, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    loaded = load_image(write_image(tmp_path / "a.png", rgba)).permute(1, 2, 0).numpy()
    # opaque red stays red, transparent becomes the white background, half-transparent black is mid grey.
    np.testing.assert_array_equal(loaded[0], [[255, 0, 0], [255, 255, 255], [127, 127, 127]])
    assert any("transparency" in note for note in read_image_info(tmp_path / "a.png").notes)


def test_gray_alpha_and_palette_transparency_are_composited(tmp_path):
    la = Image.fromarray(np.array([[[10, 255], [10, 0]]], dtype=np.uint8), mode="LA")
    np.testing.assert_array_equal(load_image(write_image(tmp_path / "la.png", la))[0].numpy(), [[10, 255]])
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 255] + [255, 0, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 0
    path = tmp_path / "p.png"
    palette.save(path, transparency=0)
    loaded = load_image(path).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(loaded[0], [[255, 255, 255], [255, 0, 0]])


def test_cmyk_is_converted(tmp_path):
    cmyk = Image.new("CMYK", (2, 1), (255, 0, 0, 0))  # pure cyan
    loaded = load_image(write_image(tmp_path / "c.jpg", cmyk)).permute(1, 2, 0).numpy()
    assert loaded[0, 0, 0] < 20 and loaded[0, 0, 1] > 235 and loaded[0, 0, 2] > 235
    assert any("CMYK" in note for note in read_image_info(tmp_path / "c.jpg").notes)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied_and_reported_by_the_header(tmp_path, suffix):
    stored = np.zeros((8, 12, 3), dtype=np.uint8)
    stored[:4, :4] = 255  # a white block in the stored top-left corner
    path = write_image(tmp_path / f"rotated{suffix}", stored, exif_orientation=6)
    info = read_image_info(path)
    assert (info.height, info.width, info.stored_height, info.stored_width) == (12, 8, 8, 12)
    assert any("EXIF orientation 6" in note for note in info.notes)
    loaded = load_image(path)[0].numpy()
    # Orientation 6 means "rotate 90 degrees clockwise to display": the block ends up top right.
    assert loaded.shape == (12, 8)
    np.testing.assert_array_equal(loaded > 128, np.rot90(stored[..., 0], k=-1) > 128)


def test_corrupt_file_fails_naming_it(tmp_path):
    path = tmp_path / "junk.jpg"
    path.write_bytes(b"this is not an image")
    with pytest.raises(ImageLoadError, match=r"junk\.jpg: corrupt image") as caught:
        load_image(path)
    assert caught.value.path == path
    with pytest.raises(ImageLoadError, match="corrupt image"):
        read_image_info(path)


def test_png_with_bad_checksum_is_corrupt(tmp_path):
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    data = bytearray(write_image(tmp_path / "ok.png", pixels).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "flipped.png").write_bytes(bytes(data))
    with pytest.raises(ImageLoadError, match=r"flipped\.png: corrupt image"):
        load_image(tmp_path / "flipped.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_truncated_file_fails_naming_it(tmp_path, suffix):
    pixels = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = write_image(tmp_path / f"full{suffix}", pixels).read_bytes()
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(data[: len(data) * 2 // 3])
    read_image_info(path)  # the header is intact: only decoding finds the damage
    with pytest.raises(ImageLoadError, match=rf"cut\{suffix}: truncated image"):
        load_image(path)


def test_missing_file_fails_naming_it(tmp_path):
    with pytest.raises(ImageLoadError, match=r"nowhere\.png: image file does not exist"):
        load_image(tmp_path / "nowhere.png")
