"""Images attached to a message: real PNG, JPEG, WebP and GIF files made with Pillow (and a few by hand).

The format comes from the bytes, the pixel limit is checked from the header before anything is
decoded, large pictures come back scaled, upright and without metadata.
"""

from __future__ import annotations

import base64
import io
import struct
import time
import tracemalloc
import zlib

import pytest
from PIL import Image

from webui.attachments.images import (
    MAX_IMAGE_SIDE,
    image_header,
    is_svg,
    parse_data_url,
    read_image,
)
from webui.errors import AttachmentError


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def gradient(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A picture with real detail (a flat colour would hide scaling and decoding mistakes)."""
    image = Image.linear_gradient("L").resize((width, height))
    if mode == "RGB":
        return Image.merge("RGB", (image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), image.rotate(90)))
    return image.convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(width: int, height: int) -> bytes:
    """A valid 1-bit grey PNG of width x height, all black: a few kilobytes for hundreds of megapixels."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = compressor.compress(row * height) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def reopen(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def refused(name: str, data: bytes, **kwargs) -> str:
    with pytest.raises(AttachmentError) as info:
        read_image(name, data, **kwargs)
    assert info.value.code == "invalid_attachment"
    return str(info.value)


# ----- accepted formats -------------------------------------------------------------------------
def test_png():
    result = read_image("chart.png", encode(gradient(320, 200), "PNG"))
    assert (result.mime, result.width, result.height, result.name) == ("image/png", 320, 200, "chart.png")
    back = reopen(result.data)
    assert back.format == "PNG" and back.size == (320, 200)
    assert result.data_url().startswith("data:image/png;base64,")


def test_jpeg():
    result = read_image("photo.jpg", encode(gradient(640, 480), "JPEG", quality=85))
    assert result.mime == "image/jpeg" and (result.width, result.height) == (640, 480)
    assert reopen(result.data).format == "JPEG"


def test_lossy_webp_becomes_jpeg_and_lossless_becomes_png():
    lossy = read_image("a.webp", encode(gradient(300, 200), "WEBP", quality=80))
    lossless = read_image("b.webp", encode(gradient(300, 200), "WEBP", lossless=True))
    assert lossy.mime == "image/jpeg" and lossless.mime == "image/png"
    assert (lossy.width, lossy.height) == (lossless.width, lossless.height) == (300, 200)


def test_webp_with_alpha_stays_transparent():
    picture = gradient(64, 64).convert("RGBA")
    picture.putalpha(128)
    result = read_image("glass.webp", encode(picture, "WEBP", quality=80))
    assert result.mime == "image/png" and reopen(result.data).mode == "RGBA"


def test_still_gif_becomes_png():
    result = read_image("icon.gif", encode(gradient(50, 40).convert("P"), "GIF"))
    assert result.mime == "image/png" and (result.width, result.height) == (50, 40)


def test_animated_images_are_refused():
    frames = [Image.new("RGB", (20, 20), colour) for colour in ("red", "green", "blue")]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert "is animated" in refused("dance.gif", gif)
    rgb = [gradient(20, 20), gradient(20, 20).rotate(90)]
    assert "is animated" in refused("dance.png", encode(rgb[0], "PNG", save_all=True, append_images=rgb[1:]))
    assert "is animated" in refused("dance.webp", encode(rgb[0], "WEBP", save_all=True, append_images=rgb[1:]))


def test_format_comes_from_the_bytes_not_the_name():
    result = read_image("holiday.jpg", encode(gradient(100, 80), "PNG"))
    assert result.mime == "image/png"
    assert read_image("scan.png", encode(gradient(100, 80), "JPEG")).mime == "image/jpeg"


def test_transparent_png_and_palette_png():
    rgba = gradient(60, 60).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize((60, 60)))
    back = reopen(read_image("a.png", encode(rgba, "PNG")).data)
    assert back.mode == "RGBA" and back.getpixel((30, 59))[3] > 200 and back.getpixel((30, 0))[3] < 50
    palette = gradient(60, 60).convert("P")
    back = reopen(read_image("p.png", encode(palette, "PNG", transparency=0)).data)
    assert back.mode == "RGBA"


def test_16_bit_grey_png_is_scaled_not_clipped():
    grey16 = Image.new("I;16", (8, 8), 40000)
    back = reopen(read_image("depth.png", encode(grey16, "PNG")).data)
    assert back.mode == "L" and back.getpixel((0, 0)) == 40000 // 256


# ----- scaling, orientation, metadata -----------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_image_is_downscaled(fmt):
    result = read_image("big", encode(gradient(4000, 3000), fmt))
    assert (result.width, result.height) == (MAX_IMAGE_SIDE, 1536)
    assert reopen(result.data).size == (MAX_IMAGE_SIDE, 1536)


def test_max_side_is_a_parameter():
    result = read_image("tall.png", encode(gradient(300, 900), "PNG"), max_side=300)
    assert (result.width, result.height) == (100, 300)


def test_exif_orientation_applied_and_metadata_stripped():
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to view
    exif[0x010F] = "Camera Maker"
    exif[0x9286] = "a private comment"
    picture = Image.new("RGB", (300, 200), (200, 30, 30))
    picture.paste((30, 30, 200), (0, 0, 150, 200))  # left half blue before rotation
    result = read_image("phone.jpg", encode(picture, "JPEG", exif=exif, quality=95))
    assert (result.width, result.height) == (200, 300)
    back = reopen(result.data)
    assert back.size == (200, 300) and not back.getexif() and "exif" not in back.info
    red, _, blue = back.getpixel((100, 10))  # the old left half is now on top
    assert blue > 150 and red < 80
    assert b"Camera Maker" not in result.data and b"private comment" not in result.data


