"""``stream-service demo``: the whole thing on a locally provisioned broker (placeholder until written)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("demo", help="run the demo on a local broker")
    parser.set_defaults(handler=lambda args: 1)
