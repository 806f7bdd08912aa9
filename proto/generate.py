"""Regenerate the Python modules of every .proto under proto/ (``make proto``).

Runs grpc_tools.protoc with the repository root as the include path so that
generated modules import each other as ``proto.<pkg>.<name>_pb2``.
"""
import pathlib
import sys

from grpc_tools import protoc


def main() -> int:
    """Compile all proto/**/*.proto in place; returns protoc's exit status."""
    root = pathlib.Path(__file__).resolve().parent.parent
    sources = sorted(str(p.relative_to(root)) for p in (root / "proto").rglob("*.proto"))
    if not sources:
        return 0
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    args = ["protoc", f"-I{root}", f"-I{include}", f"--python_out={root}",
            f"--grpc_python_out={root}", f"--pyi_out={root}", *sources]
    return protoc.main(args)


if __name__ == "__main__":
    sys.exit(main())
