"""Where the runtime reads deployed resources from: an AWS profile (by default the local emulator's)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import kumolab.aws
from kumolab.local import settings


@dataclass(frozen=True)
class AwsConfig:
    profile: str | None
    region: str

    @classmethod
    def from_environment(cls, profile: str | None = None, region: str | None = None) -> "AwsConfig":
        """``profile``, else ``$AWS_PROFILE``, else the local profile that ``kumolab-emulator start`` writes."""
        return cls(profile=profile or os.environ.get("AWS_PROFILE") or settings.profile_name(),
                   region=region or settings.region())

    @functools.cached_property
    def endpoint_url(self) -> str | None:
        """The endpoint the profile names (None: AWS itself); for messages and the runtime's info only."""
        return kumolab.aws.endpoint_url(self.profile)

    @property
    def is_emulator(self) -> bool:
        return self.endpoint_url is not None

    def client(self, service: str, **kwargs):
        return kumolab.aws.client(service, self.profile, self.region, **kwargs)

    def function_environment(self) -> dict[str, str]:
        """What a local Lambda or ECS process needs to reach the same target: the region and the profile."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.profile:
            env.update(settings.profile_environment(self.profile))
        return env