def test_png_text_chunks_are_stripped():
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", "secret location 51.5N")
    result = read_image("note.png", encode(gradient(40, 40), "PNG", pnginfo=info))
    assert b"secret location" not in result.data and not reopen(result.data).text


# ----- refused ----------------------------------------------------------------------------------
def test_200_megapixel_png_is_refused_from_its_header():
    bomb = huge_png(20_000, 10_000)
    assert len(bomb) < 100_000  # small upload, 200 megapixels once decoded
    tracemalloc.start()
    started = time.perf_counter()
    try:
        message = refused("bomb.png", bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert "20000x10000 pixels (200 megapixels)" in message and "at most 50 megapixels" in message
    assert peak < 5 * 2**20  # nothing like 200 MB of pixels was allocated
    print(f"200 MP PNG ({len(bomb)} bytes) refused in {elapsed * 1000:.2f} ms, peak {peak} bytes")


def test_pixel_limit_is_a_parameter():
    assert "images can have at most 0.01 megapixels" in refused(
        "a.png", encode(gradient(200, 200), "PNG"), max_pixels=10_000
    )


def test_svg_is_refused():
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    assert is_svg(svg) and is_svg(b"\xef\xbb\xbf  <svg/>")
    assert "SVG" in refused("logo.svg", svg) and "convert it to PNG" in refused("logo.png", svg)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "GIF"])
def test_truncated_image_is_refused(fmt):
    data = encode(gradient(400, 300).convert("P") if fmt == "GIF" else gradient(400, 300), fmt)
    message = refused(f"cut.{fmt.lower()}", data[: len(data) // 2])
    assert "cut." in message and "corrupt or truncated" in message


def test_png_with_bad_checksum_is_refused():
    data = bytearray(encode(gradient(100, 100), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF
    assert "corrupt or truncated" in refused("bad.png", bytes(data))


@pytest.mark.parametrize(("fmt", "name"), [("BMP", "BMP"), ("TIFF", "TIFF"), ("ICO", "ICO")])
def test_other_formats_are_named(fmt, name):
    message = refused("pic.png", encode(gradient(32, 32), fmt))
    assert f"is a {name} file, which is not supported here: convert it to PNG or JPEG" in message


def test_unknown_bytes_and_empty_and_too_large():
    assert "not an image this app reads" in refused("x.png", b"hello, this is text")
    assert "is empty" in refused("x.png", b"")
    assert "images can be at most 1 MB" in refused("x.png", b"\x89PNG" + b"\0" * 2**20, max_bytes=2**20)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_header_size_matches_pillow(fmt):
    picture = gradient(123, 45)
    data = encode(
        picture.convert("P") if fmt == "GIF" else picture, fmt, **({"progressive": True} if fmt == "JPEG" else {})
    )
    assert image_header("x", data)[:3] == (fmt, 123, 45)


@pytest.mark.parametrize(
    ("params", "lossless"),
    [({"quality": 80}, False), ({"lossless": True}, True), ({"quality": 80, "exif": b"Exif\x00\x00MM\x00*"}, False)],
)
def test_webp_header_sizes(params, lossless):
    data = encode(gradient(123, 45), "WEBP", **params)
    assert image_header("x", data) == ("WEBP", 123, 45, lossless)


# ----- data URLs --------------------------------------------------------------------------------
def test_data_url_round_trip():
    png = encode(gradient(10, 10), "PNG")
    mime, data = parse_data_url("data:image/png;base64," + base64.b64encode(png).decode())
    assert (mime, data) == ("image/png", png)
    wrapped = base64.encodebytes(png).decode()  # line breaks every 76 characters
    assert parse_data_url(f"DATA:Image/PNG;name=x.png;base64,{wrapped}") == ("image/png", png)
    unpadded = base64.urlsafe_b64encode(png).decode().rstrip("=")
    assert parse_data_url(f"data:image/png;base64,{unpadded}")[1] == png


def test_bad_data_urls():
    with pytest.raises(AttachmentError, match="not base64"):
        parse_data_url("data:image/png,%89PNG")
    with pytest.raises(AttachmentError, match="not valid base64"):
        parse_data_url("data:image/png;base64,@@@not*base64")
    with pytest.raises(AttachmentError, match="no comma"):
        parse_data_url("data:image/png;base64")
    with pytest.raises(AttachmentError, match="must start with 'data:'"):
        parse_data_url("http://example.com/a.png")
    with pytest.raises(AttachmentError, match="empty"):
        parse_data_url("data:image/png;base64,")


def test_data_url_size_bounded_before_decoding():
    huge = "data:image/png;base64," + "A" * (3 * 2**20)
    with pytest.raises(AttachmentError, match="images can be at most 1 MB"):
        parse_data_url(huge, max_bytes=2**20)
    just_over = "data:image/png;base64," + base64.b64encode(b"\0" * (2**20 + 10)).decode()
    with pytest.raises(AttachmentError, match="images can be at most 1 MB"):
        parse_data_url(just_over, max_bytes=2**20)
