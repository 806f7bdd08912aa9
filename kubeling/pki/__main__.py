"""``python -m kubeling.pki``: kubeadm's ``init phase certs`` and ``init phase kubeconfig`` for kubeling.

Examples::

    python -m kubeling.pki init --dir .cluster/pki --apiserver-san 127.0.0.1 --apiserver-san 10.96.0.1 \\
        --node node1 --etcd-member default
    python -m kubeling.pki kubeconfigs --dir .cluster/pki --home .cluster --server https://127.0.0.1:6443 \\
        --node node1
    python -m kubeling.pki kubeconfig --dir .cluster/pki --identity admin --server https://127.0.0.1:6443 \\
        --out admin.kubeconfig
    python -m kubeling.pki check-expiration --dir .cluster/pki

``--node NAME=IP,IP`` adds addresses to that kubelet's serving certificate. init and the kubeconfig commands are
idempotent; problems print one line and exit 1.
"""
from __future__ import annotations

import argparse
import sys

from kubeling.pki import certlist
from kubeling.pki.certs import PKIError


def _nodes(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        name, _, addrs = v.partition("=")
        out.setdefault(name, []).extend(a for a in addrs.split(",") if a)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m kubeling.pki", description="kubeling PKI (kubeadm's layout)")
    sub = p.add_subparsers(dest="cmd", required=True)
    init = sub.add_parser("init", help="create missing CAs, certificates and keys (kubeadm init phase certs all)")
    init.add_argument("--dir", required=True, help="PKI directory, e.g. .cluster/pki")
    init.add_argument("--apiserver-san", action="append", default=[],
                      help="extra IP or DNS name in the apiserver's certificate (repeatable)")
    init.add_argument("--node", action="append", default=[],
                      help="NAME or NAME=IP[,IP...]: a kubelet serving + client certificate (repeatable)")
    init.add_argument("--etcd-member", action="append", default=[], help="etcd member name (repeatable)")
    init.add_argument("--etcd-san", action="append", default=[], help="extra IP or DNS name in etcd certs")
    init.add_argument("--no-front-proxy", action="store_true", help="skip front-proxy-ca / front-proxy-client")
    kcs = sub.add_parser("kubeconfigs", help="admin, scheduler, controller-manager and per-node kubeconfigs")
    kcs.add_argument("--dir", required=True)
    kcs.add_argument("--home", required=True, help="state dir the kubeconfigs go to (admin.kubeconfig ...)")
    kcs.add_argument("--server", required=True, help="apiserver URL, e.g. https://127.0.0.1:6443")
    kcs.add_argument("--node", action="append", default=[])
    one = sub.add_parser("kubeconfig", help="one kubeconfig for one identity")
    one.add_argument("--dir", required=True)
    one.add_argument("--identity", required=True, help="admin | scheduler | controller-manager | kube-proxy | "
                                                       "nodes/NODE/kubelet-client | apiserver-kubelet-client ...")
    one.add_argument("--server", required=True)
    one.add_argument("--out", required=True)
    chk = sub.add_parser("check-expiration", help="each certificate's expiry (kubeadm certs check-expiration)")
    chk.add_argument("--dir", required=True)
    a = p.parse_args(argv)
    try:
        if a.cmd == "init":
            r = certlist.ensure(a.dir, apiserver_sans=a.apiserver_san, nodes=_nodes(a.node),
                                etcd_members=a.etcd_member or ["default"], etcd_sans=a.etcd_san,
                                front_proxy=not a.no_front_proxy)
            print(f"[certs] created {len(r.created)}: {' '.join(r.created) or '-'}")
            print(f"[certs] kept {len(r.kept)}")
        elif a.cmd == "kubeconfigs":
            for path in certlist.write_kubeconfigs(a.home, server=a.server, nodes=list(_nodes(a.node)),
                                                   pki_dir=a.dir):
                print(f"[kubeconfig] wrote {path}")
        elif a.cmd == "check-expiration":
            print(f"{'CERTIFICATE':<34} {'EXPIRES':<22} {'RESIDUAL TIME':<14} CA")
            for c in certlist.check_expiration(a.dir):
                print(f"{c['name']:<34} {c['expires'].strftime('%b %d, %Y %H:%M UTC'):<22} "
                      f"{str(c['residual_days']) + 'd':<14} {'yes' if c['ca'] else 'no'}")
        else:
            certlist.write_kubeconfig(a.out, pki_dir=a.dir, identity=a.identity, server=a.server)
            print(f"[kubeconfig] wrote {a.out}")
    except (PKIError, OSError) as e:
        print(f"kubeling.pki: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
