"""Whose address a request log and a login limit use."""

from aiproxy.client_address import client_address


def test_peer_unless_a_proxy_is_trusted() -> None:
    assert client_address("10.0.0.1", "1.2.3.4", "5.6.7.8", trust_proxy=False) == "10.0.0.1"


def test_right_most_forwarded_entry_wins() -> None:
    # The client forged the first entry; our proxy appended the real one.
    assert client_address("10.0.0.1", "6.6.6.6, 1.2.3.4", None, trust_proxy=True) == "1.2.3.4"
    assert client_address("10.0.0.1", None, " 5.6.7.8 ", trust_proxy=True) == "5.6.7.8"
    assert client_address("10.0.0.1", None, None, trust_proxy=True) == "10.0.0.1"
