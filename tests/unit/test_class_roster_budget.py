"""Class mode's pure parts: the roster's checks (every problem named by row and column) and the budget's arithmetic
and decisions on a clock the test sets."""

from __future__ import annotations

import datetime as dt

import pytest

from kumolab.class_mode import budget, pricing, roster

HEADER = "student_id,display_name,email,labs,budget_usd,expiry\n"


def write(tmp_path, body: str):
    path = tmp_path / "term.csv"
    path.write_text(body)
    return path


def test_a_good_roster_reads_in_order_with_utc_expiries(tmp_path):
    path = write(
        tmp_path,
        "Email,Student_ID,display_name,labs,budget_usd,expiry\n"
        "a@x.edu,s1,Ada,ec2,20,2027-01-31\nb@x.edu,s2,Bo,ec2,12.5,2027-01-31T09:00+09:00\n",
    )
    students = roster.read(path)
    assert [s.student_id for s in students] == ["s1", "s2"]
    assert students[0].expiry == "2027-01-31T23:59:59Z" and students[1].expiry == "2027-01-31T00:00:00Z"
    assert students[1].budget_usd == 12.5 and students[1].row == 3
    assert roster.class_name(path) == "term"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", "row 1: the roster is empty"),
        (
            "student_id,name\n",
            "missing column(s) display_name, email, labs, budget_usd, expiry; unknown column(s) name",
        ),
        (HEADER, "the roster has a header but no students"),
        (HEADER + "s1,Ada,a@x.edu,ec2,20\n", "row 2: 5 cells, the header has 6"),
        (HEADER + "s-1,Ada,a@x.edu,ec2,20,2027-01-31\n", "row 2, column student_id: 's-1' must be"),
        (HEADER + "classa,Ada,a@x.edu,ec2,20,2027-01-31\n", "reserved for the class network"),
        (HEADER + "s1,Ada,a@x.edu,ec2 ec2,20,2027-01-31\n", "row 2, column labs: 'ec2 ec2' names a lab twice"),
        (HEADER + "s1,Ada,a@x.edu,gpu,20,2027-01-31\n", "'gpu' cannot be deployed in class mode yet"),
        (HEADER + "s1,Ada,a@x.edu,ec2,nan,2027-01-31\n", "row 2, column budget_usd"),
        (HEADER + "s1,Ada,a@x.edu,ec2,0,2027-01-31\n", "row 2, column budget_usd"),
        (HEADER + "s1,Ada,a@x.edu,ec2,5,31/01/2027\n", "row 2, column expiry"),
        (
            HEADER + "s1,Ada,a@x.edu,ec2,5,2027-01-31\n\ns1,Bo,b@x.edu,ec2,5,2027-01-31\n",
            "row 4, column student_id: 's1' is also on row 2",
        ),
    ],
)
def test_a_bad_roster_names_the_row_and_column(tmp_path, body, expected):
    with pytest.raises(roster.RosterError) as error:
        roster.read(write(tmp_path, body))
    assert expected in str(error.value)
    assert "nothing was deployed" in str(error.value)


def test_a_missing_roster_file_says_so(tmp_path):
    with pytest.raises(roster.RosterError, match="cannot read the roster"):
        roster.read(tmp_path / "absent.csv")


T0 = dt.datetime(2027, 1, 10, 9, 0, tzinfo=dt.UTC)


def student(budget_usd=1.0, expiry="2027-02-01T00:00:00Z"):
    return roster.Student("s1", "Ada", "a@x.edu", ("ec2",), budget_usd, expiry, 2)


def server(state="running"):
    return [{"id": "i-1", "state": state, "type": "t3.micro", "lab": "ec2", "launched_at": roster.iso(T0)}]


def test_spend_is_price_table_times_run_time_and_stopped_servers_pay_for_their_volume_only():
    rate, idle = pricing.hourly("ec2", "ap-northeast-1"), pricing.hourly("ec2", "ap-northeast-1", running=False)
    assert 0 < idle < rate
    entry = {}
    budget.accrue(entry, server(), T0 + dt.timedelta(hours=10), "ap-northeast-1")
    assert entry["spend_usd"] == pytest.approx(10 * rate, rel=1e-4) and entry["source"] == "estimate (price table)"
    budget.accrue(entry, server("stopped"), T0 + dt.timedelta(hours=20), "ap-northeast-1")
    assert entry["spend_usd"] == pytest.approx(10 * rate + 10 * idle, rel=1e-4)
    budget.accrue(entry, server(), T0 + dt.timedelta(hours=5), "ap-northeast-1")  # an earlier clock adds nothing
    assert entry["spend_usd"] == pytest.approx(10 * rate + 10 * idle, rel=1e-4) and len(entry["series"]) == 2


def test_warning_once_then_stop_at_the_budget_then_teardown_past_expiry():
    entry = {"spend_usd": 0.85}
    assert budget.decide(student(), entry, server(), T0, 0.8).get("warn")
    assert not budget.decide(student(), entry, server(), T0, 0.8).get("warn"), "a warning is sent once"
    entry["spend_usd"] = 1.0
    assert budget.decide(student(), entry, server(), T0, 0.8)["stop"] == ["i-1"]
    assert "stop" not in budget.decide(student(), entry, server("stopped"), T0, 0.8), "nothing left to stop"
    late = student(expiry=roster.iso(T0 - dt.timedelta(minutes=1)))
    assert budget.decide(late, {}, server(), T0, 0.8)["expire"]
