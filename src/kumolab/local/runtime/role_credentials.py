"""Credentials of a function's execution role or a task's task role, as AWS hands them to the code it runs.

On AWS a Lambda function's process gets its execution role's temporary keys in ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY`` and ``AWS_SESSION_TOKEN``; an ECS task's SDK gets its task role's. The local runtime
does the same against the emulator: it calls ``sts:AssumeRole`` there for the role (with the operator's
profile), and the emulator enforces that role's policies for requests signed with these keys
(``kumolab.local.role_authorization``, the ``iam-role-authorization`` fidelity rule). Keys are cached per
role and taken afresh when less than :data:`REFRESH_MARGIN_S` of their lifetime is left.

On real AWS (a profile without an endpoint) nothing is assumed: a role that trusts ``lambda.amazonaws.com``
cannot be assumed by a person, so local code run against AWS keeps the operator's profile.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

#: Lifetime asked for (AWS's default for AssumeRole: one hour).
DURATION_S = 3600
#: Keys with less than this left are replaced (a Lambda pool is retired and restarts with new ones).
REFRESH_MARGIN_S = 300
#: How long a role that cannot be assumed yet (IAM propagation, just created) is retried.
ASSUME_RETRY_S = 15.0


@dataclass(frozen=True)
class RoleKeys:
    role_arn: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    expires_at: float  # time.time()

    def fresh(self, now: float | None = None) -> bool:
        return (now or time.time()) < self.expires_at - REFRESH_MARGIN_S

    def environment(self) -> dict[str, str]:
        """What AWS puts in the environment of the role's code."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
        }


class RoleCredentials:
    """``AssumeRole`` through ``sts_client`` (the operator's, on the emulator), cached per role until near expiry."""

    def __init__(self, sts_client, duration_s: int = DURATION_S):
        self.sts, self.duration_s = sts_client, duration_s
        self._cache: dict[str, RoleKeys] = {}
        self._lock = threading.Lock()

    def keys(self, role_arn: str, session_name: str) -> RoleKeys:
        with self._lock:
            cached = self._cache.get(role_arn)
            if cached is not None and cached.fresh():
                return cached
        deadline = time.monotonic() + ASSUME_RETRY_S
        while True:
            try:
                answer = self.sts.assume_role(
                    RoleArn=role_arn, RoleSessionName=session_name[:64], DurationSeconds=self.duration_s
                )
                break
            except Exception:  # a role still propagating: AWS's "cannot be assumed" for a few seconds
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)
        creds = answer["Credentials"]
        expiration = creds.get("Expiration")
        expires_at = expiration.timestamp() if hasattr(expiration, "timestamp") else time.time() + self.duration_s
        keys = RoleKeys(role_arn, creds["AccessKeyId"], creds["SecretAccessKey"], creds["SessionToken"], expires_at)
        with self._lock:
            self._cache[role_arn] = keys
        return keys


def session_name(name: str) -> str:
    """A valid ``RoleSessionName`` (``[\\w+=,.@-]{2,64}``) from a function or task name."""
    cleaned = "".join(c if c.isalnum() or c in "+=,.@-_" else "-" for c in name) or "kumolab"
    return (cleaned + "--")[:64] if len(cleaned) < 2 else cleaned[:64]
