#!/usr/bin/env bash
# bis-mailer end to end: a real SMTP server (aiosmtpd, writing a Maildir) and
# a webhook receiver (test/webhook_receiver.py) on 127.0.0.1, restocks made
# with the extension's API, and the mailer between them:
#   a. --once delivers every email and SMS of a restock, once, and acks them;
#   b. failures: SMTP down (retried), webhook 4xx (dead), 5xx (retried),
#      SMTP 5xx (dead), an email row without an address (suppressed, never
#      handed to the mailer), an answer that is not UTF-8 (recorded);
#   c. a mailer killed with SIGKILL mid-batch: its rows stay claimed until the
#      lease runs out, then a second mailer delivers them (at least once);
#   d. the daemon: woken by NOTIFY, reconnects when its connection is killed,
#      and on SIGTERM finishes the row in hand, releases the rest, exits 0;
#   e. exit statuses: 2 for a bad option, 1 for an unreachable database;
#   f. SMTP over TLS: STARTTLS with a login and a CA given by --cacert, the
#      password from a file or BIS_SMTP_PASSWORD and never in ps, smtps://;
#   g. TLS or a login the mailer cannot give (530, a certificate that does not
#      verify, a refused password): rows stay pending, no attempt counted;
#   h. headers no subject can break: CR/LF and non-ASCII, folded lines; the
#      unsubscribe headers, and the token they carry used to unsubscribe (a
#      forged one refused);
#   i. mailers per channel: an email-only and an sms-only mailer side by side;
#   j. a configuration file, the command line winning, a bare "once", JSON
#      and text logs;
#   k. push: Web Push, FCM and APNs against receivers on loopback that check
#      signatures and decrypt payloads; tokens that are gone are removed,
#      busy answers retried;
#   l. operable: application_name, Prometheus metrics scraped after a
#      delivery, --version, the systemd unit checked by systemd-analyze;
#   m. lifecycle: a reminder reaches the SMTP server with its own subject, and
#      the SMS gateway's delivery callback is recorded with bis.record_event.
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
  {"sku": "B-3", "title": "Rain coat", "url": "https://shop.example/p/b-3"},
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
-- B-3: one SMS whose webhook answers with bytes that are not UTF-8
SELECT bis.upsert_contact('b500', phone => '+46 70 500 0500');
SELECT bis.subscribe('b500', 'B-3', channel => 'sms');
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
-- f: three emails over STARTTLS, one from the daemon, one over smtps
SELECT bis.upsert_items('[{"sku": "F-1", "title": "Trail shoe"}, {"sku": "F-2", "title": "Trail sock"},
                          {"sku": "F-3", "title": "Trail cap"}]');
SELECT bis.upsert_contact('f' || i, email => 'f' || i || '@example.com') FROM generate_series(1, 5) i;
SELECT bis.subscribe('f' || i, 'F-1') FROM generate_series(1, 3) i;
SELECT bis.subscribe('f4', 'F-2'), bis.subscribe('f5', 'F-3');
-- g: one email that each misconfigured mailer fails to send
SELECT bis.upsert_items('[{"sku": "G-1", "title": "Gaiters"}]');
SELECT bis.upsert_contact('g1', email => 'g1@example.com');
SELECT bis.subscribe('g1', 'G-1');
-- h: a title that tries to add a header, with non-ASCII text long enough to fold
SELECT bis.upsert_items(jsonb_build_array(jsonb_build_object('sku', 'H-1', 'title',
    E'Parka\r\nBcc: intruder@evil.example\r\n\r\nInjected body – Ålesund edition, ' || repeat('très chaud ', 12))));
