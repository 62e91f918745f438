"""The one place kumolab's Python code builds AWS clients.

Clients find their target the way every AWS SDK does: from a shared-config profile (``profile``, else
``$AWS_PROFILE``, else the default chain). On the local target that profile is the one
``kumolab-emulator start`` writes (:mod:`kumolab.local.settings`), whose ``endpoint_url`` names the
emulator; on AWS it is the user's own. Nothing here knows about endpoints or keys: botocore reads them
from the profile, so a lab CLI, the local runtime and a user's own boto3 script all agree.
"""

from __future__ import annotations

import os

# Generous connection pool (the local runtime calls from many threads) and AWS's standard retry mode.
POOL_CONNECTIONS = 64
MAX_ATTEMPTS = 8


def session(profile: str | None = None, region: str | None = None):
    """A boto3 session for ``profile`` (default ``$AWS_PROFILE``) in ``region`` (default the profile's)."""
    import boto3

    return boto3.session.Session(
        profile_name=profile or os.environ.get("AWS_PROFILE") or None, region_name=region or None
    )


def _config():
    from botocore.config import Config

    return Config(max_pool_connections=POOL_CONNECTIONS, retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"})


def client(service: str, profile: str | None = None, region: str | None = None, **kwargs):
    kwargs.setdefault("config", _config())
    return session(profile, region).client(service, **kwargs)


def resource(service: str, profile: str | None = None, region: str | None = None, **kwargs):
    kwargs.setdefault("config", _config())
    return session(profile, region).resource(service, **kwargs)


def outputs_profile(out: dict) -> str | None:
    """The profile a lab CLI uses for a deploy described by ``results/<owner>/<lab>/outputs.json``.

    Outputs' ``profile`` if recorded, else ``$AWS_PROFILE`` (None here: :func:`session` reads it); a deploy on the
    local target (whose outputs name the emulator's endpoint, for information) falls back to the local profile.
    """
    if out.get("profile") or os.environ.get("AWS_PROFILE"):
        return out.get("profile") or None
    if out.get("endpoint_url"):
        from kumolab.local.settings import profile_name

        return profile_name()
    return None


def endpoint_url(profile: str | None = None) -> str | None:
    """The endpoint the profile configures (None: AWS's own), for messages and outputs only."""
    return session(profile)._session.get_scoped_config().get("endpoint_url") or None
