"""Images re-encoded by Pillow: the stored copy keeps the pixels and nothing else (EXIF, GPS,
comments, colour-profile tricks), turned upright first; beside it a thumbnail for the page and a
copy sized for the models (their limits: a long edge of 1568 px reads best, 5 MB at most)."""

from __future__ import annotations

import io
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


def renditions(source, *, fmt: str, max_pixels: int) -> Renditions:
    """The stored copy, the thumbnail and the model's copy of the image in ``source`` (a file
    object), whose format the bytes already said (``fmt``: PNG, JPEG, GIF, WEBP)."""
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source, formats=[fmt]) as opened:
                if opened.width * opened.height > max_pixels:
                    raise BadImage(f"The image is {opened.width}×{opened.height} pixels, more than the {max_pixels:,} allowed.")
                opened.load()
                frames = getattr(opened, "n_frames", 1)
                image = ImageOps.exif_transpose(opened) if fmt in ("JPEG", "WEBP", "PNG") else opened.copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadImage(f"The image has more pixels than the {max_pixels:,} allowed.") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadImage("The image could not be read (is it damaged or cut short?).") from exc
    width, height = image.size
    if fmt == "JPEG":
        stored = _save(_flat(image, alpha_ok=False), "JPEG", quality=92, optimize=True)
    elif fmt == "PNG":
        stored = _save(_flat(image, alpha_ok=True), "PNG", optimize=False)
    elif fmt == "WEBP":
        stored = _save(_flat(image, alpha_ok=True), "WEBP", quality=92)
    else:  # GIF: its first frame, as a still (an animation's frames are not kept)
        stored = _save(image.convert("RGBA") if frames == 1 and image.mode == "P" else image, "GIF")
    thumb = _flat(image, alpha_ok=True).copy()
    thumb.thumbnail((THUMBNAIL_EDGE, THUMBNAIL_EDGE))
    thumbnail = _save(thumb, "WEBP", quality=80)
    model = _flat(image, alpha_ok=fmt != "JPEG").copy()
    model.thumbnail((MODEL_EDGE, MODEL_EDGE))
    if fmt == "JPEG":
        model_bytes, model_type = _save(model, "JPEG", quality=88), "image/jpeg"
    else:
        model_bytes, model_type = _save(model, "PNG"), "image/png"
    tokens = max(1, round(model.width * model.height / PIXELS_PER_TOKEN))
    return Renditions(stored, thumbnail, model_bytes, model_type, width, height, tokens)
