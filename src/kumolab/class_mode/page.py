"""The instructor page: ``results/<owner>/class/index.html``, one row per student, and ``spend.png``, the
class's estimated spend over time (from the budget ledger).

Status comes from what the account holds now (running / stopped / torn down / not deployed); spend from the
ledger, with its source; resources from the student's latest count (deploy or receipt).
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path

from kumolab.class_mode.roster import Student, iso, parse_expiry


def spend_chart(ledger: dict, students: list[Student], path: Path) -> float:
    """A PNG of each student's estimated spend over time (USD, from zero); returns the peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    peak, peak_who = 0.0, ""
    for student in students:
        series = ledger.get("students", {}).get(student.student_id, {}).get("series", [])
        if not series:
            continue
        times = [parse_expiry(t) for t, _ in series]
        values = [v for _, v in series]
        # Spend accrues at a constant rate between evaluations: straight lines, not steps.
        ax.plot(times, values, marker="o", label=f"{student.student_id} (budget {student.budget_usd:g})")
        if max(values) > peak:
            peak, peak_who = max(values), student.student_id
    ax.set_ylim(bottom=0, top=max(peak * 1.15, 0.01))
    ax.set_ylabel("estimated spend (USD, price table)")
    ax.set_xlabel("time (UTC)")
    ax.set_title(f"Estimated spend per student — peak {peak:.4f} USD ({peak_who or 'nobody'})")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", ncol=2)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return peak


def write(
    out_dir: Path,
    class_name: str,
    students: list[Student],
    ledger: dict,
    instances: dict[str, list[dict]],
    now: _dt.datetime | None = None,
) -> Path:
    now = now or _dt.datetime.now(_dt.UTC)
    e = html.escape
    peak = spend_chart(ledger, students, out_dir / "spend.png")
    rows = []
    for student in students:
        sid = student.student_id
        entry = ledger.get("students", {}).get(sid, {})
        mine = instances.get(sid, [])
        receipt_file = out_dir / sid / "receipt.json"
        rec = json.loads(receipt_file.read_text()) if receipt_file.exists() else None
        if mine:
            status = "running" if any(i["state"] in ("pending", "running") for i in mine) else "stopped"
        elif rec:
            status = "torn down"
        else:
            status = "not deployed"
        notices = entry.get("notices", {})
        reason = (
            "budget spent"
            if "stopped" in notices and status == "stopped"
            else "expired"
            if "expired" in notices and status == "torn down"
            else ""
        )
        deployed_file = out_dir / sid / "resources.json"
        resources = (
            len(rec["resources"])
            if rec
            else len(json.loads(deployed_file.read_text())["leftovers"])
            if deployed_file.exists()
            else 0
        )
        receipt_cell = f'<a href="{e(sid)}/receipt.html">{e(rec["verdict"])}</a>' if rec else "—"
        expired = parse_expiry(student.expiry) < now
        rows.append(
            f'<tr id="student-{e(sid)}" class="{e(status.replace(" ", "-"))}">'
            f"<td>{e(sid)}</td><td>{e(student.display_name)}</td>"
            f"<td>{e(status)}{(' (' + e(reason) + ')') if reason else ''}</td><td>{e(', '.join(student.labs))}</td>"
            f"<td>{resources}</td><td>{entry.get('spend_usd', 0.0):.4f} / {student.budget_usd:g}</td>"
            f"<td>{e(entry.get('source', '—'))}</td>"
            f"<td>{e(student.expiry)}{' (past)' if expired else ''}</td><td>{receipt_cell}</td>"
            f'<td><a href="{e(sid)}/README.md">bundle</a></td></tr>'
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>kumolab class {e(class_name)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.3em .6em}}tr.running td:nth-child(3){{color:#060}}
tr.stopped td:nth-child(3){{color:#a60}}tr.torn-down td:nth-child(3){{color:#666}}</style></head>
<body><h1>Class {e(class_name)}: {len(students)} students</h1>
<p>Updated {e(iso(now))}; spend last evaluated {e(ledger.get("evaluated_at", "never"))}. Peak estimated spend
{peak:.4f} USD.</p>
<table><thead><tr><th>student</th><th>name</th><th>status</th><th>labs</th><th>resources</th>
<th>spend / budget (USD)</th><th>source</th><th>expiry</th><th>receipt</th><th>access</th></tr></thead><tbody>
{"".join(rows)}
</tbody></table>
<h2>Estimated spend over time</h2>
<img src="spend.png" alt="estimated spend per student over time, peak {peak:.4f} USD" width="900">
</body></html>
"""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = out_dir / "index.html"
    index.write_text(page)
    return index
