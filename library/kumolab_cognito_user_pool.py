#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_cognito_user_pool: an Amazon Cognito user pool with one app client for a web page's sign-in.

Why this module exists: no module of amazon.aws or community.aws (10.x) manages Cognito user pools or their app
clients (``CreateUserPool``, ``CreateUserPoolClient``); only identity pools have one elsewhere. Bashoutter's
sign-in (issue 15) needs a pool, a public app client (no secret: a browser cannot keep one) with the
authorization code flow with PKCE, whose callback URL is the lab's website, and optionally the hosted UI's
domain. The module finds the pool by name and its lookup tags, creates what is missing, brings the client's
settings to what is asked (``UpdateUserPoolClient``), adds or updates tags, and returns the ids the API's
authorizer and the web page need: the pool's ARN, the client id, the issuer and the JWKS URL.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_cognito_user_pool
short_description: Create, update or delete an Amazon Cognito user pool and its web app client
version_added: "0.1.0"
description:
  - Ensures the user pool O(name) (found by name and O(lookup_tags)) with one app client O(client_name), a public
    client (no secret) for the authorization code grant with PKCE, with O(callback_urls) and O(logout_urls), the
    OAuth scopes O(oauth_scopes) and the explicit auth flows O(explicit_auth_flows).
  - With O(domain), the pool's hosted UI domain (C(https://<domain>.auth.<region>.amazoncognito.com)).
  - Tags in O(tags) are added or updated; tags not listed are left alone.
  - O(state=absent) deletes the domain and the pool (its clients and users go with it).
