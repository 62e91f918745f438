# -*- coding: utf-8 -*-
# Shared plumbing for kumolab's custom modules: clients with jittered backoff, tag helpers and
# translation of botocore errors into messages a person can act on.

from __future__ import annotations

from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# Throttling codes are retried by AWSRetry already; these are the eventual-consistency and
# "still in use" codes that clear up by themselves when we wait a little.
EVENTUAL_CONSISTENCY_CODES = [
    "DependencyViolation",
    "InvalidGroup.InUse",
    "InvalidInternetGatewayID.NotFound",
    "InvalidVpcID.NotFound",
    "ResourceInUseException",
    "ResourceConflictException",
    "ConcurrentModificationException",
    "InvalidParameterValueException",
    "TooManyRequestsException",
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
]

RETRY = AWSRetry.jittered_backoff(retries=8, delay=1, max_delay=20, catch_extra_error_codes=EVENTUAL_CONSISTENCY_CODES)

PROJECT_TAG = "Project"
LAB_TAG = "Lab"
OWNER_TAG = "Owner"
EXPIRES_TAG = "ExpiresAt"

ACTIONABLE = {
    "UnauthorizedOperation": "the credentials in use are not allowed to do this; check the IAM policy of the user or role",
    "AccessDenied": "the credentials in use are not allowed to do this; check the IAM policy of the user or role",
    "AccessDeniedException": "the credentials in use are not allowed to do this; check the IAM policy of the user or role",
    "AuthFailure": "AWS rejected the credentials; run `aws sts get-caller-identity` to check them",
    "InvalidClientTokenId": "AWS rejected the access key; run `aws configure` or export AWS_PROFILE",
    "ExpiredToken": "the session token has expired; log in again (e.g. `aws sso login`)",
}


def client(module, service):
    """A boto3 client for ``service`` whose calls retry on throttling and eventual consistency."""
    return module.client(service, retry_decorator=RETRY)


def error_code(exc):
    return getattr(exc, "response", {}).get("Error", {}).get("Code", "")


def fail(module, exc, doing):
    """Fail the module with what we were doing, AWS's code, and what to do about it."""
    code = error_code(exc)
    hint = ACTIONABLE.get(code)
    msg = f"Failed to {doing}: {code or type(exc).__name__}"
    if hint:
        msg += f" - {hint}"
    module.fail_json_aws(exc, msg=msg)


def tag_filters(tags):
    """EC2-style filters selecting resources that carry every tag in ``tags``."""
    return [{"Name": f"tag:{key}", "Values": [value]} for key, value in tags.items()]
