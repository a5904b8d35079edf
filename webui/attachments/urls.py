"""Images the API is sent by URL (an OpenAI ``image_url`` part): data URLs, and http(s) when allowed.

A server that fetches any URL it is given is a door into the network it sits in (server-side
request forgery): ``http://127.0.0.1:8080/admin``, a router at ``http://192.168.1.1/``, a cloud's
metadata service at ``http://169.254.169.254/``. So fetching is off unless the server is started
with ``--allow-image-urls``, and then:

- only ``http`` and ``https``; ``file:`` and every other scheme are refused;
- the host is resolved once and EVERY address it resolves to must be public (not loopback,
  private, link-local, multicast, reserved or unspecified, also when wrapped in IPv6: mapped,
  6to4, NAT64). The connection then goes to that checked address (the URL's host travels in the
  Host header and TLS's SNI), so a second DNS answer cannot point it elsewhere (DNS rebinding),
  and the socket's peer address is checked again once connected;
- redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each new URL checked the same way;
- no proxy from the environment (a proxy would resolve the host itself, unchecked);
- the body is streamed without content decoding (``Accept-Encoding: identity``: no gzip bomb) and
  stops at the byte limit; the whole fetch has one deadline; the content type must be an image.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any

from webui.attachments.images import MAX_IMAGE_BYTES, parse_data_url
from webui.errors import AttachmentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: Cloud metadata services (most are also link-local or private; named so a message can say so).
_METADATA = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200"))
_NOT_ALLOWED = (
    "This server does not fetch image URLs: send the image itself as a data URL "
    "(data:image/png;base64,...), or start the server with --allow-image-urls."
)


def address_problem(address: IPAddress) -> str | None:
    """Why the server must not connect to ``address`` (``"a private address"``...), or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            problem = address_problem(embedded)
            return f"{problem} ({embedded}) wrapped in IPv6" if problem else None
        if address.teredo is not None:
            return "a Teredo tunnel address"
    if address in _METADATA:
        return "a cloud metadata service"
    for test, what in (
        (address.is_unspecified, "the unspecified address"),
        (address.is_loopback, "a loopback address (this machine)"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private network address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public internet address"),
    ):
        if test:
            return what
    return None


def is_public_address(address: IPAddress) -> bool:
    return address_problem(address) is None


class Resolver:
    """How a host name becomes addresses, and which addresses the server may connect to.

    The default resolves with the system's resolver and allows public addresses only. Tests pass
    their own (a name that resolves to a local test server declared public), the code path is
    otherwise the same.
    """

    def resolve(self, host: str, port: int) -> list[str]:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        return [str(info[4][0]).split("%", 1)[0] for info in infos]

    def problem(self, address: IPAddress) -> str | None:
        """Why ``address`` is refused, or None when the server may connect to it."""
        return address_problem(address)


@dataclass(frozen=True)
class _Target:
    url: Any  # httpx.URL with the checked address as its host
    host: str  # the URL's own host name (SNI, messages)
    host_header: str
    address: IPAddress


def fetch_image_url(
    url: str,
    *,
    allow_fetch: bool,
    timeout: float = 10,
    max_bytes: int = MAX_IMAGE_BYTES,
    resolver: Resolver | None = None,
) -> bytes:
    """The bytes of the image at ``url`` (a ``data:`` URL, or ``http(s)://`` when ``allow_fetch``).

    The bytes are not checked as an image here: hand them to ``read_image``. ``timeout`` bounds
    the whole fetch (redirects included), not just each network operation.
    """
    scheme = url.split(":", 1)[0].strip().lower() if ":" in url else ""
    if scheme == "data":
        return parse_data_url(url, max_bytes=max_bytes)[1]
    if scheme not in ("http", "https"):
        shown = f"{scheme}:" if scheme else "a URL without a scheme"
        raise AttachmentError(
            f"Image URLs must be data: URLs{' or http(s)' if allow_fetch else ''}; {shown} is not accepted "
            "(the server never reads its own files). Send the image as data:image/png;base64,..."
        )
    if not allow_fetch:
        raise AttachmentError(_NOT_ALLOWED)
    return _download(url, timeout, max_bytes, resolver or Resolver())


def _check_target(url: str, resolver: Resolver) -> list[_Target]:
    """The URL aimed at each of its host's addresses (IPv4 first), after checking every one of them."""
    import httpx

    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError) as exc:
        raise AttachmentError(f"The image URL is malformed ({exc}).") from None
    if parsed.scheme not in ("http", "https"):
        raise AttachmentError(
            f"The image URL redirects to {parsed.scheme}:, which is not fetched (only http and https)."
        )
    host = parsed.raw_host.decode("ascii").strip("[]").lower()
    if not host:
        raise AttachmentError("The image URL has no host.")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        names = [str(literal)]
    else:
        try:
            names = resolver.resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise AttachmentError(f"The image URL's host {host} could not be resolved ({exc}).") from None
    addresses: list[IPAddress] = []
    for name in dict.fromkeys(names):
        address = ipaddress.ip_address(name)
        problem = resolver.problem(address)
        if problem is not None:
            target = host if literal is not None else f"{host} resolves to {address}, which"
            raise AttachmentError(
                f"The image URL is refused: {target} is {problem}. This server only fetches images "
                "from public internet addresses; send the image as a data URL instead."
            )
        addresses.append(address)
    if not addresses:
        raise AttachmentError(f"The image URL's host {host} has no address.")
    addresses.sort(key=lambda a: a.version)  # IPv4 first: many machines have no IPv6 route
    host_header = parsed.netloc.decode("ascii")
    return [_Target(parsed.copy_with(host=str(a)), host, host_header, a) for a in addresses]


