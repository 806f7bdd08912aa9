"""``kubeling``: the bundled command-line client, kubectl's verbs over kubeling's client.

Entry point of the console script. Parses the command line (flags may come
before or after the subcommand and between arguments, as with kubectl),
runs the command on asyncio, and turns every expected failure into one
readable line on stderr with exit code 1; Ctrl-C exits 130 without a
traceback. Commands live in their own modules (apply, get, describe,
delete, logs, info), as kubectl's do under pkg/cmd.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Awaitable, Callable

from kubeling.cli import apply, auth, cluster, delete, describe, get, info, join, logs, secrets, token
from kubeling.cli.errors import CLIError, error_line
from kubeling.cli.factory import Factory

Command = Callable[[argparse.Namespace, Factory], Awaitable[int]]


class _Parser(argparse.ArgumentParser):
    """argparse with kubectl's failure style: ``error: ...`` and exit code 1."""

    def error(self, message: str):
        """Raise CLIError instead of exiting, phrasing an unknown command as kubectl does (``unknown command "x"``)."""
        if message.startswith("argument COMMAND: invalid choice:"):
            bad = message.split("'")[1] if "'" in message else message
            message = f'unknown command "{bad}" for "kubeling"'
        raise CLIError(message)


def _common() -> argparse.ArgumentParser:
    # SUPPRESS keeps a subcommand's unset flag from overwriting one given before the subcommand.
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--kubeconfig", default=argparse.SUPPRESS,
                   help="path to the kubeconfig file (default: $KUBECONFIG, else .cluster/admin.kubeconfig)")
    p.add_argument("-n", "--namespace", default=argparse.SUPPRESS, help="namespace of the request")
    p.add_argument("--request-timeout", default=argparse.SUPPRESS,
                   help="how long to wait for one server answer, e.g. 5s (0: the client's default)")
    return p


def _files(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], help=f"file, directory or - with {what}")
    p.add_argument("-R", "--recursive", action="store_true", help="process directories under -f recursively")


def _selection(p: argparse.ArgumentParser, *, fields: bool = True) -> None:
    p.add_argument("-A", "--all-namespaces", action="store_true", help="across all namespaces")
    p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier!=db")
    if fields:
        p.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")


