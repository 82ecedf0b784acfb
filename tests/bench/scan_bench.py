#!/usr/bin/env python3
"""Harness behind tests/bench/scan.sh (run that script, not this file).

Builds the corpus (Python standard library sources + planted credentials + harmless
look-alikes), times each tool, scores recall / false positives, measures --staged and
peak memory, and prints one report.
"""
import glob
import json
import os
import random
import re
import shutil
import statistics
import string
import subprocess
import sys
import sysconfig
import time
import tomllib

ROOT = os.environ["ROOT"]
BENCH = os.environ["BENCH_DIR"]
RUNS = int(os.environ.get("RUNS", "5"))
SLOW_RUNS = int(os.environ.get("SLOW_RUNS", "3"))
CORPUS_MB = float(os.environ.get("CORPUS_MB", "12"))
OPSBOT = os.environ["OPSBOT"]
PEERS_DIR = os.environ.get("PEERS_DIR", os.path.expanduser("~/.cache/opsbot-peers"))


def find_tool(name, *candidates):
    """The first executable among `candidates`, else `name` on PATH, else None."""
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return shutil.which(name)


SECRETLINT = find_tool("secretlint", os.path.join(PEERS_DIR, "npm/node_modules/.bin/secretlint"),
                       os.path.join(BENCH, "npm/node_modules/.bin/secretlint"))
DETECT_SECRETS = find_tool("detect-secrets", os.path.join(PEERS_DIR, "venv/bin/detect-secrets"))
KINGFISHER = find_tool("kingfisher", os.path.join(PEERS_DIR, "venv/bin/kingfisher"))
if os.environ.get("SKIP_PEERS") == "1":  # opsbot and ripgrep only (before/after comparisons)
    SECRETLINT = DETECT_SECRETS = KINGFISHER = None
TARGETS = []  # (what, measured, target, unit, met)


def target(what, value, limit, unit):
    TARGETS.append((what, value, limit, unit, value <= limit))


def floor(what, value):
    """A ratio shown beside the targets, not one of them (ripgrep reading every byte)."""
    TARGETS.append((what, value, None, "x", None))
CORPUS = os.path.join(BENCH, "corpus")
PLANTED = os.path.join(CORPUS, "planted")

rng = random.Random(20240605)
A = string.ascii_letters + string.digits


def r(n, cs=A):
    return "".join(rng.choice(cs) for _ in range(n))


def hx(n):
    return r(n, "0123456789abcdef")


def b64(n):
    return r(n, A + "+/")


def url(n):
    return r(n, A + "_-")


def pem(first, lines=6):
    body = [first + b64(64 - len(first))] + [b64(64) for _ in range(lines - 1)] + [b64(40) + "=="]
    return "\n".join(body)


