"""Certificate signing requests without processes: the apiserver's CSR validation and approval rules, the
csrapproving controller's decision table (upstream sarapprove_test.go's cases), the csrsigning signer, kubeadm's
public key pins (checked against openssl) and bootstrap token Secrets."""
from __future__ import annotations

import base64
import datetime
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from apiserver.registry.certificates import CertificateSigningRequestStrategy, validate_spec, validate_status
from controllers.certificates import approver, signer
from kubeling.api import certificates as certs
from kubeling.cli.token import generate_token, token_secret
from kubeling.client.csr import make_csr
from kubeling.pki import pubkeypin
from kubeling.pki.certs import CertSpec, cert_pem, key_pem, new_ca, new_private_key, new_signed_cert

KEY = new_private_key()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def request(cn="system:node:n1", orgs=("system:nodes",), **sans) -> str:
    return b64(make_csr(KEY, common_name=cn, organizations=orgs, **sans))


def csr_obj(*, signer_name=certs.KUBE_APISERVER_CLIENT_KUBELET, req=None, usages=("digital signature", "client auth"),
            username="system:bootstrap:abcdef", conditions=(), certificate=None) -> dict:
    obj = {"metadata": {"name": "c"}, "spec": {"request": req or request(), "signerName": signer_name,
                                                "usages": list(usages), "username": username,
                                                "groups": ["system:bootstrappers"]}}
    if conditions or certificate:
        obj["status"] = {"conditions": [{"type": t, "status": "True"} for t in conditions]}
        if certificate:
            obj["status"]["certificate"] = certificate
    return obj


