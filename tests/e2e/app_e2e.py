#!/usr/bin/env python3
"""End-to-end test of the real Alertray desktop app, as a user meets it.

Runs under an X display (Xvfb in CI) with a private D-Bus session bus and a real
notification server (dunst) on it:

1. starts the app through tauri-driver (WebKitWebDriver) with its Alerts window open;
2. POSTs a captured critical body over HTTPS to the app's receiver;
3. checks the Notify call dunst received (summary, urgency), the tray menu exported over
   D-Bus (com.canonical.dbusmenu), and, through WebDriver, the Alerts window;
4. acknowledges the alert in the window and checks the tray menu changes;
5. POSTs the recovery and checks it clears everywhere;
6. checks the tunnel's line in the tray and runs Check connection from the tray and the guide;
7. takes screenshots of the Alerts, Settings and Connect guide windows (--screenshots);
8. with --figures, measures RSS, start-up times and POST -> Notify latency.

Prints "e2e: N passed, M failed" last and exits non-zero on any failure.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "captured"
APP = ROOT / "target" / "debug" / "alertray-app"
MENU_PATH = "/org/ayatana/NotificationItem/tray_icon_tray_app_alertray/Menu"
TOKEN = "e2e-token"

RESULTS = []


def check(name, fn):
    """Runs one named check; records pass or fail with the reason."""
    try:
        fn()
        RESULTS.append((name, None))
        print(f"PASS {name}", flush=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
        RESULTS.append((name, e))
        print(f"FAIL {name}: {e}", flush=True)
        traceback.print_exc()


def wait_for(what, fn, timeout=30.0, interval=0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))


def write_by_hand(path, text):
    tmp = path.with_name(path.name + ".edit")
    tmp.write_text(text)
    os.replace(tmp, path)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Desktop:
    """A private session bus (no service activation) with dunst on it."""

    def __init__(self, work: Path):
        self.work = work
        conf = work / "bus.conf"
        conf.write_text(
            '<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" '
            '"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">'
            f"<busconfig><type>session</type><listen>unix:dir={work}</listen><auth>EXTERNAL</auth>"
            '<policy context="default"><allow send_destination="*" eavesdrop="true"/>'
            '<allow eavesdrop="true"/><allow own="*"/></policy></busconfig>'
        )
        self.dbus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE, text=True)
        self.address = self.dbus.stdout.readline().strip()
        rc = work / "dunstrc"
        rc.write_text(
            "[global]\n    history_length = 5000\n"
            "[urgency_low]\n    timeout = 0\n[urgency_normal]\n    timeout = 0\n[urgency_critical]\n    timeout = 0\n"
            "[tag_low]\n    msg_urgency = low\n    set_category = urgency-low\n"
            "[tag_normal]\n    msg_urgency = normal\n    set_category = urgency-normal\n"
            "[tag_critical]\n    msg_urgency = critical\n    set_category = urgency-critical\n")
        self.dunst = subprocess.Popen(["dunst", "-config", str(rc)], env=self.env(),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for("dunst on the private bus", lambda: self.dunstctl("is-paused").returncode == 0)

    def env(self, **extra):
        e = dict(os.environ)
        e.update(DBUS_SESSION_BUS_ADDRESS=self.address, NO_AT_BRIDGE="1")
        e.update(extra)
        return e

    def dunstctl(self, *args):
        return subprocess.run(["dunstctl", *args], env=self.env(), capture_output=True, text=True)

    def popups(self):
        """Closes what is displayed and returns dunst's whole history, oldest first."""
        self.dunstctl("close-all")
        data = json.loads(self.dunstctl("history").stdout)["data"][0]
        out = [{"id": n["id"]["data"], "summary": n["summary"]["data"], "body": n["body"]["data"],
                "urgency": n["category"]["data"].replace("urgency-", "")} for n in data]
        return sorted(out, key=lambda n: n["id"])

    def gdbus(self, *args):
        r = subprocess.run(["gdbus", *args], env=self.env(), capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(r.stderr.strip())
        return r.stdout

    def menu_owner(self):
        names = re.findall(r"'(:1\.\d+)'", self.gdbus(
            "call", "--session", "--dest", "org.freedesktop.DBus", "--object-path", "/org/freedesktop/DBus",
            "--method", "org.freedesktop.DBus.ListNames"))
        for n in names:
            try:
                if MENU_PATH in self.gdbus("introspect", "--session", "--dest", n, "--object-path", "/", "-r"):
                    return n
            except RuntimeError:
                continue
        return None

    def menu(self):
        """The tray menu as (id, label) pairs, labels as a user reads them."""
        owner = self.menu_owner()
        if not owner:
            return []
        layout = self.gdbus("call", "--session", "--dest", owner, "--object-path", MENU_PATH,
                            "--method", "com.canonical.dbusmenu.GetLayout", "--", "0", "-1", "[]")
        items = []
        for m in re.finditer(r"\((\d+), \{([^}]*)\}", layout):
            label = re.search(r"'label': <'((?:[^'\\]|\\.)*)'>", m.group(2))
            if label:
                # GTK mnemonics double underscores in exported labels.
                items.append((int(m.group(1)), label.group(1).replace("__", "_")))
        return items

    def click(self, label_prefix):
        # The menu may be rebuilt between reading it and clicking (an alert arriving): its ids
        # then name nothing, the click is refused, and it is made again on the new menu.
        def attempt():
            owner = self.menu_owner()
            item = next(i for i, l in self.menu() if l.startswith(label_prefix))
            self.gdbus("call", "--session", "--dest", owner, "--object-path", MENU_PATH,
                       "--method", "com.canonical.dbusmenu.Event", "--", str(item), "clicked", "<0>", "0")
            return True
        wait_for(f"a click on {label_prefix!r} in the tray menu", attempt, 15)

    def close(self):
        for p in (self.dunst, self.dbus):
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


class Receiver:
    """HTTPS client for the app's receiver, trusting its self-signed certificate."""

    def __init__(self, port, data_dir: Path):
        self.url = f"https://127.0.0.1:{port}/"
        self.data_dir = data_dir
        self.ctx = None

    def context(self):
        if self.ctx is None:
            ctx = ssl.create_default_context(cafile=str(self.data_dir / "tls" / "cert.pem"))
            ctx.check_hostname = True
            self.ctx = ctx
        return self.ctx

    def up(self):
        try:
            with urllib.request.urlopen(self.url + "?crc_token=e2e", context=self.context(), timeout=2) as r:
                return r.status == 200
        except Exception:  # noqa: BLE001 - not up yet
            self.ctx = None
            return False

    def post(self, body: bytes):
        req = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, context=self.context(), timeout=10) as r:
            assert r.status == 200, r.status
            return json.loads(r.read())


