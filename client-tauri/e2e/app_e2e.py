#!/usr/bin/env python3
"""End-to-end test of the desktop app: the real app in a real WebView (under
Xvfb), driven over W3C WebDriver through tauri-driver and WebKitWebDriver,
against a real mindoryd on a temp socket with real books.

What it checks (issue 13's list):
  1. a book added with the CLI shows up in the app's Library, indexing and
     then ready (two frontends, one index, one event stream);
  2. Search for a paraphrase of Darcy's first proposal: the first hit is
     Pride and Prejudice, Chapter 34, and clicking it opens the Reader with
     the passage highlighted;
  3. Ask, against a scripted OpenAI-compatible endpoint that streams slowly:
     tokens appear before the answer is complete, `[1]` opens the cited
     range in the Reader, and Stop cancels (the endpoint sees its
     connection close);
  4. RAG view: the ranking lists the passages in rank order with their
     in-prompt flags and left-out reasons, and every timeline mark sits at
     char offset / book length along its strip (the length read from the
     CLI, not from the app);
  5. the daemon killed and restarted: the app shows it is down, reconnects,
     re-subscribes (a book removed with the CLI afterwards leaves the
     Library) and the Library is current;
and it saves a screenshot of every view (1280x800) into ARTIFACTS.

Only the Python standard library: the WebDriver client below speaks the
protocol's JSON over HTTP directly.

Usage: app_e2e.py --app PATH --bin DIR --corpus DIR --artifacts DIR
       [--tauri-driver PATH] [--native-driver PATH]
"""

import argparse
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

DARCY = ("Darcy confesses to Elizabeth that he has fought his feelings in vain "
         "and cannot suppress how passionately he admires and loves her")
QUESTION = "How old must a senator be?"
# What the scripted endpoint streams: a cited sentence, then filler slowly
# enough that the test can click and stop while it is still running.
ANSWER_PIECES = ["A senator", " must be", " at least", " thirty", " years", " old", " [1]."]
FILLER_SECONDS = 90


def fail(msg):
    raise AssertionError(msg)


