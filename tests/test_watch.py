"""`scanner watch` as a real process on real folders. Generous timeouts, no timing assertions."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import jpeg_bytes, photo
from sqlalchemy import func, select

from scanner.paths import to_text
from scanner.store import Database, tables

TIMEOUT = 120


def wait_for(predicate, what, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Daemon:
    def __init__(self, folders, db_url, registry, log, *extra):
        env = os.environ | {"PYTHONPATH": registry.pythonpath}
        cmd = [
            sys.executable,
            "-m",
            "scanner",
            "watch",
            *map(str, folders),
            "--db",
            db_url,
            "-d",
            "test-red",
            "--log-format",
            "json",
            *extra,
        ]
        self.log = log
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "a"))  # noqa: SIM115
        wait_for(
            lambda: "catch-up pass" in log.read_text() or self.proc.poll() is not None,
            "the daemon to start",
        )
        assert self.proc.poll() is None, log.read_text()

    def events(self):
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@pytest.fixture
def watched(tmp_path, registry, db_url):
    registry.add("test-red", "sample_detectors:Redness")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    daemons = []

    def start(*extra, folders=(incoming,)):
        daemon = Daemon(folders, db_url, registry, tmp_path / "daemon.log", *extra)
        daemons.append(daemon)
        return daemon

    yield incoming, start
    for daemon in daemons:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def stored(db_url):
    """{path: ("ok", number of verdicts) or ("error", kind)} for every path in the database."""
    db = Database(db_url)
    f, v, e = tables.files, tables.verdicts, tables.errors
    with db.read() as conn:
        verdicts = dict(conn.execute(select(v.c.sha256, func.count()).group_by(v.c.sha256)).all())
        out = {
            r.path: ("ok", verdicts.get(r.sha256, 0))
            for r in conn.execute(select(f))
            if r.status == "ok"
        }
        for r in conn.execute(select(e).where(e.c.detector == "")):
            assert r.path not in out, f"{r.path} has verdicts and an error row"
            out[r.path] = ("error", r.kind)
    db.close()
    return out


def small_jpeg(seed):
    return jpeg_bytes(photo(seed, (64, 48)))


def test_burst_slow_chunks_moves_temporary_names_and_corrupt_files(watched, tmp_path, db_url):
    incoming, start = watched
    daemon = start()
    burst = incoming / "burst"
    burst.mkdir()
    for i in range(300):
        (burst / f"{i:03d}.jpg").write_bytes(small_jpeg(i))
    # Written in slow chunks through one handle: it must not be scanned half-written.
    data = jpeg_bytes(photo(500), 95)
    with open(incoming / "slow.jpg", "wb") as handle:
        for start_byte in range(0, len(data), len(data) // 5 + 1):
            handle.write(data[start_byte : start_byte + len(data) // 5 + 1])
            handle.flush()
            time.sleep(0.6)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "moved.jpg").write_bytes(small_jpeg(501))
    os.rename(outside / "moved.jpg", incoming / "moved.jpg")
    (incoming / "upload.jpg.part").write_bytes(small_jpeg(502))
    time.sleep(1.0)  # the .part file sits there, ignored, before it is renamed
    os.rename(incoming / "upload.jpg.part", incoming / "upload.jpg")
    (incoming / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + os.urandom(500))
    expected = {str(burst / f"{i:03d}.jpg") for i in range(300)}
    expected |= {str(incoming / n) for n in ("slow.jpg", "moved.jpg", "upload.jpg", "corrupt.jpg")}
    wait_for(lambda: set(stored(db_url)) >= expected, "every file to be stored")
    result = stored(db_url)
    assert set(result) == expected, "nothing else (no .part file) may be stored"
    assert result.pop(str(incoming / "corrupt.jpg")) == ("error", "corrupt")
    assert set(result.values()) == {("ok", 1)}
    assert daemon.proc.poll() is None, "a corrupt file must not stop the daemon"
    slow_events = [e for e in daemon.events() if e.get("path") == str(incoming / "slow.jpg")]
    assert [e["event"] for e in slow_events] == ["scanned"], "scanned once, when complete"
    assert daemon.stop() == 0


def test_replaced_file_is_rescanned_and_deleted_file_keeps_its_history(watched, db_url):
    incoming, start = watched
    start()
    target = incoming / "photo.jpg"
    target.write_bytes(small_jpeg(1))
    wait_for(lambda: str(target) in stored(db_url), "the first version")
    first = Database(db_url).file_states([str(target)])[str(target)].sha256
    target.write_bytes(small_jpeg(2))
    wait_for(
        lambda: Database(db_url).file_states([str(target)])[str(target)].sha256 != first,
        "the replaced file to be rescanned",
    )
    target.unlink()
    time.sleep(1.5)
    assert stored(db_url)[str(target)] == ("ok", 1)


def test_sigkill_mid_burst_then_restart_stores_every_file_exactly_once(watched, db_url):
    incoming, start = watched
    daemon = start()
    for i in range(400):
        (incoming / f"{i:03d}.jpg").write_bytes(small_jpeg(i))
        if i == 150:
            wait_for(lambda: len(stored(db_url)) > 20, "the burst to be underway")
            daemon.proc.kill()
            daemon.proc.wait()
    partial = len(stored(db_url))
    assert partial < 400, "the kill came too late to test anything"
    restarted = start()
    wait_for(lambda: len(stored(db_url)) == 400, "the catch-up pass to store the rest")
    result = stored(db_url)
    assert set(result.values()) == {("ok", 1)}
    scanned = [e["path"] for e in restarted.events() if e.get("event") == "scanned"]
    assert len(scanned) == len(set(scanned)), "the restarted daemon scanned a file twice"
    assert restarted.stop() == 0


def test_sigterm_exits_zero_and_status_shows_the_watcher(watched, db_url, registry):
    incoming, start = watched
    daemon = start("--settle", "0.1")
    (incoming / "a.jpg").write_bytes(small_jpeg(3))
    wait_for(lambda: len(stored(db_url)) == 1, "a.jpg")
    env = os.environ | {"PYTHONPATH": registry.pythonpath}
    running = subprocess.run(
        [sys.executable, "-m", "scanner", "status", "--db", db_url, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(running.stdout)
    assert report["images"] == 1 and report["watchers"][0]["state"] == "running"
    health = [sys.executable, "-m", "scanner", "status", "--db", db_url, "--healthy"]
    alive = subprocess.run(health, env=env, capture_output=True, text=True)
    assert alive.returncode == 0 and "running" in alive.stdout  # the container's HEALTHCHECK
    assert daemon.stop(signal.SIGTERM) == 0
    stopped = subprocess.run(
        [sys.executable, "-m", "scanner", "status", "--db", db_url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "stopped" in stopped.stdout and "scanned=1" in stopped.stdout
    dead = subprocess.run(health, env=env, capture_output=True, text=True)
    assert dead.returncode == 1 and "no watch daemon is running" in dead.stderr


def test_polling_mode_and_two_daemons_sharing_one_database(watched, tmp_path, db_url):
    incoming, start = watched
    other = tmp_path / "other"
    other.mkdir()
    start("--polling")
    start(folders=(other,))
    for i in range(20):
        (incoming / f"a{i}.jpg").write_bytes(small_jpeg(i))
        (other / f"b{i}.jpg").write_bytes(small_jpeg(100 + i))
    wait_for(lambda: len(stored(db_url)) == 40, "both folders to be stored")
    assert set(stored(db_url).values()) == {("ok", 1)}


def test_a_locked_database_is_retried_and_nothing_is_lost(tmp_path, registry, db_url, monkeypatch):
    registry.add("test-red", "sample_detectors:Redness")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    monkeypatch.setenv("SCANNER_DB_TIMEOUT", "0.5")
    daemon = Daemon([incoming], db_url, registry, tmp_path / "daemon.log")
    try:
        blocker = Database(db_url)
        with blocker.write():  # holds SQLite's write lock for longer than the daemon waits
            for i in range(5):
                (incoming / f"{i}.jpg").write_bytes(small_jpeg(i))
            wait_for(lambda: "retrying" in daemon.log.read_text(), "the daemon to back off")
        wait_for(lambda: len(stored(db_url)) == 5, "the queued files once the lock is gone")
        assert daemon.proc.poll() is None
        assert daemon.stop() == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.proc.kill()


def test_sigkilled_daemon_is_gone_idle_daemon_is_quiet_and_every_line_is_json(
    watched, db_url, registry
):
    incoming, start = watched
    daemon = start("--settle", "0.1")
    time.sleep(7)  # more than one heartbeat interval, idle
    lines = daemon.log.read_text().splitlines()
    events = [json.loads(line) for line in lines]  # every line is JSON
    assert all("queue=" not in e["message"] for e in events), "idle daemons log nothing"
    env = os.environ | {"PYTHONPATH": registry.pythonpath}

    def status(*args):
        return subprocess.run(
            [sys.executable, "-m", "scanner", "status", "--db", db_url, *args],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    daemon.proc.kill()
    daemon.proc.wait()
    assert json.loads(status("--json"))["watchers"][0]["state"] == "gone"
    assert "forgot watcher" in status("--forget")
    assert json.loads(status("--json"))["watchers"] == []


def test_a_deleted_and_recreated_root_is_watched_again(watched, db_url):
    incoming, start = watched
    daemon = start()
    (incoming / "before.jpg").write_bytes(small_jpeg(1))
    wait_for(lambda: str(incoming / "before.jpg") in stored(db_url), "the first file")
    shutil.rmtree(incoming)
    incoming.mkdir()
    (incoming / "after.jpg").write_bytes(small_jpeg(2))  # no reconcile pass for 300 s
    wait_for(lambda: str(incoming / "after.jpg") in stored(db_url), "a file in the new folder")
    messages = [e.get("message", "") for e in daemon.events()]
    assert any("was replaced; watching the new one" in m for m in messages), messages
    assert daemon.stop() == 0


def test_a_name_that_is_not_utf8_does_not_stop_the_daemon(watched, db_url):
    incoming, start = watched
    raw = os.fsencode(incoming) + b"/\xff\xfe.jpg"
    with open(raw, "wb") as handle:  # there before the start: the catch-up pass meets it
        handle.write(small_jpeg(3))
    daemon = start()
    with open(os.fsencode(incoming) + b"/\xfe\xff.jpg", "wb") as handle:  # and one on arrival
        handle.write(small_jpeg(4))
    expected = {to_text(os.fsdecode(raw)), to_text(str(incoming) + "/\udcfe\udcff.jpg")}
    wait_for(lambda: set(stored(db_url)) >= expected, "both files")
    assert daemon.proc.poll() is None
    scanned = [e["path"] for e in daemon.events() if e.get("event") == "scanned"]
    assert set(scanned) == expected  # the JSON log carries the stored form: valid UTF-8
    assert daemon.stop() == 0
