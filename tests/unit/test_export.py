"""`appban policy export` renderers, pure: scope (the Québec case), exceptions, provenance headers,
escaping, and each format's own structure (JSON round trips, plistlib, AppLocker's published XSD
rules checked structurally)."""

from __future__ import annotations

import json
import plistlib
import re
import xml.etree.ElementTree as ET

import pytest

from agent.export import EXPORTERS, KINDS, renderer
from agent.export.dns import blocked_names
from tests.export_support import DIGEST, OTHER_DIGEST, QUEBEC, chosen, quebec, with_exceptions

QUEBEC_ENTRY = QUEBEC["entries"][0]

BLOCKED_MARK = {
    "fapolicyd": DIGEST, "santa": DIGEST, "applocker": DIGEST.upper(), "amapi": "com.zhiliaoapp.musically",
    "intune-android": "com.zhiliaoapp.musically", "intune-ios": "com.ss.iphone.ugc.Ame",
    "ios-mobileconfig": "com.ss.iphone.ugc.Ame", "hosts": "tiktokv.com", "dnsmasq": "tiktokv.com",
    "unbound": "tiktokv.com", "rpz": "tiktokv.com", "adguard": "tiktokv.com", "nftables": "@banned4",
    "dnsmasq-nftset": "tiktokv.com",
}
JSON_KINDS = {"santa", "amapi", "intune-ios", "intune-android"}


def test_every_kind_has_a_renderer_and_a_blocked_mark() -> None:
    assert set(KINDS) == set(BLOCKED_MARK) and len(KINDS) == len(EXPORTERS)


@pytest.mark.parametrize("kind", KINDS)
def test_quebec_staff_get_the_block_and_deputies_get_nothing(kind: str) -> None:
    staff = renderer(kind)(chosen(quebec(), "staff")).text
    deputies = renderer(kind)(chosen(quebec(), "deputies")).text
    research = renderer(kind)(chosen(quebec(), "staff", "security-research")).text
    assert BLOCKED_MARK[kind] in staff
    assert BLOCKED_MARK[kind] not in deputies, "an advisory group must get nothing blocked"
    assert BLOCKED_MARK[kind] not in research, "an exempt group must get nothing blocked"


@pytest.mark.parametrize("kind", KINDS)
def test_entries_not_yet_effective_are_left_out(kind: str) -> None:
    text = renderer(kind)(chosen(quebec(), "staff")).text
    assert OTHER_DIGEST not in text.lower() and "com.future.app" not in text and "future.example" not in text


@pytest.mark.parametrize("kind", sorted(set(KINDS) - JSON_KINDS))
def test_every_commentable_output_names_its_list_signer_and_command(kind: str) -> None:
    text = renderer(kind)(chosen(quebec(), "staff")).text
    head = text[:2000]
    assert "serial 42" in head and "D1E2F3A4B5C6D7E8" in head and "Entries: tiktok-assembly" in head
    assert re.search(r"appban policy export -\s?-to hosts -\s?-group staff", head), head


def test_json_outputs_carry_provenance_where_the_format_has_room() -> None:
    santa = json.loads(renderer("santa")(chosen(quebec(), "staff")).text)
    assert "serial 42" in santa["rules"][0]["custom_msg"]
    intune = json.loads(renderer("intune-ios")(chosen(quebec(), "staff")).text)
    assert "serial 42" in intune["description"] and "D1E2F3A4B5C6D7E8" in intune["description"]
    assert len(intune["description"]) <= 1024


def test_santa_rules_round_trip_as_santactl_import_reads_them() -> None:
    export = renderer("santa")(chosen(quebec(), "staff"))
    rules = json.loads(export.text)["rules"]
    assert [(r["identifier"], r["policy"], r["rule_type"]) for r in rules] == [(DIGEST, "BLOCKLIST", "BINARY")]
    assert any("com.zhiliaoapp.TikTok" in n and "signing id" in n for n in export.notes)


def test_amapi_fragment_blocks_packages_as_the_list_spells_them() -> None:
    data = json.loads(renderer("amapi")(chosen(quebec(), "staff")).text)
    assert data == {"applications": [{"packageName": "com.zhiliaoapp.musically", "installType": "BLOCKED"}]}


@pytest.mark.parametrize(("kind", "odata", "app_id"), [
    ("intune-ios", "#microsoft.graph.iosCompliancePolicy", "com.ss.iphone.ugc.Ame"),
    ("intune-android", "#microsoft.graph.androidCompliancePolicy", "com.zhiliaoapp.musically"),
])
def test_intune_policies_list_restricted_apps(kind: str, odata: str, app_id: str) -> None:
    data = json.loads(renderer(kind)(chosen(quebec(), "staff")).text)
    assert data["@odata.type"] == odata
    assert [a["appId"] for a in data["restrictedApps"]] == [app_id]
    assert data["restrictedApps"][0]["@odata.type"] == "#microsoft.graph.appListItem"
    assert data["scheduledActionsForRule"][0]["scheduledActionConfigurations"][0]["actionType"] == "block"