def wait_for(what, check, timeout=60.0, interval=0.2):
    """Polls `check` until it returns something truthy; never sleep-and-hope."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except (WebDriverError, urllib.error.URLError, ConnectionError) as e:
            last = e
        time.sleep(interval)
    fail(f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last})" if last else ""))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the scripted OpenAI-compatible endpoint ---------------------------------

class Endpoint:
    """Streams ANSWER_PIECES, then filler, as server-sent events; records each
    chat request and whether the client closed the connection mid-stream."""

    def __init__(self):
        self.requests = []
        self.closed = threading.Event()
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                body = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model"}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                endpoint.requests.append(json.loads(self.rfile.read(length) or b"{}"))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()

                def chunk(text):
                    data = {"id": "x", "object": "chat.completion.chunk", "model": "fake",
                            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
                    self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()

                try:
                    for piece in ANSWER_PIECES:
                        chunk(piece)
                        time.sleep(0.4)
                    deadline = time.monotonic() + FILLER_SECONDS
                    while time.monotonic() < deadline:
                        chunk(" More.")
                        time.sleep(0.5)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    endpoint.closed.set()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


# --- a minimal W3C WebDriver client -------------------------------------------

class WebDriverError(Exception):
    pass


ELEMENT = "element-6066-11e4-a52e-4f735466cecc"


class Session:
    def __init__(self, base, capabilities):
        self.base = base
        value = self._call("POST", "/session", {"capabilities": {"alwaysMatch": capabilities}}, session=False)
        self.id = value["sessionId"]

    def _call(self, method, path, body=None, session=True):
        url = self.base + (f"/session/{self.id}" if session else "") + path
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return json.loads(r.read())["value"]
        except urllib.error.HTTPError as e:
            raise WebDriverError(f"{method} {path}: {e.code} {e.read()[:400]!r}") from None

    def find_all(self, css, within=None):
        path = f"/element/{within}/elements" if within else "/elements"
        found = self._call("POST", path, {"using": "css selector", "value": css})
        # W3C names the reference ELEMENT; older drivers use "ELEMENT".
        return [e.get(ELEMENT) or e.get("ELEMENT") or next(iter(e.values())) for e in found]

    def find(self, css, within=None):
        found = self.find_all(css, within)
        if not found:
            raise WebDriverError(f"no element matches {css!r}")
        return found[0]

    def text(self, el):
        return self._call("GET", f"/element/{el}/text")

    def attr(self, el, name):
        return self._call("GET", f"/element/{el}/attribute/{name}")

    def rect(self, el):
        return self._call("GET", f"/element/{el}/rect")

    def click(self, el):
        self._call("POST", f"/element/{el}/click")

    def type(self, el, text):
        self._call("POST", f"/element/{el}/clear")
        self._call("POST", f"/element/{el}/value", {"text": text})

    def script(self, source, *args):
        return self._call("POST", "/execute/sync", {"script": source, "args": list(args)})

    def quit(self):
        try:
            self._call("DELETE", "")
        except Exception:
            pass


def tab(s, label):
    for el in s.find_all("nav.tabs button[role=tab]"):
        if s.text(el).strip() == label:
            s.click(el)
            return
    fail(f"no tab {label!r}")


def library_statuses(s):
    """Title → status word, for every book row the Library shows (read in
    one script call: element-by-element reads race the list's re-renders)."""
    rows = s.script("""return Array.from(document.querySelectorAll('.rows .row.book')).map(r =>
        [r.querySelector('.title').textContent.trim(), r.querySelector('.status').className.replace('status', '').trim()]);""")
    return {title: status for title, status in rows}


def texts(s, css):
    """The text of every element matching `css`, in document order."""
    return s.script("return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText);", css)


def click(s, css, index=0):
    """Clicks the index-th element matching `css` (found just before)."""
    found = s.find_all(css)
    if len(found) <= index:
        fail(f"nothing to click at {css!r}")
    s.click(found[index])


# --- the daemon ----------------------------------------------------------------

class Daemon:
    def __init__(self, bindir, root, env):
        self.bindir, self.root, self.env = bindir, root, env
        self.proc = None

    def start(self):
        log = open(os.path.join(self.root, "mindoryd.log"), "ab")
        self.proc = subprocess.Popen([os.path.join(self.bindir, "mindoryd"), "--data-dir", os.path.join(self.root, "data")],
                                     env=self.env, stdout=log, stderr=log)
        wait_for("mindoryd to answer", lambda: self.cli("status", check=False).returncode == 0, timeout=120)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def cli(self, *args, check=True):
        r = subprocess.run([os.path.join(self.bindir, "mindory"), *args], env=self.env, capture_output=True, text=True, timeout=600)
        if check and r.returncode != 0:
            fail(f"mindory {' '.join(args)} failed: {r.stderr}")
        return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--corpus", required=True)
    ap.add_argument("--artifacts", required=True)
    ap.add_argument("--tauri-driver", default=shutil.which("tauri-driver") or "tauri-driver")
    ap.add_argument("--native-driver", default=shutil.which("WebKitWebDriver") or "/usr/bin/WebKitWebDriver")
    a = ap.parse_args()
    os.makedirs(a.artifacts, exist_ok=True)
    root = tempfile.mkdtemp(prefix="mindory-e2e-")
    procs = []
    endpoint = Endpoint()
    env = dict(os.environ)
    env.update({
        "MINDORY_SOCKET": os.path.join(root, "run", "mindoryd.sock"),
        "MINDORY_LLM_BACKEND": "openai",
        "MINDORY_LLM_BASE_URL": endpoint.url,
        "MINDORY_LLM_MODEL": "fake",
        "MINDORY_LLM_MAX_TOKENS": "256",
        "MINDORY_LLM_TOTAL_TIMEOUT_S": "300",
        # No guess before retrieval: the endpoint streams the same slow
        # answer to every request, and the test stops the answer's.
        "MINDORY_LLM_EXPAND_QUESTIONS": "false",
        # WebKit's GPU compositing and its bubblewrap sandbox need what a
        # container under Xvfb lacks; neither matters to the test.
        "WEBKIT_DISABLE_COMPOSITING_MODE": "1",
        "WEBKIT_DISABLE_SANDBOX_THIS_IS_DANGEROUS": "1",
        "LIBGL_ALWAYS_SOFTWARE": "1",
    })
    daemon = Daemon(a.bin, root, env)
    session = None
    try:
        daemon.start()
        constitution = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures", "constitution.txt")
        daemon.cli("add", "--wait", constitution)

        display = f":{100 + os.getpid() % 100}"
        fbdir = os.path.join(root, "fb")
        os.makedirs(fbdir)
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-fbdir", fbdir, "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        xwd2png = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "xwd2png")

        def shot(name):
            # From Xvfb's framebuffer: WebKitWebDriver's own screenshot
            # command hung under load here.
            out = os.path.join(a.artifacts, name)
            subprocess.run([sys.executable, xwd2png, os.path.join(fbdir, "Xvfb_screen0"), out, "1280x800"], check=True)
            print(f"screenshot: {out}")
        procs.append(xvfb)
        env["DISPLAY"] = display
        port, native = free_port(), free_port()
        driver_log = open(os.path.join(root, "tauri-driver.log"), "ab")
        driver = subprocess.Popen([a.tauri_driver, "--port", str(port), "--native-port", str(native), "--native-driver", a.native_driver],
                                  env=env, stdout=driver_log, stderr=driver_log)
        procs.append(driver)
        base = f"http://127.0.0.1:{port}"
        # tauri-driver listens at once; the WebKitWebDriver it starts takes a moment.
        for p in (port, native):
            wait_for(f"the WebDriver on port {p}", lambda p=p: socket.create_connection(("127.0.0.1", p), timeout=1).close() or True, timeout=60)
        session = Session(base, {"tauri:options": {"application": os.path.abspath(a.app), "args": ["--size", "1280x800", "--view", "library"]}})

        # 1. A book added with the CLI appears in the app, indexing then ready.
        wait_for("the Library to list the Constitution", lambda: "ready" in library_statuses(session).values(), timeout=60)
        pp = os.path.join(a.corpus, "txt", "prideprejudice.txt")
        daemon.cli("add", pp)
        seen = set()

        def pp_status():
            for title, status in library_statuses(session).items():
                if "pride" in title.lower():
                    seen.add(status)
                    return status
            return None

        try:
            wait_for("Pride and Prejudice in the Library while it is being indexed",
                     lambda: pp_status() in ("queued", "indexing", "embedding"), timeout=60, interval=0.25)
        except AssertionError as e:
            fail(f"{e}; the Library shows {library_statuses(session)}")
        shot("e2e-library-ingesting.png")
        wait_for("Pride and Prejudice to be ready in the Library", lambda: pp_status() == "ready", timeout=600, interval=0.5)
        print(f"library: Pride and Prejudice went through {sorted(seen)}")
        if not seen & {"indexing", "embedding"}:
            fail(f"the Library never showed the book in progress: {seen}")
        shot("e2e-library.png")

        # 2. Search: the Darcy paraphrase finds Chapter 34 first; the Reader highlights it.
        tab(session, "Search")
        session.type(session.find("input[aria-label='Search query']"), DARCY)
        click(session, "section.search form button[type=submit]")
        wait_for("search hits", lambda: texts(session, "ol.hits li.hit button.place"), timeout=60)
        place = texts(session, "ol.hits li.hit button.place")[0]
        hit_text = texts(session, "ol.hits li.hit p.text")[0]
        print(f"search: first hit {place!r}")
        if "pride" not in place.lower() or "34" not in place:
            fail(f"the first hit is not Pride and Prejudice, Chapter 34: {place!r}")
        shot("e2e-search.png")
        click(session, "ol.hits li.hit button.place")
        marked = wait_for("the highlighted passage in the Reader", lambda: texts(session, ".reader mark.cited"), timeout=30)[0]
        if "ardently" not in marked:
            fail(f"the Reader highlights something else: {marked[:200]!r}")
        if marked.split()[:5] != hit_text.split()[:5]:
            fail(f"the highlight does not start where the hit does: {marked[:80]!r} / {hit_text[:80]!r}")
        shot("e2e-reader.png")

        # 3. Ask: streamed tokens, [1] opens the cited range, Stop cancels upstream.
        tab(session, "Ask")
        session.type(session.find("textarea[aria-label='Question']"), QUESTION)
        click(session, "form.askbar button[type=submit]")
        wait_for("the answer to stream its first tokens", lambda: any("senator" in t for t in texts(session, "article.turn p.answer")), timeout=120)
        if not texts(session, "article.turn .cursor"):
            fail("tokens arrived only after the answer was complete")
        wait_for("the [1] citation", lambda: texts(session, "article.turn button.cite"), timeout=30)
        shot("e2e-ask.png")
        click(session, "article.turn button.cite")
        cited = wait_for("the cited range in the Reader", lambda: texts(session, ".reader mark.cited"), timeout=30)[0]
        if "thirty Years" not in cited:
            fail(f"[1] opened something other than the senators' passage: {cited[:200]!r}")
        tab(session, "Ask")
        if endpoint.closed.is_set():
            fail("the endpoint's stream closed before Stop was pressed")
        click(session, "form.askbar button.stop")
        wait_for("the endpoint to see its connection close after Stop", endpoint.closed.is_set, timeout=20)
        print(f"ask: {len(endpoint.requests)} chat request(s); Stop closed the upstream connection")

        # 4. RAG view: ranking order and flags; timeline marks at offset / length.
        tab(session, "RAG")
        wait_for("the ranking table", lambda: texts(session, "table.ranking tbody tr"), timeout=30)
        rows = session.script("""return Array.from(document.querySelectorAll('table.ranking tbody tr')).map(r => {
            const cells = r.querySelectorAll('td'); return [cells[0].innerText, cells[cells.length - 1].innerText]; });""")
        ranks = [int(r) for r, _ in rows]
        flags = [f for _, f in rows]
        if ranks != sorted(ranks):
            fail(f"the ranking is not in rank order: {ranks}")
        if not flags or flags[0] != "yes":
            fail(f"the best passage is not in the prompt: {flags}")
        for f in flags:
            if not (f == "yes" or f.startswith("no: below") or f.startswith("no: over")):
                fail(f"a left-out passage does not say why: {f!r}")
        strips = session.script("""return Array.from(document.querySelectorAll('.timeline .strip')).map(s => {
            const r = s.getBoundingClientRect();
            return {book: s.dataset.book, x: r.left, width: r.width,
                    marks: Array.from(s.querySelectorAll('button.mark')).map(m => {
                        const b = m.getBoundingClientRect(); return {start: Number(m.dataset.start), centre: b.left + b.width / 2}; })};
        });""")
        if not strips:
            fail("no timeline strip")
        marks_checked = 0
        for strip in strips:
            book = daemon.cli("book", strip["book"]).stdout
            m = re.search(r"over ([\d,]+) characters", book)
            if not m:
                fail(f"mindory book {strip['book']} does not give the length: {book[:300]}")
            length = int(m.group(1).replace(",", ""))
            for mk in strip["marks"]:
                expected = strip["x"] + strip["width"] * mk["start"] / length
                if abs(mk["centre"] - expected) > 0.01 * strip["width"] + 3:
                    fail(f"mark at char {mk['start']} of {length} is at x={mk['centre']:.1f}, expected {expected:.1f}")
                marks_checked += 1
        if marks_checked != len(rows):
            fail(f"{marks_checked} timeline marks for {len(rows)} ranked passages")
        print(f"rag: {len(rows)} passages in rank order ({flags.count('yes')} in the prompt), {marks_checked} timeline marks at offset / length")
        shot("e2e-rag.png")

        # 5. The daemon dies and comes back: the app reconnects and follows events again.
        tab(session, "Library")
        daemon.kill()
        wait_for("the app to show the daemon is down", lambda: texts(session, ".down"), timeout=60)
        shot("e2e-down.png")
        daemon.start()
        wait_for("the app to reconnect", lambda: library_statuses(session), timeout=60)
        books = json.loads(daemon.cli("books", "--json").stdout)
        constitution_id = next(b["id"] for b in books if "onstitution" in (b["title"] or b["path"]))
        daemon.cli("rm", str(constitution_id))
        wait_for("the Library to drop the book removed with the CLI after the restart",
                 lambda: not any("onstitution" in t for t in library_statuses(session)), timeout=60)
        titles = sorted(library_statuses(session))
        print(f"restart: the app reconnected and shows {titles}")
        if len(titles) != len(books) - 1:
            fail(f"the Library shows {titles}, the daemon has {len(books) - 1} books")
        shot("e2e-library-after-restart.png")
        print("desktop app end-to-end test passed")
    finally:
        if session:
            session.quit()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        daemon.stop()
        endpoint.server.shutdown()
        if os.environ.get("KEEP_E2E_TMP"):
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"desktop app end-to-end test FAILED: {e}", file=sys.stderr)
        sys.exit(1)
