"""Application Auto Scaling for an ECS service, evaluated locally (moto stores policies and alarms but
evaluates neither, and publishes no SQS metrics).

Once per tick, :class:`ServiceScaler` reads the service's scalable target (``service/<cluster>/<service>``,
``ecs:service:DesiredCount``), its scaling policies and the CloudWatch alarms whose ``AlarmActions`` name a
step policy, takes one sample of every metric they use, and sets the service's ``desiredCount`` through the
ECS API (the local ECS runtime then starts or stops workers). The metric source is the emulator's queue:
``AWS/SQS ApproximateNumberOfMessagesVisible`` / ``ApproximateNumberOfMessagesNotVisible`` (dimension
``QueueName``) are the queue's ``ApproximateNumberOfMessages`` / ``ApproximateNumberOfMessagesNotVisible``
attributes; metric math alarms (``Metrics`` with an ``Expression`` of ids, numbers and ``+ - * /``) are
computed from those.

AWS's rules, as documented, with time scaled by ``time_factor`` (``$KUMOLAB_AUTOSCALING_TIME_FACTOR``,
default 0.05: a 60 s alarm period is 3 s, a 300 s cooldown 15 s, ten minutes of an empty queue 30 s):

* alarms: a datapoint per (scaled) ``Period``, the period's samples aggregated with the alarm's statistic;
  ALARM when at least ``DatapointsToAlarm`` (default ``EvaluationPeriods``) of the last ``EvaluationPeriods``
  datapoints breach (a period between two samples holds the previous sample: SQS publishes its gauges
  every period); before the first sample the alarm has insufficient data and keeps its state.
  While an alarm is in ALARM its scaling action is invoked again once per period, as for Auto Scaling actions.
* step scaling: the breach is ``metric - threshold``; above the threshold a step's lower bound is inclusive
  and its upper bound exclusive, below it the lower bound is exclusive and the upper bound inclusive; a
  missing bound is infinity. ``ChangeInCapacity``, ``ExactCapacity``, ``PercentChangeInCapacity`` (with
  ``MinAdjustmentMagnitude``). ``Cooldown``: after a scale-out, another scale-out only when it asks for more
  than the capacity now is; no scale-in while a scale-out's or a scale-in's cooldown is in effect.
* target tracking (its own alarms, as AWS creates them: scale out after 3 datapoints above the target,
  scale in after 15 datapoints below 90 % of it): ``ceil(capacity * metric / target)``; **no scale-out while
  the metric is at or below the target**; from 0 tasks, a metric above the target scales to 1;
  ``ScaleOutCooldown``/``ScaleInCooldown`` (default 300 s), ``DisableScaleIn``.
* ``MinCapacity``/``MaxCapacity`` bound every result, and a count outside them is brought inside.
"""

from __future__ import annotations

import ast
import math
import operator
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

RESOURCE_DIMENSION = "ecs:service:DesiredCount"
DEFAULT_TIME_FACTOR = 0.05
TT_SCALE_OUT_DATAPOINTS, TT_SCALE_IN_DATAPOINTS, TT_SCALE_IN_FRACTION = 3, 15, 0.9
TT_PERIOD_S, TT_DEFAULT_COOLDOWN_S = 60, 300
SQS_ATTRIBUTES = {
    "ApproximateNumberOfMessagesVisible": "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible": "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed": "ApproximateNumberOfMessagesDelayed",
}


def time_factor_from_environment() -> float:
    try:
        return float(os.environ.get("KUMOLAB_AUTOSCALING_TIME_FACTOR", DEFAULT_TIME_FACTOR))
    except ValueError:
        return DEFAULT_TIME_FACTOR


# -- the rules as pure functions -----------------------------------------------------------------------


def clamp(capacity: int, low: int, high: int) -> int:
    return max(low, min(high, capacity))


def breaches(value: float, comparison: str, threshold: float) -> bool:
    return {
        "GreaterThanOrEqualToThreshold": value >= threshold,
        "GreaterThanThreshold": value > threshold,
        "LessThanThreshold": value < threshold,
        "LessThanOrEqualToThreshold": value <= threshold,
    }[comparison]


def step_for(adjustments: list[dict], breach: float, above: bool) -> dict | None:
    """The step adjustment whose interval holds ``breach`` (metric - threshold)."""
    for step in adjustments:
        low = step.get("MetricIntervalLowerBound")
        high = step.get("MetricIntervalUpperBound")
        low = -math.inf if low is None else float(low)
        high = math.inf if high is None else float(high)
        if (low <= breach < high) if above else (low < breach <= high):
            return step
    return None