def test_mobileconfig_is_a_plist_profile_with_the_bundle_ids_and_stable_uuids() -> None:
    text = renderer("ios-mobileconfig")(chosen(quebec(), "staff")).text
    profile = plistlib.loads(text.encode())
    assert profile["PayloadType"] == "Configuration"
    (payload,) = profile["PayloadContent"]
    assert payload["PayloadType"] == "com.apple.applicationaccess"
    assert payload["blockedAppBundleIDs"] == ["com.ss.iphone.ugc.Ame"]
    assert "serial 42" in profile["PayloadDescription"]
    again = plistlib.loads(renderer("ios-mobileconfig")(chosen(quebec(), "staff")).text.encode())
    assert again["PayloadUUID"] == profile["PayloadUUID"] and again["PayloadContent"][0]["PayloadUUID"] == payload["PayloadUUID"]
    other = plistlib.loads(renderer("ios-mobileconfig")(chosen(quebec(), "other")).text.encode())
    assert other["PayloadUUID"] != profile["PayloadUUID"]


# The constraints of Microsoft's AppLocker XSD (windows-itpro-docs, client-management/mdm/applocker-xsd.md).
_GUID = re.compile(r"^[0-9A-Fa-f]{8}-([0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}$")
_SID = re.compile(r"^S-1(-[0-9a-fA-F]+)+$")
_VERSION = re.compile(r"^(([0-9]{1,5}.){3}[0-9]{1,5}|\*)$")
_RULES = {"FilePublisherRule", "FilePathRule", "FileHashRule"}


def check_applocker(root: ET.Element) -> None:
    """Raise AssertionError where the policy breaks a constraint of the published XSD."""
    assert root.tag == "AppLockerPolicy" and float(root.get("Version", "x")) > 0
    types = [c.get("Type") for c in root]
    assert len(types) == len(set(types)), "RuleCollection Type must be unique"
    ids = [rule.get("Id") for collection in root for rule in collection]
    assert len(ids) == len(set(ids)), "rule Id must be unique"
    for collection in root:
        assert collection.tag == "RuleCollection"
        assert collection.get("EnforcementMode") in ("NotConfigured", "Enabled", "AuditOnly")
        for rule in collection:
            assert rule.tag in _RULES
            assert _GUID.match(rule.get("Id", "")) and _SID.match(rule.get("UserOrGroupSid", ""))
            assert 1 <= len(rule.get("Name", "")) <= 1024 and len(rule.get("Description", "x")) <= 1024
            assert rule.get("Action") in ("Allow", "Deny")
            (conditions,) = list(rule)
            (condition,) = list(conditions)
            if rule.tag == "FilePublisherRule":
                assert condition.tag == "FilePublisherCondition" and condition.get("PublisherName")
                assert condition.get("ProductName") is not None and condition.get("BinaryName") is not None
                (versions,) = list(condition)
                assert _VERSION.match(versions.get("LowSection", "")) and _VERSION.match(versions.get("HighSection", ""))
            elif rule.tag == "FilePathRule":
                assert condition.tag == "FilePathCondition" and 1 <= len(condition.get("Path", "")) <= 32767
            else:
                assert condition.tag == "FileHashCondition"
                for digest in condition:
                    assert digest.get("Type") in ("SHA256", "SHA256Flat", "SHA1")
                    assert re.match(r"^0x[0-9A-Fa-f]{64}$", digest.get("Data", ""))


@pytest.mark.parametrize(("enforce", "mode"), [(False, "AuditOnly"), (True, "Enabled")])
def test_applocker_policy_fits_the_published_schema(enforce: bool, mode: str) -> None:
    export = renderer("applocker")(chosen(quebec(), "staff", enforce=enforce))
    root = ET.fromstring(export.text.encode())
    check_applocker(root)
    assert {c.get("EnforcementMode") for c in root} == {mode}
    deny = {(r.tag, r[0][0].get("ProductName") or r[0][0].get("PublisherName") or r[0][0].get("Path"))
            for c in root for r in c if r.get("Action") == "Deny"}
    assert deny == {("FilePublisherRule", "BytedancePte.Ltd.TikTok"), ("FilePathRule", "*\\tiktok.exe"),
                    ("FileHashRule", None), ("FilePublisherRule", "*")}
    hashes = [h.get("Data") for h in root.iter("FileHash")]
    assert hashes == ["0x" + DIGEST.upper()]
    allows = [r.get("Name") for c in root for r in c if r.get("Action") == "Allow"]
    assert allows and all(name.startswith("(Default rule)") for name in allows)
    assert any("'ByteDance*'" in note for note in export.notes)


def test_applocker_rule_ids_are_stable_across_exports() -> None:
    one = [r.get("Id") for c in ET.fromstring(renderer("applocker")(chosen(quebec(), "staff")).text) for r in c]
    two = [r.get("Id") for c in ET.fromstring(renderer("applocker")(chosen(quebec(), "staff")).text) for r in c]
    assert one == two


def test_dns_names_are_deduplicated_with_the_wider_form_winning() -> None:
    names = {(b.name, b.subtree) for b in blocked_names(chosen(quebec(), "staff"))}
    assert names == {("tiktokv.com", True), ("tiktok.com", True), ("log.byteoversea.com", False)}


