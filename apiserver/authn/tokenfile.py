"""Static bearer tokens from ``--token-auth-file``.

Mirrors k8s.io/apiserver's ``pkg/authentication/token/tokenfile``: a CSV
file, one ``token,user,uid,"group1,group2"`` line each (the groups column is
optional; lines starting with ``#`` are skipped); a request whose bearer token
is one of them is that user.
"""
from __future__ import annotations

import csv
import io

from apiserver.authn import UserInfo


def parse(text: str, *, source: str = "token file") -> dict[str, UserInfo]:
    """token -> UserInfo from the CSV ``text``; ValueError naming the line for a short or empty entry,
    as upstream's NewCSV ("token file 'x' must have at least 3 columns")."""
    tokens: dict[str, UserInfo] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or (len(row) == 1 and not row[0].strip()) or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 3:
            raise ValueError(f"{source}: line {n}: a token file must have at least 3 columns (token,user,uid)")
        token, name, uid = row[0].strip(), row[1].strip(), row[2].strip()
        if not token or not name:
            raise ValueError(f"{source}: line {n}: empty token or user name")
        groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
        tokens[token] = UserInfo(name, groups, uid=uid)
    return tokens


class TokenFileAuthenticator:
    """``--token-auth-file``: bearer token -> the user of its CSV line (None for other tokens)."""

    def __init__(self, tokens: dict[str, UserInfo]):
        self.tokens = tokens

    @classmethod
    def from_file(cls, path: str) -> "TokenFileAuthenticator":
        """Read and parse ``path``; OSError / ValueError with the path for a missing or malformed file."""
        with open(path, encoding="utf-8") as f:
            return cls(parse(f.read(), source=path))

    async def authenticate_token(self, token: str) -> UserInfo | None:
        """The user of ``token``, None when the file does not hold it (a map look-up, as upstream)."""
        return self.tokens.get(token)