def fields(causes) -> list[str]:
    return [f"{c.field}: {c.message.split(':')[0]}" for c in causes]


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("spec, want", [
    pytest.param({"request": request(), "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                  "usages": ["client auth"]}, [], id="valid"),
    pytest.param({"signerName": "a.b/c", "usages": ["client auth"]}, ["spec.request: Required value"],
                 id="no-request"),
    pytest.param({"request": b64(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                  "signerName": "a.b/c", "usages": ["client auth"]}, ["spec.request: Invalid value"], id="not-a-csr"),
    pytest.param({"request": "%%%", "signerName": "a.b/c", "usages": ["client auth"]},
                 ["spec.request: Invalid value"], id="not-base64"),
    pytest.param({"request": request(), "usages": ["client auth"]}, ["spec.signerName: Required value"],
                 id="no-signer"),
    pytest.param({"request": request(), "signerName": "kubelet", "usages": ["client auth"]},
                 ["spec.signerName: Invalid value"], id="signer-not-qualified"),
    pytest.param({"request": request(), "signerName": "a.b/c"}, ["spec.usages: Required value"], id="no-usages"),
    pytest.param({"request": request(), "signerName": "a.b/c", "usages": ["client auth", "fly"]},
                 ["spec.usages[1]: Unsupported value"], id="unknown-usage"),
    pytest.param({"request": request(), "signerName": "a.b/c", "usages": ["client auth", "client auth"]},
                 ["spec.usages[1]: Duplicate value"], id="duplicate-usage"),
    pytest.param({"request": request(), "signerName": "a.b/c", "usages": ["client auth"], "expirationSeconds": 60},
                 ["spec.expirationSeconds: Invalid value"], id="too-short"),
])
def test_validate_spec(spec, want):
    """Every CSR spec rule reports its field path (as ValidateCertificateSigningRequestCreate)."""
    assert fields(validate_spec(spec)) == want


def test_tampered_request_signature_is_invalid():
    """A request whose subject was altered after signing fails the signature check."""
    pem = make_csr(KEY, common_name="system:node:n1").decode()
    der = x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)
    tampered = der.replace(b"system:node:n1", b"system:node:n2")
    bad = b"-----BEGIN CERTIFICATE REQUEST-----\n" + base64.encodebytes(tampered) + \
        b"-----END CERTIFICATE REQUEST-----\n"
    causes = validate_spec({"request": b64(bad), "signerName": "a.b/c", "usages": ["client auth"]})
    assert [c.field for c in causes] == ["spec.request"] and "signature" in causes[0].message


def test_status_rules():
    """A certificate needs Approved (and no Denied/Failed) and is immutable; Approved and Denied exclude
    each other; approval conditions must be True."""
    ca, ca_key = new_ca("ca")
    cert = b64(cert_pem(ca))
    assert fields(validate_status(csr_obj(certificate=cert), None)) == ["status.certificate: Forbidden"]
    assert validate_status(csr_obj(conditions=["Approved"], certificate=cert), None) == []
    other = b64(cert_pem(new_ca("other")[0]))
    old = csr_obj(conditions=["Approved"], certificate=cert)
    assert fields(validate_status(csr_obj(conditions=["Approved"], certificate=other), old)) == \
        ["status.certificate: Invalid value"]
    assert fields(validate_status(csr_obj(conditions=["Approved", "Denied"]), None)) == \
        ["status.conditions: Invalid value"]
    obj = csr_obj()
    obj["status"] = {"conditions": [{"type": "Approved", "status": "False"}]}
    assert fields(validate_status(obj, None)) == ["status.conditions[0].status: Unsupported value"]


def test_approval_and_status_subresources():
    """/approval takes only the conditions and keeps Approved once set; /status keeps the approval conditions
    whatever the writer sends; the main resource changes neither spec nor status."""
    s = CertificateSigningRequestStrategy()
    old = csr_obj()
    new = csr_obj(username="mallory", conditions=["Approved"])
    out = s.prepare_for_approval_update(new, old)
    assert out["spec"]["username"] == "system:bootstrap:abcdef"
    assert [c["type"] for c in out["status"]["conditions"]] == ["Approved"]
    assert out["status"]["conditions"][0]["lastTransitionTime"]
    assert s.validate_approval_update(out, old) == []
    removed = s.prepare_for_approval_update(csr_obj(), out)
    assert fields(s.validate_approval_update(removed, out)) == ["status.conditions: Forbidden"]
    sneaky = s.prepare_for_status_update(csr_obj(conditions=["Denied", "Failed"]), out)
    assert [c["type"] for c in sneaky["status"]["conditions"]] == ["Approved", "Failed"]
    main = {**csr_obj(username="x"), "status": {}}
    s.prepare_for_update(main, out)
    assert main["spec"]["username"] == "system:bootstrap:abcdef" and main["status"] == out["status"]


# --------------------------------------------------------------------------- approver

def allow(*subresources):
    async def check(obj, sub):
        return sub in subresources
    return check


@pytest.mark.parametrize("obj, allowed, want", [
    pytest.param(csr_obj(), ("nodeclient",), "nodeclient", id="bootstrap-token-may-create-nodeclient"),
    pytest.param(csr_obj(), (), None, id="sar-denies"),
    pytest.param(csr_obj(), ("selfnodeclient",), None, id="selfnodeclient-needs-requester-equal-cn"),
    pytest.param(csr_obj(username="system:node:n1"), ("selfnodeclient",), "selfnodeclient", id="renewal"),
    pytest.param(csr_obj(username="system:node:n1"), ("nodeclient", "selfnodeclient"), "selfnodeclient",
                 id="self-first"),
    pytest.param(csr_obj(username="system:node:n2"), ("selfnodeclient",), None, id="other-nodes-cert"),
    pytest.param(csr_obj(signer_name=certs.KUBE_APISERVER_CLIENT), ("nodeclient",), None, id="other-signer"),
    pytest.param(csr_obj(req=request(orgs=("system:masters",))), ("nodeclient",), None, id="wrong-org"),
    pytest.param(csr_obj(req=request(cn="admin")), ("nodeclient",), None, id="cn-not-a-node"),
    pytest.param(csr_obj(req=request(ips=("10.0.0.1",))), ("nodeclient",), None, id="sans-not-allowed"),
    pytest.param(csr_obj(usages=("server auth",)), ("nodeclient",), None, id="server-usage"),
    pytest.param(csr_obj(conditions=["Approved"]), ("nodeclient",), None, id="already-approved"),
    pytest.param(csr_obj(conditions=["Denied"]), ("nodeclient",), None, id="denied-stays-denied"),
])
async def test_approver_decision_table(obj, allowed, want):
    """sarApprover: approve a kubelet client CSR only under a recognizer whose SubjectAccessReview allows it."""
    r = await approver.decide(obj, allow(*allowed))
    assert (r.subresource if r else None) == want


# --------------------------------------------------------------------------- signer

def make_ca(tmp_path, *, ca_cert=None, ca_key=None) -> signer.CA:
    ca_cert, ca_key = (ca_cert, ca_key) if ca_cert else new_ca("kubernetes")
    (tmp_path / "ca.crt").write_bytes(cert_pem(ca_cert))
    (tmp_path / "ca.key").write_bytes(key_pem(ca_key))
    return signer.CA(str(tmp_path / "ca.crt"), str(tmp_path / "ca.key"))


def test_signer_issues_subject_sans_usages_and_duration(tmp_path):
    """The issued certificate carries the request's subject and SANs, the requested usages, is backdated
    5 minutes and lasts expirationSeconds capped by --cluster-signing-duration."""
    ca = make_ca(tmp_path)
    x509cr = x509.load_pem_x509_csr(make_csr(KEY, common_name="system:node:n1", organizations=("system:nodes",),
                                             dns_names=("n1",), ips=("10.0.0.11",)))
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    cert = signer.sign(ca, x509cr, ["digital signature", "server auth"], duration=3600, now=now)
    assert cert.subject == x509cr.subject and cert.issuer == ca.cert.subject
    assert cert.not_valid_before_utc == now - datetime.timedelta(minutes=5)
    assert cert.not_valid_after_utc == now + datetime.timedelta(hours=1)
    assert cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value == \
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["n1"]
    cert.verify_directly_issued_by(ca.cert)
    assert signer.duration_of({"spec": {"expirationSeconds": 600}}, 3600) == 600
    assert signer.duration_of({"spec": {"expirationSeconds": 10 ** 9}}, 3600) == 3600
    assert signer.duration_of({"spec": {}}, 3600) == 3600


def test_signer_never_outlives_the_ca(tmp_path):
    """A certificate ends no later than its CA."""
    ca = make_ca(tmp_path)
    x509cr = x509.load_pem_x509_csr(make_csr(KEY, common_name="x"))
    cert = signer.sign(ca, x509cr, ["client auth"], duration=100 * 365 * 86400)
    assert cert.not_valid_after_utc == ca.cert.not_valid_after_utc


@pytest.mark.parametrize("signer_name, req, usages, problem", [
    pytest.param(certs.KUBE_APISERVER_CLIENT_KUBELET, request(), ["client auth"], "", id="kubelet-client"),
    pytest.param(certs.KUBE_APISERVER_CLIENT_KUBELET, request(orgs=()), ["client auth"], "organization",
                 id="kubelet-client-no-org"),
    pytest.param(certs.KUBELET_SERVING, request(), ["server auth"], "subjectAltName", id="serving-needs-san"),
    pytest.param(certs.KUBELET_SERVING, request(ips=("10.0.0.1",)), ["server auth"], "", id="serving"),
    pytest.param(certs.KUBELET_SERVING, request(ips=("10.0.0.1",)), ["client auth"], "usages",
                 id="serving-client-usage"),
    pytest.param(certs.KUBE_APISERVER_CLIENT, request(cn="jane", orgs=()), ["client auth"], "", id="client"),
    pytest.param(certs.KUBE_APISERVER_CLIENT, request(cn="jane", orgs=()), ["server auth"], "usages",
                 id="client-server-usage"),
])
def test_signer_validation(signer_name, req, usages, problem):
    """Each kubernetes.io signer issues only what it is for; anything else becomes a Failed condition."""
    got = signer.SIGNERS[signer_name](certs.parse_csr(certs.decode_pem(req)), usages)
    assert (problem in got) if problem else got == ""


# --------------------------------------------------------------------------- pins and tokens

def test_pin_matches_openssl(tmp_path):
    """sha256 of the DER SubjectPublicKeyInfo, as kubeadm documents computing it with openssl."""
    ca, _ = new_ca("kubernetes")
    (tmp_path / "ca.crt").write_bytes(cert_pem(ca))
    out = subprocess.run(f"openssl x509 -pubkey -noout -in {tmp_path}/ca.crt | openssl pkey -pubin -outform der "
                         f"| sha256sum", shell=True, capture_output=True, text=True, timeout=10, check=True).stdout
    assert pubkeypin.hash_cert(ca) == "sha256:" + out.split()[0]
    assert pubkeypin.matches([pubkeypin.hash_cert(ca).upper().replace("SHA256", "sha256")], [ca])
    leaf, _ = new_signed_cert(CertSpec("x", "x", "ca"), ca, new_private_key())
    assert not pubkeypin.matches([pubkeypin.hash_cert(leaf)], [ca])
    with pytest.raises(ValueError, match="expected"):
        pubkeypin.check_format("md5:abc")


def test_token_secret_is_kubeadms():
    """token create's Secret: kube-system/bootstrap-token-<id>, the kubeadm keys, expiration = now + ttl."""
    token = generate_token()
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    s = token_secret(token, ttl=7200, usages=["signing", "authentication"],
                     groups=["system:bootstrappers:kubeadm:default-node-token"], now=now)
    data = {k: base64.b64decode(v).decode() for k, v in s["data"].items()}
    assert s["metadata"] == {"name": f"bootstrap-token-{token[:6]}", "namespace": "kube-system"}
    assert s["type"] == "bootstrap.kubernetes.io/token"
    assert data == {"token-id": token[:6], "token-secret": token[7:], "expiration": "2030-01-01T02:00:00Z",
                    "usage-bootstrap-signing": "true", "usage-bootstrap-authentication": "true",
                    "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token"}
    assert "expiration" not in token_secret(token, ttl=0, usages=[], groups=[])["data"]
    from kubeling.cli.errors import CLIError
    for bad in ("ABCDEF.0123456789abcdef", "abc.def"):
        with pytest.raises(CLIError):
            token_secret(bad, ttl=0, usages=[], groups=[])
    with pytest.raises(CLIError):
        token_secret(token, ttl=0, usages=[], groups=["system:masters"])


# --------------------------------------------------------------------------- admission

class FakeAuthorizer:
    def __init__(self, *allowed: tuple[str, str]):
        self.allowed = set(allowed)

    async def authorize(self, user, attrs):
        return (attrs.verb, attrs.name) in self.allowed, ""


def attrs(operation, subresource=None):
    from apiserver.admission import Attributes
    from apiserver.authn import UserInfo
    return Attributes(operation, CertificateSigningRequestStrategy.info, None, "c", subresource, UserInfo("u"))


async def test_admission_approve_and_sign_need_the_signer_verbs():
    """CertificateApproval / CertificateSigning: approve / sign on signers/<signerName> or <domain>/*."""
    from apiserver.admission.certificates import CertificateApproval, CertificateSigning
    from apiserver import errors
    obj = csr_obj(conditions=["Approved"])
    await CertificateApproval(lambda: FakeAuthorizer(("approve", certs.KUBE_APISERVER_CLIENT_KUBELET))).admit(
        attrs("update", "approval"), obj, csr_obj())
    await CertificateApproval(lambda: FakeAuthorizer(("approve", "kubernetes.io/*"))).admit(
        attrs("update", "approval"), obj, csr_obj())
    with pytest.raises(errors.StatusError) as e:
        await CertificateApproval(lambda: FakeAuthorizer(("sign", certs.KUBE_APISERVER_CLIENT_KUBELET))).admit(
            attrs("update", "approval"), obj, csr_obj())
    assert e.value.code == 403 and "not permitted to approve" in str(e.value.status["message"])
    issued = csr_obj(conditions=["Approved"], certificate="Y2VydA==")
    with pytest.raises(errors.StatusError):
        await CertificateSigning(lambda: FakeAuthorizer()).admit(attrs("update", "status"), issued, obj)
    await CertificateSigning(lambda: FakeAuthorizer(("sign", certs.KUBE_APISERVER_CLIENT_KUBELET))).admit(
        attrs("update", "status"), issued, obj)
    await CertificateSigning(lambda: FakeAuthorizer()).admit(attrs("update", "status"), obj, obj)  # no certificate
    await CertificateApproval(lambda: None).admit(attrs("update", "approval"), obj, csr_obj())  # no authorization


async def test_subject_restriction_refuses_system_masters():
    """CertificateSubjectRestriction: no O=system:masters for kube-apiserver-client; other signers untouched."""
    from apiserver.admission.certificates import CertificateSubjectRestriction
    from apiserver import errors
    masters = request(cn="root", orgs=("system:masters",))
    with pytest.raises(errors.StatusError):
        await CertificateSubjectRestriction().admit(attrs("create"), csr_obj(
            signer_name=certs.KUBE_APISERVER_CLIENT, req=masters), None)
    await CertificateSubjectRestriction().admit(attrs("create"), csr_obj(signer_name="example.com/x", req=masters),
                                                None)
    await CertificateSubjectRestriction().admit(attrs("create"), csr_obj(signer_name=certs.KUBE_APISERVER_CLIENT,
                                                                         req=request(cn="jane", orgs=())), None)


# --------------------------------------------------------------------------- cleaners

def test_csrcleaner_due_times():
    """csrcleaner: 1 h after approval/denial/failure, 24 h pending, or when the issued certificate expires."""
    from controllers.certificates.cleaner import due
    created = "2030-01-01T00:00:00Z"
    t0 = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc).timestamp()
    pending = {"metadata": {"creationTimestamp": created}, "status": {}}
    assert due(pending) == t0 + 24 * 3600
    approved = {"metadata": {"creationTimestamp": created}, "status": {"conditions": [
        {"type": "Approved", "status": "True", "lastUpdateTime": "2030-01-01T00:10:00Z"}]}}
    assert due(approved) == t0 + 600 + 3600
    ca, ca_key = new_ca("ca")
    leaf, _ = new_signed_cert(CertSpec("x", "x", "ca"), ca, ca_key)
    issued = {**approved, "status": {**approved["status"], "certificate": b64(cert_pem(leaf))}}
    assert due(issued) == min(t0 + 600 + 3600, leaf.not_valid_after_utc.timestamp())


def test_tokencleaner_expiration():
    """tokencleaner acts on kube-system bootstrap token Secrets with an expiration only."""
    from controllers.tokencleaner import expiration
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)
    s = token_secret(generate_token(), ttl=60, usages=["authentication"], groups=[], now=now)
    s["metadata"]["namespace"] = "kube-system"
    assert expiration(s) == now.timestamp() + 60
    assert expiration(token_secret(generate_token(), ttl=0, usages=[], groups=[])) is None
    assert expiration({**s, "type": "Opaque"}) is None


