"""Sealed passphrases: bound to their machine, tamper-evident, key never overwritten."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, strategies as st

from homesync.errors import HomesyncError
from homesync_server.escrow import EscrowKey


@given(st.binary(min_size=1, max_size=200))
def test_seal_unseal_round_trip(secret):
    key = EscrowKey(os.urandom(32))
    assert key.unseal(key.seal(secret, "0123456789abcdef"), "0123456789abcdef") == secret


def test_a_blob_is_bound_to_its_machine_and_key():
    key = EscrowKey(os.urandom(32))
    blob = key.seal(b"passphrase", "0123456789abcdef")
    with pytest.raises(HomesyncError, match="does not verify"):
        key.unseal(blob, "fedcba9876543210")
    with pytest.raises(HomesyncError):
        EscrowKey(os.urandom(32)).unseal(blob, "0123456789abcdef")
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(HomesyncError):
        key.unseal(tampered, "0123456789abcdef")
    assert b"passphrase" not in blob


def test_the_key_file_is_private_and_never_overwritten(tmp_path):
    path = tmp_path / "escrow.key"
    key = EscrowKey.create(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with pytest.raises(FileExistsError):
        EscrowKey.create(path)
    assert EscrowKey.load(path).unseal(key.seal(b"s", "0" * 16), "0" * 16) == b"s"
