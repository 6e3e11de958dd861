"""Synthesize the hub's CloudFormation: `python app.py [-c key=value ...]`.

Run by the CDK CLI (`cdk synth`, `cdk deploy`, as cdk.json says) or directly
(`make synth`), which writes the cloud assembly to infra/cdk.out without an
AWS account or the CLI. Context parameters: docs/aws-deploy.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from aws_cdk import App

from integration_hub_infra import build

HERE = Path(__file__).resolve().parent


def context_of(argv: list[str] | None = None) -> dict[str, Any]:
    """cdk.json's context, then `-c key=value` arguments over it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a context parameter, as with `cdk synth -c`",
    )
    args = parser.parse_args(argv)
    context: dict[str, Any] = dict(json.loads((HERE / "cdk.json").read_text()).get("context", {}))
    for item in args.context:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"context {item!r} is not KEY=VALUE")
        context[key] = value
    return context


def main(argv: list[str] | None = None) -> Path:
    """Synthesize; return the cloud assembly directory."""
    context = context_of(argv)
    # Under the CDK CLI, CDK_OUTDIR and CDK_CONTEXT_JSON are set and win.
    outdir = os.environ.get("CDK_OUTDIR")
    direct = not outdir
    if not outdir:
        outdir = str(HERE / "cdk.out")
        # Synthesis only adds files: templates of stacks an earlier run made
        # (another regions context) would otherwise linger beside the new ones.
        shutil.rmtree(outdir, ignore_errors=True)
    app = App(context=context, outdir=outdir)
    stacks = build(app)
    assembly = app.synth()
    for stack in stacks:
        print(f"{stack.stack_name}: {Path(assembly.directory) / stack.template_file}")
        if direct:  # the CDK CLI prints these itself; a direct run must not hide them
            for message in assembly.get_stack_artifact(stack.artifact_id).messages:
                print(f"  {message.level.value}: {message.entry.data}", file=sys.stderr)
    return Path(assembly.directory)


if __name__ == "__main__":
    main()
