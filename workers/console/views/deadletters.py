"""Dead letters: groups by cause, a group's messages, one message; replay, archive, purge, edit.

Every action is confirmed first (the confirmation says how many messages it touches), is a
POST with the CSRF token, is refused in read-only mode, and is recorded in each message's
history with the operator's name. The functions are the CLI's (``dlq``): the same store,
replay and operations.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from messages import InvalidMessage
from workers.console.pages import Console, posted, redirect, render
from workers.deadletters import operations
from workers.deadletters.replay import replay, replay_selected
from workers.deadletters.selector import Selector
from workers.deadletters.store import DeadLetterStore, summary

PAGE = 50
ACTIONS = {"replay": "replayed", "archive": "archived", "purge": "purged"}


def store_of(request: Request) -> DeadLetterStore:
    console: Console = request.app.state.console
    return DeadLetterStore(console.database)


def by(request: Request) -> str:
    return f"{request.state.operator} (console)"


async def groups(request: Request) -> Response:
    store = store_of(request)
    rows = await run_in_threadpool(operations.group_rows, store)
    by_queue = await run_in_threadpool(store.counts_by_queue)
    return render(request, "dl_groups.html", groups=rows, by_queue=by_queue)


def _page(store: DeadLetterStore, group: str, before: datetime | None) -> list[dict[str, Any]]:
    return [summary(d) for d in store.find(Selector(group=group, before=before), PAGE)]


async def group(request: Request) -> Response:
    key = request.path_params["group"]
    before_text = request.query_params.get("before")
    before = datetime.fromisoformat(before_text) if before_text else None
    store = store_of(request)
    rows = await run_in_threadpool(_page, store, key, before)
    known = await run_in_threadpool(operations.group_rows, store)
    row = next((g for g in known if g["group"] == key), None)
    more = rows[-1]["last_failed_at"].isoformat() if len(rows) == PAGE else None
    done = request.query_params.get("done")
    return render(request, "dl_group.html", key=key, group=row, rows=rows, more=more, done=done)


async def message(request: Request) -> Response:
    entry_id = request.path_params["entry_id"]
    doc = await run_in_threadpool(operations.detail, store_of(request), entry_id)
    if doc is None:
        return PlainTextResponse(f"no dead letter {entry_id}", status_code=404)
    done = request.query_params.get("done")
    text = operations.editable(doc)
    return render(request, "dl_message.html", doc=doc, done=done, problem=None, edited=text)


def _count(store: DeadLetterStore, form: Any) -> tuple[int, str]:
    """How many messages an action would touch, and the page to return to."""
    if form.get("id"):
        entry_id = str(form["id"])
        return 1, f"/dead-letters/messages/{quote(entry_id, safe='')}"
    key = str(form.get("group") or "")
    return store.count(Selector(group=key)), f"/dead-letters/groups/{quote(key, safe='')}"


def _targets(form: Any) -> tuple[list[str], Selector, str]:
    """What an action applies to (one message, or a group) and the page to return to."""
    if form.get("id"):
        entry_id = str(form["id"])
        return [entry_id], Selector(), f"/dead-letters/messages/{quote(entry_id, safe='')}"
    key = str(form.get("group") or "")
    if not key:
        raise ValueError("say which message or group")
    return [], Selector(group=key), f"/dead-letters/groups/{quote(key, safe='')}"


async def confirm(request: Request) -> Response:
    action = request.query_params.get("action", "")
    if action not in ACTIONS:
        return PlainTextResponse("unknown action", status_code=400)
    store = store_of(request)
    count, back = await run_in_threadpool(_count, store, request.query_params)
    context: dict[str, Any] = {"action": action, "count": count}
    context["target"] = dict(request.query_params)
    return render(request, "dl_confirm.html", back=back, **context)


def _act(console: Console, action: str, ids: list[str], selector: Selector, who: str) -> int:
    store = DeadLetterStore(console.database)
    if action == "replay" and not ids:
        return len(replay_selected(selector, who, broker=console.broker, store=store).replayed)
    if action == "replay":
        return len(replay(ids, who, broker=console.broker, store=store).replayed)
    return operations.retire(store, ids or store.ids(selector), ACTIONS[action], who)


async def act(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.read_only:
        return PlainTextResponse("the console is read-only", status_code=403)
    form = posted(request)
    action = str(form.get("action") or "")
    if action not in ACTIONS:
        return PlainTextResponse("unknown action", status_code=400)
    ids, selector, back = _targets(form)
    done = await run_in_threadpool(_act, console, action, ids, selector, by(request))
    return redirect(f"{back}?{urlencode({'done': f'{ACTIONS[action]} {done}'})}")


async def edit(request: Request) -> Response:
    console: Console = request.app.state.console
    if console.read_only:
        return PlainTextResponse("the console is read-only", status_code=403)
    entry_id = request.path_params["entry_id"]
    text = str(posted(request).get("message") or "")
    store = store_of(request)
    try:
        report = await run_in_threadpool(
            operations.edit_and_retry, store, entry_id, text, by(request), console.broker
        )
    except (InvalidMessage, ValueError, LookupError) as exc:
        doc = await run_in_threadpool(operations.detail, store, entry_id)
        if doc is None:
            return PlainTextResponse(f"no dead letter {entry_id}", status_code=404)
        context = {"doc": doc, "done": None, "problem": str(exc), "edited": text}
        return render(request, "dl_message.html", status_code=422, **context)
    done = urlencode({"done": f"edited and replayed {len(report.replayed)}"})
    return redirect(f"/dead-letters/messages/{quote(entry_id, safe='')}?{done}")


ROUTES = [
    Route("/dead-letters", groups),
    Route("/dead-letters/groups/{group:path}", group),
    Route("/dead-letters/messages/{entry_id:path}", message),
    Route("/dead-letters/confirm", confirm),
    Route("/dead-letters/act", act, methods=["POST"]),
    Route("/dead-letters/edit/{entry_id:path}", edit, methods=["POST"]),
]
