"""certificates.k8s.io/v1 CertificateSigningRequests: how a node (or anyone) asks the cluster for a certificate.

Mirrors kube-apiserver's ``pkg/registry/certificates/certificates``
(strategy.go: the main, ``/status`` and ``/approval`` strategies) with
``pkg/apis/certificates/validation``:

- create: the requester's identity (username, uid, groups, extra) is
  written into the spec by the server, whatever the client sent; the
  status starts empty; ``spec.request`` must be a PEM ``CERTIFICATE
  REQUEST`` whose signature verifies, ``signerName`` and ``usages`` are
  required, ``expirationSeconds`` is at least 600.
- the main resource changes only metadata (spec and status are kept);
- ``/approval`` changes only ``status.conditions`` (Approved, Denied,
  Failed ...); an Approved or Denied condition cannot be removed, and a
  request cannot be both;
- ``/status`` changes the rest of the status (``certificate``, other
  conditions) but not the approval conditions; a certificate may be set
  only on an approved, not denied or failed request, and never changed.

Who may approve or sign for which signer is RBAC on the ``approve`` /
``sign`` verbs of ``signers`` upstream (CertificateApproval and
CertificateSigning admission); kubeling checks only the subresource
verbs (update on ``certificatesigningrequests/approval`` and ``/status``).
"""
from __future__ import annotations

import copy
import datetime
import re

from cryptography import x509

from apiserver import errors
from apiserver.authn import APISERVER_USER, UserInfo
from apiserver.errors import Cause
from apiserver.registry.rest import (STATUS_VERBS, ResourceInfo, Strategy, duplicate, forbidden_field,
                                     invalid_value, not_supported, required)
from apiserver.registry.store import Store, now_rfc3339
from kubeling.api import resources
from kubeling.api.certificates import decode_pem, parse_csr

GROUP = "certificates.k8s.io"
APPROVAL_CONDITIONS = ("Approved", "Denied")
# certificates.KeyUsage values (k8s.io/api/certificates/v1 types.go).
KEY_USAGES = ("signing", "digital signature", "content commitment", "key encipherment", "key agreement",
              "data encipherment", "cert sign", "crl sign", "encipher only", "decipher only", "any",
              "server auth", "client auth", "code signing", "email protection", "s/mime", "ipsec end system",
              "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc")
MIN_EXPIRATION_SECONDS = 600
_SIGNER_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+/[^/]+$")


def validate_spec(spec) -> list[Cause]:
    """Causes of an invalid ``spec`` (ValidateCertificateSigningRequestCreate's spec part)."""
    if not isinstance(spec, dict):
        return [required("spec")]
    out: list[Cause] = []
    raw = spec.get("request")
    if not raw:
        out.append(required("spec.request"))
    else:
        try:
            parse_csr(decode_pem(raw))
        except ValueError as e:
            out.append(invalid_value("spec.request", "<request>", str(e)))
    signer = spec.get("signerName")
    if not signer:
        out.append(required("spec.signerName"))
    elif not isinstance(signer, str) or not _SIGNER_RE.match(signer) or len(signer) > 571:
        out.append(invalid_value("spec.signerName", str(signer), "must be a fully qualified domain and path of "
                                 "the form 'example.com/signer-name'"))
    usages = spec.get("usages")
    if not usages:
        out.append(required("spec.usages"))
    elif not isinstance(usages, list):
        out.append(invalid_value("spec.usages", str(usages), "must be a list"))
    else:
        seen: set = set()
        for i, u in enumerate(usages):
            if u not in KEY_USAGES:
                out.append(not_supported(f"spec.usages[{i}]", u, list(KEY_USAGES)))
            elif u in seen:
                out.append(duplicate(f"spec.usages[{i}]", u))
            seen.add(u)
    exp = spec.get("expirationSeconds")
    if exp is not None and (not isinstance(exp, int) or isinstance(exp, bool) or exp < MIN_EXPIRATION_SECONDS):
        out.append(invalid_value("spec.expirationSeconds", exp, f"may not specify a duration less than "
                                 f"{MIN_EXPIRATION_SECONDS} seconds"))
    return out


def conditions(obj: dict) -> list[dict]:
    """``status.conditions`` of a CSR ([] when unset or malformed)."""
    conds = (obj.get("status") or {}).get("conditions") if isinstance(obj.get("status"), dict) else None
    return [c for c in conds if isinstance(c, dict)] if isinstance(conds, list) else []


