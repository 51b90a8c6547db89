"""Tiny random-init models built from configs: real transformers models of the offline peers'
architectures (Llama, Qwen2, Gemma3) with a real byte-level BPE tokenizer trained on the
project's synthetic word problems. They answer nonsense, but they run every mechanism of the
pipeline in seconds, with nothing downloaded: the tests use them, and so does
``bench/gpu_check.py`` on a machine without network.
"""

from __future__ import annotations

from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(vocab_size: int = 600):
    """A byte-level BPE trained on the synthetic problems, with BOS and ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from pst_core.data.synthetic import generate_problems

    texts = [p.question for p in generate_problems(600, seed=1)]
    texts += ["The answer is 42.", "Question: Answer: Think step by step."]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    # Prepend BOS like Llama/Gemma tokenizers do, so double-BOS bugs would show.
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="<|im_end|>",
        chat_template=CHATML,
    )


def tiny_configs(tokenizer, width: int = 64) -> dict:
    """Two-layer configs of the three architectures, ``width`` wide, for ``tokenizer``."""
    from transformers import Gemma3TextConfig, LlamaConfig, Qwen2Config

    common = dict(
        vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return {
        "llama": LlamaConfig(**common, tie_word_embeddings=True),
        "qwen2": Qwen2Config(**common, tie_word_embeddings=False),
        "gemma3": Gemma3TextConfig(**common, head_dim=width // 4, sliding_window=8,
                                   final_logit_softcapping=30.0),
    }


def save_random_model(path: Path, config, tokenizer) -> Path:
    """A seeded random-init model of ``config`` and ``tokenizer``, saved for from_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
