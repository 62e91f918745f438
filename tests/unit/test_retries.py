"""Throttling and eventual-consistency errors are retried, not fatal: errors injected with botocore event
hooks in front of the emulator, for clients built through module_utils/kumolab_aws.py and for the resource
catalogue module_utils/kumolab_resources.py (teardown and reaper)."""

from __future__ import annotations

import sys

import botocore.config
import botocore.exceptions
import pytest
from botocore.awsrequest import AWSResponse
from cost_safety_support import REGION, REPO, clients, load_library_module, session, start_emulator

audit = load_library_module("kumolab_audit")  # also makes ansible.module_utils.kumolab_aws importable
from ansible.module_utils import kumolab_aws  # noqa: E402
from ansible_collections.amazon.aws.plugins.module_utils import cloud  # noqa: E402
from ansible_collections.amazon.aws.plugins.module_utils.retries import RetryingBotoClientWrapper  # noqa: E402

sys.path.insert(0, str(REPO / "module_utils"))
import kumolab_resources as catalogue  # noqa: E402

EC2_ERROR = b"<Response><Errors><Error><Code>{code}</Code><Message>injected</Message></Error></Errors><RequestID>r</RequestID></Response>"  # noqa: E501
JSON_ERROR = b'{{"__type": "com.amazonaws.dynamodb.v20120810#{code}", "message": "injected"}}'


class _Raw:
    def __init__(self, body: bytes):
        self.body = body

    def stream(self, **_):
        yield self.body


class Injector:
    """A before-send hook that answers the first ``times`` calls with an AWS error instead of sending."""

    def __init__(self, code: str, times: int, json_protocol: bool = False, status: int = 400):
        self.code, self.left, self.status = code, times, status
        self.template = JSON_ERROR if json_protocol else EC2_ERROR
        self.injected = 0

    def __call__(self, request, **_):
        if self.left <= 0:
            return None  # let the real request go to the emulator
        self.left -= 1
        self.injected += 1
        body = self.template.replace(b"{code}", self.code.encode()).replace(b"{{", b"{").replace(b"}}", b"}")
        return AWSResponse(request.url, self.status, {"Content-Type": "application/x-amz-json-1.0"}, _Raw(body))


class FakeModule:
    """What kumolab_aws.client() needs from AnsibleAWSModule: .client(service, retry_decorator=...), built
    the way AnsibleAWSModule.client builds it (RetryingBotoClientWrapper around a boto3 client). botocore's own
    retries are off, so only kumolab's decorator can save the call."""

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.raw = {}

    def client(self, service, retry_decorator=None):
        raw = session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            config=botocore.config.Config(retries={"total_max_attempts": 1}),
        )
        self.raw[service] = raw
        return RetryingBotoClientWrapper(raw, retry_decorator)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = start_emulator(tmp_path_factory.mktemp("retries-emulator"))
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def no_sleep(monkeypatch):
    slept = []
    monkeypatch.setattr(cloud.time, "sleep", slept.append)
    return slept


@pytest.mark.parametrize("code", ["Throttling", "RequestLimitExceeded"])
def test_module_client_retries_ec2_throttling(emulator, no_sleep, code):
    module = FakeModule(emulator.endpoint)
    ec2 = kumolab_aws.client(module, "ec2")
    inject = Injector(code, times=3)
    module.raw["ec2"].meta.events.register("before-send.ec2.DescribeVpcs", inject)
    vpcs = ec2.describe_vpcs(aws_retry=True)["Vpcs"]
    assert vpcs and inject.injected == 3 and len(no_sleep) == 3  # three backoffs, then the real answer

    # The control: without the decorator the same error is fatal.
    inject.left = 1
    with pytest.raises(botocore.exceptions.ClientError, match=code):
        ec2.describe_vpcs()


def test_one_retry_vocabulary_that_modules_only_extend():
    """The codes are defined once, in the plain-boto3 catalogue; the Ansible modules' decorator is built from
    them, and a module adds its service's own codes instead of keeping a list of its own."""
    vocabulary = catalogue.THROTTLING_CODES | catalogue.IN_USE_CODES | catalogue.NOT_YET_VISIBLE_CODES
    assert kumolab_aws.EVENTUAL_CONSISTENCY_CODES == sorted(vocabulary)
    assert catalogue.RETRY_CODES == catalogue.THROTTLING_CODES | catalogue.IN_USE_CODES
    # Deleting: "not found" means already gone, so teardown and the reaper never wait on it.
    assert not catalogue.RETRY_CODES & catalogue.GONE_CODES
    for path in sorted((REPO / "library").glob("*.py")):
        text = path.read_text()
        assert "jittered_backoff" not in text and "catch_extra_error_codes" not in text, (
            f"{path.name} builds its own retry policy; use kumolab_aws.retry_decorator(extra_codes=...)"
        )


@pytest.mark.parametrize(
    "module_name, service, operation, code",
    [
        ("kumolab_dynamodb_table", "dynamodb", "DescribeTable", "LimitExceededException"),  # the module's own code
        ("kumolab_dynamodb_table", "dynamodb", "DescribeTable", "ResourceInUseException"),  # the shared vocabulary
        ("kumolab_apigateway_stage", "apigateway", "GetRestApis", "ConflictException"),
        ("kumolab_apigateway_stage", "apigateway", "GetRestApis", "TooManyRequestsException"),
    ],
)
def test_a_modules_extended_retry_covers_its_own_codes_and_the_shared_ones(
    emulator, no_sleep, module_name, service, operation, code
):
    module = FakeModule(emulator.endpoint)
    wrapped = module.client(service, retry_decorator=load_library_module(module_name).RETRY)
    inject = Injector(code, times=2, json_protocol=True)
    module.raw[service].meta.events.register(f"before-send.{service}.{operation}", inject)
    if service == "dynamodb":
        with pytest.raises(botocore.exceptions.ClientError, match="ResourceNotFoundException"):
            wrapped.describe_table(TableName="no-such-table", aws_retry=True)
    else:
        wrapped.get_rest_apis(aws_retry=True)
    assert inject.injected == 2 and len(no_sleep) == 2


