"""The authentication and authorization flags of kube-apiserver, and the chains they build.

Mirrors pkg/kubeapiserver/options/{authentication,authorization}.go and
pkg/kubeapiserver/{authenticator,authorizer}/config.go: the flags keep
upstream's names and meanings; ``build`` turns them into the request
authenticator (None when no authentication flag is set: every request stays
the all-powerful anonymous user of kubeling's plain-HTTP default), the
authorizer union of ``--authorization-mode``, the ServiceAccount token
generator and the TokenRequest defaults.
"""
from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field

from apiserver import errors
from apiserver.authn import bootstrap, serviceaccount, tokenfile, x509
from apiserver.authn.filter import RequestAuthenticator
from apiserver.authz import AlwaysAllow, AlwaysDeny, Union
from apiserver.authz.node import Graph, NodeAuthorizer
from apiserver.authz.rbac import CachedPolicy, RBACAuthorizer
from kubeling.duration import flag_duration

log = logging.getLogger(__name__)

MODES = ("AlwaysAllow", "AlwaysDeny", "Node", "RBAC")


@dataclass
class AuthOptions:
    """Authentication and authorization flags (``client_ca_file`` is the serving flag's, shared)."""

    anonymous_auth: bool = True
    # AuthenticationConfiguration's anonymous.conditions: the only paths anonymous requests may
    # use (None: any path, as --anonymous-auth); others get 401.
    anonymous_paths: frozenset[str] | None = None
    token_auth_file: str | None = None
    service_account_key_files: list[str] = field(default_factory=list)
    service_account_signing_key_file: str | None = None
    service_account_issuers: list[str] = field(default_factory=list)
    api_audiences: list[str] = field(default_factory=list)
    service_account_max_token_expiration: float = 0.0
    service_account_lookup: bool = True
    enable_bootstrap_token_auth: bool = False
    authorization_modes: list[str] = field(default_factory=lambda: ["AlwaysAllow"])

    def authentication_configured(self, client_ca_file: str | None) -> bool:
        """Whether any authenticator flag is set (else the legacy all-allowed anonymous user applies)."""
        return bool(client_ca_file or self.token_auth_file or self.service_account_key_files
                    or self.service_account_signing_key_file or self.enable_bootstrap_token_auth)


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "t", "yes"):
        return True
    if t in ("false", "0", "f", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r}")


def add_flags(p: argparse.ArgumentParser) -> None:
    """Add upstream's authentication/authorization flags to the apiserver's parser."""
    g = p.add_argument_group("authentication and authorization")
    g.add_argument("--anonymous-auth", type=_bool, nargs="?", const=True, default=True,
                   help="requests without credentials are system:anonymous (default true); false: 401")
    g.add_argument("--authentication-config", default=None,
                   help="AuthenticationConfiguration file (apiserver.config.k8s.io); kubeling reads its "
                        "anonymous section: enabled and the paths (conditions) anonymous requests may use")
    g.add_argument("--token-auth-file", default=None, help='static bearer tokens, CSV: token,user,uid,"g1,g2"')
    g.add_argument("--service-account-key-file", action="append", default=[],
                   help="PEM public (or private) keys verifying ServiceAccount tokens; repeatable")
    g.add_argument("--service-account-signing-key-file", default=None,
                   help="PEM private key signing ServiceAccount tokens (TokenRequest)")
    g.add_argument("--service-account-issuer", action="append", default=[],
                   help="iss of issued tokens (the first) and accepted issuers; repeatable")
    g.add_argument("--api-audiences", default="",
                   help="comma-separated audiences tokens must carry (default: the issuers)")
    g.add_argument("--service-account-max-token-expiration", type=flag_duration, default=0.0,
                   help="cap of TokenRequest expirationSeconds (e.g. 24h; default none)")
    g.add_argument("--service-account-lookup", type=_bool, nargs="?", const=True, default=True,
                   help="check that the ServiceAccount and bound objects of a token still exist (default true)")
    g.add_argument("--enable-bootstrap-token-auth", type=_bool, nargs="?", const=True, default=False,
                   help="accept bootstrap tokens (kube-system secrets bootstrap-token-<id>)")
    g.add_argument("--authorization-mode", default="AlwaysAllow",
                   help=f"comma-separated authorizers in order, of {', '.join(MODES)} (default AlwaysAllow)")


