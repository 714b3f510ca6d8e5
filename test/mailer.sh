#!/usr/bin/env bash
# bis-mailer end to end: a real SMTP server (aiosmtpd, writing a Maildir) and
# a webhook receiver (test/webhook_receiver.py) on 127.0.0.1, restocks made
# with the extension's API, and the mailer between them:
#   a. --once delivers every email and SMS of a restock, once, and acks them;
#   b. failures: SMTP down (retried), webhook 4xx (dead), 5xx (retried),
#      SMTP 5xx (dead), an email row without an address (suppressed, never
#      handed to the mailer);
#   c. a mailer killed with SIGKILL mid-batch: its rows stay claimed until the
#      lease runs out, then a second mailer delivers them (at least once);
#   d. the daemon: woken by NOTIFY, reconnects when its connection is killed,
#      and on SIGTERM finishes the row in hand, releases the rest, exits 0;
#   e. exit statuses: 2 for a bad option, 1 for an unreachable database.
#
# Runs against an existing server (PGHOST, PGPORT, PGUSER from the
# environment; a superuser, to set the queue's settings) in a database of its
# own, dropped at the end.  The mailer is $BIS_MAILER, else src/mailer/bis-mailer
# of the tree, else the one installed in pg_config --bindir.
set -euo pipefail

db=${BIS_MAILER_DB:-bis_mailer}
admin_db=${PGDATABASE:-postgres}
root=$(cd "$(dirname "$0")/.." && pwd)
py=/usr/bin/python3             # Debian's, with python3-aiosmtpd
if [ -n "${BIS_MAILER:-}" ]; then
    mailer=$BIS_MAILER
elif [ -x "$root/src/mailer/bis-mailer" ]; then
    mailer=$root/src/mailer/bis-mailer
else
    mailer=$(pg_config --bindir)/bis-mailer
fi
work=$(mktemp -d /tmp/bis-mailer-test.XXXXXX)
started=$(date +%s)
pids=()

cleanup() {
    local p
    for p in "${pids[@]}"; do
        kill -9 "$p" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    psql -X -q -d "$admin_db" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
    rm -rf "$work"
}
trap cleanup EXIT

q() { psql -X -q -At -v ON_ERROR_STOP=1 -d "$db" "$@"; }

