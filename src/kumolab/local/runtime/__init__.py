"""kumolab's local serverless runtime: what the emulator stores but cannot execute, run on loopback.

- :mod:`.lambda_invoke` runs deployed Lambda functions in local worker processes (warm pools).
- :mod:`.apigateway` serves a deployed REST API stage with Lambda proxy integrations.
- :mod:`.website` serves an S3 website bucket with index/error documents.
- :mod:`.ecs` runs an ECS service's containers as local worker processes.
- :mod:`.process` starts/stops such services in the background (pid file, log, health check).
- :mod:`.cli` is ``kumolab-runtime``.
"""
