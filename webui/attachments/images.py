"""Images a user attaches or sends as a data URL: checked, decoded, scaled and re-encoded.

The format comes from the bytes, never from a file name: a PNG named ``photo.jpg`` is read as the
PNG it is. Accepted: PNG, JPEG, WebP and still GIF. Animated images (GIF, APNG, WebP) are refused
rather than cut to their first frame without a word: a model sees one picture, so the user picks
the frame. SVG is refused (it is a program that draws, not pixels: convert it to PNG).

The pixel count is read from the file's header by our own few lines of parsing, before Pillow
decodes anything, so a 200-megapixel PNG of a few kilobytes is refused at once without
allocating its pixels (and independently of Pillow's process-wide ``MAX_IMAGE_PIXELS``, which we
do not change). An image within the limits is decoded fully (a truncated or corrupt file fails
there), turned upright by its EXIF orientation, scaled down to fit ``max_side`` and re-encoded
without metadata: PNG for lossless sources (PNG, GIF, lossless WebP, anything with transparency),
JPEG quality 90 for lossy ones (JPEG, lossy WebP). The output is always PNG or JPEG, which every
vision loader can decode (llama.cpp's image reader has no WebP).
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import zlib
from typing import Any

from webui.attachments.types import ImageInput
from webui.errors import AttachmentError

#: Largest image file (or data URL's decoded bytes) accepted.
MAX_IMAGE_BYTES = 16 * 2**20
#: Largest image in pixels (50 MP: a phone's full-resolution photo); a PNG that size decodes to
#: at most 200 MB. Below Pillow's own decompression-bomb warning (89 MP), so Pillow never warns first.
MAX_IMAGE_PIXELS = 50_000_000
#: Longest side after scaling: vision encoders work at a few hundred to ~2000 pixels.
MAX_IMAGE_SIDE = 2048
JPEG_QUALITY = 90

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_GIF_SIGNATURES = (b"GIF87a", b"GIF89a")
#: JPEG start-of-frame markers (they carry the size); C4, C8 and CC are other segments.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
#: EXIF orientation -> the transpose that makes the picture upright (as Pillow's ImageOps.exif_transpose).
_ORIENTATION = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
                7: "TRANSVERSE", 8: "ROTATE_90"}  # fmt: skip
#: Formats we name when refusing them (leading bytes -> name).
_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "Photoshop (PSD)"),
    (b"\xff\x0a", "JPEG XL"),
    (b"\x00\x00\x00\x0cJXL ", "JPEG XL"),
    (b"%PDF-", "PDF"),
)
_HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"mif1": "HEIF", b"msf1": "HEIF",
                b"avif": "AVIF", b"avis": "AVIF"}  # fmt: skip
_MIME = {"PNG": "image/png", "JPEG": "image/jpeg"}


def read_image(
    name: str,
    data: bytes,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
    max_side: int = MAX_IMAGE_SIDE,
) -> ImageInput:
    """The image in ``data`` checked, upright, at most ``max_side`` pixels a side, as PNG or JPEG.

    ``name`` is only for messages and the result's ``name``; the bytes decide the format.
    """
    label = name.replace("\\", "/").rsplit("/", 1)[-1].strip() or "the image"
    if not data:
        raise AttachmentError(f"{label} is empty (0 bytes): it is not an image.")
    if len(data) > max_bytes:
        raise AttachmentError(
            f"{label} is {len(data) / 2**20:.1f} MB; images can be at most {max_bytes / 2**20:g} MB. "
            "Send a smaller or more compressed picture (JPEG)."
        )
    if is_svg(data) or label.lower().endswith(".svgz"):
        raise AttachmentError(f"{label} is an SVG image, which is not supported: convert it to PNG and attach that.")
    fmt, width, height, lossless = image_header(label, data)
    _check_pixels(label, width, height, max_pixels)
    image = _decode(label, data, fmt, max_pixels, max_side)
    try:
        return _encode(label, image, lossless, max_side)
    finally:
        image.close()


def looks_like_image(data: bytes) -> bool:
    """Whether ``data`` starts like a PNG, JPEG, GIF or WebP image, whatever its file is called."""
    return data.startswith((_PNG_SIGNATURE, _JPEG_SIGNATURE, *_GIF_SIGNATURES)) or (
        data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    )


def is_svg(data: bytes) -> bool:
    """True for SVG text (an XML document whose root is ``<svg``)."""
    head = data[:65536].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith(b"<") and b"<svg" in head


def image_header(label: str, data: bytes) -> tuple[str, int, int, bool]:
    """(Pillow format, width, height, lossless) read from the first bytes, before any decoding.

    Raises AttachmentError for a format we do not take (named where we know it) and for a header
    too short or broken to hold a size.
    """
    broken = AttachmentError(f"{label} is corrupt or truncated: its header cannot be read.")
    try:
        if data.startswith(_PNG_SIGNATURE):
            if data[12:16] != b"IHDR":
                raise broken
            width, height = struct.unpack(">II", data[16:24])
            return "PNG", width, height, True
        if data.startswith(_JPEG_SIGNATURE):
            width, height = _jpeg_size(data, broken)
            return "JPEG", width, height, False
        if data[:6] in _GIF_SIGNATURES:
            width, height = struct.unpack("<HH", data[6:10])
            return "GIF", width, height, True
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return ("WEBP", *_webp_size(data, broken))
    except struct.error:
        raise broken from None
    what = next((name for signature, name in _OTHER_FORMATS if data.startswith(signature)), "")
    if not what and data[4:8] == b"ftyp":
        what = _HEIF_BRANDS.get(data[8:12], "")
    if what:
        raise AttachmentError(
            f"{label} is a {what} file, which is not supported here: convert it to PNG or JPEG and attach that."
        )
    raise AttachmentError(
        f"{label} is not an image this app reads: its bytes are not PNG, JPEG, WebP or GIF "
        "(whatever its name says). Convert it to PNG or JPEG."
    )


def _jpeg_size(data: bytes, broken: AttachmentError) -> tuple[int, int]:
    pos = 2
    for _ in range(10_000):  # real files reach the frame header within a few dozen segments
        while data[pos : pos + 2] == b"\xff\xff":
            pos += 1  # fill bytes before a marker
        if pos + 4 > len(data) or data[pos] != 0xFF:
            break
        marker = data[pos + 1]
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return width, height
        pos += 2 + length
    raise broken


def _webp_size(data: bytes, broken: AttachmentError) -> tuple[int, int, bool]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        if data[23:26] != b"\x9d\x01\x2a":
            raise broken
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF, False
    if chunk == b"VP8L":
        if data[20:21] != b"\x2f":
            raise broken
        (bits,) = struct.unpack("<I", data[21:25])
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, True
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return width, height, _webp_has_chunk(data, b"VP8L")
    raise broken


def _webp_has_chunk(data: bytes, wanted: bytes) -> bool:
    pos = 12
    for _ in range(64):  # VP8X, ICCP, ANIM, EXIF, XMP, ALPH, VP8/VP8L: a handful in a real file
        if pos + 8 > len(data):
            return False
        kind = data[pos : pos + 4]
        if kind == wanted:
            return True
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        pos += 8 + size + (size & 1)
    return False


def _check_pixels(label: str, width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise AttachmentError(f"{label} is corrupt: it says it is {width}x{height} pixels.")
    if width * height > max_pixels:
        raise AttachmentError(
            f"{label} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); images can have at "
            f"most {max_pixels / 1e6:g} megapixels. Scale it down and attach it again."
        )


def _decode(label: str, data: bytes, fmt: str, max_pixels: int, max_side: int) -> Any:
    """The decoded picture (a PIL image; the caller closes it). Corrupt or truncated files fail here."""
    from PIL import Image

    corrupt = f"{label} is corrupt or truncated: it cannot be decoded as {fmt}"
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as probe:
            probe.verify()  # chunk checksums (PNG) without decoding pixels
        image = Image.open(io.BytesIO(data), formats=[fmt])
        try:
            _check_pixels(label, image.width, image.height, max_pixels)
            if getattr(image, "is_animated", False):  # GIF, APNG or WebP with more than one frame
                raise AttachmentError(
                    f"{label} is animated; models read a single picture. Attach one frame as PNG or JPEG."
                )
            if fmt == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale when that still covers the target size
                image.draft(None, _fit(image.size, max_side))
            image.load()
        except BaseException:
            image.close()
            raise
    except AttachmentError:
        raise
    except Image.DecompressionBombError as exc:  # only when max_pixels is above Pillow's own limit
        raise AttachmentError(f"{label} has too many pixels ({exc}).") from None
    except (
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        IndexError,
        KeyError,
        TypeError,
        struct.error,
        zlib.error,
    ) as exc:
        raise AttachmentError(f"{corrupt} ({exc}).") from None
    return image


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _encode(label: str, image: Any, lossless: bool, max_side: int) -> ImageInput:
    from PIL import Image

    orientation = image.getexif().get(0x0112, 1)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if image.mode.startswith("I;16") or image.mode == "I":  # 16-bit grey: scale to 8 bits, not clip
        image = image.convert("I").point(lambda v: v / 256).convert("L")
    elif image.mode not in ("L", "RGB", "RGBA", "LA") or (has_alpha and image.mode in ("L", "RGB")):
        image = image.convert("RGBA" if has_alpha else ("L" if image.mode in ("1", "F") else "RGB"))
    if max(image.size) > max_side:
        image = image.resize(_fit(image.size, max_side), Image.Resampling.LANCZOS)
    if orientation in _ORIENTATION:
        image = image.transpose(getattr(Image.Transpose, _ORIENTATION[orientation]))
    # Whatever the source carried (EXIF with GPS, XMP, comments, ICC, text chunks) stays behind.
    image.info = {}
    out = io.BytesIO()
    fmt = "PNG" if lossless or has_alpha else "JPEG"
    if fmt == "PNG":
        image.save(out, format="PNG", optimize=False, compress_level=6)
    else:
        image.save(out, format="JPEG", quality=JPEG_QUALITY)
    return ImageInput(data=out.getvalue(), mime=_MIME[fmt], width=image.width, height=image.height, name=label)


def parse_data_url(url: str, *, max_bytes: int = MAX_IMAGE_BYTES) -> tuple[str, bytes]:
    """(mime type, bytes) of a ``data:<mime>;base64,<data>`` URL; its size is bounded before decoding."""
    if not url[:5].lower() == "data:":
        raise AttachmentError("Not a data URL: it must start with 'data:' (e.g. data:image/png;base64,...).")
    head, comma, payload = url[5:].partition(",")
    if not comma:
        raise AttachmentError("The data URL is malformed: it has no comma before its data (data:image/png;base64,...).")
    params = [p.strip().lower() for p in head.split(";")]
    mime = params[0] or "text/plain"
    if "base64" not in params[1:]:
        raise AttachmentError(
            f"The data URL ({mime}) is not base64: send the image as data:{mime};base64,<base64 of the file>."
        )
    limit_chars = (max_bytes + 2) // 3 * 4
    if len(payload) > 2 * limit_chars:  # far too large even if half of it were line breaks
        raise _data_url_too_large(len(payload) * 3 // 4, max_bytes)
    payload = "".join(payload.split())
    if len(payload) > limit_chars + 4:
        raise _data_url_too_large(len(payload) * 3 // 4, max_bytes)
    if "-" in payload or "_" in payload:  # the URL-safe alphabet: same bytes, other two characters
        payload = payload.translate(str.maketrans("-_", "+/"))
    try:
        data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError(f"The data URL ({mime}) is not valid base64: encode the file again.") from None
    if len(data) > max_bytes:
        raise _data_url_too_large(len(data), max_bytes)
    if not data:
        raise AttachmentError(f"The data URL ({mime}) is empty: it carries no bytes.")
    return mime, data


def _data_url_too_large(size: int, max_bytes: int) -> AttachmentError:
    return AttachmentError(
        f"The image in the data URL is about {size / 2**20:.1f} MB; images can be at most "
        f"{max_bytes / 2**20:g} MB. Send a smaller or more compressed picture."
    )
