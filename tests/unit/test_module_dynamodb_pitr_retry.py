"""Point-in-time recovery right after CreateTable (real-AWS review M8), with a botocore Stubber.

``UpdateContinuousBackups`` on a table that has only just become ACTIVE can answer
``ContinuousBackupsUnavailableException: Backups are being enabled for the table``; the module retries it.
"""

from __future__ import annotations

import boto3
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper
from botocore.stub import Stubber
from library_loader import load_library_module

table_module = load_library_module("kumolab_dynamodb_table")

PITR_ON = {"TableName": "t", "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True}}
ENABLED = {
    "ContinuousBackupsDescription": {
        "ContinuousBackupsStatus": "ENABLED",
        "PointInTimeRecoveryDescription": {"PointInTimeRecoveryStatus": "ENABLED"},
    }
}


def stubbed_client():
    client = boto3.client("dynamodb", region_name="ap-northeast-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def test_m8_pitr_is_retried_while_backups_are_being_enabled():
    client, stub = stubbed_client()
    stub.add_client_error(
        "update_continuous_backups",
        service_error_code="ContinuousBackupsUnavailableException",
        service_message="Backups are being enabled for the table: t. Please retry later",
        http_status_code=400,
        expected_params=PITR_ON,
    )
    stub.add_response("update_continuous_backups", ENABLED, PITR_ON)
    with stub:
        table_module.set_pitr(RetryingBotoClientWrapper(client, table_module.RETRY), "t", True)
        stub.assert_no_pending_responses()


def test_m8_the_retry_vocabulary_names_the_error():
    """What the old module lacked: ContinuousBackupsUnavailableException was not retried, the first error failed the task."""  # noqa: E501
    client, stub = stubbed_client()
    stub.add_client_error(
        "update_continuous_backups",
        service_error_code="ContinuousBackupsUnavailableException",
        http_status_code=400,
        expected_params=PITR_ON,
    )
    stub.add_client_error(
        "update_continuous_backups",
        service_error_code="ContinuousBackupsUnavailableException",
        http_status_code=400,
        expected_params=PITR_ON,
    )
    stub.add_response("update_continuous_backups", ENABLED, PITR_ON)
    with stub:
        table_module.set_pitr(RetryingBotoClientWrapper(client, table_module.RETRY), "t", True)
    assert not stub._queue  # both errors were consumed by retries
