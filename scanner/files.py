"""Files as the scan meets them: walking folders (each folder listed by `list_folder`, the
step the plain walk and the Ray engine's listing tasks share) and reading one file (`read_file`:
stat, sniff, size limit, bytes, SHA-256), with the error rows a file that cannot be read gets.
No database here: what a file's stat means for the scan is the Pipeline's business."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from scanner.imaging import IMAGE_SUFFIXES, SNIFF_BYTES, header_pixels, skip_kind, sniff
from scanner.store.database import ErrorRecord, FileRecord


def iter_files(roots: Iterable[str | os.PathLike], follow_links: bool = False) -> Iterator[str]:
    """Absolute paths of the files under `roots`, sorted per folder, each folder's files before
    its subfolders' (depth first, in name order).

    Symbolic links to files are followed (a broken one is yielded, to become an error row).
    Links to folders are yielded as paths (the scan counts them as skipped) unless
    `follow_links`: then the folder behind them is walked, once, whatever the number of links
    to it, so a link loop cannot trap the walk. A folder that cannot be listed is yielded as
    an `Unlisted` path, which the scan turns into an error row.
    """
    walked: set[tuple[int, int]] = set()  # (device, inode) of every folder walked
    for root in roots:
        root = os.path.abspath(root)
        if not os.path.isdir(root):
            yield root
            continue
        stack = [root]
        while stack:
            key, files, folders, unlisted = list_folder(stack.pop(), follow_links)
            yield from unlisted
            if key is None or key in walked:
                continue  # not listed, or reached again through a link: yielded already
            walked.add(key)
            yield from files
            stack.extend(reversed(folders))


def list_folder(folder: str, follow_links: bool = False):
    """What one folder holds: ((device, inode) of the folder or None, its files, its
    subfolders to walk, [Unlisted] when it cannot be listed). Files and subfolders are full
    paths in name order; a link to a folder is a file unless `follow_links` (iter_files says
    why). The one place that decides what a folder contains: the plain walk and the Ray
    engine's listing tasks both use it."""
    try:
        st = os.stat(folder)
        with os.scandir(folder) as listing:
            entries = list(listing)
    except OSError as exc:  # permissions, a folder removed meanwhile, a name too long
        return None, [], [], [Unlisted(folder, exc.strerror or str(exc))]
    files, folders = [], []
    for entry in entries:
        try:
            is_folder = entry.is_dir()  # follows links, as os.walk does
        except OSError:
            is_folder = False
        if is_folder and (follow_links or not entry.is_symlink()):
            folders.append(entry.path)
        else:
            files.append(entry.path)
    return (st.st_dev, st.st_ino), sorted(files), sorted(folders), []


class Unlisted(str):
    """A folder the walk met but could not list: its path, and why (`reason`). It goes through
    the pipeline like a file and ends as an error row, so that nothing is skipped unseen."""

    reason: str

    def __new__(cls, path: str, reason: str):
        self = super().__new__(cls, path)
        self.reason = reason
        return self

    def __getnewargs__(self):  # so that pickling (to and from Ray's tasks) keeps the reason
        return str(self), self.reason


def file_error(path: str, kind: str, message: str, st=None, sha=None, checked_with=None):
    # The file row of a failed file names no image (files.sha256 references images); the
    # error row keeps the hash of its bytes.
    record = (
        FileRecord(path, st.st_size, st.st_mtime_ns, None, "error", checked_with) if st else None
    )
    return record, ErrorRecord(path, kind, message, sha256=sha)


def read_file(
    path: str,
    max_file_bytes: int,
    checked_with: str | None,
    unchanged: Callable[[os.stat_result], bool] = lambda st: False,
    keep_bytes: bool = True,
):
    """One file, read as the scan reads it: None if `unchanged(stat)`; the kind of a skipped
    file (a str); (FileRecord|None, ErrorRecord); or (path, stat, bytes, sha256, pixels), the
    bytes empty unless `keep_bytes` (the Ray engine's reading tasks send back only the hash)."""
    if isinstance(path, Unlisted):
        return file_error(str(path), "unreadable", f"folder not listed: {path.reason}")
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            # Its file row (the link's own size and time) lists it in `scanner results`.
            return file_error(
                path, "broken-link", f"{os.readlink(path)} does not exist", os.lstat(path)
            )
        return file_error(path, "unreadable", "the file disappeared before it was read")
    except OSError as exc:
        return file_error(path, "unreadable", exc.strerror or str(exc))
    if stat.S_ISDIR(st.st_mode):
        return "folder-link"  # iter_files yields a folder only when it is a link
    if not stat.S_ISREG(st.st_mode):
        return "special-file"
    if unchanged(st):
        return None
    try:
        # Non-blocking, and the opened descriptor checked again: a file swapped for a FIFO
        # (or a device) after the stat above must not block the scan in open() or read().
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return "special-file"
        with open(fd, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
            if sniff(head) is None:
                if Path(path).suffix.lower() not in IMAGE_SUFFIXES:
                    return skip_kind(head)
                return file_error(
                    path,
                    "corrupt",
                    "named like an image but has no image signature",
                    st,
                    checked_with=checked_with,
                )
            if st.st_size > max_file_bytes:
                limit = max_file_bytes // (1024 * 1024)
                return file_error(
                    path,
                    "too-large",
                    f"{st.st_size} bytes is over the {limit} MB limit (SCANNER_MAX_FILE_MB)",
                    st,
                    checked_with=checked_with,
                )
            data = head + handle.read()
    except OSError as exc:
        return file_error(path, "unreadable", exc.strerror or str(exc))
    sha, pixels = hashlib.sha256(data).hexdigest(), header_pixels(data)
    return path, st, data if keep_bytes else b"", sha, pixels
