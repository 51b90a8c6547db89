"""The transformers backend on tiny random-init models: generation mechanics and fast scoring."""

import pytest
import torch

from pst_core.generate import generate_solo
from pst_core.models.backend import SamplingParams
from pst_core.models.decode import decode
from pst_core.models.hf import TransformersBackend
from pst_core.models.packed import can_pack
from pst_core.models.source import cpu_prefers_bf16, load_model
from pst_core.models.tokens import encode_continuation, encode_prompt, eos_ids
from pst_core.prompts import solo_prompt
from pst_core.schemas import RESPONSES_SCHEMA
from tests.helpers import naive_logprobs


def _backend(path, batch_size=4, dtype="float32"):
    """The backend as ``from_config`` builds it: packed weights where they help (fp32 CPU)."""
    model, tok = load_model(str(path), dtype=dtype, device="cpu")
    return TransformersBackend(model, tok, name="tiny", batch_size=batch_size,
                               linears="packed" if can_pack(model) else "nn")


PAIRS = [
    ("A pet store had 13 cats.", " They sold 10. The answer is 3."),
    ("Q", " 7"),
    ("How many apples are left if 4 of 9 are eaten?", " 9 - 4 = 5. The answer is 5."),
]


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_fast_scorer_equals_full_logits(tiny_model_dirs, arch):
    backend = _backend(tiny_model_dirs[arch], batch_size=2)
    scores = backend.score([c for c, _ in PAIRS], [t for _, t in PAIRS])
    for (context, continuation), score in zip(PAIRS, scores):
        reference = naive_logprobs(backend, context, continuation)
        assert score.n_tokens == len(reference)
        assert abs(score.logprob_sum - reference.sum().item()) <= 1e-3 * len(reference)


def test_greedy_batched_equals_one_by_one(tiny_llama_dir):
    backend = _backend(tiny_llama_dir, batch_size=3)
    prompts = ["short?", "a much longer prompt with many more tokens in it?", "medium length one?"]
    params = SamplingParams(max_new_tokens=8)
    batched = [g[0].text for g in backend.generate(prompts, params)]
    single = [backend.generate([p], params)[0][0].text for p in prompts]
    assert batched == single


PROMPTS = ["short?", "a much longer prompt with many more tokens in it, past a sliding window?",
           "medium length one?", "Tom has 3 apples and buys 4 more. How many apples?"]


def _reference(path, prompts: list[str], max_new_tokens: int) -> list[str]:
    """``model.generate`` of a plain copy of the model (``nn.Linear``, not packed) on each
    prompt alone (no padding, no batch), greedy, cut at EOS."""
    model, tokenizer = load_model(str(path), dtype="float32", device="cpu")
    ends = eos_ids(model, tokenizer)
    texts = []
    for prompt in prompts:
        ids = torch.tensor([encode_prompt(tokenizer, prompt)])
        tokens = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=ends,
                                pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:].tolist()
        cut = [i for i, t in enumerate(tokens) if t in ends]
        texts.append(tokenizer.decode(tokens[: cut[0]] if cut else tokens,
                                      skip_special_tokens=True).strip())
    return texts


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
@pytest.mark.parametrize("rows", [1, 3, "auto"])
def test_greedy_equals_generate_one_prompt_at_a_time(tiny_model_dirs, arch, rows, monkeypatch):
    """The decode loop (cohorts, left padding, chunked prefill, finished rows dropped, packed
    weights) gives what ``model.generate`` gives each prompt alone; gemma3's sliding window is
    8 tokens."""
    monkeypatch.setattr("pst_core.models.decode._PREFILL_TOKENS", 40)  # several prefill chunks
    backend = _backend(tiny_model_dirs[arch], batch_size=rows)
    params = SamplingParams(max_new_tokens=12)
    with torch.inference_mode():
        reference = _reference(tiny_model_dirs[arch], PROMPTS, 12)
    assert [g[0].text for g in backend.generate(PROMPTS, params)] == reference


