"""The spine: every file accounted for, decode once, skip what is known, survive bad detectors."""

import json
import os
from pathlib import Path

import pytest
from conftest import EXPECTED, jpeg_bytes, photo
from sample_detectors import (
    Explodes,
    NeedsBigImages,
    OutOfRange,
    Redness,
    RednessV2,
    ThreadPools,
)
from sqlalchemy import select

from scanner.config import Settings, usable_cores
from scanner.pipeline import Pipeline, iter_files
from scanner.store import Database, tables


@pytest.fixture(autouse=True)
def _clear_log():
    Redness.scored.clear()


def rows(db, table):
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(table))]


def scan(db, root, *detectors, **settings):
    pipeline = Pipeline(db, list(detectors), Settings(**({"batch_size": 4} | settings)))
    return pipeline.scan(iter_files([root]))


def test_every_file_is_accounted_for(image_dir, db_url):
    db = Database(db_url)
    stats = scan(db, image_dir, Redness(), NeedsBigImages())
    files = {os.path.relpath(r["path"], image_dir): r for r in rows(db, tables.files)}
    errors = {os.path.relpath(r["path"], image_dir): r for r in rows(db, tables.errors)}
    recorded = {p: ("ok" if p not in errors else errors[p]["kind"]) for p in files | errors}
    assert recorded == EXPECTED
    assert all(e["message"] for e in errors.values())
    assert stats.seen == len(EXPECTED) + 1  # + notes.txt, skipped as not an image
    assert stats.not_images == 1 and stats.errors == 4
    # clean0-copy.jpg has clean0's bytes; truncated.jpg is scored as far as it decodes, and its
    # error row says it is damaged.
    assert stats.scanned == 8 and stats.duplicates == 1
    assert files["truncated.jpg"]["status"] == "ok"
    assert "scored as far as it decodes" in errors["truncated.jpg"]["message"]
    assert stats.flagged == {"test-red": 1}  # red.jpg


def test_same_picture_under_two_paths_is_scanned_once(image_dir, db_url):
    db = Database(db_url)
    scan(db, image_dir, Redness())
    assert len(Redness.scored) == len(set(Redness.scored)) == 8
    by_path = {r["path"]: r["sha256"] for r in rows(db, tables.files)}
    assert by_path[str(image_dir / "clean0.jpg")] == by_path[str(image_dir / "sub/clean0-copy.jpg")]
    assert len(rows(db, tables.images)) == len(rows(db, tables.ela_images)) == 8


def test_verdicts_record_detector_version_threshold_and_details(image_dir, db_url):
    db = Database(db_url)
    scan(db, image_dir, Redness(), NeedsBigImages())
    verdicts = rows(db, tables.verdicts)
    assert len(verdicts) == 16
    red = [v for v in verdicts if v["detector"] == "test-red"]
    assert {v["detector_version"] for v in red} == {"1"} and {v["threshold"] for v in red} == {0.6}
    assert sorted(v["label"] for v in red).count("fake") == 1
    big = {v["label"] for v in verdicts if v["detector"] == "test-big"}
    assert big == {"real", "not-applicable"}  # red.jpg is 64x64
    na = next(v for v in verdicts if v["label"] == "not-applicable")
    assert na["score"] is None and na["reason"] == "smaller than 100 pixels"
    assert '"ela_max"' in next(
        v["details"] for v in verdicts if v["label"] == "real" and v["detector"] == "test-big"
    )


def test_each_worker_holds_its_thread_pools_to_its_share_of_the_cores(image_dir, db_url):
    # Two workers, each with one thread per core in OpenCV and in BLAS, would fight over the
    # cores (OpenBLAS threads spin while they wait): each keeps to cores // workers.
    db = Database(db_url)
    scan(db, image_dir, ThreadPools(), workers=2)
    share = max(1, usable_cores() // 2)
    pools = [json.loads(v["details"]) for v in rows(db, tables.verdicts)]
    assert len(pools) == 8 and all(p["pid"] != os.getpid() for p in pools)
    assert {p["opencv"] for p in pools} == {share}
    assert {n for p in pools for n in p["blas"]} == {share}


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs CPU affinity (Linux)")
def test_a_scan_held_to_one_core_shares_that_core_only(image_dir, db_url):
    # Under `taskset -c 0` (or in a one-core cpuset) the machine's other cores are not the
    # scan's: one worker by default, one thread in each of its pools.
    everything = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(everything)})
    try:
        assert usable_cores() == 1 and Settings().workers == 1
        db = Database(db_url)
        scan(db, image_dir, ThreadPools(), workers=Settings().workers)
    finally:
        os.sched_setaffinity(0, everything)
    pools = [json.loads(v["details"]) for v in rows(db, tables.verdicts)]
    assert {p["opencv"] for p in pools} == {1} and {n for p in pools for n in p["blas"]} == {1}