# ---------------------------------------------------------------- planted credentials
# Each entry: (file, text); a credential is the text between markers <<S>> and <<E>> lines.
def planted_files():
    creds = []  # (file, lines-of-text) — one credential per block

    def c(f, text):
        creds.append((f, text))

    uuid = lambda: f"{hx(8)}-{hx(4)}-{hx(4)}-{hx(4)}-{hx(12)}"
    c("config/settings.py", f'AWS_ACCESS_KEY_ID = "AKIA{r(16, string.ascii_uppercase + "234567")}"')
    c("deploy/.env", f"AWS_ACCESS_KEY_ID=ASIA{r(16, string.ascii_uppercase + '234567')}")
    c("deploy/.env", f"AWS_SECRET_ACCESS_KEY={b64(40)}")
    c("config/aws.json", f'{{"AccessKeyId": "AKIA{r(16, string.ascii_uppercase + "234567")}", "Region": "eu-west-1"}}')
    c("config/settings.py", f'GITHUB_TOKEN = "ghp_{r(36)}"')
    c("ci/release.sh", f"export GH_TOKEN=github_pat_{r(22)}_{r(59)}")
    c("ci/release.sh", f"curl -H 'Authorization: token gho_{r(36)}' https://api.github.com/user")
    c("ci/app.yml", f"installation_token: ghs_{r(36)}")
    c("ci/notify.py", f"SLACK_USER_TOKEN = 'xoxp-{r(12, string.digits)}-{r(12, string.digits)}-{r(13, string.digits)}-{hx(32)}'")
    c("ci/.gitlab-ci.yml", f"  GITLAB_TOKEN: glpat-{url(20)}")
    c("ci/notify.py", f"SLACK_BOT_TOKEN = 'xoxb-{r(12, string.digits)}-{r(13, string.digits)}-{r(24)}'")
    c("ci/notify.py", f"WEBHOOK = 'https://hooks.slack.com/services/T{r(10, string.ascii_uppercase + string.digits)}/B{r(10, string.ascii_uppercase + string.digits)}/{r(24)}'")
    c("billing/stripe_client.rb", f"Stripe.api_key = 'sk_live_{r(24)}'")
    c("billing/.env.production", f"STRIPE_RESTRICTED=rk_live_{r(99)}")
    c("web/maps.js", f"const MAPS_KEY = 'AIza{url(35)}';")
    c("web/oauth.json", f'{{"web": {{"client_id": "1234.apps.googleusercontent.com", "client_secret": "GOCSPX-{url(28)}"}}}}')
    c("keys/sa.json", "{\n" f'  "type": "service_account",\n  "project_id": "prod-42",\n  "private_key_id": "{hx(40)}",\n  "client_email": "ci@prod-42.iam.gserviceaccount.com"\n' "}")
    c("config/appsettings.json", f'"Storage": "DefaultEndpointsProtocol=https;AccountName=prodlogs;AccountKey={b64(86)}==;EndpointSuffix=core.windows.net"')
    c("deploy/.env", f"AZURE_CLIENT_SECRET={r(3)}8Q~{r(34)}")
    c("keys/id_rsa", "-----BEGIN RSA PRIVATE KEY-----\n" + pem("MIIEowIBAAKCAQEA") + "\n-----END RSA PRIVATE KEY-----")
    c("keys/ec.pem", "-----BEGIN EC PRIVATE KEY-----\n" + pem("MHcCAQEEI", 2) + "\n-----END EC PRIVATE KEY-----")
    c("keys/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----\n" + pem("b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ", 4) + "\n-----END OPENSSH PRIVATE KEY-----")
    c("keys/pgp.asc", "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\n" + pem("lQdGBF", 6) + "\n=" + b64(4) + "\n-----END PGP PRIVATE KEY BLOCK-----")
    c("keys/pkcs8.pem", "-----BEGIN PRIVATE KEY-----\n" + pem("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC") + "\n-----END PRIVATE KEY-----")
    c("keys/enc.pem", "-----BEGIN ENCRYPTED PRIVATE KEY-----\n" + pem("MIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQww") + "\n-----END ENCRYPTED PRIVATE KEY-----")
    c("web/.npmrc", f"//registry.npmjs.org/:_authToken=npm_{r(36)}")
    c("pkg/.pypirc", f"[pypi]\nusername = __token__\npassword = pypi-AgEIcHlwaS5vcmc{url(140)}")
    c("mail/send.py", f"sg = SendGridAPIClient('SG.{url(22)}.{url(43)}')")
    c("mail/.env", f"TWILIO_AUTH_TOKEN={hx(32)}")
    c("ai/client.py", f"client = OpenAI(api_key='sk-proj-{url(74)}T3BlbkFJ{url(74)}')")
    c("ai/.env", f"ANTHROPIC_API_KEY=sk-ant-api03-{url(93)}AA")
    c("shop/config.yml", f"shopify_token: shpat_{hx(32)}")
    c("infra/vault.env", f"VAULT_TOKEN=hvs.CAESI{url(90)}")
    c("infra/.terraformrc", f'credentials "app.terraform.io" {{\n  token = "{r(14)}.atlasv1.{url(67)}"\n}}')
    c("infra/do.tfvars", f'do_token = "dop_v1_{hx(64)}"')
    c("tools/linear.ts", f"const linear = new LinearClient({{ apiKey: 'lin_api_{r(40)}' }});")
    c("tools/postman.env", f"POSTMAN_API_KEY=PMAK-{hx(24)}-{hx(34)}")
    c("keys/age.txt", f"# created: 2024-01-01\nAGE-SECRET-KEY-1{r(58, 'QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L')}")
    c("ai/hf.py", f"login(token='hf_{r(34, string.ascii_letters)}')")
    c("data/databricks.cfg", f"[DEFAULT]\nhost = https://adb-1.azuredatabricks.net\ntoken = dapi{hx(32)}")
    c("infra/doppler.sh", f"export DOPPLER_TOKEN=dp.st.prd.{r(43)}")
    c("obs/grafana.env", f"GRAFANA_SA_TOKEN=glsa_{r(32)}_{hx(8)}")
    c("obs/sentry.properties", f"auth.token=sntryu_{hx(64)}")
    c("cloud/alibaba.py", f"ACCESS_KEY_ID = 'LTAI5t{r(18)}'")
    c("obs/newrelic.yml", f"  api_key: NRAK-{r(27, string.ascii_uppercase + string.digits)}")
    c("tools/jira.env", f"JIRA_API_TOKEN=ATATT3xFfGF0{url(172)}={r(8, '0123456789ABCDEF')}")
    c("bots/telegram.py", f"bot = Bot('{r(10, string.digits)}:AA{url(33)}')")
    c("bots/discord.js", f"const hook = 'https://discord.com/api/webhooks/{r(18, string.digits)}/{url(68)}';")
    c("mail/mailgun.php", f"$mg = Mailgun::create('key-{hx(32)}');")
    c("shop/square.rb", f"SQUARE_ACCESS_TOKEN = 'EAAA{url(60)}'")
    c("docker/config.json", "{\n  \"auths\": {\n    \"registry.internal.org\": {\n      \"auth\": \"" + b64(40) + "\"\n    }\n  }\n}")
    c("web/session.py", f"TOKEN = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJkZXBsb3kiLCJpYXQiOjE3MDAwMDAwMDB9.{url(43)}'")
    c("config/database.yml", f"  url: postgres://app:{r(16)}@db.prod.internal:5432/app")
    c("config/mongo.env", f"MONGO_URL=mongodb+srv://admin:{r(14)}@cluster0.ab1cd.mongodb.net/prod")
    c("config/mysql.ini", f"dsn = mysql://root:{r(14)}@10.1.2.3:3306/prod")
    c("config/redis.py", f"REDIS_URL = 'redis://:{r(20)}@cache.internal:6379/0'")
    c("config/jdbc.properties", f"db.url=jdbc:mysql://db.internal:3306/app?user=app&password={r(16)}")
    c("deploy/.env", f"DB_PASSWORD={r(10)}9!{r(5)}")
    c("app/db.py", f"conn = psycopg2.connect(host='db', user='app', password='{r(9)}#{r(6)}1')")
    c("ci/deploy.sh", f"curl -u deploy:{r(18)} https://artifacts.internal.org/upload")
    c("web/.htaccess.env", f"export API_TOKEN='{r(28)}'")
    c("infra/gitlab-runner.toml", f'  token = "glrt-{url(20)}"')
    c("pkg/nuget.config", f'<add key="ApiKey" value="oy2{r(43, string.ascii_lowercase + string.digits)}" />')
    c("ci/docker-login.sh", f"echo dckr_pat_{url(27)} | docker login -u ci --password-stdin")
    return creds


