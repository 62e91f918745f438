"""The class roster: a CSV with one row per student, checked before anything is deployed.

Columns (a header row, in any order; names case-insensitive)::

    student_id, display_name, email, labs, budget_usd, expiry

- ``student_id``: 1-12 lower-case letters and digits. It becomes the student's owner and, unchanged (it is its
  own owner slug, :func:`kumolab.labs.owner_slug`), the end of every resource name (``kumolab-ec2-<student_id>``),
  so it must be unique.
- ``labs``: lab names from the lab registry separated by ``;`` or spaces (class mode deploys those in
  :data:`CLASS_LABS`).
- ``budget_usd``: a positive number, the most this student's environment may cost.
- ``expiry``: ISO-8601 date or date-time (UTC when no zone is given); after it the environment is torn down.

Every problem is reported at once, each with its row number (the header is row 1) and column.
"""

from __future__ import annotations

import csv
import datetime as _dt
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from kumolab import labs as lab_registry

COLUMNS = ("student_id", "display_name", "email", "labs", "budget_usd", "expiry")
#: Labs a class can deploy: ``class_mode: true`` in the lab registry (their per-student roles run on the class network).
CLASS_LABS = tuple(name for name, spec in lab_registry.labs().items() if spec.class_mode)
STUDENT_ID = re.compile(rf"^[a-z0-9]{{1,{lab_registry.OWNER_SLUG_MAX}}}$")
EMAIL = re.compile(r"^[^@\s,;]+@[^@\s,;]+\.[^@\s,;]+$")
CLASS_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")


class RosterError(ValueError):
    """The roster is unusable; ``problems`` lists each one as "row N, column C: ..."."""

    def __init__(self, path: str, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"{path}: {len(problems)} problem(s); nothing was deployed. Fix the roster and run again:\n  - "
            + "\n  - ".join(problems)
        )


@dataclass(frozen=True)
class Student:
    student_id: str
    display_name: str
    email: str
    labs: tuple[str, ...]
    budget_usd: float
    expiry: str  # ISO-8601 UTC, "...Z"
    row: int

    def as_dict(self) -> dict:
        out = asdict(self)
        out["labs"] = list(self.labs)
        return out


def parse_expiry(value: str) -> _dt.datetime:
    text = value.strip().replace("Z", "+00:00")
    when = _dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    if len(value.strip()) == 10:  # a date: the end of that day
        when = when.replace(hour=23, minute=59, second=59)
    return when.astimezone(_dt.UTC)


def iso(when: _dt.datetime) -> str:
    return when.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read(path: str | Path, known_labs: dict | None = None) -> list[Student]:
    """The students of the roster at ``path``; raises :class:`RosterError` naming every bad row and column."""
    path = Path(path)
    known_labs = known_labs if known_labs is not None else lab_registry.labs()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise RosterError(str(path), [f"cannot read the roster: {exc.strerror}"]) from exc
    rows = list(csv.reader(text.splitlines()))
    rows_with_content = [(n, r) for n, r in enumerate(rows, start=1) if any(cell.strip() for cell in r)]
    if not rows_with_content:
        raise RosterError(str(path), [f"row 1: the roster is empty; its header must be {', '.join(COLUMNS)}"])
    header_row, header = rows_with_content[0]
    names = [h.strip().lower().replace(" ", "_") for h in header]
    problems = []
    missing = [c for c in COLUMNS if c not in names]
    unknown = [h for h in names if h not in COLUMNS]
    if missing or unknown:
        problems.append(
            f"row {header_row} (header): "
            + "; ".join(
                ([f"missing column(s) {', '.join(missing)}"] if missing else [])
                + ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
            )
            + f"; the header must name {', '.join(COLUMNS)}"
        )
        raise RosterError(str(path), problems)
    index = {name: names.index(name) for name in COLUMNS}
    students, seen = [], {}
    for number, cells in rows_with_content[1:]:
        if len(cells) != len(names):
            problems.append(f"row {number}: {len(cells)} cells, the header has {len(names)} (a comma inside a name?)")
            continue
        cell = {name: cells[i].strip() for name, i in index.items()}
        here = len(problems)

        def bad(column: str, message: str, row: int = number) -> None:
            problems.append(f"row {row}, column {column}: {message}")

        sid = cell["student_id"]
        if not STUDENT_ID.match(sid):
            longest = lab_registry.OWNER_SLUG_MAX
            bad("student_id", f"{sid!r} must be 1-{longest} lower-case letters and digits (it ends resource names)")
        elif sid in seen:
            bad("student_id", f"{sid!r} is also on row {seen[sid]}; each student once")
        elif sid.startswith("class"):
            bad("student_id", f"{sid!r}: ids starting with 'class' are reserved for the class network")
        else:
            seen[sid] = number
        if not cell["display_name"]:
            bad("display_name", "empty; give the name the instructor page shows")
        if not EMAIL.match(cell["email"]):
            bad("email", f"{cell['email']!r} is not an e-mail address (budget warnings go there)")
        lab_names = [x for x in re.split(r"[;\s]+", cell["labs"]) if x]
        if not lab_names:
            bad("labs", f"empty; name at least one lab ({', '.join(CLASS_LABS)})")
        for lab in lab_names:
            if lab not in known_labs:
                bad("labs", f"{lab!r} is not a lab of the registry ({', '.join(sorted(known_labs))})")
            elif lab not in CLASS_LABS:
                bad("labs", f"{lab!r} cannot be deployed in class mode yet; class labs: {', '.join(CLASS_LABS)}")
        if len(set(lab_names)) != len(lab_names):
            bad("labs", f"{cell['labs']!r} names a lab twice")
        try:
            budget = float(cell["budget_usd"])
            if not budget > 0 or budget != budget or budget == float("inf"):
                raise ValueError
        except ValueError:
            budget = 0.0
            bad("budget_usd", f"{cell['budget_usd']!r} must be a positive number of US dollars, e.g. 20 or 12.50")
        try:
            expiry = iso(parse_expiry(cell["expiry"]))
        except ValueError:
            expiry = ""
            bad("expiry", f"{cell['expiry']!r} is not an ISO-8601 date or time, e.g. 2027-01-31 or 2027-01-31T18:00Z")
        if len(problems) == here:
            students.append(Student(sid, cell["display_name"], cell["email"], tuple(lab_names), budget, expiry, number))
    if not problems and not students:
        problems.append(f"row {header_row + 1}: the roster has a header but no students")
    if problems:
        raise RosterError(str(path), problems)
    return students


def class_name(path: str | Path, given: str = "") -> str:
    """The class's name: ``given``, else the roster file's stem, lower-cased with other characters as dashes."""
    name = given or re.sub(r"[^a-z0-9-]+", "-", Path(path).stem.lower()).strip("-")
    if not CLASS_NAME.match(name):
        raise RosterError(
            str(path), [f"class name {name!r}: 1-24 lower-case letters, digits and dashes; set -e class_name=..."]
        )
    return name