def test_one_prefill_per_prompt_and_no_finished_rows_fed(tiny_llama_dir):
    backend = _backend(tiny_llama_dir, batch_size="auto")
    params = SamplingParams(max_new_tokens=20, temperature=1.0, n=4, seed=3)
    out = backend.generate(PROMPTS, params)
    stats = backend.stats
    assert stats.prefill_tokens == sum(len(backend.encode(p)) for p in PROMPTS)  # not x 4
    assert stats.row_steps == stats.new_tokens  # every row-step made a token of a live row
    assert sum(g.n_tokens for gens in out for g in gens) <= stats.new_tokens


def test_top_p_near_zero_is_greedy(tiny_llama_dir):
    backend = _backend(tiny_llama_dir)
    greedy = backend.generate(PROMPTS, SamplingParams(max_new_tokens=10))
    nucleus = backend.generate(PROMPTS, SamplingParams(max_new_tokens=10, temperature=1.0,
                                                       top_p=1e-6, n=2, seed=1))
    assert [[g.text for g in gens] for gens in nucleus] == [[g[0].text] * 2 for g in greedy]


@pytest.mark.parametrize("rows", [1, 5])
def test_samples_do_not_depend_on_rows(tiny_llama_dir, rows):
    """Each sampled row has its own random stream: the rows decoded at once (which auto takes
    from free memory) change no sample."""
    params = SamplingParams(max_new_tokens=10, temperature=1.0, n=3, seed=7)
    reference = _backend(tiny_llama_dir, batch_size=12).generate(PROMPTS, params)
    assert _backend(tiny_llama_dir, batch_size=rows).generate(PROMPTS, params) == reference


def test_greedy_and_sampled_prompts_in_one_call(tiny_llama_dir):
    """Per-prompt params: the greedy prompts get what a greedy call gives them, the sampled
    ones n samples each with their own budget."""
    backend = _backend(tiny_llama_dir, batch_size=6)
    greedy = SamplingParams(max_new_tokens=12)
    sampled = SamplingParams(max_new_tokens=5, temperature=1.0, n=3, seed=2)
    mixed = backend.generate(PROMPTS + PROMPTS[:2], [greedy] * len(PROMPTS) + [sampled] * 2)
    assert mixed[: len(PROMPTS)] == backend.generate(PROMPTS, greedy)
    assert [len(g) for g in mixed[len(PROMPTS):]] == [3, 3]
    assert all(g.n_tokens <= 5 for gens in mixed[len(PROMPTS):] for g in gens)
    assert mixed == backend.generate(PROMPTS + PROMPTS[:2], [greedy] * len(PROMPTS) + [sampled] * 2)


def test_progress_counts_each_prompt_once_when_its_last_row_ends(tiny_llama_dir):
    backend = _backend(tiny_llama_dir)
    calls = []
    decode(backend.model, [backend.encode(p) for p in PROMPTS],
           SamplingParams(max_new_tokens=6, temperature=1.0, n=3), rows=5, advance=calls.append,
           eos_ids=eos_ids(backend.model, backend.tokenizer), pad_id=backend.tokenizer.pad_token_id)
    assert calls == [1] * len(PROMPTS)


def test_sampling_n_and_seed(tiny_llama_dir):
    backend = _backend(tiny_llama_dir)
    params = SamplingParams(max_new_tokens=6, temperature=1.0, n=3, seed=5)
    first = backend.generate(["one?", "two?"], params)
    assert [len(g) for g in first] == [3, 3]
    assert first == backend.generate(["one?", "two?"], params)
    assert len({g.text for g in first[0]}) > 1  # random weights, temperature 1: samples differ


def test_length_limit_and_token_counts(tiny_llama_dir):
    backend = _backend(tiny_llama_dir)
    (gen,), = backend.generate(["count?"], SamplingParams(max_new_tokens=5))
    assert gen.finish_reason in {"stop", "length"}
    assert gen.n_tokens <= 5 and (gen.finish_reason == "stop" or gen.n_tokens == 5)


def test_stop_strings_cut_the_response(tiny_llama_dir):
    backend = _backend(tiny_llama_dir)
    params = SamplingParams(max_new_tokens=30, temperature=1.0, n=8, seed=0, stop=("e",))
    for gen in backend.generate(["x"], params)[0]:
        assert "e" not in gen.text


