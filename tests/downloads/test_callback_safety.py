"""A `callback_url` cannot be turned against the server (issue 15, webhooks).

The URL is chosen by a client and fetched by the server: without the guard a `models:write`
key reaches the admin API on loopback, a cloud metadata service on 169.254.169.254 or a
router on the LAN, and a hostile receiver holds a thread and the server's memory for as long
as it likes. Every receiver here is real and listens on loopback, which these tests open
through the admin's allow-list (`TALKTUAH_CALLBACK_ALLOW`) where they need to.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from talktuah.api import create_app
from talktuah.config import Settings
from talktuah.downloads.callback_url import CallbackPolicy, refusal
from talktuah.downloads.callbacks import CallbackSender
from talktuah.security import ApiKey
from talktuah.services import Services

from ..support.constants import API_KEY
from ..support.downloads import WaitFor, start_download
from ..support.eventually import eventually
from ..support.hub import Hub, make_files
from ..support.receiver import GIGABYTE, Behaviour, PeakRss, Receiver, self_signed

LOOPBACK = ["127.0.0.1"]

REFUSED = [
    # loopback, by every spelling
    "http://127.0.0.1:5678/webhook",
    "http://127.8.9.10/webhook",
    "http://localhost:5678/webhook",
    "http://LOCALHOST./webhook",
    "http://n8n.localhost/webhook",
    "http://2130706433/webhook",
    "http://0x7f000001/webhook",
    "http://0x7f.1/webhook",
    "http://127.1/webhook",
    "http://[::1]/webhook",
    "http://[::ffff:127.0.0.1]/webhook",
    "http://[::ffff:7f00:1]/webhook",
    "http://[::127.0.0.1]/webhook",
    "http://[64:ff9b::127.0.0.1]/webhook",
    "http://[2002:7f00:1::]/webhook",
    "https://user:pw@127.0.0.1/webhook",
    # unspecified
    "http://0.0.0.0:5678/webhook",
    "http://0/webhook",
    "http://[::]/webhook",
    # link-local (cloud metadata) and private ranges
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/webhook",
    "http://10.0.0.1/webhook",
    "http://172.16.5.4/webhook",
    "http://192.168.1.1/webhook",
    "http://100.64.0.1/webhook",
    "http://[fc00::1]/webhook",
    "http://[fd12:3456::1]/webhook",
    # multicast and reserved
    "http://224.0.0.1/webhook",
    "http://240.0.0.1/webhook",
    "http://255.255.255.255/webhook",
]

MALFORMED = [
    "ftp://example.com/webhook",
    "file:///etc/passwd",
    "http:///webhook",
    "example.com/webhook",
    "http://example.com:99999/webhook",
    "http://exa%41mple.com/webhook",
    "http://example.com/web hook",
    "http://example.com/web\nhook",
    "http://example.com/\r\nX-Injected: 1",
    "http://example.com/web\x00hook",
    "http://example.com/web\thook",
    "http://example.com/web\x7fhook",
    "http://example.com\\@127.0.0.1/webhook",
    "http://" + "a" * 64 + ".example.com/webhook",  # a DNS label too long: no 500
]


def request_download(client: TestClient, callback_url: str) -> tuple[int, str]:
    response = client.post(
        "/api/download-model",
        params={"model_id": "org/callback", "auto": "true", "callback_url": callback_url},
    )
    return response.status_code, response.json()["detail"]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    webhook = Receiver()
    yield webhook
    webhook.stop()


def hostile(behaviour: Behaviour) -> Iterator[Receiver]:
    webhook = Receiver(behaviour)
    yield webhook
    webhook.stop()


@pytest.fixture
def huge() -> Iterator[Receiver]:
    yield from hostile("huge")


@pytest.fixture
def drip_headers() -> Iterator[Receiver]:
    yield from hostile("drip_headers")


@pytest.fixture
def drip_body() -> Iterator[Receiver]:
    yield from hostile("drip_body")


def sender(allow: list[str] | None = None, **options: Any) -> CallbackSender:
    policy = CallbackPolicy(LOOPBACK if allow is None else allow)
    return CallbackSender(policy=policy, retries=0, **options)


@contextmanager
def serving(settings: Settings, allow: list[str]) -> Iterator[tuple[TestClient, Services]]:
    """The app with `TALKTUAH_CALLBACK_ALLOW` set, shut down (as on Ctrl-C) on exit."""
    services = Services.build(
        settings.model_copy(update={"callback_allow": allow}), ApiKey(API_KEY, "env")
    )
    app = create_app(services, close_on_shutdown=True)
    with TestClient(app, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        yield client, services


def is_public(address: str) -> bool:
    return refusal(ipaddress.ip_address(address)) is None


def wait_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 10) -> float:
    """Seconds until `text` was logged; fails after `timeout`."""
    started = time.monotonic()
    eventually(
        lambda: text in caplog.text, timeout=timeout, interval=0.01,
        what=lambda: f"logging {text!r}:\n{caplog.text}",
    )  # fmt: skip
    return time.monotonic() - started


# -- refused at request time -----------------------------------------------------------------


@pytest.mark.parametrize("url", REFUSED)
def test_non_public_callback_hosts_get_422_naming_the_allow_list(
    client: TestClient, hub: Hub, url: str
) -> None:
    code, detail = request_download(client, url)
    assert code == 422, detail
    assert "TALKTUAH_CALLBACK_ALLOW" in detail and "refused" in detail
    assert "pw" not in detail
    assert client.get("/api/downloads").json()["count"] == 0


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_callback_urls_get_422(client: TestClient, hub: Hub, url: str) -> None:
    code, detail = request_download(client, url)
    assert code == 422, detail
    assert "callback_url" in detail
    assert "\n" not in detail and "\x00" not in detail
    assert client.get("/api/downloads").json()["count"] == 0


def loopback_name() -> str:
    """A host name (no `localhost` spelling) that resolves to a local address through the
    machine's own resolver: its host name, else any such name in /etc/hosts."""
    candidates = [socket.gethostname()]
    hosts = Path("/etc/hosts")
    if hosts.is_file():
        for line in hosts.read_text().splitlines():
            fields = line.split("#", 1)[0].split()
            candidates += fields[1:]
    for name in candidates:
        if "localhost" in name.lower():
            continue
        try:
            addresses = CallbackPolicy().resolver(name, 80)
        except OSError:
            continue
        if addresses and not any(is_public(a) for a in addresses):
            return name
    raise AssertionError(
        "no host name on this machine resolves to a local address (its own host name or an "
        "/etc/hosts entry): these tests need one, as every Linux machine we run on has."
    )


