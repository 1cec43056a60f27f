"""`redact_url`: the one way a URL with credentials is shown, and the places that show URLs use it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from verifarm.redaction import redact_url
from verifarm.settings import Settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg2://farm:s3cret@db:5432/verifarm?sslmode=require",
         "postgresql+psycopg2://farm:***@db:5432/verifarm?sslmode=require"),
        ("rediss://farm:p%40ss%3Aword@10.0.0.1:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem",
         "rediss://farm:***@10.0.0.1:6380/0?ssl_cert_reqs=required&ssl_ca_certs=/etc/ca.pem"),
        ("redis://:only-a-password@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://farm@h:6379/0", "redis://farm@h:6379/0"),
        ("https://registry:8270/?token=abc&api_key=xyz&page=2", "https://registry:8270/?token=***&api_key=***&page=2"),
        ("postgresql://h/db?password=hunter2", "postgresql://h/db?password=***"),
        ("sqlite:////var/lib/verifarm/rollouts.db", "sqlite:////var/lib/verifarm/rollouts.db"),
        ("farm:hunter2@db/verifarm?sslmode=require", "farm:***@db/verifarm?sslmode=require"),
        ("http://[::1:bad/", "(unparseable URL hidden)"),
        (None, "-"),
        ("", "-"),
    ],
)  # fmt: skip
def test_credentials_are_hidden_and_the_rest_kept(url, shown) -> None:
    assert redact_url(url) == shown


def test_a_refused_settings_value_is_named_without_its_password() -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(database_url="farm:hunter2@db/verifarm")
    assert "hunter2" not in str(refused.value) and "farm:***@db" in str(refused.value)
    with pytest.raises(ValidationError) as refused:
        Settings(registry_url="ftp://farm:hunter2@trainer/registry")
    assert "hunter2" not in str(refused.value) and "must start with http" in str(refused.value)


def test_the_cli_names_a_refused_url_without_its_password() -> None:
    from typer.testing import CliRunner

    from verifarm.cli import app

    result = CliRunner().invoke(app, ["campaign", "list"], env={"VERIFARM_DATABASE_URL": "farm:hunter2@db/verifarm"})
    assert result.exit_code == 2
    assert "hunter2" not in result.output and "farm:***@db/verifarm" in result.output
