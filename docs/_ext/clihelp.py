"""``.. clihelp:: fit``: the ``sreels fit --help`` text, generated from the parser at build
time so that the reference and the command line cannot disagree."""

from docutils import nodes
from docutils.parsers.rst import Directive


class CliHelp(Directive):
    required_arguments = 0
    optional_arguments = 1

    def run(self):
        import os

        from sreels.cli import build_parser
        os.environ.setdefault("COLUMNS", "100")  # argparse wraps to the terminal width
        command = self.arguments[0] if self.arguments else None
        parser = build_parser(command)
        if command:
            sub = next(a for a in parser._actions if a.dest == "command").choices[command]
            text = sub.format_help()
        else:
            text = parser.format_help()
        return [nodes.literal_block(text, text)]


def setup(app):
    app.add_directive("clihelp", CliHelp)
    return {"version": "1.0", "parallel_read_safe": True}
