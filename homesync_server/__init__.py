"""homesync-server: the backup server (SSH endpoint, index, identity, escrow)."""
