"""A student's teardown receipt: what their environment had, what the teardown deleted and when, and an
independent count (:mod:`kumolab.leftovers`, written apart from the teardown's own catalogue) proving none is left.

Written as ``results/<owner>/class/<student>/receipt.json`` (the :mod:`kumolab.receipt` layout, ``kind: class``) and a
readable ``receipt.html`` for grading evidence.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from kumolab import leftovers, receipt
from kumolab.labs import lab as registry_lab


def student_prefix(lab: str, student: str) -> str:
    return registry_lab(lab).prefix(student)


def count(aws, lab: str, student: str) -> leftovers.Count:
    """The independent count of one student's copy of a lab (:func:`kumolab.leftovers.count_owned`)."""
    return leftovers.count_owned(aws, "kumolab", lab, student, student_prefix(lab, student))


def settle(aws, lab: str, student: str, wait_s: float = 60, interval_s: float = 5, sleep=None) -> leftovers.Count:
    import time

    sleep = sleep or time.sleep
    deadline = time.monotonic() + wait_s
    while True:
        result = count(aws, lab, student)
        if result.ok or time.monotonic() + interval_s > deadline:
            return result
        sleep(interval_s)


def build(
    student: dict,
    lab: str,
    region: str,
    class_name: str,
    deployed: dict | None,
    teardown: dict,
    after: dict,
    spend: dict | None,
) -> dict:
    steps = [
        {
            "name": "deploy",
            "started_at": (deployed or {}).get("checked_at") or teardown["started_at"],
            "ended_at": (deployed or {}).get("checked_at") or teardown["started_at"],
            "duration_s": 0,
            "rc": 0,
            "ok": True,
            "detail": "class deploy (playbooks/class.yml)",
        },
        {
            "name": "teardown",
            "started_at": teardown["started_at"],
            "ended_at": teardown["ended_at"],
            "duration_s": receipt.seconds_between(teardown["started_at"], teardown["ended_at"]),
            "rc": 0 if teardown.get("ok") else 1,
            "ok": bool(teardown.get("ok")),
            "detail": teardown.get("reason", ""),
        },
    ]
    built = receipt.build(
        kind="class",
        lab=lab,
        owner=student["student_id"],
        region=region,
        started_at=steps[0]["started_at"],
        ended_at=after["checked_at"],
        steps=steps,
        after_deploy=deployed,
        teardown=teardown,
        after_teardown=after,
    )
    built["class"] = class_name
    built["student"] = {k: student.get(k) for k in ("student_id", "display_name", "email", "budget_usd", "expiry")}
    built["spend"] = spend or {}
    return built


STYLE = (
    "body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}"
    "td,th{border:1px solid #999;padding:.3em .6em;text-align:left}.pass{color:#060}.fail{color:#a00}"
)


def _resource_row(r: dict) -> str:
    e = html.escape
    deleted = "yes, " + e(" – ".join(r["deleted_between"])) if r["deleted_by_teardown"] else "no"
    cells = [r["kind"], r["id"], r.get("name") or "", r["source"]]
    return (
        "<tr>" + "".join(f"<td>{e(c)}</td>" for c in cells) + f"<td>{deleted}</td>"
        f"<td>{e(r['absent_at'] or 'STILL THERE')}</td></tr>"
    )


def to_html(rec: dict) -> str:
    e = html.escape
    left = rec["leftovers"] or {}
    spend = rec.get("spend") or {}
    teardown = rec["teardown"]
    verdict = rec["verdict"].upper()
    who = rec["student"].get("display_name") or rec["owner"]
    rows = "".join(_resource_row(r) for r in rec["resources"])
    outcome = "nothing left" if left.get("ok") else f"{len(left.get('leftovers', []))} left"
    left_lines = "".join(
        f"<p>LEFT: {e(r['kind'])} {e(r.get('name') or r['id'])}</p>" for r in left.get("leftovers", [])
    )
    problems = "".join(f"<p>Problem: {e(p)}</p>" for p in rec["problems"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Receipt: {e(rec["owner"])} ({e(rec["lab"])})</title>
<style>{STYLE}</style></head>
<body><h1>Teardown receipt: {e(who)} — <span class="{"pass" if verdict == "PASS" else "fail"}">{verdict}</span></h1>
<p>Class <b>{e(rec["class"])}</b>, student <b>{e(rec["owner"])}</b>, lab <b>{e(rec["lab"])}</b>, region
{e(rec["region"])}. Teardown {e(teardown.get("started_at", ""))} – {e(teardown.get("ended_at", ""))}
({e(teardown.get("reason", ""))}).</p>
<p>Estimated spend: {spend.get("spend_usd", 0):.4f} USD of {rec["student"].get("budget_usd")} USD
({e(spend.get("source", ""))}).</p>
<h2>Every resource the environment had ({len(rec["resources"])})</h2>
<table><tr><th>kind</th><th>id</th><th>name</th><th>found by</th><th>deleted by teardown</th><th>absent at</th></tr>
{rows}</table>
<h2>Independent count after teardown</h2>
<p id="verdict">At {e(left.get("checked_at", "?"))}, tags {e(json.dumps(left.get("tags", {})))} and name prefix
<code>{e(left.get("prefix", ""))}</code> ({e("; ".join(left.get("sources", [])))}): <b>{outcome}</b>.</p>
{left_lines}
{problems}
</body></html>
"""


def write(rec: dict, directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "receipt.json", directory / "receipt.html"
    json_path.write_text(json.dumps(rec, indent=2) + "\n")
    html_path.write_text(to_html(rec))
    return json_path, html_path
