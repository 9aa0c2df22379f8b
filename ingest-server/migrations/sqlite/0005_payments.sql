-- Online payment of fines through a payment gateway (issue 10, payments),
-- SQLite flavour. Kept in step with ../postgres/0005_payments.sql.
--
-- One row per payment attempt: the citizen may start several (a closed
-- tab, a declined card), and each is its own order at the gateway with its
-- own reference (txn_ref, unique, what the gateway sends back). amount_vnd
-- is copied from events.fine_amount_vnd when the attempt starts, in whole
-- VND; the gateway's amount must equal it (× 100 for VNPay) or nothing is
-- paid. state: pending → paid | failed | cancelled, changed only from
-- pending (a conditional UPDATE), so a repeated or racing notification
-- settles an attempt once. The gateway's own codes and numbers are kept as
-- it sent them (response_code, transaction_status, transaction_no,
-- bank_code, bank_tran_no, pay_date), with the raw notification
-- (ipn_params, JSON) or the raw status query answer (query_result, JSON)
-- that settled it, and which of the two it was (settled_by: ipn | querydr).

CREATE TABLE payments (
    txn_ref            TEXT PRIMARY KEY,
    event_id           TEXT NOT NULL REFERENCES events (event_id),
    gateway            TEXT NOT NULL,
    amount_vnd         INTEGER NOT NULL,
    state              TEXT NOT NULL,
    client_ip          TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    response_code      TEXT,
    transaction_status TEXT,
    transaction_no     TEXT,
    bank_code          TEXT,
    bank_tran_no       TEXT,
    pay_date           TEXT,
    settled_by         TEXT,
    note               TEXT,
    ipn_params         TEXT,
    ipn_at             INTEGER,
    query_result       TEXT,
    queried_at         INTEGER
);
CREATE INDEX payments_event ON payments (event_id);
CREATE INDEX payments_state_created ON payments (state, created_at);