def fixture(name, **changes):
    body = json.loads((FIXTURES / name).read_text())
    for path, value in changes.items():
        obj = body
        keys = path.split("__")
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value
    return json.dumps(body).encode()


def write_config(work: Path, port: int, extra=""):
    cfg = work / "config.toml"
    cfg.write_text(
        f'[server]\nlisten = "127.0.0.1:{port}"\npublic_url = "https://alerts.example.net/"\n'
        f'[auth]\nclient_certificate = "off"\nmethod = "bearer"\ntoken = "{TOKEN}"\nchallenge_secret = "e2e-secret"\n'
        f"{extra}")
    return cfg


def app_env(desktop: Desktop, work: Path, cfg: Path, data: Path):
    (work / "home").mkdir(exist_ok=True)
    return desktop.env(ALERTRAY_CONFIG=str(cfg), ALERTRAY_DATA_DIR=str(data), HOME=str(work / "home"),
                       XDG_CONFIG_HOME=str(work / "xdg-config"), XDG_DATA_HOME=str(work / "xdg-data"),
                       XDG_CACHE_HOME=str(work / "xdg-cache"), ALERTRAY_LOG="alertray=debug,alertray_app=debug,warn",
                       # No browser here: xdg-open runs this, which fails, as on a desktop without one.
                       BROWSER="false")


