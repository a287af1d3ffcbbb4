"""The README is the user's door: every module it tells them to run answers --help, and every
page it links to exists."""

import re

import pytest

from tests.conftest import ROOT, run_module

README = (ROOT / "README.md").read_text()


def test_every_linked_page_exists():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    assert links, "the README links to its docs"
    for link in links:
        assert (ROOT / link).exists(), link


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(set(re.findall(r"python -m ([a-z_.]+)", README))))
def test_every_module_the_readme_runs_answers_help(module):
    result = run_module(module, "--help", timeout=120)
    assert result.returncode == 0, result.stderr[-1000:]
    assert "usage:" in result.stdout
