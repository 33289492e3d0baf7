"""How hard is each DialogQA-v0 world for the default policy? Pretraining accuracy by world size.

Trains the default Transformer policy by maximum likelihood on clean demonstrations of several
world sizes, for the same number of steps, and prints the accuracy of the answer's content word
on held-out test-split dialogues (teacher forced) every ``--every`` steps. One person and one
object need no binding (whose place is which); every extra person or object does, and small
models take far longer to learn that.

    python benchmarks/pretraining_difficulty.py [--steps 5000] [--every 1000]
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import torch

import dialog_gym  # noqa: F401
from agents.policy import PolicyConfig, TransformerPolicy
from agents.pretrain import answer_loss

WORLDS = [
    ("1 person, 1 object, 4 events (default)", {}),
    ("2 people, 1 object, 4 events", {"n_people": 2}),
    ("2 people, 2 objects, 2 events", {"n_people": 2, "n_objects": 2, "n_events": 2}),
    ("2 people, 2 objects, 0 events", {"n_people": 2, "n_objects": 2, "n_events": 0}),
]


def content_accuracy(policy, env, demos) -> float:
    ids, lengths, mask = (torch.as_tensor(x) for x in (demos.ids, demos.lengths, demos.answer_mask))
    with torch.no_grad():
        valid = torch.arange(ids.shape[1])[None] < lengths[:, None]
        logits, _ = policy(ids, valid)
    predicted, target = logits[:, :-1].argmax(-1), ids[:, 1:]
    the = env.tokenizer.token_to_id("the")
    content = mask[:, 1:] & (target != env.tokenizer.eos_id) & (target != the)
    return float((predicted == target)[content].float().mean())


def curve(kwargs: dict, steps: int, every: int, batch: int = 32) -> list[tuple[int, float, float]]:
    torch.manual_seed(0)
    env = gym.make("DialogQA-v0", **kwargs).unwrapped
    test_env = gym.make("DialogQA-v0", split="test", **kwargs).unwrapped
    policy = TransformerPolicy(
        PolicyConfig(vocab_size=env.tokenizer.vocab_size, context_len=env.max_len),
        torch.tensor(env.action_masks()),
    )
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-3)
    held_out = test_env.demonstrations(1000, seed=99)
    points, step, start = [], 0, time.perf_counter()
    while step < steps:
        demos = env.demonstrations(batch * every, seed=step + 1)
        tensors = [torch.as_tensor(x) for x in (demos.ids, demos.lengths, demos.answer_mask)]
        for rows in torch.randperm(len(demos)).split(batch):
            loss = answer_loss(policy, *(t[rows] for t in tensors))
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            optimizer.step()
            step += 1
        points.append((step, time.perf_counter() - start, content_accuracy(policy, test_env, held_out)))
    return points


def run(quick: bool = False, steps: int | None = None, every: int | None = None) -> str:
    """The table as markdown (quick: 1,000 steps per world)."""
    steps = steps or (1000 if quick else 5000)
    every = every or (500 if quick else 1000)
    results = {label: curve(kwargs, steps, every) for label, kwargs in WORLDS}
    marks = [step for step, _, _ in next(iter(results.values()))]
    lines = [
        "| world | " + " | ".join(f"{s} steps" for s in marks) + " | seconds |",
        "|---|" + "---:|" * (len(marks) + 1),
    ]
    for label, points in results.items():
        lines.append(f"| {label} | " + " | ".join(f"{acc:.3f}" for _, _, acc in points) + f" | {points[-1][1]:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5000, help="gradient steps per world (batch 32)")
    parser.add_argument("--every", type=int, default=1000, help="steps between accuracy measurements")
    args = parser.parse_args()
    print(run(steps=args.steps, every=args.every))


if __name__ == "__main__":
    main()
