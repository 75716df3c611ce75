"""``magma-ros fleet``: two CPU replicas of the tiny model on a local Ray Serve instance
(127.0.0.1, no dashboard, no usage stats) answer the official ``openai`` client and
/v1/action-tokens like ``magma-ros serve``, and SIGINT shuts Serve and Ray down cleanly.
One fleet is started for the whole module; configuration errors are checked without Ray."""
from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image
from serve_support import free_port, png_bytes, png_data_url, tiny_model_dir, wait_until
from tiny_vlm import BASE_VOCAB

from magma_ros.actions import ActionTokenizer, TextTokenizer, text_ids_to_action_ids
from magma_ros.policy.config import BackendConfig

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # a loaded 2-core machine starts Ray slowly
ROBOT_PROMPT = "What action should the robot take to pick up the red block?"


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("fleet_model"))


@pytest.fixture(scope="module")
def fleet(console_script, model_dir, tmp_path_factory):
    pytest.importorskip("ray.serve", reason="ray[serve] is not installed (pip install 'magma_ros[fleet]')")
    root = tmp_path_factory.mktemp("fleet")
    port = free_port()
    config = root / "fleet.yaml"
    config.write_text(f"""
serve:
  model: {model_dir}
  device: cpu
  dtype: float32
  served_model_name: tiny
  max_batch_size: 4
deployment:
  num_replicas: 2
  ray_actor_options: {{num_cpus: 1}}
http: {{host: 127.0.0.1, port: {port}}}
ray: {{num_cpus: 4, node_ip_address: 127.0.0.1, include_dashboard: false}}
""")
    log_path = root / "fleet.log"
    # Ray's session directory holds AF_UNIX sockets, whose paths may not exceed 107 bytes: a
    # short directory of its own, not one under pytest's (longer still under xdist's workers)
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_DEDUP_LOGS": "0",
           "RAY_TMPDIR": str(ray_tmp), "OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen([console_script("magma-ros"), "fleet", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"

    def running() -> None:
        if proc.poll() is not None:
            raise AssertionError(f"magma-ros fleet exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")

    def announced() -> bool:
        running()
        return f"magma-ros fleet: serving on {url}" in log_path.read_text()

    def healthy() -> bool:
        running()
        try:
            return httpx.get(url + "/health", timeout=30).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(announced, 600, f"magma-ros fleet did not announce {url}")
        wait_until(healthy, 300, f"{url}/health did not answer")
        yield {"url": url, "proc": proc, "log": log_path}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_two_replicas_answer_then_sigint_shuts_serve_and_ray_down(fleet, model_dir):
    """One case for the one started fleet: SIGINT ends it, so no other test may come after it."""
    client = openai.OpenAI(base_url=fleet["url"] + "/v1", api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == ["tiny"]
    messages = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_data_url()}},
                                             {"type": "text", "text": ROBOT_PROMPT}]}]
    from magma_ros.policy.vlm import VLMRunner

    runner = VLMRunner.load(BackendConfig(backend="magma", model=str(model_dir), device="cpu", dtype="float32"))
    try:
        expected = runner.action_ids(np.asarray(Image.open(io.BytesIO(png_bytes())).convert("RGB")), ROBOT_PROMPT)
    finally:
        runner.close()
    replies = [client.chat.completions.create(model="tiny", messages=messages, user="arm-1") for _ in range(4)]
    for reply in replies:
        assert reply.choices[0].message.model_extra["action_token_ids"] == expected.tolist()
    content = replies[0].choices[0].message.content
    ids = text_ids_to_action_ids(content, TextTokenizer(model_dir), ActionTokenizer(vocab_size=BASE_VOCAB))
    assert ids.tolist() == expected.tolist()
    decoded = httpx.post(fleet["url"] + "/v1/action-tokens", json={"text": content, "robot_type": "bridge_orig"},
                         headers={"X-Robot-Id": "arm-1"}, timeout=60)
    assert decoded.status_code == 200, decoded.text
    assert set(decoded.json()) == {"x", "y", "z", "roll", "pitch", "yaw", "gripper"}
    bad = httpx.post(fleet["url"] + "/v1/action-tokens", json={"text": "no action"}, timeout=60)
    assert bad.status_code in (400, 422) and bad.json()["error"]["message"]
    health = httpx.get(fleet["url"] + "/health", timeout=60).json()
    assert health["model_loaded"] is True and health["max_batch_size"] == 4
    replicas = set(re.findall(r"\(ServeReplica:magma:magma pid=(\d+)", fleet["log"].read_text()))
    assert len(replicas) == 2, f"expected output from 2 replicas, saw pids {sorted(replicas)}"

    # SIGINT: serve and every Ray process end
    proc = fleet["proc"]
    started = _descendants(proc.pid)
    assert started, "the fleet started no Ray processes"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(180) == 0, fleet["log"].read_text()[-4000:]
    wait_until(lambda: not any(_alive(pid) for pid in started), 120, "Ray processes outlived magma-ros fleet")
    with pytest.raises(httpx.TransportError):
        httpx.get(fleet["url"] + "/health", timeout=5)


