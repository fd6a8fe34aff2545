"""The OpenAPI 3.1 description of the fleet's HTTP interface, served at /api/v1/openapi.json.

The response documents are described by the JSON Schemas in docs/schemas (referenced by name);
this file lists the routes, their parameters and their credentials.
"""

from __future__ import annotations

from typing import Any

_SCHEMAS = "https://appban.invalid/schemas/"


def _param(name: str, description: str, kind: str = "string", where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": where == "path", "description": description,
            "schema": {"type": kind}}


_PAGING = [_param("limit", "at most this many rows (1-10000, default 1000)", "integer"),
           _param("offset", "skip this many rows", "integer")]
_SELECT = [_param("group", "only devices in this (central) group"), _param("kind", "only devices of this kind")]


def _get(summary: str, schema: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": parameters, "security": [{"admin": []}],
                    "responses": {"200": {"description": "OK", "content": {"application/json": {
                        "schema": {"$ref": f"{_SCHEMAS}{schema}"}}}},
                        "400": {"description": "bad filter"}, "401": {"description": "admin token required"}}}}


def _control(summary: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"post": {"summary": summary, "security": [{"admin": []}],
                     "parameters": [_param("device", "device id", where="path")],
                     "requestBody": {"required": False, "content": {"application/json": {"schema": {
                         "type": "object", "properties": body}}}},
                     "responses": {"200": {"description": "done (recorded as an enrollment event)"},
                                   "401": {"description": "admin token required (bearer header only)"},
                                   "404": {"description": "unknown device, or no enrollment to revoke"}}}}


OPENAPI: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "appban fleet", "version": "1",
             "description": "Central compliance view of appban agents, phones and MDM exports."},
    "components": {"securitySchemes": {
        "admin": {"type": "http", "scheme": "bearer", "description": "the admin token (admin_token_file)"},
        "device": {"type": "http", "scheme": "bearer", "description": "a device token from /v1/enroll"}}},
    "paths": {
        "/api/v1/status": _get("Fleet compliance summary", "fleet-status-v1.schema.json", []),
        "/api/v1/devices": _get("Devices", "fleet-devices-v1.schema.json", [
            _param("noncompliant", "only devices with a violation", "boolean"),
            _param("stale", "only devices silent for longer than stale_after", "boolean"), *_SELECT, *_PAGING]),
        "/api/v1/devices/{device}": _get("One device with its findings and history", "fleet-device-v1.schema.json",
                                         [_param("device", "device id", where="path")]),
        "/api/v1/findings": _get("Findings (current, or resolved with status=resolved)",
                                 "fleet-findings-v1.schema.json", [
            _param("entry", "ban-list entry id"), _param("status", "violation, advisory, upcoming, exempt, drift "
                                                         "or resolved"),
            _param("device", "device id"), _param("since", "appeared (or resolved) since: 7d, 12h or ISO 8601"),
            *_SELECT, *_PAGING]),
        "/api/v1/history": _get("Finding events, newest first", "fleet-history-v1.schema.json", [
            _param("device", "device id"), _param("entry", "ban-list entry id"),
            _param("since", "events since: 7d, 12h or ISO 8601"), *_PAGING]),
        "/v1/enroll": {"post": {"summary": "Trade the enroll secret for a device token",
                                "requestBody": {"content": {"application/json": {"schema": {
                                    "type": "object", "required": ["secret", "device"],
                                    "properties": {"secret": {"type": "string"}, "device": {"type": "string"},
                                                   "hostname": {"type": "string"},
                                                   "token": {"type": "string", "pattern": "^[A-Za-z0-9_-]{32,256}$",
                                                             "description": "the token the caller proposes "
                                                                            "(granted as it is)"}}}}}},
                                "parameters": [_param("Authorization", "Bearer <the device's current token>: a "
                                                      "rotation of a known device id", where="header")],
                                "responses": {"200": {"description": "{device, token}"},
                                              "401": {"description": "wrong secret, or not the current token"},
                                              "409": {"description": "a known device id, without its current "
                                                                     "token or the administrator's leave; or a "
                                                                     "proposed token already in use"},
                                              "422": {"description": "a malformed device id or proposed token"}}}},
        "/api/v1/devices/{device}/reenroll": _control(
            "Let a known device id enroll once more with the enroll secret (within: how long, default 1d)",
            {"within": {"type": "string"}}),
        "/api/v1/devices/{device}/revoke": _control("Make the device's token stop working at once", {}),
        "/v1/reports": {"post": {"summary": "Push one appban.report/v1 document (with its inventory)",
                                 "security": [{"device": []}],
                                 "parameters": [_param("Idempotency-Key", "the report id; a retry with the same "
                                                       "key returns the first answer", where="header")],
                                 "requestBody": {"content": {"application/json": {"schema": {
                                     "$ref": f"{_SCHEMAS}report-v1.schema.json"}}}},
                                 "responses": {"200": {"description": "stored (or replayed): {report, devices, "
                                                                      "changed, inventory_digest}"},
                                               "400": {"description": "not JSON"},
                                               "401": {"description": "unknown device token"},
                                               "403": {"description": "report for another device (outside "
                                                                      "a `gateways` grant)"},
                                               "409": {"description": "an inventory_digest in place of the "
                                                                      "inventory that does not match what the fleet "
                                                                      "holds for the device: send the inventory"},
                                               "413": {"description": "too large"},
                                               "422": {"description": "not a usable report"}}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (no per-device labels)",
                             "responses": {"200": {"description": "text exposition format"}}}},
        "/healthz": {"get": {"summary": "Liveness, no credential", "responses": {"200": {"description": "ok"}}}},
    },
}
