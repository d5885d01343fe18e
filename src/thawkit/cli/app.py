"""Entry point: builds the typer app and turns every ``ThawkitError`` into one line and exit code 2."""

from __future__ import annotations

import os
import sys

import typer

from thawkit.cli import advise_cmd, compare_cmds, dapt_cmd, demo_cmd, drift_cmd, export_cmd, inspect_cmds, prompt_cmd, push_cmd, select_cmd, serve_cmd, train_cmds, update_cmd
from thawkit.errors import ConfigError, ThawkitError

app = typer.Typer(
    name="thawkit",
    help="Adapt a pretrained transformer (an encoder or a decoder LLM) to your labeled data with the right strategy.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"thawkit {version('thawkit')}")
        raise typer.Exit()


@app.callback()
def _options(show_version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True,
                                              help="print thawkit's version and exit")) -> None:
    """Adapt a pretrained transformer (an encoder or a decoder LLM) to your labeled data with the right strategy."""

app.command("train")(train_cmds.train)
app.command("plan")(train_cmds.plan_command)
app.command("demo")(demo_cmd.demo)
app.command("advise")(advise_cmd.advise)
app.command("compare")(compare_cmds.compare)
app.command("report")(compare_cmds.report)
app.command("evaluate")(inspect_cmds.evaluate)
app.command("predict")(inspect_cmds.predict)
app.command("info")(inspect_cmds.info)
app.command("strategies")(inspect_cmds.strategies)
app.command("serve")(serve_cmd.serve)
app.command("lr-find")(train_cmds.lr_find_command)
app.command("dapt")(dapt_cmd.dapt)
app.command("distill")(train_cmds.distill_command)
app.command("export")(export_cmd.export)
app.command("select")(select_cmd.select)
app.command("push")(push_cmd.push)
app.command("drift")(drift_cmd.drift)
app.command("update")(update_cmd.update)
app.command("prompt")(prompt_cmd.prompt)


class Interrupted(BaseException):
    """Ctrl-C or SIGTERM, raised past click (which would turn KeyboardInterrupt into a silent exit 0)."""

    reports_notes = True  # what the engine notes on it (a kept checkpoint) goes into the CLI's one line

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _on_interrupt(signum: int, frame: object) -> None:
    raise Interrupted(signum)


def _check_arguments_decode(arguments: list[str]) -> None:
    """Bytes that are not UTF-8 arrive as lone surrogates (Python's surrogateescape): refused by
    position here, before any tokenizer or path sees them."""
    for position, argument in enumerate(arguments, 1):
        bad = next((i for i, c in enumerate(argument) if "\udc80" <= c <= "\udcff"), None)
        if bad is not None and not os.path.lexists(argument):  # a file name may be any bytes
            shown = argument.encode("utf-8", "surrogateescape")[:40]
            raise ConfigError(f"argument {position} ({shown!r}) is not valid UTF-8 (byte 0x{ord(argument[bad]) - 0xDC00:02x} at "
                              f"character {bad}); fix: pass UTF-8 text (convert a file with iconv -t UTF-8, and pass it with --file)")


def _environment_error(exc: OSError) -> None:
    """Disk full, permission denied, read-only file system: the environment, not a bug. One line,
    with what was kept (a checkpoint to resume from) when the run says so."""
    where = f"{exc.filename}: " if exc.filename else ""
    kept = "".join(f"; {note}" for note in getattr(exc, "__notes__", []))
    typer.secho(f"error: {where}{exc.strerror or exc}{kept}; fix: free disk space or choose a writable --out "
                "(earlier runs are untouched)", fg="red", err=True)
    sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    import signal
    import threading

    from thawkit.logging_setup import quiet_libraries

    quiet_libraries()
    in_main_thread = threading.current_thread() is threading.main_thread()
    # SIGTERM (kill, docker stop, a scheduler's preemption) is handled as Ctrl-C is: checkpoints kept, one line.
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, _on_interrupt) for s in handled} if in_main_thread else {}
    try:
        _check_arguments_decode(sys.argv[1:] if argv is None else argv)
        result = app(args=argv, standalone_mode=False, prog_name="thawkit")
        if isinstance(result, int) and result != 0:
            sys.exit(result)
    except Interrupted as stop:
        cause = "SIGTERM" if stop.signum == signal.SIGTERM else "interrupted"
        kept = "; ".join(getattr(stop, "__notes__", [])) or "a checkpoint, if one was reached, is kept for 'thawkit train --resume OUT'"
        typer.secho(f"{cause}: no run folder was published (a run appears only when complete); {kept}", err=True)
        sys.exit(128 + stop.signum)  # 130 for Ctrl-C, 143 for SIGTERM, as shells report them
    except ThawkitError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.secho("aborted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except OSError as exc:
        _environment_error(exc)
    except Exception as exc:
        # Usage errors (unknown flag, bad value, missing argument) are click exceptions from the
        # copy of click that typer bundles: recognised by their interface, shown as one message, exit 2.
        if callable(getattr(exc, "format_message", None)) and isinstance(getattr(exc, "exit_code", None), int):
            ctx = getattr(exc, "ctx", None)
            command = f"thawkit {ctx.info_name}" if ctx is not None and ctx.parent is not None else "thawkit"
            typer.secho(f"error: {exc.format_message()}; fix: see '{command} --help'", fg="red", err=True)
            sys.exit(exc.exit_code)
        from thawkit.rundir import as_disk_full

        full = as_disk_full(exc)  # a library's own wording of a full disk (safetensors, torch.save)
        if full is not None:
            _environment_error(full)
        if os.environ.get("THAWKIT_DEBUG"):
            raise
        typer.secho(f"internal error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} -- this is a bug in "
                    "thawkit; please report it with the command (THAWKIT_DEBUG=1 shows the traceback)", fg="red", err=True)
        sys.exit(1)
    finally:
        for handled_signal, handler in previous.items():
            signal.signal(handled_signal, handler)


if __name__ == "__main__":
    main()