options:
  name:
    description: Name of the user pool.
    type: str
    required: true
  state:
    description: Whether the pool should exist.
    type: str
    default: present
    choices: [present, absent]
  client_name:
    description: Name of the app client; default O(name) followed by C(-web).
    type: str
  callback_urls:
    description:
      - Where the hosted UI may send the browser back with a code (the website's URL). Cognito takes only HTTPS
        URLs here (and C(http://localhost)); without any, the client has no OAuth flow (a page's own sign-in form
        with O(explicit_auth_flows) still works).
    type: list
    elements: str
    default: []
  logout_urls:
    description: Where the hosted UI may send the browser after signing out.
    type: list
    elements: str
    default: []
  oauth_scopes:
    description: OAuth scopes the client may ask for.
    type: list
    elements: str
    default: [openid, email, profile]
  explicit_auth_flows:
    description: The client's auth flows besides the hosted UI's (C(ALLOW_USER_PASSWORD_AUTH) for a page's own form).
    type: list
    elements: str
    default: [ALLOW_USER_SRP_AUTH, ALLOW_REFRESH_TOKEN_AUTH]
  domain:
    description: Prefix of the hosted UI domain; none when omitted.
    type: str
  lookup_tags:
    description: Tags that, with O(name), identify the pool created before (e.g. the lab's C(Lab) tag).
    type: dict
    default: {}
  tags:
    description: Tags of the pool.
    type: dict
    default: {}
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: A user pool whose app client signs users in to the lab's website
  kumolab_cognito_user_pool:
    name: kumolab-mylab
    callback_urls: ["{{ website_url }}"]
    logout_urls: ["{{ website_url }}"]
    explicit_auth_flows: [ALLOW_USER_SRP_AUTH, ALLOW_USER_PASSWORD_AUTH, ALLOW_REFRESH_TOKEN_AUTH]
    lookup_tags: {Lab: mylab}
    tags: {Project: kumolab, Lab: mylab}
  register: pool

- name: Remove it
  kumolab_cognito_user_pool:
    name: kumolab-mylab
    lookup_tags: {Lab: mylab}
    state: absent
"""

RETURN = r"""
user_pool_id:
  description: Id of the pool (empty in check mode when it would be created; with O(state=absent), the pool deleted, empty when there was none).
  returned: always
  type: str
  sample: ap-northeast-1_AbCdEf123
user_pool_arn:
  description: ARN of the pool (what an API Gateway Cognito authorizer names in providerARNs).
  returned: when state is present
  type: str
client_id:
  description: Id of the app client (the audience of its ID tokens).
  returned: when state is present
  type: str
issuer:
  description: The tokens' C(iss), C(https://cognito-idp.<region>.amazonaws.com/<pool id>).
  returned: when state is present
  type: str
jwks_url:
  description: Where the pool's signing keys are served (on an emulator endpoint, under that endpoint).
  returned: when state is present
  type: str
endpoint_url:
  description: The Cognito endpoint the GUI calls for InitiateAuth (the emulator's on the embedded default).
  returned: when state is present
  type: str
hosted_ui_url:
  description: Base URL of the hosted UI (empty without O(domain)).
  returned: when state is present
  type: str
actions:
  description: What was (or, in check mode, would be) done.
  returned: always
  type: list
  elements: str
  sample: ["create user pool", "create app client kumolab-mylab-web"]
"""

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import fail, retry_decorator
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

RETRY = retry_decorator(extra_codes=["TooManyRequestsException", "ConcurrentModificationException"])


def find_pool(client, name, lookup_tags):
    """The pool's DescribeUserPool, or None."""
    for page in client.get_paginator("list_user_pools").paginate(MaxResults=60):
        for pool in page.get("UserPools", []):
            if pool.get("Name") != name:
                continue
            described = client.describe_user_pool(aws_retry=True, UserPoolId=pool["Id"])["UserPool"]
            tags = described.get("UserPoolTags") or {}
            if all(tags.get(k) == str(v) for k, v in lookup_tags.items()):
                return described
    return None


def client_settings(p):
    """UpdateUserPoolClient's settings for the web client, as asked."""
    settings = {
        "ClientName": p["client_name"] or f"{p['name']}-web",
        "ExplicitAuthFlows": list(p["explicit_auth_flows"]),
        "PreventUserExistenceErrors": "ENABLED",
        "SupportedIdentityProviders": ["COGNITO"],
        "AllowedOAuthFlowsUserPoolClient": bool(p["callback_urls"]),
    }
    if p["callback_urls"]:  # Cognito refuses the OAuth flows without a callback URL
        settings.update(
            CallbackURLs=list(p["callback_urls"]),
            LogoutURLs=list(p["logout_urls"]),
            AllowedOAuthFlows=["code"],
            AllowedOAuthScopes=list(p["oauth_scopes"]),
        )
    return settings


def differs(have, want):
    for key, value in want.items():
        current = have.get(key)
        if isinstance(value, list):
            if sorted(current or []) != sorted(value):
                return True
        elif current != value:
            return True
    return False


def ensure_client(module, client, pool_id):
    """(changed, actions, client id) of the web app client."""
    want = client_settings(module.params)
    found = None
    for page in client.get_paginator("list_user_pool_clients").paginate(UserPoolId=pool_id, MaxResults=60):
        found = next((c for c in page.get("UserPoolClients", []) if c["ClientName"] == want["ClientName"]), found)
    if found is None:
        if module.check_mode:
            return True, [f"create app client {want['ClientName']}"], ""
        created = client.create_user_pool_client(aws_retry=True, UserPoolId=pool_id, GenerateSecret=False, **want)
        return True, [f"create app client {want['ClientName']}"], created["UserPoolClient"]["ClientId"]
    have = client.describe_user_pool_client(aws_retry=True, UserPoolId=pool_id, ClientId=found["ClientId"])
    if not differs(have["UserPoolClient"], want):
        return False, [], found["ClientId"]
    if not module.check_mode:
        client.update_user_pool_client(aws_retry=True, UserPoolId=pool_id, ClientId=found["ClientId"], **want)
    return True, [f"update app client {want['ClientName']}"], found["ClientId"]


def ensure_domain(module, client, pool):
    """(changed, actions) of the hosted UI domain."""
    want = module.params["domain"]
    if not want or pool.get("Domain") == want:
        return False, []
    if not module.check_mode:
        if pool.get("Domain"):
            client.delete_user_pool_domain(aws_retry=True, Domain=pool["Domain"], UserPoolId=pool["Id"])
        client.create_user_pool_domain(aws_retry=True, Domain=want, UserPoolId=pool["Id"])
    return True, [f"set hosted UI domain {want}"]


def ensure_tags(module, client, pool, want):
    have = pool.get("UserPoolTags") or {}
    missing = {k: str(v) for k, v in want.items() if have.get(k) != str(v)}
    if missing and not module.check_mode:
        client.tag_resource(aws_retry=True, ResourceArn=pool["Arn"], Tags=missing)
    return (True, ["update tags"]) if missing else (False, [])


def outputs(module, client, pool, client_id):
    region = module.region
    issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool['Id']}"
    # Where this client reaches Cognito: https://cognito-idp.<region>.amazonaws.com on AWS (the issuer's host),
    # the emulator's endpoint when the profile names one.
    base = client.meta.endpoint_url.rstrip("/")
    domain = module.params["domain"]
    return {
        "user_pool_id": pool["Id"],
        "user_pool_arn": pool["Arn"],
        "client_id": client_id,
        "issuer": issuer,
        "jwks_url": f"{base}/{pool['Id']}/.well-known/jwks.json",
        "endpoint_url": base,
        "hosted_ui_url": f"https://{domain}.auth.{region}.amazoncognito.com" if domain else "",
    }


def ensure_present(module, client):
    p = module.params
    tags = {k: str(v) for k, v in (p["tags"] or {}).items()}
    pool = find_pool(client, p["name"], p["lookup_tags"] or {})
    actions = []
    if pool is None:
        actions.append("create user pool")
        if module.check_mode:
            module.exit_json(
                changed=True,
                user_pool_id="",
                actions=actions + [f"create app client {client_settings(p)['ClientName']}"],
            )
        created = client.create_user_pool(
            aws_retry=True,
            PoolName=p["name"],
            UserPoolTags=tags,
            AutoVerifiedAttributes=["email"],
            UsernameConfiguration={"CaseSensitive": False},
            AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
        )["UserPool"]
        pool = client.describe_user_pool(aws_retry=True, UserPoolId=created["Id"])["UserPool"]
    changed = bool(actions)
    for step in (
        lambda: ensure_tags(module, client, pool, tags),
        lambda: ensure_domain(module, client, pool),
    ):
        did, what = step()
        changed, actions = changed or did, actions + what
    did, what, client_id = ensure_client(module, client, pool["Id"])
    module.exit_json(changed=changed or did, actions=actions + what, **outputs(module, client, pool, client_id))


def ensure_absent(module, client):
    p = module.params
    pool = find_pool(client, p["name"], p["lookup_tags"] or {})
    if pool is None:
        module.exit_json(changed=False, user_pool_id="", actions=[])
    actions = ["delete user pool"]
    if pool.get("Domain"):
        actions.insert(0, f"delete hosted UI domain {pool['Domain']}")
    if not module.check_mode:
        if pool.get("Domain"):
            client.delete_user_pool_domain(aws_retry=True, Domain=pool["Domain"], UserPoolId=pool["Id"])
        client.delete_user_pool(aws_retry=True, UserPoolId=pool["Id"])
    module.exit_json(changed=True, user_pool_id=pool["Id"], actions=actions)


def main():
    module = AnsibleAWSModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent"]),
            client_name=dict(type="str"),
            callback_urls=dict(type="list", elements="str", default=[]),
            logout_urls=dict(type="list", elements="str", default=[]),
            oauth_scopes=dict(type="list", elements="str", default=["openid", "email", "profile"]),
            explicit_auth_flows=dict(
                type="list", elements="str", default=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
            ),
            domain=dict(type="str"),
            lookup_tags=dict(type="dict", default={}),
            tags=dict(type="dict", default={}),
        ),
        supports_check_mode=True,
    )
    client = module.client("cognito-idp", retry_decorator=RETRY)
    try:
        if module.params["state"] == "absent":
            ensure_absent(module, client)
        ensure_present(module, client)
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
        fail(module, exc, f"ensure Cognito user pool {module.params['name']}")


if __name__ == "__main__":
    main()
