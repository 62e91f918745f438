#!/usr/bin/python
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Post a Slack-compatible message to a webhook (deploy, teardown, reaper, auto-stop notifications).

Why a custom module: community.general.slack needs a Slack token or a hooks.slack.com URL shape and
community.general is not a kumolab dependency; ansible.builtin.uri would do the POST but cannot make the
URL a secret in every failure path (its error results echo the URL) and has no "check mode = no post".
This module keeps the URL out of every result and message, honours check mode, and retries 5xx/429.
"""

DOCUMENTATION = r"""
---
module: kumolab_notify
short_description: Post a Slack-compatible JSON message to a webhook
description:
  - "POSTs a JSON object with a C(text) field to O(webhook_url). Works with Slack incoming webhooks and
    anything that accepts the same payload (Mattermost, Discord's C(/slack) endpoint, Teams workflows...)."
  - With an empty O(webhook_url) nothing is sent and the task reports C(changed=false) (notifications are optional).
  - In check mode nothing is sent; the result says what would have been posted.
  - The URL is a secret; it never appears in the result or in error messages.
  - Retries on HTTP 429 and 5xx with backoff.
options:
  webhook_url:
    description: The webhook URL. Empty means "notifications off".
    type: str
    default: ""
  text:
    description: Message text (Slack mrkdwn).
    type: str
    required: true
  title:
    description: Optional first line in bold.
    type: str
  fields:
    description: Optional key/value details appended as a bullet list (lab, region, counts...).
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for the webhook.
    type: int
    default: 10
  retries:
    description: Extra attempts on HTTP 429/5xx or a connection error.
    type: int
    default: 3
  fail_on_error:
    description: Fail the task when the post fails. Default false, so a broken webhook never stops a teardown.
    type: bool
    default: false
author:
  - kumolab
"""

EXAMPLES = r"""
- name: Tell the team a lab is up
  kumolab_notify:
    webhook_url: "{{ lab_notify_webhook_url | default('') }}"
    title: "kumolab: mylab lab deployed"
    text: "g4dn.xlarge in ap-northeast-1, expires {{ lab_tags.ExpiresAt }}"
    fields:
      owner: "{{ kumolab_owner }}"
      ssh: "{{ lab_ssh_command }}"
"""

RETURN = r"""
sent:
  description: Whether the message was posted (false in check mode, with no URL, or after a failure).
  returned: always
  type: bool
status:
  description: HTTP status of the last attempt.
  returned: when a request was made
  type: int
  sample: 200
payload:
  description: The JSON body that was (or in check mode would have been) posted.
  returned: always
  type: dict
  sample: {"text": "*kumolab: mylab lab deployed*\ng4dn.xlarge in ap-northeast-1"}
error:
  description: Why posting failed (the URL is never included).
  returned: when the post failed and O(fail_on_error=false)
  type: str
"""

import json
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six.moves.urllib.error import HTTPError, URLError
from ansible.module_utils.urls import open_url


def build_payload(text, title=None, fields=None):
    lines = [f"*{title}*"] if title else []
    lines.append(text)
    for key, value in (fields or {}).items():
        lines.append(f"• {key}: {value}")
    return {"text": "\n".join(lines)}


def post(url, payload, timeout, retries, sleep=time.sleep):
    """(status, error) after up to 1 + retries attempts; error is None on success."""
    body = json.dumps(payload).encode()
    status, error = None, None
    for attempt in range(retries + 1):
        try:
            response = open_url(
                url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
                timeout=timeout,
                validate_certs=True,
            )
            return response.getcode(), None
        except HTTPError as exc:
            status, error = exc.code, f"webhook answered HTTP {exc.code}"
            if exc.code != 429 and exc.code < 500:
                break
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            status, error = None, f"could not reach the webhook: {type(reason).__name__}"
        if attempt < retries:
            sleep(min(8, 0.5 * 2**attempt))
    return status, error


def main():
    module = AnsibleModule(
        argument_spec=dict(
            webhook_url=dict(type="str", default="", no_log=True),
            text=dict(type="str", required=True),
            title=dict(type="str"),
            fields=dict(type="dict", default={}),
            timeout=dict(type="int", default=10),
            retries=dict(type="int", default=3),
            fail_on_error=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    params = module.params
    payload = build_payload(params["text"], params["title"], params["fields"])
    if not params["webhook_url"]:
        module.exit_json(changed=False, sent=False, payload=payload, msg="no webhook_url: notifications are off")
    if not params["webhook_url"].startswith(("https://", "http://")):
        module.fail_json(
            msg="webhook_url must start with https:// (or http:// for a local test server)", sent=False, payload=payload
        )
    if module.check_mode:
        module.exit_json(changed=True, sent=False, payload=payload, msg="check mode: not posted")
    status, error = post(params["webhook_url"], payload, params["timeout"], params["retries"])
    if error:
        if params["fail_on_error"]:
            module.fail_json(msg=f"Notification failed: {error}", sent=False, status=status, payload=payload)
        module.warn(f"Notification not sent: {error}")
        module.exit_json(changed=False, sent=False, status=status, payload=payload, error=error)
    module.exit_json(changed=True, sent=True, status=status, payload=payload)


if __name__ == "__main__":
    main()
