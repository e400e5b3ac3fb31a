"""Shard settings: the lease rules of leader election, exclusive with it; the write gate
finds the resource a request URL writes to."""

from __future__ import annotations

import pytest

from controller.azure.clients import resource_of
from controller.config import SettingsError, load_settings
from controller.shards import partition_of

APP = "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.App/containerApps/api"


def test_shards_default_off_with_32_partitions_and_a_replica_unique_identity() -> None:
    shards = load_settings(None, environ={}).shards
    assert not shards.enabled
    assert shards.partitions == 32
    assert shards.identity.rsplit("-", 1)[1].isdigit()  # hostname-pid


@pytest.mark.parametrize(
    ("shards", "expected"),
    [
        ({"enabled": True, "auditDir": "/a"}, "shards: needs accountUrl or connectionString"),
        ({"enabled": True, "connectionString": "x"}, "shards: needs auditDir"),
        (
            {"enabled": True, "connectionString": "x", "auditDir": "/a", "retryPeriod": "9s"},
            "shards: needs leaseDuration > renewDeadline > 1.2 × retryPeriod",
        ),
        (
            {"accountUrl": "http://acct.blob.example.net"},
            "accountUrl: plain http is allowed only on loopback",
        ),
        ({"enabled": True, "connectionString": "x", "partitions": 0}, "partitions"),
    ],
)
def test_bad_shard_settings_are_refused(shards: dict[str, object], expected: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, environ={}, overrides={"shards": shards})
    assert expected in str(info.value)


def test_shards_and_leader_election_are_exclusive() -> None:
    both = {
        "shards": {"enabled": True, "connectionString": "x", "auditDir": "/a"},
        "leaderElection": {"enabled": True, "connectionString": "x"},
    }
    with pytest.raises(SettingsError, match="leaderElection and shards are exclusive"):
        load_settings(None, environ={}, overrides=both)


@pytest.mark.parametrize(
    "url",
    [
        f"https://management.azure.com{APP}?api-version=2024-03-01",
        f"https://management.azure.com{APP}/revisions/r1/restart?api-version=2024-03-01",
        f"http://127.0.0.1:8480{APP.lower()}/stop",
    ],
)
def test_a_write_belongs_to_its_top_level_resource(url: str) -> None:
    """An action on a child (a revision restart) is gated by its app's partition."""
    assert resource_of(url).lower() == APP.lower()
    assert partition_of(resource_of(url), 32) == partition_of(APP, 32)
