"""MLflow models-from-code definition of the served model: an ONNX chat model, no pickled session.

MLflow stores this file's source with the model and runs it at load time; the ONNX folder travels as the
``onnx_model`` artifact and the task spec as ``task_spec``, so the model builds its own prompts.
``predict`` takes a list of inputs and returns the model's raw JSON answers.
"""

from __future__ import annotations

import mlflow
from mlflow.pyfunc import PythonModel


class OnnxChatModel(PythonModel):
    def load_context(self, context) -> None:
        from pathlib import Path

        import yaml

        from components.inference import ChatModel
        from components.tasks.spec import Task, check_spec

        self.onnx_dir = context.artifacts["onnx_model"]
        self.chat_model = ChatModel.load(self.onnx_dir)
        spec = Path(context.artifacts["task_spec"])
        self.task = Task(check_spec(yaml.safe_load(spec.read_text(encoding="utf-8")), str(spec)))

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        max_tokens = int((params or {}).get("max_tokens", 96))
        return [self.chat_model.chat(self.task.build_messages(t), max_tokens=max_tokens).text for t in model_input]


mlflow.models.set_model(OnnxChatModel())
