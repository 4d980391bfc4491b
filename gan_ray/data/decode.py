"""One image file's bytes to a uint8 array (C, N, N): modes converted as ``channels`` says, the short side
resized to N and the centre cropped. Pure functions of bytes, so a thread pool can run them side by side.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

#: The file types a folder dataset reads (by suffix, case-insensitive); other files are counted skips.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
#: Bumped when decoding changes what it makes from the same bytes: part of the prepared file's cache key.
DECODE_VERSION = 1


class SkippedImage(Exception):
    """This file is not used; ``str(err)`` is the reason the manifest counts it under."""


def _to_8bit(image):
    """16- and 32-bit grey (``I;16*``, ``I``) and float (``F``) images as 8-bit ``L``: the 16-bit range
    scaled down (65535 -> 255), not clipped, so a 16-bit PNG does not come out white."""
    from PIL import Image

    if image.mode == "F":
        arr = np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255.0
    else:
        arr = np.clip(np.asarray(image, dtype=np.float64), 0, 65535) / 257.0
    return Image.fromarray(np.rint(arr).astype(np.uint8), "L")


def _convert(image, channels: int):
    """``image`` in mode ``L`` (1 channel) or ``RGB`` (3); transparency is laid over white."""
    from PIL import Image

    if image.mode.startswith("I") or image.mode == "F":
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("L" if channels == 1 else "RGB")


def decode(data: bytes, size: int, channels: int) -> tuple[np.ndarray, str, tuple[int, int]]:
    """(the image as uint8 (channels, size, size), its mode in the file, its (width, height) in the file).

    Raises :class:`SkippedImage` for an empty file, one that is not an image, and a corrupt or truncated
    one (Pillow reads truncated files only as far as they go: that is refused, not half-grey).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise SkippedImage("empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            mode, dims = image.mode, image.size
            if image.format == "JPEG":
                image.draft("RGB" if channels == 3 else "L", (size, size))  # decode at >= size: much faster
            image.load()
    except UnidentifiedImageError:
        raise SkippedImage("not an image (Pillow cannot identify it)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SkippedImage("too many pixels (Pillow's decompression-bomb limit)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise SkippedImage(f"corrupt or truncated ({type(err).__name__})") from None
    fitted = ImageOps.fit(_convert(image, channels), (size, size), method=Image.Resampling.LANCZOS)
    arr = np.asarray(fitted, dtype=np.uint8)
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.ascontiguousarray(arr), mode, dims