def build_parser() -> argparse.ArgumentParser:
    """The full command-line grammar (each subparser's ``func`` is its Command)."""
    common = _common()
    parser = _Parser(prog="kubeling", parents=[common],
                     description="kubeling controls a kubeling cluster, as kubectl controls Kubernetes.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("apply", parents=[common], help="create or update objects from manifests")
    _files(p, "the manifests to apply")
    p.add_argument("-o", "--output", choices=["name"], help="print only resource/name")
    p.add_argument("--dry-run", nargs="?", const="client", default="none", choices=["none", "client"],
                   help="only print what would be sent")
    p.set_defaults(func=apply.run, args=[])

    p = sub.add_parser("get", parents=[common], help="display one or many objects")
    p.add_argument("args", nargs="*", metavar="TYPE[.GROUP][/NAME] [NAME...]")
    _files(p, "manifests naming the objects")
    _selection(p)
    p.add_argument("-o", "--output", help="wide, yaml, json, name or jsonpath=TEMPLATE")
    p.add_argument("--show-labels", action="store_true", help="add a LABELS column")
    p.add_argument("-w", "--watch", action="store_true", help="after listing, watch for changes")
    p.add_argument("--watch-only", action="store_true", help="watch for changes without listing first")
    p.add_argument("--no-headers", action="store_true", help="no table header")
    p.set_defaults(func=get.run)

    p = sub.add_parser("describe", parents=[common], help="show details of objects, with their events")
    p.add_argument("args", nargs="*", metavar="TYPE [NAME_PREFIX]")
    _files(p, "manifests naming the objects")
    _selection(p, fields=False)
    p.set_defaults(func=describe.run)

    p = sub.add_parser("delete", parents=[common], help="delete objects by name, selector or manifest")
    p.add_argument("args", nargs="*", metavar="TYPE[/NAME] [NAME...]")
    _files(p, "manifests naming the objects")
    _selection(p)
    p.add_argument("--all", action="store_true", help="delete every object of the type in the namespace")
    p.add_argument("--cascade", nargs="?", const="background", default="background",
                   help="background (default), foreground (wait for dependents too) or orphan")
    p.add_argument("--wait", nargs="?", const="true", default="true",
                   help="wait until the objects are gone (default true)")
    p.add_argument("--timeout", default="60s", help="how long to wait, e.g. 60s, 2m (default 60s)")
    p.add_argument("--ignore-not-found", action="store_true", help="a missing object is not an error")
    p.add_argument("--grace-period", type=int, default=None, help="seconds the pods get to stop")
    p.add_argument("--now", action="store_true", help="grace period of 1 second")
    p.add_argument("--force", action="store_true", help="delete immediately (grace period 0)")
    p.set_defaults(func=delete.run)

    p = sub.add_parser("logs", parents=[common], help="print a container's log")
    p.add_argument("args", nargs="*", metavar="POD|TYPE/NAME [CONTAINER]")
    p.add_argument("-c", "--container", help="container name")
    p.add_argument("-f", "--follow", action="store_true", help="stream new lines as they come")
    p.add_argument("--tail", type=int, default=-1, help="only the last N lines")
    p.add_argument("--timestamps", action="store_true", help="prefix lines with their RFC 3339 time")
    p.add_argument("-p", "--previous", action="store_true", help="the previous instance's log")
    p.set_defaults(func=logs.run)

    p = sub.add_parser("version", parents=[common], help="client and server versions")
    p.add_argument("--client", action="store_true", help="client version only")
    p.add_argument("-o", "--output", help="yaml or json")
    p.set_defaults(func=info.version, args=[])

    p = sub.add_parser("cluster-info", parents=[common], help="where the control plane runs")
    p.set_defaults(func=info.cluster_info, args=[])

    p = sub.add_parser("api-resources", parents=[common], help="the resource types kubeling knows")
    p.add_argument("--namespaced", help="true or false: only namespaced or cluster-scoped kinds")
    p.add_argument("-o", "--output", choices=["name", "wide"], help="name: plural.group only")
    p.add_argument("--no-headers", action="store_true", help="no table header")
    p.set_defaults(func=info.api_resources, args=[])

    p = sub.add_parser("auth", parents=[common], help="inspect authorization: can-i VERB TYPE[/NAME], whoami")
    p.add_argument("action", choices=["can-i", "whoami"])
    p.add_argument("-A", "--all-namespaces", action="store_true", help="can-i: in any namespace")
    p.add_argument("--subresource", help="can-i: the subresource, e.g. log")
    p.add_argument("-q", "--quiet", action="store_true", help="can-i: no output, only the exit code")
    p.add_argument("-o", "--output", help="whoami: yaml or json")
    p.set_defaults(func=auth.run, args=[])

    p = sub.add_parser("secrets", parents=[common], help="operations on all Secrets")
    p.add_argument("action", choices=["reencrypt"],
                   help="reencrypt: rewrite every Secret (all namespaces, or -n) under the current encryption key")
    p.set_defaults(func=secrets.reencrypt, args=[])
    cluster.add_parsers(sub, common)
    token.add_parser(sub, common)
    join.add_parser(sub, common)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; positional words after flags join the command's arguments.

    Raises CLIError for unknown flags and malformed values.
    """
    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    for word in extras:
        if word.startswith("-") and word != "-":
            raise CLIError(f"unknown flag: {word.split('=', 1)[0]}")
        if not hasattr(args, "args") or args.command in ("apply", "version", "cluster-info", "api-resources",
                                                          "secrets"):
            raise CLIError(f'unknown command "{word}" for "kubeling {args.command}"')
        args.args.append(word)
    return args


def run(argv: list[str], *, out=None, err=None) -> int:
    """Run one command line; returns the exit code (0 ok, 1 error, 130 interrupted)."""
    stderr = err or sys.stderr
    factory: Factory | None = None
    try:
        args = parse(argv)
        if not args.command:
            build_parser().print_help(out or sys.stdout)
            return 0
        factory = Factory(kubeconfig_flag=getattr(args, "kubeconfig", None),
                          namespace=getattr(args, "namespace", None),
                          request_timeout=delete.parse_duration(getattr(args, "request_timeout", "0"),
                                                                "request-timeout"),
                          out=out, err=err)
        return asyncio.run(args.func(args, factory))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep the final flush from failing too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except SystemExit as e:  # argparse's --help
        return int(e.code or 0) if isinstance(e.code, int) else 1
    except Exception as e:  # every failure is one line, never a traceback
        stderr.write(error_line(e, server=factory.server if factory else None) + "\n")
        stderr.flush()
        return 1


def main() -> None:
    """Console-script entry point: ``kubeling COMMAND [flags]``."""
    sys.exit(run(sys.argv[1:]))
