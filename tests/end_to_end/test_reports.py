"""Reports end to end on the real server: two users enroll and back up, joe restores
his laptop onto a new computer; the report (every format) lists the restore and the
passphrase release, the HTML page renders in a real headless Chromium, the metrics
endpoint of `serve` answers, a critical machine makes the report exit 2, and an
audit row edited in the SQLite file is named by `audit verify`."""

from __future__ import annotations

import csv
import io
import json
import shutil
import sqlite3
import struct
import subprocess
import tempfile
import urllib.request
import zlib
from pathlib import Path

import pytest

from tests.support.homesync_server import start_server
from tests.support.processes import free_port, remove
from tests.unit.homesync_server.reports.test_metrics import parse as parse_metrics

JOE_LAPTOP = "Joe's <Thinkpad>"
ANN_LAPTOP = "Ann's Laptop"
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--window-size=1200,1600")


@pytest.fixture(scope="module")
def server():
    metrics_port = free_port()
    running = start_server(identity=f'[identity]\nbackend = "local"\n\n[report]\n'
                                    f'metrics_listen = "127.0.0.1:{metrics_port}"\n')
    running.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    yield running
    assert running.stop() == 0
    remove(running.data.parent)


@pytest.fixture(scope="module")
def fleet(server, computer_factory_module):
    """joe and ann back up; joe's laptop is lost and restored onto a new computer."""
    joe, ann, new = computer_factory_module(), computer_factory_module(), computer_factory_module()
    for computer, user, name in ((joe, "joe", JOE_LAPTOP), (ann, "ann", ANN_LAPTOP)):
        (computer.home / "Documents").mkdir()
        (computer.home / "Documents/notes.txt").write_text(f"{user}'s notes\n" * 1000)
        computer.enroll_and_back_up(server, user, name)
    restored = new.json("restore", "--machine", JOE_LAPTOP, *new.remote_args(server, "joe"), input="joe-secret-pw\n")
    assert (new.home / "Documents/notes.txt").exists()
    return restored




def _report(server, *args: str) -> subprocess.CompletedProcess:
    return server.cli("report", *args)


def test_the_json_report_lists_the_restore_and_the_passphrase_release(server, fleet):
    done = _report(server, "--format", "json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    machines = {m["machine"]: m for m in doc["machines"]}
    assert set(machines) == {JOE_LAPTOP, ANN_LAPTOP}
    assert all(m["status"] == "OK" and m["archives"] == 1 for m in machines.values())
    assert doc["summary"]["protected_share"] == 1.0
    events = doc["activity"]["events"]
    restore = next(e for e in events if e["action"] == "restore")
    assert (restore["actor"], restore["machine"]) == ("joe", JOE_LAPTOP)
    assert restore["detail"]["bytes"] == fleet["bytes"] and restore["detail"]["hostname"]
    release = next(e for e in events if e["action"] == "passphrase_release")
    assert (release["actor"], release["machine"], release["at"] <= restore["at"]) == ("joe", JOE_LAPTOP, True)
    assert {e["actor"] for e in events if e["action"] == "enroll"} == {"joe", "ann"}
    assert not any(e["action"] == "backup" for e in events)


def test_table_and_csv(server, fleet):
    table = _report(server)
    assert table.returncode == 0 and "restore" in table.stdout and "passphrase_release" in table.stdout
    assert "protected within policy: 2 of 2 machines (100%)" in table.stdout
    done = _report(server, "--format", "csv", "--user", "ann")
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [(r["owner"], r["machine"], r["status"]) for r in rows] == [("ann", ANN_LAPTOP, "OK")]
    assert int(rows[0]["original_size"]) > 10_000


def test_the_html_report_renders_in_chromium(server, fleet):
    html = server.data.parent / "report.html"
    done = _report(server, "--format", "html", "--output", str(html))
    assert done.returncode == 0, done.stderr
    assert "&lt;Thinkpad&gt;" in html.read_text()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed (make setup installs Debian's chromium package)"
    with tempfile.TemporaryDirectory() as profile:
        shot = Path(profile) / "shot.png"
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}/p", f"--screenshot={shot}",
                        html.as_uri()], capture_output=True, timeout=120, check=True)
        width, height, pixels = read_png(shot.read_bytes())
    assert (width, height) == (1200, 1600)
    background = max(set(pixels[::97]), key=pixels[::97].count)
    drawn = sum(p != background for p in pixels) / len(pixels)
    assert drawn > 0.02, f"the page looks blank: only {drawn:.2%} of it differs from the background"
    assert len(set(pixels[::7])) > 20, "too few colours for a page with tables and charts"


def test_the_metrics_endpoint_of_serve(server, fleet):
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        families = parse_metrics(response.read().decode())
    assert {labels["status"]: v for labels, v in families["homesync_machines"]}["ok"] == 2
    backed_up = {labels["machine"] for labels, _ in families["homesync_machine_last_backup_timestamp_seconds"]}
    names = {labels["name"] for labels, _ in families["homesync_machine_info"] if labels["machine"] in backed_up}
    assert names == {JOE_LAPTOP, ANN_LAPTOP}
    exported = server.data.parent / "homesync.prom"
    assert server.cli("metrics", "--output", str(exported)).returncode == 0
    assert "homesync_machine_archives" in parse_metrics(exported.read_text())


def test_a_critical_machine_makes_the_report_exit_6(server, fleet):
    with sqlite3.connect(server.data / "index.sqlite") as db:  # ann's backups, ten days older
        db.execute("UPDATE archives SET end = end - 10 * 86400 WHERE machine_id IN "
                   "(SELECT id FROM machines WHERE owner = 'ann')")
    done = _report(server)
    assert done.returncode == 6, done.stderr
    assert "CRITICAL" in done.stdout and "1 need attention now" in done.stdout
    assert _report(server, "--user", "joe").returncode == 0


def test_audit_verify_passes_then_names_an_edited_row(server, fleet):
    intact = server.cli("audit", "verify", "--json")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert json.loads(intact.stdout)["intact"] is True
    with sqlite3.connect(server.data / "index.sqlite") as db:
        (row_id,) = db.execute("SELECT id FROM audit WHERE action = 'restore'").fetchone()
        db.execute("DROP TRIGGER audit_append_only_update")
        db.execute("UPDATE audit SET detail = replace(detail, '\"files\"', '\"filez\"') WHERE id = ?", (row_id,))
    broken = server.cli("audit", "verify")
    assert broken.returncode == 7
    assert f"broken at row {row_id} (edited)" in broken.stdout


def read_png(data: bytes) -> tuple[int, int, list[tuple[int, ...]]]:
    """Given an 8-bit RGB or RGBA PNG, return (width, height, pixels) with the scanline
    filters undone (a tiny decoder: zlib plus the five PNG filters)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = header
    assert depth == 8 and colour in (2, 6) and interlace == 0
    channels = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * channels
    rows, previous = [], bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        line = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous, channels)
        rows.append(line)
        previous = line
    pixels = [tuple(row[x:x + 3]) for row in rows for x in range(0, stride, channels)]
    return width, height, pixels


def _unfilter(kind: int, line: bytearray, above: bytearray, bpp: int) -> bytearray:
    for i in range(len(line)):
        left = line[i - bpp] if i >= bpp else 0
        up, corner = above[i], above[i - bpp] if i >= bpp else 0
        if kind == 1:
            line[i] = (line[i] + left) & 0xFF
        elif kind == 2:
            line[i] = (line[i] + up) & 0xFF
        elif kind == 3:
            line[i] = (line[i] + (left + up) // 2) & 0xFF
        elif kind == 4:
            p = left + up - corner
            pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
            line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
    return line