def test_a_name_that_resolves_to_loopback_gets_422(client: TestClient, hub: Hub) -> None:
    """This machine's own name is no `localhost` spelling, but resolves to a local address
    (here through /etc/hosts); the check goes by the address, as the client would connect."""
    name = loopback_name()
    code, detail = request_download(client, f"http://{name}:5678/webhook")
    assert code == 422 and "resolves to" in detail and "TALKTUAH_CALLBACK_ALLOW" in detail


# -- allowed by the admin ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "spelling"),
    [
        (["127.0.0.1"], "127.0.0.1"),
        (["127.0.0.0/8"], "2130706433"),
        (["127.0.0.1"], "[::ffff:127.0.0.1]"),
        (["localhost"], "localhost"),
    ],
)
def test_the_allow_list_opens_a_loopback_receiver(
    home: Path, receiver: Receiver, allow: list[str], spelling: str
) -> None:
    """n8n on the same machine: TALKTUAH_CALLBACK_ALLOW=127.0.0.1 (or a name, or a CIDR)
    makes its webhook reachable, by whatever spelling the client uses."""
    settings = Settings(home=home, callback_allow=",".join(allow))  # as read from the env
    policy = CallbackPolicy(settings.callback_allow)
    url = f"http://{spelling}:{receiver.port}/webhook"
    policy.check(url)
    with_sender = CallbackSender(policy=policy, retries=0)
    with_sender.send(url, {"job_id": "j1", "status": "complete"})
    assert receiver.wait_posts(1) == [{"job_id": "j1", "status": "complete"}]
    with_sender.close(5)


def test_allowed_callback_is_delivered_through_the_api(
    settings: Settings, hub: Hub, receiver: Receiver
) -> None:
    hub.add_repo("org/allowed", make_files(n_files=1, size=2_000, seed=70))
    with serving(settings, ["localhost"]) as (client, _):
        url = f"http://localhost:{receiver.port}/webhook"
        job = start_download(client, "org/allowed", callback_url=url)
        (post,) = receiver.wait_posts(1)
        assert post["job_id"] == job["job_id"] and post["status"] == "complete"


# -- checked again at delivery ---------------------------------------------------------------