SELECT bis.upsert_contact('h1', email => 'h1@example.com');
SELECT bis.subscribe('h1', 'H-1');
-- i: two emails and two SMS
SELECT bis.upsert_items('[{"sku": "I-1", "title": "Ice axe"}]');
SELECT bis.upsert_contact('i' || i, email => 'i' || i || '@example.com') FROM generate_series(1, 2) i;
SELECT bis.upsert_contact('is' || i, phone => '+46 70 900 000' || i) FROM generate_series(1, 2) i;
SELECT bis.subscribe('i' || i, 'I-1') FROM generate_series(1, 2) i;
SELECT bis.subscribe('is' || i, 'I-1', channel => 'sms') FROM generate_series(1, 2) i;
-- j, l: one email each
SELECT bis.upsert_items('[{"sku": "J-1", "title": "Jacket"}, {"sku": "L-1", "title": "Lantern"}]');
SELECT bis.upsert_contact('j1', email => 'j1@example.com'), bis.upsert_contact('l1', email => 'l1@example.com');
SELECT bis.subscribe('j1', 'J-1'), bis.subscribe('l1', 'L-1');
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
# Latin-1, an overlong sequence and a surrogate: kept as "?", or bis.fail() refuses
# the error and the row stays claimed (test/fuzz/corpus/http_answer found it)
control '{"status": 500, "body_hex": "46656c2070e5207365727665726e20f080989f20eda080"}'
q -c "SELECT bis.set_stock('B-3', 5)" >/dev/null
rc=0
"$mailer" "${margs[@]}" --once 2>"$work/b3.log" || rc=$?
expect "b: a webhook answer that is not UTF-8: exit 0, the row pending with the answer in last_error" \
    "$rc $(rows B-3 "status = 'pending' AND attempts = 1
                    AND last_error = 'webhook HTTP 500: Fel p? servern ???? ???'")" "0 1"
control '{}'
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


echo "== f. SMTP over TLS"
# a CA of the test's own and a certificate for 127.0.0.1 that it signed
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bis test CA" \
    -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$work/server.key" -out "$work/server.csr" 2>/dev/null
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
    -days 2 -out "$work/server.pem" -extfile <(echo "subjectAltName=IP:127.0.0.1") 2>/dev/null
password="s3cret-$RANDOM-$RANDOM"
(umask 077 && echo "$password" >"$work/smtp.pw")
# an SMTP server on 127.0.0.1 (test/smtp_server.py): TLS and AUTH as its arguments say
start_tls_smtpd() {
    tls_port=$(free_port)
    $py "$root/test/smtp_server.py" --port "$tls_port" --maildir "$work/tlsmail" \
        --log "$work/tls.jsonl" "$@" >>"$work/tls-smtpd.log" 2>&1 &
    tls_pid=$!
    pids+=("$tls_pid")
    wait_for 10 port_open "$tls_port" || { echo "mailer: smtp_server.py did not start" >&2; exit 1; }
}
stop_tls_smtpd() { kill "$tls_pid"; wait "$tls_pid" 2>/dev/null || true; }
tls_log() {                     # tls_log RCPT: how the server got the messages to RCPT
    $py -c '
import json, sys
try:
    lines = open(sys.argv[1]).read().splitlines()
except FileNotFoundError:
    lines = []
for l in lines:
    r = json.loads(l)
    if sys.argv[2] in r["rcpt"]:
        print("tls" if r["tls"] else "clear", r["auth"])' "$work/tls.jsonl" "$1" | sort | uniq -c | sed 's/^ *//'
}
start_tls_smtpd --starttls "$work/server.pem" "$work/server.key" --require-tls --auth shop "$work/smtp.pw"
tls_args=(--dbname "dbname=$db" --from "Shop <noreply@shop.example>" --cacert "$work/ca.pem"
          --smtp-user shop)
q -c "SELECT bis.set_stock('F-1', 5)" >/dev/null
rc=0
"$mailer" "${tls_args[@]}" --smtp "smtp://127.0.0.1:$tls_port" --smtp-password-file "$work/smtp.pw" \
    --once 2>"$work/f1.log" || rc=$?
expect "f: STARTTLS, the CA from --cacert, the password from a file: exit 0, 3 sent" \
    "$rc $(rows F-1 "status = 'sent'")" "0 3"
expect "f: the server got each over TLS, logged in as shop" \
    "$(for i in 1 2 3; do tls_log "f$i@example.com"; done | sort | uniq -c | sed 's/^ *//')" "3 1 tls shop"
# the daemon, with the password in the environment: ps shows no password
BIS_SMTP_PASSWORD=$password "$mailer" "${tls_args[@]}" --smtp "smtp://127.0.0.1:$tls_port" \
    --worker mailer-f --poll 60 2>"$work/f2.log" &
f=$!
pids+=("$f")
q -c "SELECT bis.set_stock('F-2', 5)" >/dev/null
wait_for 10 rows_eq F-2 "status = 'sent'" 1 || true
expect "f: BIS_SMTP_PASSWORD: the daemon delivers over TLS, logged in" \
    "$(rows F-2 "status = 'sent'") $(tls_log f4@example.com)" "1 1 tls shop"
