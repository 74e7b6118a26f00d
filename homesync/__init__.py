"""homesync: home-directory backup and restore for managed Linux fleets."""

__version__ = "0.1.0"
