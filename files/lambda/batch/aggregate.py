"""Lab 6 aggregation handler: read the sweep's result files, pick the best configuration, write the report.

Invoked by the sweep's state machine (``files/stepfunctions/batch_sweep.asl.json``) through
``arn:aws:states:::lambda:invoke``, once after the array job (``{"bucket", "prefix", "size", "job_id",
"metric", "goal"}``) and, on the failure path, with ``{"failed": true, "error": {"Error", "Cause"}}``.
Each array child wrote ``s3://<bucket>/<prefix>/results/<index>.json`` = ``{"index", "config",
"metrics": {<metric>: number, ...}}``. The report goes to ``s3://<bucket>/<prefix>/report.json`` and is
also returned (without the per-child list), so the state machine can choose on it.
"""

from __future__ import annotations

import json
import math

import boto3

GOALS = ("max", "min")


class BadEvent(ValueError):
    """The event is not what the state machine sends (the execution fails with this error's name)."""


def parse(event) -> dict:
    if not isinstance(event, dict):
        raise BadEvent(f"expected a JSON object, got {type(event).__name__}")
    for key in ("bucket", "prefix"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise BadEvent(f"{key!r} must be a non-empty string")
    parsed = {"bucket": event["bucket"], "prefix": event["prefix"].strip("/"), "failed": bool(event.get("failed"))}
    if parsed["failed"]:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        parsed["error"] = {"Error": str(error.get("Error", "Unknown")), "Cause": str(error.get("Cause", ""))}
        parsed["job_id"] = event.get("job_id")
        return parsed
    size = event.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise BadEvent("'size' must be a positive integer (the array job's size)")
    metric = event.get("metric", "accuracy")
    goal = event.get("goal", "max")
    if not isinstance(metric, str) or not metric:
        raise BadEvent("'metric' must be a non-empty string")
    if goal not in GOALS:
        raise BadEvent(f"'goal' must be one of {GOALS}")
    parsed.update(size=size, metric=metric, goal=goal, job_id=event.get("job_id"))
    return parsed


def read_results(s3, bucket: str, prefix: str) -> list[dict]:
    results = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{prefix}/results/"):
        for item in page.get("Contents", []):
            if item["Key"].endswith(".json"):
                results.append(json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()))
    return sorted(results, key=lambda r: r.get("index", 0))


def best_of(results: list[dict], metric: str, goal: str) -> dict | None:
    scored = [
        r
        for r in results
        if isinstance((r.get("metrics") or {}).get(metric), int | float) and math.isfinite(r["metrics"][metric])
    ]
    if not scored:
        return None
    pick = max if goal == "max" else min
    return pick(scored, key=lambda r: r["metrics"][metric])


def handler(event, context):
    request = parse(event)
    s3 = boto3.client("s3")
    key = f"{request['prefix']}/report.json"
    if request["failed"]:
        report = {"status": "failed", "job_id": request["job_id"], "error": request["error"]}
    else:
        results = read_results(s3, request["bucket"], request["prefix"])
        best = best_of(results, request["metric"], request["goal"])
        report = {
            "status": "complete" if best is not None and len(results) == request["size"] else "incomplete",
            "job_id": request["job_id"],
            "metric": request["metric"],
            "goal": request["goal"],
            "expected": request["size"],
            "completed": len(results),
            "best": best,
            "results": results,
        }
    s3.put_object(Bucket=request["bucket"], Key=key, Body=json.dumps(report, indent=2).encode())
    print(json.dumps({k: v for k, v in report.items() if k != "results"}), flush=True)
    summary = {k: v for k, v in report.items() if k != "results"}
    summary["report"] = f"s3://{request['bucket']}/{key}"
    return summary