def step_capacity(config: dict, current: int, breach: float, above: bool) -> int | None:
    """The capacity a step scaling policy asks for, before min/max; None when no step matches."""
    step = step_for(config.get("StepAdjustments") or [], breach, above)
    if step is None:
        return None
    adjustment = int(step["ScalingAdjustment"])
    kind = config.get("AdjustmentType", "ChangeInCapacity")
    if kind == "ExactCapacity":
        return adjustment
    if kind == "PercentChangeInCapacity":
        change = current * adjustment / 100.0
        change = math.floor(change) if change > 0 else math.ceil(change)  # AWS rounds toward zero
        magnitude = int(config.get("MinAdjustmentMagnitude") or 0)
        if adjustment and abs(change) < magnitude:
            change = magnitude if adjustment > 0 else -magnitude
        return current + int(change)
    return current + adjustment


def target_tracking_capacity(current: int, metric: float, target: float) -> int:
    """What target tracking aims at: ``ceil(capacity * metric / target)``; from 0, 1 above the target."""
    if current == 0:
        return 1 if metric > target else 0
    return math.ceil(current * metric / target - 1e-9)


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def evaluate_expression(expression: str, values: dict[str, float | None]) -> float | None:
    """A metric math expression of ids, numbers, + - * / and parentheses (None if an input is missing)."""

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = walk(node.left), walk(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Div) and right == 0:
                return None
            return _OPS[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            inner = walk(node.operand)
            return None if inner is None else -inner
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name):
            return values.get(node.id)
        raise ValueError(f"metric math the local autoscaler does not evaluate: {expression!r}")

    return walk(ast.parse(expression, mode="eval"))


def aggregate(samples: list[float], statistic: str) -> float:
    return {"Maximum": max, "Minimum": min, "Sum": sum, "SampleCount": len}.get(statistic, lambda s: sum(s) / len(s))(
        samples
    )


# -- alarms over time ----------------------------------------------------------------------------------


