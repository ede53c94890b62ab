"""What an empty chat offers to send first: a few suggestions that fit its model.

On the offline ``local`` model they show what the app does (a reply rendered as Markdown, ``/echo``,
a tool call or how to turn tools on, a long reply to stop); on a real model they are ordinary
prompts. Pure functions: the chat page passes in what it already read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from streams.providers import ModelSpec
from streams.tools import tool_allowed

LOCAL, MODEL = "local", "model"  # the two kinds of suggestion list: the offline model's, a real model's

MARKDOWN_SAMPLE = """Here is what a reply in Markdown looks like:

## Release checklist

- run the tests
- tag the release
- write the notes

| Step | Owner | Done |
|------|-------|:----:|
| Tests | Ada | yes |
| Notes | Grace | no |

```python
def release(version):
    return f"v{version}"
```"""


@dataclass(frozen=True)
class Suggestion:
    key: str  # stable, for the page and its tests
    title: str
    hint: str  # one line under the title: what it shows
    prompt: str  # what is sent


MARKDOWN = Suggestion(
    "markdown", "Show a rendered reply", "A heading, a list, a table and a code block", "/echo " + MARKDOWN_SAMPLE
)
ECHO = Suggestion(
    "echo",
    "Echo a message",
    "The local model repeats what follows /echo, word for word",
    "/echo Hello! The local model answers /echo with exactly what follows it.",
)
LONG = Suggestion(
    "stop", "Stream a long reply", "Press Esc or Stop to end it early", "Write a long reply, so that I can try Stop."
)
PROMPTS = [
    Suggestion(
        "explain",
        "Explain this code",
        "A short Python function, line by line",
        "Explain what this Python code does, line by line:\n\n```python\nfrom functools import lru_cache\n\n\n"
        "@lru_cache\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n```",
    ),
    Suggestion(
        "email",
        "Draft an e-mail",
        "A friendly request for a code review",
        "Draft a short, friendly e-mail asking a colleague to review my pull request by Friday.",
    ),
    Suggestion(
        "compare",
        "Compare two options",
        "PostgreSQL or SQLite, as a table",
        "Compare PostgreSQL and SQLite for a small web app, as a table of pros and cons.",
    ),
    Suggestion(
        "plan",
        "Make a plan",
        "Five steps to learn Django in a week",
        "Give me a five-step plan to learn the basics of Django in a week.",
    ),
]

# Arguments the demo tool server's tools (mothership/demo_tools.py) answer well; any other tool is
# offered with none.
EXAMPLE_ARGUMENTS = {"roll": {"sides": 6, "count": 2}, "clock": {}}


def _tool_example(tool_servers: Sequence[dict], tools: Sequence[str]) -> tuple[dict, str] | None:
    """The server and tool an example call uses: one this chat may call, on a server that asks no
    person first when there is one, a tool with known arguments first."""
    allowed = [
        (server, tool["name"])
        for server in tool_servers
        for tool in server.get("tools") or ()
        if tool_allowed(tools, tool["name"])
    ]

    def rank(pair):
        server, name = pair
        short = name.partition(".")[2]
        known = list(EXAMPLE_ARGUMENTS).index(short) if short in EXAMPLE_ARGUMENTS else len(EXAMPLE_ARGUMENTS)
        return (bool(server.get("approve")), known)

    return min(allowed, key=rank) if allowed else None


def tool_suggestion(*, tool_servers: Sequence[dict], tools: Sequence[str]) -> Suggestion:
    """A call of a tool this chat may call; else how to let it call one (an ``/echo`` that says so)."""
    example = _tool_example(tool_servers, tools)
    if example:
        server, name = example
        arguments = json.dumps(EXAMPLE_ARGUMENTS.get(name.partition(".")[2], {}))
        waits = " (a member approves it first)" if server.get("approve") else ""
        return Suggestion(
            "tool", "Call a tool", f"Runs {name} on the {server['name']} tool server{waits}", f"/tool {name} {arguments}"
        )
    if not tool_servers:
        return Suggestion(
            "tools-off",
            "How to use tools",
            "No tool server is set up yet",
            "/echo No tool server is set up here yet. An operator lists them in `MCP_SERVERS` (`make run` "
            "starts the demo one); then open **Tools** beside a chat, tick the tools it may call and **Save**.",
        )
    unlisted = next(
        (srv for srv in tool_servers if srv.get("tools") is None and any(p.startswith(f"{srv['name']}.") for p in tools)), None
    )
    if unlisted:  # allowed, but no worker has listed its tools yet
        return Suggestion(
            "tools-unlisted",
            "How to call a tool",
            f"{unlisted['name']}'s tools are listed once a worker reaches it",
            f"/echo This chat may call the tools of {unlisted['name']}, listed under **Tools** once a worker has "
            f"reached the server. Write `/tool {unlisted['name']}.<tool> {{JSON arguments}}` to call one.",
        )
    server = tool_servers[0]
    listed = server.get("tools") or []
    named = listed[0]["name"] if listed else f"{server['name']}.<tool>"
    return Suggestion(
        "tools-off",
        "Turn tools on",
        "This chat may call no tool yet",
        f"/echo This chat may call no tool yet. Open **Tools** beside the conversation, tick "
        f"`{server['name']}.*` (or single tools) and **Save**; then write `/tool {named} {{JSON arguments}}` "
        "and the tool answers.",
    )


def suggestion_list(*, kind: str, tool_servers: Sequence[dict] = (), tools: Sequence[str] = ()) -> list[Suggestion]:
    """The suggestions for a model of ``kind`` (LOCAL or MODEL); ``tool_servers`` the configured
    servers with the tools a worker listed (``streams.tools.tool_catalog``), ``tools`` the chat's."""
    if kind == LOCAL:
        return [MARKDOWN, ECHO, tool_suggestion(tool_servers=tool_servers, tools=tools), LONG]
    return list(PROMPTS)


def kind_of(model: ModelSpec) -> str:
    return LOCAL if model.provider == "local" else MODEL


def suggestion_sets(
    *, current: ModelSpec, offered: Sequence[ModelSpec], tool_servers: Sequence[dict], tools: Sequence[str]
) -> list[dict]:
    """One list per kind of model the chat may use (the picker may switch between them): its
    ``kind``, the ``models`` (ids) it is for, whether it is the chat's model's (``current``) and its
    ``suggestions``. The current one first."""
    kinds = [kind_of(current)] + [kind_of(m) for m in offered if kind_of(m) != kind_of(current)]
    return [
        {
            "kind": kind,
            "models": [m.id for m in offered if kind_of(m) == kind],
            "current": kind == kind_of(current),
            "suggestions": suggestion_list(kind=kind, tool_servers=tool_servers, tools=tools),
        }
        for kind in dict.fromkeys(kinds)
    ]
