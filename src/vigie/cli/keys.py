"""``vigie keys``: create, list and revoke the API keys of the prediction service."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from vigie.cli.common import authorized, guarded, out
from vigie.serving.auth import create_key, list_keys, revoke_key

keys_app = typer.Typer(help="API keys of the prediction service.", no_args_is_help=True)


@keys_app.command("create")
@guarded
def keys_create(
    role: Annotated[str, typer.Option(help="predict or admin.")] = "predict",
) -> None:
    """Create a key; its secret is shown once, only its hash is stored."""
    settings = authorized("keys.manage")
    key_id, secret = create_key(settings, role, actor=settings.actor)
    out.print(f"key {key_id} (role {role}); keep this secret, it is not stored:")
    out.print(secret, highlight=False)


@keys_app.command("list")
@guarded
def keys_list() -> None:
    """Every key with its role and state (never a secret)."""
    table = Table(title="API keys")
    for column in ("id", "role", "created", "by", "expires", "revoked"):
        table.add_column(column)
    for key in list_keys(authorized("keys.manage")):
        table.add_row(
            key.id,
            key.role,
            str(key.created_at)[:19],
            key.created_by,
            str(key.expires_at or "")[:19],
            str(key.revoked_at or "")[:19],
        )
    out.print(table)


@keys_app.command("revoke")
@guarded
def keys_revoke(key_id: Annotated[str, typer.Argument(help="The key id.")]) -> None:
    """Revoke a key; every worker refuses it within about a second."""
    settings = authorized("keys.manage")
    revoke_key(settings, key_id, actor=settings.actor)
    out.print(f"revoked {key_id}")