def has_condition(obj: dict, ctype: str) -> bool:
    """A condition of ``ctype`` with status True is present (certificates.HasTrueCondition)."""
    return any(c.get("type") == ctype and c.get("status", "True") == "True" for c in conditions(obj))


def validate_status(obj: dict, old: dict | None) -> list[Cause]:
    """Causes of an invalid status (validateConditions + validateCertificate of the v1 API)."""
    out: list[Cause] = []
    status = obj.get("status")
    if status is None:
        return out
    if not isinstance(status, dict):
        return [invalid_value("status", str(status), "must be an object")]
    raw = status.get("conditions")
    if raw is not None and not isinstance(raw, list):
        return [invalid_value("status.conditions", str(raw), "must be a list")]
    seen: set = set()
    for i, c in enumerate(raw or []):
        p = f"status.conditions[{i}]"
        if not isinstance(c, dict):
            out.append(invalid_value(p, str(c), "must be an object"))
            continue
        ctype = c.get("type")
        if not ctype:
            out.append(required(f"{p}.type"))
            continue
        st = c.get("status", "")
        if ctype in ("Approved", "Denied", "Failed"):
            if ctype in seen:
                out.append(duplicate(f"{p}.type", ctype))
            if st != "True":
                out.append(not_supported(f"{p}.status", st, ["True"]))
        elif st not in ("True", "False", "Unknown"):
            out.append(not_supported(f"{p}.status", st, ["False", "True", "Unknown"]))
        seen.add(ctype)
    if "Approved" in seen and "Denied" in seen:
        out.append(invalid_value("status.conditions", "Approved",
                                 "Approved and Denied conditions are mutually exclusive"))
    cert = status.get("certificate")
    old_cert = ((old or {}).get("status") or {}).get("certificate")
    if cert:
        try:
            pem = decode_pem(cert)
            x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            out.append(invalid_value("status.certificate", "<certificate data>",
                                     "must contain at least one CERTIFICATE PEM block"))
        if old_cert and cert != old_cert:
            out.append(invalid_value("status.certificate", "<certificate data>",
                                     "updates may not modify existing certificate content"))
        if not old_cert and (not has_condition(obj, "Approved") or has_condition(obj, "Denied")
                             or has_condition(obj, "Failed")):
            out.append(forbidden_field("status.certificate", "certificate may only be set if the Approved "
                                       "condition is true and the Denied and Failed conditions are not"))
    elif old_cert:
        out.append(invalid_value("status.certificate", "<certificate data>",
                                 "updates may not remove existing certificate content"))
    return out


def _stamp(conds: list[dict], old: list[dict]) -> list[dict]:
    """Fill lastUpdateTime / lastTransitionTime of new or changed conditions (populateConditionTimestamps)."""
    now = now_rfc3339()
    before = {c.get("type"): c for c in old}
    for c in conds:
        c.setdefault("status", "True")
        prev = before.get(c.get("type"))
        if not c.get("lastUpdateTime"):
            c["lastUpdateTime"] = now
        if not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = prev["lastTransitionTime"] if prev and prev.get("status") == c["status"] \
                and prev.get("lastTransitionTime") else now
    return conds


