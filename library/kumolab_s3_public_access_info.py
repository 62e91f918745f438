#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""kumolab_s3_public_access_info: the account's S3 Block Public Access, read before a public website bucket.

Why this module exists: Lab 5 publishes its GUI from a bucket whose policy allows public reads. With
account-level Block Public Access on (common in AWS Organizations, Control Tower and university accounts)
``PutBucketPolicy`` fails with a bare AccessDenied, and with RestrictPublicBuckets on the policy is accepted
but nobody can read the site (review M9). ``amazon.aws.s3_bucket`` reads and sets only the bucket's own
block; no amazon.aws or community.aws module reads the account's (``s3control:GetPublicAccessBlock``).

S3 Control puts the account id before the endpoint's host (``<account>.s3-control.<region>.amazonaws.com``,
and ``<account>.<host>`` for a custom endpoint). A label before an IP address cannot resolve, so with an
endpoint on an IP address (the embedded emulator, a VPC endpoint's address) the request goes to the address
itself; the account is in the ``x-amz-account-id`` header either way.
"""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: kumolab_s3_public_access_info
short_description: Read the account-level S3 Block Public Access settings
version_added: "0.2.0"
description:
  - Reads the account's S3 Block Public Access configuration (C(s3control:GetPublicAccessBlock)) and says
    whether it lets a bucket policy make objects public.
  - An account without a configuration has every setting off.
  - Reads only; changes nothing, so it runs in check mode too.
  - A caller who may not read it (no C(s3:GetAccountPublicAccessBlock)) gets a warning, RV(allows_public_policy)
    true and RV(configured) null, since the setting is unknown; the bucket policy itself will then say.
options:
  account_id:
    description: The account to read. Default the caller's (C(sts:GetCallerIdentity)).
    type: str
author:
  - kumolab
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

EXAMPLES = r"""
- name: Read the account's Block Public Access
  kumolab_s3_public_access_info:
  register: account_bpa

- name: Stop when a public website cannot work here
  ansible.builtin.assert:
    that: account_bpa.allows_public_policy
    fail_msg: "{{ account_bpa.blocked_by | join(', ') }} is on for account {{ account_bpa.account_id }}"
"""

RETURN = r"""
account_id:
  description: The account that was read.
  returned: always
  type: str
  sample: "123456789012"
configuration:
  description: The account's settings (every one false when the account has none).
  returned: always
  type: dict
  sample: {"BlockPublicAcls": true, "IgnorePublicAcls": true, "BlockPublicPolicy": false, "RestrictPublicBuckets": false}
configured:
  description: Whether the account has a configuration at all (null when the caller may not read it).
  returned: always
  type: bool
allows_public_policy:
  description: Whether a bucket policy can grant public reads (BlockPublicPolicy and RestrictPublicBuckets off).
  returned: always
  type: bool
blocked_by:
  description: The settings that stop a public bucket policy from working.
  returned: always
  type: list
  elements: str
  sample: ["BlockPublicPolicy"]
"""

import ipaddress
from urllib.parse import urlsplit, urlunsplit

try:
    import botocore
except ImportError:
    pass  # handled by AnsibleAWSModule

from ansible.module_utils.kumolab_aws import RETRY, error_code, fail
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

SETTINGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
# BlockPublicPolicy refuses the policy; RestrictPublicBuckets accepts it and then refuses every anonymous read.
BLOCKING = ("BlockPublicPolicy", "RestrictPublicBuckets")


def _no_account_label_before_an_address(request, **_kwargs):
    parts = urlsplit(request.url)
    label, _, rest = (parts.hostname or "").partition(".")
    try:
        ipaddress.ip_address(rest)
    except ValueError:
        return
    if label.isdigit():
        request.url = urlunsplit(parts._replace(netloc=parts.netloc.replace(f"{label}.", "", 1)))


def main():
    module = AnsibleAWSModule(argument_spec=dict(account_id=dict(type="str")), supports_check_mode=True)
    account_id = module.params["account_id"]
    try:
        if not account_id:
            account_id = module.client("sts", retry_decorator=RETRY).get_caller_identity(aws_retry=True)["Account"]
        s3control = module.client("s3control", retry_decorator=RETRY)
        s3control.meta.events.register("before-sign.s3-control.*", _no_account_label_before_an_address)
        try:
            found = s3control.get_public_access_block(aws_retry=True, AccountId=account_id)
            configuration = found["PublicAccessBlockConfiguration"]
            configured = True
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "NoSuchPublicAccessBlockConfiguration":
                raise
            configuration, configured = {}, False
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) not in ("AccessDenied", "AccessDeniedException"):
            fail(module, exc, f"read the S3 Block Public Access settings of account {account_id or '(caller)'}")
        module.warn(
            f"Could not read account {account_id}'s S3 Block Public Access (s3:GetAccountPublicAccessBlock is "
            "not allowed): if the account blocks public policies, the website bucket's policy will fail with "
            "AccessDenied. See docs/aws-permissions.md."
        )
        configuration, configured = None, None
    except botocore.exceptions.BotoCoreError as exc:
        fail(module, exc, f"read the S3 Block Public Access settings of account {account_id or '(caller)'}")
    settings = {name: bool((configuration or {}).get(name, False)) for name in SETTINGS}
    blocked_by = [name for name in BLOCKING if settings[name]]
    module.exit_json(
        changed=False,
        account_id=account_id,
        configuration=settings,
        configured=configured,
        allows_public_policy=not blocked_by,
        blocked_by=blocked_by,
    )


if __name__ == "__main__":
    main()
