"""Images re-encoded by Pillow: the stored copy keeps the pixels and nothing else (EXIF, GPS,
comments, colour-profile tricks), turned upright first; beside it a thumbnail for the page and a
copy sized for the models (their limits: a long edge of 1568 px reads best, 5 MB at most)."""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

THUMBNAIL_EDGE = 320
MODEL_EDGE = 1568
# Anthropic's estimate of an image's tokens: width × height / 750 (at the size the model sees).
PIXELS_PER_TOKEN = 750


class BadImage(Exception):
    """Not an image Pillow can read whole, or larger than the pixels allowed (the reason says which)."""


@dataclass(frozen=True)
class Renditions:
    stored: bytes
    thumbnail: bytes  # WebP
    model: bytes
    model_content_type: str
    width: int
    height: int
    tokens: int


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _flat(image: Image.Image, *, alpha_ok: bool) -> Image.Image:
    """Pixels in a mode every encoder here takes (RGB, or RGBA where the format keeps alpha)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha and alpha_ok:
        return image.convert("RGBA")
    if has_alpha:
        background = Image.new("RGB", image.size, "white")
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB") if image.mode not in ("RGB", "L") else image


# Decoding holds an image's every pixel (a 48 MP photo: ~150 MB): a web process re-encodes two at
# a time, the rest wait their turn, so uploads at once cannot multiply its memory.
_AT_ONCE = threading.BoundedSemaphore(2)


def _sized(image: Image.Image, edge: int) -> Image.Image:
    """A new image at most ``edge`` pixels a side (never a full-size copy first)."""
    if max(image.size) <= edge:
        return image.copy()
    scale = edge / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    # reducing_gap: a cheap integer reduction first, then Lanczos (as Image.thumbnail does)
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def renditions(source, *, fmt: str, max_pixels: int) -> Renditions:
    """The stored copy, the thumbnail and the model's copy of the image in ``source`` (a file
    object), whose format the bytes already said (``fmt``: PNG, JPEG, GIF, WEBP)."""
    with _AT_ONCE:
        return _renditions(source, fmt=fmt, max_pixels=max_pixels)


def _renditions(source, *, fmt: str, max_pixels: int) -> Renditions:
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=[fmt]) as opened:
                if opened.width * opened.height > max_pixels:
                    raise BadImage(f"The image is {opened.width}×{opened.height} pixels, more than the {max_pixels:,} allowed.")
                opened.load()
                if fmt != "GIF":
                    ImageOps.exif_transpose(opened, in_place=True)  # upright, as the camera meant (no copy)
                original = opened
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"The image has more pixels than the {max_pixels:,} allowed.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImage("The image could not be read (is it damaged or cut short?).") from exc
    width, height = original.size
    # Saved from the pixels alone: an encoder writes what ``info`` still holds (a PNG its text, a
    # GIF its comment), so only what draws the pixels is kept; the colour profile too (without it a
    # wide-gamut photo's colours would shift), which says nothing of who or where.
    profile = original.info.get("icc_profile")
    original.info = {k: v for k, v in original.info.items() if k in ("transparency", "background")}
    if fmt == "GIF":  # its first frame, as a still, in its own palette (an animation's frames are not kept)
        stored = _save(original, "GIF")
    image = _flat(original, alpha_ok=fmt != "JPEG")
    image.info = {k: v for k, v in image.info.items() if k == "transparency"}
    colour = {"icc_profile": profile} if profile else {}
    if fmt == "JPEG":
        stored = _save(image, "JPEG", quality=92, optimize=True, **colour)
    elif fmt == "PNG":
        stored = _save(image, "PNG", **colour)
    elif fmt == "WEBP":
        stored = _save(image, "WEBP", quality=92, **colour)
    thumbnail = _save(_sized(image, THUMBNAIL_EDGE), "WEBP", quality=80)
    model = _sized(image, MODEL_EDGE)
    if fmt == "JPEG":
        model_bytes, model_type = _save(model, "JPEG", quality=88), "image/jpeg"
    else:
        model_bytes, model_type = _save(model, "PNG"), "image/png"
    tokens = max(1, round(model.width * model.height / PIXELS_PER_TOKEN))
    return Renditions(stored, thumbnail, model_bytes, model_type, width, height, tokens)