def test_printers_match_kubectl_columns():
    """kubectl get csr's columns from the apiserver's Table and the same cells in kubeling get csr."""
    from apiserver import printers as server_printers
    from kubeling.cli import printers as cli_printers
    obj = csr_obj(conditions=["Approved"], certificate="Y2VydA==")
    obj["metadata"]["creationTimestamp"] = "2030-01-01T00:00:00Z"
    obj["spec"]["expirationSeconds"] = 3600
    now = datetime.datetime(2030, 1, 1, 0, 5, tzinfo=datetime.timezone.utc).timestamp()
    want = ["c", "5m", certs.KUBE_APISERVER_CLIENT_KUBELET, "system:bootstrap:abcdef", "60m", "Approved,Issued"]
    assert server_printers.row("CertificateSigningRequest", obj, now=now)["cells"] == want
    assert cli_printers.row("CertificateSigningRequest", obj, now=now) == want
    assert [c["name"] for c in server_printers.table("CertificateSigningRequest", [])["columnDefinitions"]] == [
        "Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
    assert cli_printers.csr_condition(csr_obj(conditions=["Denied"])) == "Denied"
    assert cli_printers.csr_condition(csr_obj()) == "Pending"


def test_rotation_deadline_is_jittered_between_70_and_90_percent():
    """nextRotationDeadline: NotBefore + 70..90 % of the lifetime."""
    import random
    from kubelet.certificate.manager import rotation_deadline
    ca, ca_key = new_ca("ca")
    leaf, _ = new_signed_cert(CertSpec("x", "x", "ca"), ca, ca_key)
    life = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    rng = random.Random(7)
    for _ in range(50):
        d = rotation_deadline(leaf, rng=rng) - leaf.not_valid_before_utc
        assert life * 0.7 <= d <= life * 0.9


# --------------------------------------------------------------------------- cluster-info signatures

def test_jws_matches_upstreams_vectors():
    """cluster-bootstrap's jws_test.go vectors: detached HS256 with the token id as kid."""
    from kubeling.pki import jws
    content = "Hello from the other side. I must have called a thousand times."
    sig = "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..VShe2taLd-YTrmWuRkcL_8QTNDHYxQIEBsAYYiIj1_8"
    assert jws.compute_detached_signature(content, "joshua", "my voice is my passcode") == sig
    assert jws.compute_detached_signature("", "joshua", "my voice is my passcode") == \
        "eyJhbGciOiJIUzI1NiIsImtpZCI6Impvc2h1YSJ9..7Ui1ALizW4jXphVUB7xUqC9vLYLL9RZeOFfVLoB7Tgk"
    assert jws.detached_token_is_valid(sig, content, "joshua", "my voice is my passcode")
    assert not jws.detached_token_is_valid(sig + "foo", content, "joshua", "my voice is my passcode")


def test_bootstrapsigner_signs_with_valid_signing_tokens_only():
    """One signature per unexpired signing token; stale signatures go."""
    from controllers.bootstrapsigner import signed_data, signing_tokens
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.timezone.utc)

    def secret(token, **kw):
        s = token_secret(token, **kw)
        s["metadata"]["namespace"] = "kube-system"
        return s
    good, auth_only, expired = "aaaaaa.0123456789abcdef", "bbbbbb.0123456789abcdef", "cccccc.0123456789abcdef"
    tokens, soonest = signing_tokens([
        secret(good, ttl=60, usages=["signing"], groups=[], now=now),
        secret(auth_only, ttl=0, usages=["authentication"], groups=[]),
        secret(expired, ttl=60, usages=["signing"], groups=[], now=now - datetime.timedelta(hours=1))],
        now.timestamp())
    assert tokens == {"aaaaaa": "0123456789abcdef"} and soonest == now.timestamp() + 60
    data = signed_data({"kubeconfig": "kc", "jws-kubeconfig-zzzzzz": "old"}, tokens)
    from kubeling.pki import jws
    assert set(data) == {"kubeconfig", "jws-kubeconfig-aaaaaa"}
    assert jws.detached_token_is_valid(data["jws-kubeconfig-aaaaaa"], "kc", "aaaaaa", "0123456789abcdef")