check "f: the password is nowhere in the command line ps shows, nor in the log" \
    "$(tr '\0' ' ' <"/proc/$f/cmdline" | grep -F -- "$password"; grep -F -- "$password" "$work"/f*.log)"
kill -TERM "$f"
wait "$f" 2>/dev/null || true
stop_tls_smtpd
start_tls_smtpd --implicit-tls "$work/server.pem" "$work/server.key" --auth shop "$work/smtp.pw"
q -c "SELECT bis.set_stock('F-3', 5)" >/dev/null
rc=0
"$mailer" "${tls_args[@]}" --smtp "smtps://127.0.0.1:$tls_port" --smtp-password-file "$work/smtp.pw" \
    --once 2>"$work/f3.log" || rc=$?
expect "f: smtps://, TLS from the first byte: sent, over TLS, logged in" \
    "$rc $(rows F-3 "status = 'sent'") $(tls_log f5@example.com)" "0 1 1 tls shop"
stop_tls_smtpd
rc=0
"$mailer" --dbname "dbname=$db" --smtp "smtp://shop:$password@127.0.0.1:25" --from shop@shop.example \
    >/dev/null 2>"$work/e.err" || rc=$?
expect "f: a password in the --smtp URL is refused: exit 2, saying where it goes" \
    "$rc $(grep -c 'BIS_SMTP_PASSWORD' "$work/e.err")" "2 1"
rc=0
BIS_SMTP_PASSWORD=x "$mailer" --dbname "dbname=$db" --smtp smtp://127.0.0.1:25 --smtp-user shop \
    --smtp-tls off --from shop@shop.example >/dev/null 2>"$work/e.err" || rc=$?
expect "f: a login without TLS is refused: exit 2" \
    "$rc $(grep -c 'would send the password without TLS' "$work/e.err")" "2 1"

echo "== g. configuration errors leave rows pending, with no attempt counted"
# g_case NAME SERVER-ARGS... -- MAILER-ARGS...: the email of G-1, a mailer that cannot deliver it
g_case() {
    local name=$1 server=() rc=0
    shift
    while [ "$1" != "--" ]; do server+=("$1"); shift; done
    shift
    start_tls_smtpd "${server[@]}"
    "$mailer" --dbname "dbname=$db" --smtp "smtp://127.0.0.1:$tls_port" --from shop@shop.example \
        "$@" --once 2>"$work/g.log" || rc=$?
    expect "g: $name: exit 1, the row pending, no attempt, a configuration error in the log" \
        "$rc $(rows G-1 "status = 'pending' AND attempts = 0 AND claimed_by IS NULL AND last_error IS NULL") $(grep -c 'configuration error' "$work/g.log")" \
        "1 1 1"
    stop_tls_smtpd
}
echo wrong >"$work/wrong.pw"
q -c "SELECT bis.set_stock('G-1', 5)" >/dev/null
g_case "the server wants STARTTLS (530), the mailer has --smtp-tls off" \
    --starttls "$work/server.pem" "$work/server.key" --require-tls -- --smtp-tls off
g_case "a certificate that does not verify (no --cacert)" \
    --starttls "$work/server.pem" "$work/server.key" -- --smtp-tls require
g_case "a password the server refuses (535)" \
    --starttls "$work/server.pem" "$work/server.key" --auth shop "$work/smtp.pw" -- \
    --cacert "$work/ca.pem" --smtp-user shop --smtp-password-file "$work/wrong.pw"
# the daemon pauses the channel rather than trying again at each poll
start_tls_smtpd --starttls "$work/server.pem" "$work/server.key" --require-tls
"$mailer" --dbname "dbname=$db" --smtp "smtp://127.0.0.1:$tls_port" --from shop@shop.example \
    --smtp-tls off --worker mailer-g --poll 1 2>"$work/g2.log" &
g=$!
pids+=("$g")
wait_for 10 grep -q 'email pauses for 10 s' "$work/g2.log" || true
sleep 2.5
expect "g: the daemon pauses email for 10 s (--poll 1): one try, the row pending, no attempt" \
    "$(grep -c 'configuration error' "$work/g2.log") $(rows G-1 "status = 'pending' AND attempts = 0")" "1 1"
kill -TERM "$g"
wait "$g" 2>/dev/null || true
stop_tls_smtpd
check "g: no email got through" "$(tls_log g1@example.com)"