def test_audit_check_succeeds_through_dynamodb_throttling(emulator, no_sleep):
    aws = clients(emulator.endpoint)
    aws("dynamodb").create_table(
        TableName="retry-table",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        Tags=[{"Key": "Project", "Value": "kumolab"}, {"Key": "Lab", "Value": "retry"}],
    )
    module = FakeModule(emulator.endpoint)
    dynamodb = kumolab_aws.client(module, "dynamodb")
    inject = Injector("ThrottlingException", times=2, json_protocol=True)
    module.raw["dynamodb"].meta.events.register("before-send.dynamodb.DescribeContinuousBackups", inject)
    findings = audit.audit_dynamodb(dynamodb, "kumolab", "retry")
    assert inject.injected == 2
    assert [(f["resource"], f["status"]) for f in findings] == [("retry-table", "FAIL")]  # real answer: PITR off
    aws("dynamodb").delete_table(TableName="retry-table")


@pytest.fixture
def catalogue_sleeps(monkeypatch):
    """The catalogue's backoff delays, recorded instead of waited."""
    slept = []
    monkeypatch.setattr(catalogue, "SLEEP", slept.append)
    return slept


def bare_clients(sess, endpoint):
    """Clients with botocore's own retries off, so only the catalogue's retries can save a call."""
    made = {}

    def aws(service):
        if service not in made:
            made[service] = sess.client(
                service,
                endpoint_url=endpoint,
                region_name=REGION,
                config=botocore.config.Config(retries={"total_max_attempts": 1}),
            )
        return made[service]

    return aws


def test_catalogue_survives_throttling_and_dependency_violations(emulator, catalogue_sleeps):
    aws = clients(emulator.endpoint)
    tags = [{"Key": "Project", "Value": "kumolab"}, {"Key": "Lab", "Value": "retrylab"}]
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.44.0.0/23", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}])["Vpc"][
        "VpcId"
    ]
    subnet = ec2.create_subnet(
        VpcId=vpc, CidrBlock="10.44.0.0/24", TagSpecifications=[{"ResourceType": "subnet", "Tags": tags}]
    )["Subnet"]["SubnetId"]

    sess = session()
    throttled_listing = Injector("RequestLimitExceeded", times=2)
    throttled_delete = Injector("Throttling", times=3)
    busy_subnet = Injector("DependencyViolation", times=2)
    sess.events.register("before-send.ec2.DescribeInstances", throttled_listing)
    sess.events.register("before-send.ec2.DeleteVpc", throttled_delete)
    sess.events.register("before-send.ec2.DeleteSubnet", busy_subnet)
    flaky = bare_clients(sess, emulator.endpoint)

    found = catalogue.find(flaky, {"Project": "kumolab", "Lab": "retrylab"})
    assert [(r.kind, r.id) for r in found] == [("ec2_subnet", subnet), ("ec2_vpc", vpc)]
    outcomes = catalogue.delete_all(flaky, found)
    assert [(o.resource.kind, o.resource.id, o.status) for o in outcomes] == [
        ("ec2_subnet", subnet, "deleted"),
        ("ec2_vpc", vpc, "deleted"),
    ]
    assert (throttled_listing.injected, throttled_delete.injected, busy_subnet.injected) == (2, 3, 2)
    assert len(catalogue_sleeps) == 7  # one jittered backoff per injected error, none more
    assert all(0 <= delay <= catalogue.MAX_DELAY for delay in catalogue_sleeps)
    assert not ec2.describe_vpcs(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Vpcs"]

    # The control: without the catalogue's retry the same error is fatal.
    flaky("ec2").meta.events.register("before-send.ec2.DescribeVpcs", Injector("RequestLimitExceeded", times=1))
    with pytest.raises(botocore.exceptions.ClientError, match="RequestLimitExceeded"):
        flaky("ec2").describe_vpcs()


def test_catalogue_gives_up_with_a_clear_report_when_the_error_persists(emulator, catalogue_sleeps, monkeypatch):
    monkeypatch.setattr(catalogue, "RETRIES", 2)
    tags = [{"Key": "Project", "Value": "kumolab"}, {"Key": "Lab", "Value": "stuck"}]
    vpc = clients(emulator.endpoint)("ec2").create_vpc(
        CidrBlock="10.45.0.0/23", TagSpecifications=[{"ResourceType": "vpc", "Tags": tags}]
    )["Vpc"]["VpcId"]
    sess = session()
    sess.events.register("before-send.ec2.DeleteVpc", Injector("DependencyViolation", times=100))
    flaky = bare_clients(sess, emulator.endpoint)
    found = catalogue.find(flaky, {"Project": "kumolab", "Lab": "stuck"})
    outcomes = catalogue.delete_all(flaky, found)
    assert [(o.resource.id, o.status) for o in outcomes] == [(vpc, "failed")]
    assert "DependencyViolation after 3 attempt(s)" in outcomes[0].message() and vpc in outcomes[0].message()
    assert len(catalogue_sleeps) == 2
    # Teardown's delete() raises the same error instead of carrying on.
    with pytest.raises(botocore.exceptions.ClientError, match="DependencyViolation"):
        catalogue.delete(flaky, found)
    clients(emulator.endpoint)("ec2").delete_vpc(VpcId=vpc)
