"""Tiny random-weight chat models that `transformers serve` really loads and runs.

Recipe and traps measured on these machines (DESIGN.md, "Engine"): a byte-level BPE trained
on a few sentences, a Jinja chat template, a 2-layer Llama with hidden size 64. A random
model happily emits special tokens or lone UTF-8 bytes (empty or U+FFFD text), so the
embedding rows of special and non-ASCII tokens are zeroed (the head is tied, so they are
never the likeliest token); each model gets its own seed so two models answer differently.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

SENTENCES = [
    "hello there, how are you today?",
    "the quick brown fox jumps over the lazy dog",
    "TalkTuah serves tiny models for tests.",
    "a model that answers with plain words",
    "ask me anything and I will answer something",
] * 20

CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def build_tiny_chat_model(
    out_dir: Path,
    seed: int,
    *,
    hidden_size: int = 64,
    max_positions: int = 256,
    bfloat16: bool = False,
) -> dict[str, int]:
    """Write a loadable model (config, safetensors, tokenizer, template) into `out_dir`.

    The defaults suit `transformers serve` on a CPU; scripts/gpu/ widens it for vLLM, whose
    FlashAttention kernels want a head size of 64 or more (4 heads: hidden 256).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|bos|>", "<|eos|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(SENTENCES, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>"
    )
    fast.chat_template = CHAT_TEMPLATE
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(fast), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
        max_position_embeddings=max_positions,
        bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id, tie_word_embeddings=True,
    )  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        embeddings = model.get_input_embeddings().weight
        for token_id in range(len(fast)):
            text = fast.decode([token_id])
            unusable = not text.strip() or not text.isascii() or "\ufffd" in text
            if token_id in fast.all_special_ids or unusable:
                embeddings[token_id].zero_()
    if bfloat16:
        model.to(torch.bfloat16)
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    fast.save_pretrained(out_dir)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "head_dim": hidden_size // config.num_attention_heads,
        "vocab": len(fast),
    }


def tiny_chat_model_files(seed: int) -> dict[str, bytes]:
    """The model's files as bytes, ready for the test hub or `install_in_cache`."""
    with tempfile.TemporaryDirectory() as tmp:
        build_tiny_chat_model(Path(tmp), seed)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def install_in_cache(models_dir: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """Lay `files` out as huggingface_hub would after a download (blobs, snapshot, refs/main).

    Tests that need a model on disk but are not about downloading use this instead of the
    test hub, to stay fast.
    """
    commit = hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    repo_dir = models_dir / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / commit
    blobs = repo_dir / "blobs"
    shutil.rmtree(snapshot, ignore_errors=True)
    snapshot.mkdir(parents=True)
    blobs.mkdir(exist_ok=True)
    for name, data in files.items():
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("../../blobs") / blob.name)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot
