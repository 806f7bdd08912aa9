"""ServiceAccount JWTs: signing, verification and the bound-object checks (apiserver/authn/serviceaccount.py)."""
from __future__ import annotations

import base64
import json
import random

import pytest

from apiserver.authn import AuthenticationError
from apiserver.authn import serviceaccount as sa
from kubeling.pki import certs

ISS = "https://kubernetes.default.svc.cluster.local"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def rsa_key():
    return certs.new_rsa_key()


class Objects:
    """A fake object getter: {(resource, ns, name): obj}."""

    def __init__(self):
        self.items = {("serviceaccounts", "a", "bot"): {"metadata": {"name": "bot", "uid": "sa-uid"}},
                      ("pods", "a", "web"): {"metadata": {"name": "web", "uid": "pod-uid"}}}

    async def __call__(self, resource, ns, name):
        return self.items.get((resource, ns, name))


def token(key, *, now=NOW, exp=3600, aud=(ISS,), issuer=ISS, pod=True):
    gen = sa.TokenGenerator(key, issuer)
    tok, _ = gen.generate(namespace="a", sa_name="bot", sa_uid="sa-uid", audiences=list(aud), expiration_seconds=exp,
                          pod={"name": "web", "uid": "pod-uid"} if pod else None, node={"name": "n1", "uid": "nu"},
                          now=now)
    return tok


def authn(key, objects=None, *, now=NOW + 10):
    return sa.ServiceAccountAuthenticator([key.public_key()], [ISS], get=objects or Objects(), now=lambda: now)


async def test_round_trip_claims_and_user(rsa_key):
    """sub, iss, aud, kubernetes.io claims as upstream; the user is the SA with its groups and extra."""
    tok = token(rsa_key)
    header, claims, _, _ = sa.parse_unverified(tok)
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["sub"] == "system:serviceaccount:a:bot" and claims["iss"] == ISS and claims["aud"] == [ISS]
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"]
    assert claims["kubernetes.io"] == {"namespace": "a", "serviceaccount": {"name": "bot", "uid": "sa-uid"},
                                       "pod": {"name": "web", "uid": "pod-uid"}, "node": {"name": "n1", "uid": "nu"}}
    user = await authn(rsa_key).authenticate_token(tok)
    assert user.name == "system:serviceaccount:a:bot" and user.uid == "sa-uid"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:a")
    assert user.extra[sa.POD_NAME_KEY] == ("web",) and user.extra[sa.NODE_NAME_KEY] == ("n1",)
    assert user.extra[sa.CREDENTIAL_ID_KEY][0].startswith("JTI=")


async def test_es256_keys_work_too():
    """P-256 keys sign ES256 tokens that verify (kubeadm may hand out EC keys)."""
    key = certs.new_private_key()
    assert sa.parse_unverified(token(key))[0]["alg"] == "ES256"
    assert (await authn(key).authenticate_token(token(key))).name == "system:serviceaccount:a:bot"


async def test_expired_and_not_yet_valid(rsa_key):
    """exp and nbf with upstream's 60 s leeway."""
    tok = token(rsa_key, exp=600)
    assert await authn(rsa_key, now=NOW + 600 + 59).authenticate_token(tok)
    with pytest.raises(AuthenticationError, match="expired"):
        await authn(rsa_key, now=NOW + 600 + 61).authenticate_token(tok)
    with pytest.raises(AuthenticationError, match="not valid yet"):
        await authn(rsa_key, now=NOW - 120).authenticate_token(tok)


async def test_wrong_signature_and_tampering(rsa_key):
    """Another key's signature, an altered payload and a swapped alg all fail (401)."""
    other = certs.new_rsa_key()
    with pytest.raises(AuthenticationError, match="verification"):
        await authn(rsa_key).authenticate_token(token(other))
    h, c, s = token(rsa_key).split(".")
    claims = json.loads(base64.urlsafe_b64decode(c + "=="))
    claims["sub"] = "system:serviceaccount:kube-system:admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    with pytest.raises(AuthenticationError):
        await authn(rsa_key).authenticate_token(f"{h}.{forged}.{s}")
    none_alg = base64.urlsafe_b64encode(b'{"alg":"none"}').decode().rstrip("=")
    with pytest.raises(AuthenticationError):
        await authn(rsa_key).authenticate_token(f"{none_alg}.{c}.")


async def test_wrong_issuer_is_not_ours_and_wrong_audience_fails(rsa_key):
    """Another issuer: not recognised (None, the next authenticator may know it); audience mismatch: 401."""
    assert await authn(rsa_key).authenticate_token(token(rsa_key, issuer="https://elsewhere")) is None
    with pytest.raises(AuthenticationError, match="audiences"):
        await authn(rsa_key).authenticate_token(token(rsa_key, aud=("vault",)))


async def test_bound_pod_deleted_or_recreated_and_sa_gone(rsa_key):
    """The token dies with its pod (absent, new uid, deleted >60 s ago) and with its ServiceAccount."""
    tok = token(rsa_key)
    objs = Objects()
    a = authn(rsa_key, objs)
    assert await a.authenticate_token(tok)
    objs.items[("pods", "a", "web")] = {"metadata": {"name": "web", "uid": "other"}}
    with pytest.raises(AuthenticationError, match="UID"):
        await a.authenticate_token(tok)
    objs.items[("pods", "a", "web")] = {"metadata": {"name": "web", "uid": "pod-uid",
                                                     "deletionTimestamp": "2000-01-01T00:00:00Z"}}
    with pytest.raises(AuthenticationError, match="deleted"):
        await a.authenticate_token(tok)
    del objs.items[("pods", "a", "web")]
    with pytest.raises(AuthenticationError, match="not found"):
        await a.authenticate_token(tok)
    unbound = token(rsa_key, pod=False)
    assert await a.authenticate_token(unbound)
    objs.items[("serviceaccounts", "a", "bot")] = {"metadata": {"name": "bot", "uid": "new-uid"}}
    with pytest.raises(AuthenticationError, match="UID"):
        await a.authenticate_token(unbound)


async def test_garbage_tokens_never_raise_anything_else(rsa_key):
    """Random JWT-looking strings, truncated base64 and huge tokens: None or AuthenticationError only."""
    rng = random.Random(8)
    good = token(rsa_key)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=.+/ "
    samples = [good[:n] for n in range(0, len(good), 17)] + [good + "x", good.replace(".", "..", 1),
                                                             "a.b.c", "..", "e30.e30.", "e30.W10.", "e30.bnVsbA.",
                                                             "x" * 100_000 + ".a.b"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300))) for _ in range(300)]
    a = authn(rsa_key)
    for s in samples:
        try:
            await a.authenticate_token(s)
        except AuthenticationError:
            pass


def test_split_username():
    """system:serviceaccount:NS:NAME -> (NS, NAME); anything else None."""
    assert sa.split_username("system:serviceaccount:a:bot") == ("a", "bot")
    for bad in ("system:serviceaccount:a", "system:serviceaccount::bot", "jane", "system:serviceaccount:a:b:c"):
        assert sa.split_username(bad) is None