@pytest.mark.parametrize("text, message", [
    ("serve: {port: 9}", "serve.port: the fleet's address is set in the http section"),
    ("serve: {max_batch_size: 0}", "serve: max_batch_size: must be in 1..256"),
    ("serve: {bogus: 1}", "serve: unrecognized arguments: --bogus 1"),
    ("deployment: {num_replica: 2}", "deployment: unknown key(s) num_replica"),
    ("deployment: {num_replicas: 0}", "deployment.num_replicas: expected an integer in 1..1024 or 'auto'"),
    ("deployment: {num_replicas: 2, autoscaling_config: {max_replicas: 4}}", "give num_replicas or autoscaling_config"),
    ("http: {port: 70000}", "http.port: expected 1..65535"),
    ("ray: {address: auto, num_cpus: 2}", "only apply when no address"),
    ("[1, 2]", "expected a mapping"),
    ("serve: [", "not a valid YAML file"),
])
def test_configuration_errors_name_the_file_and_key(console_script, tmp_path, text, message):
    _assert_refused(console_script, tmp_path, text, message, "--check")


NO_MODEL = "serve: {no_model: true, tokenizer: %s}\n"
# Values Ray Serve refuses only once Ray runs (a traceback, exit 1) or accepts though they cannot work:
# refused before Ray starts, in one line, exit 2.
BAD_VALUES = {
    "ongoing -1": ("deployment: {max_ongoing_requests: -1}",
                   "deployment.max_ongoing_requests: expected an integer >= 1, got -1"),
    "ongoing 0": ("deployment: {max_ongoing_requests: 0}", "deployment.max_ongoing_requests: expected an integer >= 1"),
    "queued -2": ("deployment: {max_queued_requests: -2}",
                  "deployment.max_queued_requests: expected an integer >= 1 or -1 (no limit), got -2"),
    "queued 0": ("deployment: {max_queued_requests: 0}",
                 "deployment.max_queued_requests: expected an integer >= 1 or -1"),
    "health period -1": ("deployment: {health_check_period_s: -1}",
                         "deployment.health_check_period_s: expected a number > 0"),
    "health timeout .nan": ("deployment: {health_check_timeout_s: .nan}",
                            "deployment.health_check_timeout_s: expected a number > 0"),
    "shutdown -1": ("deployment: {graceful_shutdown_timeout_s: -1}",
                    "graceful_shutdown_timeout_s: expected a number >= 0"),
    "gpus -1": ("deployment: {ray_actor_options: {num_gpus: -1}}",
                "deployment.ray_actor_options.num_gpus: expected a number >= 0"),
    "cpus -0.5": ("deployment: {ray_actor_options: {num_cpus: -0.5}}",
                  "ray_actor_options.num_cpus: expected a number >= 0"),
    "resources": ("deployment: {ray_actor_options: {resources: {tpu: -1}}}",
                  "ray_actor_options.resources.tpu: expected a number >= 0"),
    "actor key": ("deployment: {ray_actor_options: {max_restarts: 3}}",
                  "ray_actor_options: unknown key(s) max_restarts"),
    "a billion replicas": ("deployment: {num_replicas: 1000000000}",
                           "deployment.num_replicas: expected an integer in 1..1024"),
    "autoscaling max": ("deployment: {autoscaling_config: {max_replicas: 100000}}",
                        "autoscaling_config.max_replicas: at most 1024"),
    "autoscaling min > max": ("deployment: {autoscaling_config: {min_replicas: 3, max_replicas: 2}}",
                              "min_replicas (3) is more than max_replicas (2)"),
    "autoscaling target": ("deployment: {autoscaling_config: {target_ongoing_requests: 0}}",
                           "autoscaling_config.target_ongoing_requests: expected a number > 0"),
    "not a host": ("http: {host: 'not a host!'}",
                   "http.host: expected an IP address or a host name, got 'not a host!'"),
    "host number": ("http: {host: 8000}", "http.host: expected an IP address or a host name, got 8000"),
    "node ip": ("ray: {node_ip_address: localhost:1}", "ray.node_ip_address: expected an IP address"),
    "dashboard": ("ray: {include_dashboard: 'yes'}", "ray.include_dashboard: expected true or false"),
    "Ray's own rule": ("deployment: {autoscaling_config: {aggregation_function: median}}",
                       "deployment: Ray Serve refuses the options: "),
}


