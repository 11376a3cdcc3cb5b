"""``cfv --version`` names the installed version (issue 12), without reading settings or reaching a service."""

from __future__ import annotations

from importlib.metadata import version

from cfv.cli import main
from click.testing import CliRunner


def test_version_names_the_installed_package() -> None:
    result = CliRunner().invoke(main, ["--version"], env={"CFV_DATABASE_URL": "postgresql://nowhere.invalid/x"})
    assert result.exit_code == 0, result.output
    assert result.output == f"cfv {version('cfv')}\n"