def test_dns_formats_write_exact_and_subtree_names_as_each_engine_spells_them() -> None:
    staff = chosen(quebec(), "staff")
    body = lambda kind: [l for l in renderer(kind)(staff).text.splitlines() if l and l[0] not in "#;!"]
    assert body("hosts") == ["0.0.0.0 log.byteoversea.com", ":: log.byteoversea.com", "0.0.0.0 tiktok.com",
                             ":: tiktok.com", "0.0.0.0 tiktokv.com", ":: tiktokv.com"]
    assert body("dnsmasq") == ["address=/log.byteoversea.com/#", "address=/tiktok.com/#", "address=/tiktokv.com/#"]
    assert body("unbound")[1:] == ['    local-zone: "log.byteoversea.com." always_nxdomain',
                                   '    local-zone: "tiktok.com." always_nxdomain',
                                   '    local-zone: "tiktokv.com." always_nxdomain']
    assert body("adguard") == ["|log.byteoversea.com^", "||tiktok.com^", "||tiktokv.com^"]
    assert body("dnsmasq-nftset")[0] == "nftset=/log.byteoversea.com/4#inet#appban#banned4,6#inet#appban#banned6"
    assert [l for l in body("rpz") if "CNAME" in l] == [
        "log.byteoversea.com CNAME .", "tiktok.com CNAME .", "*.tiktok.com CNAME .", "tiktokv.com CNAME .",
        "*.tiktokv.com CNAME ."]
    assert any("hosts file has no wildcards" in n for n in renderer("hosts")(staff).notes)
    assert any("log.byteoversea.com" in n for n in renderer("unbound")(staff).notes)


def test_an_active_device_exception_needs_device_and_is_otherwise_noted() -> None:
    banlist = with_exceptions({"devices": ["phone-7"]})
    for_group = chosen(banlist, "staff")
    assert [e.id for e in for_group.entries] == ["tiktok-assembly"]
    assert any("phone-7" in note and "--device" in note for note in for_group.notes)
    assert "phone-7" in renderer("dnsmasq")(for_group).text
    assert chosen(banlist, "staff", device="phone-7").entries == ()
    assert [e.id for e in chosen(banlist, "staff", device="phone-8").entries] == ["tiktok-assembly"]


def test_an_expired_exception_changes_nothing() -> None:
    banlist = with_exceptions({"devices": ["phone-7"], "expires": "2024-01-01T00:00:00Z"})
    assert [e.id for e in chosen(banlist, "staff", device="phone-7").entries] == ["tiktok-assembly"]
    assert not chosen(banlist, "staff").notes


def test_user_exceptions_become_fapolicyd_allow_rules_before_the_deny_and_notes_elsewhere() -> None:
    selection = chosen(with_exceptions({"users": ["alice", "bad user"]}), "staff")
    export = renderer("fapolicyd")(selection)
    rules = [l for l in export.text.splitlines() if l and not l.startswith("#")]
    assert rules == [f"allow perm=execute uid=alice : sha256hash={DIGEST}",
                     f"deny_audit perm=execute all : sha256hash={DIGEST}"]
    assert any("'bad user'" in note for note in export.notes)
    assert any("alice" in note and "single users" in note for note in renderer("applocker")(selection).notes)


def test_only_block_keeps_entries_whose_action_is_block() -> None:
    assert chosen(quebec(), "staff", only_block=True).entries == ()
    entries = [{**QUEBEC_ENTRY, "action": "block"}]
    assert [e.id for e in chosen(quebec(entries=entries), "staff", only_block=True).entries] == ["tiktok-assembly"]




@pytest.mark.parametrize("kind", KINDS)
def test_control_characters_from_the_list_never_reach_a_line_of_configuration(kind: str) -> None:
    evil = "x\naddress=/example.org/#\nlocal-zone: \"example.org.\" always_nxdomain\n\x00"
    entries = [{**QUEBEC_ENTRY, "name": evil, "vendor": evil, "match": {**QUEBEC_ENTRY["match"], "ios": ["a\nb"]}}]
    text = renderer(kind)(chosen(quebec(publisher=evil, entries=entries), "staff")).text
    assert not any(line.lstrip().startswith(("address=/example.org", "local-zone: \"example.org"))
                   for line in text.splitlines())
    assert "\x00" not in text
    if kind in JSON_KINDS:
        json.loads(text)
    elif kind == "ios-mobileconfig":
        plistlib.loads(text.encode())
    elif kind == "applocker":
        check_applocker(ET.fromstring(text.encode()))


def test_a_user_exception_on_another_device_is_not_applied_and_many_devices_are_summed_up() -> None:
    banlist = with_exceptions({"devices": ["phone-7"], "users": ["alice"]},
                              {"devices": [f"pc-{n}" for n in range(9)]})
    elsewhere = chosen(banlist, "staff", device="phone-8")
    assert elsewhere.allowed_users == {}
    (note,) = elsewhere.notes
    assert "phone-7, pc-0, pc-1, pc-2, pc-3 and 5 more" in note
    assert chosen(banlist, "staff", device="phone-7").allowed_users == {"tiktok-assembly": ("alice",)}