echo "== h. headers"
start_tls_smtpd
q -c "ALTER DATABASE $db SET bis.unsubscribe_url = 'https://shop.example/unsubscribe?t='" \
  -c "ALTER DATABASE $db SET bis.unsubscribe_mailto = 'unsubscribe@shop.example'"
q -c "SELECT bis.set_stock('H-1', 5)" >/dev/null
rc=0
"$mailer" --dbname "dbname=$db" --smtp "smtp://127.0.0.1:$tls_port" \
    --from "Bütik, Inc. <noreply@shop.example>" --once 2>"$work/h.log" || rc=$?
expect "h: exit 0, sent" "$rc $(rows H-1 "status = 'sent'")" "0 1"
check "h: CR/LF in a title adds no header; the subject is the title, encoded; lines folded" "$(
    $py - "$work/tlsmail" <<'EOF'
import email, email.policy, mailbox, sys
msgs = [m.as_bytes() for m in mailbox.Maildir(sys.argv[1], create=False)]
problems = []
msgs = [raw for raw in msgs if b"h1@example.com" in raw]
if len(msgs) != 1:
    problems.append("%d messages" % len(msgs))
for raw in msgs:
    raw = raw.replace(b"\r\n", b"\n")
    head = raw.split(b"\n\n", 1)[0]
    lines = head.split(b"\n")
    # over 78 characters only where nothing could be folded: one URI
    long = [l for l in lines if len(l) > 78 and b" " in l.strip()]
    if long:
        problems.append("header lines over 78 characters: %r" % long[:2])
    if any(l.lower().startswith(b"bcc:") for l in lines):
        problems.append("a Bcc header was injected")
    if any(b > 127 for b in head):
        problems.append("8-bit bytes in the header")
    m = email.message_from_bytes(raw, policy=email.policy.default)
    want = "Parka  Bcc: intruder@evil.example    Injected body – Ålesund edition, " + "très chaud " * 12
    subject = " ".join(str(m["Subject"]).split())
    if subject != " ".join((want + "is back in stock").split()):
        problems.append("subject %r" % subject[:140])
    if m["From"].addresses[0].display_name != "Bütik, Inc." or \
            m["From"].addresses[0].addr_spec != "noreply@shop.example":
        problems.append("From %r" % str(m["From"]))
    for h in ("Date", "Message-ID", "MIME-Version"):
        if not m[h]:
            problems.append("no " + h)
print("; ".join(problems))
EOF
)"
# the unsubscribe headers as the server received them, and the token in them
token=$($py - "$work/tlsmail" <<'EOF'
import email, email.policy, mailbox, re, sys
for msg in mailbox.Maildir(sys.argv[1], create=False):
    raw = msg.as_bytes()
    if b"h1@example.com" not in raw:
        continue
    m = email.message_from_bytes(raw, policy=email.policy.default)
    lu = " ".join(str(m["List-Unsubscribe"] or "").split())
    post = str(m["List-Unsubscribe-Post"] or "")
    https = re.match(r"^<https://shop\.example/unsubscribe\?t=([A-Za-z0-9_-]{35})>, "
                     r"<mailto:unsubscribe@shop\.example\?subject=unsubscribe%20\1>$", lu)
    if https and post == "List-Unsubscribe=One-Click":
        print(https.group(1))
    else:
        print("BAD List-Unsubscribe %r, List-Unsubscribe-Post %r" % (lu, post))
EOF
)
expect "h: List-Unsubscribe (https then mailto, one token) and List-Unsubscribe-Post" \
    "$(printf '%s\n' "$token" | grep -c '^[A-Za-z0-9_-]\{35\}$')" 1
expect "h: the token from the email unsubscribes, once" \
    "$(q -c "SELECT bis.unsubscribe_by_token('$token'), bis.unsubscribe_by_token('$token')")" "1|0"
expect "h: and withdraws consent for email" \
    "$(q -c "SELECT granted FROM bis.consents WHERE contact_id = 'h1' AND channel = 'email'")" f
forged=${token%?}$([ "${token: -1}" = A ] && echo B || echo A)
expect "h: a forged token is refused with 22023" \
    "$(q -v VERBOSITY=sqlstate -c "SELECT bis.unsubscribe_by_token('$forged')" 2>&1 | tr -d '\n')" \
    "ERROR:  22023"