def run_ui_test(args, work: Path, desktop: Desktop):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.common.options import ArgOptions

    port = free_port()
    data = work / "data"
    # A stand-in tunnel that announces the receiver's own address as its public one, so that
    # Check connection goes over a real socket to the real receiver.
    cfg = write_config(work, port, "[tunnel]\ncommand = 'sh -c \"echo listening at localhost:{port}; exec sleep 3600\"'\n")
    driver_port = free_port()
    driver_log = open(work / "tauri-driver.log", "w")
    driver_proc = subprocess.Popen(
        [args.tauri_driver, "--port", str(driver_port), "--native-port", str(free_port())],
        env=app_env(desktop, work, cfg, data), stdout=driver_log, stderr=subprocess.STDOUT)
    wait_for("tauri-driver", lambda: socket.create_connection(("127.0.0.1", driver_port), 1).close() or True)
    opts = ArgOptions()
    opts.set_capability("browserName", "wry")
    opts.set_capability("tauri:options", {"application": str(APP), "args": ["--show", "alerts"]})
    driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{driver_port}", options=opts)
    receiver = Receiver(port, data)
    shots = Path(args.screenshots)
    shots.mkdir(parents=True, exist_ok=True)
    key_label = "la1.node.garland.slvn.co: used_swap = 100%"
    try:
        check("receiver starts with the app", lambda: wait_for("the receiver", receiver.up, 60))

        def raise_critical():
            r = receiver.post(fixture("netdata-alert-critical.json"))
            assert r["duplicate"] is False, r
            receiver.post(fixture("netdata-alert-warning.json"))
        check("a captured critical body is accepted over HTTPS", raise_critical)

        def notify_call():
            popups = wait_for("the critical popup", lambda: [
                p for p in desktop.popups() if p["summary"] == "la1.node.garland.slvn.co: used_swap is Critical"])
            assert popups[0]["urgency"] == "critical", popups
            assert "Value: 100%" in popups[0]["body"], popups
        check("the Notify call carries the right summary and urgency", notify_call)

        def tray_lists():
            labels = wait_for("the alert in the tray menu", lambda: [l for _, l in desktop.menu() if key_label in l])
            assert labels[0].startswith("● "), labels
            wait_for("the status line counting both", lambda: [l for _, l in desktop.menu()][0] == "1 critical, 1 warning", 15)
        check("the tray menu (dbusmenu) lists the alert", tray_lists)

        def window_shows():
            table = lambda: driver.find_element(By.ID, "active-table")  # noqa: E731
            wait_for("used_swap in the Alerts window", lambda: "used_swap" in table().text and "100%" in table().text)
            time.sleep(0.5)
            driver.save_screenshot(str(shots / "alerts.png"))
        check("the Alerts window shows the alert", window_shows)

        def acknowledge():
            row = driver.find_element(By.CSS_SELECTOR, "#active-table tbody tr")
            assert "used_swap" in row.text, row.text
            row.find_element(By.CSS_SELECTOR, "button.ack").click()
            wait_for("the tray to show the acknowledgement",
                     lambda: any(l.startswith("✓ ") and key_label in l for _, l in desktop.menu()))
            wait_for("the status line", lambda: desktop.menu()[0][1] == "1 warning, 1 acknowledged")
            wait_for("the row dimmed", lambda: driver.find_elements(By.CSS_SELECTOR, "#active-table tr.acknowledged"))
        check("acknowledging in the window changes the tray menu", acknowledge)

        def recovery_clears():
            receiver.post(fixture("netdata-alert-critical.json", alert__state__status="Clear",
                                  alert__transition_id="e2e-recovery", message="Recovered, swap, on la1"))
            receiver.post(fixture("netdata-alert-warning.json", alert__state__status="Clear",
                                  alert__transition_id="e2e-recovery-2", message="Recovered, ram, on gn4"))
            wait_for("the tray to clear", lambda: desktop.menu() and not any("used_swap" in l for _, l in desktop.menu())
                     and desktop.menu()[0][1] == "All clear")
            wait_for("the window to clear", lambda: driver.find_elements(By.ID, "all-clear"))
            popups = wait_for("the recovery popup", lambda: [
                p for p in desktop.popups() if p["summary"] == "la1.node.garland.slvn.co: used_swap recovered"])
            assert popups[-1]["urgency"] == "low", popups
        check("the recovery clears it everywhere", recovery_clears)

        def tunnel_and_check():
            line = f"Tunnel: up at https://localhost:{port}"
            wait_for("the tunnel line in the tray menu", lambda: any(l == line for _, l in desktop.menu()))
            # From the tray: the Connect guide opens and runs the check, which reaches the receiver.
            desktop.click("Check connection")
            wait_for("the check's probe in the log", lambda: any(
                "connection check: credentials accepted" in f.read_text() for f in (data / "logs").glob("alertray*.log")))
            # In the window: the report, step by step.
            driver.execute_script("location.hash = 'guide/check'")
            report = wait_for("the check report", lambda: driver.find_elements(By.ID, "check-report"))[0]
            steps = {li.get_attribute("data-step"): li.get_attribute("class") for li in
                     report.find_elements(By.CSS_SELECTOR, "li.step")}
            assert steps["Challenge"] == "step ok", steps
            assert steps["Authentication"] == "step ok", steps
            assert steps["Certificate"] == "step failed", steps  # self-signed: Netdata would refuse it
            # The fix names the setting by its label, as a link to its field in Settings.
            links = {a.get_attribute("data-key"): a.text for a in report.find_elements(By.CSS_SELECTOR, "a.setting-link")}
            assert links.get("tls.acme.email") == "ACME certificate", links
            assert links.get("tls.cert") == "Certificate chain (PEM)", links
            assert "tls.acme" not in report.text and "tls.cert" not in report.text, report.text
            assert driver.find_element(By.ID, "tunnel-state").get_attribute("data-phase") == "up"
            # Where a link leads (open_window's address): Settings, with that field focused.
            driver.execute_script("location.hash = 'settings/tls.acme.email'")
            wait_for("the ACME field focused", lambda: driver.execute_script(
                "return document.activeElement && document.activeElement.id") == "f-tls-acme-email", 10)
            driver.execute_script("location.hash = 'alerts'")
        check("the tunnel shows in the tray, and Check connection runs from the tray and the guide", tunnel_and_check)

        def screenshots():
            # Put some life back into the windows for the pictures.
            receiver.post(fixture("netdata-alert-critical.json", alert__transition_id="e2e-shot-1"))
            receiver.post(fixture("netdata-alert-warning.json", alert__transition_id="e2e-shot-2"))
            receiver.post(fixture("netdata-reachability-unreachable.json", message="Slvn.co/sa1.node.garland.slvn.co is unreachable (e2e)"))
            receiver.post(fixture("netdata-token.json"))
            wait_for("three active alerts", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#active-table tbody tr")) == 3)
            # Without the last action's toast.
            wait_for("the toast gone", lambda: "show" not in driver.find_element(By.ID, "toast").get_attribute("class"), 10)
            time.sleep(0.5)
            driver.save_screenshot(str(shots / "alerts.png"))
            driver.find_element(By.ID, "tab-history").click()
            wait_for("the history, counted", lambda: " of " in driver.execute_script(
                "const r = document.querySelector('.pager.bottom .range'); return r ? r.textContent : ''"))
            driver.save_screenshot(str(shots / "history.png"))
            driver.execute_script("location.hash = 'settings'")
            wait_for("the settings form", lambda: driver.find_elements(By.ID, "f-server-listen"))
            time.sleep(0.5)
            driver.save_screenshot(str(shots / "settings.png"))
            driver.execute_script("location.hash = 'guide'")
            wait_for("the verification token", lambda: "2b633082-34ec-4ec3-946c-5e81076c39af" in driver.find_element(By.ID, "verification").text)
            wait_for("the check report", lambda: driver.find_elements(By.ID, "check-report"))
            time.sleep(0.3)
            driver.save_screenshot(str(shots / "guide.png"))
        check("screenshots of the Alerts, Settings and Connect guide windows", screenshots)

        def single_instance():
            second = subprocess.run([str(APP)], env=app_env(desktop, work, cfg, data), timeout=60,
                                    capture_output=True, text=True)
            assert second.returncode == 0, second.stderr[-2000:]
            wait_for("the first instance to still serve", receiver.up, 15)
        check("starting it again hands over to the running app (single instance)", single_instance)

        def copy_webhook_url():
            desktop.click("Copy webhook URL")
            wait_for("the webhook URL on the clipboard", lambda: subprocess.run(
                ["xclip", "-o", "-selection", "clipboard"], capture_output=True, text=True, timeout=5,
            ).stdout.strip() == f"https://localhost:{port}/")  # the tunnel's URL wins over public_url
        check("the tray's Copy webhook URL puts it on the clipboard", copy_webhook_url)

        def open_without_a_browser():
            clipboard = lambda: subprocess.run(  # noqa: E731
                ["xclip", "-o", "-selection", "clipboard"], capture_output=True, text=True, timeout=5).stdout.strip()
            subprocess.run(["xclip", "-i", "-selection", "clipboard"], input="cleared", text=True, timeout=5)
            # From the guide scrolled down, the Alerts page opens at its top (the header stays
            # on top and would hide its tabs if it kept the guide's offset).
            driver.execute_script("location.hash = 'guide'")
            wait_for("the guide", lambda: driver.find_elements(By.ID, "verification"))
            driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
            assert driver.execute_script("return window.scrollY") > 0, "the guide is longer than the window"
            driver.execute_script("location.hash = 'alerts'")
            wait_for("the Alerts page at its top", lambda: driver.find_elements(By.ID, "tab-active")
                     and driver.execute_script("return window.scrollY") == 0, 10)
            driver.find_element(By.ID, "tab-active").click()
            buttons = lambda: [b for b in driver.find_elements(  # noqa: E731
                By.CSS_SELECTOR, "#active-table button[data-action='open']") if b.is_enabled()]
            # Found and clicked in one go: a redraw in between would leave a stale button.
            wait_for("an alert to open", lambda: buttons() and (buttons()[0].click() or True), 10)
            wait_for("the link on the clipboard", lambda: clipboard().startswith("https://app.netdata.cloud/"), 15)
            wait_for("the toast saying so", lambda: "No browser opened the link" in driver.find_element(By.ID, "toast").text, 10)
        check("Open with no browser puts the alert's link on the clipboard", open_without_a_browser)

        def autostart():
            driver.execute_script("location.hash = 'settings'")
            box = wait_for("the autostart switch", lambda: driver.find_element(By.ID, "autostart"))
            # The autostart plugin writes $HOME/.config/autostart on Linux.
            entries = lambda: list((work / "home" / ".config" / "autostart").glob("*.desktop"))  # noqa: E731
            assert not box.is_selected() and not entries(), "autostart is off until turned on"
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
            box.click()
            entry = wait_for("a login entry", entries)
            assert str(APP) in entry[0].read_text() or "alertray-app" in entry[0].read_text(), entry[0].read_text()
            box.click()
            wait_for("the login entry removed", lambda: not entries())
        check("autostart can be turned on and off", autostart)

        def log_file():
            logs = wait_for("a log file", lambda: list((data / "logs").glob("alertray*.log")))
            assert "receiver listening" in logs[0].read_text(), logs[0].read_text()[-2000:]
        check("the app logs to a rotating file in the data dir", log_file)

        def settings_inline():
            driver.execute_script("location.hash = 'settings'")
            field = wait_for("the method select", lambda: driver.find_element(By.ID, "f-auth-method"))
            token = driver.find_element(By.ID, "f-auth-token")
            # Typing (not clear()) fires the input events a user's editing fires.
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", token)
            token.send_keys(Keys.CONTROL, "a")
            token.send_keys(Keys.BACKSPACE)
            try:
                wait_for("the core's message next to the token",
                         lambda: "non-empty secret" in driver.find_element(By.CSS_SELECTOR, '.field[data-key="auth.token"] .error').text, 10)
            except AssertionError as e:
                state = driver.execute_script(
                    "return [document.getElementById('f-auth-token').value, document.getElementById('form-error').textContent,"
                    " document.querySelector('.field[data-key=\"auth.token\"]').outerHTML]")
                direct = driver.execute_async_script(
                    "const done = arguments[arguments.length - 1];"
                    "try { const raw = readForm(); invoke('validate_settings', {raw}).then(() => done(['ok', JSON.stringify(raw)]), (err) => done(['err', JSON.stringify(err), JSON.stringify(raw)])); } catch (x) { done(['throw', String(x)]); }")
                raise AssertionError(f"{e}: {state} {direct}") from None
            assert field is not None
            # A second mistake: each shows at its own field, at the same time.
            quiet = driver.find_element(By.ID, "f-notifications-quiet_hours")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", quiet)
            quiet.send_keys(Keys.CONTROL, "a")
            quiet.send_keys("late")
            error_at = lambda key: driver.find_element(By.CSS_SELECTOR, f'.field[data-key="{key}"] .error').text  # noqa: E731
            wait_for("both mistakes, each at its field", lambda: error_at("notifications.quiet_hours").startswith(
                "\"late\" is not accepted") and "non-empty secret" in error_at("auth.token"), 10)
            assert "secret" not in error_at("notifications.quiet_hours"), error_at("notifications.quiet_hours")
            # Beside its field, a message does not repeat the setting's key.
            assert not error_at("auth.token").startswith("auth.token"), error_at("auth.token")
            # Only the chosen method's credentials are shown.
            assert driver.find_element(By.ID, "f-auth-token").is_displayed()
            assert not driver.find_element(By.ID, "f-auth-password").is_displayed()
        check("Settings validates inline with the core's messages", settings_inline)

        def settings_unsaved():
            box = driver.find_element(By.ID, "f-server-max_connections")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", box)
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys("2.5")
            wait_for("the field's own message", lambda: "whole number" in driver.find_element(
                By.CSS_SELECTOR, '.field[data-key="server.max_connections"] .error').text, 10)
            # Escape outside a field, with edits not saved: a warning, and the window stays.
            driver.execute_script("document.activeElement.blur()")
            driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
            wait_for("the unsaved-changes warning", lambda: "Unsaved changes" in driver.find_element(By.ID, "toast").text, 10)
            assert driver.find_element(By.ID, "f-server-max_connections").get_attribute("value") == "2.5"
        check("Settings keeps unsaved edits from a stray Escape and names a bad number", settings_unsaved)

        def edit_field(field_id, value):
            """Types value into a Settings field, as a user would; returns the field."""
            box = driver.find_element(By.ID, field_id)
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", box)
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(value)
            wait_for("Discard enabled by the edit", lambda: driver.find_element(By.ID, "discard").is_enabled(), 10)
            return box

        def press_enter_to_save(box):
            box.send_keys(Keys.ENTER)
            wait_for("the save's result", lambda: driver.find_element(By.ID, "save-result").text.startswith("Saved."), 15)

        def settings_discard_and_enter():
            value = lambda key: driver.find_element(By.ID, "f-" + key.replace(".", "-")).get_attribute("value")  # noqa: E731
            discard = driver.find_element(By.ID, "discard")
            assert discard.is_enabled(), "the edits above are there to discard"
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", discard)
            discard.click()
            wait_for("the file's values back", lambda: value("server.max_connections") != "2.5"
                     and value("auth.token") != "" and value("notifications.quiet_hours") != "late", 10)
            wait_for("no error left", lambda: not driver.find_elements(By.CSS_SELECTOR, ".field.invalid"), 10)
            assert not driver.find_element(By.ID, "discard").is_enabled(), "nothing left to discard"
            # Enter in a field saves.
            press_enter_to_save(edit_field("f-store-retention_days", "45"))
            assert "retention_days = 45" in cfg.read_text(), cfg.read_text()
            assert not driver.find_element(By.ID, "discard").is_enabled(), "saved: nothing to discard"
        check("Settings: Discard changes puts the file's values back, Enter saves", settings_discard_and_enter)

        def settings_follow_a_hand_edit():
            # Each edit as an editor saves it: a whole new file put in place.
            text = cfg.read_text()
            assert "retention_days = 45" in text, text
            write_by_hand(cfg, text.replace("retention_days = 45", "retention_days = 46"))
            wait_for("the edit in the form", lambda: driver.find_element(By.ID, "f-store-retention_days").get_attribute("value") == "46", 15)
            wait_for("the toast saying so", lambda: "changed on disk" in driver.find_element(By.ID, "toast").text, 10)
            wait_for("the receiver to run with the edited file", receiver.up, 15)
            # A bad edit: left unapplied, and the open form says why for as long as it is.
            good = cfg.read_text()
            write_by_hand(cfg, good.replace("retention_days = 46", "retention_days = -1"))
            refused = lambda: driver.find_elements(By.ID, "refused")  # noqa: E731
            wait_for("the note on the edit left unapplied", lambda: refused() and "store.retention_days" in refused()[0].text, 15)
            wait_for("the receiver to run on with the settings it had", receiver.up, 15)
            write_by_hand(cfg, "# put back\n" + good)
            wait_for("the note gone once the edit is undone", lambda: not refused(), 15)
            # Again, and this time put right in the form: the save replaces the edit, and the
            # note goes.
            write_by_hand(cfg, good.replace("retention_days = 46", "retention_days = -1"))
            wait_for("the note again", lambda: refused(), 15)
            value = lambda: driver.find_element(By.ID, "f-store-retention_days").get_attribute("value")  # noqa: E731
            wait_for("the form showing the file", lambda: value() == "-1", 10)
            press_enter_to_save(edit_field("f-store-retention_days", "46"))
            wait_for("the note gone once saved", lambda: not refused(), 5)
            good = cfg.read_text()
            # Edits in the form while the file is edited by hand: saving keeps both.
            popups = edit_field("f-notifications-max_popups_per_minute", "7")
            write_by_hand(cfg, good.replace("retention_days = 46", "retention_days = 47"))
            wait_for("the toast on the edit by hand", lambda: "with your edits on top" in driver.find_element(By.ID, "toast").text, 15)
            press_enter_to_save(popups)
            text = cfg.read_text()
            assert "retention_days = 47" in text and "max_popups_per_minute = 7" in text, text
            wait_for("the form showing both", lambda: driver.find_element(By.ID, "f-store-retention_days").get_attribute("value") == "47", 10)
        check("an edit of the config file by hand is applied and shows in Settings", settings_follow_a_hand_edit)

        def alerts_dismiss():
            receiver.post(fixture("netdata-reachability-unreachable.json", message="Slvn.co/sa1.node.garland.slvn.co is unreachable (dismiss)"))
            driver.execute_script("location.hash = 'alerts'")
            wait_for("the Active tab", lambda: driver.find_element(By.ID, "tab-active")).click()
            rows = lambda: driver.find_elements(By.CSS_SELECTOR, "#active-table tbody tr")  # noqa: E731
            wait_for("an active alert in the window", rows, 10)
            # No redraw left to come that would replace the button between finding it and
            # clicking it: the table has stayed the same element for a while.
            settled = lambda: driver.execute_script(  # noqa: E731
                "const t = document.querySelector('#active-table tbody'); if (window.__seen !== t) { window.__seen = t; window.__since = Date.now(); }"
                " return Date.now() - window.__since > 400;")
            wait_for("the Alerts page to settle", settled, 10)
            first = rows()[0]
            key, before = first.get_attribute("data-key"), len(rows())
            button = first.find_element(By.CSS_SELECTOR, "button.dismiss")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
            button.click()
            assert button.text == "Click to dismiss", button.text
            assert len(rows()) == before, "one click only asks"
            # The confirmation waits 3 s for a person; a slow test machine may need longer
            # for the delivery below, and the time limit is not what this checks.
            driver.execute_script("if (alertsView.armed) alertsView.armed.until = Date.now() + 60000;")
            # A live update redraws the rows in between: the second click still dismisses.
            receiver.post(fixture("netdata-alert-warning.json", alert__name="e2e_between", alert__transition_id="e2e-dismiss-between"))
            armed = lambda: next(r for r in rows() if r.get_attribute("data-key") == key).find_element(  # noqa: E731
                By.CSS_SELECTOR, "button.dismiss")
            try:
                wait_for("the redrawn, still armed button", lambda: armed().id != button.id and armed().text == "Click to dismiss", 15)
            except AssertionError as e:
                state = driver.execute_script("return JSON.stringify(alertsView.armed) + ' now=' + Date.now()")
                raise AssertionError(f"{e}: same={armed().id == button.id} text={armed().text!r} armed={state}") from None
            armed().click()
            wait_for("the row gone", lambda: rows() and all(r.get_attribute("data-key") != key for r in rows()), 10)
            active = driver.execute_async_script(
                "const done = arguments[arguments.length - 1]; invoke('active_alerts').then(done, (e) => done(String(e)));")
            assert all(a["key"] != key for a in active), active
        check("Dismiss takes an alert off the Alerts window after a second click", alerts_dismiss)

        def keyboard_focus():
            from selenium.webdriver.common.action_chains import ActionChains
            for i in range(3):
                receiver.post(fixture("netdata-alert-warning.json", alert__name=f"e2e_focus_{i}",
                                      alert__transition_id=f"e2e-focus-{i}"))
            # Rows are read in one script each: a live update may redraw them at any moment.
            keys = lambda: driver.execute_script(  # noqa: E731
                "return [...document.querySelectorAll('#active-table tbody tr')].map(r => r.dataset.key)")
            key_of = lambda text: driver.execute_script(  # noqa: E731
                "return ([...document.querySelectorAll('#active-table tbody tr')]"
                ".find(r => r.textContent.includes(arguments[0])) || {dataset: {}}).dataset.key || null", text)
            row_has = lambda key, cls: driver.execute_script(  # noqa: E731
                "const r = [...document.querySelectorAll('#active-table tbody tr')].find(r => r.dataset.key === arguments[0]);"
                "return !!r && r.classList.contains(arguments[1])", key, cls)
            focus_button = lambda key, action: driver.execute_script(  # noqa: E731
                "const r = [...document.querySelectorAll('#active-table tbody tr')].find(r => r.dataset.key === arguments[0]);"
                "r.querySelector(`[data-action='${arguments[1]}']`).focus()", key, action)
            focused = lambda: driver.execute_script(  # noqa: E731
                "const el = document.activeElement, row = el.closest('tr[data-key]');"
                "return [row ? row.dataset.key : el.id || el.tagName, el.dataset.action || null];")
            wait_for("three alerts to focus", lambda: all(key_of(f"e2e_focus_{i}") for i in range(3)), 10)
            key = key_of("e2e_focus_1")

            # The focus comes back once the redraws are done: wait for them, then say where it is.
            def focus_on(want, when):
                try:
                    wait_for(f"the focus {when}", lambda: focused() == want, 3)
                except AssertionError:
                    raise AssertionError(f"{when}: the focus is on {focused()}, not {want}") from None
            index = keys().index(key)
            focus_button(key, "ack")
            ActionChains(driver).send_keys(Keys.ENTER).perform()
            wait_for("the row acknowledged", lambda: row_has(key, "acknowledged"), 10)
            # Acknowledged, the row sorts down the list: the focus goes on to the row that took
            # its place, as after a dismissal.
            wait_for("the redraw", lambda: focused()[1] == "ack", 3)
            expected = [keys()[index], "ack"]
            assert expected[0] != key, f"the acknowledged row stayed in place: {keys()}"
            focus_on(expected, "after acknowledging")
            # A notification arriving redraws the list: the focus stays put.
            receiver.post(fixture("netdata-alert-warning.json", alert__name="e2e_focus_live", alert__transition_id="e2e-focus-live"))
            wait_for("the live update", lambda: key_of("e2e_focus_live"), 10)
            focus_on(expected, "after a live update")
            # Dismissed by keyboard, the row goes and the focus moves to the row in its place.
            key = expected[0]
            order = keys()
            focus_button(key, "dismiss")
            ActionChains(driver).send_keys(Keys.ENTER).perform()
            ActionChains(driver).send_keys(Keys.ENTER).perform()
            wait_for("the row dismissed", lambda: key not in keys(), 10)
            after = order[order.index(key) + 1] if order.index(key) + 1 < len(order) else order[order.index(key) - 1]
            focus_on([after, "dismiss"], "after dismissing")
        check("keyboard focus stays on its alert's button across acknowledge, live updates and dismiss", keyboard_focus)

        def snooze_and_resume():
            receiver.post(fixture("netdata-alert-warning.json", alert__name="e2e_snooze", alert__transition_id="e2e-snooze"))
            row = ("const r = [...document.querySelectorAll('#active-table tbody tr')]"
                   ".find(r => r.textContent.includes('e2e_snooze'));")
            state = lambda: driver.execute_script(  # noqa: E731
                row + "return r ? [r.querySelector('[data-action=snooze]').textContent,"
                " (r.querySelector('.snoozed') || {textContent: ''}).textContent] : null")
            wait_for("the alert to snooze", lambda: state() == ["Snooze 1 h", ""], 10)
            driver.execute_script(row + "r.querySelector('[data-action=snooze]').click()")
            wait_for("the row snoozed", lambda: state()[0] == "Resume" and state()[1].startswith("no popups until"), 10)
            # Listed among the snoozes in force, with a Resume of its own; the list stays open
            # across a live update, and closes again.
            driver.execute_script("document.getElementById('snoozes-toggle').click()")
            listed = lambda: driver.execute_script(  # noqa: E731
                "return [...document.querySelectorAll('#snoozes li[data-scope=alert]')].map((li) => li.textContent)")
            wait_for("the snooze listed", lambda: any("e2e_snooze" in t and "Resume" in t for t in listed()), 10)
            receiver.post(fixture("netdata-alert-warning.json", alert__name="e2e_live_update",
                                  alert__transition_id="e2e-live-update"))
            wait_for("the other alert shown", lambda: driver.execute_script(
                "return document.getElementById('active-table').textContent.includes('e2e_live_update')"), 10)
            assert listed(), "the list closed on a live update"
            driver.execute_script("document.getElementById('snoozes').scrollIntoView({block: 'center'})")
            driver.save_screenshot(str(shots / "snoozes.png"))
            driver.execute_script("document.getElementById('snoozes-toggle').click()")
            wait_for("the list closed", lambda: not driver.find_elements(By.ID, "snoozes"), 10)
            active = driver.execute_async_script(
                "const done = arguments[arguments.length - 1]; invoke('status').then((s) => done(s.snoozes), (e) => done(String(e)));")
            assert any(s["scope"] == "alert" and "e2e_snooze" in s["target"] for s in active), active
            driver.execute_script(row + "r.querySelector('[data-action=snooze]').click()")
            wait_for("the snooze lifted", lambda: state() == ["Snooze 1 h", ""], 10)
        check("an alert snoozed in the window says so, and Resume lifts it", snooze_and_resume)

        def tabs_by_keyboard():
            from selenium.webdriver.common.action_chains import ActionChains
            driver.execute_script("document.getElementById('tab-active').focus()")
            ActionChains(driver).send_keys(Keys.ARROW_RIGHT).perform()
            selected = lambda: driver.execute_script(  # noqa: E731
                "const t = document.querySelector('[role=tab][aria-selected=true]');"
                "return [t && t.id, document.activeElement.id, !!document.getElementById('history-list')]")
            wait_for("the History tab, selected and focused", lambda: selected() == ["tab-history", "tab-history", True], 10)
            ActionChains(driver).send_keys(Keys.ARROW_LEFT).perform()
            wait_for("back to the Active tab", lambda: selected()[:2] == ["tab-active", "tab-active"], 10)
        check("the Alerts tabs follow the arrow keys", tabs_by_keyboard)

        def storm_filter_and_acknowledge():
            driver.execute_script("location.hash = 'alerts'")
            wait_for("the Active tab", lambda: driver.find_element(By.ID, "tab-active")).click()
            for i in range(4):
                receiver.post(fixture("netdata-alert-warning.json", alert__name=f"e2e_storm_{i}",
                                      alert__transition_id=f"e2e-storm-{i}"))
            active = lambda: driver.execute_async_script(  # noqa: E731
                "const done = arguments[arguments.length - 1]; invoke('active_alerts').then(done, (e) => done(String(e)));")
            others_before = {a["key"]: a["acknowledged"] for a in active() if not a["name"].startswith("e2e_storm_")}
            assert others_before, "other alerts are active, to be left alone"
            # Drawn afresh with the alerts already there (not only after one arrives live).
            driver.find_element(By.ID, "tab-history").click()
            wait_for("the History tab", lambda: driver.find_elements(By.ID, "history-list"), 10)
            driver.find_element(By.ID, "tab-active").click()
            box = wait_for("the filter", lambda: driver.find_element(By.ID, "active-filter"), 10)
            wait_for("the filter shown", box.is_displayed, 10)
            box.send_keys("e2e_storm")
            names = lambda: [r.find_element(By.CSS_SELECTOR, ".alert-name").text.replace("\u200b", "")  # noqa: E731
                             for r in driver.find_elements(By.CSS_SELECTOR, "#active-table tbody tr")]
            wait_for("only the storm's alerts", lambda: sorted(names()) == [f"e2e_storm_{i}" for i in range(4)], 10)
            button = driver.find_element(By.ID, "ack-shown")
            assert button.text == "Acknowledge the 4 shown", button.text
            button.click()
            wait_for("the storm acknowledged", lambda: all(
                a["acknowledged"] for a in active() if a["name"].startswith("e2e_storm_")), 10)
            others_after = {a["key"]: a["acknowledged"] for a in active() if not a["name"].startswith("e2e_storm_")}
            assert others_after == others_before, "the alerts not shown are left as they were"
            wait_for("nothing left to acknowledge", lambda: not driver.find_element(By.ID, "ack-shown").is_enabled(), 10)
            box.send_keys("zzz-no-such")
            wait_for("the no-match note", lambda: driver.find_elements(By.ID, "no-match"), 10)
            box.send_keys(Keys.CONTROL, "a")
            box.send_keys(Keys.BACKSPACE)
            wait_for("every alert back", lambda: len(names()) == len(active()), 10)
        check("in a storm, the Active tab filters and acknowledges what it shows", storm_filter_and_acknowledge)

        def history_pages_and_total():
            import sqlite3
            for i in range(55):
                receiver.post(fixture("netdata-alert-recovered.json", alert__name=f"e2e_page_{i}",
                                      alert__transition_id=f"e2e-page-{i}"))

            def stored(where="1 = 1"):
                db = sqlite3.connect(f"file:{data / 'alertray.db'}?mode=ro", uri=True)
                try:
                    return db.execute(f"SELECT count(*) FROM notifications WHERE {where}").fetchone()[0]
                finally:
                    db.close()
            total = stored()
            assert 55 < total < 1000, total  # more than a page; no thousands separator
            driver.execute_script("document.getElementById('tab-history').click()")
            pager = lambda: driver.execute_script(  # noqa: E731
                "const r = document.querySelector('.pager.bottom .range'); return r ? r.textContent : ''")
            wait_for(f"the pager to count all {total}", lambda: pager() == f"1 to 50 of {total}, newest first", 10)
            driver.execute_script("document.getElementById('history-older').click()")
            wait_for("the second page, counted", lambda: pager() == f"51 to {min(100, total)} of {total}, newest first", 10)
            status = ("const s = document.getElementById('history-status');"
                      " s.value = arguments[0]; s.dispatchEvent(new Event('change'));")
            driver.execute_script(status, "critical")
            critical = stored("status = 'critical'")
            wait_for(f"the {critical} critical ones, counted",
                     lambda: pager() == f"1 to {min(50, critical)} of {critical}, newest first", 10)
            driver.execute_script(status, "")
            driver.execute_script("document.getElementById('tab-active').click()")
        check("History counts every match across its pages", history_pages_and_total)

        def history_fits_the_window_whatever_the_names():
            host = "a-really-long-host-name-for-checking-the-history-layout." * 2 + "node.example.net"
            receiver.post(fixture("netdata-alert-critical.json", node__hostname=host,
                                  alert__name="e2e_" + "long_alert_name_" * 6, alert__transition_id="e2e-long-host"))
            driver.execute_script("document.getElementById('tab-history').click()")
            wait_for("the long host listed", lambda: driver.execute_script(
                "const t = document.getElementById('history-table');"
                " return !!t && t.textContent.includes('a-really-long-host-name')"), 10)
            # The table's width is the page's, at the window's width and at its least (560 px),
            # and nothing in it reaches past its edge; the message keeps a quarter of it at least.
            fits = ("const t = document.getElementById('history-table'); const left = t.getBoundingClientRect().left;"
                    " const text = document.createRange(); text.selectNodeContents(t);"
                    " const reach = Math.max(text.getBoundingClientRect().right - left,"
                    "   ...[...t.querySelectorAll('*')].map((e) => e.getBoundingClientRect().right - left));"
                    " const message = t.querySelector('th:last-child').getBoundingClientRect().width;"
                    " return [Math.round(reach), t.offsetWidth, t.parentElement.clientWidth, Math.round(message),"
                    " document.documentElement.clientWidth]")
            size = driver.get_window_size()
            try:
                for shot, width in (("history-long-names.png", None), ("history-long-names-narrow.png", 560)):
                    if width:
                        driver.set_window_size(width, size["height"])
                        wait_for("the window narrowed", lambda: driver.execute_script(fits)[4] <= width, 10)
                    reach, table, room, message, page_width = driver.execute_script(fits)
                    assert reach <= table <= room and message >= table / 4, (page_width, reach, table, room, message)
                    driver.save_screenshot(str(shots / shot))
            finally:
                driver.set_window_size(size["width"], size["height"])
            driver.execute_script("document.getElementById('tab-active').click()")
        check("History fits the window however long a node's name", history_fits_the_window_whatever_the_names)

        def tunnel_use_fills_settings():
            driver.execute_script("location.hash = 'guide'")
            rows = wait_for("the tunnel examples", lambda: driver.execute_script(
                "return [...document.querySelectorAll('#tunnels tbody tr')].map((r) => ["
                " r.querySelector('code').textContent,"
                " (r.querySelector('[data-use]') || {dataset: {}}).dataset.use || null])"), 10)
            assert rows and all(code == use for code, use in rows), rows
            # What the Use button opens: the Settings window at this address.
            command = rows[0][0]
            driver.execute_script("location.hash = 'settings/tunnel.command=' + encodeURIComponent(arguments[0])", command)
            field = lambda: driver.execute_script(  # noqa: E731
                "const i = document.getElementById('f-tunnel-command');"
                "return i && [i.value, document.activeElement === i, document.getElementById('save-result').textContent,"
                " location.hash]")
            try:
                wait_for("the command filled in", lambda: (field() or [None])[0] == command, 10)
            except Exception:
                raise AssertionError(f"{field()} {driver.execute_script('return location.hash')}")
            value, focused, result, address = field()
            assert focused and "not saved yet" in result and address == "#settings/tunnel.command", field()
            saved = driver.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                " invoke('settings').then((s) => done((s.raw.tunnel || {}).command || null), (e) => done(String(e)));")
            assert saved != command, f"the guide saved it without asking: {saved!r}"
            driver.execute_script("location.hash = 'alerts'")
        check("a tunnel example's Use fills it in as Tunnel command, unsaved", tunnel_use_fills_settings)
    finally:
        try:
            driver.quit()
        except Exception:  # noqa: BLE001
            pass
        driver_proc.send_signal(signal.SIGTERM)
        try:
            driver_proc.wait(10)
        except subprocess.TimeoutExpired:
            driver_proc.kill()
        driver_log.close()
        subprocess.run(["pkill", "-f", str(APP)], check=False)
        # Gone before anything else starts the app: a second one would hand over to it.
        wait_for("the app to exit", lambda: subprocess.run(["pgrep", "-f", str(APP)], capture_output=True).returncode != 0, 20)


