"""gpunn.commands, in this process: every command is in the parser, and
the old gpunn.cli still gives main and parser."""

from gpunn.commands import COMMANDS, bench as bench_command, parser


def test_every_command_parses_and_runs_its_module():
    assert len(COMMANDS) == 10
    for command, argv in zip(COMMANDS, (
            ["list"], ["train", "shallow"], ["evaluate", "x.npz"],
            ["ensemble", "x.npz"], ["plot", "run"], ["reproduce"],
            ["sweep", "shallow"], ["bench"], ["baseline", "darkness"],
            ["figure", "overfitting"])):
        assert parser().parse_args(argv).command is command.run
    args = parser().parse_args(["bench", "compare", "a.json"])
    assert args.command is bench_command.run_compare


def test_the_old_module_still_works():
    from gpunn import cli
    from gpunn import commands
    assert cli.main is commands.main and cli.parser is commands.parser