@dataclass
class AlarmHistory:
    """Samples of one alarm's metric, bucketed by (scaled) period."""

    period_s: float
    statistic: str = "Average"
    buckets: dict[int, list[float]] = field(default_factory=dict)

    def add(self, now: float, value: float | None) -> None:
        if value is not None:
            self.buckets.setdefault(int(now // self.period_s), []).append(value)

    def datapoints(self, now: float, count: int) -> list[float | None]:
        """The last ``count`` datapoints, newest last (the current period's once it has a sample). The
        metric is a gauge that SQS publishes every period: a period the local sampler missed holds the
        previous period's value; periods before the first sample are missing."""
        current = int(now // self.period_s)
        if current not in self.buckets:
            current -= 1  # the current period has no sample yet: its datapoint is not out
        first = current - count + 1
        for old in [b for b in self.buckets if b < first - 1 and b != max(self.buckets)]:
            del self.buckets[old]
        earlier = [b for b in self.buckets if b < first]
        last = aggregate(self.buckets[max(earlier)], self.statistic) if earlier else None
        points = []
        for bucket in range(first, current + 1):
            if bucket in self.buckets:
                last = aggregate(self.buckets[bucket], self.statistic)
            points.append(last)
        return points


def alarm_state(points: list[float | None], comparison: str, threshold: float, datapoints_to_alarm: int) -> str:
    present = [p for p in points if p is not None]
    breaching = sum(1 for p in present if breaches(p, comparison, threshold))
    if breaching >= datapoints_to_alarm:
        return "ALARM"
    if len(present) < datapoints_to_alarm and breaching + (len(points) - len(present)) >= datapoints_to_alarm:
        return "INSUFFICIENT_DATA"  # missing data: could still be an alarm, keep the state
    return "OK"


# -- one service ---------------------------------------------------------------------------------------

MetricReader = Callable[[str, str, dict[str, str]], "float | None"]


class ServiceScaler:
    """Evaluates one ECS service's scaling policies; :meth:`tick` with the described resources (pure), or
    :meth:`evaluate` which describes them through boto3 clients and applies the result."""

    def __init__(
        self, cluster: str, service: str, clock: Callable[[], float] = time.monotonic, time_factor: float | None = None
    ):
        self.cluster, self.service = cluster, service
        self.resource_id = f"service/{cluster}/{service}"
        self.clock = clock
        self.factor = time_factor_from_environment() if time_factor is None else time_factor
        self.histories: dict[str, AlarmHistory] = {}
        self.states: dict[str, str] = {}
        self.last_action: dict[str, float] = {}  # alarm/policy key -> when its action was last invoked
        self.cooldown_until = {"out": -math.inf, "in": -math.inf}
        self.log: list[str] = []

    def _scaled(self, seconds: float) -> float:
        return max(float(seconds) * self.factor, 0.001)

    def _history(self, key: str, period: float, statistic: str) -> AlarmHistory:
        scaled = self._scaled(period)
        history = self.histories.get(key)
        if history is None or history.period_s != scaled or history.statistic != statistic:
            history = self.histories[key] = AlarmHistory(scaled, statistic)
        return history

    @staticmethod
    def alarm_value(alarm: dict, read: MetricReader) -> tuple[float | None, float, str]:
        """(the alarm's metric now, its period in s, its statistic)."""
        if alarm.get("Metrics"):
            values, result, period, stat = {}, None, 60, "Maximum"
            for query in alarm["Metrics"]:
                if "MetricStat" in query:
                    stat_spec = query["MetricStat"]
                    metric = stat_spec["Metric"]
                    dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                    values[query["Id"]] = read(metric["Namespace"], metric["MetricName"], dims)
                    period, stat = stat_spec.get("Period", period), stat_spec.get("Stat", stat)
            for query in alarm["Metrics"]:
                if query.get("ReturnData", True):
                    result = (
                        evaluate_expression(query["Expression"], values)
                        if "Expression" in query
                        else values.get(query["Id"])
                    )
                    break
            return result, float(alarm.get("Period") or period), stat
        dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
        return (
            read(alarm["Namespace"], alarm["MetricName"], dims),
            float(alarm.get("Period") or 60),
            alarm.get("Statistic") or "Average",
        )

    def _apply_cooldown(self, policy_cooldown: float, current: int, new: int) -> int:
        now = self.clock()
        if new > current:
            self.cooldown_until["out"] = now + self._scaled(policy_cooldown)
        elif new < current:
            self.cooldown_until["in"] = now + self._scaled(policy_cooldown)
        return new

    def _blocked(self, current: int, new: int, now: float) -> bool:
        if new < current:  # no scale-in during any cooldown
            return now < self.cooldown_until["out"] or now < self.cooldown_until["in"]
        return False  # a scale-out during its cooldown only when it asks for more: new > current already

    def tick(
        self, target: dict | None, policies: list[dict], alarms: list[dict], current: int, read: MetricReader
    ) -> int:
        """The desired count after one evaluation (``current`` when nothing scales)."""
        if target is None:
            return current
        now = self.clock()
        low, high = int(target["MinCapacity"]), int(target["MaxCapacity"])
        if target.get("SuspendedState", {}).get("DynamicScalingOutSuspended") and target.get("SuspendedState", {}).get(
            "DynamicScalingInSuspended"
        ):
            return current
        desired = clamp(current, low, high)
        by_arn = {p["PolicyARN"]: p for p in policies}
        for alarm in alarms:
            linked = [
                by_arn[a]
                for a in alarm.get("AlarmActions", [])
                if a in by_arn and by_arn[a].get("PolicyType") == "StepScaling"
            ]
            if not linked or not alarm.get("ActionsEnabled", True):
                continue
            value, period, stat = self.alarm_value(alarm, read)
            history = self._history(alarm["AlarmName"], period, stat)
            history.add(now, value)
            periods = int(alarm.get("EvaluationPeriods") or 1)
            needed = int(alarm.get("DatapointsToAlarm") or periods)
            points = history.datapoints(now, periods)
            state = alarm_state(points, alarm["ComparisonOperator"], float(alarm["Threshold"]), needed)
            if state == "INSUFFICIENT_DATA":
                state = self.states.get(alarm["AlarmName"], "INSUFFICIENT_DATA")
            entered = state == "ALARM" and self.states.get(alarm["AlarmName"]) != "ALARM"
            self.states[alarm["AlarmName"]] = state
            if state != "ALARM":
                continue
            key = alarm["AlarmName"]
            if not entered and now - self.last_action.get(key, -math.inf) < history.period_s:
                continue  # in ALARM, the action is invoked again once per period
            self.last_action[key] = now
            latest = next(p for p in reversed(points) if p is not None)
            comparison = alarm["ComparisonOperator"]
            above = comparison.startswith("Greater")
            for policy in linked:
                config = policy["StepScalingPolicyConfiguration"]
                asked = step_capacity(config, desired, latest - float(alarm["Threshold"]), above)
                if asked is None:
                    continue
                new = clamp(asked, low, high)
                if new == desired or self._blocked(desired, new, now):
                    continue
                self.log.append(f"{policy['PolicyName']} ({key} in ALARM at {latest:g}): {desired} -> {new}")
                desired = self._apply_cooldown(float(config.get("Cooldown") or 0), desired, new)
        for policy in policies:
            if policy.get("PolicyType") != "TargetTrackingScaling":
                continue
            desired = self._target_tracking(policy, desired, low, high, now, read)
        return desired

    def _target_tracking(self, policy: dict, current: int, low: int, high: int, now: float, read: MetricReader) -> int:
        config = policy["TargetTrackingScalingPolicyConfiguration"]
        spec = config.get("CustomizedMetricSpecification")
        if not spec:
            return current  # predefined metrics (CPU, memory) have no local source
        alarm = {
            "Namespace": spec["Namespace"],
            "MetricName": spec["MetricName"],
            "Dimensions": spec.get("Dimensions", []),
            "Statistic": spec.get("Statistic", "Average"),
            "Period": TT_PERIOD_S,
        }
        value, period, stat = self.alarm_value(alarm, read)
        history = self._history(f"tt:{policy['PolicyName']}", period, stat)
        history.add(now, value)
        target = float(config["TargetValue"])
        low_points = history.datapoints(now, TT_SCALE_IN_DATAPOINTS)  # the longer window first: it prunes
        high_points = low_points[-TT_SCALE_OUT_DATAPOINTS:]
        key = f"tt:{policy['PolicyName']}"
        if now - self.last_action.get(key, -math.inf) < history.period_s:
            return current
        if all(p is not None and p > target for p in high_points):  # the high alarm: no scale-out below target
            new = clamp(target_tracking_capacity(current, high_points[-1], target), low, high)
            if new > current:
                self.last_action[key] = now
                self.log.append(
                    f"{policy['PolicyName']} (metric {high_points[-1]:g} > target {target:g}): {current} -> {new}"
                )
                return self._apply_cooldown(float(config.get("ScaleOutCooldown", TT_DEFAULT_COOLDOWN_S)), current, new)
        elif not config.get("DisableScaleIn") and all(
            p is not None and p < target * TT_SCALE_IN_FRACTION for p in low_points
        ):
            new = clamp(target_tracking_capacity(current, low_points[-1], target), low, high)
            if new < current and not self._blocked(current, new, now):
                self.last_action[key] = now
                self.log.append(
                    f"{policy['PolicyName']} (metric {low_points[-1]:g} < target {target:g}): {current} -> {new}"
                )
                return self._apply_cooldown(float(config.get("ScaleInCooldown", TT_DEFAULT_COOLDOWN_S)), current, new)
        return current

    # -- through the API -----------------------------------------------------------------------------
    def evaluate(self, aas, cloudwatch, ecs, sqs, current: int) -> int | None:
        """Describe, evaluate, and set the service's desiredCount when it changes. Returns the new count,
        or None when the service has no scalable target."""
        found = aas.describe_scalable_targets(
            ServiceNamespace="ecs", ResourceIds=[self.resource_id], ScalableDimension=RESOURCE_DIMENSION
        ).get("ScalableTargets", [])
        if not found:
            return None
        policies = aas.describe_scaling_policies(
            ServiceNamespace="ecs", ResourceId=self.resource_id, ScalableDimension=RESOURCE_DIMENSION
        ).get("ScalingPolicies", [])
        arns = {p["PolicyARN"] for p in policies}
        alarms = []
        if any(p.get("PolicyType") == "StepScaling" for p in policies):
            for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmTypes=["MetricAlarm"]):
                alarms += [a for a in page.get("MetricAlarms", []) if arns & set(a.get("AlarmActions", []))]
        urls: dict[str, str | None] = {}

        def read(namespace: str, name: str, dims: dict[str, str]) -> float | None:
            if namespace != "AWS/SQS" or name not in SQS_ATTRIBUTES or "QueueName" not in dims:
                return None
            queue = dims["QueueName"]
            try:
                if queue not in urls:
                    urls[queue] = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
                attrs = sqs.get_queue_attributes(QueueUrl=urls[queue], AttributeNames=[SQS_ATTRIBUTES[name]])
            except Exception:  # the queue is gone (teardown): no datapoint
                return None
            return float(attrs.get("Attributes", {}).get(SQS_ATTRIBUTES[name], 0))

        before = dict(self.states)
        desired = self.tick(found[0], policies, alarms, current, read)
        for name, state in self.states.items():
            if before.get(name) != state:
                try:
                    cloudwatch.set_alarm_state(
                        AlarmName=name,
                        StateValue=state,
                        StateReason="kumolab local autoscaling: evaluated from the queue",
                    )
                except Exception:
                    pass
        if desired != current:
            ecs.update_service(cluster=self.cluster, service=self.service, desiredCount=desired)
        return desired