passed=0
failed=0
check() {                       # check NAME DETAIL: passes when DETAIL is empty
    if [ -z "$2" ]; then
        echo "ok $1"
        passed=$((passed + 1))
    else
        echo "FAIL $1: $2"
        failed=$((failed + 1))
    fi
}
expect() {                      # expect NAME ACTUAL EXPECTED
    if [ "$2" = "$3" ]; then check "$1" ""; else check "$1" "got \"$2\", expected \"$3\""; fi
}
wait_for() {                    # wait_for SECONDS COMMAND...: until COMMAND succeeds
    local deadline=$(($(date +%s%N) / 1000000 + $1 * 1000))
    shift
    until "$@"; do
        [ $(($(date +%s%N) / 1000000)) -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }
free_port() {
    $py -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_open() { $py -c "import socket, sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; }
control() { echo "$1" >"$work/control.json"; }

# an SMTP server writing to $work/maildir; extra arguments go to aiosmtpd
start_smtpd() {
    smtp_port=$(free_port)
    $py -m aiosmtpd -n -l "127.0.0.1:$smtp_port" "$@" -c aiosmtpd.handlers.Mailbox "$work/maildir" \
        >>"$work/smtpd.log" 2>&1 &
    smtpd_pid=$!
    pids+=("$smtpd_pid")
    wait_for 10 port_open "$smtp_port" || { echo "mailer: aiosmtpd did not start" >&2; exit 1; }
}
stop_smtpd() {
    kill "$smtpd_pid"
    wait "$smtpd_pid" 2>/dev/null || true
}

# the mailer's options for this database and these servers (an array, not a
# function: a mailer started in the background must be $!, not a subshell)
mailer_args() {
    margs=(--dbname "dbname=$db" --smtp "smtp://127.0.0.1:$smtp_port"
           --from "Shop <noreply@shop.example>" --webhook "http://127.0.0.1:$hook_port/hook")
}

# count(*) of rows of SKU $1 with the condition $2
rows() { q -c "SELECT count(*) FROM addressed WHERE sku = '$1' AND ($2)"; }

# for wait_for, evaluated at each try: rows_eq SKU CONDITION N; hooks_ge SKU N
rows_eq() { [ "$(rows "$1" "$2")" = "$3" ]; }
hooks_ge() { [ "$(hooks_of "$1" | wc -l)" -ge "$2" ]; }
idle_after_claim() {
    [ "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
                 AND application_name = 'mailer-d' AND state = 'idle' AND query LIKE '%bis.claim%'")" = 1 ]
}

# the webhook calls, as JSON lines, for notifications of SKU $1
hooks_of() {
    $py - "$work/hooks.jsonl" "$1" <<'EOF'
import json, sys
try:
    lines = open(sys.argv[1]).read().splitlines()
except FileNotFoundError:
    lines = []
for line in lines:
    r = json.loads(line)
    try:
        sku = json.loads(r["body"])["payload"]["item"]["sku"]
    except (ValueError, KeyError, TypeError):
        sku = None
    if sku == sys.argv[2]:
        print(line)
EOF
}

echo "mailer: $mailer"
mkdir -p "$work/maildir"/{tmp,new,cur}
control '{}'
$py "$root/test/webhook_receiver.py" --log "$work/hooks.jsonl" --control "$work/control.json" \
    --port-file "$work/hook.port" 2>"$work/receiver.log" &
pids+=($!)
wait_for 10 test -s "$work/hook.port" || { echo "mailer: the webhook receiver did not start" >&2; exit 1; }
hook_port=$(cat "$work/hook.port")
start_smtpd

PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -d "$admin_db" \
    -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" \
    -c "ALTER DATABASE $db SET bis.retry_base_delay = '1h'"   # a retried row stays out of later scenarios
q -c "CREATE EXTENSION bis"
q >/dev/null <<'SQL'
-- the address each notification goes to now, by its channel
CREATE VIEW addressed AS
SELECT n.*, CASE n.channel WHEN 'email' THEN c.email WHEN 'sms' THEN c.phone END AS address
  FROM bis.notifications n JOIN bis.contacts c USING (contact_id);
SELECT bis.upsert_items('[
  {"sku": "A-1", "title": "Storm jacket – Ålesund edition", "url": "https://shop.example/p/a-1"},
  {"sku": "B-1", "title": "Rain boot", "url": "https://shop.example/p/b-1"},
  {"sku": "B-2", "title": "Rain hat", "url": "https://shop.example/p/b-2"},
  {"sku": "C-1", "title": "Wool socks", "url": "https://shop.example/p/c-1"},
  {"sku": "D-1", "title": "Down vest", "url": "https://shop.example/p/d-1"},
  {"sku": "D-2", "title": "Fleece", "url": "https://shop.example/p/d-2"},
  {"sku": "D-3", "title": "Gloves", "url": "https://shop.example/p/d-3"}]');
-- a: three by email, two by SMS
SELECT bis.upsert_contact('a' || i, email => 'a' || i || '@example.com') FROM generate_series(1, 3) i;
SELECT bis.upsert_contact('as' || i, phone => '+46 70 100 000' || i) FROM generate_series(1, 2) i;
SELECT bis.subscribe('a' || i, 'A-1') FROM generate_series(1, 3) i;
SELECT bis.subscribe('as' || i, 'A-1', channel => 'sms') FROM generate_series(1, 2) i;
-- b: two by email, one SMS the webhook refuses (404), one it cannot take now
-- (503), one by email without an address; B-2: one by email, refused by SMTP
SELECT bis.upsert_contact('b' || i, email => 'b' || i || '@example.com') FROM generate_series(1, 3) i;
SELECT bis.upsert_contact('b404', phone => '+46 70 400 0404'),
       bis.upsert_contact('b503', phone => '+46 70 500 0503'),
       bis.upsert_contact('bnone', email => 'gone@example.com');
SELECT bis.subscribe('b1', 'B-1'), bis.subscribe('b2', 'B-1'), bis.subscribe('bnone', 'B-1'),
       bis.subscribe('b404', 'B-1', channel => 'sms'), bis.subscribe('b503', 'B-1', channel => 'sms'),
       bis.subscribe('b3', 'B-2');
-- (bis.subscribe refuses an email subscription without an address; one lost later)
UPDATE bis.contacts SET email = NULL WHERE contact_id = 'bnone';
-- c: six by SMS
SELECT bis.upsert_contact('c' || i, phone => '+46 70 300 000' || i) FROM generate_series(1, 6) i;
SELECT bis.subscribe('c' || i, 'C-1', channel => 'sms') FROM generate_series(1, 6) i;
-- d: an email and an SMS; an SMS; four SMS
SELECT bis.upsert_contact('d1', email => 'd1@example.com'),
       bis.upsert_contact('d2', phone => '+46 70 400 0002');
SELECT bis.subscribe('d1', 'D-1'), bis.subscribe('d2', 'D-1', channel => 'sms'),
       bis.subscribe('d2', 'D-2', channel => 'sms');
SELECT bis.upsert_contact('d3' || i, phone => '+46 70 430 000' || i) FROM generate_series(1, 4) i;
SELECT bis.subscribe('d3' || i, 'D-3', channel => 'sms') FROM generate_series(1, 4) i;
SELECT bis.set_stock(sku, 0) FROM bis.items;
SQL

echo "== a. --once delivers a restock by email and SMS"
expect "a: the restock enqueues 5 notifications" "$(q -c "SELECT bis.set_stock('A-1', 5)")" 5
rc=0
mailer_args
"$mailer" "${margs[@]}" --once 2>"$work/a.log" || rc=$?
expect "a: bis-mailer --once exits 0" "$rc" 0
expect "a: every row is sent, after one attempt" \
    "$(rows A-1 "status = 'sent' AND attempts = 1 AND claimed_until IS NULL")" 5
expect "a: one log line per delivery" "$(grep -c ' sent (\(email\|sms\), attempt 1)$' "$work/a.log" || true)" 5
check "a: the log names no address and no message" \
    "$(grep -E '@example\.com|\+46|Storm|Ålesund' "$work/a.log" || true)"
check "a: each email in the Maildir: To, Message-ID, subject, text and HTML with the product" "$(
    q -F ' ' -c "SELECT id, address FROM addressed
                  WHERE sku = 'A-1' AND channel = 'email'" >"$work/a.emails"
    $py - "$work/maildir" "$work/a.emails" <<'EOF'
import email, email.policy, mailbox, sys
rows = dict((a, i) for i, a in (l.split() for l in open(sys.argv[2]).read().splitlines()))
msgs = [email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
        for m in mailbox.Maildir(sys.argv[1], create=False)]
problems = []
if len(msgs) != 3:
    problems.append("%d messages, expected 3" % len(msgs))
title, url = "Storm jacket – Ålesund edition", "https://shop.example/p/a-1"
for m in msgs:
    to = str(m["To"])
    if to not in rows:
        problems.append("a message to %s" % to)
        continue
    if m["Message-ID"] != "<bis.%s@shop.example>" % rows.pop(to):
        problems.append("Message-ID %s to %s" % (m["Message-ID"], to))
    if title not in str(m["Subject"]):
        problems.append("subject %r" % str(m["Subject"]))
    if m.get_content_type() != "multipart/alternative" or not m["Date"] or not m["MIME-Version"]:
        problems.append("headers %s" % dict(m.items()))
    text = m.get_body(("plain",))
    html = m.get_body(("html",))
    if text is None or title not in text.get_content() or url not in text.get_content():
        problems.append("text part to %s" % to)
    if html is None or 'href="%s"' % url not in html.get_content():
        problems.append("HTML part to %s" % to)
    if text is not None and text.get_content_charset() != "utf-8":
        problems.append("charset %s" % text.get_content_charset())
if rows:
    problems.append("no message to %s" % ", ".join(rows))
print("; ".join(problems))
EOF
)"
check "a: one webhook call per SMS: Idempotency-Key, JSON with id, address, body, payload" "$(
    q -F ' ' -c "SELECT id, address FROM addressed WHERE sku = 'A-1' AND channel = 'sms'" |
    $py -c '
import json, sys
want = {}
for l in sys.stdin.read().splitlines():
    i, a = l.split(" ", 1)
    want[i] = a
calls = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
problems = []
if len(calls) != len(want):
    problems.append("%d calls for %d SMS" % (len(calls), len(want)))
for c in calls:
    key = c["headers"].get("Idempotency-Key")
    body = json.loads(c["body"])
    if c["headers"].get("Content-Type") != "application/json":
        problems.append("Content-Type %s" % c["headers"].get("Content-Type"))
    if key not in want or str(body["id"]) != key or body["address"] != want[key] \
            or body["channel"] != "sms" or "Storm jacket" not in body["body"] \
            or body["payload"]["item"]["url"] != "https://shop.example/p/a-1":
        problems.append("call %s: %s" % (key, c["body"][:200]))
    want.pop(key, None)
if want:
    problems.append("no call for %s" % ", ".join(want))
print("; ".join(problems))' <(hooks_of A-1)
)"

echo "== b. failures: retried or dead, nothing lost"
stop_smtpd
control '{"by_address": {"+46 70 400 0404": 404, "+46 70 500 0503": 503}}'
expect "b: the restock enqueues 5 notifications" "$(q -c "SELECT bis.set_stock('B-1', 5)")" 5
rc=0
mailer_args
"$mailer" "${margs[@]}" --once 2>"$work/b.log" || rc=$?
expect "b: bis-mailer --once exits 0 with the SMTP server down" "$rc" 0
expect "b: SMTP down: both emails pending, attempts 1, last_error set" \
    "$(rows B-1 "channel = 'email' AND address IS NOT NULL AND status = 'pending'
                 AND attempts = 1 AND last_error LIKE 'SMTP%'")" 2
expect "b: webhook 404: dead, with the status and the answer in last_error" \
    "$(rows B-1 "address = '+46 70 400 0404' AND status = 'dead'
                 AND last_error LIKE 'webhook HTTP 404: {\"error\": \"test receiver answers 404\"}'")" 1
expect "b: webhook 503: pending, attempts 1" \
    "$(rows B-1 "address = '+46 70 500 0503' AND status = 'pending' AND attempts = 1
                 AND last_error LIKE 'webhook HTTP 503%'")" 1
expect "b: webhook 404: called once, not retried" \
    "$(hooks_of B-1 | grep -c '"Idempotency-Key": "'"$(q -c "SELECT id FROM addressed
        WHERE address = '+46 70 400 0404'")"'"' || true)" 1
