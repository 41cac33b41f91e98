"""Reliability: secrets and files.

Batches run with known proxy passwords and a known API key, through proxies that work, that
refuse the password (407, SOCKS5), that are dead (httpx errors carry the proxy URL), that close
the connection, and one that echoes the Proxy-Authorization header back in its error page; and
a source that echoes the API key in its 5xx body. Then every output is searched for every
secret, in plain, URL-encoded and Basic-auth (base64) form: the log file, batch_log and every
other table (except the proxy URL column, which must hold it), exports, the output of every
CLI command, the console's screen, and exception texts.

Files: the database, the log file (also after rotation), exports and the default data and
log directories are created readable by their owner only, whatever the umask; the simulator
binds to loopback unless told otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import html
import os
import re
import socket
import sqlite3
import stat
import subprocess
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest

from servers import RawServer, answer, close_now, free_port, start_pproxy, wait_for, wait_port
from servers.harness import storycheck_cmd, subprocess_env, write_config
from storycheck_tui.errors import CheckError
from storycheck_tui.sim import ProxyFault, SimConfig, Simulator

API_KEY = "ApiKey-7d41-SECRET-9b2e"
PW = {
    "alice": "Alice-pw-3f9a1c",  # sim proxy, right password
    "bob": "Bob-wrong-pw-8e2d77",  # sim proxy that wants another password: 407
    "sock": "Socks-pw-5c1b0e",  # pproxy SOCKS5, right password
    "sockbad": "Socks-wrong-pw-d24f",  # pproxy SOCKS5, wrong password
    "carol": "Carol-dead-pw-61ab",  # a dead port: the connect error carries the URL
    "dave": "Dave-colon-pw-0e7c",  # host:port:user:pass form, a proxy that closes the connection
    "erin": "Erin-echo-pw-44d9",  # a proxy that echoes Proxy-Authorization in its 502 page
    "fay": "Fay@pw:with/odd#chars-93",  # needs URL-encoding
}


def forms(user: str, secret: str) -> list[str]:
    out = [secret, quote(secret, safe=""), base64.b64encode(f"{user}:{secret}".encode()).decode()]
    return list(dict.fromkeys(out))


ALL_FORMS = [f for user, pw in PW.items() for f in forms(user, pw)] + forms("key", API_KEY)[:2]


def assert_clean(where: str, text: str) -> None:
    for f in ALL_FORMS:
        assert f not in text, f"a secret ({f[:6]}…) leaked into {where}: …{text[max(0, text.find(f) - 80):text.find(f) + 40]}…"


def echo_auth_script(req, n):
    """A broken HTTP proxy whose error page echoes the request headers."""
    return answer(502, f"bad gateway; you sent: Proxy-Authorization: {req.headers.get('proxy-authorization')}".encode())


def echo_key_script(req, n):
    """A story API whose error page echoes the API key it was sent."""
    return answer(500, f"internal error for key={req.headers.get('x-access-key')}".encode())


def _db_text(db: Path) -> str:
    """Every text value of every table, except proxy.url (which must hold the credentials)."""
    chunks = []
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for t in tables:
            cols = [r[1] for r in con.execute(f"PRAGMA table_info({t})") if not (t == "proxy" and r[1] == "url")]
            for row in con.execute(f"SELECT {', '.join(cols)} FROM {t}"):
                chunks.append(" ".join(str(v) for v in row if v is not None))
    return "\n".join(chunks)


def _svg_text(svg: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", svg)).replace("\xa0", " ")


@pytest.fixture
def world(tmp_path):
    """The simulator (API key, auth proxies), a SOCKS5 proxy, broken proxies, config and files."""
    faults = {0: ProxyFault(kind="auth", username="alice", password=PW["alice"]),
              1: ProxyFault(kind="auth", username="bob", password="the-right-one"),
              2: ProxyFault(kind="auth", username="fay", password=PW["fay"])}
    socks_port = free_port()
    pproxy = start_pproxy(f"socks5://127.0.0.1:{socks_port}#sockuser:{PW['sock']}", "--auth", "0")
    closer = RawServer(lambda req, n: close_now)
    echo = RawServer(echo_auth_script)
    echo_src = RawServer(echo_key_script)
    sim = Simulator(SimConfig(seed=31, rate=0, proxies=3, api_key=API_KEY, faults=faults)).start()
    try:
        sim_port = sim.proxy_urls[0].rsplit(":", 1)[1]
        ports = [u.rsplit(":", 1)[1] for u in sim.proxy_urls]
        lines = [
            f"http://alice:{PW['alice']}@127.0.0.1:{ports[0]}",
            f"http://bob:{PW['bob']}@127.0.0.1:{ports[1]}",
            f"http://fay:{quote(PW['fay'], safe='')}@127.0.0.1:{ports[2]}",
            f"socks5://sockuser:{PW['sock']}@127.0.0.1:{socks_port}",
            f"socks5://sockbad:{PW['sockbad']}@127.0.0.1:{socks_port}",
            f"http://carol:{PW['carol']}@127.0.0.1:{free_port()}",
            f"127.0.0.1:{closer.port}:dave:{PW['dave']}",
            f"http://erin:{PW['erin']}@127.0.0.1:{echo.port}",
        ]
        assert sim_port
        proxies = tmp_path / "proxies.txt"
        proxies.write_text("\n".join(lines) + "\n")
        profiles = tmp_path / "profiles.txt"
        profiles.write_text("\n".join(f"secret.user{i:02d}" for i in range(24)) + "\n")
        engine = {"workers": 6, "lease_seconds": 30.0, "commit_every": 0.05, "grace_seconds": 2.0}
        # the echoing proxy's 502 reads as a source error and spends an attempt: allow a few
        retry = {"max_attempts": 4, "base_wait": 0.05, "max_wait": 0.1, "deadline": 20.0}
        prox = {"rate": 100.0, "burst": 10.0, "cooldown": 0.5, "max_cooldown": 2.0, "dead_after": 2,
                "validate_every": 0.5}
        cfg = write_config(tmp_path / "sim.toml", sim.config_snippet(), source_extra={"timeout": 2.0},
                           retry=retry, proxies=prox, engine=engine)
        echo_cfg = write_config(tmp_path / "echo.toml",
                                f'[source]\nurl = "{echo_src.stories_url()}"\nitems = "items"\n'
                                'headers = { "x-access-key" = "${STORY_API_KEY}" }\n',
                                source_extra={"timeout": 2.0}, retry=retry, proxies=prox, engine=engine)
        yield dict(sim=sim, tmp=tmp_path, cfg=cfg, echo_cfg=echo_cfg, proxies=proxies, profiles=profiles,
                   db=tmp_path / "secrets.db", logs=tmp_path / "logs", lines=lines)
    finally:
        sim.stop()
        for srv in (closer, echo, echo_src):
            srv.close()
        pproxy.terminate()
        pproxy.wait(5)


def _cli(world, *args: str, ok=(0, 1)) -> str:
    env = subprocess_env(world["logs"], STORY_API_KEY=API_KEY)
    res = subprocess.run(storycheck_cmd(*args), env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode in ok, (args, res.returncode, res.stderr[-3000:])
    return f"$ storycheck {' '.join(args)}\n{res.stdout}\n{res.stderr}"


def test_known_secrets_appear_in_no_output(world):
    db = str(world["db"])
    seen: dict[str, str] = {}
    # a batch through every proxy (the good ones carry it), with the stderr log at DEBUG
    seen["run"] = _cli(world, "run", str(world["profiles"]), "--name", "via-proxies", "--proxies",
                       str(world["proxies"]), "--config", str(world["cfg"]), "--db", db, "-vv")
    assert "24/24 checked" in seen["run"] and "24 succeeded" in seen["run"], seen["run"][-2000:]
    # a source that echoes the API key in its error page; a worker process too. Three profiles:
    # every try of each is a 500 echoing the key (12 tries; the source's starting pace of 5/s,
    # which 500s never raise, made 24 profiles' 96 tries take 19 s)
    echo_profiles = world["tmp"] / "echo-profiles.txt"
    echo_profiles.write_text("".join(f"echo.user{i}\n" for i in range(3)))
    seen["run-echo"] = _cli(world, "add", str(echo_profiles), "--name", "echo", "--db", db)
    seen["worker"] = _cli(world, "worker", "--until-idle", "--config", str(world["echo_cfg"]), "--db", db, "-vv")
    assert "source error HTTP 500: internal error for key=***" in _db_text(world["db"])
    # every reading command
    for args in (["batches"], ["batches", "--json"], ["logs", "--limit", "0"], ["logs", "--json", "--limit", "0"],
                 ["logs", "--level", "DEBUG", "--limit", "0"], ["proxies"], ["proxies", "list", "--json"],
                 ["proxies", "check", "--config", str(world["cfg"])],
                 ["export", "1"], ["export", "1", "--format", "jsonl"], ["export", "2", "--format", "jsonl"]):
        seen[" ".join(args)] = _cli(world, *args, "--db", db)
    out = world["tmp"] / "out.csv"
    _cli(world, "export", "2", "-o", str(out), "--db", db)
    seen["export file"] = out.read_text()

    # the log file, and every table (proxy.url aside)
    seen["log file"] = (world["logs"] / "storycheck.log").read_text()
    seen["database"] = _db_text(world["db"])
    assert "PROXY_FAILOVER" in seen["log file"] and "407" in seen["log file"]
    assert "Invalid username/password" in seen["log file"]  # the SOCKS5 refusal was exercised
    assert "proxy connection failed" in seen["log file"]  # the dead port (httpx's error names the URL)
    assert "you sent: Proxy-Authorization" in seen["log file"]  # the echoing proxy was exercised
    for where, text in seen.items():
        assert_clean(where, text)

    # the console's screen, running a batch over the same proxies and database
    from storycheck_tui import logs
    from storycheck_tui.config import load_settings
    from storycheck_tui.engine.wiring import build_runner
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store.db import open_store
    from storycheck_tui.ui.app import StorycheckApp

    os.environ["STORY_API_KEY"] = API_KEY
    try:
        logs.reset_logging()
        setup = logs.setup_logging(world["tmp"] / "console-logs")
        settings = load_settings(world["cfg"])
        store = open_store(db)
        try:
            bid = ops.create_batch(store, "console", [f"screen.user{i}" for i in range(12)])
            runner = build_runner(store, settings, batch_ids=[bid])

            async def drive() -> str:
                app = StorycheckApp(runner, store, setup.ring, refresh_every=None)
                async with app.run_test(size=(240, 70)) as pilot:
                    runner.start()
                    for _ in range(200):
                        if ops.get_batch(store, bid).state == "finished":
                            break
                        await pilot.pause(0.1)
                    app.refresh_now()
                    await pilot.pause()
                    return app.export_screenshot()

            screen = _svg_text(asyncio.run(drive()))
        finally:
            runner.stop(1.0)
            store.close()
            logs.reset_logging()
    finally:
        os.environ.pop("STORY_API_KEY", None)
    assert "screen.user" in screen and "Proxies" in screen
    assert_clean("the console's screen", screen)


def test_exception_texts_carry_no_secret(world):
    """httpx's errors name the proxy URL: the typed errors, their causes and a formatted
    traceback of them must not."""
    from storycheck_tui.config import load_settings
    from storycheck_tui.engine.wiring import build_source

    os.environ["STORY_API_KEY"] = API_KEY
    try:
        source = build_source(load_settings(world["cfg"]))
    finally:
        os.environ.pop("STORY_API_KEY", None)
    from storycheck_tui.engine.proxysync import load_routes
    from storycheck_tui.inputs.proxies import load_proxies
    from storycheck_tui.store import batches as ops
    from storycheck_tui.store.db import open_store

    store = open_store(str(world["tmp"] / "routes.db"))  # routes as the engine gets them: from the database
    try:
        ops.add_proxies(store, load_proxies(world["proxies"]))
        routes = load_routes(store)
    finally:
        store.close()
    texts = []
    try:
        for route in routes:
            for call in (lambda: source.check("secret.user00", route), lambda: source.health(route)):
                try:
                    call()
                except CheckError as err:
                    texts.append(str(err) + repr(err) + "".join(traceback.format_exception(err)))
    finally:
        source.close()
    assert len(texts) >= 8, texts
    for text in texts:
        assert_clean("an exception text", text)


# ------------------------------------------------------------------------------------------
# files
# ------------------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_log_and_export_files_are_owner_only(tmp_path):
    """With a permissive umask (022), every file storycheck creates is 0600 and every
    directory 0700: the database (and its -wal/-shm), the log file (also after a rotation),
    exports, and the default data and log directories."""
    home = tmp_path / "home"
    home.mkdir()
    env = subprocess_env(tmp_path / "unused")
    for var in ("STORYCHECK_LOG_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        env.pop(var, None)
    env["HOME"] = str(home)
    with Simulator(SimConfig(seed=41, rate=0)) as sim:
        cfg = write_config(tmp_path / "c.toml", sim.config_snippet(), engine={"workers": 2, "commit_every": 0.05})
        profiles = tmp_path / "p.txt"
        profiles.write_text("perm.one\nperm.two\n")
        script = (
            "import os, sys; os.umask(0o022); from storycheck_tui.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        py = [os.environ.get("PYTHON", os.sys.executable), "-c", script]
        res = subprocess.run(py + ["run", str(profiles), "--config", str(cfg)], env=env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        # an export, and a look at the database while a process holds it open (-wal, -shm)
        data = home / ".local" / "share" / "storycheck"
        state = home / ".local" / "state" / "storycheck"
        db = data / "storycheck.db"
        export = tmp_path / "export.csv"
        res = subprocess.run(py + ["export", "1", "-o", str(export)], env=env, capture_output=True, text=True,
                             timeout=60)
        assert res.returncode == 0, res.stderr
    assert db.exists(), list(home.rglob("*"))
    logfile = next(state.rglob("storycheck.log"))
    assert _mode(db) == 0o600, oct(_mode(db))
    assert _mode(data) == 0o700, oct(_mode(data))
    assert _mode(logfile) == 0o600, oct(_mode(logfile))
    assert _mode(logfile.parent) == 0o700, oct(_mode(logfile.parent))
    assert _mode(export) == 0o600, oct(_mode(export))

    holder = subprocess.Popen([os.sys.executable, "-c", (
        "import os, sqlite3, sys; os.umask(0o022); con = sqlite3.connect(sys.argv[1]);"
        "con.execute('PRAGMA journal_mode=wal'); con.execute('BEGIN IMMEDIATE');"
        "con.execute('CREATE TABLE IF NOT EXISTS t (x)'); con.execute('INSERT INTO t VALUES (1)');"
        "print('open', flush=True); sys.stdin.readline()"), str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        for side in ("-wal", "-shm"):
            f = Path(str(db) + side)
            assert f.exists() and _mode(f) == 0o600, (side, oct(_mode(f)) if f.exists() else "missing")
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(5)


def test_the_log_file_stays_owner_only_after_rotation(tmp_path):
    """RotatingFileHandler opens the new file with the process umask: it must be 0600 too."""
    from storycheck_tui import logs

    old = os.umask(0o022)
    try:
        logs.reset_logging()
        setup = logs.setup_logging(tmp_path / "logs")
        handler = setup.file_handler
        assert isinstance(handler, logging_handlers().RotatingFileHandler)
        logs.event(20, "TEST", "before rotation")
        for h in logs.log.handlers:  # written by the file's thread: on disk once flushed
            h.flush()
        handler.doRollover()
        logs.event(20, "TEST", "after rotation")
        for h in logs.log.handlers:
            h.flush()
        assert setup.file_path is not None
        rotated = Path(str(setup.file_path) + ".1")
        assert rotated.exists() and "before rotation" in rotated.read_text()
        assert "after rotation" in setup.file_path.read_text()
        assert _mode(setup.file_path) == 0o600, oct(_mode(setup.file_path))
        assert _mode(rotated) == 0o600, oct(_mode(rotated))
    finally:
        os.umask(old)
        logs.reset_logging()


def logging_handlers():
    import logging.handlers
    return logging.handlers


def _listening(port: int) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp[6]) listening on ``port``."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            addr, hexport = fields[1].split(":")
            if int(hexport, 16) == port and fields[3] == "0A":
                out.append(addr)
    return out


def _other_local_address() -> str | None:
    """An address of this machine that is not loopback (None if it has none)."""
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        addr = s.getsockname()[0]
        s.close()
        return None if addr.startswith("127.") else addr
    except OSError:
        return None


def test_the_simulator_binds_to_loopback_unless_told_otherwise(tmp_path):
    with Simulator(SimConfig(proxies=2)) as sim:
        ports = [int(sim.api_url.rsplit(":", 1)[1])] + [int(u.rsplit(":", 1)[1]) for u in sim.proxy_urls]
        for port in ports:
            assert _listening(port) == ["0100007F"], (port, _listening(port))
        other = _other_local_address()
        if other:
            with pytest.raises(OSError):
                socket.create_connection((other, ports[0]), timeout=1).close()

    # the `storycheck sim` command too
    port = free_port()
    proc = subprocess.Popen(storycheck_cmd("sim", "--port", str(port), "--proxies", "2"),
                            env=subprocess_env(tmp_path / "logs"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        wait_port(port)
        banner = []
        while len(banner) < 12:
            banner.append(proc.stdout.readline())
        proxy_ports = [int(m) for m in re.findall(r"http://127\.0\.0\.1:(\d+)\s*$", "".join(banner[6:9]), re.M)]
        assert len(proxy_ports) == 2, banner
        for p in [port] + proxy_ports:
            assert _listening(p) == ["0100007F"], (p, _listening(p))
        assert "127.0.0.1" in banner[0]
    finally:
        proc.terminate()
        proc.wait(10)

    # and only where told: an explicit wildcard host is honoured (the operator asked)
    with Simulator(SimConfig(host="0.0.0.0")) as sim:
        port = int(sim.api_url.rsplit(":", 1)[1])
        wait_for(lambda: _listening(port) == ["00000000"], 5, "a wildcard bind")
