"""Image decoding (Ray-free) and the one resize of a corpus: encoded bytes or pixel arrays -> uint8 (c, s, s).

The only place in the project that decodes images. Every image is made square once, before it
is stored: the shorter side is resized to ``size`` (PIL bilinear, which low-pass filters when
shrinking, as torchvision's ``Resize(antialias=True)``), then the centre ``size`` x ``size`` is
cut out (torchvision ``Resize(size)`` + ``CenterCrop(size)``). The random crops of the view
recipes are taken from this square.

Colour modes are converted, never dropped: palette, CMYK, YCbCr, 1-bit -> RGB via PIL; 16-/32-bit
grayscale ("I;16", "I", "F") is scaled to 8 bits (16-bit values / 257); an alpha channel (RGBA,
LA, PA, palette transparency) is composited on white (the pixels under transparency are
arbitrary, often black); RGB -> L uses PIL's ITU-R 601-2 luma. Orientation follows EXIF.
"""

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class BadImageError(ValueError):
    """Input that is not a usable image; the message is the reason (empty, unreadable, truncated)."""


def decode_image(data: bytes, size: int, channels: int) -> np.ndarray:
    """Decode one encoded image (JPEG, PNG, WebP, anything PIL reads) and make it square.

    Args:
        data: the encoded file's bytes.
        size: output side.
        channels: 3 (RGB) or 1 (L).

    Returns:
        (channels, size, size) uint8 image.

    Raises:
        BadImageError: zero bytes, not an image, or truncated / corrupt pixel data.
    """
    return square(to_mode(open_image(data, size), channels), size)


def decode_shrunk(data: bytes, channels: int, side: int) -> np.ndarray:
    """Decode one image at its own aspect ratio, its shorter side at most ``side``.

    What the streamed path crops views from (random resized crops of the whole image, as
    torchvision's ``RandomResizedCrop``): JPEGs shrink in the DCT domain while decoding (draft
    mode), then anything larger is resized (PIL bilinear with its low-pass filter) so the shorter
    side is ``side``; smaller images keep their size.

    Returns:
        (channels, h, w) uint8 image with ``min(h, w) <= side``.

    Raises:
        BadImageError: as ``decode_image``.
    """
    image = to_mode(open_image(data, side), channels)
    w, h = image.size
    if min(w, h) > side:
        scale = side / min(w, h)
        image = image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def open_image(data: bytes, draft_side: int) -> Image.Image:
    """The decoded, EXIF-oriented PIL image; a JPEG shrinks by 2^k while both sides stay >= ``draft_side``.

    Raises:
        BadImageError: zero bytes, not an image, or truncated / corrupt pixel data.
    """
    if data is None or len(data) == 0:
        raise BadImageError("empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
        if image.format == "JPEG":
            image.draft(None, (draft_side, draft_side))  # DCT-domain shrink by 2^k, both sides stay >= it
        image.load()  # decode now: truncated data raises here, not later
    except UnidentifiedImageError:
        raise BadImageError("unreadable: not an image format PIL recognises") from None
    except Exception as exc:  # noqa: BLE001 - PIL raises many types on corrupt input; all mean "bad"
        raise BadImageError(f"unreadable: {type(exc).__name__}: {exc}") from None
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a malformed EXIF block keeps the stored orientation
        pass
    return image


def to_mode(image: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> "RGB" (channels 3) or "L" (channels 1), see the module docstring."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    target = "RGB" if channels == 3 else "L"
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16") or pixels.max(initial=0) > 255:
            pixels = pixels / 257.0  # 16-bit -> 8-bit
        image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, image.convert("RGBA"))
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    return image if image.mode == target else image.convert(target)


def square(image: Image.Image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bilinear, antialiased), then centre-crop.

    Args:
        image: a PIL "RGB" or "L" image of any size.
        size: output side.

    Returns:
        (c, size, size) uint8, c = 3 for RGB and 1 for L.
    """
    w, h = image.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    pixels = np.asarray(image, dtype=np.uint8)  # (s, s) or (s, s, 3)
    return pixels[None].copy() if pixels.ndim == 2 else np.ascontiguousarray(pixels.transpose(2, 0, 1))


def square_array(pixels: np.ndarray, size: int, channels: int) -> np.ndarray:
    """A raw uint8 image array (h, w) or (h, w, c) -> (channels, size, size) uint8, as ``square``."""
    if pixels.ndim == 2 and pixels.shape == (size, size):
        return np.repeat(pixels[None], channels, axis=0)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    image = Image.fromarray(np.ascontiguousarray(pixels), "L" if pixels.ndim == 2 else "RGB")
    return square(to_mode(image, channels), size)


def fingerprint(data: bytes | str) -> int:
    """A stable non-negative 63-bit key of a row's bytes or relative path (seeds, held-out split)."""
    raw = data.encode() if isinstance(data, str) else (data or b"")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "big") >> 1


def held_out(keys: np.ndarray, fraction: float) -> np.ndarray:
    """(n,) bool: rows in the deterministic held-out split, ``key mod 10^4 < fraction * 10^4``."""
    return np.asarray(keys) % 10_000 < round(fraction * 10_000)


def _encoded(batch: dict[str, np.ndarray], i: int) -> tuple[bytes, str]:
    """Row ``i``'s encoded bytes and its source (for reports); reads the file for path rows."""
    if "bytes" in batch:
        return batch["bytes"][i], str(batch["path"][i])
    path = str(batch["path"][i])
    try:
        return Path(path).read_bytes(), path
    except OSError as exc:
        raise BadImageError(f"unreadable: {exc.strerror or exc}") from None


def decode_batch(batch: dict[str, np.ndarray], size: int, channels: int) -> dict[str, np.ndarray]:
    """Decode a batch of raw corpus rows (the Ray Data decode step; Ray-free itself).

    Args:
        batch: optional ``label`` (n,) integers (absent or null -> -1) and one of: ``pixels``
            (n, h, w[, c]) uint8 arrays with ``key`` (n,) int64; ``path`` (n,) files with
            ``key``; ``bytes`` (n,) encoded images with ``path`` (n,) their source (the key is
            then the bytes' fingerprint).
        size: output side.
        channels: output channels (1 or 3).

    Returns:
        ``image`` (n, channels, size, size) uint8 (zeros on bad rows), ``label`` (n,) int64,
        ``key`` (n,) int64, ``error`` (n,) str ("" when fine), ``bad_path`` (n,) str (the
        source of a bad row, "" otherwise).
    """
    n = len(next(iter(batch.values())))
    images = np.zeros((n, channels, size, size), dtype=np.uint8)
    errors, bad_paths = [""] * n, [""] * n
    keys = np.asarray(batch["key"] if "key" in batch else [fingerprint(b) for b in batch["bytes"]], np.int64)
    for i in range(n):
        if "pixels" in batch:
            images[i] = square_array(np.asarray(batch["pixels"][i]), size, channels)
            continue
        source = str(batch["path"][i])
        try:
            data, source = _encoded(batch, i)
            images[i] = decode_image(data, size, channels)
        except BadImageError as exc:
            errors[i], bad_paths[i] = str(exc), source
    labels = np.asarray(batch["label"], dtype=np.float64) if "label" in batch else np.full(n, -1.0)
    labels = np.where(np.isnan(labels), -1, labels).astype(np.int64)  # Arrow nulls arrive as NaN
    return {
        "image": images,
        "label": labels,
        "key": keys,
        "error": np.array(errors, dtype=object),
        "bad_path": np.array(bad_paths, dtype=object),
    }
