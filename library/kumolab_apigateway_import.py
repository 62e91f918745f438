#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_apigateway_import: import an OpenAPI document into a REST API and deploy it, when it changed.

Why this module exists: ``community.aws.api_gateway`` calls ``put_rest_api`` and ``create_deployment`` only when
it creates the API (``if api_id is None:``), so with an existing API it changes nothing but tags
(ansible-collections/community.aws#1938, "can not update ... with a swagger file"; #2052, "doesn't create a new
deployment if API Gateway already exists"; both open). It also creates the empty API *with* its tags before the
import, so a spec-hash tag claims a deployment even when the import then failed, and a re-run skips the import
for ever (real-AWS review M1). This module imports with ``put_rest_api(mode=overwrite, failOnWarnings=true)``
and deploys with ``create_deployment(stageName=...)`` whenever the document's SHA-256 differs from the API's
hash tag, and writes that tag only after the deployment succeeded, so a failed import is retried next run.

It also adds an authorizer to the document (O(authorizer)): one OpenAPI file then serves a lab with and without
sign-in (Bashoutter's C(bashoutter_auth)), and neither amazon.aws nor community.aws has a module for REST API
authorizers (C(CreateAuthorizer)). The importer creates the authorizer from C(components.securitySchemes) and
attaches it to the operations whose C(security) names it.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_apigateway_import
short_description: Import an OpenAPI 3 document into an API Gateway REST API and deploy it to a stage when it changed
version_added: "0.1.0"
description:
  - Finds the REST API named O(name) that carries every tag in O(lookup_tags), or creates it (without the hash tag).
  - When the SHA-256 of O(spec) differs from the API's O(hash_tag) tag, or the stage has no deployment, imports
    O(spec) with C(PutRestApi) (mode C(overwrite), C(failOnWarnings) true) and deploys it with C(CreateDeployment)
    to O(stage). Only then does it write the hash tag, so a failed import or deployment is retried on the next run.
  - An import that API Gateway rejects fails the task with API Gateway's own message (C(Errors found during
    import ...)).
  - Tags in O(tags) are added or updated on every run; tags not listed are left alone.
  - Deleting the API is the teardown's job (C(kumolab_teardown) deletes by tag).
