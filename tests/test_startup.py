"""Start-up cost: cheap commands import nothing heavy."""

from __future__ import annotations


def test_help_and_strategies_import_no_heavy_library():
    """`thawkit --help` and `thawkit strategies` answer without importing torch, transformers,
    pandas or scikit-learn (the start-up cost users pay on every command)."""
    import subprocess
    import sys

    code = ("import sys\nfrom thawkit.cli.app import main\n"
            "for argv in (['--help'], ['train', '--help'], ['compare', '--help'], ['strategies']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print(sorted(m for m in ('torch', 'transformers', 'pandas', 'sklearn', 'datasets') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_version_and_short_help(capsys):
    """`thawkit --version` / `-V` print the installed version; `-h` is --help on every command."""
    from importlib.metadata import version

    from thawkit.cli.app import main

    def exit_code(argv):
        try:
            main(argv)
        except SystemExit as exc:
            return exc.code or 0
        return 0

    for flag in ("--version", "-V"):
        assert exit_code([flag]) == 0
        assert capsys.readouterr().out.strip() == f"thawkit {version('thawkit')}"
    for argv in (["-h"], ["train", "-h"], ["compare", "-h"]):
        assert exit_code(argv) == 0
        assert "Usage: thawkit" in capsys.readouterr().out
