"""kumolab reaper: deletes kumolab resources whose ``ExpiresAt`` tag is in the past.

Runs as a Lambda on an EventBridge schedule (``playbooks/reaper.yml`` deploys it) and, on the local
target, through the project's local runtime. Configuration (environment):

- ``KUMOLAB_PROJECT`` (default ``kumolab``): the ``Project`` tag value that marks resources.
- ``KUMOLAB_REAPER_OWNER``: whose resources it reaps (their ``Owner`` tag; a resource with no Owner tag counts as
  anyone's, as in teardown). Empty or unset: every owner's (``playbooks/reaper.yml -e all_owners=true``, confirmed).
  An event cannot change it.
- ``KUMOLAB_REAPER_DRY_RUN`` (``true``/``false``, default ``false``): report only, delete nothing.
- ``KUMOLAB_NOTIFY_SSM_PARAMETER`` (optional): name of a SecureString SSM parameter holding a
  Slack-compatible webhook URL; when set and something was deleted or failed, a summary is posted.
- ``KUMOLAB_REAPER_ALLOW_EVENT_OVERRIDES`` (``true``/``false``, default ``false``): the test switch. Only when
  it is true may an event set ``now`` (the time expiry is judged at) or ``project``; otherwise those keys
  are ignored and listed under ``ignored`` in the report, so whoever may invoke the function cannot reap
  every lab early (``now`` in 2100) or another project's resources (review M1). ``playbooks/reaper.yml``
  never sets it; ``tests/unit/test_reaper.py`` does, for its clock tests.
- ``AWS_REGION`` (set by Lambda) and, locally, ``AWS_PROFILE`` (the emulator's profile; read by boto3 itself).

Event (all optional): ``{"dry_run": true, "lab": "<lab>"}``; with the test switch also
``"now": "2026-11-23T20:00:00Z"`` and ``"project": "<Project tag>"``. ``dry_run`` and ``lab`` only narrow
what a run does. Returns (and logs as one JSON line) the report of ``reap`` plus ``now``, ``ok``,
``notification`` and ``ignored``.

What to find and how to delete it comes from ``kumolab_resources`` - the project's one catalogue,
``module_utils/kumolab_resources.py``, which ``playbooks/reaper.yml`` packages next to this file and which
``library/kumolab_teardown.py`` uses too.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import urllib.request

import boto3
import botocore.config
import kumolab_resources as catalogue

# Throttling on every call is also retried by botocore (standard mode); the catalogue adds jittered retries
# on dependency and eventual-consistency errors.
CLIENT_CONFIG = botocore.config.Config(retries={"mode": "standard", "max_attempts": 10})

TRUE = {"1", "true", "yes", "on"}
# Event keys that only the test switch lets through: they widen what a run deletes (review M1).
OVERRIDE_KEYS = ("now", "project")
ALLOW_OVERRIDES_ENV = "KUMOLAB_REAPER_ALLOW_EVENT_OVERRIDES"


def _flag(value) -> bool:
    return value if isinstance(value, bool) else str(value).strip().lower() in TRUE


def parse_event(event: dict | None, environ: dict) -> dict:
    """Validated settings from the event and the environment; raises ValueError with what is wrong."""
    event = event or {}
    if not isinstance(event, dict):
        raise ValueError(f"event must be a JSON object, got {type(event).__name__}")
    ignored = [] if _flag(environ.get(ALLOW_OVERRIDES_ENV, "false")) else [key for key in OVERRIDE_KEYS if key in event]
    event = {key: value for key, value in event.items() if key not in ignored}
    now_raw = event.get("now")
    now = catalogue.parse_time(now_raw) if now_raw else _dt.datetime.now(_dt.UTC)
    if now is None:
        raise ValueError(f"event.now={now_raw!r} is not an ISO-8601 time")
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ValueError("AWS_REGION is not set")
    return {
        "now": now,
        "region": region,
        "project": event.get("project") or environ.get("KUMOLAB_PROJECT", "kumolab"),
        "lab": event.get("lab"),
        "owner": environ.get("KUMOLAB_REAPER_OWNER", "") or None,
        "dry_run": _flag(event["dry_run"])
        if "dry_run" in event
        else _flag(environ.get("KUMOLAB_REAPER_DRY_RUN", "false")),
        "notify_parameter": environ.get("KUMOLAB_NOTIFY_SSM_PARAMETER", ""),
        "ignored": ignored,
    }


def client_factory(session, region: str):
    """``aws(service)`` -> one cached client per service, the catalogue's way of asking for clients."""
    clients: dict = {}

    def aws(service: str):
        if service not in clients:
            clients[service] = session.client(service, region_name=region, config=CLIENT_CONFIG)
        return clients[service]

    return aws


def entry(resource) -> dict:
    return dict(
        resource.as_dict(),
        lab=resource.tags.get(catalogue.LAB_TAG, ""),
        expires_at=resource.tags.get(catalogue.EXPIRES_TAG, ""),
    )


