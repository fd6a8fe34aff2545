"""`appban fleet`: the central server that stores, re-checks and shows what every agent, phone and
MDM export reports.

Installed with the `fleet` extra (`pip install 'appban[fleet]'`); nothing in the agent imports this
package, so the on-device agent stays small. Layout, in the order data flows:

  config.py    the fleet's YAML, validated into frozen dataclasses
  sources.py   the seam for inventory sources (saved files today, MDM connectors later)
  ingest.py    pure: reading pushed and pulled reports, refusing hostile ones
  gateways.py  pure: which devices a gateway agent may report besides itself
  verdict.py   pure: central groups, re-matching with the agent's matcher, drift findings
  tables.py    SQLAlchemy Core tables; migrations/ the Alembic history that creates them
  store.py     the database: migrate, ingest with diff, prune
  enrollment.py  who holds a device id: enroll, rotate, re-enroll with leave, revoke (audited)
  query.py     read-side: status, devices, findings, history as JSON-ready documents
  render.py    table and CSV output of those documents (CLI and web downloads)
  auth.py      tokens, the enroll secret and the stateless web session
  app.py       the Starlette application: ingest, JSON API, web pages, /metrics
  openapi.py   the OpenAPI document of that API
  web.py       server-rendered HTML pages
  metrics.py   bounded-cardinality Prometheus metrics
  pull.py      polling agents' endpoints, work shared through the database
  listener.py  uvicorn's h11 protocol with header/body read deadlines and a per-client cap
  server.py    `fleet serve`: policy refresh, background jobs, uvicorn
"""