HARMLESS = [
    ("docs/aws.md", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE"),
    ("docs/aws.md", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("app/conf.py", "password = os.environ['DB_PASSWORD']"),
    ("app/conf.py", "api_key = '<YOUR_API_KEY>'"),
    ("app/conf.py", "token = '${GITHUB_TOKEN}'"),
    ("app/conf.py", "SECRET_KEY_NAME = 'django_secret_key'"),
    ("app/conf.py", "checksum = 'sha256:" + "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08'"),
    ("app/conf.py", "commit = 'e83c5163316f89bfbde7d9ab23ca2e25604af290'"),
    ("app/conf.py", "request_id = '3f2b8c1e-9a7d-4e2b-b1c4-5d6e7f8a9b0c'"),
    ("docs/setup.md", "DATABASE_URL=postgres://user:password@localhost:5432/app"),
    ("docs/setup.md", "export GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("docs/setup.md", "STRIPE_KEY=sk_test_xxxxxxxxxxxxxxxxxxxxxxxx"),
    ("web/index.html", '<script src="app.js" integrity="sha384-oqVuAfXRKap7fdgcCY5uykM6+R9GqQ8K/uxy9rx7HNQlGYl1kPzQho1wx4JwY8wC"></script>'),
    ("web/logo.css", ".logo{background:url(data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAABAAAAAQCAYAAAAf8/9hAAAABHNCSVQICAgIfAhkiAAAAAlwSFlzAAALEwAACxMBAJqcGAAAAB1JREFUOI1jYBgFo2AUjIJRMApGwSgYBaNgFAwNAA)}"),
    ("app/models.py", "password_hash = models.CharField(max_length=128)"),
    ("app/models.py", "secret = generate_secret(length=32)"),
    ("app/tests.py", "self.assertEqual(user.password, 'hunter2')"),
    ("infra/main.tf", 'password = var.db_password'),
    ("infra/main.tf", 'token    = data.vault_generic_secret.ci.data["token"]'),
    ("ci/workflow.yml", "  token: ${{ secrets.GITHUB_TOKEN }}"),
    ("ci/workflow.yml", "  key: ${{ runner.os }}-cargo-${{ hashFiles('**/Cargo.lock') }}"),
    ("docs/keys.md", "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----"),
    ("docs/keys.md", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGh2bW9ja2tleWZvcnRlc3Rpbmdvbmx5MTIzNDU2Nzg5MA deploy@ci"),
    ("web/package-lock.json", '"resolved": "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz", "integrity": "sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQgaukmDtvS6KFiEw8ZJzyp1xD+BrgL5fQQGT3JNO4KpkjA=="'),
    ("app/uuid.py", "NAMESPACE = uuid.UUID('6ba7b810-9dad-11d1-80b4-00c04fd430c8')"),
    ("app/crypto.py", "iv = bytes.fromhex('000102030405060708090a0b0c0d0e0f')"),
    ("docs/jwt.md", "Authorization: Bearer <token>"),
    ("app/conf.py", "PASSWORD_RESET_TIMEOUT = 259200"),
    ("app/conf.py", "AUTH_TOKEN_HEADER = 'X-Auth-Token'"),
    ("app/i18n.py", "msgid = 'password_reset_email_subject_line_2'"),
]


def build_corpus():
    if os.path.isdir(CORPUS):
        shutil.rmtree(CORPUS)
    os.makedirs(CORPUS)
    stdlib = sysconfig.get_paths()["stdlib"]
    files = sorted(glob.glob(os.path.join(stdlib, "**/*.py"), recursive=True))
    total, limit = 0, int(CORPUS_MB * 1024 * 1024)
    for f in files:
        if total >= limit:
            break
        rel = os.path.relpath(f, stdlib)
        dst = os.path.join(CORPUS, "src", rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(f, dst)
        total += os.path.getsize(f)
    # Planted credentials and harmless look-alikes, with their line ranges.
    planted, harmless = [], []
    texts = {}

    def add(rel, text, bucket):
        buf = texts.setdefault(rel, ["# planted fixture"])
        start = len(buf) + 1
        buf.extend(text.split("\n"))
        bucket.append((rel, start, len(buf)))
        buf.append("")

    for rel, text in planted_files():
        add(rel, text, planted)
    for rel, text in HARMLESS:
        add(rel, text, harmless)
    for rel, buf in texts.items():
        path = os.path.join(PLANTED, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as fh:
            fh.write("\n".join(buf) + "\n")
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(CORPUS) for f in fs)
    nfiles = sum(len(fs) for _, _, fs in os.walk(CORPUS))
    return planted, harmless, size, nfiles


def run(cmd, cwd=None, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return time.perf_counter() - t, p


def timed(cmd, n, cwd=None, ok=(0, 1)):
    times, last = [], None
    for _ in range(n):
        t, p = run(cmd, cwd=cwd)
        if p.returncode not in ok:
            sys.stderr.write(f"{cmd[0]} exited {p.returncode}: {p.stderr.decode()[:500]}\n")
        times.append(t)
        last = p
    return statistics.median(times), last


def peak_rss_mb(cmd, cwd=None):
    p = subprocess.run(["/usr/bin/time", "-f", "%M"] + cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = p.stderr.decode().strip().splitlines()[-1]
    return int(last) / 1024


def hits(findings, planted, harmless):
    """findings: set of (relpath under planted/, line)."""
    def covered(ranges):
        return sum(1 for (f, s, e) in ranges if any(ff == f and s <= ln <= e for (ff, ln) in findings))
    return covered(planted), covered(harmless)


def rel_planted(path):
    path = os.path.normpath(path)
    marker = os.sep + "planted" + os.sep
    if marker in path:
        return path.split(marker, 1)[1]
    if path.startswith("planted" + os.sep):
        return path[len("planted" + os.sep):]
    return None


def parse_opsbot(out):
    found, other = set(), 0
    for f in json.loads(out or "[]"):
        rel = rel_planted(f["path"])
        if rel is None:
            other += 1
        else:
            found.add((rel, f["line"]))
    return found, other


def parse_secretlint(out):
    found, other = set(), 0
    for res in json.loads(out or "[]"):
        rel = rel_planted(res["filePath"])
        for m in res.get("messages", []):
            if rel is None:
                other += 1
            else:
                found.add((rel, m["loc"]["start"]["line"]))
    return found, other


def find_key(obj, keys, pred=lambda v: True):
    """First value under one of `keys` anywhere in a JSON tree."""
    if isinstance(obj, dict):
        for k in keys:
            if k in obj and pred(obj[k]):
                return obj[k]
        obj = list(obj.values())
    if isinstance(obj, list):
        for v in obj:
            got = find_key(v, keys, pred)
            if got is not None:
                return got
    return None


def parse_kingfisher(out):
    found, other = set(), 0
    for line in out.splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        obj = json.loads(line)
        path = find_key(obj, ("path", "file", "file_path"), lambda v: isinstance(v, str) and CORPUS in v)
        ln = find_key(obj, ("line", "line_number", "start_line"), lambda v: isinstance(v, int))
        if path is None:
            continue
        rel = rel_planted(path)
        if rel is None:
            other += 1
        elif ln is not None:
            found.add((rel, ln))
    return found, other


def parse_detect_secrets(out):
    found, other = set(), 0
    for path, items in json.loads(out)["results"].items():
        rel = rel_planted(path)
        for it in items:
            if rel is None:
                other += 1
            else:
                found.add((rel, it["line_number"]))
    return found, other


def keywords():
    kws = set()
    for f in glob.glob(os.path.join(ROOT, "rules", "*.toml")):
        with open(f, "rb") as fh:
            for rule in tomllib.load(fh).get("rules", []):
                kws.update(k.lower() for k in rule["keywords"])
    # rg reads one pattern per line: a keyword holding a line break (`"\nion_"`: a token at
    # the start of a line) is given as its pieces, never as an empty line, which would match
    # every line and time rg on other work than opsbot's.
    patterns = sorted({piece for k in kws for piece in k.split("\n") if piece})
    path = os.path.join(BENCH, "keywords.txt")
    with open(path, "w") as fh:
        fh.write("\n".join(patterns) + "\n")
    return path, len(kws)


def staged_bench():
    repo = os.path.join(BENCH, "staged-repo")
    env = dict(os.environ, GIT_AUTHOR_NAME="b", GIT_AUTHOR_EMAIL="b@b", GIT_COMMITTER_NAME="b",
               GIT_COMMITTER_EMAIL="b@b", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    marker = os.path.join(repo, ".git", "bench-ready")  # outside the work tree: never staged
    if not os.path.exists(marker):
        shutil.rmtree(repo, ignore_errors=True)
        os.makedirs(repo)
        subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
        for i in range(50_000):
            d = os.path.join(repo, f"pkg{i // 1000:02d}", f"mod{(i // 50) % 20:02d}")
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, f"file{i}.py"), "w") as fh:
                fh.write(f"# module {i}\n\ndef f{i}(x):\n    return x + {i}\n")
        subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "init"], cwd=repo, env=env, check=True)
        open(marker, "w").close()
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=repo, env=env, check=True)
    # A 100-line change over 10 files, one line of which is a secret.
    for k in range(10):
        path = os.path.join(repo, "pkg07", f"mod{k:02d}", f"file{7000 + k * 50}.py")
        with open(path, "a") as fh:
            for j in range(10):
                if k == 3 and j == 5:
                    fh.write("TOKEN = 'ghp_" + r(36) + "'\n")
                else:
                    fh.write(f"value_{j} = compute({k}, {j})  # change {j}\n")
    subprocess.run(["git", "add", "-A"], cwd=repo, env=env, check=True)
    times = []
    for _ in range(max(RUNS, 10)):
        t, p = run([OPSBOT, "scan", "--staged", "--format", "json"], cwd=repo, env=env)
        assert p.returncode == 1 and len(json.loads(p.stdout)) == 1, p.stderr.decode()
        times.append(t)
    files = int(subprocess.run(["git", "ls-files"], cwd=repo, env=env, capture_output=True).stdout.count(b"\n"))
    return statistics.median(times), min(times), files


def big_tree():
    """Sustained throughput on a large source tree (default: the cargo registry sources)."""
    tree = os.environ.get("BIG_TREE") or next(iter(glob.glob(os.path.expanduser("~/.cargo/registry/src/*"))), None)
    if not tree or not os.path.isdir(tree):
        print("\n(no large tree for the sustained-throughput run; set BIG_TREE)")
        return None
    size = 0
    nfiles = 0
    for d, _, fs in os.walk(tree):
        for f in fs:
            try:
                size += os.path.getsize(os.path.join(d, f))
                nfiles += 1
            except OSError:
                pass
    mb = size / 1e6
    kw_path = os.path.join(BENCH, "keywords.txt")
    subprocess.run(["rg", "-c", "zzzz", tree], stdout=subprocess.DEVNULL)  # warm the cache
    n = max(3, RUNS // 2)
    rg_t, _ = timed(["rg", "--hidden", "--no-ignore", "-i", "-F", "-f", kw_path, "-c", tree], n)
    rgc_t, _ = timed(["rg", "--hidden", "--no-ignore", "-F", "-f", kw_path, "-c", tree], n)
    rga_t, _ = timed(["rg", "--hidden", "--no-ignore", "-c", "", tree], n)
    o2, _ = timed([OPSBOT, "scan", "--no-ignore", "--max-file-size", "0", "--format", "json", tree], n)
    o1, _ = timed([OPSBOT, "scan", "-j", "1", "--no-ignore", "--max-file-size", "0", "--format", "json", tree], n)
    rss = peak_rss_mb([OPSBOT, "scan", "--no-ignore", "--max-file-size", "0", "--format", "json", tree])
    print(f"\nlarge tree {tree}: {nfiles} files, {mb:.0f} MB")
    print(f"  ripgrep (keywords)   {rg_t:7.3f} s {mb / rg_t:7.0f} MB/s")
    print(f"  ripgrep -F case-sens {rgc_t:7.3f} s {mb / rgc_t:7.0f} MB/s")
    print(f"  ripgrep every line   {rga_t:7.3f} s {mb / rga_t:7.0f} MB/s  (rg -c '': reads every byte, the floor)")
    print(f"  opsbot scan (2 thr)  {o2:7.3f} s {mb / o2:7.0f} MB/s  = {o2 / rg_t:.2f}x ripgrep's time, {o2 / rga_t:.2f}x the floor; peak RSS {rss:.1f} MB")
    print(f"  opsbot scan -j1      {o1:7.3f} s {mb / o1:7.0f} MB/s")
    target(f"large tree ({mb:.0f} MB): time vs rg -i -F keywords", o2 / rg_t, 1.5, "x")
    target(f"large tree ({mb:.0f} MB): time vs rg -F (case-sens.)", o2 / rgc_t, 1.5, "x")
    floor(f"large tree ({mb:.0f} MB): time vs rg -c '' (floor)", o2 / rga_t)
    return rss


def big_line_file():
    path = os.path.join(BENCH, "big", "bundle.min.js")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        chunk = "var a=function(b){return b+1};if(x&&y){z.push('v')}" * 1000
        with open(path, "w") as fh:
            while fh.tell() < 100 * 1024 * 1024:
                fh.write(chunk)
            fh.write(";t='ghp_" + r(36) + "';")
    return path


def dense_files():
    """Keyword-dense inputs of 64 MB: every rule keyword in turn, one per line, (a) next to
    values that no rule accepts, (b) next to 40-character random values (many findings)."""
    kws = set()
    for f in glob.glob(os.path.join(ROOT, "rules", "*.toml")):
        with open(f, "rb") as fh:
            for rule in tomllib.load(fh).get("rules", []):
                kws.update(rule["keywords"])
    kws = sorted(kws)
    vals = [r(40) for _ in range(64)]
    out = []
    for name, line in (("dense-keywords.txt", lambda i, k: f"{k}_name = x  # {kws[(i * 7) % len(kws)]}\n"),
                       ("dense-findings.txt", lambda i, k: f'{k}_key = "{k}{vals[i % 64]}" # {kws[(i * 7) % len(kws)]}\n')):
        path = os.path.join(BENCH, "big", name)
        if not os.path.exists(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as fh:
                i = 0
                while fh.tell() < 64 * 1024 * 1024:
                    fh.write(line(i, kws[i % len(kws)]))
                    i += 1
        out.append(path)
    return out, len(kws)


def main():
    planted, harmless, size, nfiles = build_corpus()
    mb = size / 1e6
    kw_path, nkw = keywords()
    print(f"corpus: {nfiles} files, {mb:.1f} MB (Python stdlib sources + {len(planted)} planted credentials + {len(harmless)} harmless look-alikes); runs: {RUNS} (slow tools {SLOW_RUNS})")
    # Warm the page cache.
    subprocess.run(["rg", "-c", "zzzz", CORPUS], stdout=subprocess.DEVNULL)

    results = {}
    # Same file set for both: every file, hidden ones included, no ignore files.
    rg_t, _ = timed(["rg", "--hidden", "--no-ignore", "-i", "-F", "-f", kw_path, "-c", CORPUS], RUNS)
    results["ripgrep (keywords only)"] = (rg_t, None)
    # The same literals matched case-sensitively: less work than the scanner's ASCII
    # case-insensitive prefilter, but ripgrep's fast literal path (a lower bound).
    rgc_t, _ = timed(["rg", "--hidden", "--no-ignore", "-F", "-f", kw_path, "-c", CORPUS], RUNS)
    results["ripgrep -F case-sensitive"] = (rgc_t, None)
    # Every line a match (`rg -c ''`): ripgrep reading every byte, the floor of any search.
    rga_t, _ = timed(["rg", "--hidden", "--no-ignore", "-c", "", CORPUS], RUNS)
    results["ripgrep every line"] = (rga_t, None)
    ops_t, p = timed([OPSBOT, "scan", "--no-ignore", CORPUS, "--format", "json"], RUNS)
    results["opsbot scan"] = (ops_t, parse_opsbot(p.stdout.decode()))
    ops1_t, _ = timed([OPSBOT, "scan", "--no-ignore", "-j", "1", CORPUS, "--format", "json"], RUNS)
    results["opsbot scan -j1"] = (ops1_t, None)

    missing = []
    if SECRETLINT:
        rc = os.path.join(BENCH, "secretlintrc.json")
        with open(rc, "w") as fh:
            json.dump({"rules": [{"id": "@secretlint/secretlint-rule-preset-recommend"}]}, fh)
        sl_out = os.path.join(BENCH, "secretlint.json")
        sl_t, p = timed([SECRETLINT, "--secretlintrc", rc, "--format", "json", "--no-color", "--output", sl_out, CORPUS + "/**/*"],
                        SLOW_RUNS, cwd=os.path.dirname(os.path.dirname(os.path.dirname(SECRETLINT))))
        with open(sl_out) as fh:
            results["secretlint (recommend)"] = (sl_t, parse_secretlint(fh.read()))
    else:
        missing.append("secretlint")
    if DETECT_SECRETS:
        # detect-secrets ignores absolute paths outside the working directory: run it from BENCH.
        ds_t, p = timed([DETECT_SECRETS, "scan", "--all-files", os.path.basename(CORPUS)], SLOW_RUNS, cwd=BENCH, ok=(0,))
        results["detect-secrets"] = (ds_t, parse_detect_secrets(p.stdout.decode()))
    else:
        missing.append("detect-secrets")
    if KINGFISHER:
        kf_t, p = timed([KINGFISHER, "scan", CORPUS, "--no-validate", "--no-dedup", "--git-history", "none",
                         "--format", "jsonl", "--no-update-check"], SLOW_RUNS, cwd=BENCH, ok=(0, 1, 200, 205))
        results["kingfisher"] = (kf_t, parse_kingfisher(p.stdout.decode(errors="replace")))
    else:
        missing.append("kingfisher")

    print()
    print(f"{'tool':<26}{'median s':>10}{'MB/s':>10}{'vs rg':>9}{'vs opsbot':>11}{'recall':>10}{'FP (look-alikes)':>18}{'other findings':>16}")
    for name, (t, parsed) in results.items():
        if parsed is None:
            recall = fp = other = "-"
        else:
            found, other = parsed
            got, fps = hits(found, planted, harmless)
            recall, fp = f"{got}/{len(planted)}", f"{fps}/{len(harmless)}"
        print(f"{name:<26}{t:>10.3f}{mb / t:>10.0f}{t / rg_t:>8.2f}x{t / ops_t:>10.2f}x{recall:>10}{fp:>18}{other:>16}")
    if missing:
        print(f"(not installed, not compared: {', '.join(missing)}; INSTALL_PEERS=1 installs them)")
    print(f"\nopsbot vs ripgrep: {ops_t / rg_t:.2f}x ripgrep's time (target <= 1.5x; rg searched {nkw} keywords, case-insensitive, same files)")
    print(f"opsbot vs ripgrep case-sensitive: {ops_t / rgc_t:.2f}x")
    target(f"corpus ({mb:.0f} MB): time vs rg -i -F keywords", ops_t / rg_t, 1.5, "x")
    target(f"corpus ({mb:.0f} MB): time vs rg -F keywords (case-sens.)", ops_t / rgc_t, 1.5, "x")
    floor(f"corpus ({mb:.0f} MB): time vs rg -c '' (floor)", ops_t / rga_t)
    print(f"opsbot throughput: {mb / ops_t:.0f} MB/s on {os.cpu_count()} cores ({mb / ops1_t:.0f} MB/s on 1 core)")

    rss_tree = big_tree()

    med, best, files = staged_bench()
    print(f"\n--staged, 100-line change in a {files}-file repo: median {med * 1000:.1f} ms, best {best * 1000:.1f} ms (target <= 50 ms, start-up included)")
    target(f"--staged, 100 lines in {files} files: median", med * 1000, 50, "ms")

    rss_corpus = peak_rss_mb([OPSBOT, "scan", CORPUS, "--format", "json"])
    target("peak RSS, corpus", rss_corpus, 100, "MB")
    if rss_tree is not None:
        target("peak RSS, large tree", rss_tree, 100, "MB")
    big = big_line_file()
    t, p = run([OPSBOT, "scan", big, "--max-file-size", "0", "--format", "json"])
    rss_big = peak_rss_mb([OPSBOT, "scan", big, "--max-file-size", "0", "--format", "json"])
    print(f"peak RSS: {rss_corpus:.1f} MB on the corpus; {rss_big:.1f} MB on a 100 MB single-line file "
          f"(scanned in {t:.2f} s, {len(json.loads(p.stdout))} finding)")
    target("peak RSS, 100 MB single line", rss_big, 100, "MB")
    dense, nkw_all = dense_files()
    for path in dense:
        cmd = [OPSBOT, "scan", path, "--max-file-size", "0", "--format", "json"]
        t, p = run(cmd)
        n = len(json.loads(p.stdout or b"[]"))
        rss = peak_rss_mb(cmd)
        print(f"peak RSS: {rss:.1f} MB on {os.path.basename(path)} (64 MB, all {nkw_all} keywords in turn; "
              f"{t:.2f} s, {n} findings)")
        target(f"peak RSS, {os.path.basename(path)} ({n} findings)", rss, 100, "MB")

    print("\nissue 11 targets (medians; ratios are opsbot's time / ripgrep's):")
    print(f"{'what':<56}{'measured':>12}{'target':>10}  met")
    for what, value, limit, unit, met in TARGETS:
        if limit is None:
            print(f"{what:<56}{value:>10.2f} {unit:<2}{'(no target)':>12}")
            continue
        print(f"{what:<56}{value:>10.2f} {unit:<2}{'<= ' + format(limit, 'g'):>8} {unit:<2} {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