q -c "ALTER DATABASE $db RESET bis.unsubscribe_url" -c "ALTER DATABASE $db RESET bis.unsubscribe_mailto"
stop_tls_smtpd

echo "== i. mailers per channel"
q -c "SELECT bis.set_stock('I-1', 5)" >/dev/null
rc=0
"$mailer" --dbname "dbname=$db" --smtp "smtp://127.0.0.1:$smtp_port" --from shop@shop.example \
    --worker mailer-email --once 2>"$work/i1.log" || rc=$?
expect "i: an email-only mailer sends the emails and leaves the SMS alone: pending, no attempt" \
    "$rc $(rows I-1 "channel = 'email' AND status = 'sent'") $(rows I-1 "channel = 'sms' AND status = 'pending' AND attempts = 0 AND claimed_by IS NULL")" \
    "0 2 2"
q -c "UPDATE bis.notifications SET status = 'pending', attempts = 0, sent_at = NULL, claimed_by = NULL
       WHERE sku = 'I-1'" >/dev/null
"$mailer" --dbname "dbname=$db" --smtp "smtp://127.0.0.1:$smtp_port" --from shop@shop.example \
    --worker mailer-email --poll 60 2>"$work/i2.log" &
i_email=$!
pids+=("$i_email")
"$mailer" --dbname "dbname=$db" --webhook "http://127.0.0.1:$hook_port/hook" \
    --worker mailer-sms --poll 60 2>"$work/i3.log" &
i_sms=$!
pids+=("$i_sms")
# both past their first claim, then woken by one NOTIFY
wait_for 10 rows_eq I-1 "status = 'sent'" 4 || true
expect "i: side by side, each mailer delivers its own channel and nothing is dead" \
    "$(rows I-1 "status = 'sent' AND (channel, claimed_by) IN (('email', 'mailer-email'), ('sms', 'mailer-sms'))")/$(rows I-1 "status = 'dead'")" \
    "4/0"
kill -TERM "$i_email" "$i_sms"
wait "$i_email" "$i_sms" 2>/dev/null || true

echo "== j. a configuration file, JSON logs"
cat >"$work/mailer.conf" <<CONF
# a comment, and a blank line

dbname = 'dbname=$db'
smtp = smtp://127.0.0.1:$smtp_port   # a comment after a value
from = 'Shop <noreply@shop.example>'
worker = from-the-file
log_format = json
once = on
CONF
q -c "SELECT bis.set_stock('J-1', 5)" >/dev/null
rc=0
"$mailer" --config "$work/mailer.conf" --worker from-the-command-line 2>"$work/j.log" || rc=$?
expect "j: options from the file, the command line winning: sent by from-the-command-line" \
    "$rc $(rows J-1 "status = 'sent' AND claimed_by = 'from-the-command-line'")" "0 1"
check "j: every log line is JSON with an ISO timestamp and a level, and names no address" "$(
    $py - "$work/j.log" <<'EOF'
import json, re, sys
problems = []
lines = open(sys.argv[1]).read().splitlines()
if len(lines) < 2:
    problems.append("%d lines" % len(lines))
for l in lines:
    try:
        r = json.loads(l)
    except ValueError:
        problems.append("not JSON: %r" % l)
        continue
    if not re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", r.get("time", "")) or \
            r.get("level") not in ("debug", "info", "warning", "error") or "@" in r["message"]:
        problems.append("line %r" % l)
print("; ".join(problems))
EOF
)"
check "j: text log lines start with an ISO timestamp and a level" \
    "$(grep -Ev '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3} [A-Z+0-9-]+ \[[0-9]+\] (debug|info|warning|error): ' "$work"/[abcd]*.log "$work"/[fhi]*.log)"
echo "bogus-setting = 1" >"$work/bad.conf"
rc=0
"$mailer" --config "$work/bad.conf" >/dev/null 2>"$work/e.err" || rc=$?
expect "j: an unrecognized setting: exit 2, naming the file and line" \
    "$rc $(grep -c 'unrecognized setting "bogus-setting" in configuration file ".*bad.conf" line 1' "$work/e.err")" "2 1"
# a name alone ends at the end of its line (test/fuzz/corpus/config found it did not)
printf "dbname = 'dbname=%s'\nsmtp = smtp://127.0.0.1:%s\nfrom = noreply@shop.example\nonce\n" \
    "$db" "$smtp_port" >"$work/bare.conf"
