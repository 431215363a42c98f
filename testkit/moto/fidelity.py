"""AWS IoT registry rules that moto does not enforce, added to its IoT backend so the emulator refuses what AWS refuses.

Each rule cites the AWS page it follows. The launcher calls install() once, before moto's server starts; the rules
are methods of moto's IoT backend, so they hold for every backend moto creates (per account and region, and again
after POST /moto-api/reset).

- UpdateCertificate: a REVOKED certificate keeps that status; PENDING_ACTIVATION and PENDING_TRANSFER cannot be set.
- CreateThing: a thing that exists with another configuration answers ResourceAlreadyExistsException; with the same
  configuration the call succeeds and returns the existing thing, unchanged.
- AttachThingPrincipal: thingPrincipalType is honoured: an EXCLUSIVE_THING attachment is the principal's only one.
  ListThingPrincipalsV2 and ListPrincipalThingsV2 report the attachment type and filter on it.
"""
from typing import Any

from moto.core.responses import ActionResult, EmptyResult
from moto.iot.exceptions import (
    CertificateStateException,
    InvalidRequestException,
    ResourceAlreadyExistsException,
    ResourceNotFoundException,
)
from moto.iot.models import IoTBackend
from moto.iot.responses import IoTResponse

EXCLUSIVE = "EXCLUSIVE_THING"
NON_EXCLUSIVE = "NON_EXCLUSIVE_THING"


# --- UpdateCertificate ---------------------------------------------------------------------------------------------
# API reference, UpdateCertificate (https://docs.aws.amazon.com/iot/latest/apireference/API_UpdateCertificate.html):
# "Setting the status to PENDING_TRANSFER or PENDING_ACTIVATION will result in an exception being thrown ... They
# are not intended for developer use." The page names no exception for it; of the operation's errors,
# InvalidRequestException ("The request is not valid", HTTP 400) is the one that does not depend on the
# certificate's state. The operation is idempotent.
# Developer guide, "Revoke a client certificate" (https://docs.aws.amazon.com/iot/latest/developerguide/revoke-ca-cert.html):
# "Once a certificate is revoked, it's status can't be changed. That is, the certificate status can't be changed to
# Active or any other status." The operation's error for that is CertificateStateException ("The certificate
# operation is not allowed", HTTP 406).
_INTERNAL_STATUSES = ("PENDING_TRANSFER", "PENDING_ACTIVATION")


def _update_certificate(moto_update_certificate):
    def update_certificate(self: IoTBackend, certificate_id: str, new_status: str) -> None:
        cert = self.describe_certificate(certificate_id)  # ResourceNotFoundException first, as AWS
        if new_status in _INTERNAL_STATUSES:
            raise InvalidRequestException(f"Invalid certificate status {new_status}: it is set by AWS IoT only.")
        if cert.status == "REVOKED" and new_status != "REVOKED":
            raise CertificateStateException(
                f"Certificate is REVOKED: its status cannot be changed to {new_status}.", certificate_id)
        moto_update_certificate(self, certificate_id, new_status)

    return update_certificate


# --- CreateThing ---------------------------------------------------------------------------------------------------
# API reference, CreateThing (https://docs.aws.amazon.com/iot/latest/apireference/API_CreateThing.html): "If this
# call is made multiple times using the same thing name and configuration, the call will succeed. If this call is
# made with the same thing name but different configuration a ResourceAlreadyExistsException is thrown." (HTTP 409).
# The configuration is what the request sets: thing type, attributes, billing group. moto replaces the thing instead
# (new thingId, version 1, shadows lost).
def _create_thing(moto_create_thing):
    def create_thing(self: IoTBackend, thing_name: str, thing_type_name: str,
                     attribute_payload: dict[str, Any] | None, billing_group_name: str | None = None):
        try:  # a lookup by ARN (the launcher's describe_thing), not a scan of every thing
            existing = self.describe_thing(thing_name)
        except ResourceNotFoundException:
            existing = None
        if existing is None:
            return moto_create_thing(self, thing_name, thing_type_name, attribute_payload, billing_group_name)
        attributes = (attribute_payload or {}).get("attributes") or {}
        same = (
            (existing.thing_type.thing_type_name if existing.thing_type else None) == (thing_type_name or None)
            and dict(existing.attributes or {}) == dict(attributes)
            and (existing.billing_group_name or None) == (billing_group_name or None)
        )
        if not same:
            raise ResourceAlreadyExistsException(
                f"Thing {thing_name} already exists in account with different attributes", existing.thing_id, existing.arn)
        return existing

    return create_thing


