-- The queue protocol: claim, ack, fail, release, requeue; leases, time to live, backoff
\set SHOW_CONTEXT never
SELECT bis.upsert_items('[{"sku": "A-1", "title": "Anorak", "url": "https://shop.example/a-1"}]');
SELECT bis.upsert_contact('c' || n, email => 'c' || n || '@example.com', phone => '+4670000000' || n)
  FROM generate_series(1, 6) n;
SELECT bis.subscribe('c' || n, 'A-1', channel => CASE WHEN n % 2 = 0 THEN 'sms' ELSE 'email' END)
  FROM generate_series(1, 6) n;
SELECT bis.set_stock('A-1', 0), bis.set_stock('A-1', 5);
CREATE VIEW queue AS
SELECT id, channel, status, attempts, claimed_by, claimed_until IS NOT NULL AS leased,
       available_at > now() AS later, last_error, sent_at IS NOT NULL AS sent
  FROM bis.notifications ORDER BY id;

-- a claim hands out due rows, oldest first, with their messages built now, leased
SELECT id, kind, channel, address, attempts, claimed_until > now() AS leased, subject, body
  FROM bis.claim('mailer-1', max_rows => 2);
-- another mailer gets the next ones, never the same
SELECT id, attempts FROM bis.claim('mailer-2', 3, lease => '1 minute');
SELECT * FROM queue;

-- ack: claimed rows become sent; twice changes nothing; another worker's rows are not touched
SELECT bis.ack(ARRAY[1, 2], worker => 'mailer-1') AS acked;
SELECT bis.ack(ARRAY[1, 2], worker => 'mailer-1') AS acked_again;
SELECT bis.ack(ARRAY[3], worker => 'mailer-1') AS not_mine;
SELECT * FROM queue WHERE id <= 3;

-- fail with retry: pending again, later, with the error; without retry: dead
SELECT bis.fail(3, '451 try again later', worker => 'mailer-2') AS retried;
SELECT bis.fail(4, '550 no such user', retry => false, worker => 'mailer-2') AS gave_up;
-- failing a row one does not hold, or one that is done, changes nothing
SELECT bis.fail(5, 'timeout', worker => 'mailer-1') AS not_mine, bis.fail(1, 'late', true) AS already_sent;
SELECT * FROM queue WHERE id BETWEEN 3 AND 5;
-- a retried row is not due until its backoff has passed: only 6 is
SELECT id FROM bis.claim('mailer-3');

-- release: rows go back at once and the claim does not count as an attempt
SELECT bis.release(ARRAY[5], worker => 'mailer-2') AS released;
SELECT * FROM queue WHERE id = 5;
SELECT id, attempts FROM bis.claim('mailer-3');
SELECT * FROM queue WHERE id = 5;

-- a lease that ran out: the row is handed to another mailer; the first one's late
-- ack and fail do not cut across the new holder
UPDATE bis.notifications SET claimed_until = now() - interval '1 second' WHERE id = 5;
SELECT id, attempts FROM bis.claim('mailer-4');
SELECT * FROM queue WHERE id = 5;
SELECT bis.ack(ARRAY[5], 'mailer-3') AS late_ack, bis.fail(5, 'late', true, 'mailer-3') AS late_fail;
SELECT bis.ack(ARRAY[5], 'mailer-4') AS acked;
SELECT * FROM queue WHERE id = 5;

-- backoff: the delay doubles with each attempt, with jitter, up to bis.retry_max_delay
UPDATE bis.notifications SET status = 'pending', available_at = now(), attempts = 0 WHERE id = 3;
SET bis.retry_base_delay = '10s';
SET bis.retry_max_delay = '1min';
CREATE TEMP TABLE delays (attempt int, delay interval);
DO $$
DECLARE
    i int;
BEGIN
    FOR i IN 1..5 LOOP
        PERFORM bis.claim('mailer-5', 1);
        UPDATE bis.notifications SET available_at = now() WHERE id = 3 AND status = 'claimed';
        PERFORM bis.fail(3, 'try again');
        INSERT INTO delays SELECT attempts, available_at - now() FROM bis.notifications WHERE id = 3;
        UPDATE bis.notifications SET available_at = now() WHERE id = 3;
    END LOOP;
END
$$;
SELECT attempt, delay >= least(10 * 2 ^ (attempt - 1), 60) * interval '0.5 s'
            AND delay <= least(10 * 2 ^ (attempt - 1), 60) * interval '1 s' AS within_bounds
  FROM delays ORDER BY attempt;
RESET bis.retry_base_delay;
RESET bis.retry_max_delay;

-- after bis.max_attempts attempts a failing row is dead, even with retry
SET bis.max_attempts = 6;
SELECT id, attempts FROM bis.claim('mailer-5', 1);
SELECT bis.fail(3, 'try again') AS status;
SELECT * FROM queue WHERE id = 3;
RESET bis.max_attempts;

-- requeue: dead rows come back with a fresh count of attempts; other rows are left alone
SELECT bis.requeue(ARRAY[3, 4, 1]) AS requeued;
SELECT * FROM queue WHERE id IN (1, 3, 4);

-- time to live: a row older than bis.notification_ttl is never handed out; it expires
UPDATE bis.notifications SET created_at = now() - interval '8 days' WHERE id = 3;
SELECT id FROM bis.claim('mailer-6');
SELECT id, status FROM bis.notifications WHERE id IN (3, 4, 6) ORDER BY id;
SET bis.notification_ttl = '1h';
UPDATE bis.notifications SET created_at = now() - interval '2 hours',
       claimed_until = now() - interval '1 second' WHERE id = 4;
