"""Every snippet of docs/keras_words.md runs, in order, in one namespace."""
import pathlib
import re

DOC = pathlib.Path(__file__).parents[1] / "docs" / "keras_words.md"


def test_keras_words_snippets_run():
    snippets = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(snippets) >= 20
    namespace: dict = {}
    for snippet in snippets:
        exec(compile(snippet, str(DOC), "exec"), namespace)  # noqa: S102 - the docs are our own
    assert namespace["accuracy"] > 0.7
