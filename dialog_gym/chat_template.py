"""The text a tokenizer's chat template writes around each turn, read off one rendered conversation.

An env with ``chat_template=True`` writes its dialogue the way a chat model was trained to read it:
the context and each question as user turns, each answer as an assistant turn ended by the
template's end-of-turn token, which becomes the env's EOS. Rather than re-implementing templates,
``ChatLayout.of`` renders a conversation of marker strings with the tokenizer's own
``apply_chat_template`` and cuts the text between them. For ChatML (SmolLM2, Qwen) that gives::

    opening     "<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\n"
    next_user   "<|im_end|>\\n<|im_start|>user\\n"        (between the context and a question)
    assistant   "<|im_end|>\\n<|im_start|>assistant\\n"   (after a question)
    end_of_turn "<|im_end|>"                              (the agent's EOS)
    after_answer "\\n<|im_start|>user\\n"                  (after the EOS, before the next question)

A template that refuses two user turns in a row (Llama 2, Mistral) gets the context and the first
question in one user turn, separated by a blank line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MARKS = ("\x01context\x01", "\x01question\x01", "\x01answer\x01", "\x01next\x01")


@dataclass(frozen=True)
class ChatLayout:
    """What a chat template writes before, between and after the turns of a dialogue."""

    opening: str
    """Before the first user turn's text (a system prompt, the user header)."""
    next_user: str
    """Between the context and a question, both user text."""
    assistant: str
    """Between a user turn's text and the assistant's reply."""
    end_of_turn: int
    """The token id that ends the assistant's reply: the env's EOS."""
    after_answer: str
    """After the reply's end-of-turn token, before the next user turn's text."""

    @classmethod
    def of(cls, tokenizer: Any) -> ChatLayout:
        """The layout of a ``transformers`` tokenizer's chat template; a one-line error if it has none."""
        name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                f"chat_template=True, but tokenizer {name!r} has no chat template; use a chat model's tokenizer "
                "(e.g. the one of --policy smollm2) or drop chat_template"
            )
        context, question, answer, following = _MARKS
        try:
            text = _render(
                tokenizer, [("user", context), ("user", question), ("assistant", answer), ("user", following)]
            )
            one_turn = False
        except Exception:  # noqa: BLE001  (templates raise jinja2 errors of their own when roles do not alternate)
            text = _render(tokenizer, [("user", context + question), ("assistant", answer), ("user", following)])
            one_turn = True
        try:
            opening, rest = text.split(context, 1)
            between, rest = rest.split(question, 1)
            assistant, rest = rest.split(answer, 1)
            after, rest = rest.split(following, 1)
        except ValueError:
            raise ValueError(
                f"the chat template of {name!r} does not write each message's text as given; it cannot frame an "
                "env's dialogue (drop chat_template)"
            ) from None
        if one_turn:
            between = "\n\n"
        ids = tokenizer.encode(after, add_special_tokens=False)
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        token = tokenizer.convert_ids_to_tokens(ids[0]) if ids else ""
        if not ids or ids[0] not in special or not after.startswith(token):
            raise ValueError(
                f"the chat template of {name!r} does not end an assistant turn with one special token (it writes "
                f"{after[:40]!r}); an env needs one as the answer's EOS (drop chat_template)"
            )
        return cls(opening, between, assistant, int(ids[0]), after[len(token) :])


def _render(tokenizer: Any, messages: list[tuple[str, str]]) -> str:
    return tokenizer.apply_chat_template(
        [{"role": role, "content": content} for role, content in messages], tokenize=False, add_generation_prompt=True
    )
