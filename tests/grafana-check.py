#!/usr/bin/env python3
"""Checks a Grafana dashboard against what portfwd's /metrics serves.

    tests/grafana-check.py DASHBOARD.json METRICS.txt [--prometheus URL]

METRICS.txt is the Prometheus text exposition (GET /metrics, or
`portfwdctl metrics`). Fails (exit 1, one line per problem naming the panel
and the name) if the dashboard is not valid JSON, has no panels, or a query
(a panel target's expr, a template variable's query, an annotation's expr)
names a portfwd_ metric the exposition does not serve, or names none at all.
A family written with no samples yet (a `# TYPE` line alone) counts as
served: a router panel is right before any rule maps a port.

With --prometheus URL, every query is also run there as an instant query
(Grafana's variables replaced by plain values), so a query Prometheus
cannot parse or evaluate fails too.

Standard library only: the test suites run it with the system's python3.
"""

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request

# A metric name as PromQL reads it; the look-behind keeps a name that merely
# ends in "portfwd_..." (a recording rule's job:portfwd_x:rate) from counting.
NAME_RE = re.compile(r"(?<![A-Za-z0-9_:])portfwd_[A-Za-z0-9_:]*")
# Quoted strings hold label values and regexes, never metric names to check.
STRING_RE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
SUFFIXES = ("_bucket", "_sum", "_count")


def exposition_names(text):
    """The names served: {name: type or None} from TYPE lines and samples."""
    served = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split()
            if len(parts) >= 4 and parts[1] == "TYPE":
                served[parts[2]] = parts[3]
            continue
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line)
        if m:
            served.setdefault(m.group(0), None)
    return served


def is_served(name, served):
    if name in served:
        return True
    # A histogram's or a summary's series before it has samples.
    for suffix in SUFFIXES:
        base = name[: -len(suffix)]
        if name.endswith(suffix) and served.get(base) in ("histogram", "summary"):
            return True
    return False


def expr_names(expr):
    return NAME_RE.findall(STRING_RE.sub('""', expr))


def walk_panels(panels):
    """Every panel, those inside rows (collapsed ones keep theirs) included."""
    for p in panels or []:
        if not isinstance(p, dict):
            continue
        yield p
        yield from walk_panels(p.get("panels"))


def panel_label(p):
    return 'panel "%s" (id %s)' % (p.get("title", ""), p.get("id", "?"))


def queries(dash):
    """(where, expr) for every PromQL query of the dashboard."""
    for p in walk_panels(dash.get("panels")):
        for t in p.get("targets") or []:
            if isinstance(t, dict):
                yield "%s, target %s" % (panel_label(p), t.get("refId", "?")), t.get("expr", "")
    for v in (dash.get("templating") or {}).get("list") or []:
        if v.get("type") != "query":
            continue
        q = v.get("query")
        if isinstance(q, dict):
            q = q.get("query", "")
        yield 'variable "%s"' % v.get("name", ""), q or ""
    for a in (dash.get("annotations") or {}).get("list") or []:
        if a.get("builtIn"):
            continue
        yield 'annotation "%s"' % a.get("name", ""), a.get("expr", "")


def plain_query(expr):
    """EXPR as Prometheus can run it: Grafana's variables given values."""
    m = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*", expr, re.S)
    if m:
        expr = m.group(1)  # label_values(SELECTOR, label): the selector is the query
    for var, value in (("__rate_interval", "1m"), ("__interval", "1m"), ("__range", "5m")):
        expr = expr.replace("${%s}" % var, value).replace("$" + var, value)
    return re.sub(r"\$\{?[A-Za-z_][A-Za-z0-9_]*\}?", ".*", expr)


def prometheus_error(url, expr):
    """None if Prometheus runs the query, else why not."""
    q = urllib.parse.urlencode({"query": plain_query(expr)})
    try:
        with urllib.request.urlopen("%s/api/v1/query?%s" % (url.rstrip("/"), q), timeout=10) as r:
            answer = json.load(r)
    except urllib.error.HTTPError as e:
        try:
            answer = json.load(e)
        except ValueError:
            return "HTTP %d" % e.code
    except (OSError, ValueError) as e:
        return str(e)
    if answer.get("status") != "success":
        return "%s: %s" % (answer.get("errorType", "error"), answer.get("error", ""))
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dashboard")
    ap.add_argument("metrics")
    ap.add_argument("--prometheus", metavar="URL", help="also run every query there")
    args = ap.parse_args()

    try:
        with open(args.dashboard, encoding="utf-8") as f:
            dash = json.load(f)
    except (OSError, ValueError) as e:
        print("%s: not a valid JSON dashboard: %s" % (args.dashboard, e))
        return 1
    try:
        with open(args.metrics, encoding="utf-8") as f:
            served = exposition_names(f.read())
    except OSError as e:
        print("%s: %s" % (args.metrics, e))
        return 1
    if not isinstance(dash, dict) or not list(walk_panels(dash.get("panels"))):
        print("%s: the dashboard has no panels" % args.dashboard)
        return 1

    problems = []
    n = 0
    for where, expr in queries(dash):
        n += 1
        names = expr_names(expr)
        if not names:
            problems.append("%s: the query names no portfwd_ metric: %r" % (where, expr))
        for name in names:
            if not is_served(name, served):
                problems.append("%s: %s is not served by %s" % (where, name, args.metrics))
        if args.prometheus and names:
            err = prometheus_error(args.prometheus, expr)
            if err:
                problems.append("%s: Prometheus refuses %r: %s" % (where, plain_query(expr), err))
    if n == 0:
        problems.append("%s: the dashboard has no queries" % args.dashboard)
    for p in problems:
        print("%s: %s" % (args.dashboard, p))
    if problems:
        return 1
    print("%s: %d queries, every portfwd_ name served by %s%s" %
          (args.dashboard, n, args.metrics, ", all run by Prometheus" if args.prometheus else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
