"""kubeling's PKI: the cluster's CAs, certificates and kubeconfigs, made as kubeadm makes them.

``ensure(pki_dir, ...)`` creates what is missing under ``<home>/pki`` in kubeadm's layout
(see certlist); ``write_kubeconfigs(home, server=...)`` writes a kubeconfig per identity with
the certificates embedded; ``serving`` turns cert/key/client-CA flags into a uvicorn TLS
listener whose verified client certificate reaches the app as the ASGI TLS extension;
``flags`` gives each component's TLS flags for those files (kubeadm's manifests).
``python -m kubeling.pki init ...`` is the same from the command line.
"""
from kubeling.pki.certlist import (IDENTITIES, Result, cert_specs, check_expiration, ensure, write_kubeconfig,
                                   write_kubeconfigs)
from kubeling.pki.certs import PKIError

__all__ = ["IDENTITIES", "PKIError", "Result", "cert_specs", "check_expiration", "ensure", "write_kubeconfig",
           "write_kubeconfigs"]
