"""The OpenEnv server on 127.0.0.1: OpenEnv's own client, stateful HTTP sessions, concurrency and every refusal."""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import gymnasium as gym
import pytest

pytest.importorskip("openenv.core")
requests = pytest.importorskip("requests")
uvicorn = pytest.importorskip("uvicorn")

from dialog_gym.server import DialogAction, DialogEnvClient, create_dialog_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode}: {process.stdout.read()}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url + "/health", timeout=2).ok:
                return
        time.sleep(0.1)
    raise TimeoutError(f"no server answered at {url} within {timeout} s")


@contextlib.contextmanager
def live_server(app):
    """``app`` served by uvicorn on a free port of 127.0.0.1 in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def qa_server():
    with live_server(create_dialog_app("DialogQA-v0", max_sessions=16)) as url:
        yield url


@pytest.fixture(scope="module")
def service_server():
    with live_server(create_dialog_app("CustomerService-v0", max_sessions=16)) as url:
        yield url


def scripted_replies(env, turn: int, episode: int) -> list[int]:
    """The expert's reply, except a wrong one at some turns, so episodes differ in rewards too."""
    expert = env.unwrapped.expert_reply()
    if (turn + episode) % 3 == 2:
        return expert[:-1] if len(expert) > 1 else [t for t in range(5, 9) if t not in expert][:1]
    return expert


def local_episode(env_id: str, seed: int, max_turns: int = 12) -> list[tuple]:
    """(text, reward, terminated, truncated) at each step of the in-process turn-level env."""
    env = gym.make(env_id.replace("-v0", "-Turn-v0"))
    observation, _ = env.reset(seed=seed)
    steps = [(observation["text"], None, False, False)]
    for turn in range(max_turns):
        observation, reward, terminated, truncated, _ = env.step(scripted_replies(env, turn, seed))
        steps.append((observation["text"], float(reward), terminated, truncated))
        if terminated or truncated:
            break
    return steps


def test_the_openenv_client_plays_the_in_process_episode(qa_server):
    expected = local_episode("DialogQA-v0", seed=3)
    local = gym.make("DialogQA-Turn-v0")
    local.reset(seed=3)
    with DialogEnvClient(base_url=qa_server).sync() as env:
        result = env.reset(seed=3)
        seen = [(result.observation.text, result.reward, False, False)]
        for turn in range(len(expected) - 1):
            reply = scripted_replies(local, turn, 3)
            local.step(reply)
            result = env.step(DialogAction(reply=reply))
            o = result.observation
            seen.append((o.text, result.reward, o.terminated, o.truncated))
            assert o.answer_correct == (o.answer_reward == 1.0) and o.reference is not None
        assert result.done and env.state().step_count == len(expected) - 1
    assert seen == expected


def test_a_text_reply_over_the_websocket_is_scored_as_in_process(qa_server):
    local = gym.make("DialogQA-Turn-v0")
    local.reset(seed=5)
    reply = local.unwrapped.tokenizer.decode(local.unwrapped.expert_reply())
    _, reward, *_ = local.step(reply)
    with DialogEnvClient(base_url=qa_server).sync() as env:
        env.reset(seed=5)
        result = env.step(DialogAction(reply=reply))
    assert result.reward == reward == 1.0 and result.observation.answer == reply


def test_eight_interleaved_websocket_sessions_are_eight_separate_envs(service_server):
    seeds = list(range(10, 18))
    expected = [local_episode("CustomerService-v0", seed) for seed in seeds]
    locals_ = [gym.make("CustomerService-Turn-v0") for _ in seeds]
    clients = [DialogEnvClient(base_url=service_server).sync() for _ in seeds]
    seen: list[list[tuple]] = []
    try:
        for client, local, seed in zip(clients, locals_, seeds):
            client.connect()
            local.reset(seed=seed)
            o = client.reset(seed=seed).observation
            seen.append([(o.text, None, False, False)])
        turn, done = 0, [False] * len(seeds)
        while not all(done):  # one step of every open session, round after round
            for i, (client, local, seed) in enumerate(zip(clients, locals_, seeds)):
                if done[i]:
                    continue
                reply = scripted_replies(local, turn, seed)
                local.step(reply)
                result = client.step(DialogAction(reply=reply))
                o = result.observation
                seen[i].append((o.text, result.reward, o.terminated, o.truncated))
                done[i] = result.done or turn + 1 >= 12
            turn += 1
    finally:
        for client in clients:
            client.close()
    assert seen == expected
    assert len({steps[0][0] for steps in seen}) == len(seeds)  # eight different episodes


