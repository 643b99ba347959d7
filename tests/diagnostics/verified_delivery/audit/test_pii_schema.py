"""``runbooks/pii.yaml`` is validated on load: a wrong kind or action names file, line and the valid
values; every kind must be listed; the file is part of ``load_runbooks`` and ``triage24 runbooks``."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.runbooks import RunbookError, load_runbooks
from diagnostics.runbooks.pii import PiiAction, PiiKind
from diagnostics.verified_delivery.audit.masking import load_pii_policy
from tests.conftest import REPO


@pytest.fixture
def books(tmp_path: Path) -> Path:
    d = tmp_path / "runbooks"
    shutil.copytree(REPO / "runbooks", d)
    return d


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"fixture text not found in {path.name}: {old!r}"
    path.write_text(text.replace(old, new, 1))


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_the_repo_policy_loads_with_every_kind() -> None:
    policy = load_runbooks(REPO / "runbooks", environ={}).pii
    assert set(policy.kinds) == set(PiiKind)
    assert policy.action("id_card") is PiiAction.MASK and policy.action("email") is PiiAction.HASH
    assert policy.hash.salt == "triage24-pii-v1" and policy.hash.length == 8
    salted = load_pii_policy(REPO / "runbooks", environ={"TRIAGE24_PII_SALT": "site-b-2027"})
    assert salted.hash.salt == "site-b-2027"


def test_a_wrong_kind_names_file_line_and_the_valid_kinds(books: Path) -> None:
    path = books / "pii.yaml"
    _edit(path, "  email: hash", "  e_mail: hash")
    with pytest.raises(RunbookError) as exc:
        load_runbooks(books, environ={})
    (problem,) = exc.value.problems
    assert problem.file == path and problem.line == _line_of(path, "e_mail:")
    assert problem.field.startswith("kinds.e_mail")
    for kind in PiiKind:
        assert f"'{kind.value}'" in problem.message
    assert "got 'e_mail'" in problem.message


def test_a_wrong_action_names_file_line_and_the_valid_actions(books: Path) -> None:
    path = books / "pii.yaml"
    _edit(path, "  card: mask", "  card: drop")
    with pytest.raises(RunbookError) as exc:
        load_pii_policy(books, environ={})
    (problem,) = exc.value.problems
    assert str(problem) == (
        f"{path}:{_line_of(path, 'card: drop')}: kinds.card: Input should be 'mask' or 'hash' (got 'drop')"
    )


def test_a_forgotten_kind_is_named(books: Path) -> None:
    path = books / "pii.yaml"
    _edit(path, "  ip: hash ", "  # ip: hash ")
    with pytest.raises(RunbookError) as exc:
        load_pii_policy(books, environ={})
    (problem,) = exc.value.problems
    assert (problem.line, problem.field) == (_line_of(path, "kinds:"), "kinds")
    assert problem.message.endswith("every kind needs an action (mask or hash); missing: ip")


@pytest.mark.parametrize(
    ("old", "new", "field", "expect"),
    [
        ("  length: 8 ", "  length: 4 ", "hash.length", "greater than or equal to 8"),
        ("  salt: ${TRIAGE24_PII_SALT:-triage24-pii-v1}", "  salt: short", "hash.salt", "at least 8"),
        ("keep_keys:", "keep_kees:", "keep_kees", "unknown field"),
    ],
)
def test_other_fields_are_checked(books: Path, old: str, new: str, field: str, expect: str) -> None:
    path = books / "pii.yaml"
    _edit(path, old, new)
    with pytest.raises(RunbookError) as exc:
        load_pii_policy(books, environ={})
    (problem,) = exc.value.problems
    assert problem.field == field and expect in problem.message and problem.line is not None


def test_runbooks_validate_reports_pii_yaml(books: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runbooks", "validate", "--dir", str(books)]) == 0
    assert "pii.yaml" in capsys.readouterr().out
    _edit(books / "pii.yaml", "  phone: hash", "  phone: blur")
    assert main(["runbooks", "validate", "--dir", str(books)]) == 1
    assert "pii.yaml" in capsys.readouterr().err
