"""The docs run: each topic page of docs/ runs its ```python snippets, top to bottom, in one fresh
namespace (one test per page, so pytest-xdist runs the pages in parallel); the links of the README
and of the docs point at files and headings that exist."""
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).parents[1]
DOCS = ROOT / "docs"
SNIPPET = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)

# The pages whose snippets run, slowest first (so that two workers finish together), and the
# pages of prose and tables only: the Keras-word index, the design notes, the measurements.
TOPIC_PAGES = ["training.md", "sequences.md", "generative.md", "callbacks.md", "evaluation.md", "inspection.md",
               "tuning.md", "saving.md", "layers.md", "text.md", "data.md"]
PROSE_PAGES = {"keras_words.md", "design.md", "benchmarks.md"}

# What a page that trains must have learned, evaluated in its namespace after its last snippet
# (the snippets assert more on the way).
OUTCOMES = {
    "training.md": ["accuracy > 0.7", "history.history['digit_accuracy'][0] > 0.5",
                    "len(fsdp_history.history['loss']) == 2"],
    "callbacks.md": ["resumed_accuracy > 0.7", "history.history['val_accuracy'][-1] > 0.7"],
    "inspection.md": ["hits > 0.8"],
    "sequences.md": ["forecast_history.history['loss'][-1] < forecast_history.history['loss'][0]"],
    "generative.md": ["ae_losses[-1] < ae_losses[0]", "new_digits.shape == (16, 28, 28, 1)"],
    "text.md": ["text_accuracy > 0.9", "new_scores[0, 0] > 0.5 > new_scores[1, 0]"],
    "data.md": ["array_accuracy > 0.8", "stream_accuracy > 0.8", "epoch == 2"],
}


def snippets(page: pathlib.Path):
    """``(first line, code)`` of each ```python block of ``page``, in order."""
    text = page.read_text()
    return [(text.count("\n", 0, match.start(1)), match.group(1)) for match in SNIPPET.finditer(text)]


@pytest.mark.parametrize("name", TOPIC_PAGES)
def test_page_snippets_run(name):
    page = DOCS / name
    found = snippets(page)
    assert found, f"docs/{name} has no ```python snippet; a page of prose only belongs in PROSE_PAGES"
    namespace: dict = {"__name__": f"docs.{page.stem}"}
    for line, code in found:
        # Padded so that a traceback names the line of the page.
        exec(compile("\n" * line + code, str(page), "exec"), namespace)  # noqa: S102 - the docs are our own
    for outcome in OUTCOMES.get(name, ()):
        assert eval(outcome, namespace), f"docs/{name}: {outcome}"  # noqa: S307


def test_every_page_is_a_topic_page_or_prose():
    pages = {page.name for page in DOCS.glob("*.md")}
    assert pages - PROSE_PAGES == set(TOPIC_PAGES), "a new page of docs/ belongs in TOPIC_PAGES or PROSE_PAGES"
    assert set(OUTCOMES) <= set(TOPIC_PAGES)
    for name in PROSE_PAGES:
        page = DOCS / name
        if page.exists():
            assert not snippets(page), f"docs/{name} is in PROSE_PAGES, so its snippets would never run"


def github_anchors(page: pathlib.Path) -> set:
    """The anchors GitHub gives the headings of ``page``."""
    anchors, seen = set(), {}
    for heading in re.findall(r"^#{1,6} +(.+?) *#* *$", strip_code_blocks(page.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def strip_code_blocks(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("name", ["README.md"] + sorted(f"docs/{page.name}" for page in DOCS.glob("*.md")))
def test_links_resolve(name):
    page = ROOT / name
    text = re.sub(r"`[^`\n]*`", "", strip_code_blocks(page.read_text()))
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in github_anchors(linked):
            broken.append(f"{target}: no such heading")
    assert not broken, f"{name}: {broken}"
