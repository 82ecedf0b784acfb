"""Scoring half of tests/conformance/secrets.sh (read its header for usage).

Runs each scanner over positives/, negatives/ and wrapped/ of the secrets corpus, counts a file
as found/flagged when the scanner reports any finding in it (the corpus README's rule), and
prints the tables. Never prints a secret: only file names, rule ids and line numbers.
"""

import collections
import csv
import json
import os
import subprocess
import sys
import time

ROOT = os.environ["ROOT"]
CORPUS = os.environ["CORPUS"]
OUT = os.environ["OUT"]
PEERS_DIR = os.environ["PEERS_DIR"]
BIN = os.environ["BIN"]
RULES_DIR = os.environ.get("RULES_DIR", "")
QUICK = os.environ.get("QUICK") == "1"
PEERS = os.environ.get("PEERS") == "1"
FAMILIES = [f for f in os.environ.get("FAMILIES", "").split(",") if f]
KINDS = ("positives", "negatives", "wrapped")
SOURCES = ("noseyparker", "gitleaks", "secretlint")


def load_manifest():
    rows = []
    with open(os.path.join(CORPUS, "manifest.tsv"), newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            rows.append(row)
    peers = {}
    pf = os.path.join(CORPUS, "peers_flagged.tsv")
    if os.path.exists(pf):
        with open(pf, newline="") as f:
            reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = next(reader)
            for r in reader:
                peers[r[0]] = [h for h, v in zip(header[1:], r[1:]) if v == "1"]
    return rows, peers


def positive_twins(rows):
    """Negatives whose text (surrounding whitespace aside) is also a positive of the corpus:
    one peer rule's negative that is another's positive (noseyparker's Slack and Vault rules
    swap theirs). A scanner that finds the positive flags its twin; the table counts the
    flagged negatives with and without them."""
    def text(r):
        try:
            with open(os.path.join(CORPUS, r["file"]), "rb") as f:
                return f.read().strip()
        except OSError:
            return None
    positives = {t for t in (text(r) for r in rows if r["kind"] == "positives") if t}
    return {r["file"] for r in rows if r["kind"] == "negatives" and text(r) in positives}


def rel(path, cwd):
    """Corpus-relative path of a finding's file."""
    p = path if os.path.isabs(path) else os.path.join(cwd, path)
    return os.path.relpath(os.path.realpath(p), CORPUS)


def run(cmd, cwd, ok_codes=(0, 1)):
    t = time.monotonic()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True)
    elapsed = time.monotonic() - t
    if proc.returncode not in ok_codes:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        msg = "\n  ".join(err[-8:]) or f"exit {proc.returncode}"
        raise RuntimeError(f"{cmd[0]} failed (exit {proc.returncode}):\n  {msg}")
    return proc.stdout, proc.stderr, elapsed


# ---- scanners: each returns {corpus-relative file: [detail, ...]} ----


def scan_opsbot():
    hits = collections.defaultdict(list)
    total = 0.0
    for kind in KINDS:
        cmd = [BIN, "scan", "--format", "json"]
        if RULES_DIR:
            cmd += ["--no-builtin-rules", "--rules-dir", RULES_DIR]
        cmd.append(os.path.join(CORPUS, kind))
        out, err, el = run(cmd, cwd=OUT)
        total += el
        for w in err.decode(errors="replace").splitlines():
            if "warning" in w:
                print(f"opsbot: {w}", file=sys.stderr)
        for f in json.loads(out or b"[]"):
            hits[rel(f["path"], OUT)].append(f"{f['rule_id']}:{f['line']}")
    return hits, total


def scan_secretlint():
    npm = os.path.join(PEERS_DIR, "npm")
    rc = os.path.join(npm, ".secretlintrc.json")
    with open(rc, "w") as f:
        json.dump({"rules": [{"id": "@secretlint/secretlint-rule-preset-recommend"}]}, f)
    hits = collections.defaultdict(list)
    total = 0.0
    for kind in KINDS:
        d = os.path.join(CORPUS, kind)
        outfile = os.path.join(OUT, f"secretlint-{kind}.json")
        cmd = [
            os.path.join(npm, "node_modules", ".bin", "secretlint"),
            "--secretlintrc", rc, "--format", "json", "--output", outfile,
            f"{d}/**/*", f"{d}/**/.*",
        ]
        _, _, el = run(cmd, cwd=npm)
        total += el
        with open(outfile) as f:
            text = f.read().strip()
        for entry in json.loads(text or "[]"):
            if entry.get("messages"):
                hits[rel(entry["filePath"], npm)] += [
                    str(m.get("ruleId")) for m in entry["messages"]
                ]
    return hits, total


