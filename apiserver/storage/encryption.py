"""Encryption at rest: the value transformers between the apiserver's object bytes and what etcd stores.

Mirrors k8s.io/apiserver's ``pkg/storage/value`` (Transformer,
PrefixTransformers) with ``encrypt/aes`` (GCM and CBC) and
``pkg/server/options/encryptionconfig`` (the EncryptionConfiguration file of
``--encryption-provider-config``):

- an ``aesgcm`` key named ``key1`` stores ``k8s:enc:aesgcm:v1:key1:`` +
  12-byte random nonce + AES-GCM ciphertext and tag, with the etcd key as
  additional authenticated data (a value copied under another key does
  not decrypt), as upstream's gcm transformer with the etcd3 store's
  authenticated data;
- an ``aescbc`` key stores ``k8s:enc:aescbc:v1:<name>:`` + 16-byte random IV
  + AES-CBC ciphertext of the PKCS#7-padded value (no authenticated data,
  as upstream);
- ``identity`` stores the value as is and, when listed, reads values
  written before encryption was turned on.

The first provider's first key encrypts every write; reads try each key by
its prefix, in order. A value read with any key but the first is "stale"
(upstream's stale flag): the store then rewrites it on an update even when
the object did not change, which is how re-encryption after a key rotation
works (``kubeling secrets reencrypt``). ``secretbox`` and ``kms`` providers
are refused with a clear error (not implemented).
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Iterable, Protocol

import yaml
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM as _AESGCM
from cryptography.exceptions import InvalidTag

API_VERSIONS = ("apiserver.config.k8s.io/v1", "apiserver.config.k8s.io/v1beta1")
AES_KEY_SIZES = (16, 24, 32)
ENCRYPTED_PREFIX = b"k8s:enc:"
GCM_NONCE_SIZE = 12
CBC_BLOCK_SIZE = 16


class EncryptionConfigError(ValueError):
    """The EncryptionConfiguration file is unreadable or invalid; the message names the field."""


class TransformError(Exception):
    """A stored value could not be decrypted (wrong key, corrupt data, no provider for its prefix)."""


class Transformer(Protocol):
    """Turns object bytes into stored bytes and back (value.Transformer); ``context`` is the etcd key."""

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        """The bytes to store for ``data`` under the etcd key ``context``."""

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        """(object bytes, stale) of a stored value; raises TransformError."""


class Identity:
    """The identity provider: stores plaintext; refuses to "decrypt" a value that is encrypted."""

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        """``data`` unchanged."""
        return data

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        """``data`` unchanged; TransformError for a ``k8s:enc:`` value (upstream's encrypt-check identity)."""
        if data.startswith(ENCRYPTED_PREFIX):
            raise TransformError("identity transformer tried to read encrypted data")
        return data, False


class AESGCM:
    """AES-GCM with a random 12-byte nonce before the ciphertext and the etcd key as authenticated data."""

    def __init__(self, key: bytes):
        self.aead = _AESGCM(key)

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        """nonce || ciphertext || tag."""
        nonce = os.urandom(GCM_NONCE_SIZE)
        return nonce + self.aead.encrypt(nonce, data, context)

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        """The plaintext; TransformError when the value is short, altered or under another key/etcd key."""
        if len(data) < GCM_NONCE_SIZE:
            raise TransformError("the stored data was shorter than the required size")
        try:
            return self.aead.decrypt(data[:GCM_NONCE_SIZE], data[GCM_NONCE_SIZE:], context), False
        except InvalidTag:
            raise TransformError("cipher: message authentication failed") from None


class AESCBC:
    """AES-CBC with a random 16-byte IV before the ciphertext of the PKCS#7-padded value."""

    def __init__(self, key: bytes):
        self.key = key

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        """iv || ciphertext."""
        iv = os.urandom(CBC_BLOCK_SIZE)
        padder = padding.PKCS7(CBC_BLOCK_SIZE * 8).padder()
        enc = Cipher(algorithms.AES(self.key), modes.CBC(iv)).encryptor()
        return iv + enc.update(padder.update(data) + padder.finalize()) + enc.finalize()

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        """The plaintext; TransformError for a short value, a bad block size or bad padding."""
        if len(data) < CBC_BLOCK_SIZE:
            raise TransformError("the stored data was shorter than the required size")
        body = data[CBC_BLOCK_SIZE:]
        if len(body) % CBC_BLOCK_SIZE:
            raise TransformError("the stored data is not a multiple of the block size")
        dec = Cipher(algorithms.AES(self.key), modes.CBC(data[:CBC_BLOCK_SIZE])).decryptor()
        unpadder = padding.PKCS7(CBC_BLOCK_SIZE * 8).unpadder()
        try:
            return unpadder.update(dec.update(body) + dec.finalize()) + unpadder.finalize(), False
        except ValueError:
            raise TransformError("invalid PKCS7 padding") from None


@dataclass(frozen=True)
class PrefixTransformer:
    """One key of one provider: the prefix marking its values and the transformer behind it."""

    prefix: bytes
    transformer: Transformer


class PrefixTransformers:
    """The providers of one resource in order (value.NewPrefixTransformers): the first writes, all read."""

    def __init__(self, transformers: list[PrefixTransformer]):
        if not transformers:
            raise ValueError("at least one provider is needed")
        self.transformers = transformers

    @property
    def write_prefix(self) -> bytes:
        """The prefix of what new writes store (``b""`` when identity comes first)."""
        return self.transformers[0].prefix

    def to_storage(self, data: bytes, context: bytes) -> bytes:
        """Encrypt with the first provider's first key: prefix + its output."""
        first = self.transformers[0]
        return first.prefix + first.transformer.to_storage(data, context)

    def from_storage(self, data: bytes, context: bytes) -> tuple[bytes, bool]:
        """(plaintext, stale): the first provider whose prefix the value has decrypts it; stale unless that is
        the first one. An identity listed before the encrypting providers does not hide them (it is skipped
        for encrypted values). Raises TransformError when none can."""
        errs = []
        for i, t in enumerate(self.transformers):
            if not data.startswith(t.prefix):
                continue
            try:
                out, stale = t.transformer.from_storage(data[len(t.prefix):], context)
            except TransformError as e:
                if not t.prefix:
                    continue
                errs.append(str(e))
                continue
            return out, stale or i != 0
        if errs:
            raise TransformError(errs[0] if len(errs) == 1 else "[" + ", ".join(errs) + "]")
        raise TransformError("no matching prefix found")


def _decode_key(path: str, key: dict, sizes: Iterable[int]) -> tuple[str, bytes]:
    if not isinstance(key, dict):
        raise EncryptionConfigError(f"{path}: must be an object with name and secret")
    name, secret = key.get("name"), key.get("secret")
    if not name or not isinstance(name, str):
        raise EncryptionConfigError(f"{path}.name: Required value")
    if ":" in name:
        raise EncryptionConfigError(f"{path}.name: Invalid value: {name!r}: should not contain ':'")
    if not secret or not isinstance(secret, str):
        raise EncryptionConfigError(f"{path}.secret: Required value")
    try:
        raw = base64.b64decode(secret, validate=True)
    except ValueError:
        raise EncryptionConfigError(f"{path}.secret: Invalid value: REDACTED: secrets must be base64 encoded") \
            from None
    if len(raw) not in sizes:
        raise EncryptionConfigError(f"{path}.secret: Invalid value: REDACTED: secret is not of the expected "
                                    f"length, got {len(raw)}, expected one of {list(sizes)}")
    return name, raw


def providers_from(path: str, providers) -> PrefixTransformers:
    """The PrefixTransformers of one ``resources[i].providers`` list; raises EncryptionConfigError."""
    if not isinstance(providers, list) or not providers:
        raise EncryptionConfigError(f"{path}: Required value: at least one provider is required")
    out: list[PrefixTransformer] = []
    for i, p in enumerate(providers):
        ppath = f"{path}[{i}]"
        if not isinstance(p, dict) or len(p) != 1:
            raise EncryptionConfigError(f"{ppath}: Invalid value: exactly one provider must be configured")
        (kind, conf), = p.items()
        if kind == "identity":
            out.append(PrefixTransformer(b"", Identity()))
        elif kind in ("aesgcm", "aescbc"):
            keys = (conf or {}).get("keys") if isinstance(conf, dict) else None
            if not isinstance(keys, list) or not keys:
                raise EncryptionConfigError(f"{ppath}.{kind}.keys: Required value: at least one key is required")
            seen = set()
            for j, key in enumerate(keys):
                name, raw = _decode_key(f"{ppath}.{kind}.keys[{j}]", key, AES_KEY_SIZES)
                if name in seen:
                    raise EncryptionConfigError(f"{ppath}.{kind}.keys[{j}].name: Duplicate value: {name!r}")
                seen.add(name)
                cls = AESGCM if kind == "aesgcm" else AESCBC
                out.append(PrefixTransformer(f"k8s:enc:{kind}:v1:{name}:".encode(), cls(raw)))
        elif kind in ("secretbox", "kms"):
            raise EncryptionConfigError(f"{ppath}.{kind}: the {kind} provider is not supported by kubeling "
                                        f"(use aesgcm or aescbc)")
        else:
            raise EncryptionConfigError(f"{ppath}: unknown provider {kind!r} (aesgcm, aescbc, identity)")
    return PrefixTransformers(out)


def _matches(pattern: str, group: str, resource: str) -> bool:
    """A ``resources`` entry name: ``secrets``, ``deployments.apps``, ``*.apps``, ``*.`` (core), ``*.*``."""
    name, _, pgroup = pattern.partition(".")
    if name == "*":
        return pgroup == "*" or pgroup == group
    return name == resource and pgroup == group


class EncryptionConfig:
    """A parsed EncryptionConfiguration: ordered (resource names, PrefixTransformers) entries."""

    def __init__(self, entries: list[tuple[list[str], PrefixTransformers]]):
        self.entries = entries

    @classmethod
    def load(cls, path: str) -> "EncryptionConfig":
        """Read and validate the file; raises EncryptionConfigError with the offending field."""
        try:
            with open(path, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
        except OSError as e:
            raise EncryptionConfigError(f"{path}: {e.strerror}") from None
        except yaml.YAMLError as e:
            raise EncryptionConfigError(f"{path}: not YAML: {e}") from None
        return cls.parse(doc)

    @classmethod
    def parse(cls, doc) -> "EncryptionConfig":
        """From the decoded document; raises EncryptionConfigError."""
        if not isinstance(doc, dict):
            raise EncryptionConfigError("the encryption configuration must be an object")
        if doc.get("kind") != "EncryptionConfiguration" or doc.get("apiVersion") not in API_VERSIONS:
            raise EncryptionConfigError(f"kind/apiVersion must be EncryptionConfiguration/{API_VERSIONS[0]}, "
                                        f"got {doc.get('kind')}/{doc.get('apiVersion')}")
        resources = doc.get("resources")
        if not isinstance(resources, list) or not resources:
            raise EncryptionConfigError("resources: Required value: at least one resource is required")
        entries = []
        for i, r in enumerate(resources):
            names = r.get("resources") if isinstance(r, dict) else None
            if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
                raise EncryptionConfigError(f"resources[{i}].resources: Required value: at least one resource "
                                            f"is required")
            entries.append((names, providers_from(f"resources[{i}].providers", r.get("providers"))))
        return cls(entries)

    def for_resource(self, group: str, resource: str) -> PrefixTransformers | None:
        """The providers of ``group``/``resource`` (the first entry naming it), or None (stored as is)."""
        for names, transformers in self.entries:
            if any(_matches(n, group, resource) for n in names):
                return transformers
        return None


class StorageTransformers:
    """Per etcd key, the PrefixTransformers of the resource stored there (what Etcd3Store consults).

    Built from the config and the served resources' ``(group, resource,
    key prefix)``; keys of other resources (and non-object keys) get None.
    """

    def __init__(self, config: EncryptionConfig, resources: Iterable[tuple[str, str, str]]):
        self.by_prefix: list[tuple[str, PrefixTransformers]] = []
        for group, resource, prefix in resources:
            t = config.for_resource(group, resource)
            if t is not None:
                self.by_prefix.append((prefix, t))
        self.by_prefix.sort(key=lambda p: -len(p[0]))  # the most specific prefix wins

    def for_key(self, key: str) -> PrefixTransformers | None:
        """The transformers for the value at ``key``, or None."""
        for prefix, t in self.by_prefix:
            if key.startswith(prefix):
                return t
        return None