def test_chat_and_fewshot_rendering(tiny_llama_dir):
    backend = _backend(tiny_llama_dir)
    assert backend.prompt_style("auto") == "chat"
    chat = backend.render(solo_prompt("What is 2+3?", "chat"))
    assert chat.startswith("<|im_start|>user\nWhat is 2+3? Think step by step.")
    assert chat.endswith("<|im_start|>assistant\n")
    fewshot = solo_prompt("What is 2+3?", "fewshot")
    assert backend.render(fewshot) == fewshot.text and fewshot.text.endswith("Question: What is 2+3?\nAnswer:")
    backend.tokenizer.chat_template = None
    assert backend.prompt_style("auto") == "fewshot"


def test_bos_is_added_once(tiny_llama_dir):
    backend = _backend(tiny_llama_dir)
    bos = backend.tokenizer.bos_token_id
    assert backend.encode("hi").count(bos) == 1
    assert backend.encode("<s>hi").count(bos) == 1


def test_generate_solo_table(tiny_llama_dir):
    import pyarrow as pa

    backend = _backend(tiny_llama_dir)
    questions = pa.table({"id": ["q1", "q2"], "question": ["2+3?", "4+4?"]})
    table = generate_solo(questions, backend, SamplingParams(max_new_tokens=4, n=2),
                          peer="tiny", model="tiny-src")
    assert table.schema == RESPONSES_SCHEMA and table.num_rows == 4
    assert table.column("question_id").to_pylist() == ["q1", "q1", "q2", "q2"]
    assert table.column("sample").to_pylist() == [0, 1, 0, 1]
    assert all(p.startswith("<|im_start|>user\n2+3?") for p in table.column("prompt").to_pylist()[:2])


def test_bf16_on_cpu_where_supported(tiny_llama_dir):
    model, _ = load_model(str(tiny_llama_dir), device="cpu")
    expected = torch.bfloat16 if cpu_prefers_bf16() else torch.float32
    assert model.dtype == expected


def test_choice_logprobs_equal_one_token_continuation_scores(tiny_model_dirs):
    backend = _backend(tiny_model_dirs["gemma3"], batch_size=2)
    contexts = ["Is it right? Reply:", "A much longer context, is it right? Reply:", "Ok?"]
    choices = [" Yes", " No"]
    got = backend.choice_logprobs(contexts, choices)
    for context, row in zip(contexts, got):
        for choice, value in zip(choices, row):
            first = encode_continuation(backend.tokenizer, choice)[:1]
            reference = naive_logprobs(backend, context, backend.tokenizer.decode(first))
            assert abs(value - reference[0].item()) < 1e-4


def test_rows_stopped_by_a_stop_string_count_only_their_tokens(tiny_llama_dir):
    backend = _backend(tiny_llama_dir, batch_size=8)
    params = SamplingParams(max_new_tokens=20, temperature=1.0, n=8, seed=3, stop=("e",))
    generations = backend.generate(["x"], params)[0]
    stopped = [g for g in generations if g.finish_reason == "stop"]
    # Rows end at different tokens; counting a row's padding would make them all equal.
    assert len(stopped) > 1 and len({g.n_tokens for g in stopped}) > 1


def test_output_embedding_gets_contiguous_inputs(tiny_llama_dir):
    """A strided input with a frozen weight (a merged LoRA model) made torch copy the weight
    once per batch row (pytorch#88658); the backend hands it a contiguous one."""
    backend = _backend(tiny_llama_dir)
    backend.model.requires_grad_(False)
    seen = []
    backend.model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: seen.append(args[0].is_contiguous()))
    backend.generate(["Q: 1+1?", "Q: what is 2 times 3?"], SamplingParams(max_new_tokens=3))
    assert len(seen) == 3 and all(seen)  # the prompt step and two decoding steps


def test_bf16_is_preferred_only_with_amx(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in (("avx512f avx512_vnni", False), ("avx512f avx512_bf16", False),
                          ("amx_bf16 amx_tile", True), ("avx2 fma", False)):
        cpuinfo.write_text(f"processor : 0\nflags : {flags}\n")
        assert cpu_prefers_bf16(cpuinfo) is native


def test_cpu_fp32_linears_are_packed(tiny_llama_dir):
    from pst_core.models.packed import PackedLinear

    backend = _backend(tiny_llama_dir)
    linears = [m for m in backend.model.modules() if isinstance(m, torch.nn.Linear)]
    assert not linears and any(isinstance(m, PackedLinear) for m in backend.model.modules())
