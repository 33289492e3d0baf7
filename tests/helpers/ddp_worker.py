"""Launched by tests/test_distributed.py under torchrun: PPO updates on several processes.

``python -m torch.distributed.run --nproc_per_node=2 tests/helpers/ddp_worker.py MODE OUT CONFIG_JSON UPDATES``

- ``steps``: build a TokenRun, take UPDATES PPO updates, save each process's weights as OUT/rank{R}.safetensors.
- ``train``: ``agents.train.train`` for UPDATES updates (``stop_after``) in OUT.
- ``resume``: continue the run in OUT up to UPDATES updates.
"""

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

from agents.config import TrainConfig
from agents.distributed import start_processes, stop_processes
from agents.token_run import TokenRun
from agents.train import train


def main() -> None:
    mode, out, config_json, updates = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    config = TrainConfig.from_dict(json.loads(config_json))
    if mode == "steps":
        processes = start_processes(config.device)
        run = TokenRun(config, out, progress=False, processes=processes)
        for _ in range(updates):
            run.step()
        weights = {k: v.detach().clone() for k, v in run.policy.state_dict().items()}
        save_file(weights, out / f"rank{processes.rank}.safetensors")
        stop_processes(processes)
    else:
        train(config, out, resume=mode == "resume", progress=False, stop_after=updates)


if __name__ == "__main__":
    main()
