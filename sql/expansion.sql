-- Large fan-outs: the stock transaction enqueues one chunk, the rest is expanded after it
-- commits, by bis.expand or a bis.claim that finds nothing due, oldest subscription first, each once
\set SHOW_CONTEXT never
SET bis.expand_chunk = 3;
SELECT bis.upsert_items('[{"sku": "A-1", "title": "Anorak"}]');
SELECT count(bis.upsert_contact('c' || n, email => 'c' || n || '@example.com')) FROM generate_series(1, 12) n;
SELECT count(bis.subscribe('c' || n, 'A-1')) FROM generate_series(1, 8) n;
SELECT bis.set_stock('A-1', 0);
CREATE VIEW progress AS
SELECT id, expansion, matched, enqueued, last_subscription_id, max_subscription_id
  FROM bis.restock_events ORDER BY id;
CREATE VIEW used AS
SELECT h.id, h.status, h.restock_event_id AS event,
       (SELECT count(*) FROM bis.notifications n WHERE n.subscription_id = h.id) AS notifications
  FROM bis.subscription_history h ORDER BY h.id;
-- the same nine waiting subscriptions again, for the next case
CREATE FUNCTION resubscribe() RETURNS void LANGUAGE sql AS $$
    TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions RESTART IDENTITY;
    SELECT count(bis.subscribe('c' || n, 'A-1')) FROM generate_series(1, 9) n;
$$;

-- the restock enqueues the three oldest; the event says how far it got
SELECT bis.set_stock('A-1', 5) AS enqueued_in_stock_transaction;
SELECT * FROM progress;
-- a subscription made after the restock waits for the next one
SELECT bis.subscribe('c9', 'A-1') AS late_subscription;
-- bis.expand does the rest, a chunk at a time
SELECT bis.expand() AS enqueued;
SELECT * FROM progress;
SELECT bis.expand(10) AS enqueued;
SELECT * FROM progress;
SELECT bis.expand(10) AS nothing_left;
SELECT * FROM used;

-- mailers drive it: a bis.claim that finds nothing due expands a chunk straight into
-- the claim (its rows are claimed as they are enqueued)
SELECT resubscribe();
SELECT bis.set_stock('A-1', 0), bis.set_stock('A-1', 5);
SELECT array_agg(id ORDER BY id) AS claimed FROM bis.claim('m', 4);
SELECT array_agg(id ORDER BY id) AS claimed FROM bis.claim('m', 4);
SELECT array_agg(id ORDER BY id) AS claimed FROM bis.claim('m', 4);
SELECT array_agg(id ORDER BY id) AS claimed FROM bis.claim('m', 4);
SELECT array_agg(id ORDER BY id) AS nothing_left FROM bis.claim('m', 4);
SELECT * FROM progress;
SELECT count(*) FILTER (WHERE status = 'claimed') AS claimed, count(*) AS notifications,
       count(DISTINCT subscription_id) AS subscriptions
  FROM bis.notifications;

-- an expansion rolled back (a mailer or the server died) is simply done again
SELECT resubscribe();
SELECT bis.set_stock('A-1', 0), bis.set_stock('A-1', 5);
BEGIN;
SELECT bis.expand(1);
ROLLBACK;
SELECT * FROM progress;
SELECT bis.expand(10);
SELECT * FROM progress;
SELECT count(*) AS notifications, count(DISTINCT subscription_id) AS subscriptions FROM bis.notifications;

-- a new restock of the same stock takes over one still expanding
SELECT resubscribe();
SELECT bis.set_stock('A-1', 0), bis.set_stock('A-1', 5);
SELECT bis.set_stock('A-1', 0), bis.set_stock('A-1', 2);
SELECT bis.expand(10);
SELECT * FROM progress;
SELECT * FROM used;

DROP VIEW progress;
DROP VIEW used;
DROP FUNCTION resubscribe();
RESET bis.expand_chunk;
TRUNCATE bis.notifications, bis.restock_events, bis.subscriptions, bis.stock_levels,
         bis.consents, bis.push_tokens, bis.webpush_subscriptions, bis.contacts, bis.items RESTART IDENTITY;
