-- A warning to the vehicle inspection register can be withdrawn (kept in
-- step between migrations/sqlite and migrations/postgres).
--
-- A case marked overdue after 20 days gets a row in inspection_warnings.
-- When the fine is then paid (a payment whose confirmation came late, or
-- paid after the warning), the warning no longer stands: the row is marked
-- withdrawn, never deleted, so the history stays (and an adapter to the
-- register that already sent it, sent_at, knows to send the withdrawal).
-- Audit entry: notice.inspection_warning_withdrawn.

ALTER TABLE inspection_warnings ADD COLUMN withdrawn_at BIGINT;
ALTER TABLE inspection_warnings ADD COLUMN withdrawn_reason TEXT;