SELECT count(*) AS claimed FROM bis.claim('mailer-7');
SELECT id, status, claimed_by FROM bis.notifications WHERE id = 4;
RESET bis.notification_ttl;
-- an expired row stays expired
SELECT bis.requeue(ARRAY[3]) AS requeued;
SELECT id, status FROM bis.notifications WHERE id = 3;

-- a mailer's role needs EXECUTE on the verbs, and no right on the tables
CREATE ROLE regress_bis_mailer;
GRANT USAGE ON SCHEMA bis TO regress_bis_mailer;
GRANT EXECUTE ON FUNCTION bis.claim(text, int, interval, text[]), bis.ack(bigint[], text) TO regress_bis_mailer;
UPDATE bis.notifications SET status = 'pending', available_at = now(), created_at = now() WHERE id = 3;
SET ROLE regress_bis_mailer;
SELECT id, address FROM bis.claim('mailer-9');
SELECT bis.ack(ARRAY[3], 'mailer-9') AS acked;
SELECT count(*) FROM bis.notifications;
SELECT bis.fail(3, 'no right to this');
RESET ROLE;
DROP OWNED BY regress_bis_mailer;
DROP ROLE regress_bis_mailer;

-- the lease index serves only the claim's look for leases that ran out; what
-- goes by id (ack, release) cannot use it and probes the primary key
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF)
SELECT n.claimed_by FROM bis.notifications n
 WHERE n.status = 'claimed' AND n.claimed_until <= now()
 ORDER BY n.claimed_until LIMIT 10;
EXPLAIN (COSTS OFF)
SELECT n.claimed_by FROM bis.notifications n WHERE n.status = 'claimed';
RESET enable_seqscan;
RESET enable_bitmapscan;

-- bad arguments
SELECT * FROM bis.claim(NULL);
SELECT * FROM bis.claim('');
SELECT * FROM bis.claim('m', 0);
SELECT * FROM bis.claim('m', -5);
SELECT * FROM bis.claim('m', 10, '-1 minute');
SELECT * FROM bis.claim('m', 10, '0 seconds');
SELECT * FROM bis.claim('m', 10, channels => '{}');
SELECT * FROM bis.claim('m', 10, channels => '{email,fax}');
SELECT * FROM bis.claim('m', 10, channels => '{email,NULL}');
SELECT bis.ack(ARRAY[999]);
SELECT bis.ack(NULL);
SELECT bis.ack(ARRAY[1, NULL]);
SELECT bis.fail(999, 'x');
SELECT bis.fail(1, NULL);
SELECT bis.release(ARRAY[999]);
SELECT bis.requeue(ARRAY[999]);
SELECT bis.ack(ARRAY[1], '');

DROP VIEW queue;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;

-- a claim goes to its rows by id, through the primary key, whatever the
-- statistics say.  Analyzed with no live row left (after a purge), the queue
-- looked empty to the planner, which read the batch of messages by scanning
-- the contacts' index whole, and the rows a rule held back by scanning the
-- primary key whole: on a busy queue whose dead versions vacuum may not
-- remove yet (a long transaction open), every claim read them all (make
-- bench, figure 8, held: 220 ms per cycle grew to 800).  Here the history is
-- 2,000 dead rows; a claim of 50, 40 of them held back by a send rate, reads
-- a few primary key entries per row.  (The claim's own index of due rows is
-- read from its oldest entry, dead ones too, as any queue's is.)
INSERT INTO bis.items (sku) VALUES ('PK1');
INSERT INTO bis.contacts (contact_id, email)
SELECT 'pk' || i, 'pk' || i || '@example.com' FROM generate_series(1, 2000) i;
INSERT INTO bis.subscriptions (contact_id, sku) SELECT 'pk' || i, 'PK1' FROM generate_series(1, 2000) i;
SET bis.expand_chunk = 2000;
SELECT bis.set_stock('PK1', 5);
RESET bis.expand_chunk;
SELECT bis.ack(array_agg(id), 'm') FROM bis.claim('m', 2000);
SELECT notifications FROM bis.purge('0');
ANALYZE bis.notifications;
SELECT relpages > 0 AS has_pages, reltuples AS live_rows FROM pg_class
 WHERE oid = 'bis.notifications'::regclass;
SELECT bis.set_stock('PK1', 0);
INSERT INTO bis.subscriptions (contact_id, sku) SELECT 'pk' || i, 'PK1' FROM generate_series(1, 50) i;
SELECT bis.set_stock('PK1', 5);
SET bis.send_rate = '10/1h';
SELECT pg_stat_force_next_flush();
CREATE TEMP TABLE reads AS
SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes
 WHERE schemaname = 'bis' AND relname = 'notifications';
SELECT count(*) FROM bis.claim('m', 100);
SELECT pg_stat_force_next_flush();
SELECT sum(i.idx_scan - r.idx_scan) FILTER (WHERE indexrelname = 'notifications_contact_idx')
           AS contact_index_scans,
       sum(i.idx_tup_read - r.idx_tup_read) FILTER (WHERE indexrelname = 'notifications_pkey')
           < 1000 AS by_primary_key
  FROM pg_stat_user_indexes i JOIN reads r USING (indexrelname)
 WHERE i.schemaname = 'bis' AND i.relname = 'notifications';
RESET bis.send_rate;
DROP TABLE reads;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items,
         bis.send_windows RESTART IDENTITY;
