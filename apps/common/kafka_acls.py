"""The ACLs LogiFlow's principals need on a cluster with the authorizer on, and their idempotent creation.

Only the relay may write the event topics; consumers read them and commit their own groups; monitoring only
describes. What no binding allows, the broker refuses (`allow.everyone.if.no.acl.found=false`).
"""

from __future__ import annotations

import time

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from apps.common.kafka import Principal

READ, WRITE, DESCRIBE = AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE
# What each principal may do on every event topic, and on every consumer group.
TOPIC_OPERATIONS: dict[Principal, tuple[AclOperation, ...]] = {
    # Read back too: the relay checks that the broker still holds what it acknowledged (assign only, no group).
    "relay": (WRITE, READ, DESCRIBE),
    "consumer": (READ, DESCRIBE),
    "monitor": (DESCRIBE,),
}
GROUP_OPERATIONS: dict[Principal, tuple[AclOperation, ...]] = {
    "consumer": (READ, DESCRIBE),  # join, fetch and commit its offsets
    "monitor": (DESCRIBE,),  # read the committed offsets (lag) without joining
}


def acl_plan(*, topics: list[str], groups: list[str], usernames: dict[Principal, str]) -> list[AclBinding]:
    """Every binding LogiFlow needs: literal names only, so a principal gets nothing on a topic or group that
    merely shares a prefix with one of ours. A kind missing from `usernames` gets nothing."""
    bindings = []
    for kind, username in usernames.items():
        principal = f"User:{username}"
        bindings += [_allow(ResourceType.TOPIC, topic, principal, operation)
                     for topic in topics for operation in TOPIC_OPERATIONS.get(kind, ())]
        bindings += [_allow(ResourceType.GROUP, group, principal, operation)
                     for group in groups for operation in GROUP_OPERATIONS.get(kind, ())]
    return bindings


def _allow(resource: ResourceType, name: str, principal: str, operation: AclOperation) -> AclBinding:
    return AclBinding(resource, name, ResourcePatternType.LITERAL, principal, "*", operation, AclPermissionType.ALLOW)


def ensure_acls(admin: AdminClient, bindings: list[AclBinding], *, timeout: float = 30.0) -> dict[str, int]:
    """Create the bindings that do not exist yet and return once the broker enforces all of them (a created ACL
    reaches the broker's authorizer through the metadata log, a moment after the controller accepted it).
    Returns how many were 'created' and how many 'existed'."""
    existing = _bindings(admin, timeout=timeout)
    missing = [binding for binding in bindings if _key(binding) not in existing]
    for future in (admin.create_acls(missing, request_timeout=timeout).values() if missing else ()):
        future.result()
    deadline = time.monotonic() + timeout
    while not {_key(binding) for binding in bindings} <= _bindings(admin, timeout=timeout):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the broker did not enforce the new ACLs within {timeout}s")
        time.sleep(0.1)
    return {"created": len(missing), "existed": len(bindings) - len(missing)}


def _bindings(admin: AdminClient, *, timeout: float) -> set[tuple[object, ...]]:
    # None matches any name, principal and host (the stubs type them as str only).
    every = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,  # type: ignore[arg-type]
                             AclOperation.ANY, AclPermissionType.ANY)
    return {_key(binding) for binding in admin.describe_acls(every, request_timeout=timeout).result()}


def _key(binding: AclBinding) -> tuple[object, ...]:
    return (binding.restype, binding.name, binding.resource_pattern_type, binding.principal, binding.host,
            binding.operation, binding.permission_type)
