"""The docs a user reads hold: every file they link to or cite is in the repository (a user has
no ``../shared``), and no page cites the team's own notes on the papers."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_relative_link_resolves():
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):  # http(s):, mailto:
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing


def test_no_page_or_test_cites_files_users_do_not_have():
    cites = []
    for path in [*PAGES, *ROOT.glob("tests/**/*.py"), *ROOT.glob("mllm_guidance/**/*.py")]:
        if path == Path(__file__):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"paper/(METHOD|MVAE|prompts-reference)\.md|shared/paper|`MVAE\.md`|\.\./shared/", line):
                cites.append(f"{path.relative_to(ROOT)}:{n}")
    assert not cites, cites