def scan_detect_secrets():
    exe = os.path.join(PEERS_DIR, "venv", "bin", "detect-secrets")
    hits = collections.defaultdict(list)
    total = 0.0
    for kind in KINDS:
        d = os.path.join(CORPUS, kind)
        out, _, el = run([exe, "scan", "--all-files", "."], cwd=d, ok_codes=(0,))
        total += el
        for path, results in json.loads(out)["results"].items():
            if results:
                hits[rel(path, d)] += [r.get("type", "?") for r in results]
    return hits, total


def scan_kingfisher():
    exe = os.path.join(PEERS_DIR, "venv", "bin", "kingfisher")
    hits = collections.defaultdict(list)
    total = 0.0
    for kind in KINDS:
        d = os.path.join(CORPUS, kind)
        cmd = [exe, "scan", d, "--no-validate", "--no-dedup", "--git-history", "none",
               "--format", "jsonl", "--no-update-check"]
        out, _, el = run(cmd, cwd=OUT, ok_codes=(0, 1, 200, 205))
        total += el
        for line in out.decode(errors="replace").splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            obj = json.loads(line)
            path = find_path(obj)
            if path:
                rule = obj.get("rule", {})
                hits[rel(path, OUT)].append(rule.get("id", "?") if isinstance(rule, dict) else str(rule))
    return hits, total


def find_path(obj):
    """kingfisher's JSON has the file under finding.path (or a similar key): search for it."""
    if isinstance(obj, dict):
        for k in ("path", "file", "file_path"):
            v = obj.get(k)
            if isinstance(v, str) and v.startswith(CORPUS):
                return v
        for v in obj.values():
            p = find_path(v)
            if p:
                return p
    elif isinstance(obj, list):
        for v in obj:
            p = find_path(v)
            if p:
                return p
    return None


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=60)
        text = (out.stdout or out.stderr).decode(errors="replace").strip().splitlines()
        return text[0].split()[-1] if text else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ---- scoring ----


def score(rows, hits):
    s = {"pos": collections.Counter(), "pos_n": collections.Counter(),
         "neg": collections.Counter(), "neg_n": collections.Counter(),
         "bare": 0, "bare_n": 0, "wrapped": 0, "wrapped_n": 0}
    for r in rows:
        found = r["file"] in hits
        src = r["source"]
        if r["kind"] == "positives":
            s["pos_n"][src] += 1
            s["pos"][src] += found
            if r["bare_token"] == "1":
                s["bare_n"] += 1
                s["bare"] += found
        elif r["kind"] == "negatives":
            s["neg_n"][src] += 1
            s["neg"][src] += found
        elif r["kind"] == "wrapped":
            s["wrapped_n"] += 1
            s["wrapped"] += found
    return s


def pct(a, b):
    return f"{a} ({100.0 * a / b:.1f}%)" if b else "0"