rc=0
"$mailer" --config "$work/bare.conf" >/dev/null 2>"$work/e.err" || rc=$?
expect "j: a setting without a value at the end of its line, once: on" "$rc" "0"

echo "== k. push: Web Push, FCM and APNs"
keys=$work/push
$py "$root/test/push_receiver.py" make-keys "$keys"
for mode in webpush fcm apns; do
    $py "$root/test/push_receiver.py" serve "$mode" "$keys" 2>"$work/$mode-receiver.log" &
    pids+=($!)
done
wait_for 10 test -s "$keys/webpush.port" -a -s "$keys/fcm.port" -a -s "$keys/apns.port" ||
    { echo "mailer: the push receivers did not start" >&2; cat "$work"/*-receiver.log; exit 1; }
wp_port=$(cat "$keys/webpush.port")
fcm_port=$(cat "$keys/fcm.port")
apns_port=$(cat "$keys/apns.port")
$py "$root/test/push_receiver.py" fcm-credentials "$keys" "http://127.0.0.1:$fcm_port/token"
# contacts: three browsers (ok, gone, busy); a phone with an FCM and an APNs
# token, tokens gone, tokens busy; a contact with no device at all
$py - "$keys/subscriptions.json" "$wp_port" >"$work/k.sql" <<'EOF'
import json, sys
subs = json.load(open(sys.argv[1]))
print("""SELECT bis.upsert_items('[{"sku": "K-1", "title": "Kayak", "url": "https://shop.example/p/k-1"}]');""")
for name, s in subs.items():
    sub = {"endpoint": "http://127.0.0.1:%s/sub/%s" % (sys.argv[2], name),
           "keys": {"p256dh": s["p256dh"], "auth": s["auth"]}}
    print("SELECT bis.upsert_contact('w-%s');" % name)
    print("SELECT bis.add_webpush_subscription('w-%s', '%s');" % (name, json.dumps(sub)))
    print("SELECT bis.subscribe('w-%s', 'K-1', channel => 'webpush');" % name)
print("""SELECT bis.upsert_contact(c) FROM unnest(ARRAY['p-ok', 'p-gone', 'p-busy', 'p-none']) c;
SELECT bis.add_push_token('p-ok', 'fcm', 'fcm-ok'), bis.add_push_token('p-ok', 'apns', repeat('ab', 32)),
       bis.add_push_token('p-gone', 'fcm', 'fcm-gone'), bis.add_push_token('p-gone', 'apns', repeat('0', 64)),
       bis.add_push_token('p-busy', 'fcm', 'fcm-busy'), bis.add_push_token('p-busy', 'apns', repeat('1', 64));
SELECT bis.subscribe(c, 'K-1', channel => 'push') FROM unnest(ARRAY['p-ok', 'p-gone', 'p-busy', 'p-none']) c;
SELECT bis.set_stock('K-1', 0);""")
EOF
q -f "$work/k.sql" >/dev/null
q -c "SELECT bis.set_stock('K-1', 5)" >/dev/null
push_args=(--vapid-key "$keys/vapid.pem" --vapid-subject mailto:ops@shop.example
           --fcm-credentials "$keys/fcm.json" --fcm-url "http://127.0.0.1:$fcm_port"
           --apns-key "$keys/apns.p8" --apns-key-id KEYID1234 --apns-team-id TEAMID1234
           --apns-topic shop.example.app --apns-url "http://127.0.0.1:$apns_port")
rc=0
"$mailer" --dbname "dbname=$db" "${push_args[@]}" --worker mailer-push --once 2>"$work/k.log" || rc=$?
status_of() { q -c "SELECT status || '/' || attempts FROM bis.notifications WHERE sku = 'K-1' AND contact_id = '$1'"; }
expect "k: exit 0; sent, dead (gone), pending (busy) by browser and by phone; no device: suppressed" \
    "$rc $(for c in w-ok w-gone w-busy p-ok p-gone p-busy p-none; do status_of $c; done | tr '\n' ' ')" \
    "0 sent/1 dead/1 pending/1 sent/1 dead/1 pending/1 suppressed/0 "
expect "k: the subscription and the tokens that are gone are removed, the others kept" \
    "$(q -c "SELECT string_agg(endpoint, ' ' ORDER BY endpoint) FROM bis.webpush_subscriptions" | sed 's|http://[^/]*/sub/||g') / $(q -c "SELECT string_agg(left(token, 8), ' ' ORDER BY token) FROM bis.push_tokens")" \
    "busy ok / 11111111 abababab fcm-busy fcm-ok"
check "k: every request passed the receivers' checks (JWT signatures, keys, decryption)" \
    "$(cat "$keys"/*.jsonl | grep '"error"')"
check "k: web push: the browser decrypts the title, body, url and id; Topic bis-ID" "$(
    $py - "$keys/webpush.jsonl" "$(q -c "SELECT id FROM bis.notifications WHERE contact_id = 'w-ok'")" <<'EOF'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1]) if '"/sub/ok"' in l]
