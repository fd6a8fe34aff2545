"""Pure pieces of enforcement: which entries the exec guard enforces here, deny verdicts, the
fapolicyd rules text and its check, dnf excludes, APT pins, notification text, dpkg's marks."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

import pytest

from agent.config import EnforcementConfig
from agent.enforce.critical import never_denied_program
from agent.enforce.deny import SETTLE_NS, DenySet, VerdictCache, deny_set, guard_entries, renamed_into
from agent.enforce.fapolicyd import RulesError, check_rules, render_rules
from agent.enforce.ignoremarks import LOCAL_FILESYSTEMS, hardlinks_protected, kernel_may_keep, user_mark_limit
from agent.enforce.notify import message, session_env
from agent.enforce.uninstall import apt_preference, safe_name, with_dnf_exclude
from agent.inventory.dpkg import parse_status
from agent.model import BanException, BanList, Device, Entry, Match

NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)
BLOCK = EnforcementConfig(mode="block")
DIGEST = "a" * 64


def entry(eid: str, **kw) -> Entry:
    return Entry(id=eid, name=eid, action=kw.pop("action", "block"), match=Match(executables=(eid,)), **kw)


def banlist(*entries: Entry, exceptions=()) -> BanList:
    return BanList("appban.banlist/v1", 1, NOW, tuple(entries), exceptions=tuple(exceptions))


def test_guard_enforces_only_blocking_entries_in_force_on_this_device() -> None:
    device = Device(id="pc-1", groups=("staff",))
    listed = banlist(
        entry("everywhere"), entry("reported", action="report"),
        entry("staff-only", applies_to=("staff",)), entry("others", applies_to=("ministers",)),
        entry("advisory", applies_to=("x",), advisory_for=("staff",)), entry("exempted", exempt=("staff",)),
        entry("later", effective=NOW + timedelta(days=3)), entry("excepted"), entry("lapsed-exception"),
        exceptions=[BanException("excepted", "CIO", "pilot", NOW + timedelta(days=1), devices=("pc-1",)),
                    BanException("lapsed-exception", "CIO", "pilot", NOW - timedelta(days=1))],
    )
    assert [e.id for e in guard_entries(listed, device, BLOCK, NOW)] == ["everywhere", "staff-only", "lapsed-exception"]
    assert guard_entries(listed, device, EnforcementConfig(), NOW) == []


def test_verdicts_paths_names_hashes_and_what_is_never_denied() -> None:
    deny = deny_set([Entry(id="wps", name="WPS", match=Match(executables=("wps",), sha256=(DIGEST,)))],
                    {"wps": ["/usr/bin/wpp"]}, allowed=["/bin/wps"], protected=["/opt/keep", "wps-pkg"])
    calls = []

    def digest() -> str:
        calls.append(1)
        return DIGEST

    assert deny.verdict("/usr/bin/wpp", digest) == "wps"
    assert deny.verdict("/home/a/WPS", digest) == "wps"
    assert deny.verdict("/bin/wps", digest) == ""            # an essential package's file
    assert deny.verdict("/opt/keep/wps", digest) == ""       # protected folder
    assert deny.verdict("/opt/keep-not/wps", digest) == "wps"
    assert calls == []                                        # no hashing when a cheaper rule decides
    assert deny.verdict("/tmp/renamed", digest) == "wps" and calls == [1]
    assert DenySet(names={"x": "y"}).verdict("/a/b", lambda: pytest.fail("hashed without hashes")) == ""


def test_an_allow_is_vouched_for_the_bytes_only_when_no_hash_rule_could_ban_them() -> None:
    """judge()'s second answer (may the kernel keep this allow for the inode, by any name): only
    when the list has no hashes or these bytes were hashed and passed; never for a denial."""
    hashed = DenySet(names={"wps": "wps"}, sha256={DIGEST: "wps"}, protected=("/opt/keep",))
    assert hashed.judge("/usr/bin/fine", lambda: "b" * 64) == ("", True)
    assert hashed.judge("/usr/bin/fine", lambda: DIGEST) == ("wps", False)
    assert hashed.judge("/usr/bin/wps", lambda: "b" * 64) == ("wps", False)
    assert hashed.judge("/opt/keep/x", lambda: DIGEST) == ("", False)       # exempt, but banned bytes
    assert hashed.judge("/opt/keep/x", lambda: "b" * 64) == ("", True)      # exempt, bytes checked
    assert hashed.judge("/opt/keep/x", lambda: DIGEST, vouch=False) == ("", False)

    def late() -> str:
        raise TimeoutError

    assert hashed.judge("/opt/keep/x", late) == ("", False)                 # no fail mode for the exempt
    with pytest.raises(TimeoutError):
        hashed.judge("/usr/bin/fine", late)
    unhashed = DenySet(names={"wps": "wps"})
    assert unhashed.judge("/opt/x", lambda: pytest.fail("hashed without hashes")) == ("", True)
    assert unhashed.judge("/opt/wps", lambda: "") == ("wps", False)


def test_the_kernel_keeps_allows_only_for_files_only_root_can_change() -> None:
    def st(mode: int = 0o100755, uid: int = 0, nlink: int = 1):
        return os.stat_result((mode, 1, 1, nlink, uid, 0, 10, 0, 0, 0))

    def root_folder(mode: int = 0o040755, uid: int = 0):
        return st(mode, uid)

    tmpfs, nfs, fuse = 0x01021994, 0x6969, 0x65735546
    assert tmpfs in LOCAL_FILESYSTEMS
    assert kernel_may_keep(st(), lambda: tmpfs, root_folder) and kernel_may_keep(st(), lambda: 0xEF53, root_folder)
    for remote_or_unknown in (nfs, fuse, 0):
        assert not kernel_may_keep(st(), lambda: remote_or_unknown, root_folder)
    assert not kernel_may_keep(st(uid=1000), lambda: tmpfs, root_folder)
    assert not kernel_may_keep(st(mode=0o100775), lambda: tmpfs, root_folder)
    assert not kernel_may_keep(st(mode=0o100757), lambda: tmpfs, root_folder)
    assert not kernel_may_keep(st(nlink=2), lambda: tmpfs, root_folder)
    assert not kernel_may_keep(st(mode=0o040755), lambda: tmpfs, root_folder)
    # the folder: a user could rename the file in it, unless it is sticky; unreadable: never
    assert not kernel_may_keep(st(), lambda: tmpfs, lambda: root_folder(uid=1000))
    assert not kernel_may_keep(st(), lambda: tmpfs, lambda: root_folder(0o040777))
    assert kernel_may_keep(st(), lambda: tmpfs, lambda: root_folder(0o041777))
    assert not kernel_may_keep(st(), lambda: tmpfs, lambda: None)
    assert not kernel_may_keep(st(uid=1000), lambda: pytest.fail("statfs for a user's file"), root_folder)


def test_the_mark_cap_leaves_most_of_the_users_fanotify_budget_and_hard_links_must_be_protected(tmp_path) -> None:
    budget = tmp_path / "max_user_marks"
    budget.write_text("100\n")
    assert user_mark_limit(4096, str(budget)) == 25
    budget.write_text("8192\n")
    assert user_mark_limit(1000, str(budget)) == 1000
    assert user_mark_limit(1000, str(tmp_path / "missing")) == 1000
    protected = tmp_path / "protected_hardlinks"
    protected.write_text("1\n")
    assert hardlinks_protected(str(protected))
    protected.write_text("0\n")
    assert not hardlinks_protected(str(protected)) and not hardlinks_protected(str(tmp_path / "missing"))


def test_fapolicyd_rules_are_valid_and_say_what_they_cannot_express() -> None:
    deny = DenySet(paths={"/usr/bin/wps": "wps", "/opt/My App/x": "wps"}, names={"wps": "wps"}, sha256={DIGEST: "wps"})
    text, skipped = render_rules(deny)
    check_rules(text)
    assert "deny_audit perm=execute all : path=/usr/bin/wps\n" in text
    assert f"deny_audit perm=execute all : sha256hash={DIGEST}\n" in text
    assert skipped == ["executable name 'wps' (fapolicyd has no basename match)",
                       "path '/opt/My App/x' (cannot be written as a fapolicyd rule)"]


@pytest.mark.parametrize("line,error", [
    ("deny perm=execute all path=/x", "not a fapolicyd rule"),
    ("deny perm=run all : path=/x", "not a fapolicyd rule"),
    ("deny perm=execute all : path=relative", "path must be absolute"),
    ("deny perm=execute all : sha256hash=ABC", "sha256hash must be 64"),
])
def test_a_bad_rules_file_is_refused_naming_the_line(line: str, error: str) -> None:
    with pytest.raises(RulesError, match=f"line 2: .*{error}"):
        check_rules(f"# header\n{line}\n")


def test_dnf_exclude_is_added_once_to_main() -> None:
    assert with_dnf_exclude("", "wps") == "[main]\nexcludepkgs=wps\n"
    text = "[main]\ngpgcheck=1\nexcludepkgs=foo bar\n[updates]\nx=1\n"
    once = with_dnf_exclude(text, "wps")
    assert once == "[main]\ngpgcheck=1\nexcludepkgs=foo,bar,wps\n[updates]\nx=1\n"
    assert with_dnf_exclude(once, "wps") == once
    assert with_dnf_exclude("[main]\ngpgcheck=1\n[other]\n", "wps") == "[main]\ngpgcheck=1\nexcludepkgs=wps\n[other]\n"


def test_apt_pin_text_and_file_name() -> None:
    assert apt_preference("wps-office", "wps").endswith("Package: wps-office\nPin: version *\nPin-Priority: -1\n")
    assert safe_name("libc++1:amd64") == "libc__1_amd64"


def test_notification_names_app_rule_directive_and_contact() -> None:
    banned = Entry(id="wps-office", name="WPS Office", reason="Kingsoft directive", references=("https://gov.example/d7",))
    title, body = message(banned, "wps", "was removed", "IT desk, ext. 4357")
    assert title == "WPS Office is not allowed on this device"
    assert body == "wps was removed by rule wps-office: Kingsoft directive.\nDirective: https://gov.example/d7\nQuestions: IT desk, ext. 4357"


def test_a_graphical_session_needs_a_bus_and_a_display() -> None:
    env = b"HOME=/home/a\0DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus\0WAYLAND_DISPLAY=wayland-0\0"
    assert session_env(env) == {"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus", "WAYLAND_DISPLAY": "wayland-0"}
    assert session_env(b"DISPLAY=:0\0") is None


def test_dpkg_status_marks_essential_and_required_packages() -> None:
    status = ("Package: bash\nEssential: yes\nStatus: install ok installed\nPriority: required\nVersion: 5.2\n\n"
              "Package: wps\nStatus: install ok installed\nPriority: optional\nVersion: 1\nArchitecture: amd64\n")
    bash, wps = parse_status(status)
    assert bash.extra == (("essential", "yes"), ("priority", "required"))
    assert wps.extra == (("arch", "amd64"),)


def test_the_deny_set_never_holds_the_shell_login_path_or_protected_names() -> None:
    entry = Entry(id="all", name="All", match=Match(executables=("sh", "bash", "sshd", "sudo", "WPS", "tiktok")))
    deny = deny_set([entry], {"all": ["/usr/sbin/sshd", "/usr/lib/x86_64-linux-gnu/security/pam_unix.so", "/opt/t/tiktok"]},
                    protected=["wps"])
    assert deny.names == {"tiktok": "all"} and deny.paths == {"/opt/t/tiktok": "all"}
    for path in ("/usr/bin/bash", "/bin/sh", "/usr/sbin/sshd", "/usr/bin/sudo", "/srv/copy/sshd", "/usr/bin/wps"):
        assert deny.verdict(path, lambda: "") == "", path


def test_a_banned_app_renamed_to_a_shell_in_a_home_is_still_denied() -> None:
    """The login-path names protect the system's programs, not a user's copy named `bash`."""
    deny = deny_set([Entry(id="tiktok", name="TikTok", match=Match(sha256=(DIGEST,)))], {})
    assert deny.verdict("/home/al/bin/bash", lambda: DIGEST) == "tiktok"
    assert deny.verdict("/tmp/sshd", lambda: DIGEST) == "tiktok"
    assert deny.verdict("/usr/bin/bash", lambda: DIGEST) == ""


def test_login_path_names_are_judged_on_the_folded_path() -> None:
    assert not never_denied_program("//home/al/bash") and not never_denied_program("/usr/../home/al/sshd")
    assert never_denied_program("/usr/./sbin/sshd") and never_denied_program("SSHD")
    assert never_denied_program("/homework/bash")  # /homework is not /home


def test_allows_are_cached_without_their_path_only_when_no_user_can_reach_a_package_path(tmp_path) -> None:
    """renamed_into names the first folder on the way to a package path that a user could write
    (so could create or rename a folder to put their file at that path)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: the folders must be root's")
    assert renamed_into(["/usr/bin/appban-no-such-tool", "/usr/lib/appban-no-such-package/bin/app"]) == ""
    roots = tmp_path / "roots"
    (roots / "usr" / "bin").mkdir(parents=True)
    (roots / "usr").chmod(0o1777)  # sticky: anyone may still create a folder in it
    assert renamed_into([str(roots / "usr" / "bin" / "tool")]) == str(roots / "usr")
    (roots / "usr").chmod(0o755)
    os.chown(roots / "usr" / "bin", 65534, 65534)
    assert renamed_into([str(roots / "usr" / "bin" / "missing" / "tool")]) == str(roots / "usr" / "bin")


def test_a_verdict_for_a_file_changed_within_a_clock_tick_is_not_cached(tmp_path) -> None:
    path = tmp_path / "tool"
    path.write_bytes(b"x")
    fresh = os.stat(path)
    cache: VerdictCache[str] = VerdictCache()
    if time.time_ns() - fresh.st_ctime_ns < SETTLE_NS:
        assert not cache.put(fresh, str(path), "") and cache.get(fresh, str(path)) is None
    time.sleep(SETTLE_NS / 1e9)
    assert cache.put(fresh, str(path), "entry", anywhere=True)
    assert cache.get(fresh, str(path)) == "entry" and cache.get(fresh, str(path) + "2") is None
    assert cache.allowed_anywhere(fresh)
    os.link(path, tmp_path / "second")
    assert not cache.allowed_anywhere(os.stat(path))  # a second name: its ctime and link count changed