expect "b: an email row whose contact has no address never reaches the mailer: suppressed" \
    "$(rows B-1 "channel = 'email' AND address IS NULL AND status = 'suppressed'
                 AND status_reason = 'no_address' AND attempts = 0 AND last_error IS NULL")" 1
expect "b: log lines say retry or dead" \
    "$(grep -c 'failed (email, attempt 1, will retry): SMTP' "$work/b.log" || true)/$(grep -c 'failed (sms, attempt 1, dead): webhook HTTP 404' "$work/b.log" || true)/$(grep -c 'failed (sms, attempt 1, will retry): webhook HTTP 503' "$work/b.log" || true)" 2/1/1
# an SMTP server that takes no message over 100 bytes: 552, permanent
start_smtpd -s 100
q -c "SELECT bis.set_stock('B-2', 5)" >/dev/null
rc=0
mailer_args
"$mailer" "${margs[@]}" --once 2>"$work/b2.log" || rc=$?
expect "b: an SMTP 5xx answer: exit 0, the row dead with the code" \
    "$rc $(rows B-2 "status = 'dead' AND attempts = 1 AND last_error LIKE 'SMTP 55%'")" "0 1"
stop_smtpd
start_smtpd

echo "== c. a mailer killed in the middle of a batch"
control '{"delay": 1}'
q -c "SELECT bis.set_stock('C-1', 5)" >/dev/null
mailer_args
"$mailer" "${margs[@]}" --worker mailer-c1 --lease 2 --poll 60 2>"$work/c1.log" &
c1=$!
pids+=("$c1")
# the second request arrived: the first is delivered and acked, the second in flight
wait_for 10 hooks_ge C-1 2 || true
{ kill -9 "$c1" && wait "$c1"; } 2>/dev/null || true
sent=$(rows C-1 "status = 'sent'")
held=$(rows C-1 "status = 'claimed' AND claimed_by = 'mailer-c1'")
expect "c: the killed mailer acked what it delivered; the rest stays claimed by it" \
    "$([ "$sent" -ge 1 ] && [ "$held" -ge 1 ] && echo "$((sent + held))")" 6
