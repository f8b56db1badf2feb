"""`python -m integration.emulator`: run the emulator in the foreground."""

from __future__ import annotations

import argparse

from integration.emulator import serve_forever


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m integration.emulator",
                                     description="Local Defender for Endpoint API emulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", help="where the CA, keys and config file go")
    parser.add_argument("--dataset", help="a YAML or JSON dataset file (default: the seed)")
    parser.add_argument("--page-size", type=int, help="page list answers with @odata.nextLink")
    parser.add_argument("--not-found", choices=("404", "empty"), default="404")
    args = parser.parse_args(argv)
    serve_forever(host=args.host, port=args.port, state_dir=args.state_dir,
                  dataset=args.dataset, page_size=args.page_size, not_found=args.not_found)


if __name__ == "__main__":
    main()
