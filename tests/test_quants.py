"""Which file of a GGUF repo an id like `org/repo:Q4_K_M` means (issue 17).

The rule is llama.cpp's (`llama-server -hf org/repo[:quant]`), so one id means the same file
in TalkTuah, llama.cpp and Ollama: the tag case-insensitive; without one Q4_K_M, then Q8_0,
then the first model file; never a projector, imatrix or draft file as the model.
"""

from __future__ import annotations

import pytest

from talktuah.errors import InvalidModelIdError, UnknownQuantError
from talktuah.quants import (
    Quant,
    available,
    default_quant,
    is_gguf_repo,
    quant_of,
    select,
    shard_count,
    split_tag,
    with_tag,
)

GiB = 1024**3

REPO = {
    "README.md": 100,
    "model-Q2_K.gguf": 3 * GiB,
    "model-Q4_K_M.gguf": 5 * GiB,
    "model-q8_0.gguf": 8 * GiB,
    "BF16/model-BF16-00001-of-00003.gguf": 6 * GiB,
    "BF16/model-BF16-00003-of-00003.gguf": 2 * GiB,
    "BF16/model-BF16-00002-of-00003.gguf": 6 * GiB,
    "mmproj-model-F16.gguf": GiB // 2,
    "mmproj-model-F32.gguf": GiB,
    "imatrix.gguf": 10,
    "model-Q4_K_M-draft.gguf": 10,
}


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("org/repo", ("org/repo", None)),
        ("org/repo:Q4_K_M", ("org/repo", "Q4_K_M")),
        ("org/repo:q4_k_m", ("org/repo", "Q4_K_M")),
        ("org/repo:iq2_xxs", ("org/repo", "IQ2_XXS")),
        ("org/repo:bf16", ("org/repo", "BF16")),
    ],
)
def test_split_tag_upper_cases_the_tag(model_id: str, expected: tuple[str, str | None]) -> None:
    assert split_tag(model_id) == expected


@pytest.mark.parametrize(
    "model_id",
    ["org/repo:", "org/repo:a:b", "org/repo:../x", "org/repo:Q4/K", "org/repo:" + "Q" * 33,
     "org/repo:_Q4", "org/repo:Q4 K"],
)  # fmt: skip
def test_split_tag_refuses_a_tag_outside_the_grammar(model_id: str) -> None:
    """The tag ends up in file matching and listings: only letters, digits, `_.-`."""
    with pytest.raises(InvalidModelIdError, match="quantization tag"):
        split_tag(model_id)


def test_with_tag_round_trips() -> None:
    assert with_tag("org/repo", "Q8_0") == "org/repo:Q8_0"
    assert with_tag("org/repo", None) == "org/repo"


@pytest.mark.parametrize(
    ("path", "quant"),
    [
        ("Qwen2.5-0.5B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("llama-2-7b.Q5_K_S.gguf", "Q5_K_S"),
        ("model-IQ4_XS.gguf", "IQ4_XS"),
        ("model-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("model-bf16.gguf", "BF16"),
        ("model-f16.gguf", "F16"),
        ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
        ("Q8_0/model-00001-of-00002.gguf", "Q8_0"),  # the quant only in its folder's name
        ("model.gguf", None),
        ("Qwen2-7B.gguf", None),  # Qwen2 is no quant
    ],
)
def test_quant_of_reads_the_name(path: str, quant: str | None) -> None:
    assert quant_of(path) == quant


def test_available_groups_shards_and_skips_non_models() -> None:
    quants = {q.tag: q for q in available(REPO)}
    assert list(quants) == ["Q2_K", "Q4_K_M", "Q8_0", "BF16"]
    bf16 = quants["BF16"]
    assert bf16.files == (
        "BF16/model-BF16-00001-of-00003.gguf",
        "BF16/model-BF16-00002-of-00003.gguf",
        "BF16/model-BF16-00003-of-00003.gguf",
    )
    assert bf16.first == "BF16/model-BF16-00001-of-00003.gguf"  # what llama.cpp is given
    assert bf16.size == 14 * GiB
    assert bf16.whole


def test_a_quant_missing_a_shard_is_not_whole() -> None:
    (quant,) = available(["m-Q8_0-00001-of-00003.gguf", "m-Q8_0-00003-of-00003.gguf"])
    assert not quant.whole
    assert shard_count("m-Q8_0-00003-of-00003.gguf") == 3
    assert shard_count("m-Q8_0.gguf") is None


def test_available_without_sizes() -> None:
    (quant,) = available(["m-Q8_0.gguf"])
    assert quant.size is None


def test_a_file_naming_no_quant_gets_a_tag_that_validates() -> None:
    """A tag listed must be one a user can type back (`org/repo:<tag>`)."""
    (quant,) = available(["my model (v2) + extras, final release candidate.gguf"])
    assert split_tag(f"org/repo:{quant.tag}") == ("org/repo", quant.tag)


def test_select_by_tag_any_case() -> None:
    selection = select(REPO, "q8_0")
    assert selection.quant.files == ("model-q8_0.gguf",)
    assert selection.mmproj == "mmproj-model-F16.gguf"  # F16 preferred among projectors
    assert selection.files == ["model-q8_0.gguf", "mmproj-model-F16.gguf"]


def test_select_without_tag_follows_llama_cpp() -> None:
    assert select(REPO, None).quant.tag == "Q4_K_M"
    without_q4 = {k: v for k, v in REPO.items() if "Q4_K_M" not in k}
    assert select(without_q4, None).quant.tag == "Q8_0"
    only_others = {"a-Q5_K_S.gguf": 1, "a-Q6_K.gguf": 1}
    assert select(only_others, None).quant.tag == "Q5_K_S"  # the first model file


def test_select_a_sharded_quant_takes_every_shard() -> None:
    assert select(REPO, "BF16").files == [
        "BF16/model-BF16-00001-of-00003.gguf",
        "BF16/model-BF16-00002-of-00003.gguf",
        "BF16/model-BF16-00003-of-00003.gguf",
        "mmproj-model-F16.gguf",
    ]


def test_select_never_picks_a_projector_imatrix_or_draft() -> None:
    files = {"mmproj-Q4_K_M.gguf": 1, "imatrix-Q4_K_M.gguf": 1, "x-Q4_K_M-draft.gguf": 1}
    with pytest.raises(UnknownQuantError, match="no GGUF model file"):
        select(files, None, repo_id="org/repo")


def test_unknown_tag_lists_quants_with_sizes() -> None:
    with pytest.raises(UnknownQuantError) as caught:
        select(REPO, "Q3_K_L", repo_id="org/repo")
    message = str(caught.value)
    assert "'Q3_K_L'" in message
    assert "Q4_K_M (5.0 GiB)" in message and "BF16 (14.0 GiB)" in message
    assert message.endswith("e.g. org/repo:Q4_K_M.")  # ends with an id to pull
    assert caught.value.available == ["Q2_K", "Q4_K_M", "Q8_0", "BF16"]


def test_default_quant() -> None:
    quants = [Quant("Q6_K", ("a",), 1), Quant("Q8_0", ("b",), 1)]
    assert default_quant(quants).tag == "Q8_0"


def test_is_gguf_repo() -> None:
    assert is_gguf_repo(REPO)
    assert not is_gguf_repo(["model.safetensors", "model-Q8_0.gguf"])
    assert not is_gguf_repo(["config.json", "model.safetensors"])
    assert not is_gguf_repo(["mmproj-F16.gguf"])
