"""``codecbench mushra build | serve | analyze | correlate``: MUSHRA listening tests from a finished run."""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

ADMIN_TOKEN_ENV = "CODECBENCH_MUSHRA_ADMIN_TOKEN"


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    mushra = subparsers.add_parser("mushra", help="MUSHRA listening tests: build a bundle, serve it, analyse ratings")
    sub = mushra.add_subparsers(dest="mushra_command", required=True, metavar="ACTION")

    build = sub.add_parser("build", help="build a self-contained test bundle from a finished run folder")
    build.add_argument("run_dir", type=Path, help="finished run folder (results.parquet, manifest.json)")
    build.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    build.add_argument("--items", nargs="+", help="item ids (<clip id>#<segment>); default: all complete items")
    build.add_argument("--conditions", nargs="+", help="conditions (codec@point) or codec names; default: all")
    build.add_argument("--max-items", type=int, default=10, help="items drawn when --items is not given (10)")
    build.add_argument("--excerpt-s", type=float, default=10.0, help="excerpt length in seconds, at most 12 (10)")
    build.add_argument("--excerpt-start-s", type=float, default=0.0, help="excerpt start in each item (0)")
    build.add_argument("--target-lufs", type=float, default=-23.0, help="BS.1770 loudness of each reference (-23)")
    build.add_argument("--training-item", help="item of the training page (default: the first selected item)")
    build.add_argument("--title", default="Listening test", help="title shown on the page")
    build.add_argument("--seed", type=int, default=0, help="seed of the item draw (0)")
    build.add_argument("--force", action="store_true", help="replace an existing bundle folder")
    build.set_defaults(func=_build)

    serve = sub.add_parser("serve", help="host a bundle; every page's grades are stored when submitted")
    serve.add_argument("bundle", type=Path, help="bundle folder from `codecbench mushra build`")
    serve.add_argument("--db", type=Path, help="SQLite ratings database (default: BUNDLE/ratings.sqlite)")
    serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (8000)")
    serve.add_argument("--root-path", default="", help="path prefix when served behind a reverse proxy, e.g. /mushra")
    serve.add_argument("--forwarded-allow-ips", default="127.0.0.1", help="proxies trusted for X-Forwarded-*")
    serve.add_argument("--admin-token-file", type=Path,
                       help=f"file holding the export token (else ${ADMIN_TOKEN_ENV}, else one is generated)")
    serve.add_argument("--max-participants", type=int, default=100_000, help="participants accepted in all")
    serve.add_argument("--participants-per-minute", type=int, default=120,
                       help="new participants per minute, all clients together (429 beyond)")
    serve.add_argument("--participants-per-minute-per-client", type=int, default=10,
                       help="new participants per minute from one client address (429 beyond)")
    serve.add_argument("--min-page-time-s", type=float, default=0.0,
                       help="refuse a page submitted sooner than this after its first audio delivery")
    serve.add_argument("--min-listening-s", type=float, default=0.0,
                       help="refuse a page on which the page reports less listening (all signals together)")
    serve.add_argument("--allow-origin", action="append", default=[],
                       help="extra origin (https://host) allowed to create participants; repeatable")
    serve.add_argument("--pages", type=Path,
                       help="JSON file: consent, instructions, calibration, headphone check, attention checks, end "
                       "questionnaire (docs/listening-test.md)")
    serve.set_defaults(func=_serve)

    analyze = sub.add_parser("analyze", help="BS.1534-3 post-screening, statistics, plots and tables")
    analyze.add_argument("ratings", type=Path, help="ratings database (.sqlite) or export (.csv, .parquet)")
    analyze.add_argument("--out", type=Path, required=True, help="output folder")
    analyze.add_argument("--reference", default="reference", help="condition name of the hidden reference")
    analyze.add_argument("--anchor", default="lowpass_7k", help="condition name of the mid-range (7 kHz) anchor")
    analyze.add_argument("--n-resamples", type=int, default=10_000, help="bootstrap and permutation resamples")
    analyze.add_argument("--seed", type=int, default=0, help="seed of bootstrap and permutation draws")
    analyze.add_argument("--min-assessors", type=int, default=10,
                         help="CIs over fewer assessors are flagged (ci_warning) and warned about")
    analyze.add_argument("--trials-per-assessor", type=int,
                         help="trials each assessor rated in the full test, when the ratings are a subset")
    analyze.add_argument("--no-behaviour-rule", action="store_true",
                         help="do not exclude assessors who did not listen (behaviour record played_s)")
    analyze.add_argument("--min-played-s", type=float, default=1.0,
                         help="behaviour rule: a stimulus played for less than this was not listened to")
    analyze.add_argument("--no-attention-rule", action="store_true",
                         help="do not exclude assessors who failed attention-check pages")
    analyze.add_argument("--max-attention-failures", type=int, default=0,
                         help="attention rule: assessors with more failed attention checks are excluded (0)")
    analyze.set_defaults(func=_analyze)

    corr = sub.add_parser("correlate", help="metric validity: correlate listener grades with metric scores")
    corr.add_argument("ratings", type=Path, help="ratings: codecbench database/export, or a CSV/parquet (--*-col)")
    corr.add_argument("scores", type=Path, help="`codecbench score --out` long table or a run's results table")
    corr.add_argument("--out", type=Path, required=True, help="output folder")
    corr.add_argument("--item-col", help="ratings column of the item (default item_id)")
    corr.add_argument("--condition-col", help="ratings column of the condition (default condition)")
    corr.add_argument("--assessor-col", help="ratings column of the assessor (default participant_id)")
    corr.add_argument("--rating-col", help="ratings column of the 0-100 grade (default score)")
    corr.add_argument("--map", action="append", default=[], metavar="RATED=SCORED",
                      help="rated condition name -> scored condition label (repeat); unmapped names match as they are")
    corr.add_argument("--metrics", help="comma-separated item metrics (default: every item metric in SCORES)")
    corr.add_argument("--reference", default="reference", help="condition name of the hidden reference")
    corr.add_argument("--anchor", default="lowpass_7k", help="condition name of the mid-range (7 kHz) anchor")
    corr.add_argument("--n-resamples", type=int, default=2000, help="two-way bootstrap resamples (2000)")
    corr.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    corr.set_defaults(func=_correlate)


