"""Reference scores of every registered env, so a result can be compared without rerunning ours.

``random`` and ``oracle``: ``dialog_gym.evaluate(agent, env_id, episodes=1000, seed=0)`` on the
test split with ``RandomAgent(0)`` and ``OracleAgent()`` (the tests recompute them). ``ppo``: our
agent after ``dialog-gym train --env ENV_ID --seed S`` as ``benchmarks/reference_scores.py`` runs
it (its ``COMMANDS``), sampling from the policy on 1000 test episodes, the mean over the seeds in
``benchmarks/results/reference_scores/ENV_ID.json`` (``tests/test_results.py`` checks that the
two agree). An env whose ``ppo`` row has not been measured on the current code has none.
``REWARD_THRESHOLDS`` is the mean return registered as ``reward_threshold``: 95% of the oracle's.
Both are keyed by the ids of ``dialog_gym.envs.ENVS``; an id without scores yet registers with no
threshold.
"""

REFERENCE_SCORES: dict[str, dict[str, dict[str, float]]] = {
    "DialogQA-v0": {
        "random": {"mean_return": -0.879, "answer_accuracy": 0.042, "success_rate": 0.029},
        "oracle": {"mean_return": 2.045, "answer_accuracy": 1.0, "success_rate": 1.0},
        "ppo": {"mean_return": 1.976, "answer_accuracy": 0.992, "success_rate": 0.985},
    },
    "DialogQA-Toy-v0": {
        "random": {"mean_return": 0.064, "answer_accuracy": 0.0, "success_rate": 0.0},
        "oracle": {"mean_return": 1.0, "answer_accuracy": 1.0, "success_rate": 1.0},
        "ppo": {"mean_return": 0.931, "answer_accuracy": 0.873, "success_rate": 0.873},
    },
    "Tutor-v0": {
        "random": {"mean_return": 0.0065, "answer_accuracy": 0.0, "success_rate": 0.0},
        "oracle": {"mean_return": 1.0, "answer_accuracy": 1.0, "success_rate": 1.0},
    },
    "Conversation-v0": {
        "random": {"mean_return": 0.0043, "answer_accuracy": 0.0, "success_rate": 0.0},
        "oracle": {"mean_return": 1.124, "answer_accuracy": 1.0, "success_rate": 1.0},
    },
    "TwentyQuestions-v0": {
        "random": {"mean_return": -0.0546, "answer_accuracy": 0.0, "success_rate": 0.0},
        "oracle": {"mean_return": 0.8487, "answer_accuracy": 1.0, "success_rate": 1.0},
    },
    "CustomerService-v0": {
        "random": {"mean_return": -0.0552, "answer_accuracy": 0.0, "success_rate": 0.0},
        "oracle": {"mean_return": 0.9009, "answer_accuracy": 1.0, "success_rate": 1.0},
    },
}

REWARD_THRESHOLDS = {
    "DialogQA-v0": 1.94,
    "DialogQA-Toy-v0": 0.95,
    "Tutor-v0": 0.95,
    "Conversation-v0": 1.07,
    "TwentyQuestions-v0": 0.81,
    "CustomerService-v0": 0.85,
}


def check_references(env_ids: tuple[str, ...]) -> None:
    """Refuse scores recorded for an id that is not registered (a renamed or removed env)."""
    for table, name in ((REFERENCE_SCORES, "REFERENCE_SCORES"), (REWARD_THRESHOLDS, "REWARD_THRESHOLDS")):
        stale = sorted(set(table) - set(env_ids))
        if stale:
            raise ValueError(
                f"dialog_gym.references.{name} holds {stale}, which no row of dialog_gym.envs.ENVS registers"
            )
