#!/usr/bin/env python3
"""An agent that runs outside the gateway and publishes its whole trace to a session, so everyone watching sees its
steps like a hosted agent's. Python 3.9+, standard library only.

    AISTREAM_URL=http://localhost:5000 AISTREAM_SESSION=demo python3 agent.py "What is 17 * 23?"

Environment: AISTREAM_URL (default http://localhost:5000), AISTREAM_SESSION (default demo), AISTREAM_TOKEN (a JWT or
API key, sent as Authorization: Bearer), AISTREAM_RUN_ID (default a new id; reuse one to replay a run: the gateway
answers the repeated publishes from their Idempotency-Key and logs nothing twice), AISTREAM_DELAY_MS (pause between
streamed pieces, default 50).
"""
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

BASE = os.environ.get("AISTREAM_URL", "http://localhost:5000").rstrip("/")
SESSION = os.environ.get("AISTREAM_SESSION", "demo")
TOKEN = os.environ.get("AISTREAM_TOKEN")
RUN_ID = os.environ.get("AISTREAM_RUN_ID") or "ext-" + uuid.uuid4().hex[:12]
DELAY = float(os.environ.get("AISTREAM_DELAY_MS", "50")) / 1000
QUESTION = sys.argv[1] if len(sys.argv) > 1 else "What is 17 * 23?"
MAX_ATTEMPTS = 6


class PublishError(Exception):
    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


_index = 0  # the event's place in this run: with the run id, its Idempotency-Key


def backoff(attempt):
    """Exponential backoff with full jitter: up to 0.2 s, 0.4 s, 0.8 s, ..."""
    return random.uniform(0, 0.2 * 2 ** (attempt - 1))


def publish(event):
    """Publishes one AG-UI event; retries what may succeed later with the same key, so a retry never logs it twice."""
    global _index
    key = f"{RUN_ID}:{_index}"
    _index += 1
    url = f"{BASE}/api/sessions/{urllib.parse.quote(SESSION, safe='')}/events"
    headers = {"content-type": "application/json", "idempotency-key": key}
    if TOKEN:
        headers["authorization"] = f"Bearer {TOKEN}"
    body = json.dumps(event).encode()
    attempt = 0
    while True:
        attempt += 1
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, headers, method="POST"), timeout=10) as response:
                answer = json.load(response)
                seq = answer["seqs"][0]
                print(f"{event['type']} -> seq {seq}{' (replayed)' if answer['replayed'] else ''}", flush=True)
                return seq
        except urllib.error.HTTPError as error:
            try:
                problem = json.load(error)
            except ValueError:
                problem = {}
            retryable = error.code == 429 or error.code >= 500
            if not retryable or attempt >= MAX_ATTEMPTS:
                code = (problem.get("error") or {}).get("code", "")
                raise PublishError(f"{error.code} {code}: {problem.get('detail') or problem.get('title') or error.reason}", error.code)
            retry_after = error.headers.get("retry-after")
            time.sleep(float(retry_after) if retry_after and retry_after.isdigit() else backoff(attempt))
        except (urllib.error.URLError, OSError) as error:
            if attempt >= MAX_ATTEMPTS:
                raise PublishError(f"could not reach {BASE}: {error}")
            time.sleep(backoff(attempt))


def calculate(text):
    """The tool: arithmetic on two numbers found in the question."""
    match = re.search(r"(-?\d+(?:\.\d+)?)\s*([-+*/])\s*(-?\d+(?:\.\d+)?)", text)
    if not match:
        raise PublishError(f'no arithmetic in "{text}"')
    a, op, b = float(match.group(1)), match.group(2), float(match.group(3))
    value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
    result = str(int(value)) if value == int(value) else str(value)
    return f"{match.group(1)} {op} {match.group(3)}", result


def run():
    message_id = f"{RUN_ID}-m1"
    call_id = f"{RUN_ID}-call1"
    publish({"type": "RUN_STARTED", "threadId": SESSION, "runId": RUN_ID})

    # Step 1, the model's turn: it decides to call a tool and streams the arguments.
    publish({"type": "STEP_STARTED", "stepName": "model:1"})
    expression, result = calculate(QUESTION)
    args = json.dumps({"expression": expression}, separators=(",", ":"))
    publish({"type": "TOOL_CALL_START", "toolCallId": call_id, "toolCallName": "calculate", "parentMessageId": message_id})
    for i in range(0, len(args), 8):
        publish({"type": "TOOL_CALL_ARGS", "toolCallId": call_id, "delta": args[i:i + 8]})
        time.sleep(DELAY)
    publish({"type": "TOOL_CALL_END", "toolCallId": call_id})
    publish({"type": "STEP_FINISHED", "stepName": "model:1"})

    # Step 2, the tool: its result, and a note in the session's shared state.
    publish({"type": "STEP_STARTED", "stepName": "tool:calculate"})
    publish({"type": "TOOL_CALL_RESULT", "messageId": f"{RUN_ID}-r1", "toolCallId": call_id, "content": result, "role": "tool"})
    publish({"type": "STEP_FINISHED", "stepName": "tool:calculate"})
    publish({"type": "STATE_DELTA", "delta": [{"op": "add", "path": "/lastAnswer", "value": result}]})

    # Step 3, the answer, word by word.
    publish({"type": "STEP_STARTED", "stepName": "model:2"})
    publish({"type": "TEXT_MESSAGE_START", "messageId": message_id, "role": "assistant"})
    words = f"{expression} is {result}.".split(" ")
    for i, word in enumerate(words):
        publish({"type": "TEXT_MESSAGE_CONTENT", "messageId": message_id, "delta": ("" if i == 0 else " ") + word})
        time.sleep(DELAY)
    publish({"type": "TEXT_MESSAGE_END", "messageId": message_id})
    publish({"type": "STEP_FINISHED", "stepName": "model:2"})
    publish({"type": "RUN_FINISHED", "threadId": SESSION, "runId": RUN_ID, "outcome": {"type": "success"}})


if __name__ == "__main__":
    try:
        run()
    except PublishError as error:
        print(f"agent: {error}", file=sys.stderr)
        # Say so in the session, unless the gateway refused us outright (then it would refuse this too).
        if error.status not in (401, 403):
            try:
                publish({"type": "RUN_ERROR", "runId": RUN_ID, "message": str(error), "code": "agent_failed"})
            except PublishError:
                pass
        sys.exit(1)
