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
    run.add_argument(
        "--model",
        dest="models",
        action="extend",
        nargs="+",
        required=True,
        help="checkpoint folder, PEFT adapter folder, hub id, or (openai) the server's model name; several, "
        "or a quoted glob such as 'out/checkpoint-*' (in step order), are each evaluated",
    )
    _common(run, several_tasks=True)
    sampling = run.add_argument_group("generation")
    sampling.add_argument("--n", type=int, help="samples per problem (default: the largest k; 1 when greedy)")
    sampling.add_argument("--temperature", type=float, default=Sampling.temperature, help="0 means greedy")
    sampling.add_argument("--top-p", type=float, default=Sampling.top_p)
    sampling.add_argument("--top-k", type=int, default=Sampling.top_k, help="0 turns top-k filtering off")
    sampling.add_argument("--repetition-penalty", type=float, default=Sampling.repetition_penalty)
    sampling.add_argument("--max-new-tokens", type=int, default=Sampling.max_new_tokens)
    sampling.add_argument("--seed", type=int, default=Sampling.seed)
    sampling.add_argument(
        "--batch-size",
        type=int,
        default=RunConfig.batch_size,
        help="sequences per generate call (default 16; vllm 4096; openai: the most samples asked in one request)",
    )
    sampling.add_argument(
        "--backend",
        default=RunConfig.backend,
        help="hf, vllm, openai (default: auto, which is vllm where it is installed and a GPU is present, else hf)",
    )
    sampling.add_argument("--device", default=RunConfig.device, help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    chat = sampling.add_mutually_exclusive_group()
    chat.add_argument(
        "--chat", dest="chat", action="store_true", default=None, help="wrap prompts in the chat template"
    )
    chat.add_argument("--no-chat", dest="chat", action="store_false", help="raw prompts even if a chat template exists")
    _backend_options(run)
    sampling.add_argument(
        "--data-parallel",
        type=int,
        metavar="N",
        default=RunConfig.data_parallel,
        help="N replicas of the backend as Ray actors, batches shared among them (default 1: in this process)",
    )
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
    _leaderboard_and_gate(commands)
    _finetune_command(commands)
    return parser


def _finetune_command(commands: argparse._SubParsersAction) -> None:
    """`harness finetune`: its flags live beside its config (finetune/config.py, a light import)."""
    from finetune.config import add_arguments

    finetune = commands.add_parser("finetune", help="LoRA/QLoRA fine-tune on a task's data; `harness run` the result")
    add_arguments(finetune)
    finetune.set_defaults(handler=_finetune)


def _finetune(args: argparse.Namespace) -> int:
    from finetune.config import from_args
    from finetune.train import Interrupted, finetune

    try:
        finetune(from_args(args))
    except Interrupted as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 130
    return 0


def _backend_options(run: argparse.ArgumentParser) -> None:
    """Flags of one backend each (harness.backends.ONLY_FOR); None means the backend's default."""
    models = run.add_argument_group("checkpoint loading (hf, vllm)")
    models.add_argument("--dtype", help="auto (default), float16, bfloat16 or float32")
    bits = models.add_mutually_exclusive_group()
    bits.add_argument("--load-in-4bit", dest="load_in_bits", action="store_const", const=4, help="hf: bitsandbytes NF4")
    bits.add_argument("--load-in-8bit", dest="load_in_bits", action="store_const", const=8, help="hf: bitsandbytes")
    models.add_argument("--quantization", help="vllm: its quantization method (awq, gptq, fp8, ...)")
    models.add_argument("--tensor-parallel-size", type=int, help="vllm: GPUs per model (default 1)")
    models.add_argument("--gpu-memory-utilization", type=float, help="vllm: share of GPU memory to use")
    models.add_argument("--max-model-len", type=int, help="vllm: context length (default: the model's own)")
    server = run.add_argument_group("OpenAI-compatible server (--backend openai)")
    server.add_argument("--base-url", help="the API's root, e.g. http://localhost:8000/v1")
    server.add_argument(
        "--api-key", metavar="ENV_VAR", help="name of the environment variable holding the key (default OPENAI_API_KEY)"
    )
    server.add_argument("--concurrency", type=int, help="requests in flight (default 8)")
    server.add_argument("--request-timeout", type=float, help="seconds per request before it is retried (default 600)")


def _common(parser: argparse.ArgumentParser, several_tasks: bool = False) -> None:
    if several_tasks:
        parser.add_argument("--task", dest="tasks", action="append", required=True, help="see `harness tasks`; repeat")
    else:
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
    cluster = parser.add_argument_group("Ray cluster (docs/scale.md)")
    cluster.add_argument(
        "--executor",
        default=RunConfig.executor,
        help="local (default) or ray: programs run on sandbox actors on every node; --workers is then per node",
    )
    cluster.add_argument("--ray-address", help="the cluster, e.g. 10.0.0.1:6379 (default: what ray.init() finds)")


def _run_or_evaluate(args: argparse.Namespace) -> int:
    from harness.execution import IncompleteRun
    from harness.run import run

    if args.command == "run":
        return _run_series(args)
    config = _config(args).resolved()
    try:
        record = run(config)
    except IncompleteRun as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return 3
    print(results_table(record))
    return 0


def _run_series(args: argparse.Namespace) -> int:
    """`harness run`: each (checkpoint, task) pair into its own run directory; one table at the end."""
    from harness.report import comparison_table
    from harness.series import expand_models, plan, run_series

    outcomes = run_series(plan(_config(args), expand_models(args.models), args.tasks))
    if len(outcomes) == 1:
        if outcomes[0].record is None:
            return 3
        print(results_table(outcomes[0].record))
        return 0
    print(comparison_table([(o.name, o.config.task, o.record) for o in outcomes]))
    return 3 if any(o.record is None for o in outcomes) else 0


def _config(args: argparse.Namespace) -> RunConfig:
    """The settings of the command; for `run`, model and task are filled in per pair (harness.series)."""
    ks = parse_ks(args.k) if args.k is not None else None
    common = dict(
        command=args.command,
        task=args.task if args.command == "evaluate" else "",
        data=args.data,
        split=args.split,
        ks=ks,
        sandbox=args.sandbox,
        workers=args.workers,
        out=args.out,
        bertscore_model=args.bertscore_model,
        executor=args.executor,
        ray_address=args.ray_address,
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
    backend_options = (
        "dtype",
        "load_in_bits",
        "quantization",
        "tensor_parallel_size",
        "gpu_memory_utilization",
        "max_model_len",
        "base_url",
        "api_key",
        "concurrency",
        "request_timeout",
    )
    return RunConfig(
        n=args.n,
        backend=args.backend,
        sampling=sampling,
        batch_size=args.batch_size,
        limit=args.limit,
        task_ids=args.task_ids,
        device=args.device,
        chat=args.chat,
        data_parallel=args.data_parallel,
        **{name: getattr(args, name) for name in backend_options},
        **common,
    )


def _leaderboard_and_gate(commands: argparse._SubParsersAction) -> None:
    """`harness leaderboard` and `harness gate`: readers of run directories (leaderboard/)."""
    board = commands.add_parser("leaderboard", help="build a static site from run directories")
    board.add_argument("runs", nargs="+", metavar="RUNS", help="run directories, or folders holding them")
    board.add_argument("--out", default="site", help="folder for the site (default: site)")
    board.set_defaults(handler=_leaderboard)
    gate = commands.add_parser(
        "gate",
        help="fail (exit 1) on a significant per-problem regression",
        description="Paired per-problem comparison (bootstrap over problems, seed 0); see docs/ci.md. "
        "Exit 0: no regression; 1: regression; 2: bad input.",
    )
    gate.add_argument("--baseline", help="run directory, or JSON from --save-baseline")
    gate.add_argument("--current", help="run directory to check")
    gate.add_argument("--metric", default="pass@1", help="pass@k to compare (default: pass@1)")
    gate.add_argument("--max-drop", type=float, default=0.01, help="largest drop tolerated (default: 0.01)")
    gate.add_argument("--alpha", type=float, default=0.05, help="significance level (default: 0.05)")
    gate.add_argument("--max-changed", type=int, help="also fail when more problems than this change outcome")
    gate.add_argument("--report", help="also write the Markdown report to this file")
    gate.add_argument("--save-baseline", nargs=2, metavar=("RUN", "FILE"), help="write RUN's baseline JSON to FILE")
    gate.set_defaults(handler=_gate)


def _leaderboard(args: argparse.Namespace) -> int:
    from leaderboard.build import main as build_site

    return build_site(args.runs, args.out)


def _gate(args: argparse.Namespace) -> int:
    from leaderboard.gate import main as gate

    return gate(args)


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
