"""The Bashoutter GUI in headless Chromium, served from the local S3 website endpoint, talking to the
local API stage: it lists haiku, posts one, likes it and shows the new count. Screenshot saved under
test-artifacts/."""

from __future__ import annotations

import json
import mimetypes
import uuid

import pytest
from support.runtime_fixtures import deploy_bashoutter

from kumolab.local.runtime.apigateway import ApiGatewayStage
from kumolab.local.runtime.aws import AwsConfig
from kumolab.local.runtime.httpserve import serve
from kumolab.local.runtime.lambda_invoke import LambdaRuntime
from kumolab.local.runtime.website import S3Website
from kumolab.paths import REPO_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO_ROOT / "test-artifacts"
WEB = REPO_ROOT / "files" / "web" / "bashoutter"


@pytest.fixture(scope="module")
def site(emulator):
    aws = AwsConfig.from_environment(region="ap-northeast-1")
    prefix = f"gui-{uuid.uuid4().hex[:6]}"
    stack = deploy_bashoutter(aws, prefix)
    runtime = LambdaRuntime(aws, max_workers=2)
    api_server = serve(ApiGatewayStage(aws, runtime, stack["api_id"], "prod"), 0)
    api_url = f"http://127.0.0.1:{api_server.server_address[1]}/prod"
    s3 = aws.client("s3")
    bucket = f"{prefix}-site"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "ap-northeast-1"})
    s3.put_bucket_website(
        Bucket=bucket,
        WebsiteConfiguration={"IndexDocument": {"Suffix": "index.html"}, "ErrorDocument": {"Key": "error.html"}},
    )
    s3.put_bucket_policy(
        Bucket=bucket,
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": "*",
                        "Action": "s3:GetObject",
                        "Resource": f"arn:aws:s3:::{bucket}/*",
                    }
                ],
            }
        ),
    )
    for path in WEB.iterdir():
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        s3.put_object(Bucket=bucket, Key=path.name, Body=path.read_bytes(), ContentType=ctype)
    s3.put_object(
        Bucket=bucket, Key="config.json", Body=json.dumps({"apiUrl": api_url}).encode(), ContentType="application/json"
    )
    web_server = serve(S3Website(aws, bucket), 0)
    yield f"http://127.0.0.1:{web_server.server_address[1]}/"
    web_server.shutdown()
    api_server.shutdown()
    runtime.shutdown()


def test_post_and_like_a_haiku_in_a_real_browser(site):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    poem = {"first": "古池や", "second": "蛙飛び込む", "third": f"水の音 {uuid.uuid4().hex[:4]}", "username": "芭蕉"}
    console_errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1000})
            page.on("console", lambda msg: msg.type == "error" and console_errors.append(msg.text))
            page.goto(site)
            expect(page.locator("#list-status")).to_have_text("No haiku yet — be the first.", timeout=15000)
            expect(page.locator("#api-url")).to_contain_text("/prod")
            for field, value in poem.items():
                page.fill(f"#{field}", value)
            page.click("#post-button")
            card = page.locator(".haiku", has_text=poem["third"])
            expect(card).to_have_count(1, timeout=15000)
            expect(card.locator(".verse")).to_contain_text("蛙飛び込む")
            expect(card.locator(".meta")).to_contain_text("芭蕉")
            expect(card.locator(".like .count")).to_have_text("0")
            card.locator(".like").click()
            expect(card.locator(".like .count")).to_have_text("1", timeout=10000)
            card.locator(".like").click()
            expect(card.locator(".like .count")).to_have_text("2", timeout=10000)
            page.click("#refresh-button")
            expect(page.locator(".haiku", has_text=poem["third"]).locator(".like .count")).to_have_text(
                "2", timeout=10000
            )
            expect(page.locator("#count")).to_have_text("(1)")
            page.screenshot(path=str(ARTIFACTS / "bashoutter_gui.png"), full_page=True)
        finally:
            browser.close()
    assert not console_errors, console_errors