# --- AttachThingPrincipal ------------------------------------------------------------------------------------------
# API reference, AttachThingPrincipal (https://docs.aws.amazon.com/iot/latest/apireference/API_AttachThingPrincipal.html)
# and ThingPrincipalObject: "EXCLUSIVE_THING - Attaches the specified principal to the specified thing, exclusively.
# The thing will be the only thing that's attached to the principal. NON_EXCLUSIVE_THING - ... Multiple things can
# be attached to the principal." The value defaults to NON_EXCLUSIVE_THING. Developer guide, "Attach a principal to a
# thing" (https://docs.aws.amazon.com/iot/latest/developerguide/attach-thing-principal.html): with an exclusive
# attachment "this certificate cannot be associated with any other things". So: an exclusive attachment is refused
# while the principal has another thing, and any attachment to another thing is refused while the principal is
# attached exclusively. The operation's only client error for a refused request is InvalidRequestException (HTTP 400).
# Attaching the same principal to the same thing again succeeds (the attachment is idempotent) and records the type
# asked for.
def _attachment_types(backend: IoTBackend) -> dict[tuple[str, str], str]:
    types = backend.__dict__.get("_sphere_thing_principal_types")
    if types is None:
        types = backend.__dict__.setdefault("_sphere_thing_principal_types", {})
    return types


def attachment_type(backend: IoTBackend, principal_arn: str, thing_name: str) -> str:
    return _attachment_types(backend).get((principal_arn, thing_name), NON_EXCLUSIVE)


def _attach_thing_principal(moto_attach_thing_principal):
    def attach_thing_principal(self: IoTBackend, thing_name: str, principal_arn: str,
                               thing_principal_type: str | None = None) -> None:
        kind = thing_principal_type or NON_EXCLUSIVE
        if kind not in (EXCLUSIVE, NON_EXCLUSIVE):
            raise InvalidRequestException(f"Invalid thingPrincipalType {kind}.")
        self._get_principal(principal_arn)  # ResourceNotFoundException first, as moto and AWS
        self.describe_thing(thing_name)
        others = [t for t in self.list_principal_things(principal_arn) if t != thing_name]
        if others and kind == EXCLUSIVE:
            raise InvalidRequestException(
                f"Principal {principal_arn} cannot be attached to thing {thing_name} exclusively: "
                f"it is attached to {len(others)} other thing(s).")
        exclusive = [t for t in others if attachment_type(self, principal_arn, t) == EXCLUSIVE]
        if exclusive:
            raise InvalidRequestException(
                f"Principal {principal_arn} is attached exclusively to thing {exclusive[0]}: "
                f"it cannot be attached to thing {thing_name}.")
        moto_attach_thing_principal(self, thing_name, principal_arn)
        _attachment_types(self)[(principal_arn, thing_name)] = kind

    return attach_thing_principal


def _attach_thing_principal_response(self: IoTResponse):
    self.iot_backend.attach_thing_principal(
        thing_name=self._get_param("thingName"),
        principal_arn=self.headers.get("x-amzn-principal"),
        thing_principal_type=self._get_param("thingPrincipalType"),
    )
    return EmptyResult()


def _list_thing_principals_v2_response(self: IoTResponse):
    thing_name = self._get_param("thingName")
    wanted = self._get_param("thingPrincipalType")
    objects = []
    for p in self.iot_backend.list_thing_principals(thing_name=thing_name):
        kind = attachment_type(self.iot_backend, p, thing_name)
        if wanted in (None, kind):
            objects.append({"thingName": thing_name, "principal": p, "thingPrincipalType": kind})
    return ActionResult({"thingPrincipalObjects": objects})


def _list_principal_things_v2_response(self: IoTResponse):
    principal = self.headers.get("x-amzn-principal")
    wanted = self._get_param("thingPrincipalType")
    objects = []
    for t in self.iot_backend.list_principal_things(principal_arn=principal):
        kind = attachment_type(self.iot_backend, principal, t)
        if wanted in (None, kind):
            objects.append({"thingName": t, "thingPrincipalType": kind})
    return ActionResult({"principalThingObjects": objects})


def install() -> None:
    """Patch moto's IoT backend and responses; call once, before the server starts."""
    IoTBackend.update_certificate = _update_certificate(IoTBackend.update_certificate)
    IoTBackend.create_thing = _create_thing(IoTBackend.create_thing)
    IoTBackend.attach_thing_principal = _attach_thing_principal(IoTBackend.attach_thing_principal)
    IoTResponse.attach_thing_principal = _attach_thing_principal_response
    IoTResponse.list_thing_principals_v2 = _list_thing_principals_v2_response
    IoTResponse.list_principal_things_v2 = _list_principal_things_v2_response
