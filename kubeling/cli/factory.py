"""What every command needs: the client, the namespace and resource names.

Mirrors kubectl's cmdutil.Factory: it resolves ``--kubeconfig`` (then
``$KUBECONFIG``, then the local cluster's admin kubeconfig), builds the
REST client lazily so that usage errors never touch the network, and maps
command-line resource names to the resource table.
"""
from __future__ import annotations

import functools
import os
import pathlib
import sys
from typing import TextIO

import yaml

from kubeling import config
from kubeling.api import resources as res
from kubeling.cli.errors import CLIError
from kubeling.client import Client, kubeconfig

DEFAULT_NAMESPACE = "default"


def kubeconfig_path(flag: str | None) -> str:
    """The kubeconfig to use: ``--kubeconfig``, else the first entry of
    ``$KUBECONFIG``, else ``<cluster home>/admin.kubeconfig``."""
    if flag:
        return flag
    env = os.environ.get("KUBECONFIG", "")
    for entry in env.split(os.pathsep):
        if entry:
            return entry
    return str(config.admin_kubeconfig())


def context_namespace(path: str) -> str | None:
    """The ``namespace`` of the kubeconfig's current context, None if unset or unreadable
    (kubeconfig.load reports the unreadable file when the client is made)."""
    try:
        doc = yaml.safe_load(pathlib.Path(path).read_text()) or {}
        current = doc.get("current-context")
        for ctx in doc.get("contexts") or []:
            if ctx.get("name") == current:
                return (ctx.get("context") or {}).get("namespace") or None
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    return None


def resource_for(name: str) -> res.Resource:
    """The resource a command-line name means (``po``, ``pods``, ``deploy``, ``deployments.apps``).

    Raises CLIError ``the server doesn't have a resource type "foo"``.
    """
    try:
        return res.for_name(name)
    except KeyError as e:
        raise CLIError(e.args[0]) from None


def resource_for_object(obj: dict, source: str = "") -> res.Resource:
    """The resource of a manifest object; raises CLIError "resource mapping not found" like kubectl."""
    try:
        return res.for_kind(obj.get("apiVersion", ""), obj.get("kind", ""))
    except KeyError as e:
        meta = obj.get("metadata") or {}
        raise CLIError(f'resource mapping not found for name: "{meta.get("name", "")}" namespace: '
                       f'"{meta.get("namespace", "")}" from "{source}": {e.args[0]}') from None


def kind_group(r: res.Resource) -> str:
    """``deployment.apps`` / ``service``: how kubectl names a kind in its messages."""
    return f"{r.singular}.{r.group}" if r.group else r.singular


def plural_group(r: res.Resource) -> str:
    """``deployments.apps`` / ``services``: how the apiserver names a resource in its messages."""
    return f"{r.plural}.{r.group}" if r.group else r.plural


class Factory:
    """Per-invocation context: output streams, namespace flags and a lazily made Client.

    ``namespace`` is ``-n`` (None when not given); ``effective_namespace``
    falls back to "default". Use ``async with factory.client() as c``
    inside asyncio.run. Raises KubeconfigError when the kubeconfig cannot be read.
    """

    def __init__(self, *, kubeconfig_flag: str | None = None, namespace: str | None = None,
                 request_timeout: float | None = None, out: TextIO | None = None,
                 err: TextIO | None = None):
        self.kubeconfig = kubeconfig_path(kubeconfig_flag)
        self.namespace = namespace
        self.request_timeout = request_timeout
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self._config: kubeconfig.ClusterConfig | None = None

    @functools.cached_property
    def effective_namespace(self) -> str:
        """``-n``, else the current context's namespace, else ``default`` (as kubectl)."""
        return self.namespace or context_namespace(self.kubeconfig) or DEFAULT_NAMESPACE

    @property
    def server(self) -> str | None:
        """The apiserver URL once the kubeconfig was read (for error messages)."""
        return self._config.server if self._config else None

    def cluster_config(self) -> kubeconfig.ClusterConfig:
        """The parsed kubeconfig; raises KubeconfigError (its message suggests ``make up``)."""
        if self._config is None:
            self._config = kubeconfig.load(self.kubeconfig)
        return self._config

    def client(self) -> Client:
        """A new Client for the kubeconfig's current context (an async context manager)."""
        kwargs = {"user_agent": "kubeling-cli"}
        if self.request_timeout:
            kwargs["timeout"] = self.request_timeout
        return Client(self.cluster_config(), **kwargs)

    def print(self, text: str = "") -> None:
        """Write one line to stdout and flush (watch and follow output must show at once)."""
        self.out.write(text + "\n")
        self.out.flush()

    def warn(self, text: str) -> None:
        """Write one line to stderr."""
        self.err.write(text + "\n")
        self.err.flush()
