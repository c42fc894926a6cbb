"""``nested-inverse serve``: the local web page for guided anytime restoration (needs the ``[app]``
extra, i.e. Gradio)."""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from typing import Any

from ..errors import UsageError
from .common import add_prior_args, load_prior_cached, pick_device, setup_logging

__all__ = ["add_parser"]

_INSTALL = 'the web page needs Gradio: pip install "nested-inverse[app]"'


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve", help="a local web page: restore, watch every outer step, steer the run",
        description="Start a local web page (Gradio) to restore images with nested diffusion: "
                    "upload or pick an image, paint a mask, watch the restoration after every "
                    "outer step and steer it (Stop, Resample, Edit, inner steps). With a latent "
                    "pipeline folder as --prior (Stable Diffusion, DiT) the page also generates "
                    "from a prompt or class, and restores steered by the prompt. Binds to "
                    "localhost unless --host says otherwise; no share links.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes "
                        "the page to your network)")
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument("--max-runs", type=int, default=2, metavar="N",
                   help="runs at once over all tabs; more wait their turn (default: 2)")
    add_prior_args(p)
    p.set_defaults(func=run)


def _has_gradio() -> bool:
    """Gradio imports (a folder named ``gradio``, such as Gradio's own cache in the current
    directory, would pass a mere ``find_spec`` check as a namespace package)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # nothing leaves the machine
    try:
        import gradio
    except ImportError:
        return False
    return hasattr(gradio, "Blocks")


def _check_port(host: str, port: int) -> None:
    """Refuse a port another program holds, naming ``--port``, before Gradio prints the URL and
    then its own advice about ``GRADIO_SERVER_PORT``. Port 0 (any free port) is always free."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the server binds (uvicorn sets SO_REUSEADDR): a port left in TIME_WAIT by a page
        # just stopped is free to it, while one with a listener is still refused.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            if err.errno in (errno.EADDRINUSE, errno.EACCES):
                why = "is in use by another program" if err.errno == errno.EADDRINUSE else \
                    "needs privileges to bind"
                raise UsageError(f"`--port`={port} {why} on {host}; give another, e.g. --port "
                                 f"{port + 1}") from err
            raise UsageError(f"`--host`={host!r} cannot be bound here: {err.strerror}") from err


def run(args: argparse.Namespace) -> int:
    if not _has_gradio():
        print(f"nested-inverse serve: error: {_INSTALL}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        raise UsageError(f"`--port`={args.port} must lie in [0, 65535]")
    if args.max_runs < 1:
        raise UsageError(f"`--max-runs`={args.max_runs} must be >= 1")
    _check_port(args.host, args.port)  # before the prior loads: seconds, not a minute, to say so
    setup_logging()
    from ..app.page import build_page
    from ..app.session import Sessions

    device = pick_device(args.device)
    # A pixel prior, or a latent pipeline folder (text-to-image / class-conditional generation and
    # prompt-steered latent restoration on the same page).
    prior = load_prior_cached(args.prior, str(device), args.dtype, args.allow_pickle)
    sessions = Sessions(prior, args.prior, device)
    page = build_page(sessions, max_runs=args.max_runs)
    print(f"nested-inverse serve: http://{args.host}:{args.port} (Ctrl+C to stop)", flush=True)
    page.launch(server_name=args.host, server_port=args.port, share=False, ssr_mode=False,
                max_file_size="20mb", allowed_paths=[str(sessions.root)], quiet=True,
                show_error=False)
    return 0
