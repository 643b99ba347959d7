"""``python -m testbed serve|gateway|traffic`` — see testbed/README.md."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

DEFAULT_PORTS = {"stable": 8101, "canary": 8102, "gateway": 8100}


def port_default(name: str) -> int:
    env = os.environ.get(f"TRIAGE24_TESTBED_{name.upper()}_PORT")
    return int(env) if env else DEFAULT_PORTS[name]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m testbed", description="Triage24 reference multimodal service")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run one service version (stable or canary)")
    s.add_argument("--version", choices=["stable", "canary"], default="stable")
    s.add_argument(
        "--port", type=int, default=None, help="default: TRIAGE24_TESTBED_{STABLE,CANARY}_PORT or 8101/8102"
    )
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument(
        "--log-file", type=Path, default=None, help="default: $TRIAGE24_HOME/logs/testbed-VERSION.jsonl"
    )
    s.add_argument("--no-stdout-log", action="store_true", help="write JSON logs to the file only")
    s.add_argument("--device", default="cpu")
    s.add_argument(
        "--audio-timeout", type=float, default=None, help="ffmpeg decode timeout, seconds (default 10)"
    )
    s.add_argument(
        "--model-concurrency", type=int, default=None, help="concurrent inference calls per model (default 1)"
    )

    g = sub.add_parser("gateway", help="run the gray-release gateway")
    g.add_argument("--port", type=int, default=None, help="default: TRIAGE24_TESTBED_GATEWAY_PORT or 8100")
    g.add_argument("--host", default="127.0.0.1")
    g.add_argument("--stable", default=None, help="stable base URL (default http://127.0.0.1:<stable port>)")
    g.add_argument("--canary", default=None, help="canary base URL (default http://127.0.0.1:<canary port>)")
    g.add_argument(
        "--canary-weight", type=float, default=10.0, help="percent of traffic to the canary (0..100)"
    )
    g.add_argument("--strategy", choices=["percentage", "user_hash", "header"], default="percentage")
    g.add_argument(
        "--log-file", type=Path, default=None, help="default: $TRIAGE24_HOME/logs/testbed-gateway.jsonl"
    )
    g.add_argument("--no-stdout-log", action="store_true")
    g.add_argument("--upstream-timeout", type=float, default=60.0)

    t = sub.add_parser("traffic", help="send steady golden-set traffic through the gateway")
    t.add_argument(
        "--gateway", default=None, help="gateway base URL (default http://127.0.0.1:<gateway port>)"
    )
    t.add_argument("--rate", type=float, default=2.0, help="requests per second (max 50)")
    t.add_argument("--duration", type=float, default=60.0, help="seconds (max 86400)")
    t.add_argument("--mix", default=None, help="e.g. text=0.5,image=0.3,audio=0.05,router=0.15 (the default)")
    t.add_argument("--seed", type=int, default=None)
    t.add_argument("--users", type=int, default=200, help="size of the user-id pool")
    t.add_argument("--max-inflight", type=int, default=8)
    t.add_argument("--progress-every", type=float, default=10.0, help="seconds between progress lines")
    t.add_argument(
        "--wait-ready",
        type=float,
        default=0.0,
        help="first wait up to this many seconds for the gateway and both versions to be ready",
    )
    return p


def serve(args: argparse.Namespace) -> int:
    # One torch thread per process, set before torch is imported: two services share 2 cores.
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    import uvicorn

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):  # already set in this process
        torch.set_num_interop_threads(1)

    from testbed.service import ServiceSettings, create_app, default_log_file

    overrides: dict[str, object] = {
        "version": args.version,
        "log_file": args.log_file or default_log_file(args.version),
        "log_stdout": not args.no_stdout_log,
        "device": args.device,
    }
    if args.audio_timeout is not None:
        overrides["audio_timeout_s"] = args.audio_timeout
    if args.model_concurrency is not None:
        overrides["model_concurrency"] = max(1, args.model_concurrency)
    settings = ServiceSettings.from_env(**overrides)
    app = create_app(settings)
    port = args.port if args.port is not None else port_default(args.version)
    uvicorn.run(app, host=args.host, port=port, log_level="warning", access_log=False)
    return 0


def gateway(args: argparse.Namespace) -> int:
    import uvicorn

    from testbed.gateway import GatewaySettings, create_app
    from testbed.service import default_log_file

    settings = GatewaySettings.from_env(
        stable_url=args.stable or f"http://127.0.0.1:{port_default('stable')}",
        canary_url=args.canary or f"http://127.0.0.1:{port_default('canary')}",
        canary_weight=args.canary_weight,
        strategy=args.strategy,
        log_file=args.log_file or default_log_file("gateway"),
        log_stdout=not args.no_stdout_log,
        upstream_timeout_s=args.upstream_timeout,
    )
    app = create_app(settings)
    port = args.port if args.port is not None else port_default("gateway")
    uvicorn.run(app, host=args.host, port=port, log_level="warning", access_log=False)
    return 0


def traffic(args: argparse.Namespace) -> int:
    from testbed import traffic as tr

    if args.gateway is None:
        args.gateway = f"http://127.0.0.1:{port_default('gateway')}"
    return tr.main(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"serve": serve, "gateway": gateway, "traffic": traffic}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