control '{}'
wait_for 10 rows_eq C-1 "status = 'claimed' AND claimed_until > now()" 0 || true
rc=0
"$mailer" "${margs[@]}" --once --worker mailer-c2 2>"$work/c2.log" || rc=$?
expect "c: after the lease, a second mailer delivers them: exit 0, all sent" \
    "$rc $(rows C-1 "status = 'sent'")" "0 6"
expect "c: the second mailer took over exactly the rows left claimed" \
    "$(rows C-1 "claimed_by = 'mailer-c2'")" "$held"
check "c: every SMS reached the receiver; only the one in flight at the kill twice, same key" "$(
    q -c "SELECT id FROM bis.notifications WHERE sku = 'C-1'" | $py -c '
import collections, json, sys
ids = set(sys.stdin.read().split())
calls = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
by_key = collections.defaultdict(list)
for c in calls:
    by_key[c["headers"].get("Idempotency-Key")].append(json.loads(c["body"]))
problems = []
if set(by_key) != ids:
    problems.append("keys %s, ids %s" % (sorted(by_key), sorted(ids)))
dups = {k: v for k, v in by_key.items() if len(v) > 1}
if len(dups) > 1 or any(len(v) > 2 for v in dups.values()):
    problems.append("duplicates beyond the one in flight: %s" % {k: len(v) for k, v in dups.items()})
