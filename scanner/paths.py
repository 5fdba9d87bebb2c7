"""File paths as the database stores them: text that is always valid UTF-8, losslessly.

On POSIX a file name is bytes, and Python hands a name that is not valid UTF-8 to us with each
undecodable byte as a lone surrogate (U+DC80-U+DCFF, PEP 383). Neither SQLite nor PostgreSQL
can store a lone surrogate, so the stored form writes such a byte as U+FFFD (the replacement
character) followed by its two hex digits, and doubles a U+FFFD that is really in the name.
Every other name, which is nearly every name, is stored exactly as it is.

    to_text("/in/caf\\udce9.jpg") == "/in/caf\\ufffde9.jpg"      (the name's bytes: caf\\xe9.jpg)
    from_text("/in/caf\\ufffde9.jpg") == "/in/caf\\udce9.jpg"    (os.fsencode gives the bytes)
"""

from __future__ import annotations

ESCAPE = "\ufffd"


def _plain(path: str) -> bool:
    return ESCAPE not in path and (path.isascii() or not any(_byte(c) for c in path))


def _byte(char: str) -> bool:
    return "\udc80" <= char <= "\udcff"


def to_text(path: str) -> str:
    """The stored form of a path as the file system gave it (os.fsdecode)."""
    if _plain(path):
        return path
    out = []
    for char in path:
        if char == ESCAPE:
            out.append(ESCAPE * 2)
        elif _byte(char):
            out.append(f"{ESCAPE}{ord(char) - 0xDC00:02x}")
        else:
            out.append(char)
    return "".join(out)


def from_text(text: str) -> str:
    """The path (as os.fsdecode gives it) of a stored form; the inverse of to_text."""
    if ESCAPE not in text:
        return text
    out, i = [], 0
    while i < len(text):
        char = text[i]
        if char != ESCAPE:
            out.append(char)
            i += 1
        elif text[i + 1 : i + 2] == ESCAPE:
            out.append(ESCAPE)
            i += 2
        else:
            try:
                out.append(chr(0xDC00 + int(text[i + 1 : i + 3], 16)))
                i += 3
            except ValueError:  # not written by to_text (typed by hand, say): kept as it is
                out.append(char)
                i += 1
    return "".join(out)