@pytest.mark.parametrize("text, message", BAD_VALUES.values(), ids=BAD_VALUES.keys())
def test_values_ray_serve_cannot_run_are_refused_before_it_starts(console_script, tmp_path, llama3_tokenizer_path,
                                                                  text, message):
    if message.startswith("deployment: Ray Serve"):
        pytest.importorskip("ray.serve", reason="Ray Serve's own validation needs ray[serve]")
    _assert_refused(console_script, tmp_path, NO_MODEL % llama3_tokenizer_path + text, message, "--check")


@pytest.mark.parametrize("serve, message", [
    ("{model: /no/such/Magma-8B}", "serve.model: /no/such/Magma-8B does not exist (a local path"),
    ("{model: ./models/magma}", "serve.model: ./models/magma does not exist"),
    ("{no_model: true, tokenizer: /no/such/tokenizer.json}", "serve.tokenizer: /no/such/tokenizer.json does not exist"),
])
def test_a_local_model_path_must_exist(console_script, tmp_path, serve, message):
    _assert_refused(console_script, tmp_path, f"serve: {serve}", message, "--check")


@pytest.mark.parametrize("text", ["deployment: {max_queued_requests: -2}", "http: {host: 'not a host!'}",
                                  "serve: {model: /no/such/Magma-8B}"])
def test_a_start_refuses_what_check_refuses_before_ray_starts(console_script, tmp_path, text):
    """--check and a start run the same checks: the start fails with the same line, Ray never starts."""
    check = _assert_refused(console_script, tmp_path, text, "", "--check")
    start = _assert_refused(console_script, tmp_path, text, "")
    assert check == start


def test_check_accepts_a_hub_id_and_ray_serves_own_limits(console_script, tmp_path):
    pytest.importorskip("ray.serve", reason="--check runs Ray Serve's own validation (ray[serve])")
    path = tmp_path / "fleet.yaml"
    path.write_text("serve: {model: microsoft/Magma-8B}\n"
                    "deployment: {max_queued_requests: -1, num_replicas: 1024, health_check_period_s: 0.5,\n"
                    "             ray_actor_options: {num_gpus: 0, num_cpus: 0.5}}\n"
                    "http: {host: gpu-box.lab.local, port: 8001}\n")
    done = subprocess.run([console_script("magma-ros"), "fleet", str(path), "--check"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{path}: ok (1024 replica(s), http://gpu-box.lab.local:8001)"


def _assert_refused(console_script, tmp_path: Path, text: str, message: str, *options: str) -> str:
    """Runs magma-ros fleet on ``text``; asserts exit 2 with one line naming the file and ``message``."""
    path = tmp_path / "fleet.yaml"
    path.write_text(text)
    done = subprocess.run([console_script("magma-ros"), "fleet", str(path), *options], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith(f"magma-ros fleet: error: {path}: ") and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stdout == ""
    return done.stderr