def _download(url: str, timeout: float, max_bytes: int, resolver: Resolver) -> bytes:
    import httpx

    deadline = time.monotonic() + timeout
    headers = {"Accept": "image/*", "Accept-Encoding": "identity", "User-Agent": "localllm-webui"}
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=httpx.Timeout(timeout)) as client:
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            targets = _check_target(current, resolver)
            location = _fetch_one(client, targets, headers, deadline, max_bytes)
            if isinstance(location, bytes):
                return location
            try:
                current = str(httpx.URL(current).join(location))
            except (httpx.InvalidURL, ValueError) as exc:
                raise AttachmentError(f"The image URL redirects to a malformed URL ({exc}).") from None
    raise AttachmentError(f"The image URL redirects more than {MAX_REDIRECTS} times; send the final URL or a data URL.")


def _fetch_one(
    client: Any, targets: list[_Target], headers: dict[str, str], deadline: float, max_bytes: int
) -> bytes | str:
    """The body (bytes) or a redirect's Location (str) from the first address that accepts a connection."""
    import httpx

    host = targets[0].host
    for n, target in enumerate(targets):
        extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
        try:
            remaining = max(0.01, deadline - time.monotonic())
            with client.stream(
                "GET",
                target.url,
                headers={**headers, "Host": target.host_header},
                extensions=extensions,
                timeout=httpx.Timeout(remaining),
            ) as response:
                _check_peer(response, target)
                return _read_response(response, host, deadline, max_bytes)
        except httpx.ConnectError as exc:
            if n + 1 < len(targets):
                continue  # this address refused or is unreachable: try the host's next one
            raise AttachmentError(f"The image at {host} could not be downloaded: cannot connect ({exc}).") from None
        except httpx.TimeoutException:
            raise AttachmentError(f"The image at {host} could not be downloaded in time.") from None
        except httpx.HTTPError as exc:
            raise AttachmentError(
                f"The image at {host} could not be downloaded ({type(exc).__name__}: {exc})."
            ) from None
    raise AssertionError("unreachable: _check_target returns at least one address")


def _check_peer(response: Any, target: _Target) -> None:
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if peer and ipaddress.ip_address(str(peer[0]).split("%", 1)[0]) != target.address:
        raise AttachmentError(f"The connection to {target.host} reached {peer[0]}, not the address that was checked.")


def _read_response(response: Any, host: str, deadline: float, max_bytes: int) -> bytes | str:
    if response.status_code in _REDIRECTS:
        location = response.headers.get("location")
        if not location:
            raise AttachmentError(f"The image at {host} redirects without saying where (no Location header).")
        return str(location)
    if response.status_code != 200:
        raise AttachmentError(
            f"The image at {host} could not be downloaded: the server answered HTTP {response.status_code}."
        )
    content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "image/svg+xml":
        raise AttachmentError(f"The URL at {host} is an SVG image, which is not supported: convert it to PNG.")
    if not content_type.startswith("image/"):
        raise AttachmentError(
            f"The URL at {host} is not an image (its content type is {content_type or 'not given'}). "
            "Link the image file itself, or send it as a data URL."
        )
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise AttachmentError(
            f"The image at {host} was sent compressed ({encoding}) although we asked for it as it is."
        )
    too_large = AttachmentError(
        f"The image at {host} is larger than {max_bytes / 2**20:g} MB, the most this server accepts."
    )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large
    body = bytearray()
    for chunk in response.iter_raw():
        body += chunk
        if len(body) > max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            raise AttachmentError(f"The image at {host} could not be downloaded in time.")
    return bytes(body)
