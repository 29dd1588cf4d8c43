"""Tiny GGUF models that llama.cpp's server really loads and runs, built in about a second.

The tests' tiny Llama (tiny_model.py) is written as GGUF with PyPI's `gguf` package
(`GGUFWriter`), without llama.cpp's converter (it needs a llama.cpp checkout; PyPI `gguf`
0.19 is older than the converter). Two facts make llama.cpp read it as transformers does:
q and k projections are permuted from Hugging Face's rotate-half layout to llama.cpp's
interleaved one (the converter's `permute`), and the byte-level BPE tokenizer is declared
`gpt2` with pre-tokenizer `gpt-2`; llama.cpp then gives the same token ids as the Hugging
Face tokenizer.

`quant` only chooses how tensors are stored (F32, F16 or Q8_0; gguf-py cannot write K-quants)
and the file type recorded; a file *named* `...-Q4_K_M.gguf` holding Q8_0 tensors is what
the selection tests need (llama.cpp picks by name, as TalkTuah must).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from .tiny_model import build_tiny_chat_model

_STORAGE = {"F32": "F32", "F16": "F16", "Q8_0": "Q8_0"}


def _permute(weights: Any, n_head: int) -> Any:
    """Hugging Face rotate-half -> llama.cpp interleaved rows (convert_hf_to_gguf's permute)."""
    return (
        weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def write_gguf(
    model_dir: Path, out: Path, *, storage: str = "F32", embedding: bool = False
) -> Path:
    """Convert a tiny_model.py checkpoint in `model_dir` to one GGUF file at `out`."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    template = model_dir / "chat_template.jinja"
    tensors = load_file(str(model_dir / "model.safetensors"))
    n_head = config["num_attention_heads"]
    hidden = config["hidden_size"]

    qtype = getattr(gguf.GGMLQuantizationType, _STORAGE[storage])
    file_type = {
        "F32": gguf.LlamaFileType.ALL_F32,
        "F16": gguf.LlamaFileType.MOSTLY_F16,
        "Q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[storage]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(model_dir.name or "tiny")
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(hidden)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_dimension_count(hidden // n_head)
    writer.add_rope_freq_base(float(config.get("rope_theta", 10000.0)))
    writer.add_layer_norm_rms_eps(float(config["rms_norm_eps"]))
    writer.add_vocab_size(config["vocab_size"])
    writer.add_file_type(file_type)
    if embedding:
        writer.add_pooling_type(gguf.PoolingType.MEAN)

    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    tokens = [""] * config["vocab_size"]
    types = [gguf.TokenType.NORMAL] * config["vocab_size"]
    for text, token_id in vocab.items():
        tokens[token_id] = text
    for added in tokenizer["added_tokens"]:
        tokens[added["id"]] = added["content"]
        special = added.get("special", True)
        types[added["id"]] = gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in tokenizer["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(config["bos_token_id"])
    writer.add_eos_token_id(config["eos_token_id"])
    writer.add_pad_token_id(config["pad_token_id"])
    writer.add_add_bos_token(False)
    if template.exists():
        writer.add_chat_template(template.read_text())
    else:
        writer.add_chat_template(json.loads((model_dir / "tokenizer_config.json").read_text())
                                 ["chat_template"])  # fmt: skip

    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    per_layer = {
        "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    }  # fmt: skip
    for name, data in sorted(tensors.items()):
        data = data.astype(np.float32)
        if name.startswith("model.layers."):
            index, rest = name[len("model.layers.") :].split(".", 1)
            part, kind = rest.rsplit(".", 1)
            target = f"blk.{index}.{per_layer[part]}.{kind}"
            if part == "self_attn.q_proj":
                data = _permute(data, n_head)
            elif part == "self_attn.k_proj":
                data = _permute(data, config["num_key_value_heads"])
        else:
            target = names[name]
        if data.ndim == 1 or qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(target, data)  # norms stay F32, as the converter does
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(target, data.astype(np.float16))
        else:
            writer.add_tensor(target, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def tiny_gguf_bytes(seed: int, *, storage: str = "F32", embedding: bool = False) -> bytes:
    """One tiny chat model as the bytes of a GGUF file."""
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "hf"
        build_tiny_chat_model(model_dir, seed)
        return write_gguf(model_dir, Path(tmp) / "model.gguf", storage=storage,
                          embedding=embedding).read_bytes()  # fmt: skip
