"""`scanner scan --engine ray` (issue 16) on a local Ray instance: its stored results equal the
plain engine's on the same folder, every kind of bad input included."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import EXPECTED, jpeg_bytes, photo
from sqlalchemy import select

from scanner.store import Database, tables

pytest.importorskip("ray.data", reason="needs the ray extra")


def _scan(
    folder,
    url,
    registry,
    *extra,
    names=("metadata", "copy-move", "test-red", "test-explodes"),
    env: dict | None = None,
):
    env = os.environ | {"PYTHONPATH": registry.pythonpath} | (env or {})
    command = [sys.executable, "-m", "scanner", "scan", str(folder), "--db", url, "--json"]
    for name in names:
        command += ["-d", name]
    done = subprocess.run([*command, *extra], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done


def _stored(url: str, root) -> dict:
    """Everything a scan stored, in a form two databases can be compared by: files with their
    picture, verdicts by picture and detector (score rounded: onnxruntime may use other
    threads), error rows by path, kind and detector."""
    db = Database(url, create=False)
    with db.read() as conn:
        files = {
            os.path.relpath(r.path, root): r.sha256 for r in conn.execute(select(tables.files))
        }
        verdicts = {
            (r.sha256, r.detector): (r.label, None if r.score is None else round(r.score, 4))
            for r in conn.execute(select(tables.verdicts))
        }
        errors = sorted(
            (os.path.relpath(r.path, root), r.kind, r.detector or "")
            for r in conn.execute(select(tables.errors))
        )
    return {"files": files, "verdicts": verdicts, "errors": errors}


@pytest.mark.parametrize("decode", ["actors", "tasks"])
def test_the_ray_engine_stores_what_the_plain_engine_stores(image_dir, registry, tmp_path, decode):
    registry.add("test-red", "sample_detectors:Redness")
    registry.add("test-explodes", "sample_detectors:Explodes")
    plain, ray = f"sqlite:///{tmp_path / 'plain.db'}", f"sqlite:///{tmp_path / 'ray.db'}"
    _scan(image_dir, plain, registry)
    ray_options = ("--engine", "ray", "--ray-cpus", "2", "--ray-decode", decode)
    done = _scan(image_dir, ray, registry, *ray_options)
    assert "Traceback" not in done.stderr and "core_worker" not in done.stderr, done.stderr

    expected, got = _stored(plain, image_dir), _stored(ray, image_dir)
    assert set(got["files"]) == set(EXPECTED)
    assert got == expected
    # Every picture got a verdict from each detector that did not fail, and the exploding
    # detector an error row per picture, never ending the job.
    pictures = {sha for sha, _ in got["verdicts"]}  # a truncated JPEG is judged as far as it goes
    assert len(pictures) >= 7
    for name in ("metadata", "copy-move", "test-red"):
        assert {sha for sha, d in got["verdicts"] if d == name} == pictures
    exploded = [e for e in got["errors"] if e[2] == "test-explodes"]
    assert len(exploded) == len(pictures)


def test_a_rescan_with_the_ray_engine_reads_nothing_unchanged(image_dir, registry, tmp_path):
    url = f"sqlite:///{tmp_path / 'ray.db'}"
    names = ("metadata", "copy-move")  # an exploding detector would ask for its verdict again
    _scan(image_dir, url, registry, "--engine", "ray", "--ray-cpus", "1", names=names)
    again = _scan(image_dir, url, registry, "--engine", "ray", "--ray-cpus", "1", names=names)
    assert '"scanned": 0' in again.stdout, again.stdout


def test_without_ray_installed_the_engine_says_how_to_get_it(image_dir, tmp_path):
    env = os.environ | {"PYTHONPATH": str(tmp_path)}
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('no ray here')\n")
    done = subprocess.run(
        [sys.executable, "-m", "scanner", "scan", str(image_dir), "--engine", "ray", "--db",
         f"sqlite:///{tmp_path / 'x.db'}"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "pip install 'scanner[ray]'" in done.stderr
    assert "Traceback" not in done.stderr


# The scanning process with listing and reading taken away from it: every folder must then be
# listed, and every file read, by Ray's tasks and actors (which import scanner afresh).
NO_READING_HERE = """
import sys
import scanner.files, scanner.pipeline, scanner.ray_engine
def refuse(*args, **kwargs):
    raise AssertionError("the scanning process listed a folder or read a file")