def http_episode(url: str, seed: int, results: dict[int, list[tuple]]) -> None:
    local = gym.make("CustomerService-Turn-v0")
    local.reset(seed=seed)
    opened = requests.post(url + "/sessions", json={"seed": seed}, timeout=30).json()
    session = opened["session_id"]
    steps = [(opened["observation"]["text"], None, False, False)]
    for turn in range(12):
        reply = scripted_replies(local, turn, seed)
        local.step(reply)
        answer = requests.post(f"{url}/sessions/{session}/step", json={"action": {"reply": reply}}, timeout=30)
        answer.raise_for_status()
        body = answer.json()
        o = body["observation"]
        steps.append((o["text"], body["reward"], o["terminated"], o["truncated"]))
        if body["done"]:
            break
    requests.delete(f"{url}/sessions/{session}", timeout=30).raise_for_status()
    results[seed] = steps


def test_eight_concurrent_http_sessions_are_eight_separate_envs(service_server):
    seeds = list(range(20, 28))
    results: dict[int, list[tuple]] = {}
    threads = [threading.Thread(target=http_episode, args=(service_server, seed, results)) for seed in seeds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(results) == seeds
    for seed in seeds:
        assert results[seed] == local_episode("CustomerService-v0", seed)


def test_every_bad_request_gets_a_4xx_with_one_line_and_the_server_keeps_serving(qa_server):
    url = qa_server
    bystander = requests.post(url + "/sessions", json={"seed": 7}).json()["session_id"]
    local = gym.make("DialogQA-Turn-v0")
    local.reset(seed=7)
    session = requests.post(url + "/sessions", json={"seed": 8}).json()["session_id"]
    step = f"{url}/sessions/{session}/step"

    def refused(response, status: int, words: str) -> None:
        assert response.status_code == status, response.text
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and words in detail, detail

    headers = {"Content-Type": "application/json"}
    refused(requests.post(step, data=b'{"action": {"reply": ', headers=headers), 400, "malformed JSON")
    refused(requests.post(url + "/step", data=b"{nope", headers=headers), 400, "malformed JSON")
    refused(
        requests.post(f"{url}/sessions/0123456789abcdef/step", json={"action": {"reply": "jeff"}}),
        404,
        "no open session",
    )
    refused(requests.delete(f"{url}/sessions/0123456789abcdef"), 404, "no open session")
    refused(requests.post(step, json={"action": {"reply": " ".join(["jeff"] * 7)}}), 422, "max_answer_tokens=6")
    refused(requests.post(step, json={"action": {"reply": [1, 10**6]}}), 422, "out of range")
    refused(requests.post(step, json={"action": {"reply": 3.5}}), 422, "body.action.reply")
    refused(requests.post(step, json={"action": {"text": "jeff"}}), 422, "Extra inputs are not permitted")
    refused(requests.post(url + "/sessions", json={"seed": -1}), 422, "greater than or equal to 0")
    refused(requests.post(url + "/step", json={"action": {"reply": "jeff"}}), 409, "before reset")
    refused(requests.post(f"{url}/sessions/{session}/agent"), 404, "no agent")
    refused(requests.post(url + "/chats", json={"episode": 0}), 404, "no chat")
    refused(requests.post(url + "/chats/0123456789abcdef", json={"line": "hello"}), 404, "no open session")
    # the refused replies changed nothing: the session plays its episode to the end
    replay = gym.make("DialogQA-Turn-v0")
    replay.reset(seed=8)
    while True:
        reply = replay.unwrapped.expert_reply()
        _, reward, terminated, truncated, _ = replay.step(reply)
        body = requests.post(step, json={"action": {"reply": reply}}).json()
        assert body["reward"] == reward
        if terminated or truncated:
            break
    refused(requests.post(step, json={"action": {"reply": "jeff"}}), 409, "after the episode ended")
    # ... and the bystander's episode was never touched
    body = requests.post(f"{url}/sessions/{bystander}/step", json={"action": {"reply": local.unwrapped.expert_reply()}})
    assert body.json()["reward"] == local.step(local.unwrapped.expert_reply())[1] == 1.0
    assert requests.get(f"{url}/sessions/{bystander}/state").json()["step_count"] == 1
    for sid in (session, bystander):
        requests.delete(f"{url}/sessions/{sid}").raise_for_status()


def test_a_bad_reply_over_the_websocket_is_an_error_and_the_session_goes_on(qa_server):
    with DialogEnvClient(base_url=qa_server).sync() as env:
        env.reset(seed=9)
        with pytest.raises(RuntimeError, match="max_answer_tokens=6"):
            env.step(DialogAction(reply=[5] * 7))
        local = gym.make("DialogQA-Turn-v0")
        local.reset(seed=9)
        reply = local.unwrapped.expert_reply()
        assert env.step(DialogAction(reply=reply)).reward == local.step(reply)[1]


def test_sessions_are_bounded_and_closing_one_makes_room():
    with live_server(create_dialog_app("DialogQA-Toy-v0", max_sessions=2)) as url:
        first = requests.post(url + "/sessions").json()["session_id"]
        requests.post(url + "/sessions").raise_for_status()
        full = requests.post(url + "/sessions")
        assert full.status_code == 429 and "--max-sessions" in full.json()["detail"]
        requests.delete(f"{url}/sessions/{first}").raise_for_status()
        assert requests.post(url + "/sessions").status_code == 200


def test_a_session_plays_episode_index_of_the_split(qa_server):
    local = gym.make("DialogQA-Turn-v0", split="test")
    with live_server(create_dialog_app("DialogQA-v0", {"split": "test"})) as url:
        body = requests.post(url + "/sessions", json={"index": 4}).json()
    assert body["observation"]["text"] == local.reset(options={"index": 4})[0]["text"]
    assert body["observation"]["tokens"] == local.reset(options={"index": 4})[0]["tokens"].tolist()


def test_dialog_gym_serve_starts_a_server_that_the_openenv_client_plays():
    port = free_port()
    command = [sys.executable, "-m", "agents.cli", "serve", "--env", "TwentyQuestions-v0", "--port", str(port)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, process)
        expected = local_episode("TwentyQuestions-v0", seed=1)
        local = gym.make("TwentyQuestions-Turn-v0")
        local.reset(seed=1)
        with DialogEnvClient(base_url=url).sync() as env:
            o = env.reset(seed=1).observation
            seen = [(o.text, None, False, False)]
            for turn in range(len(expected) - 1):
                reply = scripted_replies(local, turn, 1)
                local.step(reply)
                result = env.step(DialogAction(reply=reply))
                seen.append(
                    (
                        result.observation.text,
                        result.reward,
                        result.observation.terminated,
                        result.observation.truncated,
                    )
                )
        assert seen == expected
        assert requests.get(url + "/info").json()["env_id"] == "TwentyQuestions-Turn-v0"
    finally:
        process.terminate()
        process.wait(timeout=30)
    log = process.stdout.read()
    assert "serving on http://127.0.0.1" in log and "Traceback" not in log, log  # a closed session logs nothing


def test_serve_refuses_an_unknown_env_in_one_line():
    from agents.cli import main

    with pytest.raises(SystemExit, match=r"dialog-gym serve: .*NoSuchEnv"):
        main(["serve", "--env", "NoSuchEnv-v0"])


def test_an_out_of_range_index_is_refused(qa_server):
    with live_server(create_dialog_app("Conversation-v0", {"split": "test"})) as url:
        response = requests.post(url + "/sessions", json={"index": 10**9})
    assert response.status_code == 422 and "index" in response.json()["detail"]


def test_the_load_test_counts_an_episode_that_is_not_its_own_as_a_leak():
    import asyncio
    import dataclasses

    from benchmarks import serve_load

    scripts = [serve_load.script(seed) for seed in range(4)]
    scripts[2] = dataclasses.replace(scripts[2], texts=scripts[3].texts)  # expects another seed's dialogue
    with live_server(create_dialog_app(serve_load.ENV_ID, max_sessions=4)) as url:
        for transport in ("websocket", "http"):
            load = asyncio.run(serve_load.drive(transport, url, 2, serve_load.Budget(scripts, 1000, 60.0)))
            assert (load.episodes, load.leaks, load.errors) == (4, 1, 0)
            assert len(load.latencies) == sum(len(s.replies) for s in scripts)
