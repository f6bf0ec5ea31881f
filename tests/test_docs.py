"""README.md and docs/: every relative link and #anchor resolves, the README stays short, and
`make demo` leaves the committed files alone."""
import os
import re
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 250

# [text](target): the target up to the closing parenthesis (no spaces in our links).
_LINK = re.compile(r"\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`[^`]*`")


def _pages():
    docs = os.path.join(REPO, "docs")
    return [os.path.join(REPO, "README.md")] + sorted(
        os.path.join(docs, name) for name in os.listdir(docs) if name.endswith(".md"))


def _prose(text):
    """The lines outside fenced code blocks, with inline code removed."""
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield _INLINE_CODE.sub("", line)


def slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped (hyphens and underscores
    kept), spaces to hyphens."""
    text = _INLINE_CODE.sub(lambda m: m.group(0)[1:-1], heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text):
    """Every heading's anchor in a Markdown text; a repeated one gets -1, -2, ... as on GitHub."""
    seen, found = {}, set()
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#{1,6} (.+)", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path):
    """The relative links of a Markdown file whose file or #anchor does not exist."""
    text = open(path, encoding="utf-8").read()
    broken = []
    for line in _prose(text):
        for target in _LINK.findall(line):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            linked = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) \
                if file_part else path
            if not os.path.exists(linked):
                broken.append(f"{target}: no {os.path.relpath(linked, REPO)}")
            elif anchor:
                if not linked.endswith(".md"):
                    broken.append(f"{target}: an anchor into a file that is not Markdown")
                elif anchor not in anchors(open(linked, encoding="utf-8").read()):
                    broken.append(f"{target}: no heading #{anchor} in "
                                  f"{os.path.relpath(linked, REPO)}")
    return broken


def test_slugs_follow_github():
    assert slug("The EMD op (tf_ops)") == "the-emd-op-tf_ops"
    assert slug("Pre-processing and the tf.data pipeline") == \
        "pre-processing-and-the-tfdata-pipeline"
    assert slug("What `make demo` gives") == "what-make-demo-gives"
    assert slug("The paper's numbers") == "the-papers-numbers"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n") == {"a", "a-1"}


def test_every_relative_link_and_anchor_resolves():
    broken = {os.path.relpath(p, REPO): b for p in _pages() for b in [broken_links(p)] if b}
    assert not broken


def test_a_broken_link_is_found(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## Its part\n")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md#its-part) [self](#b) `[code](x.md)`\n\n# B\n"
                    "[gone](c.md) [no heading](a.md#other) [bad self](#nothing)\n")
    assert broken_links(str(page)) == ["c.md: no " + os.path.relpath(str(tmp_path / "c.md"), REPO),
                                       f"a.md#other: no heading #other in "
                                       f"{os.path.relpath(str(tmp_path / 'a.md'), REPO)}",
                                       f"#nothing: no heading #nothing in "
                                       f"{os.path.relpath(str(page), REPO)}"]


def test_the_readme_is_short():
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) <= README_MAX_LINES


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_writes_its_record_under_runs_and_records_the_committed_one():
    def commands(target):
        return subprocess.run(["make", "-n", target], cwd=REPO, capture_output=True, text=True,
                              check=True, timeout=60).stdout

    demo = commands("demo")
    assert "experiments.demo" in demo and "--out=runs/demo/demo.json" in demo
    assert "results/" not in demo  # a fresh clone stays clean after `make demo`
    assert "--out=results/demo.json" in commands("records")
