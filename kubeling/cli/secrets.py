"""``kubeling secrets reencrypt``: rewrite every Secret so it is stored under the current encryption key.

After a key rotation in the apiserver's EncryptionConfiguration (a new key
first, the old one still listed), existing Secrets stay encrypted with the
old key until they are written again. Upstream's documented way is
``kubectl get secrets --all-namespaces -o json | kubectl replace -f -``;
this command does the same: a conditional PUT of each Secret as it is,
which the apiserver writes (with the first key) whenever the stored value
was read with another key, and skips otherwise. A Secret changed meanwhile
(409) is read again and retried; one deleted meanwhile is skipped.
"""
from __future__ import annotations

from kubeling.cli.factory import Factory
from kubeling.client import ApiError

MAX_ATTEMPTS = 5


async def reencrypt(args, f: Factory) -> int:
    """``secrets reencrypt [-n NAMESPACE]``: every Secret of all namespaces (or of ``-n``); prints
    ``secret/NAME replaced`` per Secret, as ``kubectl replace`` does."""
    namespace = getattr(args, "namespace", None)
    async with f.client() as c:
        listed = await c.list("secrets", namespace=namespace)
        for secret in listed.get("items") or []:
            meta = secret["metadata"]
            for _ in range(MAX_ATTEMPTS):
                try:
                    await c.replace("secrets", {**secret, "apiVersion": "v1", "kind": "Secret"})
                    f.print(f"secret/{meta['name']} replaced" + ("" if namespace else f" ({meta['namespace']})"))
                    break
                except ApiError as e:
                    if e.code == 404:
                        break
                    if e.code != 409:
                        raise
                try:
                    secret = await c.get("secrets", meta["name"], namespace=meta["namespace"])
                except ApiError as e:
                    if e.code == 404:
                        break
                    raise
            else:
                f.warn(f"secret/{meta['name']} ({meta['namespace']}) kept changing; run the command again")
                return 1
    return 0