def table(results, rows, twins):
    lines = []
    s0 = score(rows, {})
    n_neg = sum(s0["neg_n"].values())
    head = ["scanner"] + [f"{src} ({s0['pos_n'][src]})" for src in SOURCES]
    head.append(f"all positives ({sum(s0['pos_n'].values())})")
    neg_head = " / ".join(f"{src} ({s0['neg_n'][src]})" for src in SOURCES)
    head.append(f"negatives flagged: {neg_head} / all ({n_neg})")
    head.append(f"negatives flagged without the {len(twins)} that equal a positive ({n_neg - len(twins)})")
    head.append(f"bare tokens ({s0['bare_n']}) → wrapped")
    head.append("time (s)")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for name, (hits, elapsed) in results.items():
        s = score(rows, hits)
        cells = [name] + [pct(s["pos"][src], s["pos_n"][src]) for src in SOURCES]
        cells.append(pct(sum(s["pos"].values()), sum(s["pos_n"].values())))
        negs = " / ".join(str(s["neg"][src]) for src in SOURCES)
        tot = sum(s["neg"].values())
        cells.append(f"{negs} / {tot} ({100.0 * tot / max(1, sum(s['neg_n'].values())):.1f}%)")
        cells.append(pct(tot - len(twins & set(hits)), n_neg - len(twins)))
        cells.append(f"{s['bare']} → {s['wrapped']}")
        cells.append(f"{elapsed:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def family_table(rows, hits, only_missing):
    fam = collections.defaultdict(lambda: [0, 0, 0, 0])  # pos, found, neg, flagged
    for r in rows:
        f = fam[r["family"]]
        found = r["file"] in hits
        if r["kind"] == "positives":
            f[0] += 1
            f[1] += found
        elif r["kind"] == "negatives":
            f[2] += 1
            f[3] += found
    items = sorted(fam.items(), key=lambda kv: (-(kv[1][0] - kv[1][1]) - kv[1][3], kv[0]))
    lines = ["| family | positives found | negatives flagged |", "|---|---|---|"]
    shown = 0
    for name, (p, fd, n, fl) in items:
        if only_missing and fd == p and fl == 0:
            continue
        lines.append(f"| {name} | {fd}/{p} | {fl}/{n} |")
        shown += 1
    hidden = len(items) - shown
    if hidden:
        lines.append(f"| ({hidden} families complete and clean) | | |")
    return lines


def main():
    rows, peer_flags = load_manifest()
    if FAMILIES:
        rows = [r for r in rows if any(f.lower() in r["family"].lower() for f in FAMILIES)]
        if not rows:
            print(f"no corpus file in families {FAMILIES}")
            return 2
    results = collections.OrderedDict()
    label = "opsbot" + (f" (--rules-dir {os.path.relpath(RULES_DIR, ROOT)})" if RULES_DIR else "")
    try:
        results[label] = scan_opsbot()
    except RuntimeError as e:
        print(f"opsbot could not scan the corpus: {e}", file=sys.stderr)
        return 2
    if PEERS:
        npm = os.path.join(PEERS_DIR, "npm", "node_modules", ".bin")
        venv = os.path.join(PEERS_DIR, "venv", "bin")
        peers = [
            (f"kingfisher-bin {version([os.path.join(venv, 'kingfisher'), '--version'])}", scan_kingfisher),
            (f"detect-secrets {version([os.path.join(venv, 'detect-secrets'), '--version'])}", scan_detect_secrets),
            (f"secretlint {version([os.path.join(npm, 'secretlint'), '--version'])} + preset-recommend", scan_secretlint),
        ]
        for name, fn in peers:
            print(f"running {name}", file=sys.stderr)
            try:
                results[name] = fn()
            except (RuntimeError, OSError, ValueError) as e:
                print(f"{name}: not measured: {e}", file=sys.stderr)

    hits = results[label][0]
    md = []
    md.append(f"Secrets corpus: {CORPUS}" + (f" (families: {', '.join(FAMILIES)})" if FAMILIES else ""))
    md.append("")
    twins = positive_twins(rows)
    md += table(results, rows, twins)
    md.append("")
    if PEERS:
        md.append("gitleaks / betterleaks: not run (no registry package whose binary can be checked "
                  "against the upstream release here); see the corpus README for their figures.")
        md.append("")
    md += family_table(rows, hits, only_missing=QUICK)

    misses = [r for r in rows if r["kind"] in ("positives", "wrapped") and r["file"] not in hits]
    flagged = [r for r in rows if r["kind"] == "negatives" and r["file"] in hits]
    miss_path = os.path.join(OUT, "opsbot-misses.tsv")
    flag_path = os.path.join(OUT, "opsbot-flagged.tsv")
    with open(miss_path, "w") as f:
        f.write("file\tfamily\tpeer_rule_id\tfound_by_peers\n")
        for r in misses:
            f.write(f"{r['file']}\t{r['family']}\t{r['peer_rule_id']}\t"
                    f"{','.join(peer_flags.get(r['file'], [])) or '-'}\n")
    with open(flag_path, "w") as f:
        f.write("file\tfamily\tpeer_rule_id\topsbot_rules:line\tflagged_by_peers\tequals_a_positive\n")
        for r in flagged:
            f.write(f"{r['file']}\t{r['family']}\t{r['peer_rule_id']}\t"
                    f"{','.join(hits[r['file']])}\t{','.join(peer_flags.get(r['file'], [])) or '-'}\t"
                    f"{'yes' if r['file'] in twins else 'no'}\n")
    md.append("")
    md.append(f"misses ({len(misses)}, positives and wrapped): {miss_path}")
    md.append(f"flagged negatives ({len(flagged)}): {flag_path}")
    text = "\n".join(md)
    print(text)
    if not FAMILIES and not RULES_DIR:
        with open(os.path.join(OUT, "summary.md"), "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
