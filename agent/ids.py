"""Random ids for reports: a version 4 UUID's text, made from os.urandom as uuid.uuid4 makes it.

Why not `uuid.uuid4()`: importing uuid imports platform and runs `platform.system()` (uname and
the platform module's regexes), ~3 ms of every `appban check`, which needs one id per report.
"""

from __future__ import annotations

import os


def random_id() -> str:
    """Return a new random id in UUID text form (`str(uuid.uuid4())`: version 4, RFC 4122 variant)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant: RFC 4122
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
