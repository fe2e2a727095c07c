"""Chat templates measured by rendering; Modelfiles written, parsed back and executed."""

from __future__ import annotations

import pytest
from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from services.common.errors import FailedPrecondition
from services.exporter import modelfile
from services.exporter.chat_format import analyse

CHATML_WITH_DEFAULT_SYSTEM = (  # SmolLM2-135M-Instruct's template
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)
LLAMA3 = (  # Llama 3 style: BOS written by the template, no default system message
    "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
    "'<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
ZEPHYR = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + "
    "eos_token + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}"
    "{% endif %}"
)
NO_SYSTEM_ROLE = (  # Gemma style: refuses a system message
    "{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
NO_END_TOKEN = (
    "{% for message in messages %}{{ message['role'] + ': ' + message['content'] + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
)
BRACES = (  # literal '{{' in the template text must survive the Go translation
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + ' {{x}}\n' + "
    "message['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant {{x}}\n' }}{% endif %}"
)
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>",
            "<|start_header_id|>", "<|end_header_id|>", "</s>", "<end_of_turn>"]


def renderer(template: str, bos: str = "<|begin_of_text|>", eos: str = "</s>"):
    """Renders like transformers' apply_chat_template (sandboxed, trim_blocks, lstrip_blocks)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message):
        raise TemplateError(message)  # what transformers' apply_chat_template raises

    compiled = env.from_string(template)
    return lambda messages, gen: compiled.render(
        messages=messages, add_generation_prompt=gen, bos_token=bos, eos_token=eos,
        raise_exception=raise_exception,
    )


CONVERSATIONS = [
    [{"role": "user", "content": "Label: great movie"}],
    [{"role": "system", "content": "Answer with one word."},
     {"role": "user", "content": "Capital of France?"},
     {"role": "assistant", "content": "Paris"}, {"role": "user", "content": "Of Italy?"}],
]


def test_chatml_with_default_system():
    fmt = analyse(renderer(CHATML_WITH_DEFAULT_SYSTEM), SPECIALS)
    assert fmt.header == ""
    assert fmt.prefix == {"system": "<|im_start|>system\n", "user": "<|im_start|>user\n",
                          "assistant": "<|im_start|>assistant\n"}
    assert set(fmt.suffix.values()) == {"<|im_end|>\n"}
    assert fmt.default_system == (
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face")
    assert fmt.generation_prompt == "<|im_start|>assistant\n"
    assert fmt.end_of_turn == "<|im_end|>"


@pytest.mark.parametrize("template", [CHATML_WITH_DEFAULT_SYSTEM, LLAMA3, ZEPHYR, BRACES])
def test_modelfile_template_writes_what_the_chat_template_writes(template):
    render = renderer(template)
    fmt = analyse(render, SPECIALS)
    text = modelfile.build(fmt, "./gguf/q4_k_m.gguf", context_length=8192,
                           eos_tokens=["</s>"], bos_token="<|begin_of_text|>")
    parsed = modelfile.parse(text)
    assert parsed.from_ == "./gguf/q4_k_m.gguf"
    assert parsed.parameters["num_ctx"] == [4096]
    assert fmt.end_of_turn in parsed.parameters["stop"]
    for messages in CONVERSATIONS:
        # Ollama: SYSTEM is the first message when the request has none; BOS is the runtime's.
        sent = list(messages)
        if parsed.system and sent[0]["role"] != "system":
            sent.insert(0, {"role": "system", "content": parsed.system})
        expected = render(messages, True).removeprefix("<|begin_of_text|>")
        assert modelfile.render_go_template(parsed.template, sent) == expected


def test_llama3_header_is_left_to_the_runtime_bos():
    fmt = analyse(renderer(LLAMA3), SPECIALS)
    assert fmt.header == "<|begin_of_text|>" and fmt.default_system is None
    assert fmt.end_of_turn == "<|eot_id|>"
    template = modelfile.go_template(fmt, bos_token="<|begin_of_text|>")
    assert "<|begin_of_text|>" not in template and template.startswith("{{ range .Messages }}")


def test_literal_braces_are_escaped_for_go():
    template = modelfile.go_template(analyse(renderer(BRACES), SPECIALS))
    assert '{{ "{{" }}x}}' in template


@pytest.mark.parametrize(("template", "fragment"), [
    (NO_SYSTEM_ROLE, "turn-by-turn shape"),
    (NO_END_TOKEN, "holds no special token"),
])
def test_untranslatable_templates_fail_precondition(template, fragment):
    with pytest.raises(FailedPrecondition) as raised:
        analyse(renderer(template), SPECIALS, "m")
    assert fragment in str(raised.value)


SAMPLE = '''# comment
FROM ./gguf/q8_0.gguf
TEMPLATE """{{ range .Messages }}{{ if eq .Role "user" }}U: {{ .Content }}
{{ else }}A: {{ .Content }}
{{ end }}{{ end }}A:"""
SYSTEM You are terse.
PARAMETER stop "<|im_end|>"
PARAMETER stop "say \\"hi\\""
PARAMETER temperature 0.2
parameter num_ctx 2048
'''


def test_parse_reads_every_directive():
    parsed = modelfile.parse(SAMPLE)
    assert parsed.from_ == "./gguf/q8_0.gguf"
    assert parsed.system == "You are terse."
    assert parsed.parameters == {"stop": ["<|im_end|>", 'say "hi"'], "temperature": [0.2],
                                 "num_ctx": [2048]}
    messages = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    assert modelfile.render_go_template(parsed.template, messages) == "U: x\nA: y\nA:"


@pytest.mark.parametrize(("text", "fragment"), [
    ("TEMPLATE x\n", "no FROM"),
    ("FROM a\nFOO b\n", "unknown directive"),
    ('FROM a\nTEMPLATE """never closed\n', "unterminated"),
    ("FROM a\nPARAMETER warp 9\n", "unknown PARAMETER"),
    ("FROM a\nPARAMETER num_ctx lots\n", "not a number"),
    ('FROM a\nSYSTEM "x" trailing\n', "unexpected text"),
])
def test_parse_rejects_bad_modelfiles(text, fragment):
    with pytest.raises(modelfile.ModelfileError) as raised:
        modelfile.parse(text)
    assert fragment in str(raised.value)


@pytest.mark.parametrize(("template", "fragment"), [
    ("{{ range .Messages }}{{ .Content }}", "missing"),
    ("{{ .Prompt }}", "unsupported"),
    ("{{ .Content }}", "outside"),
])
def test_go_template_subset_is_checked(template, fragment):
    with pytest.raises(modelfile.ModelfileError) as raised:
        modelfile.render_go_template(template, [{"role": "user", "content": "x"}])
    assert fragment in str(raised.value)
