"""Removing a test's own VPC from the session's emulator: the emulator enforces the account's default quota of 5
VPCs per region (fidelity rule vpc-quota), so a module that leaves its VPC behind starves the modules after it."""

from __future__ import annotations

import time


def delete_vpc(ec2, vpc_id: str) -> None:
    """Terminate the VPC's instances, then delete its interfaces, security groups, subnets and the VPC itself."""
    in_vpc = [{"Name": "vpc-id", "Values": [vpc_id]}]
    instances = [
        i["InstanceId"]
        for r in ec2.describe_instances(Filters=in_vpc)["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    if instances:
        ec2.terminate_instances(InstanceIds=instances)
        ec2.get_waiter("instance_terminated").wait(InstanceIds=instances, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    for interface in ec2.describe_network_interfaces(Filters=in_vpc)["NetworkInterfaces"]:
        attachment = interface.get("Attachment") or {}
        if attachment.get("DeviceIndex") == 0:
            continue  # an instance's primary interface goes with the instance
        if attachment.get("AttachmentId") and interface["Status"] == "in-use":
            ec2.detach_network_interface(AttachmentId=attachment["AttachmentId"], Force=True)
            time.sleep(0.2)
        ec2.delete_network_interface(NetworkInterfaceId=interface["NetworkInterfaceId"])
    for group in ec2.describe_security_groups(Filters=in_vpc)["SecurityGroups"]:
        if group["GroupName"] != "default":
            ec2.delete_security_group(GroupId=group["GroupId"])
    for subnet in ec2.describe_subnets(Filters=in_vpc)["Subnets"]:
        ec2.delete_subnet(SubnetId=subnet["SubnetId"])
    ec2.delete_vpc(VpcId=vpc_id)
