"""`responsed serve …`: flags and `RESPONSED_*` variables over a TOML config file."""

from __future__ import annotations

import errno
import logging
import socket
import sys
from pathlib import Path
from typing import Annotated

import structlog
import typer

from responsed.config import ConfigError, Settings, load_settings

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"responsed: error: {message}", err=True)
    return typer.Exit(code=2)


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _fail(f"port {port} on {host} is already in use") from None
            raise _fail(f"cannot bind {host}:{port}: {exc.strerror}") from None


def _preflight(settings: Settings) -> None:
    from responsed.engines.registry import engine_factory

    for model in settings.models:
        try:
            engine_factory(model.engine)
        except ConfigError as exc:
            raise _fail(f"model {model.name!r}: {exc}") from None
        if model.path is not None and not Path(model.path).is_file():
            raise _fail(f"model {model.name!r}: model file not found: {model.path}")
    if settings.secret_keys:
        from responsed.runtime.sealing import Sealer

        try:
            Sealer(settings.secret_keys)
        except ValueError as exc:
            raise _fail(f"secret_keys: {exc} (generate one with `responsed keygen`)") from None
    if settings.host not in LOOPBACK and not settings.api_keys:
        raise _fail(
            f"binding {settings.host} exposes the server beyond this machine: "
            "set api_keys in the config or RESPONSED_API_KEYS"
        )
    _check_port(settings.host, settings.port)


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(message)s", stream=sys.stderr)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
    )


@app.callback()
def _root() -> None:
    """A self-hosted, stateful server for the OpenAI Responses API."""


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [env RESPONSED_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [env RESPONSED_PORT]")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Where state lives [env RESPONSED_DATA_DIR]")
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML config file [env RESPONSED_CONFIG]")
    ] = None,
) -> None:
    """Serve the Responses API."""
    import uvicorn

    from responsed.api.app import create_app

    try:
        settings = load_settings(config, host=host, port=port, data_dir=data_dir)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    _configure_logging(settings.log_level)
    _preflight(settings)
    for model in settings.models:
        where = model.path or model.base_url
        typer.echo(f"responsed: model {model.name} ({model.engine}: {where})", err=True)
    typer.echo(f"responsed: data in {settings.data_dir.resolve()}", err=True)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )


@app.command()
def keygen() -> None:
    """Print a new secret key for `secret_keys` / RESPONSED_SECRET_KEYS."""
    from cryptography.fernet import Fernet

    typer.echo(Fernet.generate_key().decode())


def main() -> None:
    app()
