"""MLflow models-from-code definition of the served model: an ONNX chat model, no pickled session.

MLflow stores this file's source with the model and runs it at load time; the ONNX folder travels as the
``onnx_model`` artifact. ``predict`` takes a list of inquiries and returns the model's raw JSON answers.
"""

from __future__ import annotations

from mlflow.pyfunc import PythonModel

import mlflow


class OnnxChatModel(PythonModel):
    def load_context(self, context) -> None:
        from components.inference import ChatModel

        self.onnx_dir = context.artifacts["onnx_model"]
        self.chat_model = ChatModel.load(self.onnx_dir)

    def predict(self, context, model_input: list[str], params: dict | None = None) -> list[str]:
        from components.tasks import ticket_triage as task

        max_tokens = int((params or {}).get("max_tokens", 96))
        return [self.chat_model.chat(task.build_messages(text), max_tokens=max_tokens).text for text in model_input]


mlflow.models.set_model(OnnxChatModel())
