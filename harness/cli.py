"""`harness` command line: argument parsing only; the work happens in harness.run.

Exit codes: 0 success, 2 bad input (one line, no traceback), 3 an incomplete run that a
re-run finishes (the sandbox could not execute some programs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from harness import registry
from harness.config import RunConfig, Sampling, parse_ks
from harness.errors import UsageError
from harness.report import results_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except UsageError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; finished work is saved, run the same command to resume", file=sys.stderr)
        return 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Functional-correctness evaluation of code models.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)

    run = commands.add_parser("run", help="generate completions with a model, then score them")
    run.add_argument("--model", required=True, help="checkpoint folder, PEFT adapter folder, or hub id")
    _common(run)
    sampling = run.add_argument_group("generation")
    sampling.add_argument("--n", type=int, help="samples per problem (default: the largest k; 1 when greedy)")
    sampling.add_argument("--temperature", type=float, default=Sampling.temperature, help="0 means greedy")
    sampling.add_argument("--top-p", type=float, default=Sampling.top_p)
    sampling.add_argument("--top-k", type=int, default=Sampling.top_k, help="0 turns top-k filtering off")
    sampling.add_argument("--repetition-penalty", type=float, default=Sampling.repetition_penalty)
    sampling.add_argument("--max-new-tokens", type=int, default=Sampling.max_new_tokens)
    sampling.add_argument("--seed", type=int, default=Sampling.seed)
    sampling.add_argument("--batch-size", type=int, default=RunConfig.batch_size, help="sequences per generate call")
    sampling.add_argument("--backend", default=RunConfig.backend, help="generation backend (default: hf)")
    sampling.add_argument("--device", default=RunConfig.device, help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    chat = sampling.add_mutually_exclusive_group()
    chat.add_argument(
        "--chat", dest="chat", action="store_true", default=None, help="wrap prompts in the chat template"
    )
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="raw prompts even if a chat template exists")
    run.add_argument("--limit", type=int, help="only the first N problems")
    run.add_argument("--task-ids", type=lambda s: tuple(t for t in s.split(",") if t), help="comma-separated subset")
    run.set_defaults(handler=_run_or_evaluate, command="run")

    evaluate = commands.add_parser("evaluate", help="score a file of completions")
    evaluate.add_argument(
        "--samples", required=True, help='JSONL of {"task_id", "completion"} or {"task_id", "solution"}'
    )
    _common(evaluate)
    evaluate.set_defaults(handler=_run_or_evaluate, command="evaluate")

    tasks = commands.add_parser("tasks", help="list the installed tasks")
    tasks.set_defaults(handler=_list_tasks)

    sandbox = commands.add_parser("sandbox", help="inspect or prepare the sandboxes")
    sandbox_commands = sandbox.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)
    check = sandbox_commands.add_parser("check", help="which protections this machine gives each execution")
    check.add_argument("--sandbox", default=RunConfig.sandbox, help="process or docker (default: process)")
    check.set_defaults(handler=_sandbox_check)
    build = sandbox_commands.add_parser("build-image", help="build the docker sandbox's image (offline if need be)")
    build.add_argument("--tag", help="image name (default: the one --sandbox docker uses)")
    build.set_defaults(handler=_sandbox_build_image)
    return parser


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, help="see `harness tasks`")
    parser.add_argument("--data", help="local copy of the task's dataset: JSONL, JSON, Parquet, CSV or a saved dataset")
    parser.add_argument("--split", help="split to evaluate (default: the task's, e.g. test)")
    parser.add_argument("--k", help="pass@k values, e.g. 1,10,100")
    parser.add_argument("--sandbox", default=RunConfig.sandbox, help="where programs run (default: process)")
    parser.add_argument(
        "--workers", type=int, help="programs run, and samples scored, in parallel (default: the number of cores)"
    )
    parser.add_argument("--out", help="run directory (default: runs/<model>/<task>/<UTC time>); reuse it to resume")
    parser.add_argument("--bertscore-model", help="local model folder for BERTScore (without it: not reported)")


def _run_or_evaluate(args: argparse.Namespace) -> int:
    from harness.execution import IncompleteRun
    from harness.run import run

    config = _config(args).resolved()
    try:
        record = run(config)
    except IncompleteRun as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 3
    print(results_table(record))
    return 0


def _config(args: argparse.Namespace) -> RunConfig:
    ks = parse_ks(args.k) if args.k is not None else None
    common = dict(
        command=args.command,
        task=args.task,
        data=args.data,
        split=args.split,
        ks=ks,
        sandbox=args.sandbox,
        workers=args.workers,
        out=args.out,
        bertscore_model=args.bertscore_model,
    )
    if args.command == "evaluate":
        return RunConfig(samples=args.samples, **common)
    sampling = Sampling(
        temperature=args.temperature,
        top_p=args.top_p,
        top_k=args.top_k,
        repetition_penalty=args.repetition_penalty,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    return RunConfig(
        model=args.model,
        n=args.n,
        backend=args.backend,
        sampling=sampling,
        batch_size=args.batch_size,
        limit=args.limit,
        task_ids=args.task_ids,
        device=args.device,
        chat=args.chat,
        **common,
    )


def _sandbox_check(args: argparse.Namespace) -> int:
    from sandbox.check import check, format_check

    print(format_check(check(args.sandbox)))
    return 0


def _sandbox_build_image(args: argparse.Namespace) -> int:
    from sandbox.image.build import build_image

    tag = build_image(args.tag) if args.tag else build_image()
    print(f"built {tag}")
    return 0


def _list_tasks(args: argparse.Namespace) -> int:
    rows = []
    for name in registry.tasks.names():
        task = registry.tasks.get(name)
        rows.append((name, ", ".join(task.metrics), task.description))
    width = max(len(r[0]) for r in rows)
    metric_width = max(len(r[1]) for r in rows)
    for name, metrics, description in rows:
        print(f"{name:<{width}}  {metrics:<{metric_width}}  {description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