scanner.files.read_file = scanner.pipeline.read_file = scanner.ray_engine.read_file = refuse
scanner.files.list_folder = scanner.ray_engine.list_folder = refuse
from scanner.cli import app
app(prog_name="scanner", args=sys.argv[1:])
"""


def test_ray_lists_folders_and_reads_files_not_the_scanning_process(image_dir, registry, tmp_path):
    plain, ray = f"sqlite:///{tmp_path / 'plain.db'}", f"sqlite:///{tmp_path / 'ray.db'}"
    names = ("metadata", "copy-move")
    _scan(image_dir, plain, registry, names=names)
    command = [sys.executable, "-c", NO_READING_HERE, "scan", str(image_dir), "--db", ray]
    command += ["-d", "metadata", "-d", "copy-move", "--engine", "ray", "--ray-cpus", "2"]
    env = os.environ | {"PYTHONPATH": registry.pythonpath}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert _stored(ray, image_dir) == _stored(plain, image_dir)


def test_a_file_that_changed_after_it_was_hashed_is_an_error_not_a_verdict(tmp_path):
    from scanner.ray_engine import read_again, read_files
    from scanner.work import Done, Job

    path = tmp_path / "a.jpg"
    path.write_bytes(b"\xff\xd8\xff" + b"0" * 100)
    (outcome,) = read_files([str(path)], 10**6, None)
    _, _, data, sha, _ = outcome
    assert data == b""  # only the hash goes back to the scanning process
    job = Job(str(path), sha, b"", ("metadata",), True)
    assert read_again(job).data == path.read_bytes()
    path.write_bytes(b"\xff\xd8\xff" + b"1" * 100)
    changed = read_again(job)
    assert isinstance(changed, Done) and changed.failure[0] == "unreadable"
    assert "changed" in changed.failure[1]


def test_the_ray_engine_keeps_the_time_and_memory_limits_per_picture(registry, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"photo{i}.jpg").write_bytes(jpeg_bytes(photo(i), 85))
    registry.add("test-red", "sample_detectors:Redness")
    registry.add("test-hangs", "sample_detectors:Hangs")
    registry.add("test-allocates", "sample_detectors:Allocates")
    url = f"sqlite:///{tmp_path / 'ray.db'}"
    # A cap well above a worker's ~90 MB and a time limit well above what touching the cap
    # takes: a VM can take 7 s to touch its first GiB (measured here at ~140 MB/s), and a
    # 5 s limit with a 1 GiB cap let the allocating detector time out instead.
    limits = {"SCANNER_IMAGE_TIMEOUT": "10", "SCANNER_WORKER_MEMORY_MB": "300"}
    started = time.monotonic()
    _scan(
        folder, url, registry, "--engine", "ray", "--ray-cpus", "2",
        names=("test-red", "test-hangs", "test-allocates"), env=limits,
    )  # fmt: skip
    assert time.monotonic() - started < 240
    got = _stored(url, folder)
    assert len(got["files"]) == 4
    assert sorted(d for _, d in got["verdicts"]) == ["test-red"] * 4
    # Each overran once in each actor that met it, was then left out: an error row per overrun.
    kinds = {(e[2], e[1]) for e in got["errors"]}
    assert kinds == {("test-hangs", "detector-error"), ("test-allocates", "detector-error")}
    db = Database(url, create=False)
    with db.read() as conn:
        messages = {r.detector: r.message for r in conn.execute(select(tables.errors))}
    assert messages["test-hangs"].startswith("timeout")
    assert messages["test-allocates"].startswith("out-of-memory")


def test_with_follow_links_a_link_loop_is_walked_once_as_in_the_plain_walk(
    image_dir, registry, tmp_path
):
    (image_dir / "sub" / "back-up").symlink_to(image_dir)  # a loop
    (image_dir / "again").symlink_to(image_dir / "sub")  # the same folder twice
    plain, ray = f"sqlite:///{tmp_path / 'plain.db'}", f"sqlite:///{tmp_path / 'ray.db'}"
    names = ("metadata",)
    _scan(image_dir, plain, registry, "--follow-links", names=names)
    _scan(image_dir, ray, registry, "--follow-links", "--engine", "ray", names=names)
    expected, got = _stored(plain, image_dir), _stored(ray, image_dir)
    assert any(path.startswith("again/") for path in expected["files"])  # the link came first
    assert got["verdicts"] == expected["verdicts"] and got["errors"] == expected["errors"]
    # Which of two paths to one folder is walked depends on who lists first; the pictures and
    # the number of paths do not.
    assert len(got["files"]) == len(expected["files"])
    assert set(got["files"].values()) == set(expected["files"].values())


def test_pictures_are_decoded_in_the_tasks_and_only_judged_in_the_actors(tmp_path, monkeypatch):
    """The two Ray steps called in this process: the task's output, judged by an actor whose
    decoder is taken away, gives the verdicts that the plain engine's work() gives."""
    import pickle

    import numpy as np

    import scanner.work
    from scanner.config import Settings
    from scanner.ray_engine import Judge, prepare_pictures
    from scanner.work import Job, Prepared, work

    data = jpeg_bytes(photo(3), 80)
    path = tmp_path / "a.jpg"
    path.write_bytes(data)
    names = ("metadata", "copy-move")
    job = Job(str(path), __import__("hashlib").sha256(data).hexdigest(), b"", names, True)
    settings = Settings(workers=0)
    batch = {"index": np.array([0]), "job": np.array([pickle.dumps(job)], dtype=object)}
    payload = pickle.dumps((settings, frozenset({"rgb", "bytes", "faces"})))
    (raw,) = prepare_pictures(batch, payload)["prepared"]
    prepared = pickle.loads(raw)
    assert isinstance(prepared, Prepared) and prepared.sample.size == (320, 240)
    assert prepared.done.image is not None and prepared.done.ela is not None
    assert prepared.sample._faces == []  # the faces view computed in the task (none here)
    # the full-size ELA differences, which no detector needs
    assert not prepared.sample._raw and not prepared.sample._grey

    judge = Judge(pickle.dumps((list(names), settings, {})), 1)
    expected = work(Job(str(path), job.sha256, data, names, True), judge.detectors, settings, {})

    def no_decoding_here(*args, **kwargs):
        raise AssertionError("the actor decoded the picture")

    monkeypatch.setattr(scanner.work, "decode_salvaging", no_decoding_here)
    (done_raw,) = judge({"index": np.array([0]), "prepared": np.array([raw], dtype=object)})["done"]
    done = pickle.loads(done_raw)
    assert done.failure is None and not done.errors
    got = sorted((v.detector, v.label, v.score, v.details) for v in done.verdicts)
    assert got == sorted((v.detector, v.label, v.score, v.details) for v in expected.verdicts)
    assert len(got) == 2
    assert done.image == expected.image and done.ela == expected.ela


# The plan Ray Data runs for --ray-decode tasks, after its optimiser (which fuses a task step
# into the actor step after it when it can: decoding would then happen in the actors).
PLAN = """
import contextlib, io, sys
from scanner.config import Settings
from scanner.ray_engine import RayPipeline
from scanner.store import Database
from scanner.work import Job
pipeline = RayPipeline(Database(sys.argv[1]), [], Settings(), cpus=2, decode=sys.argv[2])
plan = io.StringIO()
with contextlib.redirect_stdout(plan):
    pipeline.plan([Job("/x.jpg", "0" * 64, b"", (), True)]).explain()
print(plan.getvalue().split("Physical Plan (Optimized)")[1])
"""


@pytest.mark.parametrize("decode", ["actors", "tasks"])
def test_with_decoding_in_tasks_ray_data_keeps_the_decoding_tasks_apart(tmp_path, decode):
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    done = subprocess.run(
        [sys.executable, "-c", PLAN, url, decode], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "ActorPoolMapOperator[MapBatches(Judge)]" in done.stdout
    separate = "TaskPoolMapOperator[MapBatches(prepare_pictures)]" in done.stdout
    assert separate == (decode == "tasks"), done.stdout
