"""Desktop notifications through a fake org.freedesktop.Notifications on a private session bus."""

from __future__ import annotations

import asyncio

from homesync.agent.notify import DesktopNotifier, NullNotifier, Protection, decide_notice, open_notifier

DAY = 86400.0


def _run(scenario):
    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_at_risk_then_protected_replaces_it(fake_notifications):
    async def scenario():
        notifier = await open_notifier()
        assert isinstance(notifier, DesktopNotifier)
        at_risk = decide_notice(Protection(last_success=0, target=DAY), 3 * DAY, hint="not on the corporate network")
        await notifier.show(at_risk.notice)
        protected = decide_notice(Protection(last_success=3 * DAY, target=DAY, warned=True), 3 * DAY + 1)
        await notifier.show(protected.notice)
        await notifier.close()
    _run(scenario)
    first, second = fake_notifications.wait_for_calls(2)
    assert first["app_name"] == "homesync" and first["replaces_id"] == 0
    assert first["summary"] == "Your files are not backed up"
    assert first["body"] == ("The last backup is 3 days old (the target is 1 day). "
                             "Not on the corporate network.")
    assert first["hints"] == {"urgency": 1} and first["expire_timeout"] == -1
    assert second["replaces_id"] == first["id"]
    assert second["summary"] == "Your files are backed up again"
    assert second["hints"] == {"urgency": 0, "transient": True}


def test_no_notification_service_is_logged_not_raised(session_bus, caplog):
    async def scenario():
        notifier = await open_notifier(timeout=1)
        notice = decide_notice(Protection(None, DAY), 0).notice
        await notifier.show(notice)
        await notifier.close()
    _run(scenario)
    assert "could not show a desktop notification" in caplog.text


def test_no_session_bus(monkeypatch, tmp_path):
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path}/none")

    async def scenario():
        notifier = await open_notifier(timeout=1)
        assert isinstance(notifier, NullNotifier)
        await notifier.show(decide_notice(Protection(None, DAY), 0).notice)
    _run(scenario)
