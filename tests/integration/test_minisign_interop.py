"""Interoperability of agent.banlist.signature with the real `minisign` binary.

Admins may sign ban lists with stock minisign and may use keys made by
`appban policy keygen` with stock minisign, so both directions are checked
against the real tool rather than against our own reading of the spec.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from agent.banlist.signature import (
    SignatureError,
    generate_keypair,
    parse_public_key,
    parse_secret_key,
    sign,
    verify,
)

TIMEOUT = 30
LIST = b'{"version": 3, "banned": ["evil.exe"]}\n'

MINISIGN = shutil.which("minisign")
if MINISIGN is None:
    if os.environ.get("CI"):
        pytest.fail("minisign binary not found, but CI installs it", pytrace=False)
    pytest.skip("minisign binary not installed", allow_module_level=True)


def run_minisign(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run minisign non-interactively.

    stdin is /dev/null and a new session detaches it from any controlling
    terminal, so a password prompt fails fast instead of hanging the suite;
    the timeout is the last line of defence.
    """
    assert MINISIGN is not None
    return subprocess.run(
        [MINISIGN, *map(str, args)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        start_new_session=True,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, f"minisign failed: {proc.stdout}{proc.stderr}"
    return proc


def write_list(tmp_path: Path, data: bytes = LIST) -> Path:
    path = tmp_path / "banlist.json"
    path.write_bytes(data)
    return path


def write_our_keys(tmp_path: Path) -> tuple[Path, Path]:
    sk, pk = generate_keypair()
    sec = tmp_path / "ours.key"
    pub = tmp_path / "ours.pub"
    sec.write_text(sk.to_minisign_file())
    sec.chmod(0o600)
    pub.write_text(pk.to_minisign_file())
    return sec, pub


def test_minisign_signed_list_verifies_with_ours(tmp_path: Path) -> None:
    ok(run_minisign("-G", "-W", "-p", "pub", "-s", "sec", cwd=tmp_path))
    listfile = write_list(tmp_path)
    ok(run_minisign("-S", "-s", "sec", "-m", listfile, "-t", "ban list v3", cwd=tmp_path))

    pk = parse_public_key((tmp_path / "pub").read_text())
    # The pub file comment carries minisign's own spelling of the key id (0.11 prints it without
    # leading zeros, later versions pad it to 16 digits): the same number either way.
    assert int((tmp_path / "pub").read_text().splitlines()[0].split()[-1], 16) == int(pk.key_id_hex, 16)
    sig_text = (tmp_path / "banlist.json.minisig").read_text()
    result = verify(LIST, sig_text, [pk])
    assert result.trusted_comment == "ban list v3"
    assert result.prehashed is True
    assert result.key_id_hex == pk.key_id_hex
    # bare base64 form (as pasted into trusted_keys) works the same
    bare = parse_public_key((tmp_path / "pub").read_text().splitlines()[1])
    assert verify(LIST, sig_text.encode(), [bare]) == result


def test_minisign_legacy_signature_verifies_with_ours(tmp_path: Path) -> None:
    ok(run_minisign("-G", "-W", "-p", "pub", "-s", "sec", cwd=tmp_path))
    listfile = write_list(tmp_path)
    ok(run_minisign("-S", "-l", "-s", "sec", "-m", listfile, "-t", "legacy", cwd=tmp_path))
    pk = parse_public_key((tmp_path / "pub").read_text())
    result = verify(LIST, (tmp_path / "banlist.json.minisig").read_text(), [pk])
    assert result.prehashed is False
    assert result.trusted_comment == "legacy"


def test_minisign_generated_secret_key_is_readable(tmp_path: Path) -> None:
    ok(run_minisign("-G", "-W", "-p", "pub", "-s", "sec", cwd=tmp_path))
    sk = parse_secret_key((tmp_path / "sec").read_text())
    pk = parse_public_key((tmp_path / "pub").read_text())
    assert sk.public_key == pk
    listfile = write_list(tmp_path)
    (tmp_path / "banlist.json.minisig").write_text(sign(LIST, sk, "signed by appban"))
    proc = ok(run_minisign("-V", "-p", "pub", "-m", listfile, "-Q", cwd=tmp_path))
    assert proc.stdout == "signed by appban\n"


def test_our_signature_verifies_with_minisign(tmp_path: Path) -> None:
    sk, pk = generate_keypair()
    (tmp_path / "ours.pub").write_text(pk.to_minisign_file())
    listfile = write_list(tmp_path)
    comment = "timestamp:1700000000\tfile:banlist.json\tversion:3"
    (tmp_path / "banlist.json.minisig").write_text(sign(LIST, sk, comment))

    proc = ok(run_minisign("-V", "-p", "ours.pub", "-m", listfile, cwd=tmp_path))
    assert f"Trusted comment: {comment}" in proc.stdout
    proc = ok(run_minisign("-V", "-p", "ours.pub", "-m", listfile, "-Q", cwd=tmp_path))
    assert proc.stdout == comment + "\n"
    proc = ok(run_minisign("-V", "-p", "ours.pub", "-m", listfile, "-q", cwd=tmp_path))
    assert proc.stdout == ""
    # -P with the bare key, and -H (require prehashed) also accept it
    ok(run_minisign("-V", "-H", "-P", pk.to_base64(), "-m", listfile, cwd=tmp_path))


def test_our_secret_key_file_works_with_minisign(tmp_path: Path) -> None:
    sec, pub = write_our_keys(tmp_path)
    listfile = write_list(tmp_path)
    # -p makes minisign check that the signature would verify with our pub key.
    proc = ok(
        run_minisign(
            "-S", "-s", sec, "-p", pub, "-m", listfile, "-t", "from our key", cwd=tmp_path
        )
    )
    assert "Password" not in proc.stdout + proc.stderr

    pk = parse_public_key(pub.read_text())
    result = verify(LIST, (tmp_path / "banlist.json.minisig").read_text(), [pk])
    assert result.trusted_comment == "from our key"
    assert result.prehashed is True

    # minisign -R derives the public key from our secret key file: must match.
    ok(run_minisign("-R", "-s", sec, "-p", "recreated.pub", cwd=tmp_path))
    assert parse_public_key((tmp_path / "recreated.pub").read_text()) == pk


def test_tampered_list_fails_with_both(tmp_path: Path) -> None:
    ok(run_minisign("-G", "-W", "-p", "pub", "-s", "sec", cwd=tmp_path))
    sk, our_pk = generate_keypair()
    (tmp_path / "ours.pub").write_text(our_pk.to_minisign_file())
    minisign_pk = parse_public_key((tmp_path / "pub").read_text())

    tampered = LIST.replace(b"evil.exe", b"good.exe")
    for signer, pub, pk in (("minisign", "pub", minisign_pk), ("ours", "ours.pub", our_pk)):
        work = tmp_path / signer
        work.mkdir()
        listfile = write_list(work)
        sigfile = work / "banlist.json.minisig"
        if signer == "minisign":
            ok(run_minisign("-S", "-s", tmp_path / "sec", "-m", listfile, "-t", "v3", cwd=work))
        else:
            sigfile.write_text(sign(LIST, sk, "v3"))
        sig_text = sigfile.read_text()
        ok(run_minisign("-V", "-p", tmp_path / pub, "-m", listfile, cwd=work))

        # tampered data
        listfile.write_bytes(tampered)
        proc = run_minisign("-V", "-p", tmp_path / pub, "-m", listfile, cwd=work)
        assert proc.returncode != 0
        assert "Signature verification failed" in proc.stderr
        with pytest.raises(SignatureError, match="signature verification failed"):
            verify(tampered, sig_text, [pk])

        # tampered trusted comment
        listfile.write_bytes(LIST)
        sigfile.write_text(sig_text.replace("trusted comment: v3", "trusted comment: v4"))
        proc = run_minisign("-V", "-p", tmp_path / pub, "-m", listfile, cwd=work)
        assert proc.returncode != 0
        assert "Comment signature verification failed" in proc.stderr
        with pytest.raises(SignatureError, match="trusted comment"):
            verify(LIST, sigfile.read_text(), [pk])


def test_encrypted_minisign_key_rejected_with_hint(tmp_path: Path) -> None:
    # Build an encrypted-looking key by flipping the KDF bytes of a -W key;
    # creating a real one would need an interactive password prompt.
    ok(run_minisign("-G", "-W", "-p", "pub", "-s", "sec", cwd=tmp_path))
    lines = (tmp_path / "sec").read_text().splitlines()
    raw = bytearray(base64.b64decode(lines[1]))
    raw[2:4] = b"Sc"
    with pytest.raises(SignatureError, match="minisign -G -W"):
        parse_secret_key(lines[0] + "\n" + base64.b64encode(raw).decode() + "\n")
