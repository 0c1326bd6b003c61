"""The live page GET /ui (server/ui.html) in a real browser: headless Chromium from
Debian, driven by python3-selenium and chromium-driver, opens the page of two pods of
the simulated StatefulSet through the real `kubectl proxy` in front of kubia-sim's API
server, as a reader of the chapter would, and watches the cluster change:

  a pod deleted goes missing and comes back; data POSTed through the form of kubia-0's
  page appear on kubia-2's; a fourth replica gets a fourth card; the page whose pod is
  deleted says its stream broke and that it reconnected.

A screenshot is taken at each step (KUBIA_UI_SCREENSHOTS names the directory; by default
one of pytest's temporary directories, printed at the end). docs/images/ holds a real
run's. The headers and bytes of the page: test/integration/test_ui.py.
"""

import os
import re
import shutil
import subprocess

import pytest
from conftest import wait_until
from test_apiserver import Kubectl, start_proxy

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:  # test/setup.sh installs python3-selenium
    webdriver = None

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
KUBECTL = shutil.which("kubectl")
SIZE = (1000, 700)  # the screenshots' size, as docs/images has them
BINARY = b"\xff\xfe\x00 not UTF-8 \x80!"  # 16 bytes, not UTF-8
WAIT = 30  # seconds any one change may take to reach the page (the machine is shared)


def state(pid):
    """A process's state letter, None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


class Browser:
    """One headless Chromium with a throwaway profile, and the pages it has open by name."""

    def __init__(self, profile, shots):
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        # as root Chromium needs --no-sandbox; the window is the screenshots' size
        for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                  "--disable-gpu", "--no-first-run", "--user-data-dir=" + profile,
                  "--window-size=%d,%d" % SIZE, "--hide-scrollbars"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.service = Service(DRIVER)
        self.driver = webdriver.Chrome(service=self.service, options=opts)
        self.driver.set_page_load_timeout(WAIT)
        self.shots = shots
        self.tabs = {}
        self.step = 0

    def open(self, name, url):
        if self.tabs:
            self.driver.switch_to.new_window("tab")
        self.driver.get(url)
        self.tabs[name] = self.driver.current_window_handle

    def on(self, name):
        self.driver.switch_to.window(self.tabs[name])
        return self

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def until(self, what, pred, timeout=WAIT):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(
                lambda d: pred())
        except TimeoutException:
            raise AssertionError("within %ds: %s; the page says:\n%s" % (
                timeout, what, self.text("cards") + "\n" + " ".join(map(str, self.status()))))

    # The page redraws its cards on each event: each read is one script, so that it
    # never holds an element the next event replaces.
    def cards(self):
        """{pod: its card's state (ok, missing, error)} as the page shows them now."""
        return dict(self.js("return Array.from(document.querySelectorAll('#cards .card'))"
                            ".map(c => [c.dataset.name, c.dataset.state])"))

    def card_text(self, pod):
        return self.js("var c = document.querySelector('#cards .card[data-name=\"' + "
                       "arguments[0] + '\"]'); return c ? c.innerText : null", pod)

    def text(self, id):
        return self.js("return document.getElementById(arguments[0]).innerText", id)

    def status(self):
        """The stream's state (live, broken, connecting), what the page says of it, and
        how many times it broke."""
        return self.js("var e = document.getElementById('status');"
                       "return [e.className, e.innerText, Number(e.dataset.breaks || 0)]")

    def shoot(self, what):
        self.step += 1
        path = os.path.join(self.shots, "%02d-%s.png" % (self.step, what))
        # the window may have a frame around the page: the page is SIZE
        self.driver.set_window_size(*SIZE)
        inner = self.js("return [window.innerWidth, window.innerHeight]")
        self.driver.set_window_size(2 * SIZE[0] - inner[0], 2 * SIZE[1] - inner[1])
        assert self.driver.save_screenshot(path), path
        return path

    def script_errors(self):
        """What the console says the page's script did wrong, or the policy refused (a
        broken stream's failed requests are logged too, and are not the page's fault)."""
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE" and
                ("Uncaught" in e["message"] or "Content Security Policy" in e["message"])]

    def quit(self):
        pid = self.service.process.pid
        kids = children(pid)
        try:
            self.driver.quit()
        finally:
            self.service.stop()
        # Chromium's own processes end with it
        for p in kids:
            wait_until(lambda: state(p) in (None, "Z"), 10, "chromium process %d to end" % p,
                       interval=0.1)


@pytest.fixture
def shots(tmp_path_factory):
    d = os.environ.get("KUBIA_UI_SCREENSHOTS") or str(tmp_path_factory.mktemp("ui-shots"))
    os.makedirs(d, exist_ok=True)
    yield d
    print("screenshots in %s" % d)


@pytest.fixture
def browser(sim, tmp_path, shots):
    """Asks for sim first: the browser is gone before the cluster is taken down."""
    if webdriver is None:
        pytest.skip("python3-selenium is not installed (bash test/setup.sh)")
    for tool in (CHROMIUM, DRIVER):
        if not os.access(tool, os.X_OK):
            pytest.skip("%s is not installed (bash test/setup.sh)" % tool)
    try:
        b = Browser(str(tmp_path / "chromium-profile"), shots)
    except WebDriverException as e:
        pytest.fail("headless Chromium did not start: %s" % e)
    try:
        yield b
    finally:
        b.quit()


