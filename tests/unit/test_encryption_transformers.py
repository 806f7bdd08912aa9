"""Encryption at rest: the AES-GCM / AES-CBC / identity transformers, prefix selection, key rotation (stale
reads), the EncryptionConfiguration parser, and the etcd3 encode/decode hook."""
import base64
import os

import pytest

from apiserver.storage import encryption as enc
from apiserver.storage import etcd3
from proto.mvccpb import kv_pb2

K1, K2 = os.urandom(32), os.urandom(16)
KEY = b"/registry/secrets/default/s1"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def config(*providers, resources=("secrets",)) -> enc.EncryptionConfig:
    return enc.EncryptionConfig.parse({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                                       "resources": [{"resources": list(resources), "providers": list(providers)}]})


def gcm(*keys):
    return {"aesgcm": {"keys": [{"name": n, "secret": b64(k)} for n, k in keys]}}


def cbc(*keys):
    return {"aescbc": {"keys": [{"name": n, "secret": b64(k)} for n, k in keys]}}


def test_aesgcm_layout_and_round_trip():
    t = config(gcm(("key1", K1))).for_resource("", "secrets")
    stored = t.to_storage(b'{"data":"plaintext"}', KEY)
    assert stored.startswith(b"k8s:enc:aesgcm:v1:key1:")
    body = stored[len(b"k8s:enc:aesgcm:v1:key1:"):]
    assert len(body) == 12 + len(b'{"data":"plaintext"}') + 16  # nonce + ciphertext + tag
    assert b"plaintext" not in stored
    assert t.from_storage(stored, KEY) == (b'{"data":"plaintext"}', False)
    assert stored != t.to_storage(b'{"data":"plaintext"}', KEY)  # a fresh nonce each time


def test_aesgcm_binds_the_etcd_key():
    """A value copied under another etcd key does not decrypt (the key is authenticated data)."""
    t = config(gcm(("key1", K1))).for_resource("", "secrets")
    stored = t.to_storage(b"x", KEY)
    with pytest.raises(enc.TransformError, match="authentication failed"):
        t.from_storage(stored, b"/registry/secrets/default/other")


def test_aescbc_round_trip():
    t = config(cbc(("k", K1))).for_resource("", "secrets")
    for data in (b"", b"a" * 16, b"hello world"):
        stored = t.to_storage(data, KEY)
        assert stored.startswith(b"k8s:enc:aescbc:v1:k:") and (len(stored) - len(b"k8s:enc:aescbc:v1:k:")) % 16 == 0
        assert t.from_storage(stored, KEY) == (data, False)


def test_rotation_old_keys_read_and_are_stale():
    old = config(gcm(("old", K1))).for_resource("", "secrets")
    rotated = config(gcm(("new", K2), ("old", K1))).for_resource("", "secrets")
    stored = old.to_storage(b"v", KEY)
    assert rotated.from_storage(stored, KEY) == (b"v", True)
    fresh = rotated.to_storage(b"v", KEY)
    assert fresh.startswith(b"k8s:enc:aesgcm:v1:new:")
    assert rotated.from_storage(fresh, KEY) == (b"v", False)


def test_identity_fallback_and_migration():
    t = config(gcm(("k", K1)), {"identity": {}}).for_resource("", "secrets")
    assert t.from_storage(b'{"old":"plain"}', KEY) == (b'{"old":"plain"}', True)  # written before encryption
    without_identity = config(gcm(("k", K1))).for_resource("", "secrets")
    with pytest.raises(enc.TransformError, match="no matching prefix found"):
        without_identity.from_storage(b'{"old":"plain"}', KEY)
    # identity first (turning encryption off): writes are plain, encrypted values still read (stale)
    off = config({"identity": {}}, gcm(("k", K1))).for_resource("", "secrets")
    encrypted = t.to_storage(b"v", KEY)
    assert off.from_storage(encrypted, KEY) == (b"v", True)
    assert off.to_storage(b"v", KEY) == b"v"


def test_wrong_key_is_an_error():
    stored = config(gcm(("k", K1))).for_resource("", "secrets").to_storage(b"v", KEY)
    other = config(gcm(("k", K2))).for_resource("", "secrets")
    with pytest.raises(enc.TransformError):
        other.from_storage(stored, KEY)


