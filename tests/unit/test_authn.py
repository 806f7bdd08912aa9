"""Request authentication: token file, bearer extraction, the union's 401 rules, x509 client certs,
bootstrap tokens (apiserver/authn)."""
from __future__ import annotations

import base64
import datetime

import pytest
from starlette.requests import HTTPConnection

from apiserver.authn import AuthenticationError, UserInfo, authenticate
from apiserver.authn import bootstrap, tokenfile, x509 as x509auth
from apiserver.authn.filter import RequestAuthenticator, bearer_token, is_resource_path
from kubeling.pki import certs


def conn(headers: dict | None = None, *, chain: list[str] | None = None, kind: str = "http",
         subprotocols: list[str] | None = None) -> HTTPConnection:
    scope = {"type": kind, "method": "GET", "path": "/api/v1/pods", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    if chain is not None:
        scope["extensions"] = {"tls": {"client_cert_chain": chain}}
    if subprotocols is not None:
        scope["subprotocols"] = subprotocols
    return HTTPConnection(scope)


# ---------------------------------------------------------------- token file

def test_token_file_parses_upstream_csv():
    """token,user,uid,"g1,g2"; the groups column is optional; comments and blank lines are skipped."""
    tokens = tokenfile.parse('# comment\nt1,alice,u1,"dev,ops"\n\nt2,bob,u2\n')
    assert tokens["t1"] == UserInfo("alice", ("dev", "ops"), uid="u1")
    assert tokens["t2"] == UserInfo("bob", (), uid="u2")


@pytest.mark.parametrize("text", ["t1,alice\n", ",alice,u1\n", "t1,,u1\n"], ids=["short", "no-token", "no-user"])
def test_token_file_rejects_bad_lines(text):
    """A line with fewer than 3 columns or an empty token/user is an error naming the line."""
    with pytest.raises(ValueError, match="line 1"):
        tokenfile.parse(text)


# ---------------------------------------------------------------- bearer extraction

@pytest.mark.parametrize("header,want", [
    ("Bearer abc", "abc"), ("bearer abc", "abc"), ("Bearer abc extra", "abc"), ("Basic dXNlcjpwYXNz", None),
    ("Bearer", None), ("Bearer  ", None), ("", None), ("abc", None)])
def test_bearer_token(header, want):
    """As upstream's bearertoken: the scheme case-insensitive, the token the second space-separated field."""
    assert bearer_token(conn({"Authorization": header} if header else {})) == want


def test_bearer_token_from_websocket_subprotocol():
    """Websocket clients may carry the token as base64url.bearer.authorization.k8s.io.<b64url>."""
    enc = base64.urlsafe_b64encode(b"sekret").decode().rstrip("=")
    c = conn(kind="websocket", subprotocols=["v5.channel.k8s.io", f"base64url.bearer.authorization.k8s.io.{enc}"])
    assert bearer_token(c) == "sekret"


def test_resource_paths():
    """RequestInfoFactory's split: discovery and health paths are non-resource requests."""
    assert is_resource_path("/api/v1/pods") and is_resource_path("/apis/apps/v1/deployments")
    for p in ("/", "/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/healthz", "/version", "/openapi/v3"):
        assert not is_resource_path(p), p


# ---------------------------------------------------------------- the union request authenticator

class Tokens:
    def __init__(self, table, *, raise_for=()):
        self.table, self.raise_for = table, raise_for

    async def authenticate_token(self, token):
        if token in self.raise_for:
            raise AuthenticationError("bad signature")
        return self.table.get(token)


async def test_union_adds_authenticated_group_and_tries_in_order():
    """The first token authenticator that knows the token wins; system:authenticated is added."""
    a = RequestAuthenticator(tokens=[Tokens({}), Tokens({"t": UserInfo("jane", ("dev",))})])
    user = await a.authenticate(conn({"Authorization": "Bearer t"}))
    assert user.name == "jane" and user.groups == ("dev", "system:authenticated")


async def test_unknown_or_invalid_token_is_401_even_with_anonymous():
    """A presented credential that fails is an error (401), never a fall-back to anonymous."""
    a = RequestAuthenticator(tokens=[Tokens({}, raise_for=("bad",))], anonymous=True)
    for token in ("unknown", "bad"):
        with pytest.raises(AuthenticationError):
            await a.authenticate(conn({"Authorization": f"Bearer {token}"}))


async def test_no_credentials_anonymous_or_none():
    """No credential: system:anonymous in system:unauthenticated, or None (401) with anonymous off."""
    user = await RequestAuthenticator(tokens=[Tokens({})]).authenticate(conn())
    assert user == UserInfo("system:anonymous", ("system:unauthenticated",))
    assert await RequestAuthenticator(tokens=[Tokens({})], anonymous=False).authenticate(conn()) is None


async def test_authenticate_helper_prefers_the_filter_result():
    """Handlers see the user the filter left in the scope, without authenticating again."""
    c = conn()
    c.scope["kubeling.user"] = UserInfo("cached")
    assert (await authenticate([RequestAuthenticator(anonymous=False)], c)).name == "cached"


# ---------------------------------------------------------------- x509

@pytest.fixture(scope="module")
def ca():
    return certs.new_ca("test-ca")


def leaf(ca, cn="jane", orgs=("dev", "ops"), **kw):
    cert, _ = certs.new_signed_cert(certs.CertSpec("x", cn, "ca", organizations=orgs), *ca, **kw)
    return certs.cert_pem(cert).decode()


async def test_x509_cn_and_orgs(ca):
    """CN is the user, each O a group (CommonNameUserConversion); no extension: not applicable."""
    a = x509auth.X509Authenticator([ca[0]])
    assert await a.authenticate(conn(chain=[leaf(ca)])) == UserInfo("jane", ("dev", "ops"))
    assert await a.authenticate(conn()) is None
    assert await a.authenticate(conn(chain=[])) is None


async def test_x509_foreign_ca_expired_and_garbage_are_errors(ca):
    """A certificate from another CA, outside its validity window, or unparsable -> AuthenticationError."""
    other = certs.new_ca("other")
    a = x509auth.X509Authenticator([ca[0]])
    with pytest.raises(AuthenticationError, match="unknown authority"):
        await a.authenticate(conn(chain=[leaf(other)]))
    late = x509auth.X509Authenticator([ca[0]], now=lambda: datetime.datetime.now(datetime.timezone.utc)
                                      + datetime.timedelta(days=3650))
    with pytest.raises(AuthenticationError, match="expired"):
        await late.authenticate(conn(chain=[leaf(ca)]))
    pem = leaf(ca)
    for bad in (pem[:len(pem) // 2], "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "junk"):
        with pytest.raises(AuthenticationError):
            await a.authenticate(conn(chain=[bad]))


async def test_x509_wins_over_bad_token_in_union(ca):
    """The union succeeds when any authenticator does (a client cert plus an unknown token -> cert user)."""
    a = RequestAuthenticator(x509=x509auth.X509Authenticator([ca[0]]), tokens=[Tokens({})], anonymous=False)
    user = await a.authenticate(conn({"Authorization": "Bearer nope"}, chain=[leaf(ca, "system:node:n1",
                                                                                  ("system:nodes",))]))
    assert user.name == "system:node:n1" and "system:authenticated" in user.groups


# ---------------------------------------------------------------- bootstrap tokens

def secret(token_id="abcdef", token_secret="0123456789abcdef", **data):
    fields = {"token-id": token_id, "token-secret": token_secret, "usage-bootstrap-authentication": "true", **data}
    return {"type": bootstrap.SECRET_TYPE, "metadata": {"name": f"bootstrap-token-{token_id}",
                                                        "namespace": "kube-system"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in fields.items()}}


async def test_bootstrap_token():
    """<id>.<secret> matching kube-system/bootstrap-token-<id> -> system:bootstrap:<id>; anything else None."""
    store = {("kube-system", "bootstrap-token-abcdef"): secret(**{"auth-extra-groups":
                                                                  "system:bootstrappers:kubeadm:default-node-token"})}

    async def get(ns, name):
        return store.get((ns, name))
    a = bootstrap.BootstrapTokenAuthenticator(get)
    user = await a.authenticate_token("abcdef.0123456789abcdef")
    assert user == UserInfo("system:bootstrap:abcdef", ("system:bootstrappers",
                                                        "system:bootstrappers:kubeadm:default-node-token"))
    for token in ("abcdef.0123456789abcdeX", "abcdef.ffffffffffffffff", "zzzzzz.0123456789abcdef", "abcdef", ""):
        assert await a.authenticate_token(token) is None
    store[("kube-system", "bootstrap-token-abcdef")] = secret(expiration="2000-01-01T00:00:00Z")
    assert await a.authenticate_token("abcdef.0123456789abcdef") is None
    store[("kube-system", "bootstrap-token-abcdef")] = secret(**{"usage-bootstrap-authentication": "false"})
    assert await a.authenticate_token("abcdef.0123456789abcdef") is None


async def test_x509_cache_respects_validity(ca):
    """A verified leaf is remembered, but only within its validity window."""
    clock = {"now": datetime.datetime.now(datetime.timezone.utc)}
    a = x509auth.X509Authenticator([ca[0]], now=lambda: clock["now"])
    pem = leaf(ca)
    assert (await a.authenticate(conn(chain=[pem]))).name == "jane"
    assert (await a.authenticate(conn(chain=[pem]))).name == "jane" and len(a._verified) == 1
    clock["now"] += datetime.timedelta(days=3650)
    with pytest.raises(AuthenticationError, match="expired"):
        await a.authenticate(conn(chain=[pem]))
