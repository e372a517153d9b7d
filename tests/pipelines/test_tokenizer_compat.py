"""Our tokenizer directories load the same in transformers 4.x (which many tools still pin) and 5.x.

The set-up installs transformers 4.57.1 into a throwaway venv (package registry only) and runs
the same probe under both versions: encodings, special tokens, the chat template, decoding.
"""

import json
import subprocess
import sys
import venv

import pytest

PROBE = r"""
import json, sys
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
texts = ["Hello world", "Grüße aus Köln! 1979–1983", "<|user|>hi<|end|>", "def f(x):\n    return x"]
print(json.dumps({
    "ids": [t(x)["input_ids"] for x in texts],
    "special": [t.bos_token, t.eos_token, t.pad_token, t.convert_tokens_to_ids("<|end|>"), t.model_max_length],
    "chat": list(t.apply_chat_template([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
                                       tokenize=True, return_dict=True)["input_ids"]),
    "decoded": [t.decode(t(x)["input_ids"], skip_special_tokens=True) for x in texts],
}))
"""


@pytest.fixture(scope="module")
def transformers4(tmp_path_factory):
    env = tmp_path_factory.mktemp("transformers4")
    venv.create(env, with_pip=True)
    pip = env / "bin" / "pip"
    subprocess.run([str(pip), "install", "--quiet", "--disable-pip-version-check", "transformers==4.57.1", "tokenizers==0.22.2",
                    "huggingface_hub==0.36.2", "jinja2==3.1.6"], check=True)
    return env / "bin" / "python"


def probe(python, tokenizer_dir) -> dict:
    out = subprocess.run([str(python), "-c", PROBE, str(tokenizer_dir)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tokenizer_loads_identically_in_transformers_4_and_5(token_lake, transformers4):
    tok_dir = token_lake.partition_dir("tokenizer")
    assert json.loads((tok_dir / "tokenizer_config.json").read_text())["tokenizer_class"] == "PreTrainedTokenizerFast"
    new, old = probe(sys.executable, tok_dir), probe(transformers4, tok_dir)
    assert new == old
    assert new["special"][:3] == ["<|endoftext|>", "<|endoftext|>", "<|pad|>"] and new["decoded"][0] == "Hello world"
