"""Where the runtime reads deployed resources from: the local emulator, or any endpoint you name."""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_REGION = "ap-northeast-1"


@dataclass(frozen=True)
class AwsConfig:
    endpoint_url: str | None
    region: str

    @classmethod
    def from_environment(cls, endpoint_url: str | None = None, region: str | None = None) -> "AwsConfig":
        if endpoint_url is None:
            from kumolab.local.emulator import Emulator

            endpoint_url = Emulator.from_environment().endpoint
        region = region or os.environ.get("KUMOLAB_AWS_REGION") or DEFAULT_REGION
        return cls(endpoint_url=endpoint_url or None, region=region)

    @property
    def is_emulator(self) -> bool:
        return self.endpoint_url is not None

    def client(self, service: str, **kwargs):
        import boto3
        from botocore.config import Config

        creds = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"} if self.is_emulator else {}
        config = Config(max_pool_connections=64, retries={"max_attempts": 8, "mode": "standard"})
        return boto3.session.Session().client(
            service, region_name=self.region, endpoint_url=self.endpoint_url, config=config, **creds, **kwargs
        )

    def function_environment(self) -> dict[str, str]:
        """What a local Lambda process needs to reach the same endpoint (AWS gives it the role's keys)."""
        env = {"AWS_REGION": self.region, "AWS_DEFAULT_REGION": self.region}
        if self.is_emulator:
            env.update(AWS_ENDPOINT_URL=self.endpoint_url, AWS_ACCESS_KEY_ID="testing",
                       AWS_SECRET_ACCESS_KEY="testing", AWS_SESSION_TOKEN="testing")
        return env
