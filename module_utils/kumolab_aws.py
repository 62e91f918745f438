# Shared plumbing for kumolab's custom modules: clients with jittered backoff, tag helpers and
# translation of botocore errors into messages a person can act on.

from __future__ import annotations

from ansible.module_utils.kumolab_resources import (  # noqa: F401  (tag names and error_code: re-exported)
    EXPIRES_TAG,
    IN_USE_CODES,
    LAB_TAG,
    NOT_YET_VISIBLE_CODES,
    PROJECT_TAG,
    THROTTLING_CODES,
    error_code,
)
from ansible_collections.amazon.aws.plugins.module_utils.retries import AWSRetry

# The project's one retry vocabulary (module_utils/kumolab_resources.py, shared with teardown and the reaper):
# throttling, "still in use" and "just created, not yet visible" clear up by themselves when we wait a
# little. AWSRetry retries the common throttling codes already; the rest are added. A module whose service
# has codes of its own extends this list (retry_decorator(extra_codes=...)), never replaces it.
EVENTUAL_CONSISTENCY_CODES = sorted(THROTTLING_CODES | IN_USE_CODES | NOT_YET_VISIBLE_CODES)


def retry_decorator(extra_codes=(), retries=8, delay=1, max_delay=20):
    """Jittered backoff on the vocabulary above plus a module's ``extra_codes``."""
    codes = sorted(set(EVENTUAL_CONSISTENCY_CODES) | set(extra_codes))
    return AWSRetry.jittered_backoff(retries=retries, delay=delay, max_delay=max_delay, catch_extra_error_codes=codes)


RETRY = retry_decorator()

OWNER_TAG = "Owner"

ACTIONABLE = {
    "UnauthorizedOperation": "the credentials in use are not allowed to do this; check the IAM policy of the user or role",  # noqa: E501
    "AccessDenied": "the credentials in use are not allowed to do this; check the IAM policy of the user or role",
    "AccessDeniedException": "the credentials in use are not allowed to do this; check the IAM policy of the user or role",  # noqa: E501
    "AuthFailure": "AWS rejected the credentials; run `aws sts get-caller-identity` to check them",
    "InvalidClientTokenId": "AWS rejected the access key; run `aws configure` or export AWS_PROFILE",
    "ExpiredToken": "the session token has expired; log in again (e.g. `aws sso login`)",
}


def client(module, service, retry=RETRY):
    """A boto3 client for ``service`` whose calls (with ``aws_retry=True``) retry on throttling and eventual
    consistency; ``retry`` is a module's extended ``retry_decorator(...)``."""
    return module.client(service, retry_decorator=retry)


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