def test_resource_matching():
    c = enc.EncryptionConfig.parse({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                                    "resources": [{"resources": ["secrets", "deployments.apps"],
                                                   "providers": [gcm(("a", K1))]},
                                                  {"resources": ["*.batch"], "providers": [cbc(("b", K1))]}]})
    assert c.for_resource("", "secrets") is c.for_resource("apps", "deployments")
    assert c.for_resource("batch", "jobs").write_prefix == b"k8s:enc:aescbc:v1:b:"
    assert c.for_resource("", "configmaps") is None
    assert c.for_resource("apps", "secrets") is None


@pytest.mark.parametrize("doc,message", [
    pytest.param({"kind": "Other"}, "kind/apiVersion must be EncryptionConfiguration", id="kind"),
    pytest.param({"resources": []}, "resources: Required value", id="no-resources"),
    pytest.param({"resources": [{"resources": ["secrets"], "providers": [{"aesgcm": {"keys": [
        {"name": "k", "secret": b64(b"short")}]}}]}]}, "secret is not of the expected length, got 5", id="length"),
    pytest.param({"resources": [{"resources": ["secrets"], "providers": [{"aesgcm": {"keys": [
        {"name": "k", "secret": "%%%"}]}}]}]}, "must be base64 encoded", id="base64"),
    pytest.param({"resources": [{"resources": ["secrets"], "providers": [{"secretbox": {"keys": []}}]}]},
                 "not supported by kubeling", id="secretbox"),
    pytest.param({"resources": [{"resources": ["secrets"], "providers": [{"aesgcm": {}, "identity": {}}]}]},
                 "exactly one provider", id="two-in-one"),
    pytest.param({"resources": [{"resources": ["secrets"], "providers": [{"aesgcm": {"keys": [
        {"name": "a:b", "secret": b64(K1)}]}}]}]}, "should not contain ':'", id="colon"),
])
def test_config_errors_name_the_field(doc, message):
    full = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration", **doc}
    with pytest.raises(enc.EncryptionConfigError, match=message):
        enc.EncryptionConfig.parse(full)


def test_load_from_file(tmp_path):
    path = tmp_path / "enc.yaml"
    path.write_text(f"""apiVersion: apiserver.config.k8s.io/v1
kind: EncryptionConfiguration
resources:
  - resources: [secrets]
    providers:
      - aesgcm:
          keys:
            - name: key1
              secret: {b64(K1)}
      - identity: {{}}
""")
    assert enc.EncryptionConfig.load(str(path)).for_resource("", "secrets").write_prefix == b"k8s:enc:aesgcm:v1:key1:"
    with pytest.raises(enc.EncryptionConfigError, match="No such file"):
        enc.EncryptionConfig.load(str(tmp_path / "missing.yaml"))


def test_etcd3_hook_encrypts_only_configured_prefixes():
    tf = enc.StorageTransformers(config(gcm(("k", K1)), {"identity": {}}),
                                 [("", "secrets", "/registry/secrets/"), ("", "configmaps", "/registry/configmaps/")])
    obj = {"kind": "Secret", "metadata": {"name": "s1", "resourceVersion": "5"}, "data": {"a": "c2VjcmV0"}}
    stored = etcd3.encode(obj, key=KEY.decode(), transformers=tf)
    assert stored.startswith(b"k8s:enc:aesgcm:v1:k:") and b"c2VjcmV0" not in stored
    kv = kv_pb2.KeyValue(key=KEY, value=stored, mod_revision=7)
    assert etcd3.decode_stale(kv, transformers=tf) == (
        {"kind": "Secret", "metadata": {"name": "s1", "resourceVersion": "7"}, "data": {"a": "c2VjcmV0"}}, False)
    plain = etcd3.encode(obj, key="/registry/configmaps/default/c", transformers=tf)
    assert plain.startswith(b"{")
    legacy = kv_pb2.KeyValue(key=KEY, value=etcd3.encode(obj), mod_revision=8)
    assert etcd3.decode_stale(legacy, transformers=tf)[1] is True
    with pytest.raises(enc.TransformError, match='unable to transform key "/registry/secrets/default/s1"'):
        etcd3.decode(kv_pb2.KeyValue(key=KEY, value=b"k8s:enc:aesgcm:v1:k:garbage", mod_revision=9),
                     transformers=tf)