def _build(args: argparse.Namespace) -> int:
    from codecbench.listening_test.bundle import build_bundle

    out = build_bundle(
        args.run_dir, args.out, items=args.items, conditions=args.conditions, max_items=args.max_items,
        excerpt_s=args.excerpt_s, excerpt_start_s=args.excerpt_start_s, target_lufs=args.target_lufs,
        training_item=args.training_item, title=args.title, seed=args.seed, overwrite=args.force,
    )
    print(f"bundle written to {out}; host it with: codecbench mushra serve {out}")
    return 0


def _admin_token(args: argparse.Namespace, db: Path) -> str:
    if args.admin_token_file:
        from codecbench.bench.core.errors import ConfigError

        if not args.admin_token_file.is_file():
            raise ConfigError(f"--admin-token-file {args.admin_token_file}: file does not exist")
        token = args.admin_token_file.read_text().strip()
        if len(token) < 16:
            raise ConfigError(f"--admin-token-file {args.admin_token_file}: token shorter than 16 characters")
        return token
    if os.environ.get(ADMIN_TOKEN_ENV):
        token = os.environ[ADMIN_TOKEN_ENV].strip()
        if len(token) < 16:
            from codecbench.bench.core.errors import ConfigError

            raise ConfigError(f"${ADMIN_TOKEN_ENV}: token shorter than 16 characters ({len(token)})")
        return token
    token_file = db.with_name(db.name + ".admin-token")
    if not token_file.is_file():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(24))
    print(f"admin export token in {token_file}", file=sys.stderr)
    return token_file.read_text().strip()


def _serve(args: argparse.Namespace) -> int:
    from codecbench.listening_test.server import serve

    db = args.db or args.bundle / "ratings.sqlite"
    from codecbench.listening_test.server import ServerConfig, load_pages

    config = ServerConfig(
        bundle_dir=args.bundle, admin_token=_admin_token(args, db), max_participants=args.max_participants,
        participants_per_minute=args.participants_per_minute,
        participants_per_minute_per_client=args.participants_per_minute_per_client,
        min_page_time_s=args.min_page_time_s, min_listening_s=args.min_listening_s,
        allowed_origins=tuple(args.allow_origin), pages=load_pages(args.pages) if args.pages else None,
    )
    serve(args.bundle, db, host=args.host, port=args.port, admin_token=config.admin_token,
          root_path=args.root_path, forwarded_allow_ips=args.forwarded_allow_ips, config=config)
    return 0


def _analyze(args: argparse.Namespace) -> int:
    import warnings

    from codecbench.listening_test.analysis import FewAssessorsWarning, analyze

    with warnings.catch_warnings():  # the summary below prints one WARNING line per flagged CI
        warnings.simplefilter("ignore", FewAssessorsWarning)
        result = analyze(args.ratings, args.out, reference=args.reference, anchor=args.anchor,
                         n_resamples=args.n_resamples, seed=args.seed, min_assessors=args.min_assessors,
                         trials_per_assessor=args.trials_per_assessor, behaviour=not args.no_behaviour_rule,
                         min_played_s=args.min_played_s, attention=not args.no_attention_rule,
                         max_attention_failures=args.max_attention_failures)
    print(result.summary_text())
    print(f"tables and plots written to {args.out}")
    return 0


def _correlate(args: argparse.Namespace) -> int:
    from codecbench.listening_test.correlate import correlate

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    result = correlate(args.ratings, args.scores, args.out, condition_map=args.map, metrics=metrics,
                       item_col=args.item_col, condition_col=args.condition_col, assessor_col=args.assessor_col,
                       rating_col=args.rating_col, reference=args.reference, anchor=args.anchor,
                       n_resamples=args.n_resamples, seed=args.seed)
    print(result.summary_text())
    print(f"tables and figures written to {args.out}")
    return 0
