"""Which `callback_url`s TalkTuah will POST to: the guard against server-side request forgery.

A callback is a URL chosen by whoever holds a `models:write` key and fetched by the server.
Unguarded, that key reaches what only the server can reach: the admin API on loopback, a
cloud metadata service on 169.254.169.254, a router on 192.168.0.1. So a callback's host must
be a public address, by every spelling of one (`2130706433`, `0x7f000001`, `127.1`,
`[::ffff:127.0.0.1]`, `localhost`) and by whatever its name resolves to, checked again at
delivery (a name can be re-pointed between the request and the end of a download: DNS
rebinding), unless the admin's `TALKTUAH_CALLBACK_ALLOW` names the host or its network (n8n
on the same machine is the usual case).

The host is parsed by httpx's URL parser and resolved with `getaddrinfo`, exactly as the HTTP
client would connect to it; `getaddrinfo` accepts the odd IPv4 spellings too, so every address
it returns is checked, and the sender connects to one of those checked addresses.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from ..errors import InvalidCallbackUrlError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

ALLOW_SETTING = "TALKTUAH_CALLBACK_ALLOW"

# Names that mean this machine whatever a resolver says (RFC 6761 and Debian's /etc/hosts).
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_NAME = re.compile(r"^[a-z0-9_\-]+(\.[a-z0-9_\-]+)*\.?$")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f-\x9f\s\\]")
_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT, RFC 6598
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_COMPAT = ipaddress.ip_network("::/96")  # deprecated IPv4-compatible IPv6, ::a.b.c.d


# `scheme://user:pass@` in plain text or percent-encoded inside a query string, whole or in
# part (`http%3A%2F%2Fuser%3Apass%40host`, `http%3A//user%3Apass%40host`): everything from
# the `//` up to the authority's last @.
_USERINFO = re.compile(
    r"(?i)([a-z][a-z0-9+.\-]*(?::|%3A)(?:/|%2F){2})(?:(?!%2F|%3F|%23)[^/?#&\s])*(@|%40)"
)


def redact_userinfo(text: str) -> str:
    """`text` with the userinfo of every URL in it, plain or percent-encoded, replaced.

    A callback's `user:password@` is a credential for its receiver: logs and readers
    without `models:write` get the rest of the URL only.
    """
    return _USERINFO.sub(r"\1[redacted]\2", text)


def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, as the HTTP client's `create_connection` sees them."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # a label the idna codec refuses: no such host
        raise OSError(f"{host} is not a resolvable name ({exc})") from None
    addresses: list[str] = []
    for *_, sockaddr in found:
        address = str(sockaddr[0]).split("%", 1)[0]
        if address not in addresses:
            addresses.append(address)
    return addresses


def origin(url: str) -> str:
    """`scheme://host:port` of a URL, without userinfo or path: what may be shown or logged
    of a callback to someone who must not learn its secrets."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "<invalid URL>"
    netloc = parsed.netloc.decode("ascii", "replace")
    return f"{parsed.scheme}://{netloc}" if parsed.scheme else "<invalid URL>"


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, compatible, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64 or (address in _COMPAT and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why a callback must not go to `address` (`'a loopback address'`), or None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = refusal(embedded)
            if inner is not None:
                return f"{inner} (written as IPv6)"
    checks = (
        (address.is_loopback, "a loopback address"),
        (address.is_unspecified, "the unspecified address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (isinstance(address, ipaddress.IPv4Address) and address in _SHARED,
         "a shared (carrier-grade NAT) address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),
    )  # fmt: skip
    return next((why for refused, why in checks if refused), None)


def _ipv4_spelling(host: str) -> ipaddress.IPv4Address | None:
    """The address of `2130706433`, `0x7f000001`, `127.1` and other forms inet_aton reads."""
    if not re.fullmatch(r"[0-9a-fx.]+", host) or not any(c.isdigit() for c in host):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _name_lengths_ok(host: str) -> bool:
    """DNS limits (RFC 1035): labels of 1-63 characters, 253 in all."""
    name = host.rstrip(".")
    return len(name) <= 253 and all(0 < len(label) <= 63 for label in name.split("."))


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL that passed the checks that need no resolver."""

    url: str
    scheme: str
    host: str  # as the HTTP client connects: lower-case, IDNA-encoded, IPv6 without brackets
    port: int
    allowed_by_name: bool

    @property
    def origin(self) -> str:
        return origin(self.url)


class CallbackPolicy:
    """The admin's allow-list applied to callback URLs: `vet` at request time (no network
    needed), `resolve` at request time and again right before each delivery."""

    def __init__(self, allow: Iterable[str] = (), resolver: Resolver = resolve_host) -> None:
        self.names: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in allow:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                self.names.add(entry.strip().lower().rstrip("."))
        self.resolver = resolver

    def vet(self, url: str) -> CallbackTarget:
        """Parse `url` as the HTTP client will and refuse what is wrong before any lookup."""
        bad = _FORBIDDEN.search(url)
        if bad is not None:
            raise InvalidCallbackUrlError(
                f"callback_url has a control character, whitespace or backslash at position "
                f"{bad.start()}; percent-encode it (a space is %20) or remove it."
            )
        try:
            parsed = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise InvalidCallbackUrlError(
                f"callback_url is not a valid URL ({exc}); send an http(s) URL such as "
                "http://n8n:5678/webhook/talktuah."
            ) from None
        host = parsed.raw_host.decode("ascii", "replace").lower()
        if parsed.scheme not in ("http", "https") or not host:
            raise InvalidCallbackUrlError(
                f"callback_url {redact_userinfo(url)!r} is not an http(s) URL with a host; "
                "send one such as http://n8n:5678/webhook/talktuah."
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if not 0 < port < 65536:
            raise InvalidCallbackUrlError(
                f"callback_url {origin(url)} has port {port}, outside 1-65535; fix the port."
            )
        target = CallbackTarget(url, parsed.scheme, host, port, self._named(host))
        if target.allowed_by_name:
            return target
        literal = self._literal(host)
        if literal is not None:
            self._check_address(target, literal, spelled=True)
        elif not _NAME.match(host) or not _name_lengths_ok(host):
            raise InvalidCallbackUrlError(
                f"callback_url {target.origin} has a host that is neither a name nor an IP "
                "address; send the receiver's plain host name or address."
            )
        elif host.rstrip(".") in _LOCAL_NAMES or host.rstrip(".").endswith(".localhost"):
            self._refuse(target, f"{host} names this machine")
        return target

    def check(self, url: str) -> CallbackTarget:
        """The request-time check: `vet`, then `resolve` so a name that points somewhere
        private is refused now rather than failing silently when the download ends. A name
        that does not resolve yet passes: delivery resolves it again and logs a failure."""
        target = self.vet(url)
        try:
            self.resolve(target)
        except OSError:
            pass
        return target

    def resolve(self, target: CallbackTarget) -> list[str]:
        """The addresses to connect to, every one of them allowed.

        Raises `InvalidCallbackUrlError` if any address is refused (one bad answer is enough:
        the client may pick any of them) and `OSError` if the name does not resolve.
        """
        addresses = self.resolver(target.host, target.port)
        if not addresses:
            raise OSError(f"{target.host} resolves to no address")
        if not target.allowed_by_name:
            for text in addresses:
                self._check_address(target, ipaddress.ip_address(text))
        return addresses

    def _named(self, host: str) -> bool:
        return host.rstrip(".") in self.names

    @staticmethod
    def _literal(host: str) -> IPAddress | None:
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            return _ipv4_spelling(host)

    @staticmethod
    def _literal_standard(host: str) -> IPAddress | None:
        try:
            return ipaddress.ip_address(host)
        except ValueError:
            return None

    def _allowed(self, address: IPAddress) -> bool:
        candidates: list[IPAddress] = [address]
        if isinstance(address, ipaddress.IPv6Address):
            embedded = _embedded_ipv4(address)
            if embedded is not None:
                candidates.append(embedded)
        return any(
            a in net for a in candidates for net in self.networks if a.version == net.version
        )

    def _check_address(
        self, target: CallbackTarget, address: IPAddress, *, spelled: bool = False
    ) -> None:
        """Refuse `address` unless it is public or allowed; `spelled`: the URL's host is this
        address written out (`127.1`), not a name that resolved to it."""
        why = refusal(address)
        if why is None or self._allowed(address):
            return
        if spelled and self._literal_standard(target.host) == address:
            self._refuse(target, f"{target.host} is {why}")
        joint = "is" if spelled else "resolves to"
        self._refuse(target, f"{target.host} {joint} {address}, which is {why}")

    @staticmethod
    def _refuse(target: CallbackTarget, why: str) -> None:
        raise InvalidCallbackUrlError(
            f"callback_url {target.origin} is refused: {why}, and callbacks go only to public "
            f"addresses unless the admin allows the receiver: add its host or network to "
            f"{ALLOW_SETTING} (e.g. {ALLOW_SETTING}=127.0.0.1,localhost,10.0.0.0/8)."
        )
