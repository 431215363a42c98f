"""Account-wide AWS answers moto gets wrong or lacks, for `make preflight` (cmd/preflight) and its tests.

Each answer takes its shape from botocore's service model (the same model the SDKs are generated from). The launcher
calls install() once, before moto's server starts; the patches are methods of moto's classes, so they hold for every
backend moto creates (per account and region, and again after POST /moto-api/reset).

- GetRegistrationCode: AWS IoT has one registration code per account and Region, the same on every call (the
  proof-of-possession certificate of a CA carries it as its CN; iot model: RegistrationCode is 64 hexadecimal
  characters). moto returns a new random UUID on every call, so no verification certificate could ever match it.
  Here the code is derived from the account and the Region: stable, 64 hex characters, different per Region.
- (GetV2LoggingOptions / SetV2LoggingOptions, also account-wide, are answered by indexing.py.)
- CloudFormation outputs of a stack created or updated through a change set (CreateChangeSet + ExecuteChangeSet,
  the way the CDK CLI deploys, `cdk bootstrap` included): AWS reports the outputs of the template the change set
  applied; moto applies the resources but keeps the outputs of the stack's previous template (none for a new stack),
  so the bootstrap stack `make bootstrap` creates had no BootstrapVersion output.
- Service Quotas for the service code iotcore: moto serves only vpc, and has no ListServiceQuotas at all.
  GetServiceQuota and ListServiceQuotas answer here with the AWS IoT control-plane rates the emulator itself
  enforces (quotas.py: DEFAULT_QUOTAS with IOT_QUOTAS and IOT_QUOTA_SCALE applied), each named "<API> API TPS" as
  Service Quotas names them. The quota codes are the emulator's own (AWS's codes are opaque identifiers; clients
  should find a quota by its name); an unknown code answers NoSuchResourceException, as AWS does.
"""
import hashlib
import json
import os

from moto.cloudformation.models import ChangeSet
from moto.core.exceptions import JsonRESTError
from moto.iot.models import IoTBackend
from moto.servicequotas.models import ServiceQuotasBackend
from moto.servicequotas.responses import ServiceQuotasResponse

import quotas

IOT_SERVICE_CODE = "iotcore"
IOT_SERVICE_NAME = "AWS IoT Core"


# --- GetRegistrationCode -------------------------------------------------------------------------------------------
def _get_registration_code(self: IoTBackend) -> str:
    return hashlib.sha256(f"aws-iot-registration-code/{self.account_id}/{self.region_name}".encode()).hexdigest()


# --- CloudFormation change sets -----------------------------------------------------------------------------------
def _apply_change_set(moto_apply):
    def apply(self: ChangeSet) -> None:
        moto_apply(self)
        stack = self.stack
        stack.template = self.template  # moto's ExecuteChangeSet sets it too, after apply
        stack._parse_template()
        stack.output_map = stack._create_output_map()

    return apply


# --- Service Quotas (iotcore) --------------------------------------------------------------------------------------
class NoSuchResourceException(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("NoSuchResourceException", message)


def quota_code(api: str) -> str:
    """The emulator's quota code of an API's rate: "L-" and 8 upper-case hex digits, like AWS's."""
    return "L-" + hashlib.sha256(f"iotcore/{api}".encode()).hexdigest()[:8].upper()


def _iot_quotas(backend: ServiceQuotasBackend) -> list[dict]:
    limits = quotas.limits_from_env(os.environ)
    out = []
    for api in sorted(limits):
        code = quota_code(api)
        out.append({
            "ServiceCode": IOT_SERVICE_CODE,
            "ServiceName": IOT_SERVICE_NAME,
            "QuotaArn": f"arn:aws:servicequotas:{backend.region_name}:{backend.account_id}:{IOT_SERVICE_CODE}/{code}",
            "QuotaCode": code,
            "QuotaName": f"{api} API TPS",
            "Value": float(limits[api]),
            "Unit": "None",
            "Adjustable": True,
            "GlobalQuota": False,
            "QuotaAppliedAtLevel": "ACCOUNT",
        })
    return out


def _get_service_quota(moto_get_service_quota):
    def get_service_quota(self: ServiceQuotasBackend, service_code: str, quota_code: str):
        if service_code != IOT_SERVICE_CODE:
            return moto_get_service_quota(self, service_code, quota_code)
        for q in _iot_quotas(self):
            if q["QuotaCode"] == quota_code:
                return q
        raise NoSuchResourceException(f"The request failed because the specified quota {quota_code} does not exist.")

    return get_service_quota


def _list_service_quotas(self: ServiceQuotasResponse) -> str:
    params = json.loads(self.body or "{}")
    service_code = str(params.get("ServiceCode"))
    if service_code != IOT_SERVICE_CODE:
        raise NoSuchResourceException(f"The request failed because the specified service {service_code} does not exist.")
    found = _iot_quotas(self.backend)
    if params.get("QuotaCode"):
        found = [q for q in found if q["QuotaCode"] == params["QuotaCode"]]
    start = int(params.get("NextToken") or 0)
    size = int(params.get("MaxResults") or 100)
    result = {"Quotas": found[start:start + size]}
    if start + size < len(found):
        result["NextToken"] = str(start + size)
    return json.dumps(result)


def install() -> None:
    """Adds the account-wide answers to moto's IoT, CloudFormation and Service Quotas."""
    IoTBackend.get_registration_code = _get_registration_code
    ChangeSet.apply = _apply_change_set(ChangeSet.apply)
    ServiceQuotasBackend.get_service_quota = _get_service_quota(ServiceQuotasBackend.get_service_quota)
    ServiceQuotasResponse.list_service_quotas = _list_service_quotas
