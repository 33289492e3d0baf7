"""``dialog-gym ui RUN_DIR``: a trained policy's replies, its transcripts, and the page in headless Chromium."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("openenv.core")
requests = pytest.importorskip("requests")

from agents.agent import PolicyAgent  # noqa: E402
from agents.build import load_trained_policy  # noqa: E402
from agents.cli import main  # noqa: E402
from agents.serve import PolicyReplies, transcripts  # noqa: E402
from tests.test_server import free_port, wait_until_up  # noqa: E402

CHROMIUM, CHROMEDRIVER = (
    shutil.which("chromium") or "/usr/bin/chromium",
    shutil.which("chromedriver") or "/usr/bin/chromedriver",
)


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory) -> Path:
    """A briefly trained run on DialogQA-v0 (two questions per episode)."""
    root = tmp_path_factory.mktemp("ui")
    config = root / "tiny.yaml"
    config.write_text(
        "num_envs: 16\neval_episodes: 16\nmodel: {d_model: 32, n_head: 2, n_layer: 1}\n"
        "pretraining: {demonstrations: 256, epochs: 1}\n"
    )
    main(
        [
            "train",
            "--env",
            "DialogQA-v0",
            "--total-steps",
            "256",
            "--config",
            str(config),
            "--out",
            str(root / "run"),
            "--quiet",
        ]
    )
    return root / "run"


def test_the_policys_turn_replies_are_its_token_level_play(qa_run):
    """Each reply is what the policy types token by token in the token-level env, so whole episodes agree."""
    policy, config = load_trained_policy(qa_run)
    replies = PolicyReplies(PolicyAgent(policy, greedy=True))
    token_agent = PolicyAgent(policy, greedy=True)
    for index in range(6):
        token_env = gym.make(config.env, split="test", **config.env_args)
        observation, info = token_env.reset(options={"index": index})
        typed, token_return, done = [], 0.0, False
        while not done:
            token = int(token_agent(observation[None], {"turn": np.array([info["turn"]])})[0])
            observation, reward, terminated, truncated, info = token_env.step(token)
            typed.append(token)
            token_return += reward
            done = terminated or truncated
        turn_env = gym.make(config.env.replace("-v0", "-Turn-v0"), split="test", **config.env_args)
        turn_env.reset(options={"index": index})
        sent, turn_return, done = [], 0.0, False
        while not done:
            reply = replies(turn_env.unwrapped)
            _, reward, terminated, truncated, _ = turn_env.step(reply)
            sent += reply
            turn_return += reward
            done = terminated or truncated
        assert sent == typed and turn_return == pytest.approx(token_return)


def test_transcripts_are_the_runs_test_episodes_with_their_rewards(qa_run):
    policy, config = load_trained_policy(qa_run)
    played = transcripts(
        config.env, {**config.env_args, "split": "test"}, PolicyReplies(PolicyAgent(policy, greedy=True)), 4
    )
    env = gym.make("DialogQA-Turn-v0", split="test")
    for index, transcript in enumerate(played):
        assert transcript["index"] == index and transcript["opening"] == env.reset(options={"index": index})[0]["text"]
        assert transcript["return"] == pytest.approx(sum(turn["reward"] for turn in transcript["turns"]))
        assert all(turn["reference"] for turn in transcript["turns"])


def chromium_driver():
    """A headless Chromium driven by Selenium through Debian's chromedriver (no browser download)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip(f"no Chromium here ({CHROMIUM}, {CHROMEDRIVER}); install Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


def test_a_person_and_the_policy_hold_a_two_turn_conversation_in_the_page(qa_run, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    port = free_port()
    command = [sys.executable, "-m", "agents.cli", "ui", str(qa_run), "--port", str(port), "--transcripts", "3"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    driver = None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, server)
        driver = chromium_driver()
        wait = WebDriverWait(driver, 30)
        driver.get(url)
        wait.until(lambda d: "<agent>" in d.find_element(By.ID, "dialogue").text)
        # the person opens the first test episode that asks two questions and answers the first as the
        # expert would
        local = gym.make("DialogQA-Turn-v0", split="test")
        index = next(i for i in range(100) if local.reset(options={"index": i})[1]["dialogue"]["questions"] == 2)
        observation, _ = local.reset(options={"index": index})
        box = driver.find_element(By.ID, "episode-index")
        box.clear()
        box.send_keys(str(index))
        driver.find_element(By.ID, "new-episode").click()
        wait.until(lambda d: d.find_element(By.ID, "episode-status").text == f"episode {index}")
        assert driver.find_element(By.ID, "dialogue").text == observation["text"]
        reply = local.unwrapped.tokenizer.decode(local.unwrapped.expert_reply())
        driver.find_element(By.ID, "reply").send_keys(reply)
        driver.find_element(By.ID, "send").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#turns tr")) == 1)
        _, first_reward, *_ = local.step(reply)
        row = driver.find_elements(By.CSS_SELECTOR, "#turns tr")[0].find_elements(By.TAG_NAME, "td")
        assert [c.text for c in row[:4]] == ["1", reply, f"{first_reward:.3f}", "right"] and first_reward == 1.0
        # the policy answers the second
        driver.find_element(By.ID, "agent-reply").click()
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#turns tr")) == 2)
        policy, _ = load_trained_policy(qa_run)
        policy_reply = PolicyReplies(PolicyAgent(policy, greedy=True))(local.unwrapped)
        _, second_reward, terminated, truncated, info = local.step(policy_reply)
        row = driver.find_elements(By.CSS_SELECTOR, "#turns tr")[1].find_elements(By.TAG_NAME, "td")
        assert row[2].text == f"{second_reward:.3f}" and row[3].text == ("right" if info["answer_correct"] else "wrong")
        assert driver.find_element(By.ID, "return").text == f"{first_reward + second_reward:.3f}"
        assert (terminated or truncated) == ("episode over" in driver.find_element(By.ID, "done").text)
        # the transcripts of the run's evaluation episodes, with their returns
        rows = driver.find_elements(By.CSS_SELECTOR, "#transcripts tr")
        assert len(rows) == 3
        rows[1].click()
        opening = local.reset(options={"index": 1})[0]["text"]
        wait.until(lambda d: d.find_element(By.ID, "transcript").text.startswith(opening[:40]))
        assert "return" in driver.find_element(By.ID, "transcript").text
        # the person asks the policy the episode's own question, then one of their own, as dialog-gym chat does
        for line, answers in (("/ask", 1), ("where is the hat ?", 2)):
            driver.find_element(By.ID, "chat-line").send_keys(line)
            driver.find_element(By.ID, "chat-send").click()
            wait.until(lambda d, n=answers: d.find_element(By.ID, "chat-log").text.count("agent:") == n)
        log = driver.find_element(By.ID, "chat-log").text
        assert log.startswith(f"Episode {index} of the test split") and "you: where is the hat ?" in log
        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot)) and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("DIALOG_GYM_SCREENSHOT"):
            shutil.copy(shot, os.environ["DIALOG_GYM_SCREENSHOT"])
        assert driver.find_element(By.ID, "error").text == ""
    finally:
        if driver is not None:
            driver.quit()
        server.terminate()
        server.wait(timeout=30)
