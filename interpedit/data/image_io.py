"""Robust image loading: any file Pillow reads becomes an RGB uint8 tensor in its displayed orientation.

Conversions (each one is reported by ``ImageInfo.notes`` so that a folder checker can list them):

- grayscale (``1``, ``L``) is replicated to three channels;
- 16-bit grayscale (``I;16*``, and ``I`` which Pillow uses for 16-bit PNG/TIFF data) is *scaled* to 8 bits,
  ``round(v * 255 / 65535)``, never clipped (clipping would turn most of a 16-bit image white);
- transparency (``RGBA``, ``LA``, ``PA``, palette or grey/RGB images with a ``tRNS`` key) is composited
  over ``background``, white by default, so that transparent pixels do not become arbitrary colours;
- CMYK and other colour modes go through Pillow's ``convert("RGB")`` (no ICC colour management);
- the EXIF orientation tag is applied (``ImageOps.exif_transpose``): masks are expected in this displayed
  orientation, which is also the one every viewer and SAM's own loader use.

16-bit colour PNGs are reduced to 8 bits by Pillow itself, which keeps the high byte (``floor(v / 256)``);
that is off by at most one level from rounding and is noted as ``16-bit``.

Corrupt and truncated files raise ``ImageLoadError`` naming the file. ``ImageFile.LOAD_TRUNCATED_IMAGES`` is
deliberately left off: a half-decoded image would train on grey padding without anyone noticing.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from interpedit.user_errors import UserError

WHITE: tuple[int, int, int] = (255, 255, 255)
"""Default background that transparent pixels are composited over."""

# Orientations 5-8 swap width and height (they include a transpose).
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
_GRAYSCALE_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
# Exceptions Pillow raises for broken files (decoders raise OSError, the PNG verifier SyntaxError,
# some parsers struct.error, zlib.error, EOFError or ValueError).
_PIL_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, UnidentifiedImageError)


class DataFileError(UserError, ValueError):
    """A dataset file that cannot be used: ``path`` names it, ``reason`` says why in words."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ImageLoadError(DataFileError):
    """An image file that is unreadable, corrupt or truncated."""


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header says, read without decoding its pixels.

    ``height``/``width`` are the displayed size (after EXIF orientation); ``stored_height``/``stored_width``
    the size of the pixel array in the file.
    """

    path: Path
    height: int
    width: int
    stored_height: int
    stored_width: int
    mode: str
    orientation: int
    has_transparency: bool
    high_bit_depth: bool

    @property
    def size(self) -> tuple[int, int]:
        """Displayed ``(height, width)``."""
        return self.height, self.width

    @property
    def stored_size(self) -> tuple[int, int]:
        """``(height, width)`` of the pixel array before EXIF orientation."""
        return self.stored_height, self.stored_width

    @property
    def notes(self) -> list[str]:
        """Conversions ``load_image`` will apply, in words (empty for a plain 8-bit RGB image)."""
        notes = []
        if self.mode in _GRAYSCALE_MODES:
            notes.append(f"grayscale (mode {self.mode}), replicated to RGB")
        if self.high_bit_depth:
            notes.append("16-bit, scaled to 8 bits")
        if self.has_transparency:
            notes.append(f"transparency (mode {self.mode}), composited over a white background")
        if self.mode == "CMYK":
            notes.append("CMYK, converted to RGB without colour management")
        elif self.mode not in _GRAYSCALE_MODES | _ALPHA_MODES | {"RGB", "P"}:
            notes.append(f"mode {self.mode}, converted to RGB")
        if self.orientation != 1:
            notes.append(
                f"EXIF orientation {self.orientation}, turned to its displayed orientation "
                f"({self.stored_height}x{self.stored_width} -> {self.height}x{self.width}, height x width)"
            )
        return notes


def describe_read_error(exc: BaseException, path: Path) -> str:
    """A short reason for a Pillow read failure: ``truncated image (...)`` or ``corrupt image (...)``."""
    message = str(exc).replace(f"'{path}'", f"'{path.name}'").replace(str(path), path.name) or type(exc).__name__
    if isinstance(exc, EOFError) or "truncat" in message.lower():
        return f"truncated image ({message})"
    return f"corrupt image ({message})"


def _exif_orientation(image: Image.Image) -> int:
    # PngImageFile.getexif() decodes the whole image when the eXIf chunk is not in the header; reading the
    # header must stay cheap, so a PNG only counts as rotated when its EXIF is before the pixel data
    # (load_image still applies a late eXIf chunk, and the dataset then reports the size change).
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return orientation if orientation in range(1, 9) else 1


def _is_high_bit_depth(image: Image.Image) -> bool:
    if image.mode.startswith("I;16") or image.mode == "I":
        return True
    # Pillow opens 16-bit colour PNGs as 8-bit RGB(A); the tile's raw mode still says 16.
    for tile in image.tile or []:
        raw_mode = tile.args[0] if isinstance(tile.args, tuple) and tile.args else tile.args
        if isinstance(raw_mode, str) and raw_mode.endswith(";16B"):
            return True
    return False


def read_image_info(path: str | Path) -> ImageInfo:
    """Read an image's header: size, orientation and mode, without decoding the pixels.

    Raises:
        ImageLoadError: the file is missing, not an image, or its header is broken.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(path, "image file does not exist")
    try:
        with Image.open(path) as image:
            stored_width, stored_height = image.size
            orientation = _exif_orientation(image)
            mode = image.mode
            has_transparency = mode in _ALPHA_MODES or "transparency" in image.info
            high_bit_depth = _is_high_bit_depth(image)
    except _PIL_READ_ERRORS as exc:
        raise ImageLoadError(path, describe_read_error(exc, path)) from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"image too large to decode safely ({exc})") from exc
    if stored_width <= 0 or stored_height <= 0:
        raise ImageLoadError(path, f"corrupt image (size {stored_height}x{stored_width})")
    height, width = (
        (stored_width, stored_height) if orientation in _SWAPPING_ORIENTATIONS else (stored_height, stored_width)
    )
    return ImageInfo(
        path=path,
        height=height,
        width=width,
        stored_height=stored_height,
        stored_width=stored_width,
        mode=mode,
        orientation=orientation,
        has_transparency=has_transparency,
        high_bit_depth=high_bit_depth,
    )