options:
  name:
    description: Name of the REST API.
    type: str
    required: true
  spec:
    description: The OpenAPI 3 document (JSON or YAML text), already rendered.
    type: str
    required: true
  stage:
    description: The stage to deploy to (created by the first deployment).
    type: str
    required: true
  lookup_tags:
    description: Tags that, with O(name), identify the API deployed before (e.g. the lab's C(Lab) tag).
    type: dict
    default: {}
  tags:
    description: Tags of the API (the module adds O(hash_tag)).
    type: dict
    default: {}
  hash_tag:
    description: Tag key that records the SHA-256 of the document last deployed.
    type: str
    default: "kumolab:spec-sha256"
  endpoint_type:
    description: Endpoint type of a new API.
    type: str
    default: REGIONAL
    choices: [REGIONAL, EDGE, PRIVATE]
  deploy_description:
    description: Description of the deployment; default names the document's hash.
    type: str
  authorizer:
    description:
      - An authorizer to add to the document before it is imported (its hash is of the document with it), as an
        OpenAPI security scheme with C(x-amazon-apigateway-authorizer), named in the C(security) of O(authorizer.operations).
      - Omitted or empty, the document is imported as it is.
    type: dict
    suboptions:
      name:
        description: Name of the security scheme (and of the authorizer).
        type: str
        required: true
      type:
        description:
          - Authorizer type. C(cognito_user_pools) verifies a user pool's tokens itself; C(token) is a Lambda
            authorizer that API Gateway invokes with the header's value (any other issuer, e.g. an OIDC one).
        type: str
        default: cognito_user_pools
        choices: [cognito_user_pools, token]
      provider_arns:
        description: The user pool ARNs whose tokens the authorizer accepts (required with C(cognito_user_pools)).
        type: list
        elements: str
      function_arn:
        description: The ARN of the authorizer function (required with C(token)); it needs a Lambda permission for
          C(apigateway.amazonaws.com) with the source ARN C(arn:aws:execute-api:<region>:<account>:<api>/authorizers/*).
        type: str
      result_ttl:
        description: Seconds API Gateway caches a C(token) authorizer's result by token (0 = every request).
        type: int
        default: 300
      header:
        description: The request header that holds the token (the identity source).
        type: str
        default: Authorization
      operations:
        description: The operations that need a token, as C(METHOD /path) (e.g. C(POST /haiku)); each must be in the document.
        type: list
        elements: str
        required: true
      scopes:
        description: OAuth scopes a method requires (then access tokens, not ID tokens, are accepted).
        type: list
        elements: str
        default: []
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Import the API and deploy it to prod when the spec changed
  kumolab_apigateway_import:
    name: kumolab-mylab
    spec: "{{ lookup('ansible.builtin.template', 'mylab.openapi.yaml') }}"
    stage: prod
    lookup_tags: {Lab: mylab}
    tags: {Project: kumolab, Lab: mylab}
  register: api

- name: The same, with POST and DELETE needing a Cognito user pool token
  kumolab_apigateway_import:
    name: kumolab-mylab
    spec: "{{ lookup('ansible.builtin.template', 'mylab.openapi.yaml') }}"
    stage: prod
    lookup_tags: {Lab: mylab}
    authorizer:
      name: cognito
      provider_arns: ["{{ pool.user_pool_arn }}"]
      operations: ["POST /items", "DELETE /items/{id}"]

- name: The same with a Lambda TOKEN authorizer (an OIDC issuer's tokens)
  kumolab_apigateway_import:
    name: kumolab-mylab
    spec: "{{ lookup('ansible.builtin.template', 'mylab.openapi.yaml') }}"
    stage: prod
    lookup_tags: {Lab: mylab}
    authorizer:
      name: oidc
      type: token
      function_arn: "{{ authorizer_function.arn }}"
      result_ttl: 300
      operations: ["POST /items", "DELETE /items/{id}"]
"""

RETURN = r"""
api_id:
  description: ID of the REST API (empty in check mode when it would be created).
  returned: always
  type: str
  sample: a1b2c3d4e5
spec_sha256:
  description: SHA-256 of O(spec), as recorded in O(hash_tag) after a deployment.
  returned: always
  type: str
deployment_id:
  description: ID of the deployment this run created; absent when nothing was deployed.
  returned: when deployed
  type: str
actions:
  description: What was (or, in check mode, would be) done.
  returned: always
  type: list
  elements: str
  sample: ["create REST API", "import the OpenAPI document (overwrite)", "deploy to stage prod", "tag kumolab:spec-sha256"]
"""

import hashlib
import json

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import fail, retry_decorator
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

# The project's retry vocabulary, plus API Gateway's answer to a change while another is under way.
RETRY = retry_decorator(extra_codes=["ConflictException"], max_delay=15)


def with_authorizer(module, spec, authorizer):
    """``spec`` (JSON or YAML text) with ``authorizer`` added as a security scheme on its operations, as JSON text;
    ``spec`` unchanged when there is no authorizer."""
    if not authorizer:
        return spec
    import yaml

    doc = yaml.safe_load(spec)
    schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
    if authorizer["type"] == "token":
        region = authorizer["function_arn"].split(":")[3]
        config = {
            "type": "token",
            "authorizerUri": f"arn:aws:apigateway:{region}:lambda:path/2015-03-31/functions/"
            f"{authorizer['function_arn']}/invocations",
            "authorizerResultTtlInSeconds": authorizer["result_ttl"],
            "identitySource": f"method.request.header.{authorizer['header']}",
        }
        authtype = "custom"
    else:
        config = {"type": authorizer["type"], "providerARNs": authorizer["provider_arns"]}
        authtype = authorizer["type"]
    schemes[authorizer["name"]] = {
        "type": "apiKey",
        "name": authorizer["header"],
        "in": "header",
        "x-amazon-apigateway-authtype": authtype,
        "x-amazon-apigateway-authorizer": config,
    }
    for operation in authorizer["operations"]:
        method, _, path = operation.partition(" ")
        op = (doc.get("paths") or {}).get(path.strip(), {}).get(method.strip().lower())
        if not isinstance(op, dict):
            module.fail_json(
                msg=f"authorizer.operations names {operation!r}, which is not an operation of the document"
            )
        op["security"] = [{authorizer["name"]: list(authorizer["scopes"] or [])}]
    return json.dumps(doc, sort_keys=True)


def find_api(client, name, lookup_tags):
    for page in client.get_paginator("get_rest_apis").paginate():
        for api in page.get("items", []):
            tags = api.get("tags") or {}
            if api.get("name") == name and all(tags.get(k) == str(v) for k, v in lookup_tags.items()):
                return api
    return None


def stage_deployment(client, api_id, stage):
    try:
        return client.get_stage(aws_retry=True, restApiId=api_id, stageName=stage).get("deploymentId")
    except client.exceptions.NotFoundException:
        return None


def api_arn(module, api_id):
    return f"arn:aws:apigateway:{module.region}::/restapis/{api_id}"


def ensure_tags(module, client, api, want):
    """Add or update ``want`` on the API; returns whether anything changed."""
    have = api.get("tags") or {}
    missing = {k: str(v) for k, v in want.items() if have.get(k) != str(v)}
    if missing and not module.check_mode:
        client.tag_resource(aws_retry=True, resourceArn=api_arn(module, api["id"]), tags=missing)
    return bool(missing)


def deploy(module, client, api_id, digest):
    """Import the document (overwrite) and deploy it; returns the deployment id."""
    p = module.params
    try:
        client.put_rest_api(
            aws_retry=True, restApiId=api_id, mode="overwrite", failOnWarnings=True, body=p["spec"].encode()
        )
    except client.exceptions.BadRequestException as exc:
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        module.fail_json(
            msg=f"API Gateway rejected the OpenAPI import of {p['name']} ({api_id}): {message}. Fix the "
            f"document and re-run: nothing was deployed, and the {p['hash_tag']} tag is written only "
            f"after a deployment, so the next run imports it again.",
            api_id=api_id,
            spec_sha256=digest,
        )
    # PutRestApi in overwrite mode takes the name from info.title; keep the API's own name.
    if client.get_rest_api(aws_retry=True, restApiId=api_id).get("name") != p["name"]:
        client.update_rest_api(
            aws_retry=True, restApiId=api_id, patchOperations=[{"op": "replace", "path": "/name", "value": p["name"]}]
        )
    description = p["deploy_description"] or f"spec sha256 {digest}"
    return client.create_deployment(aws_retry=True, restApiId=api_id, stageName=p["stage"], description=description)[
        "id"
    ]


def ensure_deployed(module, client):
    p = module.params
    p["spec"] = with_authorizer(module, p["spec"], p["authorizer"])
    digest = hashlib.sha256(p["spec"].encode()).hexdigest()
    tags = {k: str(v) for k, v in (p["tags"] or {}).items()}
    api = find_api(client, p["name"], p["lookup_tags"] or {})
    actions = []
    if api is None:
        actions.append("create REST API")
        if module.check_mode:
            module.exit_json(
                changed=True,
                api_id="",
                spec_sha256=digest,
                actions=actions
                + ["import the OpenAPI document (overwrite)", f"deploy to stage {p['stage']}", f"tag {p['hash_tag']}"],
            )
        # Without the hash tag: it is written only once the document is deployed.
        api = client.create_rest_api(
            aws_retry=True,
            name=p["name"],
            endpointConfiguration={"types": [p["endpoint_type"]]},
            tags=tags,
            description=p["name"],
        )
    api_id = api["id"]
    recorded = (api.get("tags") or {}).get(p["hash_tag"])
    deployed = stage_deployment(client, api_id, p["stage"])
    result = {"api_id": api_id, "spec_sha256": digest}
    if recorded != digest or deployed is None:
        actions += ["import the OpenAPI document (overwrite)", f"deploy to stage {p['stage']}", f"tag {p['hash_tag']}"]
        if module.check_mode:
            module.exit_json(changed=True, actions=actions, **result)
        result["deployment_id"] = deploy(module, client, api_id, digest)
        tags[p["hash_tag"]] = digest
    if ensure_tags(module, client, api, tags) and "tag " + p["hash_tag"] not in actions:
        actions.append("update tags")
    module.exit_json(changed=bool(actions), actions=actions, **result)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            spec=dict(type="str", required=True),
            stage=dict(type="str", required=True),
            lookup_tags=dict(type="dict", default={}),
            tags=dict(type="dict", default={}),
            hash_tag=dict(type="str", default="kumolab:spec-sha256"),
            endpoint_type=dict(type="str", default="REGIONAL", choices=["REGIONAL", "EDGE", "PRIVATE"]),
            deploy_description=dict(type="str"),
            authorizer=dict(
                type="dict",
                options=dict(
                    name=dict(type="str", required=True),
                    type=dict(type="str", default="cognito_user_pools", choices=["cognito_user_pools", "token"]),
                    provider_arns=dict(type="list", elements="str"),
                    function_arn=dict(type="str"),
                    result_ttl=dict(type="int", default=300),
                    header=dict(type="str", default="Authorization"),
                    operations=dict(type="list", elements="str", required=True),
                    scopes=dict(type="list", elements="str", default=[]),
                ),
                required_if=[("type", "cognito_user_pools", ["provider_arns"]), ("type", "token", ["function_arn"])],
            ),
        ),
        supports_check_mode=True,
    )
    client = module.client("apigateway", retry_decorator=RETRY)
    try:
        ensure_deployed(module, client)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"import and deploy REST API {module.params['name']}")


if __name__ == "__main__":
    main()
