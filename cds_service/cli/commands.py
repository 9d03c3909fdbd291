"""``jak-cds`` command line: serve, replay, corpus, rules, report, fhir-server, fault-fhir-server, bench."""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys

from cds_service.config import REPO_ROOT, Settings, is_loopback


def cmd_serve(args) -> int:
    from cds_service.cli.server import serve

    settings = Settings.from_env()
    dev = args.dev or args.workers == 0  # --workers 0: the built-in server, as before --dev
    return serve(settings, args.host, args.port, args.workers or None, loopback=is_loopback(args.host), dev=dev)


def cmd_corpus(args) -> int:
    from cds_service.cli.devtools.corpus import main as corpus_main

    return corpus_main(args)


def cmd_replay(args) -> int:
    from cds_service.cli.replay import main as replay_main

    return replay_main(args)


def cmd_rules(args) -> int:
    from cds_service.knowledge.catalogue import main as rules_main

    return rules_main(args)


def cmd_report(args) -> int:
    from cds_service.cli.report import main as report_main

    return report_main(args)


def cmd_fhir_server(args) -> int:
    from cds_service.cli.devtools.fhir_fixture_server import serve

    if not is_loopback(args.host):
        raise SystemExit("the fixture FHIR server has no authentication: serve it on loopback only")
    return serve(args.paths, args.host, args.port)


def cmd_fault_fhir_server(args) -> int:
    from cds_service.cli.devtools.fault_fhir_server import serve

    if not is_loopback(args.host):
        raise SystemExit("the fault FHIR server is for drills: serve it on loopback only")
    return serve(args.paths, args.host, args.port, args.mode, args.fault, args.drip_interval)


def cmd_bench(args) -> int:
    """``python -m bench`` in the repository (bench/ and fixtures/ live there, not in the package): run as a
    program of its own, so the package never imports the benchmark that measures it."""
    if not (REPO_ROOT / "bench" / "__main__.py").is_file():
        raise SystemExit(f"the benchmark is not here ({REPO_ROOT / 'bench'}): run it from a checkout of the repository")
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.call([sys.executable, "-m", "bench", *args.rest], env={**os.environ, "PYTHONPATH": path})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jak-cds", description="CDS Hooks service for JAK inhibitors")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the CDS Hooks API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers",
        type=int,
        default=None,
        help="gunicorn worker processes (default: JAK_CDS_WORKERS, else one per core; 0 = --dev)",
    )
    serve.add_argument(
        "--dev",
        action="store_true",
        help="the built-in Werkzeug development server instead of the production server (gunicorn)",
    )
    serve.set_defaults(func=cmd_serve)

    replay = sub.add_parser("replay", help="act as an EHR over FHIR fixture bundles and print the cards")
    replay.add_argument("paths", nargs="+", metavar="PATH", help="fixture bundle files or folders")
    replay.add_argument("--url", help="call a running service at this base URL instead of in-process")
    replay.add_argument("--at", help="evaluation date YYYY-MM-DD (default: the fixture's own, else today)")
    replay.add_argument("--json", action="store_true", help="print the raw CDS Hooks responses")
    replay.add_argument(
        "--check", action="store_true", help="compare with each fixture's expected cards; exit 1 on any difference"
    )
    replay.set_defaults(func=cmd_replay)

    corpus = sub.add_parser(
        "corpus",
        help="replay whole patient records (e.g. Synthea bundles) through every hook "
        "and check what must hold for any record",
    )
    corpus.add_argument("paths", nargs="+", metavar="PATH", help="patient Bundle files or folders")
    corpus.add_argument("--json", action="store_true", help="print the report as JSON")
    corpus.set_defaults(func=cmd_corpus)

    rules = sub.add_parser("rules", help="print the rule catalogue generated from the knowledge files")
    rules.add_argument("--output", help="write markdown to this file instead of standard output")
    rules.add_argument("--language", default="en", help="en (default), nl or nb: the rule texts in that language")
    rules.set_defaults(func=cmd_rules)

    report = sub.add_parser("report", help="per rule: cards issued, accepted, overridden, top override reasons")
    report.add_argument("--json", action="store_true")
    report.set_defaults(func=cmd_report)

    fhir = sub.add_parser("fhir-server", help="development only: serve fixture bundles as a read-only FHIR server")
    fhir.add_argument("paths", nargs="+", metavar="FIXTURE", help="fixture bundle files or folders")
    fhir.add_argument("--host", default="127.0.0.1")
    fhir.add_argument("--port", type=int, default=8099)
    fhir.set_defaults(func=cmd_fhir_server)

    from cds_service.cli.devtools.fault_fhir_server import MODES

    fault = sub.add_parser(
        "fault-fhir-server",
        help="development only: a FHIR server that hangs, drips, resets ... "
        "on purpose, for fault drills of the fallback fetch",
    )
    fault.add_argument("paths", nargs="*", metavar="FIXTURE", help="fixture bundles whose records it serves")
    fault.add_argument("--mode", choices=MODES, default="drip", help="how it answers every query (default drip)")
    fault.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="TYPE=MODE",
        help="another mode for the queries of one resource type, e.g. Observation=hang",
    )
    fault.add_argument("--drip-interval", type=float, default=1.0, help="seconds between bytes in drip mode")
    fault.add_argument("--host", default="127.0.0.1")
    fault.add_argument("--port", type=int, default=8098)
    fault.set_defaults(func=cmd_fault_fhir_server)

    bench = sub.add_parser("bench", help="run the performance benchmark (see bench/)", add_help=False)
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command == "bench":  # its options are the benchmark's own (python -m bench --help)
        args.rest = extra + args.rest
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args) or 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"jak-cds: {exc.code}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
