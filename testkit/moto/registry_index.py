"""Indexes over moto's AWS IoT registry, so a registry read costs what AWS's does, not a scan of the fleet.

moto keeps a certificate's things and policies as dicts keyed by (principal ARN, thing name) and (principal ARN,
policy name), and answers ListPrincipalThings, ListThingPrincipals, ListAttachedPolicies, ListTargetsForPolicy and
ListCertificatesByCA by scanning every attachment or certificate of the account: O(fleet) per call. Under a storm
every activation and every retirement makes such calls, so the emulator's cost per device grew with the fleet
(issue 22: 10 000 devices at linear cost). Here the same dicts keep an index by each half of their key (and the
certificates one by CA), maintained on every insertion and removal, and those operations read the index: the same
answers, in the same order (insertion order, as the scans gave), in O(answer).

install() replaces the dicts when a backend is created (also after POST /moto-api/reset) and the list operations.
"""
import threading
from collections import OrderedDict

from moto.iot.exceptions import ResourceNotFoundException
from moto.iot.models import IoTBackend


class PairIndexedDict(OrderedDict):
    """An OrderedDict keyed by pairs (a, b), indexed by a (first) and by b (second), each index in insertion order."""

    def __init__(self, *args, **kwargs):
        self._index_lock = threading.RLock()
        self._first = {}
        self._second = {}
        super().__init__(*args, **kwargs)

    def _add(self, key):
        self._first.setdefault(key[0], {})[key] = None
        self._second.setdefault(key[1], {})[key] = None

    def _drop(self, key):
        for index, part in ((self._first, key[0]), (self._second, key[1])):
            keys = index.get(part)
            if keys is not None:
                keys.pop(key, None)
                if not keys:
                    index.pop(part, None)

    def __setitem__(self, key, value):
        with self._index_lock:
            super().__setitem__(key, value)
            self._add(key)

    def __delitem__(self, key):
        with self._index_lock:
            super().__delitem__(key)
            self._drop(key)

    _missing = object()

    def pop(self, key, default=_missing):
        with self._index_lock:
            if key in self:
                value = super().pop(key)
                self._drop(key)
                return value
            if default is PairIndexedDict._missing:
                raise KeyError(key)
            return default

    def popitem(self, last=True):
        with self._index_lock:
            key, value = super().popitem(last)
            self._drop(key)
            return key, value

    def clear(self):
        with self._index_lock:
            super().clear()
            self._first.clear()
            self._second.clear()

    def update(self, *args, **kwargs):
        for k, v in OrderedDict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, key, default=None):
        with self._index_lock:
            if key not in self:
                self[key] = default
            return self[key]

    def by_first(self, part):
        """The keys whose first half is part, in insertion order."""
        with self._index_lock:
            return list(self._first.get(part, ()))

    def by_second(self, part):
        """The keys whose second half is part, in insertion order."""
        with self._index_lock:
            return list(self._second.get(part, ()))


class CertificateDict(OrderedDict):
    """moto's certificates by id, indexed by the CA that issued them (ca_certificate_id, fixed at registration)."""

    def __init__(self, *args, **kwargs):
        self._index_lock = threading.RLock()
        self._by_ca = {}
        super().__init__(*args, **kwargs)

    def _ca(self, value):
        return getattr(value, "ca_certificate_id", None)

    def __setitem__(self, key, value):
        with self._index_lock:
            old = super().get(key)
            if old is not None:
                self._by_ca.get(self._ca(old), {}).pop(key, None)
            super().__setitem__(key, value)
            self._by_ca.setdefault(self._ca(value), {})[key] = None

    def __delitem__(self, key):
        with self._index_lock:
            value = super().__getitem__(key)
            super().__delitem__(key)
            self._by_ca.get(self._ca(value), {}).pop(key, None)

    _missing = object()

    def pop(self, key, default=_missing):
        with self._index_lock:
            if key in self:
                value = super().pop(key)
                self._by_ca.get(self._ca(value), {}).pop(key, None)
                return value
            if default is CertificateDict._missing:
                raise KeyError(key)
            return default

    def popitem(self, last=True):
        with self._index_lock:
            key, value = super().popitem(last)
            self._by_ca.get(self._ca(value), {}).pop(key, None)
            return key, value

    def clear(self):
        with self._index_lock:
            super().clear()
            self._by_ca.clear()

    def update(self, *args, **kwargs):
        for k, v in OrderedDict(*args, **kwargs).items():
            self[k] = v

    def of_ca(self, ca_certificate_id):
        """The certificates the CA issued, in registration order."""
        with self._index_lock:
            ids = list(self._by_ca.get(ca_certificate_id, ()))
            return [super(CertificateDict, self).__getitem__(i) for i in ids]


def install():
    """Index the registry of every IoT backend moto creates; call once, before the server starts."""
    moto_init = IoTBackend.__init__

    def __init__(self, *args, **kwargs):
        moto_init(self, *args, **kwargs)
        self.certificates = CertificateDict(self.certificates)
        self.principal_policies = PairIndexedDict(self.principal_policies)
        self.principal_things = PairIndexedDict(self.principal_things)

    def list_certificates_by_ca(self, ca_certificate_id):
        return self.certificates.of_ca(ca_certificate_id)

    def list_attached_policies(self, target):
        return [self.principal_policies[k][1] for k in self.principal_policies.by_first(target) if k in self.principal_policies]

    def list_principal_policies(self, principal_arn):
        return list_attached_policies(self, principal_arn)

    def list_policy_principals(self, policy_name):
        return [k[0] for k in self.principal_policies.by_second(policy_name)]

    def list_principal_things(self, principal_arn):
        return [k[1] for k in self.principal_things.by_first(principal_arn)]

    def list_thing_principals(self, thing_name):
        try:
            self.describe_thing(thing_name)
        except ResourceNotFoundException:  # moto's answer for a thing that does not exist
            raise ResourceNotFoundException(
                f"Failed to list principals for thing {thing_name} because the thing does not exist in your account")
        return [k[0] for k in self.principal_things.by_second(thing_name)]

    IoTBackend.__init__ = __init__
    IoTBackend.list_certificates_by_ca = list_certificates_by_ca
    IoTBackend.list_attached_policies = list_attached_policies
    IoTBackend.list_principal_policies = list_principal_policies
    IoTBackend.list_policy_principals = list_policy_principals
    IoTBackend.list_principal_things = list_principal_things
    IoTBackend.list_thing_principals = list_thing_principals
