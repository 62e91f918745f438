"""Where the runtime reads deployed resources from: an AWS profile (by default the local emulator's)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import kumolab.aws
from kumolab.local import settings
from kumolab.local.runtime.role_credentials import RoleCredentials, session_name


@dataclass(frozen=True)
class AwsConfig:
    profile: str | None
    region: str

    @classmethod
    def from_environment(cls, profile: str | None = None, region: str | None = None) -> AwsConfig:
        """``profile``, else ``$AWS_PROFILE``, else the local profile that ``kumolab-emulator start`` writes."""
        return cls(
            profile=profile or os.environ.get("AWS_PROFILE") or settings.profile_name(),
            region=region or settings.region(),
        )

    @functools.cached_property
    def endpoint_url(self) -> str | None:
        """The endpoint the profile names (None: AWS itself); for messages and the runtime's info only."""
        return kumolab.aws.endpoint_url(self.profile)

    @property
    def is_emulator(self) -> bool:
        return self.endpoint_url is not None

    def client(self, service: str, **kwargs):
        return kumolab.aws.client(service, self.profile, self.region, **kwargs)

    @functools.cached_property
    def session(self):
        return kumolab.aws.session(self.profile, self.region)

    def function_environment(self) -> dict[str, str]:
        """What a local Lambda or ECS process needs to reach the same target: the region and the profile."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.profile:
            env.update(settings.profile_environment(self.profile))
        return env

    @functools.cached_property
    def role_credentials(self) -> RoleCredentials:
        return RoleCredentials(self.client("sts"))

    def role_environment(self, role_arn: str | None, name: str) -> tuple[dict[str, str], float | None]:
        """What a local function or task of role ``role_arn`` gets, and when its keys expire (None: never).

        On the emulator: the role's own keys (``sts:AssumeRole`` there, as AWS gives a function its role's),
        the region and the endpoint; no profile, so the emulator enforces the role's policies. On AWS (no
        endpoint) or without a role: :meth:`function_environment`."""
        return role_environment(self, role_arn, name)


def role_environment(target, role_arn: str | None, name: str) -> tuple[dict[str, str], float | None]:
    """:meth:`AwsConfig.role_environment` for any target with ``is_emulator``, ``endpoint_url``, ``region``,
    ``role_credentials`` and ``function_environment`` (the emulator's own :class:`EmulatorTarget` too)."""
    if not role_arn or not target.is_emulator or not target.endpoint_url:
        return target.function_environment(), None
    keys = target.role_credentials.keys(role_arn, session_name(name))
    env = {"AWS_REGION": target.region, "AWS_DEFAULT_REGION": target.region, "AWS_ENDPOINT_URL": target.endpoint_url}
    env.update(keys.environment())
    return env, keys.expires_at
