"""Model backends behind one protocol (leap.models.base.ChatModel) and the model registry."""

from leap.models.base import ChatModel, ChoiceConstraint, Conversation, Generation, Message, ModelError, Usage
from leap.models.registry import cache_dir, load_chat_model, resolve_model_path

__all__ = [
    "ChatModel",
    "ChoiceConstraint",
    "Conversation",
    "Generation",
    "Message",
    "ModelError",
    "Usage",
    "cache_dir",
    "load_chat_model",
    "resolve_model_path",
]
