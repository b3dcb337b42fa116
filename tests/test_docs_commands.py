"""Every `fmfp-tf` command written in README.md, docs/ and the committed models' READMEs parses as
written: its command exists and each option is one the command has (a renamed or removed flag
fails here, not in a user's terminal). Commands with an ellipsis are abbreviations and are
skipped; placeholders (RUN, DIR) are values, which parsing accepts. What the commands do is
tested where it is built; the README's main job runs in CI's wheel step."""
import glob
import os
import re
import shlex

import click
import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir)


def documented_commands():
    """(file, command) for each `fmfp-tf ...` in a code block or an inline code span."""
    files = (["README.md"] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
             + sorted(glob.glob(os.path.join(ROOT, "benchmarks", "models", "*", "README.md"))))
    found = []
    for path in files:
        with open(os.path.join(ROOT, path), encoding="utf-8") as handle:
            text = handle.read()
        blocks = re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        prose = re.sub(r"```[a-z]*\n.*?```", "", text, flags=re.S)
        sources = [line for block in blocks
                   for line in re.sub(r"\\\n\s*", " ", block).splitlines()]
        sources += re.findall(r"`([^`]+)`", prose.replace("\n", " "))
        for source in sources:
            source = source.strip().removeprefix("$ ")
            source = source.split(" #")[0]  # a comment after the command
            for part in re.split(r"&&|;|\|", source):
                part = part.strip()
                if part.startswith("fmfp-tf ") and "..." not in part:
                    found.append((os.path.relpath(os.path.join(ROOT, path), ROOT), part))
    return found


COMMANDS = documented_commands()


def test_the_docs_hold_commands_to_check():
    assert len(COMMANDS) >= 40  # the scan finds them (a broken pattern finds none)
    assert any(command == "fmfp-tf train --defense mask --size 20" for _, command in COMMANDS)


@pytest.mark.parametrize("where, command", COMMANDS,
                         ids=[f"{where}:{command[:60]}" for where, command in COMMANDS])
def test_a_documented_command_parses(where, command):
    from fmfp_tf.cli.main import cli

    args = shlex.split(command)[1:]
    try:
        # the option parser alone: names are checked, values are not (RUN and DIR stand for
        # the reader's own) and no callback runs (no plugin is imported, no file read)
        group = click.Context(cli, info_name="fmfp-tf")
        _, rest, _ = cli.make_parser(group).parse_args(list(args))
        if not rest:
            return
        sub = cli.get_command(group, rest[0])
        assert sub is not None, f"{where}: `{command}`: no command {rest[0]!r}"
        sub.make_parser(click.Context(sub, info_name=rest[0], parent=group)).parse_args(rest[1:])
    except click.UsageError as error:
        pytest.fail(f"{where}: `{command}` does not parse: {error.format_message()}")
