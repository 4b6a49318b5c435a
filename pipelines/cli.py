"""What the four command lines share, importing nothing heavy: ``--help`` answers before torch, Ray
or MLflow load (each CLI imports its body after parsing), and a bad config ends with its message,
not a traceback."""

import argparse
import sys
from collections.abc import Callable
from typing import Any


def add_overrides_argument(parser: argparse.ArgumentParser, help: str) -> None:
    """The CLIs' repeatable ``--set KEY=VALUE`` (into ``args.overrides``, applied by ``load_config``)."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def run_cli(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], Any], argv=None) -> Any:
    """Parse ``argv``, then run ``body(args)``; a ``ConfigError`` (a bad key, value or file) exits
    with status 2 and the message on stderr, a tracking server that refuses us or stays down at
    the end of a job with status 1 and its message."""
    args = parser.parse_args(argv)
    from pipelines.config.errors import ConfigError  # after parsing: pipelines.config loads torch
    from pipelines.tracking.mlflow_run import TrackingStoreError, TrackingUnavailableError

    try:
        return body(args)
    except (ConfigError, FileNotFoundError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except (TrackingStoreError, TrackingUnavailableError) as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