class CertificateSigningRequestStrategy(Strategy):
    """CSRs: cluster-scoped, spec immutable, status through ``/status`` and ``/approval`` only."""

    info = ResourceInfo(resources.for_kind(f"{GROUP}/v1", "CertificateSigningRequest"), "certificatesigningrequests",
                        subresources={"status": ("CertificateSigningRequest", GROUP, "v1", STATUS_VERBS),
                                      "approval": ("CertificateSigningRequest", GROUP, "v1", STATUS_VERBS)})
    extra_fields = ("spec.signerName",)
    name_kind = "path"  # ValidateCertificateRequestName: kubelets' node-csr-<base64url digest> has capitals

    def validate(self, obj: dict) -> list[Cause]:
        """Spec causes (create) plus status causes."""
        return validate_spec(obj.get("spec")) + validate_status(obj, None)

    def prepare_for_update(self, new: dict, old: dict) -> None:
        """The main resource changes only metadata: spec and status stay as stored."""
        super().prepare_for_update(new, old)
        new["spec"] = copy.deepcopy(old.get("spec"))

    def validate_update(self, new: dict, old: dict) -> list[Cause]:
        """Status causes only (the spec was validated on create and cannot change)."""
        return validate_status(new, old)

    def prepare_for_status_update(self, new: dict, old: dict) -> dict:
        """``/status``: the new status but the stored Approved/Denied conditions (csrStatusStrategy)."""
        out = super().prepare_for_status_update(new, old)
        status = out.get("status") if isinstance(out.get("status"), dict) else {}
        kept = [c for c in conditions(old) if c.get("type") in APPROVAL_CONDITIONS]
        others = [c for c in status.get("conditions") or [] if isinstance(c, dict)
                  and c.get("type") not in APPROVAL_CONDITIONS]
        status["conditions"] = kept + _stamp(others, conditions(old))
        if not status["conditions"]:
            status.pop("conditions")
        out["status"] = status
        return out

    def prepare_for_approval_update(self, new: dict, old: dict) -> dict:
        """``/approval``: the stored object with only the new ``status.conditions`` (csrApprovalStrategy)."""
        out = copy.deepcopy(old)
        status = out.setdefault("status", {})
        new_status = new.get("status") if isinstance(new.get("status"), dict) else {}
        conds = new_status.get("conditions")
        if conds is None:
            status.pop("conditions", None)
        else:
            status["conditions"] = _stamp(copy.deepcopy(conds), conditions(old)) if isinstance(conds, list) else conds
        return out

    def validate_approval_update(self, new: dict, old: dict) -> list[Cause]:
        """Status causes plus: an Approved or Denied condition stays once set."""
        out = validate_status(new, old)
        for ctype in APPROVAL_CONDITIONS:
            if has_condition(old, ctype) and not has_condition(new, ctype):
                out.append(forbidden_field("status.conditions", f"updates may not remove a condition of type "
                                           f'"{ctype}"'))
        return out


def _rfc3339(t) -> str | None:
    if not isinstance(t, dict) or "seconds" not in t:
        return None
    when = datetime.datetime.fromtimestamp(t["seconds"], datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


async def read_body(request):
    """An update body: JSON / YAML, or the protobuf CSR that ``kubectl certificate approve|deny`` sends
    to ``/approval`` (decoded as far as an approval needs: name, resourceVersion, conditions)."""
    from apiserver.handlers import read_body as raw_body, read_json
    from apiserver import protobuf
    ct = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ct != protobuf.MEDIA_TYPE:
        return await read_json(request)
    obj = protobuf.decode(await raw_body(request), "CertificateSigningRequest")
    obj.pop("spec", None)
    for c in (obj.get("status") or {}).get("conditions") or []:
        for k in ("lastUpdateTime", "lastTransitionTime"):
            if k in c:
                c[k] = _rfc3339(c[k])
                if c[k] is None:
                    del c[k]
    return obj


class CertificateSigningRequestStore(Store):
    """The generic Store plus what CSRs need of the request: the requester's identity in the spec on
    create, the ``/approval`` subresource's update rules, protobuf update bodies (``read_body``)."""

    read_body = staticmethod(read_body)

    async def create(self, ns: str | None, body, *, dry_run: bool = False, user: UserInfo = APISERVER_USER) -> dict:
        """Create with ``spec.username/uid/groups/extra`` set from ``user`` (client values are ignored)."""
        obj = self._decode(body)
        spec = obj.get("spec")
        if isinstance(spec, dict):
            for k in ("username", "uid", "groups", "extra"):
                spec.pop(k, None)
            spec["username"] = user.name
            if user.uid:
                spec["uid"] = user.uid
            if user.groups:
                spec["groups"] = list(user.groups)
            if user.extra:
                spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        return await super().create(ns, obj, dry_run=dry_run, user=user)

    def _finish_update(self, new: dict, old: dict, *, subresource: str | None) -> dict:
        if subresource != "approval":
            return super()._finish_update(new, old, subresource=subresource)
        strategy: CertificateSigningRequestStrategy = self.strategy  # type: ignore[assignment]
        out = strategy.prepare_for_approval_update(new, old)
        out["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
        causes = strategy.validate_approval_update(out, old)
        if causes:
            raise errors.invalid(self.info.kind, old["metadata"].get("name", ""), causes, group=self.info.group)
        return out