def test_a_name_rebound_to_loopback_after_the_request_is_not_called(
    client: TestClient,
    services: Services,
    hub: Hub,
    receiver: Receiver,
    wait_for: WaitFor,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """DNS rebinding: the name is public when the download is requested and points at
    loopback when it ends. The resolver is the one thing faked (no DNS server runs here);
    the receiver that would be hit is real and must see nothing."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])
    services.downloads.callbacks.policy.resolver = lambda host, port: next(answers)
    hub.add_repo("org/rebind", make_files(n_files=1, size=2_000, seed=71))
    url = f"http://rebind.example:{receiver.port}/webhook"
    job = start_download(client, "org/rebind", callback_url=url)
    assert wait_for(job["job_id"])["status"] == "complete"
    wait_log(caplog, f"callback for job {job['job_id']} to {url} refused")
    assert "rebind.example resolves to 127.0.0.1, which is a loopback address" in caplog.text
    assert receiver.posts == []  # the refusal was the delivery's last act


def test_delivery_resolves_the_real_name_again(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """A job stored before the guard existed (or a name that changed): the sender checks
    the host with the real resolver itself, not only the request handler."""
    caplog.set_level(logging.INFO)
    name = loopback_name()
    refusing = sender(allow=[])
    refusing.send(f"http://{name}:{receiver.port}/webhook", {"job_id": "j2"})
    wait_log(caplog, "callback for job j2")
    assert "refused" in caplog.text and receiver.posts == []
    refusing.close(5)
    allowing = sender(allow=[name])
    allowing.send(f"http://{name}:{receiver.port}/webhook", {"job_id": "j3"})
    assert receiver.wait_posts(1) == [{"job_id": "j3"}]
    allowing.close(5)


def test_https_checks_the_certificate_against_the_urls_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection goes to the address that was checked, but TLS still verifies the
    certificate against the URL's host name (SNI), as an unpinned client would."""
    certs = self_signed(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs / "cert.pem"))
    secure = Receiver(tls=certs)
    try:
        by_name = sender(allow=["localhost"])
        by_name.send(f"https://localhost:{secure.port}/webhook", {"job_id": "tls-1"})
        assert secure.wait_posts(1) == [{"job_id": "tls-1"}]
        by_name.close(5)
        by_address = sender(allow=LOOPBACK)
        by_address.send(f"https://127.0.0.1:{secure.port}/webhook", {"job_id": "tls-2"})
        wait_log(caplog, "callback for job tls-2")
        assert "CERTIFICATE_VERIFY_FAILED" in caplog.text, caplog.text
        assert len(secure.posts) == 1
        by_address.close(5)
    finally:
        secure.stop()


# -- no redirects --------------------------------------------------------------------------------