want = {"id": int(sys.argv[2]), "title": "Back in stock", "body": "Kayak is back. Get it before it is gone.",
        "url": "https://shop.example/p/k-1"}
print("" if len(rs) == 1 and rs[0]["payload"] == want and rs[0]["topic"] == "bis-" + sys.argv[2]
      else "got %r" % rs)
EOF
)"
check "k: FCM: one access token, exchanged once; the message to each device, with title and body" "$(
    $py - "$keys/fcm.jsonl" <<'EOF'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
tokens = [r for r in rs if r.get("kind") == "token"]
sends = sorted(r["device"] for r in rs if r.get("kind") == "send")
ok = [r for r in rs if r.get("device") == "fcm-ok"]
problems = []
if len(tokens) != 1:
    problems.append("%d token exchanges" % len(tokens))
if sends != ["fcm-busy", "fcm-gone", "fcm-ok"]:
    problems.append("sends %r" % sends)
if not ok or ok[0]["notification"] != {"title": "Back in stock", "body": "Kayak is back. Get it before it is gone."} \
        or ok[0]["data"]["url"] != "https://shop.example/p/k-1":
    problems.append("message %r" % ok)
print("; ".join(problems))
EOF
)"
check "k: APNs: HTTP/2, the provider token verified; the alert to each device, apns-collapse-id bis-ID" "$(
    $py - "$keys/apns.jsonl" <<'EOF'
import json, sys
rs = [json.loads(l) for l in open(sys.argv[1])]
ok = [r for r in rs if r.get("device") == "ab" * 32]
problems = []
if sorted(r.get("status") for r in rs) != [200, 410, 503]:
    problems.append("answers %r" % [r.get("status") for r in rs])
if not ok or ok[0]["alert"]["body"] != "Kayak is back. Get it before it is gone." or \
        ok[0]["collapse_id"] != "bis-%s" % ok[0]["notification_id"]:
    problems.append("request %r" % ok)
print("; ".join(problems))
EOF
)"
check "k: the log names no token or endpoint" "$(grep -E 'fcm-ok|abababab|/sub/' "$work/k.log")"

echo "== l. operable: application_name, metrics, --version, the systemd unit"
metrics_port=$(free_port)
"$mailer" --dbname "dbname=$db" --smtp "smtp://127.0.0.1:$smtp_port" --from shop@shop.example \
    --worker mailer-l --poll 60 --metrics "127.0.0.1:$metrics_port" 2>"$work/l.log" &
l=$!
pids+=("$l")
wait_for 10 port_open "$metrics_port" || true
q -c "SELECT bis.set_stock('L-1', 5)" >/dev/null
wait_for 10 rows_eq L-1 "status = 'sent'" 1 || true
expect "l: pg_stat_activity shows the mailer by its worker name" \
    "$(q -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'mailer-l'")" 1
scrape() { $py -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "$1"; }
scrape "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.txt" 2>&1 || true
expect "l: /metrics after a delivery: deliveries by channel and outcome, the histogram, claims" \
    "$(grep -E '^bis_mailer_deliveries_total\{channel="email",outcome="sent"\} |^bis_mailer_delivery_seconds_count\{channel="email"\} |^bis_mailer_token_refreshes_total\{provider="fcm"\} ' "$work/metrics.txt" | tr '\n' ' ')$(grep -cE '^bis_mailer_claims_total [1-9]' "$work/metrics.txt")" \
    'bis_mailer_deliveries_total{channel="email",outcome="sent"} 1 bis_mailer_delivery_seconds_count{channel="email"} 1 bis_mailer_token_refreshes_total{provider="fcm"} 0 1'
