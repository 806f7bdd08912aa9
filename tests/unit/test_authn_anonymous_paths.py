"""Anonymous requests limited to some paths by an AuthenticationConfiguration (upstream's
AnonymousAuthConfigurableEndpoints): elsewhere a request without credentials is 401."""
import pytest
from starlette.requests import HTTPConnection

from apiserver.authn.filter import RequestAuthenticator
from apiserver.authn.options import read_authentication_config
from deploy.cluster import AUTHN_CONFIG

CONFIG = AUTHN_CONFIG  # what `make up` writes


def conn(path: str) -> HTTPConnection:
    return HTTPConnection({"type": "http", "path": path, "headers": [], "query_string": b"",
                           "scheme": "https", "server": ("127.0.0.1", 6443)})


async def test_anonymous_only_on_the_configured_paths(tmp_path):
    f = tmp_path / "authn.yaml"
    f.write_text(CONFIG)
    enabled, paths = read_authentication_config(str(f))
    assert enabled and paths == {"/livez", "/readyz", "/healthz", "/version"}
    a = RequestAuthenticator(anonymous=enabled, anonymous_paths=paths)
    assert (await a.authenticate(conn("/readyz"))).name == "system:anonymous"
    assert await a.authenticate(conn("/api/v1/pods")) is None, "no credentials elsewhere -> 401"
    assert (await RequestAuthenticator(anonymous=True).authenticate(conn("/api/v1/pods"))).name == \
        "system:anonymous", "--anonymous-auth alone still allows any path"


@pytest.mark.parametrize("text, why", [
    ("kind: Other\napiVersion: v1", "want kind AuthenticationConfiguration"),
    (CONFIG + "jwt: []\n", "jwt: not supported"),
    (CONFIG.replace("enabled: true", "enabled: false"), "only allowed when enabled"),
    (CONFIG.replace("path: /livez", "path: livez"), r"conditions\[0\].path"),
])
def test_bad_configs_name_the_field(tmp_path, text, why):
    f = tmp_path / "authn.yaml"
    f.write_text(text)
    with pytest.raises(ValueError, match=why):
        read_authentication_config(str(f))
