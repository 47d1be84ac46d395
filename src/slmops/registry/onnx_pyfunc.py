"""MLflow models-from-code definition of the registered model: an ONNX chat model, no pickled session.

Usage (anywhere, in a venv with only the model's own requirements installed):
    model = mlflow.pyfunc.load_model("models:/ticket-triage-slm@poc")
    model.predict(["注文した商品が届きません"])      # -> the model's raw answers (the task's JSON), one each
    mlflow models serve -m models:/ticket-triage-slm@poc --env-manager local

MLflow stores this file's source with the model and runs it at load time. It imports nothing from slmops
(which is not installable from PyPI): only onnxruntime (onnxruntime-genai for a GenAI folder, which has a
``genai_config.json``), numpy and transformers' tokenizer (no torch). The
ONNX folder travels as the ``onnx_model`` artifact, the student's prompt as the ``task`` artifact
(``task.json``: the messages with ``{text}`` where the inquiry goes). Decoding is greedy with the
KV cache, stopping at the tokenizer's EOS, as ``slmops.inference.chat_model.ChatModel`` does by default.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
from mlflow.pyfunc import PythonModel

TEXT_SLOT = "{text}"


class OnnxChatModel(PythonModel):
    def load_context(self, context) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        onnx_dir = Path(context.artifacts["onnx_model"])
        self.tokenizer = AutoTokenizer.from_pretrained(str(onnx_dir))
        spec = json.loads(Path(context.artifacts["task"]).read_text(encoding="utf-8"))
        self.messages = spec["messages"]
        self.genai = None
        if (onnx_dir / "genai_config.json").exists():  # the genai_int4 form: GenAI's own graph and decode loop
            import onnxruntime_genai

            self.genai = onnxruntime_genai.Model(str(onnx_dir))
            return
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(onnx_dir / "model.onnx"), options)
        self.input_names = {i.name for i in self.session.get_inputs()}

    def predict(self, context, model_input, params: dict | None = None) -> list[str]:
        """``model_input``: inquiries (a list, or the one string column MLflow's signature turns it into);
        ``params``: ``max_tokens`` (default 96)."""
        max_tokens = int((params or {}).get("max_tokens", 96))
        return [self._generate(self._prompt(str(text)), max_tokens) for text in _texts(model_input)]

    def _prompt(self, text: str) -> list[int]:
        messages = [{**m, "content": m["content"].replace(TEXT_SLOT, text)} for m in self.messages]
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        return list(ids["input_ids"] if isinstance(ids, dict) else ids)

    def _empty_cache(self) -> dict:
        import numpy as np

        cache = {}
        for given in self.session.get_inputs():
            if given.name.startswith("past_key_values."):
                _, heads, _, head_dim = given.shape
                cache[given.name] = np.zeros((1, heads, 0, head_dim), dtype=np.float32)
        return cache

    def _generate(self, prompt: list[int], max_tokens: int) -> str:
        import numpy as np

        if self.genai is not None:
            return self._generate_genai(prompt, max_tokens)
        eos = self.tokenizer.eos_token_id
        step, cache, new = np.array([prompt], dtype=np.int64), self._empty_cache(), []
        seen = len(prompt)
        for _ in range(max_tokens):
            width = step.shape[1]
            feed = {"input_ids": step, "attention_mask": np.ones((1, seen), dtype=np.int64), **cache}
            if "position_ids" in self.input_names:
                feed["position_ids"] = np.arange(seen - width, seen, dtype=np.int64)[None, :]
            outputs = self.session.run(None, feed)
            names = [o.name for o in self.session.get_outputs()]
            token = int(outputs[0][0, -1].argmax())
            new.append(token)
            if token == eos:
                break
            cache = {
                name.replace("present.", "past_key_values."): value
                for name, value in zip(names[1:], outputs[1:], strict=True)
            }
            step, seen = np.array([[token]], dtype=np.int64), seen + 1
        return self.tokenizer.decode(new, skip_special_tokens=True)

    def _generate_genai(self, prompt: list[int], max_tokens: int) -> str:
        """Greedy through ONNX Runtime GenAI's decode loop, stopping at the tokenizer's EOS."""
        import numpy as np
        import onnxruntime_genai

        params = onnxruntime_genai.GeneratorParams(self.genai)
        params.set_search_options(max_length=len(prompt) + max_tokens, do_sample=False)
        generator = onnxruntime_genai.Generator(self.genai, params)
        generator.append_tokens(np.array([prompt], dtype=np.int32))
        new: list[int] = []
        while len(new) < max_tokens and not generator.is_done():
            generator.generate_next_token()
            new.append(int(generator.get_next_tokens()[0]))
            if new[-1] == self.tokenizer.eos_token_id:
                break
        return self.tokenizer.decode(new, skip_special_tokens=True)


def _texts(model_input) -> list:
    if isinstance(model_input, str):
        return [model_input]
    if hasattr(model_input, "iloc"):  # a pandas DataFrame (one string column) or Series
        return list(model_input.iloc[:, 0] if model_input.ndim == 2 else model_input)
    return list(model_input)


mlflow.models.set_model(OnnxChatModel())