def process_tree_rss_kib(pid):
    """RSS of a process and all its descendants, in KiB."""
    total = 0
    children = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(p.name))
        except (OSError, IndexError, ValueError):
            continue
    stack = [pid]
    while stack:
        q = stack.pop()
        try:
            for line in Path(f"/proc/{q}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
        stack.extend(children.get(q, []))
    return total


def launch_app(work: Path, desktop: Desktop, name: str, extra=""):
    """Starts the app (no WebDriver) with a fresh data dir `<name>-data` and its log in
    `<name>-app.log`; returns it, a client of its receiver, and when it was started."""
    port = free_port()
    data = work / f"{name}-data"
    cfg = write_config(work, port, extra)
    receiver = Receiver(port, data)
    started = time.monotonic()
    app = subprocess.Popen([str(APP)], env=app_env(desktop, work, cfg, data),
                           stdout=open(work / f"{name}-app.log", "w"), stderr=subprocess.STDOUT)
    return app, receiver, started


def run_figures(work: Path, desktop: Desktop):
    """RSS, start-up times and POST -> Notify latency of the real app (no WebDriver)."""
    app, receiver, t0 = launch_app(work, desktop, "figures", "[notifications]\nmax_popups_per_minute = 1000\n")
    figures = {}
    try:
        wait_for("the receiver", receiver.up, 60, 0.02)
        figures["start_to_listening_ms"] = round((time.monotonic() - t0) * 1000)
        wait_for("the tray", desktop.menu, 60, 0.02)
        figures["start_to_tray_ms"] = round((time.monotonic() - t0) * 1000)
        time.sleep(3)
        figures["rss_idle_no_window_mib"] = round(process_tree_rss_kib(app.pid) / 1024, 1)
        desktop.click("Show alerts")
        wait_for("the Alerts window", lambda: subprocess.run(
            ["xdotool", "search", "--name", "Alertray: alerts"], capture_output=True).returncode == 0)
        time.sleep(3)
        figures["rss_alerts_window_mib"] = round(process_tree_rss_kib(app.pid) / 1024, 1)
        win = subprocess.run(["xdotool", "search", "--name", "Alertray: alerts"], capture_output=True, text=True).stdout.split()[0]
        # The user makes it smaller; closing it keeps that size on disk.
        subprocess.run(["xdotool", "windowsize", "--sync", win, "880", "590"], check=True, timeout=10)
        time.sleep(0.5)
        subprocess.run(["xdotool", "windowfocus", "--sync", win], check=False)

        def closed_by_ctrl_w():
            # Pressed again until the window goes: the page may not listen for keys yet.
            if subprocess.run(["xdotool", "search", "--name", "Alertray: alerts"], capture_output=True).returncode != 0:
                return True
            # The window may be going already: xdotool's BadWindow then is no failure.
            subprocess.run(["xdotool", "key", "--window", win, "ctrl+w"], check=False, stderr=subprocess.DEVNULL)
            subprocess.run(["xdotool", "key", "ctrl+w"], check=False, stderr=subprocess.DEVNULL)
            return False
        wait_for("the window to close", closed_by_ctrl_w, 20, 1.0)
        state_file = work / "xdg-config" / "dev.alertray.app" / ".window-state.json"
        wait_for("the window's size saved", lambda: state_file.exists()
                 and json.loads(state_file.read_text()).get("alerts", {}).get("width") == 880, 10)
        time.sleep(5)
        figures["rss_after_closing_mib"] = round(process_tree_rss_kib(app.pid) / 1024, 1)

        # POST -> Notify latency: watch Notify calls on the bus as they happen.
        mon = subprocess.Popen(["dbus-monitor", "--address", desktop.address,
                                "interface='org.freedesktop.Notifications',member='Notify'"],
                               stdout=subprocess.PIPE, text=True)
        seen = {}
        lock = threading.Condition()

        def reader():
            for line in mon.stdout:
                m = re.search(r'string "lat-(\d+|probe): load is Warning"', line)
                if m:
                    with lock:
                        seen[m.group(1) if m.group(1) == "probe" else int(m.group(1))] = time.monotonic()
                        lock.notify_all()
        threading.Thread(target=reader, daemon=True).start()

        def monitoring():
            # A popup of our own, until the monitor is seen to catch it.
            subprocess.run(["notify-send", "lat-probe: load is Warning"], env=desktop.env(), check=False)
            with lock:
                return lock.wait_for(lambda: "probe" in seen, timeout=1)
        wait_for("dbus-monitor to watch the bus", monitoring, 20)
        latencies = []
        n = 1000
        for i in range(n):
            body = json.dumps({
                "message": f"Raised to Warning, load, on lat-{i}",
                "node": {"id": f"lat-{i}", "hostname": f"lat-{i}"},
                "alert": {"name": "load", "state": {"status": "Warning", "value_str": "9"}, "transition_id": f"lat-t{i}"},
            }).encode()
            sent = time.monotonic()
            receiver.post(body)
            with lock:
                lock.wait_for(lambda: i in seen, timeout=10)
                if i in seen:
                    latencies.append((seen[i] - sent) * 1000)
            if i % 50 == 49:
                desktop.dunstctl("close-all")
        mon.terminate()
        latencies.sort()
        figures["notify_latency_count"] = len(latencies)
        figures["notify_latency_p50_ms"] = round(statistics.median(latencies), 1)
        figures["notify_latency_p99_ms"] = round(latencies[int(len(latencies) * 0.99) - 1], 1)

        # Quit from the tray, with the Alerts window open: the app ends, with exit code 0.
        desktop.click("Show alerts")
        wait_for("the Alerts window", lambda: subprocess.run(
            ["xdotool", "search", "--name", "Alertray: alerts"], capture_output=True).returncode == 0)
        # Opened again at the size it was closed at.
        win = subprocess.run(["xdotool", "search", "--name", "Alertray: alerts"], capture_output=True, text=True).stdout.split()[0]
        geometry = lambda: subprocess.run(["xdotool", "getwindowgeometry", win], capture_output=True, text=True).stdout  # noqa: E731
        try:
            wait_for("the window at its saved size", lambda: "Geometry: 880x590" in geometry(), 10)
        except AssertionError as e:
            raise AssertionError(f"{e}: {geometry()}") from None
        t_quit = time.monotonic()
        desktop.click("Quit Alertray")
        code = app.wait(30)
        figures["quit_ms"] = round((time.monotonic() - t_quit) * 1000)
        assert code == 0, f"Quit ended the app with {code}"
        # Quitting with the window open, as it was opened again, keeps its size too.
        saved = json.loads(state_file.read_text()).get("alerts", {})
        assert (saved.get("width"), saved.get("height")) == (880, 590), saved
    finally:
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(10)
            except subprocess.TimeoutExpired:
                app.kill()
    print("figures: " + json.dumps(figures), flush=True)
    assert figures.get("notify_latency_count") == 1000, figures
    return figures


def run_sigterm(work: Path, desktop: Desktop):
    """SIGTERM (a session ending) quits the app as the tray's Quit does, with exit code 0."""
    app, receiver, _ = launch_app(work, desktop, "sigterm")
    try:
        wait_for("the receiver", receiver.up, 60)
        wait_for("the tray", desktop.menu, 60)
        receiver.post(fixture("netdata-alert-critical.json"))
        app.send_signal(signal.SIGTERM)
        code = app.wait(20)
        assert code == 0, f"SIGTERM ended the app with {code}"
        log = (work / "sigterm-app.log").read_text()
        assert "asked to quit by a signal" in log, log[-2000:]
    finally:
        if app.poll() is None:
            app.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tauri-driver", default=shutil.which("tauri-driver") or str(Path.home() / ".cargo/bin/tauri-driver"))
    ap.add_argument("--figures", action="store_true", help="also measure RSS, start-up and latency")
    ap.add_argument("--screenshots", default=str(ROOT / "target" / "e2e-screenshots"),
                    help="where to save the windows' screenshots (the README's come from docs/screenshots)")
    args = ap.parse_args()
    if not os.environ.get("DISPLAY"):
        print("e2e: needs an X display (run it through ./dev test)", file=sys.stderr)
        return 2
    if not APP.exists():
        print(f"e2e: {APP} is missing: cargo build -p alertray-app", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="alertray-e2e-"))
    desktop = Desktop(work)
    try:
        run_ui_test(args, work, desktop)
        check("SIGTERM quits the app as Quit does", lambda: run_sigterm(work, desktop))
        if args.figures:
            check("figures", lambda: run_figures(work, desktop))
    finally:
        desktop.close()
    failed = [n for n, e in RESULTS if e]
    print(f"logs in {work}")
    print(f"e2e: {len(RESULTS) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