def test_a_redirect_is_not_followed(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    redirecting = Receiver("redirect", redirect_to=receiver.url)
    try:
        delivering = CallbackSender(policy=CallbackPolicy(LOOPBACK), retries=2, backoff=0.01)
        delivering.send(redirecting.url, {"job_id": "j4"})
        wait_log(caplog, "callback for job j4")
        assert "HTTP 302: redirects are not followed" in caplog.text
        assert "failed after 1 attempts" in caplog.text, "a redirect is not retried"
        assert len(redirecting.posts) == 1  # "failed after" was the delivery's last act
        assert receiver.posts == []
        delivering.close(5)
    finally:
        redirecting.stop()


# -- a hostile receiver's answer -------------------------------------------------------------


def test_a_1gb_answer_is_not_read(huge: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    """The receiver announces and streams 1 GB; the sender reads a few KB, hangs up, and
    neither Python allocations nor the process's RSS grow by more than a few MB."""
    caplog.set_level(logging.INFO)
    delivering = sender(timeout=5)
    tracemalloc.start()
    try:
        with PeakRss() as rss:
            started = time.monotonic()
            delivering.send(huge.url, {"job_id": "j5"})
            wait_log(caplog, "callback for job j5")
            elapsed = time.monotonic() - started
            huge.answers_done.wait(5)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "delivered (HTTP 200)" in caplog.text
    assert elapsed < 5
    assert peak < 256 * 1024, f"Python allocated {peak} bytes at the peak"
    assert rss.growth < 8 * 1024 * 1024, f"RSS grew {rss.growth} bytes"
    assert huge.answers_done.is_set(), "the receiver is still sending: nobody hung up"
    assert huge.sent_bytes < 64 * 1024 * 1024 < GIGABYTE
    started = time.monotonic()
    delivering.close(30)
    assert time.monotonic() - started < 1


def test_headers_dripped_a_byte_a_second_end_at_the_deadline(
    drip_headers: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Each read gets a byte within httpcore's per-read timeout; only the attempt's own
    wall-clock deadline ends it."""
    delivering = sender(timeout=2)
    started = time.monotonic()
    delivering.send(drip_headers.url, {"job_id": "j6"})
    elapsed = wait_log(caplog, "callback for job j6", timeout=10)
    assert 1.5 < elapsed < 3.5, elapsed
    assert "no answer within 2 s" in caplog.text
    delivering.close(30)
    assert time.monotonic() - started < 4


def test_a_body_dripped_after_200_is_a_delivery_that_ends_at_the_deadline(
    drip_body: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    delivering = sender(timeout=2)
    delivering.send(drip_body.url, {"job_id": "j7"})
    elapsed = wait_log(caplog, "callback for job j7", timeout=10)
    assert "delivered (HTTP 200)" in caplog.text
    assert elapsed < 3.5, elapsed
    delivering.close(30)


def test_close_waits_a_few_seconds_at_most_for_stuck_callbacks(drip_headers: Receiver) -> None:
    """Shutdown with five deliveries stuck on a dripping receiver (deadline 60 s each):
    `close` returns after its own few seconds, not 5 x 60 s, and abandons the daemons."""
    delivering = sender(timeout=60, close_wait=2)
    for index in range(5):
        delivering.send(drip_headers.url, {"job_id": f"stuck-{index}"})
    drip_headers.wait_posts(5)  # all five are stuck on the dripping answer
    started = time.monotonic()
    delivering.close(60)
    assert time.monotonic() - started < 2.5


def test_server_shutdown_is_not_held_by_a_stuck_callback(
    settings: Settings, hub: Hub, drip_headers: Receiver
) -> None:
    """The callback's deadline is 10 s and the download workers' stop timeout 10 s; the
    app's shutdown still ends within the sender's few seconds."""
    hub.add_repo("org/stuck", make_files(n_files=1, size=2_000, seed=72))
    with serving(settings, LOOPBACK) as (client, _):
        job = start_download(client, "org/stuck", callback_url=drip_headers.url)
        (post,) = drip_headers.wait_posts(1, timeout=20)
        assert post["job_id"] == job["job_id"]
        started = time.monotonic()
    assert time.monotonic() - started < 5, "shutdown waited for the callback"


# -- credentials in the URL --------------------------------------------------------------------


def test_userinfo_is_sent_but_never_shown_to_readers_nor_logged(
    settings: Settings, hub: Hub, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(settings, LOOPBACK) as (client, services):
        check_userinfo(client, services, hub, receiver, caplog)


def check_userinfo(
    client: TestClient,
    services: Services,
    hub: Hub,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The test's own HTTP client logs the URLs it requests; the server (configure_logging)
    # keeps httpx's request lines off, and only the server's records are under test.
    caplog.set_level(logging.WARNING, logger="httpx2")
    caplog.set_level(logging.INFO)
    hub.add_repo("org/creds", make_files(n_files=1, size=2_000, seed=73))
    secret_url = f"http://hook-user:s3cr%40t-pw@127.0.0.1:{receiver.port}/webhook/a1b2"
    job = start_download(client, "org/creds", callback_url=secret_url)
    receiver.wait_posts(1)
    assert receiver.credentials == ["hook-user:s3cr@t-pw"], "Basic auth reaches the receiver"

    reader = client.post("/api/keys", json={"name": "r", "scopes": ["models:read"]}).json()
    headers = {"Authorization": f"Bearer {reader['key']}"}
    seen = client.get(f"/api/downloads/{job['job_id']}", headers=headers).json()
    assert seen["callback_url"] == f"http://127.0.0.1:{receiver.port}/…"
    for path in ("/api/downloads", f"/api/download-progress?job_id={job['job_id']}"):
        assert "s3cr" not in client.get(path, headers=headers).text
    assert "hook-user" not in client.get("/api/downloads", headers=headers).text
    assert client.get(f"/api/downloads/{job['job_id']}").json()["callback_url"] == secret_url

    # A failed delivery's warning and the request's access line carry no credentials either.
    dead = f"http://hook-user:s3cr3t@127.0.0.1:{_closed_port()}/webhook"
    services.downloads.callbacks.retries = 0
    hub.add_repo("org/creds-dead", make_files(n_files=1, size=2_000, seed=74))
    for sent in (dead, quote(dead), quote(dead, safe="")):
        client.post(f"/api/download-model?model_id=org/creds-dead&auto=true&callback_url={sent}")
    wait_log(caplog, "failed after 1 attempts")
    assert "s3cr" not in caplog.text and "hook-user" not in caplog.text
    assert "to http://[redacted]@127.0.0.1" in caplog.text
    access = [r.getMessage() for r in caplog.records if r.name == "talktuah.access"]
    assert sum("callback_url=http" in line for line in access) >= 4, access
    assert all("[redacted]" in line for line in access if "callback_url=http" in line)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_close_drops_retries_not_yet_started(caplog: pytest.LogCaptureFixture) -> None:
    """A delivery waiting out its backoff at shutdown gives up instead of sleeping on."""
    delivering = CallbackSender(
        policy=CallbackPolicy(LOOPBACK), retries=5, backoff=30, close_wait=5
    )
    failing = Receiver("unavailable")
    try:
        delivering.send(failing.url, {"job_id": "j8"})
        failing.wait_posts(1)  # the first attempt was made: the next waits out its backoff
    finally:
        failing.stop()
    started = time.monotonic()
    delivering.close(60)
    assert time.monotonic() - started < 1
    wait_log(caplog, "callback for job j8 to")
    assert "failed after 1 attempts" in caplog.text
