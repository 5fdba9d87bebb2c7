"""The same pipeline and queries against a real PostgreSQL server, started for this module.

Needs PostgreSQL's server programs (initdb, postgres) on PATH or in /usr/lib/postgresql; skipped
with the reason otherwise. As root, the server runs as the `postgres` user, as it insists.
"""

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest
from conftest import EXPECTED
from sample_detectors import NeedsBigImages, Redness
from sqlalchemy import select

from scanner.config import Settings
from scanner.pipeline import Pipeline, iter_files
from scanner.store import Database, queries, tables


def _server_bin(name):
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


@pytest.fixture(scope="module")
def postgres_url():
    initdb, postgres = _server_bin("initdb"), _server_bin("postgres")
    if not (initdb and postgres):
        pytest.skip("PostgreSQL server programs (initdb, postgres) are not installed")
    as_user = []
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start postgres as another user")
        as_user = ["runuser", "-u", "postgres", "--"]
    root = tempfile.mkdtemp(prefix="scanner-pg-")
    data, sock = os.path.join(root, "data"), os.path.join(root, "sock")
    os.makedirs(sock)
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(
        [*as_user, initdb, "-D", data, "-U", "scanner", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [*as_user, postgres, "-D", data, "-k", sock, "-c", "listen_addresses=", "-p", "5433"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"postgresql+psycopg://scanner@/postgres?host={sock}&port=5433"
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(sock, ".s.PGSQL.5433")):
            assert server.poll() is None and time.monotonic() < deadline, "postgres did not start"
            time.sleep(0.2)
        time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def test_scan_store_and_query_on_postgresql(postgres_url, image_dir):
    db = Database(postgres_url)
    pipeline = Pipeline(db, [Redness(), NeedsBigImages()], Settings(batch_size=4))
    stats = pipeline.scan(iter_files([image_dir]))
    assert stats.scanned == 8 and stats.errors == 4 and stats.duplicates == 1
    again = Pipeline(Database(postgres_url), [Redness(), NeedsBigImages()], Settings())
    assert again.scan(iter_files([image_dir])).unchanged == 12
    rows = queries.verdicts(db, queries.ResultFilter(label="fake"))
    assert [(os.path.basename(r["path"]), r["detector"]) for r in rows] == [("red.jpg", "test-red")]
    assert rows[0]["overall"] == "fake"
    glob_rows = queries.verdicts(db, queries.ResultFilter(path_glob="*/sub/*"))
    assert len(glob_rows) == 6
    errors = {os.path.relpath(e["path"], image_dir): e["kind"] for e in queries.list_errors(db)}
    assert errors == {p: k for p, k in EXPECTED.items() if k != "ok"}


def test_views_and_read_only_opening_on_postgresql(postgres_url, image_dir):
    from sqlalchemy import text

    db = Database(postgres_url)
    Pipeline(db, [Redness(), NeedsBigImages()], Settings()).scan(iter_files([image_dir]))
    reader = Database(postgres_url, create=False)
    expected = {
        r["path"]: (r["overall"], r["score"], ",".join(r["flagged_by"]) or None)
        for r in queries.images(reader, queries.ResultFilter())
    }
    with reader.read() as conn:
        rows = conn.execute(text("SELECT path, overall, score, flagged_by FROM image_results"))
        view = {path: tuple(rest) for path, *rest in rows}
    assert view == expected and len(view) >= 8  # the module shares one server


def _fresh_database(postgres_url: str, name: str) -> str:
    from sqlalchemy import create_engine, text

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres_url.replace("/postgres?", f"/{name}?")


def test_four_processes_creating_the_schema_at_once(postgres_url):
    """Issue 16: the second of two scans on a fresh database died with UniqueViolation while
    both created the schema. Four processes, released together, each open it for writing."""
    for attempt in range(3):  # three fresh databases: a race shows up in some, not all, runs
        url = _fresh_database(postgres_url, f"fresh{attempt}")
        go = os.path.join(tempfile.mkdtemp(), "go")
        code = (
            "import os, sys, time\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
            "from scanner.store import Database\n"
            "Database(sys.argv[1]).close()\n"
        )
        # Imports first, then all wait for one file: they reach the schema together.
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", "import scanner.store\n" + code, url, go],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        time.sleep(2)
        open(go, "w").close()
        results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
        assert all(code == 0 for code, _ in results), [err[-500:] for _, err in results]
        db = Database(url, create=False)  # at the current schema: a reader accepts it
        assert queries.status(db)["images"] == 0


def _scans(url, folder, registry, log, count):
    env = os.environ | {"PYTHONPATH": registry.pythonpath, "SCANNER_TEST_SCORED_LOG": str(log)}
    command = [sys.executable, "-m", "scanner", "scan", str(folder), "--db", url, "-d", "test-red"]
    return [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(count)
    ]


def _folder(root, count):
    from conftest import jpeg_bytes, photo

    root.mkdir()
    for i in range(count):
        (root / f"{i:03d}.jpg").write_bytes(jpeg_bytes(photo(i, (96, 64)), 85))
    return root


def test_three_scans_of_one_folder_judge_each_picture_once(postgres_url, registry, tmp_path):
    """Issue 16: processes sharing one database claim each picture before working on it."""
    registry.add("test-red", "sample_detectors:Redness")
    folder = _folder(tmp_path / "shared", 60)
    url = _fresh_database(postgres_url, "three")
    log = tmp_path / "scored.txt"
    procs = _scans(url, folder, registry, log, 3)
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0], [p.stderr.read() for p in procs]
    scored = log.read_text().split()
    assert len(scored) == 60 and len(set(scored)) == 60, "a picture was judged twice"
    db = Database(url, create=False)
    rows = queries.images(db, queries.ResultFilter())
    assert len(rows) == 60 and {r["overall"] for r in rows} == {"no-sign"}
    assert queries.status(db)["files"] == 60
    with db.read() as conn:
        assert conn.execute(select(tables.claims)).all() == []


def test_a_killed_scan_loses_nothing_and_its_claims_are_taken_over(
    postgres_url, registry, tmp_path
):
    registry.add("test-red", "sample_detectors:Redness")
    folder = _folder(tmp_path / "shared", 240)
    url = _fresh_database(postgres_url, "killed")
    log = tmp_path / "scored.txt"
    victim, survivor = _scans(url, folder, registry, log, 2)
    deadline = time.monotonic() + 120
    while not (log.exists() and len(log.read_text().split()) >= 40):
        assert time.monotonic() < deadline and victim.poll() is None, "no progress to interrupt"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert survivor.wait(timeout=300) == 0, survivor.stderr.read()
    (late,) = _scans(url, folder, registry, log, 1)  # picks up whatever is still missing
    assert late.wait(timeout=300) == 0, late.stderr.read()
    db = Database(url, create=False)
    assert queries.status(db)["files"] == 240
    assert len(queries.images(db, queries.ResultFilter())) == 240
    scored = log.read_text().split()
    assert set(scored) == {r["sha256"] for r in queries.images(db, queries.ResultFilter())}
    # Only what the killed process had in hand, and never stored, was judged again.
    assert len(scored) - len(set(scored)) <= 16
    with db.read() as conn:
        assert conn.execute(select(tables.claims)).all() == []


def test_two_watch_daemons_on_one_folder_judge_each_picture_once(postgres_url, registry, tmp_path):
    from conftest import jpeg_bytes, photo
    from test_watch import Daemon, wait_for

    registry.add("test-red", "sample_detectors:Redness")
    url = _fresh_database(postgres_url, "watched")
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    Redness.scored.clear()  # the daemons' workers append to the file this names
    first = Daemon((incoming,), url, registry, tmp_path / "first.log", "--settle", "0.2")
    second = Daemon((incoming,), url, registry, tmp_path / "second.log", "--settle", "0.2")
    for i in range(40):
        (incoming / f"{i:02d}.jpg").write_bytes(jpeg_bytes(photo(500 + i, (96, 64)), 85))
    db = Database(url, create=False)
    wait_for(lambda: queries.status(db)["files"] == 40, "the daemons to store 40 files")
    assert first.stop() == 0 and second.stop() == 0
    scored = list(Redness.scored)
    assert len(scored) == 40 and len(set(scored)) == 40, "a picture was judged twice"
    with db.read() as conn:
        assert conn.execute(select(tables.claims)).all() == []
