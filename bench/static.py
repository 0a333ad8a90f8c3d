"""The static-file reference: the same uvicorn, serving a file with Starlette's StaticFiles.

The repeat case compares a cache hit with this, so the ratio shows what our route adds on top of
sending a file that already exists.

    python -m bench.static --port 8200 --root /path/to/dir
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--root", required=True)
    args = parser.parse_args()
    app = Starlette(routes=[Mount("/", StaticFiles(directory=args.root))])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
