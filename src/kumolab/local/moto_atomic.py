"""Run moto's server with two fidelity fixes: atomic DynamoDB writes and clean launch-template data.

moto's DynamoDB backend has no locking: ``UpdateItem`` with ``ADD`` reads the old value and writes the
new one in Python, so two concurrent requests on moto's threaded server can both read N and both write
N+1 — a lost update that AWS never produces (seen here: 1,000 concurrent likes counted 999). This
wrapper serialises moto's DynamoDB item writes (and the conditional checks inside them) with one lock;
reads stay concurrent.

moto also copies the tags given for a launch template itself (``CreateLaunchTemplate``'s
``TagSpecifications``) into the template's version data, where AWS keeps only the template data that was
sent. ``amazon.aws.ec2_launch_template`` then sees a difference on its second run and creates a new
version every time it is first re-run; the fix removes what moto added.

Both fixes are backend hooks of the emulator's front door (:mod:`kumolab.local.front_door`), which
serves moto; ``python -m kumolab.local.moto_atomic -H 127.0.0.1 -p <port>`` runs that front door.
"""

from __future__ import annotations

import copy
import functools
import threading

WRITE_OPERATIONS = ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items")
_LOCK = threading.RLock()


def install() -> None:
    """Wrap moto's DynamoDB write handlers in one lock (idempotent)."""
    from moto.dynamodb.responses import DynamoHandler

    for name in WRITE_OPERATIONS:
        method = getattr(DynamoHandler, name, None)
        if method is None or getattr(method, "_kumolab_atomic", False):
            continue

        @functools.wraps(method)
        def locked(self, *args, __method=method, **kwargs):
            with _LOCK:
                return __method(self, *args, **kwargs)

        locked._kumolab_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoHandler, name, locked)


def install_launch_template_fix() -> None:
    """Keep ``CreateLaunchTemplate``'s own tags out of version 1's data (idempotent)."""
    from moto.ec2.responses.launch_templates import LaunchTemplates

    original = LaunchTemplates.create_launch_template
    if getattr(original, "_kumolab_fixed", False):
        return

    @functools.wraps(original)
    def create_launch_template(self, *args, **kwargs):
        sent = copy.deepcopy(self._get_param("LaunchTemplateData.TagSpecifications"))
        result = original(self, *args, **kwargs)
        template = self.ec2_backend.get_launch_template_by_name(self._get_param("LaunchTemplateName"))
        data = template.versions[0].data
        if sent:
            data["TagSpecifications"] = sent
        else:
            data.pop("TagSpecifications", None)
        return result

    create_launch_template._kumolab_fixed = True  # type: ignore[attr-defined]
    LaunchTemplates.create_launch_template = create_launch_template


def install_scaling_policy_names_filter() -> None:
    """``DescribeScalingPolicies`` honours ``PolicyNames`` (moto ignores it and applies ``MaxResults`` to every
    policy of the resource, so community.aws.application_autoscaling_policy, which asks for its one policy
    with ``MaxResults=1``, sees another policy of the same service once there are two)."""
    import json

    from moto.applicationautoscaling.responses import ApplicationAutoScalingResponse, _build_policy

    if getattr(ApplicationAutoScalingResponse.describe_scaling_policies, "_kumolab_fixed", False):
        return

    def describe_scaling_policies(self) -> str:
        _, policies = self.applicationautoscaling_backend.describe_scaling_policies(
            service_namespace=self._get_param("ServiceNamespace"),
            resource_id=self._get_param("ResourceId"),
            scalable_dimension=self._get_param("ScalableDimension"),
            max_results=1_000_000,
            next_token=None,
        )
        names = self._get_param("PolicyNames") or []
        if names:
            policies = [p for p in policies if p.policy_name in names]
        start = int(self._get_param("NextToken") or 0)
        end = start + (self._get_int_param("MaxResults") or 100)
        return json.dumps(
            {
                "ScalingPolicies": [_build_policy(p) for p in policies[start:end]],
                "NextToken": str(end) if end < len(policies) else None,
            }
        )

    describe_scaling_policies._kumolab_fixed = True  # type: ignore[attr-defined]
    ApplicationAutoScalingResponse.describe_scaling_policies = describe_scaling_policies
