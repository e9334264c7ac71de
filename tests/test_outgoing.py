"""The guarded outgoing client's target rules, address by address (no network needed)."""

from __future__ import annotations

import pytest

from bridge.outgoing.guard import TargetPolicy, TargetRefused, check_url

DEFAULT = TargetPolicy(own_origins=frozenset({("127.0.0.1", 8080)}), own_port=8080)
CLOSED_NETWORK = TargetPolicy(
    allow_private=True, own_origins=frozenset({("calls.example.com", 443)}), own_port=8080
)

INSIDE = [
    "http://[::ffff:10.0.0.1]/",  # IPv4-mapped
    "http://[2002:7f00:1::]/",  # 6to4 around 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 around 10.0.0.1
    "http://[::7f00:1]/",  # IPv4-compatible 127.0.0.1
    "http://[fe80::1%25eth0]/",  # link-local with a zone
    "http://[fc00::1]/",  # unique local
    "http://[::]/",
    "http://192.168.1.1/",
    "http://172.16.0.1/",
    "http://100.127.255.254/",  # CGNAT
    "http://255.255.255.255/",
    "http://240.0.0.1/",
    "http://0.0.0.0/",
    "http://100.100.100.200/",  # a metadata service inside CGNAT
    "http://127.0.0.1.:8081/",
    "http://LOCALHOST/",
    "http://api.localhost/",
    "http://0x7f.1/",
    "http://evil.example:80@127.0.0.1/",
    "http://evil.example\\@127.0.0.1/",  # parsers disagree on its host: refused outright
]


@pytest.mark.parametrize("url", INSIDE)
def test_every_spelling_of_an_inside_address_is_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        check_url(DEFAULT, url)


@pytest.mark.parametrize(
    "url",
    ["https://8.8.8.8/", "http://[2606:4700::1111]:8443/x", "http://[64:ff9b::808:808]/",
     "https://hooks.example.com/in", "https://ουτοπία.δπθ.gr/"],
)  # fmt: skip
def test_public_targets_pass(url: str) -> None:
    check_url(DEFAULT, url)


def test_a_closed_network_reaches_private_addresses_but_not_metadata_or_itself() -> None:
    check_url(CLOSED_NETWORK, "http://10.0.0.5:8080/hook")
    check_url(CLOSED_NETWORK, "http://127.0.0.1:9000/hook")
    check_url(CLOSED_NETWORK, "http://[::1]:9000/hook")
    check_url(CLOSED_NETWORK, "http://100.64.0.1/hook")
    for url in (
        "http://127.0.0.1:8080/api/v1/campaigns",  # this service, on the loopback
        "https://calls.example.com/api/v1/campaigns",  # this service, by its public URL
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://224.0.0.1/",
        "http://0.1.2.3/",
        "http://240.0.0.1/",
        "http://user:pw@10.0.0.5/hook",
    ):
        with pytest.raises(TargetRefused):
            check_url(CLOSED_NETWORK, url)