def test_rescan_skips_unchanged_files_without_reading_them(image_dir, db_url, monkeypatch):
    db = Database(db_url)
    scan(db, image_dir, Redness())
    opened = []
    real_open = os.open

    def spy(path, *args, **kwargs):
        opened.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy)  # the pipeline opens files with os.open
    stats = scan(db, image_dir, Redness())
    monkeypatch.undo()
    assert opened == [str(image_dir / "notes.txt")]  # only to see it is not an image
    assert stats.unchanged == 12 and stats.scanned == 0 and stats.not_images == 1
    assert stats.errors == 1  # the broken link cannot be stat'ed, so it is reported each time
    assert len(Redness.scored) == 8


def test_changed_touched_and_new_files(image_dir, db_url):
    db = Database(db_url)
    scan(db, image_dir, Redness())
    Redness.scored.clear()
    (image_dir / "clean1.jpg").write_bytes(jpeg_bytes(photo(99), 85))  # new content
    os.utime(image_dir / "clean2.jpg", ns=(1, 1_000_000_000))  # touched only
    (image_dir / "truncated.jpg").write_bytes(jpeg_bytes(photo(98)))  # repaired
    stats = scan(db, image_dir, Redness())
    assert stats.scanned == 2 and stats.unchanged == 10 and stats.errors == 1  # broken link
    assert len(Redness.scored) == 2
    kinds = {os.path.basename(r["path"]) for r in rows(db, tables.errors)}
    assert "truncated.jpg" not in kinds


def test_a_new_detector_version_rescans_only_that_detector(image_dir, db_url):
    db = Database(db_url)
    scan(db, image_dir, Redness(), NeedsBigImages())
    before = {(v["sha256"], v["detector"]): v for v in rows(db, tables.verdicts)}
    Redness.scored.clear()
    stats = scan(db, image_dir, RednessV2(), NeedsBigImages())
    assert stats.scanned == 8 and len(Redness.scored) == 8
    after = {(v["sha256"], v["detector"]): v for v in rows(db, tables.verdicts)}
    assert {v["detector_version"] for (_, d), v in after.items() if d == "test-red"} == {"2"}
    big_before = {k: v["scanned_at"] for k, v in before.items() if k[1] == "test-big"}
    assert big_before == {k: v["scanned_at"] for k, v in after.items() if k[1] == "test-big"}


def test_a_failing_detector_costs_only_its_own_verdicts(image_dir, db_url):
    db = Database(db_url)
    stats = scan(db, image_dir, Explodes(), OutOfRange(), Redness())
    assert stats.detector_errors == 16 and stats.scanned == 8
    assert {v["detector"] for v in rows(db, tables.verdicts)} == {"test-red"}
    errors = [e for e in rows(db, tables.errors) if e["detector"]]
    assert {(e["detector"], e["kind"]) for e in errors} == {
        ("test-explodes", "detector-error"),
        ("test-out-of-range", "detector-error"),
    }
    assert any("model exploded" in e["message"] for e in errors)
    assert any("not a probability" in e["message"] for e in errors)
    # The failed detector is retried next time; the error rows are replaced, not piled up.
    scan(db, image_dir, Explodes(), Redness())
    assert len([e for e in rows(db, tables.errors) if e["detector"] == "test-explodes"]) == 8


def test_ela_png_is_capped_and_each_image_decoded_once(image_dir, db_url, monkeypatch):
    import scanner.work as work_module

    calls = []
    real_decode = work_module.decode_salvaging
    monkeypatch.setattr(
        work_module, "decode_salvaging", lambda data: [calls.append(1), real_decode(data)][1]
    )
    db = Database(db_url)
    # In this process (workers=0), where the spy can count.
    scan(db, image_dir, Redness(), NeedsBigImages(), ela_max_side=100, workers=0)
    assert len(calls) == 8 + 2  # good images, and those with a signature that fail to decode
    sizes = {(r["width"], r["height"]) for r in rows(db, tables.ela_images)}
    assert max(max(s) for s in sizes) == 100
    assert {r["quality"] for r in rows(db, tables.ela_images)} == {90}


