"""kumolab's local serverless runtime: what the emulator stores but cannot execute, run on loopback.

- :mod:`.lambda_invoke` runs deployed Lambda functions in local worker processes (warm pools).
- :mod:`.apigateway` serves a deployed REST API stage with Lambda proxy integrations.
- :mod:`.website` serves an S3 website bucket with index/error documents.
- :mod:`.ecs` runs an ECS service's containers as local worker processes.
- :mod:`.aws` says which AWS profile (by default the emulator's) the runtime reads deployed resources from.
- :mod:`.cli` is ``kumolab-runtime``; :mod:`.server` is the per-lab daemon it starts.

The services run in the background through :mod:`kumolab.local.process`. Nothing here imports the
emulator: the runtime reaches it through the AWS profile, like any other client.
"""
