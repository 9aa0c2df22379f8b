-- The police decision (issue 10), PostgreSQL flavour. Kept in step with
-- ../sqlite/0004_decision.sql. When an officer confirms a case the fine
-- is fixed: the middle of the legal range (Law on Handling Administrative
-- Violations, Art. 23: the average applies when there are no mitigating or
-- aggravating circumstances), in whole VND. Notices and payments use this
-- amount, never the range.

ALTER TABLE events ADD COLUMN fine_amount_vnd BIGINT;
ALTER TABLE events ADD COLUMN confirmed_at BIGINT;