def test_too_large_and_unreadable_files_are_errors(tmp_path, db_url):
    (tmp_path / "big.jpg").write_bytes(jpeg_bytes(photo(1)) + b"\0" * 2_000_000)
    locked = tmp_path / "locked.jpg"
    locked.write_bytes(jpeg_bytes(photo(2)))
    locked.chmod(0)
    db = Database(db_url)
    stats = Pipeline(db, [Redness()], Settings(max_file_bytes=1_000_000)).scan(
        [str(tmp_path / "big.jpg"), str(locked)]
    )
    kinds = {os.path.basename(e["path"]): e["kind"] for e in rows(db, tables.errors)}
    assert kinds["big.jpg"] == "too-large"
    if os.geteuid() != 0:  # root reads anything
        assert kinds["locked.jpg"] == "unreadable" and stats.errors == 2


def test_copies_of_a_corrupt_file_each_get_an_error_row(tmp_path, db_url):
    bad = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(bad)
    db = Database(db_url)
    stats = scan(db, tmp_path, Redness())
    assert stats.errors == 2 and stats.duplicates == 0
    assert {os.path.basename(e["path"]) for e in rows(db, tables.errors)} == {"a.jpg", "b.jpg"}


def test_worker_threads_store_exactly_what_one_thread_stores(image_dir, tmp_path):
    volatile = ("scanned_at", "first_seen_at", "at", "seconds")

    def contents(workers):
        db = Database(f"sqlite:///{tmp_path / f'w{workers}.db'}")
        stats = scan(db, image_dir, Redness(), NeedsBigImages(), workers=workers).as_dict()
        stored = {
            table.name: sorted(
                repr({k: v for k, v in row.items() if k not in volatile}) for row in rows(db, table)
            )
            for table in (
                tables.files,
                tables.images,
                tables.ela_images,
                tables.verdicts,
                tables.errors,
            )
        }
        return stats | {"seconds": 0}, stored

    assert contents(1) == contents(3)


HEIC = Path(__file__).resolve().parents[2] / "shared" / "data" / "camera_photos" / "heic"


@pytest.mark.skipif(not HEIC.is_dir(), reason=f"needs the shared data at {HEIC}")
def test_heic_photos_are_scanned_and_malformed_ones_are_error_rows(tmp_path, db_url):
    import shutil

    tmp_path = tmp_path / "photos"
    tmp_path.mkdir()
    for name in (
        "cheers_1440x960.heic",
        "IMG_2927.HEIC",
        "NegativeArraySizeException.ItemInfoBox.init.heif",
    ):
        shutil.copy(os.path.join(HEIC, name), tmp_path / name)
    db = Database(db_url)
    stats = scan(db, tmp_path, Redness())
    assert (stats.scanned, stats.errors, stats.not_images) == (2, 1, 0)
    formats = {(r["format"], r["width"], r["height"]) for r in rows(db, tables.images)}
    # EXIF orientation applied: the iPhone photo is portrait.
    assert formats == {("HEIF", 1440, 960), ("HEIF", 3024, 4032)}
    (error,) = rows(db, tables.errors)
    assert error["path"].endswith(".heif") and error["kind"] == "corrupt"


def test_avif_is_scanned(tmp_path, db_url):
    tmp_path = tmp_path / "photos"
    tmp_path.mkdir()
    photo(5).save(tmp_path / "picture.avif", quality=80)
    db = Database(db_url)
    assert scan(db, tmp_path, Redness()).scanned == 1
    assert rows(db, tables.images)[0]["format"] == "AVIF"


def test_folder_links_are_counted_or_followed_once(tmp_path, db_url):
    tmp_path = tmp_path / "photos"
    real = tmp_path / "real"
    real.mkdir(parents=True)
    (real / "a.jpg").write_bytes(jpeg_bytes(photo(1)))
    (real / "loop").symlink_to(real)  # a link back to its own folder
    (tmp_path / "alias").symlink_to(real)
    assert sorted(os.path.relpath(p, tmp_path) for p in iter_files([tmp_path])) == [
        "alias",
        "real/a.jpg",
        "real/loop",
    ]
    followed = [os.path.relpath(p, tmp_path) for p in iter_files([tmp_path], follow_links=True)]
    assert followed == ["alias/a.jpg"] or followed == ["real/a.jpg"]
    stats = Pipeline(Database(db_url), [Redness()], Settings()).scan(iter_files([tmp_path]))
    assert stats.scanned == 1 and stats.skipped == {"folder-link": 2}


