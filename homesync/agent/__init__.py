"""The background agent's parts: the policy that decides, and what feeds it (watcher,
netwatch, power), the one D-Bus adapter, and desktop notifications.
"""