def open_verified(path: str | Path) -> Image.Image:
    """Open an image and decode it fully, after Pillow's ``verify()`` integrity check.

    Returns:
        The loaded (not yet converted or oriented) Pillow image.

    Raises:
        ImageLoadError: missing, corrupt or truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(path, "image file does not exist")
    try:
        # verify() checks chunk CRCs (PNG) without decoding but leaves the image unusable, hence two opens.
        with Image.open(path) as image:
            image.verify()
        image = Image.open(path)
        image.load()
    except _PIL_READ_ERRORS as exc:
        raise ImageLoadError(path, describe_read_error(exc, path)) from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(path, f"image too large to decode safely ({exc})") from exc
    return image


def _scale_16_bit(values: np.ndarray, path: Path | None) -> np.ndarray:
    values = values.astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        where = f"{path}: " if path is not None else ""
        raise ValueError(
            f"{where}integer image values span {values.min()}..{values.max()}, outside the 16-bit range "
            "0..65535; convert the file to 8- or 16-bit first"
        )
    return ((values * 255 + 32767) // 65535).astype(np.uint8)


def _composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    rgb = rgba[..., :3].astype(np.uint32)
    alpha = rgba[..., 3:4].astype(np.uint32)
    back = np.asarray(background, dtype=np.uint32)
    # Integer "over" compositing with rounding: alpha 255 keeps the pixel, alpha 0 gives the background.
    return ((rgb * alpha + back * (255 - alpha) + 127) // 255).astype(np.uint8)


def to_rgb_array(
    image: Image.Image, background: tuple[int, int, int] = WHITE, *, path: Path | None = None
) -> np.ndarray:
    """Convert a loaded Pillow image of any mode to RGB (no orientation change).

    Args:
        image: a loaded Pillow image.
        background: RGB colour transparent pixels are composited over.
        path: the file, for error messages.

    Returns:
        (H, W, 3) uint8.
    """
    mode = image.mode
    if mode.startswith("I;16") or mode == "I":
        gray = _scale_16_bit(np.asarray(image), path)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        where = f"{path}: " if path is not None else ""
        raise ValueError(f"{where}floating-point images (mode F) have no fixed range; convert them to 8 or 16 bit")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        return _composite(np.asarray(image.convert("RGBA")), background)
    if mode != "RGB":
        image = image.convert("RGB")
    return np.array(image, dtype=np.uint8)


def load_image(path: str | Path, background: tuple[int, int, int] = WHITE) -> torch.Tensor:
    """Load an image file as RGB in its displayed (EXIF-oriented) orientation.

    Args:
        path: image file.
        background: RGB colour transparent pixels are composited over.

    Returns:
        (3, H, W) uint8.

    Raises:
        ImageLoadError: missing, corrupt, truncated or unconvertible file.
    """
    path = Path(path)
    image = open_verified(path)
    try:
        oriented = ImageOps.exif_transpose(image)
        array = to_rgb_array(oriented, background, path=path)
    except ValueError as exc:
        raise ImageLoadError(path, str(exc).removeprefix(f"{path}: ")) from exc
    except _PIL_READ_ERRORS as exc:
        raise ImageLoadError(path, describe_read_error(exc, path)) from exc
    finally:
        image.close()
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