def test_stored_ela_uses_a_fixed_recorded_scale_and_can_be_left_out(image_dir, tmp_path):
    from scanner.ela import ELA_SCALE

    db = Database(f"sqlite:///{tmp_path / 'with.db'}")
    scan(db, image_dir, Redness())
    ela = rows(db, tables.ela_images)
    assert {r["scale"] for r in ela} == {ELA_SCALE} and len(ela) == 8
    bare = Database(f"sqlite:///{tmp_path / 'without.db'}")
    assert scan(bare, image_dir, Redness(), store_ela=False).scanned == 8
    assert rows(bare, tables.ela_images) == [] and len(rows(bare, tables.verdicts)) == 8
    # Known images are not rescanned for want of an ELA row.
    assert scan(bare, image_dir, Redness(), store_ela=False).scanned == 0


def test_skipped_files_are_counted_by_kind(tmp_path, db_url):
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "clip.mp4").write_bytes(b"\0\0\0\x18ftypisom" + b"\0" * 100)
    (tmp_path / "paper.pdf").write_bytes(b"%PDF-1.7\n" + b"\0" * 100)
    (tmp_path / "blob.bin").write_bytes(bytes(range(256)))
    stats = scan(Database(db_url), tmp_path, Redness())
    assert stats.skipped == {"text": 1, "video": 1, "document": 1, "other": 1}


def test_bad_plugin_outputs_and_sys_exit_cost_only_their_own_verdicts(image_dir, db_url):
    from sample_detectors import BadOutputs, Exits

    db = Database(db_url)
    stats = scan(db, image_dir, Redness(), BadOutputs(), Exits())
    assert stats.scanned == 8
    verdicts = rows(db, tables.verdicts)
    assert sum(v["detector"] == "test-red" for v in verdicts) == 8
    # batch_size 0 still scores every image, one at a time: each is then result 0 (bad reason).
    problems = [e for e in rows(db, tables.errors) if e["detector"] == "test-bad-outputs"]
    assert len(problems) == 8 and all("reason is a dict" in e["message"] for e in problems)
    exits = [e for e in rows(db, tables.errors) if e["detector"] == "test-exits"]
    assert len(exits) == 8 and exits[0]["message"].startswith("SystemExit")


def test_a_file_swapped_for_a_fifo_does_not_block(tmp_path, db_url, monkeypatch):
    import scanner.pipeline as pipeline_module

    folder = tmp_path / "in"
    folder.mkdir()
    target = folder / "photo.jpg"
    target.write_bytes(jpeg_bytes(photo(1)))
    real_stat = os.stat
    swapped = []

    def swap_after_stat(path, *args, **kw):
        result = real_stat(path, *args, **kw)
        if str(path) == str(target) and not swapped:
            swapped.append(1)
            target.unlink()
            os.mkfifo(target)  # between stat() and open(), as an attacker would
        return result

    monkeypatch.setattr(pipeline_module.os, "stat", swap_after_stat)
    stats = Pipeline(Database(db_url), [Redness()], Settings()).scan([str(target)])
    assert stats.skipped == {"special-file": 1}


def test_progress_advances_once_per_path_not_per_batch(image_dir, db_url):
    ticks: list[int] = []
    pipeline = Pipeline(Database(db_url), [Redness()], Settings(batch_size=16))
    stats = pipeline.scan(iter_files([image_dir]), progress=ticks.append)
    assert ticks == [1] * stats.seen  # every path once, each as it gets its outcome
    assert stats.seen > 1  # a batch of 16 holds them all: per batch would be one tick


def test_a_known_picture_under_a_new_path_in_a_later_scan_is_a_duplicate(image_dir, db_url):
    db = Database(db_url)
    scan(db, image_dir, Redness())
    Redness.scored.clear()
    (image_dir / "later").mkdir()
    (image_dir / "later" / "clean0-again.jpg").write_bytes((image_dir / "clean0.jpg").read_bytes())
    # Not waiting for other processes: a picture wrongly taken for another's would hang here.
    pipeline = Pipeline(db, [Redness()], Settings(batch_size=4))
    stats = pipeline.scan(iter_files([image_dir]), wait_for_others=False)
    assert pipeline.take_deferred() == []
    assert stats.duplicates == 1 and stats.scanned == 0
    assert len(Redness.scored) == 0  # the stored picture's verdicts stand: nothing judged