for k, v in dups.items():
    if any(str(b["id"]) != k or b["address"] != v[0]["address"] for b in v):
        problems.append("duplicate %s differs" % k)
print("; ".join(problems))' <(hooks_of C-1)
)"

echo "== d. the daemon: NOTIFY, reconnection, SIGTERM"
"$mailer" "${margs[@]}" --worker mailer-d --poll 60 2>"$work/d.log" &
d=$!
pids+=("$d")
# past its first (empty) claim, waiting: only a NOTIFY can wake it within 60 s
wait_for 10 idle_after_claim || true
t0=$(now_ms)
q -c "SELECT bis.set_stock('D-1', 5)" >/dev/null
wait_for 5 rows_eq D-1 "status = 'sent'" 2 || true
elapsed=$(($(now_ms) - t0))
expect "d: a restock wakes the waiting mailer (--poll 60): both rows sent within 2 s" \
    "$(rows D-1 "status = 'sent'") $([ "$elapsed" -le 2000 ] && echo fast || echo "slow: $elapsed ms")" "2 fast"
q -c "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
       WHERE datname = current_database() AND application_name = 'mailer-d'" >/dev/null
sleep 0.2
q -c "SELECT bis.set_stock('D-2', 5)" >/dev/null
wait_for 10 rows_eq D-2 "status = 'sent'" 1 || true
expect "d: its connection killed, it reconnects, LISTENs again and delivers" \
    "$(rows D-2 "status = 'sent'") $(grep -c 'lost the database connection' "$work/d.log") $(grep -c 'reconnected' "$work/d.log")" "1 1 1"
control '{"delay": 1}'
q -c "SELECT bis.set_stock('D-3', 5)" >/dev/null
wait_for 10 hooks_ge D-3 1 || true
kill -TERM "$d"
t0=$(now_ms)
rc=0
wait "$d" || rc=$?
elapsed=$(($(now_ms) - t0))
expect "d: SIGTERM: it finishes the row in hand and exits 0 (within 3 s)" \
    "$rc $([ "$elapsed" -le 3000 ] && echo fast || echo "slow: $elapsed ms")" "0 fast"
expect "d: the row in hand is sent; the rest released: pending, attempts 0, unclaimed" \
    "$(rows D-3 "status = 'sent'")/$(rows D-3 "status = 'pending' AND attempts = 0 AND claimed_by IS NULL")/$(hooks_of D-3 | wc -l)" \
    "1/3/1"
expect "d: it logs the release" "$(grep -c 'released 3 of 3 claimed notifications' "$work/d.log" || true)" 1
control '{}'

echo "== e. exit statuses"
rc=0
"$mailer" --bogus >/dev/null 2>"$work/e.err" || rc=$?
expect "e: an unrecognized option: exit 2, with the hint" \
    "$rc $(grep -c 'Try "bis-mailer --help"' "$work/e.err")" "2 1"
rc=0
"$mailer" --dbname "dbname=$db" --webhook http://127.0.0.1:1/ --batch 0 >/dev/null 2>"$work/e.err" || rc=$?
expect "e: --batch 0: exit 2" "$rc $(grep -c -- '--batch must be in range 1..100000' "$work/e.err")" "2 1"
rc=0
"$mailer" --dbname "dbname=$db" >/dev/null 2>"$work/e.err" || rc=$?
expect "e: no transport: exit 2" "$rc $(grep -c 'no transport given' "$work/e.err")" "2 1"
rc=0
"$mailer" --help >"$work/e.out" 2>&1 || rc=$?
expect "e: --help: exit 0, usage" "$rc $(grep -c '^Usage:' "$work/e.out")" "0 1"
rc=0
"$mailer" --dbname 'host=/nonexistent' --webhook http://127.0.0.1:1/ --once >/dev/null 2>"$work/e.err" || rc=$?
expect "e: an unreachable database: exit 1, with a message" \
    "$rc $(grep -c 'could not connect to the database' "$work/e.err")" "1 1"

if [ "$failed" -ne 0 ]; then
    for f in a b b2 c1 c2 d; do
        echo "--- $f.log"
        cat "$work/$f.log" 2>/dev/null || true
    done
fi
echo "mailer: $passed passed, $failed failed ($(($(date +%s) - started)) s)"
[ "$failed" -eq 0 ]
