"""The README is the user's contract: it must show the two commands and the real exit codes."""

from pathlib import Path

from vgpubuild.errors import exit_code_table

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_readme_exit_codes_match_the_hierarchy() -> None:
    assert exit_code_table() in README


def test_readme_shows_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README


def _leaf_keys(schema: dict[str, object], prefix: str = "") -> list[str]:
    keys = []
    for key, value in schema.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            keys += _leaf_keys(value, f"{path}.")
        else:
            keys.append(path)
    return keys


def test_readme_migration_guide_covers_every_module_option() -> None:
    """Each option a vgpu4nixos config can hold appears in the README's migration table."""
    from vgpubuild.config import _SCHEMA
    from vgpubuild.profiles.settings import DISPLAY_KEYS, OVERRIDE_KEYS

    guide = README[README.index("### Migrating from vgpu4nixos") :]
    module_options = [
        k for k in _leaf_keys(_SCHEMA)
        if k.startswith(("patcher.", "driverSource.", "griddUnlock.enable"))
    ]
    override_options = [*OVERRIDE_KEYS, *(f"display.{side}" for side in DISPLAY_KEYS)]
    module_options += [f"profileOverrides.\"ID\".{k}" for k in override_options]
    missing = [k for k in module_options if k.split(".")[-1] not in guide]
    assert not missing, f"README migration guide misses {missing}"


def test_architecture_names_every_module() -> None:
    """A newcomer finds each stage by its file name: docs/architecture.md names them all."""
    root = Path(__file__).resolve().parent.parent
    text = (root / "docs" / "architecture.md").read_text()
    package = root / "vgpubuild"
    modules = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if not p.name.startswith("__") and p.parent.name != "cli"
    ]
    names = {m: (f"`{m}`", f"`vgpubuild/{m}`", f"`{m.split('/')[-1]}`") for m in modules}
    missing = [m for m, spelt in names.items() if not any(s in text for s in spelt)]
    assert not missing, f"docs/architecture.md does not name {missing}"
