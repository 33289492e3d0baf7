"""agents: the PPO agent for dialog_gym (Transformer policy, pretraining, PPO, CLI); needs torch."""