AUTHN_CONFIG_VERSIONS = ("apiserver.config.k8s.io/v1alpha1", "apiserver.config.k8s.io/v1beta1",
                         "apiserver.config.k8s.io/v1")


def read_authentication_config(path: str) -> tuple[bool, frozenset[str] | None]:
    """(anonymous enabled, allowed paths or None) from an AuthenticationConfiguration file (upstream's
    structured authentication config, anonymous section as AnonymousAuthConfigurableEndpoints).
    Raises ValueError naming the field for a bad file or a section kubeling does not implement."""
    import yaml

    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except OSError as e:
        raise ValueError(f"--authentication-config: {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"--authentication-config: {path}: not YAML: {e}") from None
    if not isinstance(doc, dict) or doc.get("kind") != "AuthenticationConfiguration" \
            or doc.get("apiVersion") not in AUTHN_CONFIG_VERSIONS:
        raise ValueError(f"--authentication-config: {path}: want kind AuthenticationConfiguration of "
                         f"{', '.join(AUTHN_CONFIG_VERSIONS)}")
    for key in doc:
        if key not in ("apiVersion", "kind", "anonymous"):
            raise ValueError(f"--authentication-config: {key}: not supported by kubeling (only anonymous)")
    anon = doc.get("anonymous") or {}
    if not isinstance(anon, dict) or not isinstance(anon.get("enabled", False), bool):
        raise ValueError("--authentication-config: anonymous.enabled: must be true or false")
    paths = []
    for i, c in enumerate(anon.get("conditions") or []):
        if not isinstance(c, dict) or not isinstance(c.get("path"), str) or not c["path"].startswith("/"):
            raise ValueError(f"--authentication-config: anonymous.conditions[{i}].path: must be an absolute path")
        paths.append(c["path"])
    if paths and not anon.get("enabled"):
        raise ValueError("--authentication-config: anonymous.conditions: only allowed when enabled is true")
    return bool(anon.get("enabled")), (frozenset(paths) if paths else None)


def from_args(a: argparse.Namespace) -> AuthOptions:
    """AuthOptions from parsed flags; ValueError with the flag's name for inconsistent values."""
    modes = [m.strip() for m in a.authorization_mode.split(",") if m.strip()]
    if not modes:
        raise ValueError("--authorization-mode: at least one mode is required")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"--authorization-mode: unknown mode {m!r} (supported: {', '.join(MODES)})")
    if len(set(modes)) != len(modes):
        raise ValueError(f"--authorization-mode: {a.authorization_mode!r} has a duplicate mode")
    for flag, paths in (("--token-auth-file", [a.token_auth_file]), ("--service-account-key-file",
                        a.service_account_key_file), ("--service-account-signing-key-file",
                                                      [a.service_account_signing_key_file])):
        for path in paths:
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"{flag}: {path}: no such file")
    if a.service_account_signing_key_file and not a.service_account_issuer:
        raise ValueError("--service-account-issuer is required with --service-account-signing-key-file")
    if a.service_account_key_file and not a.service_account_issuer:
        raise ValueError("--service-account-issuer is required with --service-account-key-file")
    anonymous, anonymous_paths = a.anonymous_auth, None
    if a.authentication_config:
        anonymous, anonymous_paths = read_authentication_config(a.authentication_config)
    return AuthOptions(anonymous_auth=anonymous, anonymous_paths=anonymous_paths,
                       token_auth_file=a.token_auth_file,
                       service_account_key_files=list(a.service_account_key_file),
                       service_account_signing_key_file=a.service_account_signing_key_file,
                       service_account_issuers=list(a.service_account_issuer),
                       api_audiences=[x.strip() for x in a.api_audiences.split(",") if x.strip()],
                       service_account_max_token_expiration=a.service_account_max_token_expiration,
                       service_account_lookup=a.service_account_lookup,
                       enable_bootstrap_token_auth=a.enable_bootstrap_token_auth, authorization_modes=modes)