check "l: the metrics are in the Prometheus text format" "$(
    grep -vE '^(# (HELP|TYPE) bis_mailer_[a-z_]+ .+|bis_mailer_[a-z_]+(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? [0-9.e+-]+)$' "$work/metrics.txt")"
kill -TERM "$l"
wait "$l" 2>/dev/null || true
expect "l: --version prints the extension's default_version" \
    "$("$mailer" --version)" "bis-mailer (bis) $(sed -n "s/^default_version = '\(.*\)'/\1/p" "$root/bis.control")"
unit=$(pg_config --docdir)/extension/bis-mailer/bis-mailer@.service
if [ -f "$unit" ]; then
    check "l: systemd-analyze verify accepts the unit make install put in $(dirname "$unit")" \
        "$(systemd-analyze verify "$unit" 2>&1)"
else
    check "l: make install puts the systemd unit in $(dirname "$unit")" "not found"
fi

echo "== m. lifecycle: reminders and delivery callbacks"
q >/dev/null <<'SQL'
SELECT bis.upsert_items('[{"sku": "M-1", "title": "Moccasin", "url": "https://shop.example/m-1"}]');
SELECT bis.upsert_contact('m1', email => 'm1@example.com'), bis.upsert_contact('m2', phone => '+46 70 600 0001');
SELECT bis.subscribe('m1', 'M-1'), bis.subscribe('m2', 'M-1', channel => 'sms');
SELECT bis.set_stock('M-1', 0), bis.set_stock('M-1', 3);
SQL
q -c "ALTER DATABASE $db SET bis.max_reminders = 1"
mailer_args
rc=0
"$mailer" "${margs[@]}" --once 2>"$work/m.log" || rc=$?
expect "m: the restock's email and SMS are sent, each followed by a reminder due a day later" \
    "$rc $(rows M-1 "status = 'sent'") $(q -c "SELECT count(*) FROM bis.notifications
             WHERE sku = 'M-1' AND kind = 'reminder' AND status = 'pending' AND available_at > now() + interval '23 hours'")" \
    "0 2 2"
q -c "UPDATE bis.notifications SET available_at = now() WHERE sku = 'M-1' AND kind = 'reminder'"
"$mailer" "${margs[@]}" --once 2>>"$work/m.log" || rc=$?
expect "m: the reminders are sent, and nothing follows them" \
    "$rc $(q -c "SELECT string_agg(kind || ':' || status, ' ' ORDER BY id) FROM bis.notifications WHERE sku = 'M-1'")" \
    "0 back_in_stock:sent back_in_stock:sent reminder:sent reminder:sent"
check "m: the reminder email reached the SMTP server with its own subject" "$(
    $py - "$work/maildir" <<'EOF'
import email, email.policy, mailbox, sys
subjects = sorted(str(m["Subject"]) for m in
                  (email.message_from_bytes(x.as_bytes(), policy=email.policy.default)
                   for x in mailbox.Maildir(sys.argv[1], create=False))
                  if str(m["To"]) == "m1@example.com")
if subjects != ["Moccasin is back in stock", "Still in stock: Moccasin"]:
    print("subjects to m1: %r" % subjects)
EOF
)"
# the SMS gateway's delivery callback, passed on by the shop's webhook handler
hook_id=$(hooks_of M-1 | $py -c 'import json, sys; print(json.loads(json.loads(sys.stdin.read().splitlines()[-1])["body"])["id"])')
expect "m: the delivery callback of the last SMS is recorded, once" \
    "$(q -c "SELECT bis.record_event($hook_id, 'delivered', provider_event_id => 'gw-$hook_id'),
                    bis.record_event($hook_id, 'delivered', provider_event_id => 'gw-$hook_id')")" "t|f"
expect "m: it shows in that notification's history, a reminder" \
    "$(q -c "SELECT kind, delivered_at IS NOT NULL FROM bis.notification_history WHERE notification_id = $hook_id")" \
    "reminder|t"
q -c "ALTER DATABASE $db RESET bis.max_reminders"

if [ "$failed" -ne 0 ]; then
    for f in a b b2 c1 c2 d f1 f2 f3 g g2 h i1 i2 i3 j k l m; do
        echo "--- $f.log"
        cat "$work/$f.log" 2>/dev/null || true
    done
fi
echo "mailer: $passed passed, $failed failed ($(($(date +%s) - started)) s)"
[ "$failed" -eq 0 ]
