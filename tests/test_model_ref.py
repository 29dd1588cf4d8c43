"""Pasted Hub URLs (issue 16): a browser URL names `org/name` (+ revision), or we say which
repo it probably meant, never guess at a path."""

from __future__ import annotations

import pytest

from talktuah.errors import InvalidModelIdError, InvalidRevisionError
from talktuah.model_ref import (
    ModelRef,
    parse_model_ref,
    resolve_model_and_revision,
    resolve_model_id,
)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("org/name", ModelRef("org/name")),
        ("https://huggingface.co/org/name", ModelRef("org/name")),
        ("https://huggingface.co/org/name/", ModelRef("org/name")),
        ("http://www.huggingface.co/org/name", ModelRef("org/name")),
        ("huggingface.co/org/name", ModelRef("org/name")),
        ("https://hf.co/org/name", ModelRef("org/name")),
        ("  https://huggingface.co/org/name?library=transformers#top ", ModelRef("org/name")),
        ("https://huggingface.co/org/name/tree/v1.0", ModelRef("org/name", "v1.0")),
        ("https://huggingface.co/org/name/tree/main/sub/dir", ModelRef("org/name", "main")),
        (
            "https://huggingface.co/org/name/resolve/main/config.json",
            ModelRef("org/name", "main", "config.json"),
        ),
        (
            "https://huggingface.co/org/name/blob/refs%2Fpr%2F1/a/b.json",
            ModelRef("org/name", "refs/pr/1", "a/b.json"),
        ),
        ("https://huggingface.co/gpt2/tree/main", ModelRef("gpt2", "main")),
    ],
)
def test_urls_name_the_repo_and_revision(text: str, ref: ModelRef) -> None:
    assert parse_model_ref(text) == ref


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://huggingface.co/org/name/discussions/3", "Did you mean org/name?"),
        ("https://github.com/org/name", "Did you mean org/name?"),
        ("https://hf-mirror.com/org/name/tree/main", "Did you mean org/name?"),
        ("org/name/tree/main", "Did you mean org/name?"),
        ("https://huggingface.co/datasets/org/data", "dataset, not a model"),
        ("https://huggingface.co/spaces/org/app", "Space, not a model"),
        ("https://huggingface.co/", "does not name a model repo"),
    ],
)
def test_other_urls_are_answered_with_a_suggestion(text: str, message: str) -> None:
    with pytest.raises(InvalidModelIdError, match=message):
        parse_model_ref(text)


def test_the_result_still_goes_through_the_validator() -> None:
    with pytest.raises(InvalidModelIdError, match="'..'"):
        resolve_model_id("https://huggingface.co/org/..")
    assert resolve_model_id("https://huggingface.co/org/name") == "org/name"


def test_the_url_revision_replaces_only_the_default() -> None:
    url = "https://huggingface.co/org/name/tree/v2"
    assert resolve_model_and_revision(url, "main") == ("org/name", "v2")
    assert resolve_model_and_revision(url, "v2") == ("org/name", "v2")
    assert resolve_model_and_revision("org/name", "v3") == ("org/name", "v3")
    with pytest.raises(InvalidRevisionError, match="Give one of them"):
        resolve_model_and_revision(url, "v3")
