"""Image URLs from the API: data URLs decode, http(s) only when allowed and only to public addresses.

A real HTTP server runs on 127.0.0.1 for every test. Requests that must be refused are checked
to have never reached it. The download path itself (streaming, limits, content type, redirects)
is tested against that server through an injected resolver that declares one test host name
public and resolves it to the server.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from webui.attachments.images import read_image
from webui.attachments.urls import Resolver, address_problem, fetch_image_url
from webui.errors import AttachmentError


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


PNG = png_bytes()


class ImageServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[tuple[str, str]] = []  # (path, Host header)

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: ImageServer

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass

    def _send(self, status: int, body: bytes = b"", **headers: str) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        if "Content_Length" not in headers and "no_length" not in self.path:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        path = self.path.split("?", 1)[0]
        if path == "/cat.png":
            self._send(200, PNG, Content_Type="image/png")
        elif path == "/page":
            self._send(200, b"<html>not an image</html>", Content_Type="text/html; charset=utf-8")
        elif path == "/logo.svg":
            self._send(200, b"<svg/>", Content_Type="image/svg+xml")
        elif path == "/declared-big.png":
            self._send(200, b"", Content_Type="image/png", Content_Length="999999999")
        elif path == "/no_length_big.png":
            self.close_connection = True
            self._send(200, b"\0" * 50_000, Content_Type="image/png")
        elif path == "/gzipped.png":
            self._send(200, PNG, Content_Type="image/png", Content_Encoding="gzip")
        elif path == "/to-cat":
            self._send(302, Location="/cat.png")
        elif path == "/to-internal":
            self._send(302, Location="http://internal.test/x.png")
        elif path == "/to-file":
            self._send(302, Location="file:///etc/passwd")
        elif path == "/loop":
            self._send(302, Location="/loop")
        else:
            self._send(404, b"missing")


@pytest.fixture
def server():
    httpd = ImageServer()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


class DeclaredPublic(Resolver):
    """``images.test`` is the local test server and counts as public; other names stay as they are."""

    def __init__(self, names: dict[str, list[str]] | None = None) -> None:
        self.names = {"images.test": ["127.0.0.1"], "internal.test": ["10.0.0.1"], **(names or {})}
        self.resolved: list[str] = []

    def resolve(self, host: str, port: int) -> list[str]:
        self.resolved.append(host)
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.names[host] if host in self.names else super().resolve(host, port)

    def problem(self, address):
        return None if address == ipaddress.ip_address("127.0.0.1") else super().problem(address)


def refused(url: str, **kwargs) -> str:
    with pytest.raises(AttachmentError) as info:
        fetch_image_url(url, **kwargs)
    assert info.value.code == "invalid_attachment"
    return str(info.value)


# ----- data URLs and the switch ------------------------------------------------------------------
def test_data_url_decodes_without_fetching():
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert fetch_image_url(url, allow_fetch=False) == PNG
    assert read_image("image_url", fetch_image_url(url, allow_fetch=False)).mime == "image/png"


def test_bad_data_url():
    assert "not valid base64" in refused("data:image/png;base64,***", allow_fetch=False)
    assert "not base64" in refused("data:image/png,rawbytes", allow_fetch=False)


def test_http_refused_when_fetching_is_off(server):
    message = refused(f"http://127.0.0.1:{server.port}/cat.png", allow_fetch=False)
    assert "does not fetch image URLs" in message and "data URL" in message and "--allow-image-urls" in message
    assert server.requests == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://x/", "/etc/passwd"])
def test_other_schemes_refused(url):
    assert "is not accepted" in refused(url, allow_fetch=True)


# ----- addresses that are not public ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:{port}/cat.png", "loopback"),
        ("http://localhost:{port}/cat.png", "loopback"),
        ("http://[::1]:{port}/cat.png", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/cat.png", "wrapped in IPv6"),
        ("http://2130706433:{port}/cat.png", "loopback"),  # 127.0.0.1 written as one number
        ("http://0.0.0.0:{port}/cat.png", "unspecified"),
        ("http://10.0.0.1/", "private"),
        ("http://192.168.1.1/", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://[fe80::1]/", "link-local"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.0.1/", "not a public internet address"),
    ],
)
def test_non_public_addresses_refused_without_a_connection(server, url, why):
    message = refused(url.format(port=server.port), allow_fetch=True)
    assert why in message and "only fetches images from public internet addresses" in message
    assert server.requests == []


def test_every_resolved_address_must_be_public(server):
    resolver = DeclaredPublic({"mixed.test": ["93.184.216.34", "10.1.2.3"]})
    message = refused("http://mixed.test/cat.png", allow_fetch=True, resolver=resolver)
    assert "mixed.test resolves to 10.1.2.3, which is a private network address" in message
    assert server.requests == []


def test_address_problems():
    for public in ("93.184.216.34", "2606:4700:4700::1111", "64:ff9b::5db8:d822"):
        assert address_problem(ipaddress.ip_address(public)) is None, public
    for private in ("2002:a00:1::1", "64:ff9b::a00:1", "::127.0.0.1", "fd00:ec2::254", "198.18.0.1", "0.1.2.3"):
        assert address_problem(ipaddress.ip_address(private)) is not None, private


# ----- the download path, through a host declared public ---------------------------------------------
def test_download_from_a_public_host(server):
    resolver = DeclaredPublic()
    data = fetch_image_url(f"http://images.test:{server.port}/cat.png", allow_fetch=True, resolver=resolver)
    assert data == PNG
    # connected to the checked address, with the URL's own host in the Host header; resolved once
    assert server.requests == [("/cat.png", f"images.test:{server.port}")]
    assert resolver.resolved == ["images.test"]


def test_redirect_followed_and_rechecked(server):
    resolver = DeclaredPublic()
    base = f"http://images.test:{server.port}"
    assert fetch_image_url(f"{base}/to-cat", allow_fetch=True, resolver=resolver) == PNG
    assert [path for path, _ in server.requests] == ["/to-cat", "/cat.png"]
    server.requests.clear()
    assert "internal.test resolves to 10.0.0.1" in refused(f"{base}/to-internal", allow_fetch=True, resolver=resolver)
    assert "redirects to file:" in refused(f"{base}/to-file", allow_fetch=True, resolver=resolver)
    assert "redirects more than 3 times" in refused(f"{base}/loop", allow_fetch=True, resolver=resolver)
    assert [path for path, _ in server.requests].count("/loop") == 4


def test_content_type_must_be_an_image(server):
    base = f"http://images.test:{server.port}"
    assert "is not an image (its content type is text/html)" in refused(
        f"{base}/page", allow_fetch=True, resolver=DeclaredPublic()
    )
    assert "SVG" in refused(f"{base}/logo.svg", allow_fetch=True, resolver=DeclaredPublic())


def test_size_limit_declared_and_streamed(server):
    base = f"http://images.test:{server.port}"
    assert "larger than" in refused(f"{base}/declared-big.png", allow_fetch=True, resolver=DeclaredPublic())
    assert "larger than" in refused(
        f"{base}/no_length_big.png", allow_fetch=True, max_bytes=10_000, resolver=DeclaredPublic()
    )


def test_http_errors_and_encodings(server):
    base = f"http://images.test:{server.port}"
    assert "answered HTTP 404" in refused(f"{base}/missing.png", allow_fetch=True, resolver=DeclaredPublic())
    assert "sent compressed (gzip)" in refused(f"{base}/gzipped.png", allow_fetch=True, resolver=DeclaredPublic())


def test_unresolvable_host_and_closed_port(server):
    port = server.port
    server.shutdown()
    server.server_close()
    assert "cannot connect" in refused(
        f"http://images.test:{port}/cat.png", allow_fetch=True, resolver=DeclaredPublic()
    )
    assert "could not be resolved" in refused("http://nowhere.test/a.png", allow_fetch=True, resolver=DeclaredPublic())


def test_https_to_a_server_without_tls_fails_cleanly(server):
    # The https path (address in the URL, host name in SNI and Host) up to the TLS handshake.
    message = refused(f"https://images.test:{server.port}/cat.png", allow_fetch=True, resolver=DeclaredPublic())
    assert "The image at images.test could not be downloaded" in message