@pytest.fixture
def proxy(sim, tmp_path):
    """kubectl proxy on a free port, for the cluster kubia-sim brings up."""
    if KUBECTL is None:
        pytest.skip("kubectl is not installed")
    holder = {}

    def start():
        holder["p"], holder["port"] = start_proxy(Kubectl(sim, KUBECTL, tmp_path))
        return holder["port"]
    yield start
    if "p" in holder:
        holder["p"].terminate()
        holder["p"].wait(10)


def test_the_live_page_through_kubectl_proxy(sim, tmp_path, browser, proxy):
    sim.up(3)
    k = Kubectl(sim, KUBECTL, tmp_path)
    port = proxy()
    base = "http://127.0.0.1:%d/api/v1/namespaces/%s" % (port, sim.ns)
    # both forms of the page's path: what ./ means differs, what the page asks does not
    browser.open("kubia-0", base + "/pods/kubia-0/proxy/ui")
    browser.open("kubia-2", base + "/pods/kubia-2/proxy/ui/")
    three = {"kubia-0": "ok", "kubia-1": "ok", "kubia-2": "ok"}
    for pod in ("kubia-0", "kubia-2"):
        b = browser.on(pod)
        b.until("three pods, each in DNS", lambda: b.cards() == three)
        b.until("live", lambda: b.status()[0] == "live")
        assert b.text("served-by") == pod and b.text("pod") == pod
        assert "this pod" in b.card_text(pod)
    b = browser.on("kubia-0")
    srv = b.text("srv-summary")
    # cluster DNS answers the named port's form (_http._tcp.kubia...) for a headless Service
    assert re.fullmatch(r"(_http\._tcp\.)?kubia\.%s\.svc\.cluster\.local, TTL \d+ s"
                        % sim.ns, srv), srv
    assert len(b.driver.find_elements(By.CSS_SELECTOR, "#srv-records tbody tr")) == 3
    b.shoot("three-pods")

    # a pod deleted: its card goes missing while it is away, and comes back
    deleting = subprocess.Popen([KUBECTL, "delete", "po", "kubia-1", "--wait=false"],
                                env=k.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    b.until("kubia-1 missing", lambda: b.cards().get("kubia-1") == "missing")
    assert "not ready (not in DNS)" in b.card_text("kubia-1")
    b.shoot("kubia-1-deleted")
    deleting.communicate(timeout=60)
    assert deleting.returncode == 0
    b.until("kubia-1 back", lambda: b.cards() == three, timeout=90)
    b.shoot("kubia-1-back")

    # data POSTed through the form of kubia-0's page appear on kubia-2's page
    greeting = "Hey there! <b>not bold</b> from kubia-0's page"
    b.driver.find_element(By.ID, "post-data").send_keys(greeting)
    b.driver.find_element(By.CSS_SELECTOR, "#post button").click()
    b.until("the POST answered",
            lambda: b.text("post-result") == "200: Data stored on pod kubia-0")
    b2 = browser.on("kubia-2")
    b2.until("kubia-0's data on kubia-2's page",
             lambda: greeting in (b2.card_text("kubia-0") or ""))
    # the data are text, never markup
    assert b2.driver.find_elements(By.CSS_SELECTOR, "#cards b") == []
    b2.shoot("posted-on-kubia-0-seen-by-kubia-2")
    # bytes that are not UTF-8 (the view carries them as base64): said to be binary
    assert sim.post_pod("kubia-1", BINARY).status == 200
    b2.until("kubia-1's bytes shown as binary", lambda: "binary, 16 bytes, not UTF-8 (base64 "
             "//4AIG5vdCBVVEYtOCCAIQ==): \ufffd\ufffd" in (b2.card_text("kubia-1") or ""))
    assert " not UTF-8 \ufffd!" in b2.card_text("kubia-1")

    # four replicas: a fourth card
    k("scale", "statefulset", "kubia", "--replicas=4")
    four = dict(three, **{"kubia-3": "ok"})
    b2.until("four pods", lambda: b2.cards() == four)
    b = browser.on("kubia-0")
    b.until("four pods on kubia-0's page", lambda: b.cards() == four)
    b.shoot("scaled-to-four")

    # the pod that serves the page is deleted and returns: the page says the stream
    # broke, then that it reconnected, and shows the cluster again. (kubia-sim's proxy
    # also cuts streams when the endpoints change: breaks count from here.)
    breaks = b.status()[2]
    k("delete", "po", "kubia-0", "--wait=false")
    # each state read once: the page may move on between two reads
    st = b.until("the stream broken", lambda: (s := b.status())[0] == "broken" and s)
    assert st[2] > breaks and "stream broke at" in st[1], st
    b.shoot("kubia-0-deleted-stream-broken")
    st = b.until("reconnected", lambda: (s := b.status())[0] == "live" and s, timeout=90)
    assert "reconnected at" in st[1], st
    b.until("four pods again", lambda: b.cards() == four)
    assert greeting in b.card_text("kubia-0")  # its data outlived it
    b.shoot("kubia-0-deleted-and-reconnected")

    # through the Service's proxy path: the page, and its stream, from whichever pod
    # kubia-public sends each request to
    browser.open("service", base + "/services/kubia-public/proxy/ui")
    b = browser.on("service")
    b.until("four pods through the Service", lambda: b.cards() == four)
    b.until("live through the Service", lambda: b.status()[0] == "live")
    assert b.text("served-by") in four
    for name in ("kubia-0", "kubia-2", "service"):
        assert browser.on(name).script_errors() == [], name