def reap(
    aws,
    region: str,
    now: _dt.datetime,
    project: str = "kumolab",
    lab: str | None = None,
    dry_run: bool = False,
    owner: str | None = None,
) -> dict:
    """Find ``Project=<project>`` (and ``Lab=<lab>``, ``Owner=<owner>``) resources, keep the expired ones, delete
    them in dependency order. Failures (listing a kind, deleting a resource) do not stop the run; they are reported.

    Report: ``{"region", "dry_run", "selected", "deleted", "absent", "failed", "skipped"}``; entries are
    ``{"kind", "id", "name", "lab", "expires_at"}`` (failed ones add ``"error"``), in the order acted upon."""
    wanted = {
        catalogue.PROJECT_TAG: project,
        **({catalogue.LAB_TAG: lab} if lab else {}),
        **({catalogue.OWNER_TAG: owner} if owner else {}),
    }
    listing_errors: list = []
    found = catalogue.find(aws, wanted, errors=listing_errors)
    chosen = catalogue.select_expired(found, now)
    report = {
        "region": region,
        "owner": owner or "",
        "dry_run": dry_run,
        "selected": [entry(r) for r in chosen],
        "deleted": [],
        "absent": [],
        "failed": [
            {
                "kind": kind,
                "id": "",
                "name": "",
                "lab": lab or "",
                "expires_at": "",
                "error": f"could not list {kind}: {catalogue.error_code(exc) or type(exc).__name__}: {exc}",
            }
            for kind, exc in listing_errors
        ],
        "skipped": len(found) - len(chosen),
    }
    # Tagged resources of kinds the catalogue cannot delete: reported, never guessed at.
    try:
        untracked = catalogue.untracked_with_tags(aws, wanted)
    except Exception as exc:  # the tagging API is a cross-check; its failure must not hide the rest
        untracked = []
        report["failed"].append(
            {
                "kind": "untracked",
                "id": "",
                "name": "",
                "lab": lab or "",
                "expires_at": "",
                "error": f"could not ask the tagging API: {exc}",
            }
        )
    for arn, tags in untracked:
        if catalogue.expired(tags, now):
            report["failed"].append(
                {
                    "kind": "untracked",
                    "id": arn,
                    "name": arn,
                    "lab": tags.get(catalogue.LAB_TAG, ""),
                    "expires_at": tags.get(catalogue.EXPIRES_TAG, ""),
                    "error": "kumolab does not know how to delete this kind; delete it by hand",
                }
            )
    if dry_run:
        return report
    for outcome in catalogue.delete_all(aws, chosen):
        item = entry(outcome.resource)
        if outcome.status == "failed":
            item["error"] = outcome.message()
        report[outcome.status].append(item)
    return report


def summary_text(report: dict) -> str:
    verb = "would delete" if report["dry_run"] else "deleted"
    items = report["selected"] if report["dry_run"] else report["deleted"]
    lines = [
        f"kumolab reaper ({report['region']}): {verb} {len(items)} expired resource(s)"
        + (f", {len(report['failed'])} failed" if report["failed"] else "")
    ]
    lines += [f"- {r['kind']} {r['id']} (lab {r['lab'] or '?'}, expired {r['expires_at']})" for r in items]
    lines += [f"- FAILED {r['kind']} {r['id']}: {r['error']}" for r in report["failed"]]
    return "\n".join(lines)


def notify(session, region: str, parameter: str, report: dict) -> str:
    """Post the summary to the webhook whose URL is in SSM; returns a status word for the report."""
    if not parameter or not (report["deleted"] or report["failed"] or (report["dry_run"] and report["selected"])):
        return "skipped"
    url = session.client("ssm", region_name=region).get_parameter(Name=parameter, WithDecryption=True)["Parameter"][
        "Value"
    ]
    body = json.dumps({"text": summary_text(report)}).encode()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return f"sent ({resp.status})"
    except OSError as exc:  # a broken webhook must not hide the report
        return f"failed ({exc})"


def lambda_handler(event, context=None, session=None, environ=None):
    environ = os.environ if environ is None else environ
    try:
        settings = parse_event(event, environ)
    except ValueError as exc:
        result = {"ok": False, "error": str(exc)}
        print(json.dumps(result))
        return result
    session = session or boto3.session.Session()
    aws = client_factory(session, settings["region"])
    report = reap(
        aws,
        settings["region"],
        settings["now"],
        project=settings["project"],
        lab=settings["lab"],
        dry_run=settings["dry_run"],
        owner=settings["owner"],
    )
    report["now"] = settings["now"].strftime("%Y-%m-%dT%H:%M:%SZ")
    report["ignored"] = settings["ignored"]
    report["ok"] = not report["failed"]
    report["notification"] = notify(session, settings["region"], settings["notify_parameter"], report)
    print(json.dumps(report))
    return report