@dataclass
class Built:
    """What ``build`` returns: the request authenticator (None: legacy all-allowed), the authorizer,
    the token generator (None without a signing key), the default audiences and token cap, the keys."""

    authenticator: RequestAuthenticator | None
    authorizer: object
    generator: serviceaccount.TokenGenerator | None
    audiences: list[str]
    max_expiration: float
    public_keys: list = field(default_factory=list)  # ServiceAccount verification keys (issuer discovery)


def build(opts: AuthOptions, *, client_ca_file: str | None, store) -> Built:
    """Build the chains; ``store(resource, group="")`` is the apiserver's Store lookup, read through the
    watch caches (a cache miss falls back to the Store's get, as upstream's lister-then-client getters).
    Raises OSError / ValueError for unreadable or malformed key, CA and token files."""

    async def get(resource: str, namespace: str | None, name: str) -> dict | None:
        s = store(resource)
        obj = s.cacher.items.get(s.info.key(namespace, name))
        if obj is not None:
            return obj
        try:
            return await s.get(namespace, name)
        except errors.StatusError:
            return None

    async def get_secret(namespace: str, name: str) -> dict | None:
        return await get("secrets", namespace, name)

    audiences = opts.api_audiences or list(opts.service_account_issuers)
    generator = None
    if opts.service_account_signing_key_file:
        generator = serviceaccount.TokenGenerator(
            serviceaccount.load_private_key(opts.service_account_signing_key_file), opts.service_account_issuers[0])
    authenticator = None
    key_files = opts.service_account_key_files or (
        [opts.service_account_signing_key_file] if opts.service_account_signing_key_file else [])
    keys = [k for f in key_files for k in serviceaccount.load_public_keys(f)]
    if opts.authentication_configured(client_ca_file):
        tokens: list = []
        if opts.token_auth_file:
            tokens.append(tokenfile.TokenFileAuthenticator.from_file(opts.token_auth_file))
        if keys:
            tokens.append(serviceaccount.ServiceAccountAuthenticator(
                keys, opts.service_account_issuers, api_audiences=audiences,
                get=get if opts.service_account_lookup else None))
        if opts.enable_bootstrap_token_auth:
            tokens.append(bootstrap.BootstrapTokenAuthenticator(get_secret))
        cert = x509.X509Authenticator(x509.load_ca_bundle(client_ca_file)) if client_ca_file else None
        authenticator = RequestAuthenticator(x509=cert, tokens=tokens, anonymous=opts.anonymous_auth,
                                             anonymous_paths=opts.anonymous_paths)
    return Built(authenticator, build_authorizer(opts.authorization_modes, store), generator, audiences,
                 opts.service_account_max_token_expiration, keys)


def build_authorizer(modes: list[str], store):
    """The authorizer of ``--authorization-mode``: AlwaysAllow alone stays the plain AlwaysAllow (no
    system:masters short-cut needed); otherwise a Union in the given order."""
    if modes == ["AlwaysAllow"]:
        return AlwaysAllow()
    members = []
    for m in modes:
        if m == "AlwaysAllow":
            members.append(AlwaysAllow())
        elif m == "AlwaysDeny":
            members.append(AlwaysDeny())
        elif m == "RBAC":
            rbac_group = "rbac.authorization.k8s.io"
            members.append(RBACAuthorizer(CachedPolicy({r: store(r, rbac_group) for r in (
                "roles", "rolebindings", "clusterroles", "clusterrolebindings")})))
        elif m == "Node":
            pods = store("pods")
            members.append(NodeAuthorizer(Graph(lambda: pods.cacher.items, revision=lambda: pods.cacher.revision)))
    return Union(members)
