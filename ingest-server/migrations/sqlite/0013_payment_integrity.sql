-- One open payment order per case, enforced by the database (issue 10,
-- payments; kept in step between migrations/sqlite and migrations/postgres).
--
-- `payments::start` looks for an open order before it makes one, but two
-- starts racing (a double click, two tabs, two replicas) could both pass
-- that look and both be paid. The partial unique index makes the second
-- insert fail; `start` answers it as "a payment is in progress". An order
-- stays pending after its expiry until the reconciler settles it (it may
-- still complete at the bank), and blocks a new one until then.
--
-- Orders already open twice for one case (before this index) keep the
-- newest pending; the others are cancelled, and should the gateway report
-- one paid after all, `payments/settle.rs` applies it or marks it for a
-- person, as for any order closed here and paid at the gateway.

UPDATE payments SET state = 'cancelled', note = 'another order for the case was open (migration 0013)'
WHERE state = 'pending' AND EXISTS (
    SELECT 1 FROM payments q
    WHERE q.event_id = payments.event_id AND q.state = 'pending'
      AND (q.created_at > payments.created_at
           OR (q.created_at = payments.created_at AND q.txn_ref > payments.txn_ref))
);
CREATE UNIQUE INDEX payments_one_pending ON payments (event_id) WHERE state = 'pending';
